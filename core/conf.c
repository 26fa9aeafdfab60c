#include "conf.h"

#include "log.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct top {
    uint32_t workers;
    const slc_cfg_node_t *log, *admin, *filters, *clusters, *listeners, *dns;
    char *filter_dir;
    uint64_t drain_timeout_ms;
} top_t;

static const slc_cfg_field_t top_fields[] = {
    SLC_FIELD_U32("workers", top_t, workers, .min = 1, .max = 256),
    SLC_FIELD_NODE("log", top_t, log),
    SLC_FIELD_NODE("admin", top_t, admin),
    SLC_FIELD_STR("filter_dir", top_t, filter_dir),
    SLC_FIELD_DURATION("drain_timeout", top_t, drain_timeout_ms, .dflt = "10s", .max = 3600 * 1000),
    SLC_FIELD_NODE("filters", top_t, filters),
    SLC_FIELD_NODE("clusters", top_t, clusters),
    SLC_FIELD_NODE("listeners", top_t, listeners, .required = true),
    SLC_FIELD_NODE("dns", top_t, dns),
    SLC_FIELD_END,
};

static const char *const level_names[] = {"debug", "info", "warn", "error", NULL};
typedef struct logc {
    int level;
} logc_t;
static const slc_cfg_field_t log_fields[] = {
    SLC_FIELD_ENUM("level", logc_t, level, level_names, .dflt = "info"),
    SLC_FIELD_END,
};

typedef struct dnsc {
    const slc_cfg_node_t *nameservers;
} dnsc_t;
static const slc_cfg_field_t dns_fields[] = {
    SLC_FIELD_NODE("nameservers", dnsc_t, nameservers),
    SLC_FIELD_END,
};

typedef struct adminc {
    char *address;
} adminc_t;
static const slc_cfg_field_t admin_fields[] = {
    SLC_FIELD_STR("address", adminc_t, address, .dflt = "127.0.0.1:9901"),
    SLC_FIELD_END,
};

typedef struct filterc {
    char *name, *module;
    const slc_cfg_node_t *config;
} filterc_t;
static const slc_cfg_field_t filter_fields[] = {
    SLC_FIELD_STR("name", filterc_t, name, .required = true),
    SLC_FIELD_STR("module", filterc_t, module, .required = true),
    SLC_FIELD_NODE("config", filterc_t, config),
    SLC_FIELD_END,
};

typedef struct clusterc {
    char *name;
    const slc_cfg_node_t *endpoints, *health_check;
    uint64_t connect_timeout_ms, idle_timeout_ms, dns_refresh_ms;
    uint32_t max_idle;
    int resolution;
} clusterc_t;
static const char *const resolution_names[] = {"static", "dns", NULL};

typedef struct healthc {
    char *path, *host;
    uint64_t interval_ms, timeout_ms;
    uint32_t healthy, unhealthy;
} healthc_t;
static const slc_cfg_field_t health_fields[] = {
    SLC_FIELD_STR("path", healthc_t, path, .required = true),
    SLC_FIELD_STR("host", healthc_t, host),
    SLC_FIELD_DURATION("interval", healthc_t, interval_ms, .dflt = "5s", .min = 10,
                       .max = 3600 * 1000),
    SLC_FIELD_DURATION("timeout", healthc_t, timeout_ms, .dflt = "1s", .min = 1, .max = 60 * 1000),
    SLC_FIELD_U32("healthy_threshold", healthc_t, healthy, .dflt = "2", .min = 1, .max = 100),
    SLC_FIELD_U32("unhealthy_threshold", healthc_t, unhealthy, .dflt = "3", .min = 1, .max = 100),
    SLC_FIELD_END,
};
static const slc_cfg_field_t cluster_fields[] = {
    SLC_FIELD_STR("name", clusterc_t, name, .required = true),
    SLC_FIELD_NODE("endpoints", clusterc_t, endpoints, .required = true),
    /* Istio's defaults: connectTimeout 10s, idleTimeout 1h. */
    SLC_FIELD_DURATION("connect_timeout", clusterc_t, connect_timeout_ms, .dflt = "10s", .min = 1,
                       .max = 3600 * 1000),
    SLC_FIELD_DURATION("idle_timeout", clusterc_t, idle_timeout_ms, .dflt = "1h", .min = 1,
                       .max = 24 * 3600 * 1000),
    SLC_FIELD_U32("max_idle", clusterc_t, max_idle, .dflt = "64", .max = 65536),
    SLC_FIELD_NODE("health_check", clusterc_t, health_check),
    SLC_FIELD_ENUM("resolution", clusterc_t, resolution, resolution_names, .dflt = "static"),
    SLC_FIELD_DURATION("dns_refresh_rate", clusterc_t, dns_refresh_ms, .dflt = "5s", .min = 100,
                       .max = 24 * 3600 * 1000),
    SLC_FIELD_END,
};

