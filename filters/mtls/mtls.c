/* mtls: TLS for sluice's listeners and upstreams, with Istio's
 * PeerAuthentication, Gateway TLS and DestinationRule TLS semantics.
 *
 *   config:
 *     mode: PERMISSIVE        # DISABLE | PERMISSIVE | STRICT | SIMPLE | MUTUAL
 *     port_level_mtls: { "9443": STRICT }
 *     certs_dir: /etc/certs   # cert-chain.pem, key.pem, root-cert.pem
 *     cert_chain / private_key / ca_certificates / ocsp_staple: paths
 *     servers: [ { hosts: [...], cert_chain, private_key, ca_certificates, ocsp_staple } ]
 *     min_protocol_version / max_protocol_version: TLSV1_2 | TLSV1_3
 *     cipher_suites: [...]    # TLS 1.2
 *     ecdh_curves: [...]
 *     xfcc: APPEND_FORWARD
 *     watch: true
 *     upstream:
 *       auto_mtls: true
 *       mesh_clusters: [...]
 *       clusters: [ { cluster, mode, sni, subject_alt_names, client_certificate,
 *                     private_key, ca_certificates, insecure_skip_verify } ]
 *
 * Every key and its default: docs/filters/mtls.md.
 *
 * Shape: the TLS engine is tls.c (the only code that sees BoringSSL). This
 * file binds the config, builds a tls_bundle_t (every SSL_CTX of the
 * instance) from the certificate files, installs a server transport on each
 * accepted connection (on_connection) and a client transport on each new
 * upstream connection of a cluster it originates TLS for
 * (on_upstream_connect), and sets x-forwarded-client-cert.
 *
 * Rotation: a watcher thread per instance (inotify on the directories of
 * every configured file) rebuilds the bundle when the files' contents
 * change and publishes it with one atomic store; new handshakes take the new
 * bundle, established connections keep the SSL_CTX they hold a reference
 * to. Retired bundles are freed with the instance. A SIGHUP builds a new
 * instance, which reads the files afresh.
 */
#include "tls.h"

#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#define MTLS_MAX_WORKERS 256

static const char *const mode_names[] = {"DISABLE", "PERMISSIVE", "STRICT",
                                         "SIMPLE",  "MUTUAL",     NULL};
static const char *const up_mode_names[] = {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL", NULL};
static const char *const version_names[] = {"TLS_AUTO", "TLSV1_0", "TLSV1_1",
                                            "TLSV1_2",  "TLSV1_3", NULL};
enum { V_AUTO, V_1_0, V_1_1, V_1_2, V_1_3 };
static const char *const xfcc_names[] = {"SANITIZE",     "FORWARD_ONLY",        "APPEND_FORWARD",
                                         "SANITIZE_SET", "ALWAYS_FORWARD_ONLY", NULL};
enum { XF_SANITIZE, XF_FORWARD_ONLY, XF_APPEND_FORWARD, XF_SANITIZE_SET, XF_ALWAYS_FORWARD_ONLY };

#define DEFAULT_CIPHERS                                                                            \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"     \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define DEFAULT_CURVES "X25519:P-256:P-384"

/* ---- what the field tables bind ---------------------------------------- */

typedef struct conf {
    int mode;
    const slc_cfg_node_t *port_level_mtls;
    const char *certs_dir, *cert_chain, *private_key, *ca_certificates, *ocsp_staple;
    const slc_cfg_node_t *servers;
    int min_version, max_version;
    const slc_cfg_node_t *cipher_suites, *ecdh_curves;
    int xfcc;
    bool watch;
    const slc_cfg_node_t *upstream;
} conf_t;

static const slc_cfg_field_t conf_fields[] = {
    SLC_FIELD_ENUM("mode", conf_t, mode, mode_names, .dflt = "PERMISSIVE"),
    SLC_FIELD_NODE("port_level_mtls", conf_t, port_level_mtls),
    SLC_FIELD_STR("certs_dir", conf_t, certs_dir),
    SLC_FIELD_STR("cert_chain", conf_t, cert_chain),
    SLC_FIELD_STR("private_key", conf_t, private_key),
    SLC_FIELD_STR("ca_certificates", conf_t, ca_certificates),
    SLC_FIELD_STR("ocsp_staple", conf_t, ocsp_staple),
    SLC_FIELD_NODE("servers", conf_t, servers),
    SLC_FIELD_ENUM("min_protocol_version", conf_t, min_version, version_names, .dflt = "TLS_AUTO"),
    SLC_FIELD_ENUM("max_protocol_version", conf_t, max_version, version_names, .dflt = "TLS_AUTO"),
    SLC_FIELD_NODE("cipher_suites", conf_t, cipher_suites),
    SLC_FIELD_NODE("ecdh_curves", conf_t, ecdh_curves),
    SLC_FIELD_ENUM("xfcc", conf_t, xfcc, xfcc_names, .dflt = "APPEND_FORWARD"),
    SLC_FIELD_BOOL("watch", conf_t, watch, .dflt = "true"),
    SLC_FIELD_NODE("upstream", conf_t, upstream),
    SLC_FIELD_END,
};

typedef struct srv_conf {
    const slc_cfg_node_t *hosts;
    const char *cert_chain, *private_key, *ca_certificates, *ocsp_staple;
} srv_conf_t;

static const slc_cfg_field_t srv_fields[] = {
    SLC_FIELD_NODE("hosts", srv_conf_t, hosts, .required = true),
    SLC_FIELD_STR("cert_chain", srv_conf_t, cert_chain, .required = true),
    SLC_FIELD_STR("private_key", srv_conf_t, private_key, .required = true),
    SLC_FIELD_STR("ca_certificates", srv_conf_t, ca_certificates),
    SLC_FIELD_STR("ocsp_staple", srv_conf_t, ocsp_staple),
    SLC_FIELD_END,
};

typedef struct upstream_conf {
    bool auto_mtls;
    const slc_cfg_node_t *mesh_clusters, *clusters;
} upstream_conf_t;

static const slc_cfg_field_t upstream_fields[] = {
    SLC_FIELD_BOOL("auto_mtls", upstream_conf_t, auto_mtls, .dflt = "true"),
    SLC_FIELD_NODE("mesh_clusters", upstream_conf_t, mesh_clusters),
    SLC_FIELD_NODE("clusters", upstream_conf_t, clusters),
    SLC_FIELD_END,
};

typedef struct up_conf {
    const char *cluster;
    int mode;
    const char *sni;
    const slc_cfg_node_t *subject_alt_names;
    const char *client_certificate, *private_key, *ca_certificates;
    bool insecure_skip_verify;
} up_conf_t;

static const slc_cfg_field_t up_fields[] = {
    SLC_FIELD_STR("cluster", up_conf_t, cluster, .required = true),
    SLC_FIELD_ENUM("mode", up_conf_t, mode, up_mode_names, .required = true),
    SLC_FIELD_STR("sni", up_conf_t, sni),
    SLC_FIELD_NODE("subject_alt_names", up_conf_t, subject_alt_names),
    SLC_FIELD_STR("client_certificate", up_conf_t, client_certificate),
    SLC_FIELD_STR("private_key", up_conf_t, private_key),
    SLC_FIELD_STR("ca_certificates", up_conf_t, ca_certificates),
    SLC_FIELD_BOOL("insecure_skip_verify", up_conf_t, insecure_skip_verify, .dflt = "false"),
    SLC_FIELD_END,
};

/* ---- the instance --------------------------------------------------------- */

/* What a bundle is built from: plain data, kept for the watcher's rebuilds.
 * OWNERSHIP: strings are cfg_alloc'd or the binder's (config lifetime). */
typedef struct srv_spec {
    char **hosts;
    size_t nhosts;
    tls_files_t files;
    int mode;
} srv_spec_t;

typedef struct up_spec {
    const slc_cluster_t *cluster;
    const char *name;
    int mode;
    const char *sni;
    char **sans;
    size_t nsans;
    tls_files_t files;
} up_spec_t;

typedef struct port_mode {
    uint32_t port;
    int mode;
} port_mode_t;

typedef struct mtls {
    const slc_host_t *h;
    int mode, xfcc;
    port_mode_t *ports;
    size_t nports;
    bool need_server; /* some mode (default or per port) serves TLS */
    tls_files_t own;  /* the listener's / workload's certificate */
    tls_params_t params;
    srv_spec_t *srv;
    size_t nsrv;
    up_spec_t *up;
    size_t nup;

    _Atomic(tls_bundle_t *) cur;
    /* The watcher (watch: true). OWNERSHIP: started at the end of a
     * successful config_new, joined in config_free. */
    bool watching;
    pthread_t watcher;
    int stop_fd;
    char **dirs;
    size_t ndirs;
    char name[64];

    slc_metric_t *m_hs[2], *m_resumed[2], *m_fail[FR_N], *m_plain, *m_expiry, **m_srv_expiry;
    tls_worker_t *workers[MTLS_MAX_WORKERS];
} mtls_t;

typedef struct wctx {
    tls_worker_t tw;
    /* worker 0 keeps the expiry gauges: the bundle it last published */
    const tls_bundle_t *seen;
} wctx_t;

/* ---- helpers -------------------------------------------------------------- */

static char *join_path(slc_diag_t *d, const slc_host_t *h, const char *dir, const char *file)
{
    size_t n = strlen(dir) + 1 + strlen(file) + 1;
    char *p = h->cfg_alloc(d, n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static char *cfg_strdup(slc_diag_t *d, const slc_host_t *h, const char *s, size_t n)
{
    char *p = h->cfg_alloc(d, n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* string_list copies a sequence of scalars; NULL node = empty. */
static bool string_list(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n,
                        const char *what, bool lower, char ***out, size_t *nout)
{
    *out = NULL;
    *nout = 0;
    if (!n)
        return true;
    if (h->cfg_type(n) != SLC_CFG_SEQ) {
        slc_diag_error(d, n, "%s: expected a list of strings", what);
        return false;
    }
    size_t k = h->cfg_len(n);
    char **v = h->cfg_alloc(d, (k ? k : 1) * sizeof(char *));
    for (size_t i = 0; i < k; i++) {
        const slc_cfg_node_t *it = h->cfg_at(n, i);
        if (h->cfg_type(it) != SLC_CFG_SCALAR || h->cfg_scalar(it).len == 0) {
            slc_diag_error(d, it, "%s: expected a non-empty string", what);
            return false;
        }
        slc_str_t s = h->cfg_scalar(it);
        v[i] = cfg_strdup(d, h, s.ptr, s.len);
        if (lower)
            for (char *p = v[i]; *p; p++)
                if (*p >= 'A' && *p <= 'Z')
                    *p = (char)(*p - 'A' + 'a');
    }
    *out = v;
    *nout = k;
    return true;
}

static char *joined(const slc_host_t *h, slc_diag_t *d, char **v, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(v[i]) + 1;
    char *s = h->cfg_alloc(d, len), *o = s;
    for (size_t i = 0; i < n; i++)
        o += sprintf(o, "%s%s", i ? ":" : "", v[i]);
    return s;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* fingerprint hashes the contents of every file a bundle is built from, so
 * the watcher rebuilds only when a byte changed. */
static void fp_file(uint64_t *h, const char *path)
{
    if (!path)
        return;
    FILE *f = fopen(path, "rb");
    *h = (*h ^ 0x9e) * 0x100000001b3ull;
    if (!f)
        return;
    unsigned char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
        for (size_t i = 0; i < n; i++)
            *h = (*h ^ buf[i]) * 0x100000001b3ull;
    fclose(f);
}

static void fp_files(uint64_t *h, const tls_files_t *f)
{
    fp_file(h, f->chain);
    fp_file(h, f->key);
    fp_file(h, f->ca);
    fp_file(h, f->ocsp);
}

static uint64_t fingerprint(const mtls_t *m)
{
    uint64_t h = 0xcbf29ce484222325ull;
    fp_files(&h, &m->own);
    for (size_t i = 0; i < m->nsrv; i++)
        fp_files(&h, &m->srv[i].files);
    for (size_t i = 0; i < m->nup; i++)
        fp_files(&h, &m->up[i].files);
    return h;
}

/* build makes a bundle from the files as they are now. On failure it says
 * which part failed in |*part| (-1 the listener's certificate, 0..nsrv-1 a
 * server, 1000+i upstream i) and why in |err|. */
static tls_bundle_t *build(const mtls_t *m, int *part, char *err, size_t errlen)
{
    tls_bundle_t *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->fingerprint = fingerprint(m);
    *part = -1;
    if (m->need_server) {
        /* The default context verifies clients in every mode but SIMPLE;
         * a PERMISSIVE port's TLS clients are mesh peers and must present a
         * certificate, as Istio's inbound TLS chain requires. */
        bool verify = m->mode != SM_SIMPLE && m->mode != SM_DISABLE;
        for (size_t i = 0; i < m->nports; i++)
            if (m->ports[i].mode != SM_SIMPLE && m->ports[i].mode != SM_DISABLE)
                verify = true;
        b->dflt =
            tls_server_ctx(&m->own, &m->params, verify, &b->not_after, &b->own_uri, err, errlen);
        if (!b->dflt)
            goto fail;
    } else if (m->own.chain && m->own.key) {
        /* Only origination uses our certificate: By= still names it. */
        SSL_CTX *tmp =
            tls_server_ctx(&m->own, &m->params, false, &b->not_after, &b->own_uri, err, errlen);
        if (!tmp)
            goto fail;
        SSL_CTX_free(tmp);
    }
    if (m->nsrv) {
        b->srv = calloc(m->nsrv, sizeof(*b->srv));
        if (!b->srv)
            goto fail;
        b->nsrv = m->nsrv;
        for (size_t i = 0; i < m->nsrv; i++) {
            *part = (int)i;
            tls_srv_t *s = &b->srv[i];
            s->ctx = tls_server_ctx(&m->srv[i].files, &m->params, m->srv[i].mode != SM_SIMPLE,
                                    &s->not_after, NULL, err, errlen);
            if (!s->ctx)
                goto fail;
            s->hosts = calloc(m->srv[i].nhosts, sizeof(char *));
            if (!s->hosts)
                goto fail;
            for (size_t k = 0; k < m->srv[i].nhosts; k++)
                s->hosts[s->nhosts++] = strdup(m->srv[i].hosts[k]);
        }
    }
    if (m->nup) {
        b->up = calloc(m->nup, sizeof(*b->up));
        if (!b->up)
            goto fail;
        b->nup = m->nup;
        for (size_t i = 0; i < m->nup; i++) {
            *part = 1000 + (int)i;
            const up_spec_t *u = &m->up[i];
            tls_up_t *t = &b->up[i];
            t->cluster = u->cluster;
            t->mode = u->mode;
            t->idx = i;
            if (u->mode == UM_DISABLE)
                continue;
            t->ctx = tls_client_ctx(&u->files, &m->params, u->mode == UM_ISTIO_MUTUAL, err, errlen);
            if (!t->ctx)
                goto fail;
            t->sni = dup_or_null(u->sni);
            if (u->nsans) {
                t->sans = calloc(u->nsans, sizeof(char *));
                if (!t->sans)
                    goto fail;
                for (size_t k = 0; k < u->nsans; k++)
                    t->sans[t->nsans++] = strdup(u->sans[k]);
            }
        }
    }
    tls_bundle_link_sni(b);
    return b;
fail:
    tls_bundle_free(b);
    return NULL;
}

/* ---- the watcher ---------------------------------------------------------- */

static void *watch_main(void *arg)
{
    mtls_t *m = arg;
    int in = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (in < 0) {
        slc_log(SLC_LOG_WARN, m->name, "certificate watch disabled: inotify: %s", strerror(errno));
        return NULL;
    }
    for (size_t i = 0; i < m->ndirs; i++)
        if (inotify_add_watch(in, m->dirs[i],
                              IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_CREATE | IN_DELETE |
                                  IN_ATTRIB) < 0)
            slc_log(SLC_LOG_WARN, m->name, "cannot watch %s: %s", m->dirs[i], strerror(errno));
    char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
    for (;;) {
        struct pollfd p[2] = {{.fd = m->stop_fd, .events = POLLIN}, {.fd = in, .events = POLLIN}};
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents)
            break;
        if (!(p[1].revents & POLLIN))
            continue;
        /* Let a burst of changes (a secret mount swaps several names) settle
         * for 100 ms, then look once. */
        do {
            while (read(in, buf, sizeof(buf)) > 0) {
            }
        } while (poll(&p[1], 1, 100) > 0 && !(p[0].revents));
        tls_bundle_t *cur = atomic_load(&m->cur);
        if (fingerprint(m) == cur->fingerprint)
            continue;
        char err[512];
        int part;
        tls_bundle_t *b = build(m, &part, err, sizeof(err));
        if (!b) {
            /* Half-written files fail here; the next event retries. The old
             * certificates keep serving. */
            slc_log(SLC_LOG_WARN, m->name, "certificate reload failed, keeping the old: %s", err);
            continue;
        }
        b->older = cur;
        atomic_store(&m->cur, b);
        slc_log(SLC_LOG_INFO, m->name, "certificates reloaded from disk");
    }
    close(in);
    return NULL;
}

static void add_dir(mtls_t *m, slc_diag_t *d, const char *path)
{
    if (!path)
        return;
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : 1;
    char *dir = slash ? cfg_strdup(d, m->h, path, n ? n : 1) : cfg_strdup(d, m->h, ".", 1);
    for (size_t i = 0; i < m->ndirs; i++)
        if (strcmp(m->dirs[i], dir) == 0)
            return;
    char **nd = m->h->cfg_alloc(d, (m->ndirs + 1) * sizeof(char *));
    if (m->ndirs)
        memcpy(nd, m->dirs, m->ndirs * sizeof(char *));
    nd[m->ndirs++] = dir;
    m->dirs = nd;
}

static void add_dirs(mtls_t *m, slc_diag_t *d, const tls_files_t *f)
{
    add_dir(m, d, f->chain);
    add_dir(m, d, f->key);
    add_dir(m, d, f->ca);
    add_dir(m, d, f->ocsp);
}

/* ---- config ----------------------------------------------------------------- */

static int parse_mode(const char *s, size_t n)
{
    for (int i = 0; mode_names[i]; i++)
        if (strlen(mode_names[i]) == n && memcmp(mode_names[i], s, n) == 0)
            return i;
    return -1;
}

static bool bind_ports(mtls_t *m, slc_diag_t *d, const slc_cfg_node_t *n)
{
    const slc_host_t *h = m->h;
    if (!n)
        return true;
    if (h->cfg_type(n) != SLC_CFG_MAP) {
        slc_diag_error(d, n, "expected a map of port number to mode");
        return false;
    }
    size_t k = h->cfg_len(n);
    m->ports = h->cfg_alloc(d, (k ? k : 1) * sizeof(*m->ports));
    for (size_t i = 0; i < k; i++) {
        slc_str_t key = h->cfg_key_at(n, i);
        const slc_cfg_node_t *v = h->cfg_at(n, i);
        char *end;
        errno = 0;
        unsigned long port = strtoul(key.ptr, &end, 10);
        if (key.len == 0 || *end || errno || port == 0 || port > 65535) {
            slc_diag_error(d, v, "port_level_mtls: '%.*s' is not a port number", (int)key.len,
                           key.ptr);
            return false;
        }
        slc_str_t mv = h->cfg_type(v) == SLC_CFG_SCALAR ? h->cfg_scalar(v) : SLC_STR_NULL;
        /* Istio writes `8443: {mode: STRICT}`; the short form is the mode. */
        if (h->cfg_type(v) == SLC_CFG_MAP && h->cfg_get(v, "mode"))
            mv = h->cfg_scalar(h->cfg_get(v, "mode"));
        int mode = mv.ptr ? parse_mode(mv.ptr, mv.len) : -1;
        if (mode < 0 || mode == SM_SIMPLE || mode == SM_MUTUAL) {
            slc_diag_error(d, v, "port_level_mtls: expected DISABLE, PERMISSIVE or STRICT");
            return false;
        }
        m->ports[m->nports++] = (port_mode_t){(uint32_t)port, mode};
    }
    return true;
}

static bool bind_servers(mtls_t *m, slc_diag_t *d, const slc_cfg_node_t *n)
{
    const slc_host_t *h = m->h;
    if (!n)
        return true;
    if (h->cfg_type(n) != SLC_CFG_SEQ) {
        slc_diag_error(d, n, "expected a list of servers");
        return false;
    }
    size_t k = h->cfg_len(n);
    m->srv = h->cfg_alloc(d, (k ? k : 1) * sizeof(*m->srv));
    for (size_t i = 0; i < k; i++) {
        const slc_cfg_node_t *it = h->cfg_at(n, i);
        srv_conf_t sc = {0};
        if (h->cfg_bind(d, it, srv_fields, &sc) != SLC_OK)
            return false;
        srv_spec_t *s = &m->srv[m->nsrv++];
        if (!string_list(h, d, sc.hosts, "hosts", true, &s->hosts, &s->nhosts))
            return false;
        if (s->nhosts == 0) {
            slc_diag_error(d, sc.hosts, "hosts: at least one name is required");
            return false;
        }
        s->files =
            (tls_files_t){sc.cert_chain, sc.private_key,
                          sc.ca_certificates ? sc.ca_certificates : m->own.ca, sc.ocsp_staple};
        /* A server verifies clients as the listener does, or when it names
         * its own client CA (a MUTUAL server on a SIMPLE listener). */
        s->mode = m->mode == SM_SIMPLE && !sc.ca_certificates ? SM_SIMPLE : SM_MUTUAL;
        if (s->mode == SM_MUTUAL && !s->files.ca) {
            slc_diag_error(d, it, "ca_certificates is required to verify client certificates");
            return false;
        }
    }
    return true;
}

static bool bind_upstream(mtls_t *m, slc_diag_t *d, const slc_cfg_node_t *n)
{
    const slc_host_t *h = m->h;
    if (!n)
        return true;
    upstream_conf_t uc = {0};
    if (h->cfg_bind(d, n, upstream_fields, &uc) != SLC_OK)
        return false;
    size_t nexp = 0, nmesh = 0;
    if (uc.clusters) {
        if (h->cfg_type(uc.clusters) != SLC_CFG_SEQ) {
            slc_diag_error(d, uc.clusters, "expected a list");
            return false;
        }
        nexp = h->cfg_len(uc.clusters);
    }
    char **mesh = NULL;
    if (!string_list(h, d, uc.mesh_clusters, "mesh_clusters", false, &mesh, &nmesh))
        return false;
    m->up = h->cfg_alloc(d, (nexp + nmesh + 1) * sizeof(*m->up));
    for (size_t i = 0; i < nexp; i++) {
        const slc_cfg_node_t *it = h->cfg_at(uc.clusters, i);
        up_conf_t c = {0};
        if (h->cfg_bind(d, it, up_fields, &c) != SLC_OK)
            return false;
        const slc_cfg_node_t *cn = h->cfg_get(it, "cluster");
        const slc_cluster_t *cl = h->cfg_cluster(d, (slc_str_t){c.cluster, strlen(c.cluster)});
        if (!cl) {
            slc_diag_error(d, cn, "unknown cluster '%s'", c.cluster);
            return false;
        }
        for (size_t k = 0; k < m->nup; k++)
            if (m->up[k].cluster == cl) {
                slc_diag_error(d, cn, "cluster '%s' is listed twice", c.cluster);
                return false;
            }
        up_spec_t *u = &m->up[m->nup++];
        u->cluster = cl;
        u->name = c.cluster;
        u->mode = c.mode;
        u->sni = c.sni;
        if (!string_list(h, d, c.subject_alt_names, "subject_alt_names", false, &u->sans,
                         &u->nsans))
            return false;
        if (c.mode == UM_ISTIO_MUTUAL) {
            if (c.client_certificate || c.private_key || c.ca_certificates) {
                slc_diag_error(d, it,
                               "ISTIO_MUTUAL uses the proxy's own certificate (certs_dir): "
                               "client_certificate, private_key and ca_certificates do not apply");
                return false;
            }
            u->files = (tls_files_t){m->own.chain, m->own.key, m->own.ca, NULL};
        } else if (c.mode != UM_DISABLE) {
            u->files = (tls_files_t){c.client_certificate, c.private_key, c.ca_certificates, NULL};
            if (c.mode == UM_MUTUAL && (!c.client_certificate || !c.private_key)) {
                slc_diag_error(d, it, "MUTUAL needs client_certificate and private_key");
                return false;
            }
            if (c.mode == UM_SIMPLE && (c.client_certificate || c.private_key)) {
                slc_diag_error(d, it, "SIMPLE sends no client certificate (use MUTUAL)");
                return false;
            }
            if (!c.ca_certificates && !c.insecure_skip_verify) {
                slc_diag_error(d, it,
                               "ca_certificates is required to verify the upstream "
                               "(or insecure_skip_verify: true)");
                return false;
            }
        }
    }
    for (size_t i = 0; i < nmesh; i++) {
        const slc_cluster_t *cl = h->cfg_cluster(d, (slc_str_t){mesh[i], strlen(mesh[i])});
        if (!cl) {
            slc_diag_error(d, h->cfg_at(uc.mesh_clusters, i), "unknown cluster '%s'", mesh[i]);
            return false;
        }
        bool listed = false;
        for (size_t k = 0; k < m->nup; k++)
            listed |= m->up[k].cluster == cl;
        /* An explicit DestinationRule tls wins over auto mTLS, as in Istio. */
        if (listed || !uc.auto_mtls)
            continue;
        up_spec_t *u = &m->up[m->nup++];
        *u = (up_spec_t){.cluster = cl, .name = mesh[i], .mode = UM_ISTIO_MUTUAL};
        u->files = (tls_files_t){m->own.chain, m->own.key, m->own.ca, NULL};
    }
    for (size_t i = 0; i < m->nup; i++) {
        if (m->up[i].mode == UM_ISTIO_MUTUAL && (!m->own.chain || !m->own.key || !m->own.ca)) {
            slc_diag_error(d, n,
                           "cluster '%s' originates ISTIO_MUTUAL, which needs the proxy's own "
                           "certificate: set certs_dir (or cert_chain, private_key and "
                           "ca_certificates)",
                           m->up[i].name);
            return false;
        }
    }
    return true;
}

static void register_metrics(mtls_t *m, slc_diag_t *d)
{
    const slc_host_t *h = m->h;
    static const char *const side[2] = {"downstream", "upstream"};
    for (int i = 0; i < 2; i++) {
        m->m_hs[i] = h->metric_new_labeled(d, SLC_METRIC_COUNTER, "mtls_handshakes_total",
                                           "TLS handshakes completed", "side", side[i]);
        m->m_resumed[i] =
            h->metric_new_labeled(d, SLC_METRIC_COUNTER, "mtls_resumptions_total",
                                  "TLS handshakes that resumed a session", "side", side[i]);
    }
    for (int i = 0; i < FR_N; i++)
        m->m_fail[i] = h->metric_new_labeled(d, SLC_METRIC_COUNTER, "mtls_handshake_failures_total",
                                             "TLS handshakes that failed, by reason", "reason",
                                             tls_reason_names[i]);
    m->m_plain = h->metric_new(d, SLC_METRIC_COUNTER, "mtls_plaintext_connections_total",
                               "PERMISSIVE connections that spoke plaintext");
    m->m_expiry = h->metric_new_labeled(d, SLC_METRIC_GAUGE, "mtls_cert_expiry_timestamp_seconds",
                                        "when the serving certificate expires (Unix time)", "cert",
                                        "default");
    if (m->nsrv) {
        m->m_srv_expiry = h->cfg_alloc(d, m->nsrv * sizeof(*m->m_srv_expiry));
        for (size_t i = 0; i < m->nsrv; i++)
            m->m_srv_expiry[i] = h->metric_new_labeled(
                d, SLC_METRIC_GAUGE, "mtls_cert_expiry_timestamp_seconds",
                "when the serving certificate expires (Unix time)", "cert", m->srv[i].hosts[0]);
    }
}

static uint16_t tls_version(int v)
{
    return v == V_1_3 ? TLS1_3_VERSION : TLS1_2_VERSION;
}

static slc_status_t config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                               slc_diag_t *d)
{
    conf_t c = {0};
    if (h->cfg_bind(d, n, conf_fields, &c) != SLC_OK)
        return SLC_EINVAL;
    mtls_t *m = h->cfg_alloc(d, sizeof(*m));
    m->h = h;
    m->mode = c.mode;
    m->xfcc = c.xfcc;
    m->stop_fd = -1;
    snprintf(m->name, sizeof(m->name), "mtls");

    /* Versions: TLS 1.2 and 1.3 only. */
    if (c.min_version == V_1_0 || c.min_version == V_1_1 || c.max_version == V_1_0 ||
        c.max_version == V_1_1) {
        slc_diag_error(d,
                       h->cfg_get(n, c.min_version == V_1_0 || c.min_version == V_1_1
                                         ? "min_protocol_version"
                                         : "max_protocol_version"),
                       "TLS 1.0 and 1.1 are not supported: use TLSV1_2 or TLSV1_3");
        return SLC_EINVAL;
    }
    m->params.min_version = tls_version(c.min_version == V_AUTO ? V_1_2 : c.min_version);
    m->params.max_version = tls_version(c.max_version == V_AUTO ? V_1_3 : c.max_version);
    if (m->params.min_version > m->params.max_version) {
        slc_diag_error(d, h->cfg_get(n, "min_protocol_version"),
                       "min_protocol_version is above max_protocol_version");
        return SLC_EINVAL;
    }
    char **v;
    size_t nv;
    if (!string_list(h, d, c.cipher_suites, "cipher_suites", false, &v, &nv))
        return SLC_EINVAL;
    m->params.ciphers = nv ? joined(h, d, v, nv) : DEFAULT_CIPHERS;
    if (!string_list(h, d, c.ecdh_curves, "ecdh_curves", false, &v, &nv))
        return SLC_EINVAL;
    m->params.curves = nv ? joined(h, d, v, nv) : DEFAULT_CURVES;

    /* Our own certificate: named paths win over the Istio layout. */
    m->own.chain = c.cert_chain  ? c.cert_chain
                   : c.certs_dir ? join_path(d, h, c.certs_dir, "cert-chain.pem")
                                 : NULL;
    m->own.key = c.private_key ? c.private_key
                 : c.certs_dir ? join_path(d, h, c.certs_dir, "key.pem")
                               : NULL;
    m->own.ca = c.ca_certificates ? c.ca_certificates
                : c.certs_dir     ? join_path(d, h, c.certs_dir, "root-cert.pem")
                                  : NULL;
    m->own.ocsp = c.ocsp_staple;

    if (!bind_ports(m, d, c.port_level_mtls))
        return SLC_EINVAL;
    m->need_server = m->mode != SM_DISABLE;
    for (size_t i = 0; i < m->nports; i++)
        m->need_server |= m->ports[i].mode != SM_DISABLE;
    if (m->need_server && (!m->own.chain || !m->own.key)) {
        slc_diag_error(d, n,
                       "mode %s serves TLS: set certs_dir (or cert_chain and private_key), or "
                       "mode: DISABLE",
                       mode_names[m->mode]);
        return SLC_EINVAL;
    }
    bool needs_ca = m->mode == SM_STRICT || m->mode == SM_PERMISSIVE || m->mode == SM_MUTUAL;
    for (size_t i = 0; i < m->nports; i++)
        needs_ca |= m->ports[i].mode != SM_DISABLE;
    if (needs_ca && !m->own.ca) {
        slc_diag_error(d, n,
                       "mode %s verifies client certificates: set certs_dir or ca_certificates",
                       mode_names[m->mode]);
        return SLC_EINVAL;
    }
    if (!bind_servers(m, d, c.servers) || !bind_upstream(m, d, c.upstream))
        return SLC_EINVAL;

    char err[512];
    int part;
    tls_bundle_t *b = build(m, &part, err, sizeof(err));
    if (!b) {
        const slc_cfg_node_t *at = n;
        if (part >= 1000 && c.upstream)
            at = c.upstream;
        else if (part >= 0 && part < 1000 && c.servers)
            at = h->cfg_at(c.servers, (size_t)part);
        slc_diag_error(d, at, "%s", err);
        return SLC_EINVAL;
    }
    atomic_init(&m->cur, b);
    register_metrics(m, d);

    add_dirs(m, d, &m->own);
    for (size_t i = 0; i < m->nsrv; i++)
        add_dirs(m, d, &m->srv[i].files);
    for (size_t i = 0; i < m->nup; i++)
        add_dirs(m, d, &m->up[i].files);
    if (c.watch && m->ndirs) {
        m->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (m->stop_fd >= 0 && pthread_create(&m->watcher, NULL, watch_main, m) == 0)
            m->watching = true;
        else
            slc_diag_warn(d, n, "cannot start the certificate watcher; SIGHUP still reloads");
    }
    *out = m;
    return SLC_OK;
}

static void config_free(void *cfg)
{
    mtls_t *m = cfg;
    if (m->watching) {
        uint64_t one = 1;
        ssize_t w = write(m->stop_fd, &one, sizeof(one));
        (void)w;
        pthread_join(m->watcher, NULL);
    }
    if (m->stop_fd >= 0)
        close(m->stop_fd);
    tls_bundle_free(atomic_load(&m->cur));
}

/* ---- workers ---------------------------------------------------------------- */

/* update_expiry publishes the expiry gauges from worker 0 (a value it
 * sets outright: an old generation's instance and this one may both be
 * alive and would count twice if they added). */
static void update_expiry(mtls_t *m, wctx_t *w, const tls_bundle_t *b)
{
    if (w->tw.wid != 0 || w->seen == b)
        return;
    w->seen = b;
    if (!slc_host_has(m->h, metric_set_global))
        return;
    if (b->dflt)
        m->h->metric_set_global(0, m->m_expiry, b->not_after);
    for (size_t i = 0; i < b->nsrv && i < m->nsrv; i++)
        m->h->metric_set_global(0, m->m_srv_expiry[i], b->srv[i].not_after);
}

static slc_status_t worker_init(void *cfg, int worker_id, void **out)
{
    mtls_t *m = cfg;
    if (worker_id < 0 || worker_id >= MTLS_MAX_WORKERS)
        return SLC_EINVAL;
    wctx_t *w = calloc(1, sizeof(*w));
    if (!w)
        return SLC_ENOMEM;
    w->tw.wid = worker_id;
    w->tw.nsess = m->nup;
    w->tw.sess = m->nup ? calloc(m->nup, sizeof(SSL_SESSION *)) : NULL;
    if (m->nup && !w->tw.sess) {
        free(w);
        return SLC_ENOMEM;
    }
    memcpy(w->tw.m_hs, m->m_hs, sizeof(m->m_hs));
    memcpy(w->tw.m_resumed, m->m_resumed, sizeof(m->m_resumed));
    memcpy(w->tw.m_fail, m->m_fail, sizeof(m->m_fail));
    w->tw.m_plain = m->m_plain;
    m->workers[worker_id] = &w->tw;
    update_expiry(m, w, atomic_load(&m->cur));
    *out = w;
    return SLC_OK;
}

static void worker_fini(void *cfg, void *wctx)
{
    mtls_t *m = cfg;
    wctx_t *w = wctx;
    if (!w)
        return;
    if (w->tw.wid >= 0 && w->tw.wid < MTLS_MAX_WORKERS)
        m->workers[w->tw.wid] = NULL;
    for (size_t i = 0; i < w->tw.nsess; i++)
        SSL_SESSION_free(w->tw.sess[i]);
    free(w->tw.sess);
    free(w);
}

/* ---- hooks ------------------------------------------------------------------ */

static uint32_t local_port(slc_conn_t *c)
{
    slc_str_t l = slc_host->conn_local(c);
    const char *colon = l.len ? memrchr(l.ptr, ':', l.len) : NULL;
    if (!colon)
        return 0;
    uint32_t p = 0;
    for (const char *q = colon + 1; q < l.ptr + l.len && *q >= '0' && *q <= '9'; q++)
        p = p * 10 + (uint32_t)(*q - '0');
    return p;
}

static slc_action_t on_connection(void *cfg, void *wctx, slc_conn_t *c)
{
    mtls_t *m = cfg;
    wctx_t *w = wctx;
    int mode = m->mode;
    if (m->nports) {
        uint32_t port = local_port(c);
        for (size_t i = 0; i < m->nports; i++)
            if (m->ports[i].port == port)
                mode = m->ports[i].mode;
    }
    if (mode == SM_DISABLE)
        return SLC_CONTINUE;
    tls_bundle_t *b = atomic_load_explicit(&m->cur, memory_order_acquire);
    update_expiry(m, w, b);
    void *t = tls_server_new(b->dflt, mode == SM_PERMISSIVE, &w->tw);
    if (!t)
        return SLC_STOP;
    if (slc_host->conn_set_transport(c, &tls_transport, t) != SLC_OK) {
        tls_transport.free(t);
        return SLC_STOP;
    }
    return SLC_CONTINUE;
}

/* xfcc_value builds this hop's x-forwarded-client-cert element, with the
 * fields Istio's default set_current_client_cert_details asks for (Hash,
 * Subject, URI, DNS) and By= our own URI SAN. NULL if the arena is full. */
static char *xfcc_value(slc_req_t *r, const char *by, const slc_peer_cert_t *pc, size_t *len)
{
    size_t need = 64 + (by ? strlen(by) : 0) + pc->sha256_hex.len + 2 * pc->subject.len;
    for (uint32_t i = 0; i < pc->nuri_sans; i++)
        need += pc->uri_sans[i].len + 6;
    for (uint32_t i = 0; i < pc->ndns_sans; i++)
        need += pc->dns_sans[i].len + 6;
    char *v = slc_arena_alloc(r, need), *o = v;
    if (!v)
        return NULL;
    if (by)
        o += sprintf(o, "By=%s;", by);
    o += sprintf(o, "Hash=%.*s;Subject=\"", (int)pc->sha256_hex.len, pc->sha256_hex.ptr);
    for (size_t i = 0; i < pc->subject.len; i++) {
        char ch = pc->subject.ptr[i];
        if (ch == '"' || ch == '\\')
            *o++ = '\\';
        *o++ = ch;
    }
    *o++ = '"';
    if (pc->nuri_sans)
        o += sprintf(o, ";URI=%.*s", (int)pc->uri_sans[0].len, pc->uri_sans[0].ptr);
    for (uint32_t i = 0; i < pc->ndns_sans; i++)
        o += sprintf(o, ";DNS=%.*s", (int)pc->dns_sans[i].len, pc->dns_sans[i].ptr);
    *len = (size_t)(o - v);
    return v;
}

static slc_action_t on_request_headers(void *ctx, slc_req_t *r)
{
    mtls_t *m = ctx;
    static const slc_str_t name = SLC_STR("x-forwarded-client-cert");
    if (m->xfcc == XF_ALWAYS_FORWARD_ONLY)
        return SLC_CONTINUE;
    slc_conn_t *c = slc_host->req_conn(r);
    slc_peer_cert_t pc = {.struct_size = sizeof(pc)};
    bool mtls =
        slc_host->conn_secure(c) && slc_host->conn_peer_cert(c, &pc) == SLC_OK && pc.sha256_hex.len;
    if (m->xfcc == XF_SANITIZE || !mtls) {
        /* A client can never inject the header past a sanitizing hop. */
        (void)slc_header_remove(r, SLC_REQUEST_HEADERS, name); /* every copy */
        return SLC_CONTINUE;
    }
    if (m->xfcc == XF_FORWARD_ONLY)
        return SLC_CONTINUE;
    const tls_bundle_t *b = atomic_load_explicit(&m->cur, memory_order_acquire);
    size_t len;
    char *v = xfcc_value(r, b->own_uri, &pc, &len);
    if (!v)
        return SLC_CONTINUE;
    slc_str_t old;
    if (m->xfcc == XF_APPEND_FORWARD &&
        slc_header_get(r, SLC_REQUEST_HEADERS, name, &old) == SLC_OK && old.len) {
        char *j = slc_arena_alloc(r, old.len + 1 + len);
        if (!j)
            return SLC_CONTINUE;
        memcpy(j, old.ptr, old.len);
        j[old.len] = ',';
        memcpy(j + old.len + 1, v, len);
        v = j;
        len += old.len + 1;
    }
    slc_header_set(r, SLC_REQUEST_HEADERS, name, (slc_str_t){v, len});
    return SLC_CONTINUE;
}

static slc_action_t on_upstream_connect(void *ctx, slc_req_t *r, slc_conn_t *up)
{
    mtls_t *m = ctx;
    if (!m->nup)
        return SLC_CONTINUE;
    const slc_cluster_t *cl = slc_host->route_cluster(r);
    const tls_bundle_t *b = atomic_load_explicit(&m->cur, memory_order_acquire);
    const tls_up_t *u = NULL;
    for (size_t i = 0; i < b->nup; i++)
        if (b->up[i].cluster == cl)
            u = &b->up[i];
    if (!u || u->mode == UM_DISABLE)
        return SLC_CONTINUE; /* auto mTLS: not in the mesh, plaintext */
    int wid = slc_host->req_worker(r);
    tls_worker_t *tw = wid >= 0 && wid < MTLS_MAX_WORKERS ? m->workers[wid] : NULL;
    void *t = tls_client_new(u, tw);
    if (!t)
        return SLC_STOP;
    if (slc_host->conn_set_transport(up, &tls_transport, t) != SLC_OK) {
        tls_transport.free(t);
        return SLC_STOP;
    }
    /* The ClientHello leaves now; the request waits in the transport until
     * the handshake is done. */
    if (tls_client_start(t, up) != SLC_OK)
        return SLC_STOP;
    return SLC_CONTINUE;
}

static const slc_filter_desc_t desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "mtls",
    .version = "0.1.0",
    .config_new = config_new,
    .config_free = config_free,
    .worker_init = worker_init,
    .worker_fini = worker_fini,
    .on_connection = on_connection,
    .on_request_headers = on_request_headers,
    .on_upstream_connect = on_upstream_connect,
};

SLC_FILTER_DEFINE(desc)
/* BoringSSL registers thread-local destructors: never unmap it. */
SLC_FILTER_NODELETE