static const char *const proto_names[] = {"http", "tcp", NULL};
typedef struct listenerc {
    char *name, *address;
    int protocol;
    const slc_cfg_node_t *chain;
    uint32_t max_request_line, max_header_bytes, max_headers;
    uint64_t header_timeout_ms, idle_timeout_ms;
    bool abort_on_client_close, use_remote_address;
    uint32_t xff_num_trusted_hops;
} listenerc_t;
static const slc_cfg_field_t listener_fields[] = {
    SLC_FIELD_STR("name", listenerc_t, name, .required = true),
    SLC_FIELD_STR("address", listenerc_t, address, .required = true),
    SLC_FIELD_ENUM("protocol", listenerc_t, protocol, proto_names, .dflt = "http"),
    SLC_FIELD_NODE("filter_chain", listenerc_t, chain),
    SLC_FIELD_U32("max_request_line", listenerc_t, max_request_line, .dflt = "8Ki", .min = 64,
                  .max = 1024 * 1024),
    SLC_FIELD_U32("max_header_bytes", listenerc_t, max_header_bytes, .dflt = "64Ki", .min = 256,
                  .max = 1024 * 1024),
    SLC_FIELD_U32("max_headers", listenerc_t, max_headers, .dflt = "100", .min = 1, .max = 1000),
    SLC_FIELD_DURATION("header_timeout", listenerc_t, header_timeout_ms, .dflt = "10s", .min = 1,
                       .max = 3600 * 1000),
    SLC_FIELD_DURATION("idle_timeout", listenerc_t, idle_timeout_ms, .dflt = "300s", .min = 1,
                       .max = 24 * 3600 * 1000),
    SLC_FIELD_BOOL("abort_on_client_close", listenerc_t, abort_on_client_close, .dflt = "true"),
    SLC_FIELD_BOOL("use_remote_address", listenerc_t, use_remote_address, .dflt = "true"),
    SLC_FIELD_U32("xff_num_trusted_hops", listenerc_t, xff_num_trusted_hops, .dflt = "0",
                  .max = 64),
    SLC_FIELD_END,
};

int conf_parse_address(const char *s, struct sockaddr_storage *out, int *out_len)
{
    char host[256];
    const char *colon;
    memset(out, 0, sizeof(*out));
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) >= sizeof(host))
            return -1;
        memcpy(host, s + 1, (size_t)(rb - s - 1));
        host[rb - s - 1] = '\0';
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof(host) || colon == s)
            return -1;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
    }
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || port < 0 || port > 65535)
        return -1;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    struct sockaddr_in *sin = (struct sockaddr_in *)out;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        *out_len = sizeof(*sin);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        *out_len = sizeof(*sin6);
        return 0;
    }
    return -1;
}

/* seq_of checks |n| is a sequence (or absent) and reports otherwise. */
static bool seq_of(slc_diag_t *d, const slc_cfg_node_t *n, const char *what)
{
    if (!n || cfg_type(n) == SLC_CFG_NULL)
        return true;
    if (cfg_type(n) != SLC_CFG_SEQ) {
        diag_errorf(d, n, "expected a list of %s", what);
        return false;
    }
    return true;
}

static char *resolve_dir(const char *base, const char *p)
{
    char *out;
    if (p[0] == '/') {
        out = strdup(p);
    } else if (asprintf(&out, "%s/%s", base, p) < 0) {
        out = NULL;
    }
    if (!out)
        abort();
    return out;
}

/* ---- the filter directory ------------------------------------------------ */

static char *default_filter_dir; /* malloc'd; NULL: SLUICE_DEFAULT_FILTER_DIR */

const char *conf_builtin_filter_dir(const char *exe)
{
    /* One binary file serves both the build tree and, copied, the install,
     * so only the file itself can tell which one is running. */
    struct stat a, b;
    if (exe && stat(exe, &a) == 0 && stat(SLUICE_BUILD_BINARY, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        return SLUICE_BUILD_FILTER_DIR;
    return SLUICE_DEFAULT_FILTER_DIR;
}

char *conf_pick_filter_dir(const char *flag, const char *env, const char *exe)
{
    const char *p = flag && *flag ? flag : env && *env ? env : NULL;
    if (!p)
        p = conf_builtin_filter_dir(exe);
    if (p[0] == '/') {
        char *out = strdup(p);
        if (!out)
            abort();
        return out;
    }
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        snprintf(cwd, sizeof(cwd), ".");
    return resolve_dir(cwd, p);
}

void conf_set_default_filter_dir(const char *dir)
{
    free(default_filter_dir);
    default_filter_dir = NULL;
    if (dir && !(default_filter_dir = strdup(dir)))
        abort();
}

const char *conf_default_filter_dir(void)
{
    return default_filter_dir ? default_filter_dir : SLUICE_DEFAULT_FILTER_DIR;
}

static void load_filters(conf_t *c, slc_diag_t *d, const slc_cfg_node_t *list)
{
    if (!seq_of(d, list, "filters"))
        return;
    size_t n = cfg_len(list);
    c->filters = cfg_tree_alloc(c->tree, (n ? n : 1) * sizeof(*c->filters));
    for (size_t i = 0; i < n; i++) {
        const slc_cfg_node_t *item = cfg_at(list, i);
        filterc_t fc = {0};
        if (cfg_bind(d, item, filter_fields, &fc) != SLC_OK)
            continue;
        for (size_t j = 0; j < c->nfilters; j++)
            if (strcmp(c->filters[j].name, fc.name) == 0)
                diag_errorf(d, cfg_get(item, "name"),
                            "duplicate filter name '%s' (first at line %u)", fc.name,
                            c->filters[j].node->line);
        conf_filter_t *f = &c->filters[c->nfilters++];
        f->name = fc.name;
        f->module = fc.module;
        f->config = fc.config;
        f->node = item;
    }
}

static void load_clusters(conf_t *c, slc_diag_t *d, const slc_cfg_node_t *list)
{
    if (!seq_of(d, list, "clusters"))
        return;
    size_t n = cfg_len(list);
    c->clusters = cfg_tree_alloc(c->tree, (n ? n : 1) * sizeof(*c->clusters));
    for (size_t i = 0; i < n; i++) {
        const slc_cfg_node_t *item = cfg_at(list, i);
        clusterc_t cc = {0};
        if (cfg_bind(d, item, cluster_fields, &cc) != SLC_OK)
            continue;
        for (size_t j = 0; j < c->nclusters; j++)
            if (strcmp(c->clusters[j].name, cc.name) == 0)
                diag_errorf(d, cfg_get(item, "name"),
                            "duplicate cluster name '%s' (first at line %u)", cc.name,
                            c->clusters[j].node->line);
        conf_cluster_t *cl = &c->clusters[c->nclusters++];
        cl->name = cc.name;
        cl->connect_timeout_ms = cc.connect_timeout_ms;
        cl->idle_timeout_ms = cc.idle_timeout_ms;
        cl->max_idle = cc.max_idle;
        cl->resolution = cc.resolution;
        cl->dns_refresh_ms = cc.dns_refresh_ms;
        if (cc.health_check && cfg_type(cc.health_check) != SLC_CFG_NULL) {
            healthc_t hc = {0};
            if (cfg_bind(d, cc.health_check, health_fields, &hc) == SLC_OK) {
                if (hc.path[0] != '/')
                    diag_errorf(d, cfg_get(cc.health_check, "path"),
                                "expected a path starting with '/', got '%s'", hc.path);
                if (hc.timeout_ms >= hc.interval_ms)
                    diag_errorf(d, cfg_get(cc.health_check, "timeout"),
                                "the timeout must be shorter than the interval");
                cl->hc.path = hc.path;
                cl->hc.host = hc.host;
                cl->hc.interval_ms = hc.interval_ms;
                cl->hc.timeout_ms = hc.timeout_ms;
                cl->hc.healthy_threshold = hc.healthy;
                cl->hc.unhealthy_threshold = hc.unhealthy;
            }
        }
        cl->node = item;
        cl->endpoints_node = cc.endpoints;
        if (cfg_type(cc.endpoints) != SLC_CFG_SEQ || cfg_len(cc.endpoints) == 0) {
            diag_errorf(d, cc.endpoints, "expected a non-empty list of \"ip:port\" endpoints");
            continue;
        }
        size_t ne = cfg_len(cc.endpoints);
        cl->endpoints = cfg_tree_alloc(c->tree, ne * sizeof(char *));
        for (size_t e = 0; e < ne; e++) {
            const slc_cfg_node_t *en = cfg_at(cc.endpoints, e);
            struct sockaddr_storage ss;
            int len;
            const char *text = cfg_type(en) == SLC_CFG_SCALAR ? cfg_scalar(en).ptr : NULL;
            char host[256];
            int port;
            if (cc.resolution == CONF_RES_DNS) {
                if (!text || conf_split_hostport(text, host, sizeof(host), &port) != 0) {
                    diag_errorf(d, en, "expected an endpoint \"host:port\", got '%s'",
                                text ? text : "(not a scalar)");
                    continue;
                }
            } else if (!text || conf_parse_address(text, &ss, &len) != 0) {
                if (text && conf_split_hostport(text, host, sizeof(host), &port) == 0)
                    diag_errorf(d, en,
                                "expected an endpoint \"ip:port\", got '%s' (a host name needs "
                                "'resolution: dns' on the cluster)",
                                text);
                else
                    diag_errorf(d, en, "expected an endpoint \"ip:port\", got '%s'",
                                text ? text : "(not a scalar)");
                continue;
            }
            cl->endpoints[cl->nendpoints++] = cfg_scalar(en).ptr;
        }
    }
}

static void load_listeners(conf_t *c, slc_diag_t *d, const slc_cfg_node_t *list)
{
    if (!seq_of(d, list, "listeners"))
        return;
    size_t n = cfg_len(list);
    if (n == 0 && list) /* absent: the binder already said "missing required key" */
        diag_errorf(d, list, "at least one listener is needed");
    c->listeners = cfg_tree_alloc(c->tree, (n ? n : 1) * sizeof(*c->listeners));
    for (size_t i = 0; i < n; i++) {
        const slc_cfg_node_t *item = cfg_at(list, i);
        listenerc_t lc = {0};
        if (cfg_bind(d, item, listener_fields, &lc) != SLC_OK)
            continue;
        struct sockaddr_storage ss;
        int len;
        if (conf_parse_address(lc.address, &ss, &len) != 0)
            diag_errorf(d, cfg_get(item, "address"), "expected an address \"ip:port\", got '%s'",
                        lc.address);
        for (size_t j = 0; j < c->nlisteners; j++) {
            if (strcmp(c->listeners[j].name, lc.name) == 0)
                diag_errorf(d, cfg_get(item, "name"), "duplicate listener name '%s'", lc.name);
            /* Compare what the addresses mean, not how they are spelled
             * ("localhost:80" is "127.0.0.1:80"): with SO_REUSEPORT both
             * would bind and silently split the connections. */
            struct sockaddr_storage other;
            int olen;
            if (conf_parse_address(c->listeners[j].address, &other, &olen) == 0 &&
                conf_parse_address(lc.address, &ss, &len) == 0 && olen == len &&
                memcmp(&other, &ss, (size_t)len) == 0)
                diag_errorf(d, cfg_get(item, "address"),
                            "address '%s' is already used by listener '%s'", lc.address,
                            c->listeners[j].name);
        }
        if (lc.protocol == CONF_PROTO_TCP)
            diag_errorf(d, cfg_get(item, "protocol"),
                        "protocol 'tcp' is not supported by this build yet (only 'http')");
        conf_listener_t *l = &c->listeners[c->nlisteners++];
        l->name = lc.name;
        l->address = lc.address;
        l->protocol = lc.protocol;
        l->chain_node = lc.chain;
        l->max_request_line = lc.max_request_line;
        l->max_header_bytes = lc.max_header_bytes;
        l->max_headers = lc.max_headers;
        l->header_timeout_ms = lc.header_timeout_ms;
        l->idle_timeout_ms = lc.idle_timeout_ms;
        l->abort_on_client_close = lc.abort_on_client_close;
        l->use_remote_address = lc.use_remote_address;
        l->xff_num_trusted_hops = lc.xff_num_trusted_hops;
        l->node = item;
        if (!seq_of(d, lc.chain, "filter instance names"))
            continue;
        size_t nc = cfg_len(lc.chain);
        l->chain = cfg_tree_alloc(c->tree, (nc ? nc : 1) * sizeof(char *));
        for (size_t k = 0; k < nc; k++) {
            const slc_cfg_node_t *fn = cfg_at(lc.chain, k);
            if (cfg_type(fn) != SLC_CFG_SCALAR) {
                diag_errorf(d, fn, "expected a filter instance name");
                continue;
            }
            const char *name = cfg_scalar(fn).ptr;
            if (!conf_find_filter(c, name)) {
                const char **names = malloc((c->nfilters + 1) * sizeof(char *));
                if (!names)
                    abort();
                for (size_t f = 0; f < c->nfilters; f++)
                    names[f] = c->filters[f].name;
                const char *hint = cfg_suggest(name, names, c->nfilters);
                if (hint)
                    diag_errorf(d, fn, "unknown filter '%s' (did you mean '%s'?)", name, hint);
                else
                    diag_errorf(d, fn, "unknown filter '%s': declare it under 'filters:'", name);
                free(names);
                continue;
            }
            for (size_t k2 = 0; k2 < l->nchain; k2++)
                if (strcmp(l->chain[k2], name) == 0)
                    diag_errorf(d, fn, "filter '%s' appears twice in the chain", name);
            l->chain[l->nchain++] = name;
        }
    }
}

conf_t *conf_load(const char *path, slc_diag_t *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_errorf(d, NULL, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (cap - len < 4096) {
            cap = cap ? cap * 2 : 16384;
            buf = realloc(buf, cap);
            if (!buf)
                abort();
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0)
            break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        diag_errorf(d, NULL, "cannot read '%s': %s", path, strerror(errno));
        free(buf);
        return NULL;
    }
    conf_t *c = conf_load_text(path, buf, len, d);
    free(buf);
    return c;
}

conf_t *conf_load_text(const char *path, const char *text, size_t len, slc_diag_t *d)
{
    conf_t *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->text = malloc(len + 1);
    if (!c->text)
        abort();
    memcpy(c->text, text, len);
    c->text[len] = '\0';
    c->text_len = len;
    c->tree = cfg_tree_load_string(path, c->text, len, d);
    d->tree = c->tree;
    c->path = strdup(path);
    char *slash = strrchr(c->path, '/');
    if (slash) {
        c->dir = strndup(c->path, (size_t)(slash - c->path));
        if (c->dir[0] == '\0') {
            free(c->dir);
            c->dir = strdup("/");
        }
    } else {
        c->dir = strdup(".");
    }
    if (!c->path || !c->dir)
        abort();
    const slc_cfg_node_t *root = cfg_tree_root(c->tree);
    if (d->nerrors)
        goto fail;
    if (cfg_type(root) != SLC_CFG_MAP) {
        diag_errorf(d, root, "the configuration must be a map with at least 'listeners:'");
        goto fail;
    }
    top_t top = {0};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    top.workers = ncpu > 0 ? (uint32_t)ncpu : 1;
    cfg_bind(d, root, top_fields, &top);
    c->workers = top.workers;
    c->drain_timeout_ms = top.drain_timeout_ms;

    logc_t lg = {.level = SLC_LOG_INFO};
    cfg_bind(d, top.log, log_fields, &lg);
    c->log_level = lg.level;
    adminc_t ad = {0};
    if (cfg_type(top.admin) == SLC_CFG_NULL)
        top.admin = NULL;
    cfg_bind(d, top.admin, admin_fields, &ad);
    c->admin_address = ad.address;
    struct sockaddr_storage ss;
    int sslen;
    if (c->admin_address && conf_parse_address(c->admin_address, &ss, &sslen) != 0)
        diag_errorf(d, cfg_get(top.admin, "address"), "expected an address \"ip:port\", got '%s'",
                    c->admin_address);

    c->filter_dir =
        top.filter_dir ? resolve_dir(c->dir, top.filter_dir) : strdup(conf_default_filter_dir());
    if (!c->filter_dir)
        abort();
    if (top.dns && cfg_type(top.dns) != SLC_CFG_NULL) {
        dnsc_t dc = {0};
        if (cfg_bind(d, top.dns, dns_fields, &dc) == SLC_OK && dc.nameservers) {
            if (cfg_type(dc.nameservers) != SLC_CFG_SEQ) {
                diag_errorf(d, dc.nameservers, "expected a list of \"ip[:port]\" nameservers");
            } else {
                size_t n = cfg_len(dc.nameservers);
                c->nameservers = cfg_tree_alloc(c->tree, (n ? n : 1) * sizeof(char *));
                for (size_t i = 0; i < n; i++) {
                    const slc_cfg_node_t *ns = cfg_at(dc.nameservers, i);
                    if (cfg_type(ns) != SLC_CFG_SCALAR)
                        diag_errorf(d, ns, "expected a nameserver \"ip[:port]\"");
                    else
                        c->nameservers[c->nnameservers++] = cfg_scalar(ns).ptr;
                }
            }
        }
    }
    load_filters(c, d, top.filters);
    load_clusters(c, d, top.clusters);
    load_listeners(c, d, top.listeners);
    if (d->nerrors == 0)
        return c;
fail:
    conf_free(c);
    return NULL;
}

void conf_free(conf_t *c)
{
    if (!c)
        return;
    cfg_tree_free(c->tree);
    free(c->text);
    free(c->path);
    free(c->dir);
    free(c->filter_dir);
    free(c);
}

int conf_split_hostport(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon;
    const char *h = s;
    size_t hl;
    if (*s == '[') {
        const char *rb = strchr(s, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = s + 1;
        hl = (size_t)(rb - s - 1);
        colon = rb + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - s);
    }
    if (hl == 0 || hl >= hostlen)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || p <= 0 || p > 65535)
        return -1;
    for (size_t i = 0; i < hl; i++)
        if (!(isalnum((unsigned char)h[i]) || h[i] == '-' || h[i] == '.' || h[i] == '_' ||
              h[i] == ':'))
            return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (int)p;
    return 0;
}

const char **conf_dns_names(const conf_t *c, size_t *n)
{
    size_t cap = 1;
    for (size_t i = 0; i < c->nclusters; i++)
        cap += c->clusters[i].nendpoints;
    const char **names = calloc(cap, sizeof(char *));
    char **hosts = calloc(cap, sizeof(char *));
    if (!names || !hosts)
        abort();
    *n = 0;
    for (size_t i = 0; i < c->nclusters; i++) {
        if (c->clusters[i].resolution != CONF_RES_DNS)
            continue;
        for (size_t e = 0; e < c->clusters[i].nendpoints; e++) {
            char host[256];
            int port;
            if (conf_split_hostport(c->clusters[i].endpoints[e], host, sizeof(host), &port) != 0)
                continue;
            bool dup = false;
            for (size_t k = 0; k < *n; k++)
                dup = dup || strcmp(names[k], host) == 0;
            if (dup)
                continue;
            hosts[*n] = cfg_tree_strdup(c->tree, host);
            names[*n] = hosts[*n];
            (*n)++;
        }
    }
    free(hosts);
    return names;
}

const conf_filter_t *conf_find_filter(const conf_t *c, const char *name)
{
    for (size_t i = 0; i < c->nfilters; i++)
        if (strcmp(c->filters[i].name, name) == 0)
            return &c->filters[i];
    return NULL;
}

const conf_cluster_t *conf_find_cluster(const conf_t *c, const char *name)
{
    for (size_t i = 0; i < c->nclusters; i++)
        if (strcmp(c->clusters[i].name, name) == 0)
            return &c->clusters[i];
    return NULL;
}
