/* tls: BoringSSL contexts and the memory-BIO transport. See tls.h. */
#include "tls.h"

#include <sluice/util.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *const tls_reason_names[FR_N] = {
    "plaintext",        "no_client_cert", "bad_certificate", "expired_certificate",
    "protocol_version", "san_mismatch",   "peer_alert",      "other",
};

/* The ALPN values a server accepts, in its order of preference. All of them
 * mean HTTP/1.1 to the core today; h2 and istio-h2 join with the protocols
 * work (the core chooses the codec from the negotiated value). */
static const char *const server_alpn[] = {
    "http/1.1", "istio-http/1.1", "istio-http/1.0", "istio", "istio-peer-exchange",
};
/* What an ISTIO_MUTUAL client offers (Istio's mesh values first). */
static const uint8_t istio_client_alpn[] = "\x0eistio-http/1.1\x05istio\x08http/1.1";
static const uint8_t plain_client_alpn[] = "\x08http/1.1";

/* ---- contexts ---------------------------------------------------------- */

static void last_error(char *err, size_t errlen, const char *what, const char *path)
{
    uint32_t e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(err, errlen, "%s '%s': %s", what, path, r ? r : (errno ? strerror(errno) : "failed"));
    ERR_clear_error();
}

static bool read_file(const char *path, uint8_t **out, size_t *outlen)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    size_t cap = 4096, n = 0;
    uint8_t *b = malloc(cap);
    while (b) {
        size_t k = fread(b + n, 1, cap - n, f);
        n += k;
        if (n < cap)
            break;
        uint8_t *nb = cap < (1u << 24) ? realloc(b, cap * 2) : NULL;
        if (!nb) {
            free(b);
            b = NULL;
            break;
        }
        b = nb;
        cap *= 2;
    }
    bool ok = b && !ferror(f);
    fclose(f);
    if (!ok) {
        free(b);
        return false;
    }
    *out = b;
    *outlen = n;
    return true;
}

/* asn1_unix: the Unix time of |t| (a certificate's notBefore or notAfter),
 * 0 when it cannot be read. */
static int64_t asn1_unix(const ASN1_TIME *t)
{
    int days = 0, secs = 0;
    if (!ASN1_TIME_diff(&days, &secs, NULL, t))
        return 0;
    return (int64_t)time(NULL) + (int64_t)days * 86400 + secs;
}

/* first_uri_san: the first URI SAN of |x|, malloc'd, or NULL. */
static char *first_uri_san(X509 *x)
{
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    char *out = NULL;
    for (size_t i = 0; g && i < sk_GENERAL_NAME_num(g) && !out; i++) {
        const GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
        if (n->type == GEN_URI) {
            const ASN1_STRING *s = n->d.uniformResourceIdentifier;
            out = strndup((const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
        }
    }
    GENERAL_NAMES_free(g);
    return out;
}

static int alpn_select(SSL *ssl, const uint8_t **out, uint8_t *outlen, const uint8_t *in,
                       unsigned inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (size_t k = 0; k < sizeof(server_alpn) / sizeof(server_alpn[0]); k++) {
        size_t want = strlen(server_alpn[k]);
        for (unsigned i = 0; i < inlen;) {
            unsigned l = in[i];
            if (i + 1 + l > inlen)
                return SSL_TLSEXT_ERR_NOACK;
            if (l == want && memcmp(in + i + 1, server_alpn[k], l) == 0) {
                *out = in + i + 1;
                *outlen = (uint8_t)l;
                return SSL_TLSEXT_ERR_OK;
            }
            i += 1 + l;
        }
    }
    /* No common protocol: go on without ALPN (RFC 7301 allows it); the
     * core then speaks HTTP/1.1, as to a client that offered nothing. */
    return SSL_TLSEXT_ERR_NOACK;
}

static bool apply_params(SSL_CTX *ctx, const tls_params_t *p, char *err, size_t errlen)
{
    if (!SSL_CTX_set_min_proto_version(ctx, p->min_version) ||
        !SSL_CTX_set_max_proto_version(ctx, p->max_version)) {
        snprintf(err, errlen, "unsupported protocol version range");
        return false;
    }
    if (p->ciphers && !SSL_CTX_set_strict_cipher_list(ctx, p->ciphers)) {
        last_error(err, errlen, "cipher_suites", p->ciphers);
        return false;
    }
    if (p->curves && !SSL_CTX_set1_curves_list(ctx, p->curves)) {
        last_error(err, errlen, "ecdh_curves", p->curves);
        return false;
    }
    return true;
}

static bool load_pair(SSL_CTX *ctx, const tls_files_t *f, int64_t *not_after, char **own_uri,
                      char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    if (!SSL_CTX_use_certificate_chain_file(ctx, f->chain)) {
        last_error(err, errlen, "cannot load certificate chain", f->chain);
        return false;
    }
    if (!SSL_CTX_use_PrivateKey_file(ctx, f->key, SSL_FILETYPE_PEM)) {
        if (ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH) {
            snprintf(err, errlen, "private key '%s' does not match certificate '%s'", f->key,
                     f->chain);
            ERR_clear_error();
        } else {
            last_error(err, errlen, "cannot load private key", f->key);
        }
        return false;
    }
    if (!SSL_CTX_check_private_key(ctx)) {
        snprintf(err, errlen, "private key '%s' does not match certificate '%s'", f->key, f->chain);
        ERR_clear_error();
        return false;
    }
    X509 *leaf = SSL_CTX_get0_certificate(ctx);
    if (not_after)
        *not_after = leaf ? asn1_unix(X509_get0_notAfter(leaf)) : 0;
    if (own_uri)
        *own_uri = leaf ? first_uri_san(leaf) : NULL;
    return true;
}

static bool load_ca(SSL_CTX *ctx, const char *ca, char *err, size_t errlen)
{
    ERR_clear_error();
    errno = 0;
    if (!SSL_CTX_load_verify_locations(ctx, ca, NULL)) {
        last_error(err, errlen, "cannot load CA certificates", ca);
        return false;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names);
    ERR_clear_error();
    return true;
}

SSL_CTX *tls_server_ctx(const tls_files_t *f, const tls_params_t *p, bool verify_client,
                        int64_t *not_after, char **own_uri, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!apply_params(ctx, p, err, errlen) || !load_pair(ctx, f, not_after, own_uri, err, errlen))
        goto fail;
    if (verify_client) {
        if (!f->ca) {
            snprintf(err, errlen, "client certificates are required but no CA is configured");
            goto fail;
        }
        if (!load_ca(ctx, f->ca, err, errlen))
            goto fail;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    if (f->ocsp) {
        uint8_t *der;
        size_t n;
        if (!read_file(f->ocsp, &der, &n)) {
            snprintf(err, errlen, "cannot read OCSP response '%s': %s", f->ocsp, strerror(errno));
            goto fail;
        }
        int ok = SSL_CTX_set_ocsp_response(ctx, der, n);
        free(der);
        if (!ok) {
            snprintf(err, errlen, "cannot staple OCSP response '%s'", f->ocsp);
            goto fail;
        }
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    /* Resumption: stateless tickets, whose keys BoringSSL rotates itself
     * (a new key every day or two, the previous one still accepted). No
     * stateful server cache: it would be one locked table for all workers. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    static const uint8_t sid_ctx[] = "sluice-mtls";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    if (own_uri) {
        free(*own_uri);
        *own_uri = NULL;
    }
    return NULL;
}

static int client_new_session(SSL *ssl, SSL_SESSION *sess);

SSL_CTX *tls_client_ctx(const tls_files_t *f, const tls_params_t *p, bool istio_alpn, char *err,
                        size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    if (!ctx) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!apply_params(ctx, p, err, errlen))
        goto fail;
    if (f->chain && f->key && !load_pair(ctx, f, NULL, NULL, err, errlen))
        goto fail;
    if (f->ca) {
        if (!load_ca(ctx, f->ca, err, errlen))
            goto fail;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (istio_alpn)
        SSL_CTX_set_alpn_protos(ctx, istio_client_alpn, sizeof(istio_client_alpn) - 1);
    else
        SSL_CTX_set_alpn_protos(ctx, plain_client_alpn, sizeof(plain_client_alpn) - 1);
    /* Sessions are cached per worker (tls_worker_t.sess), never in the
     * context's shared, locked table. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    SSL_CTX_sess_set_new_cb(ctx, client_new_session);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

void tls_bundle_free(tls_bundle_t *b)
{
    while (b) {
        tls_bundle_t *older = b->older;
        SSL_CTX_free(b->dflt);
        for (size_t i = 0; i < b->nsrv; i++) {
            for (size_t k = 0; k < b->srv[i].nhosts; k++)
                free(b->srv[i].hosts[k]);
            free(b->srv[i].hosts);
            SSL_CTX_free(b->srv[i].ctx);
        }
        free(b->srv);
        for (size_t i = 0; i < b->nup; i++) {
            SSL_CTX_free(b->up[i].ctx);
            free(b->up[i].sni);
            for (size_t k = 0; k < b->up[i].nsans; k++)
                free(b->up[i].sans[k]);
            free(b->up[i].sans);
        }
        free(b->up);
        free(b->own_uri);
        free(b);
        b = older;
    }
}

bool tls_host_match(const char *pattern, const char *name, size_t len)
{
    if (pattern[0] == '*' && pattern[1] == '.') {
        /* "*.example.com" covers any name ending in ".example.com" with at
         * least one label before it (Gateway hosts wildcards). */
        size_t pl = strlen(pattern) - 1; /* ".example.com" */
        if (len <= pl)
            return false;
        return strncasecmp(name + len - pl, pattern + 1, pl) == 0;
    }
    if (pattern[0] == '*' && pattern[1] == 0)
        return true;
    return strlen(pattern) == len && strncasecmp(pattern, name, len) == 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const tls_bundle_t *b = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name)
        return SSL_TLSEXT_ERR_OK;
    size_t len = strlen(name);
    /* Exact names win over wildcards, as for Gateway hosts. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < b->nsrv; i++) {
            for (size_t k = 0; k < b->srv[i].nhosts; k++) {
                const char *p = b->srv[i].hosts[k];
                if ((p[0] == '*') != (pass == 1))
                    continue;
                if (tls_host_match(p, name, len)) {
                    SSL_CTX *ctx = b->srv[i].ctx;
                    SSL_set_SSL_CTX(ssl, ctx);
                    /* SSL_set_SSL_CTX moves the certificate only: take the
                     * server's verification settings too. */
                    SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), NULL);
                    SSL_set1_verify_cert_store(ssl, SSL_CTX_get_cert_store(ctx));
                    return SSL_TLSEXT_ERR_OK;
                }
            }
        }
    }
    return SSL_TLSEXT_ERR_OK; /* unknown name: the default certificate */
}

void tls_bundle_link_sni(tls_bundle_t *b)
{
    if (b->dflt && b->nsrv) {
        SSL_CTX_set_tlsext_servername_callback(b->dflt, on_servername);
        SSL_CTX_set_tlsext_servername_arg(b->dflt, b);
    }
}

/* ---- the transport ------------------------------------------------------ */

enum { ST_SNIFF, ST_HS, ST_OPEN, ST_PLAIN, ST_DEAD };

typedef struct tconn {
    SSL *ssl; /* owns its two memory BIOs */
    BIO *wb;  /* borrowed from ssl: what TLS wants to send */
    tls_worker_t *w;
    const tls_up_t *up; /* client side: the origination entry */
    uint8_t state;
    bool server, permissive;
    /* plaintext the core sent before the handshake finished (client side) */
    uint8_t *pending;
    size_t npending, cpending;
    /* The peer certificate's facts, computed once at handshake: |blob| owns
     * every string the slc_peer_cert_t points at. */
    bool has_cert;
    slc_peer_cert_t pc;
    char *blob;
    slc_str_t *sans; /* uri sans then dns sans, views into blob */
    char reason[96];
} tconn_t;

static void metric(tconn_t *t, slc_metric_t *m)
{
    if (t->w && m)
        slc_host->metric_add_global(t->w->wid, m, 1);
}

static slc_status_t flush_wire(tconn_t *t, slc_conn_t *c)
{
    const uint8_t *p;
    size_t n;
    if (!BIO_mem_contents(t->wb, &p, &n) || n == 0)
        return SLC_OK;
    slc_status_t st = slc_host->conn_emit(c, SLC_EMIT_WIRE, p, n);
    BIO_reset(t->wb);
    return st;
}

static int classify(tconn_t *t, uint32_t e)
{
    int lib = ERR_GET_LIB(e), r = ERR_GET_REASON(e);
    if (lib == ERR_LIB_SSL) {
        switch (r) {
        case SSL_R_HTTP_REQUEST:
        case SSL_R_HTTPS_PROXY_REQUEST:
        case SSL_R_WRONG_VERSION_NUMBER:
            return t->server ? FR_PLAINTEXT : FR_OTHER;
        case SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE:
            return FR_NO_CERT;
        case SSL_R_CERTIFICATE_VERIFY_FAILED: {
            long v = SSL_get_verify_result(t->ssl);
            return v == X509_V_ERR_CERT_HAS_EXPIRED || v == X509_V_ERR_CERT_NOT_YET_VALID
                       ? FR_EXPIRED
                       : FR_BAD_CERT;
        }
        case SSL_R_UNSUPPORTED_PROTOCOL:
        case SSL_R_TLSV1_ALERT_PROTOCOL_VERSION:
            return FR_VERSION;
        default:
            if (r >= SSL_R_SSLV3_ALERT_CLOSE_NOTIFY && r < SSL_R_SSLV3_ALERT_CLOSE_NOTIFY + 256)
                return FR_PEER_ALERT;
            return FR_OTHER;
        }
    }
    return FR_OTHER;
}

/* fail ends the connection's TLS: the reason is kept for failure_reason,
 * counted, and any alert BoringSSL wrote is sent. */
static slc_status_t fail(tconn_t *t, slc_conn_t *c, int fr, const char *detail)
{
    if (t->state == ST_DEAD)
        return SLC_EIO;
    uint32_t e = ERR_peek_last_error();
    if (fr < 0)
        fr = e ? classify(t, e) : FR_OTHER;
    const char *r = detail ? detail : (e ? ERR_reason_error_string(e) : NULL);
    snprintf(t->reason, sizeof(t->reason), "TLS_error:%s", r ? r : tls_reason_names[fr]);
    ERR_clear_error();
    if (t->w)
        metric(t, t->w->m_fail[fr]);
    flush_wire(t, c);
    t->state = ST_DEAD;
    return SLC_EIO;
}

static bool has_prefix(const char *p, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && memcmp(p, pre, k) == 0;
}

/* collect_cert computes the peer facts once; the strings live in one block. */
static void collect_cert(tconn_t *t)
{
    X509 *x = SSL_get_peer_certificate(t->ssl);
    if (!x)
        return;
    GENERAL_NAMES *g = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    size_t nsan = g ? sk_GENERAL_NAME_num(g) : 0, need = 0;
    for (size_t i = 0; i < nsan; i++) {
        const GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
        if (n->type == GEN_URI || n->type == GEN_DNS)
            need += (size_t)ASN1_STRING_length(n->type == GEN_URI ? n->d.uniformResourceIdentifier
                                                                  : n->d.dNSName) +
                    1;
    }
    BIO *sb = BIO_new(BIO_s_mem()), *pb = BIO_new(BIO_s_mem());
    const uint8_t *subj = NULL, *pem = NULL;
    size_t nsubj = 0, npem = 0;
    if (sb && X509_NAME_print_ex(sb, X509_get_subject_name(x), 0, XN_FLAG_RFC2253) >= 0)
        BIO_mem_contents(sb, &subj, &nsubj);
    if (pb && PEM_write_bio_X509(pb, x))
        BIO_mem_contents(pb, &pem, &npem);
    need += nsubj + 1 + npem + 1 + 65 + 10;
    t->blob = malloc(need);
    t->sans = calloc(nsan ? nsan : 1, sizeof(slc_str_t));
    if (!t->blob || !t->sans)
        goto out;
    char *o = t->blob;
    size_t nuri = 0, ndns = 0;
    /* URI SANs first, then DNS SANs, in one array. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < nsan; i++) {
            const GENERAL_NAME *n = sk_GENERAL_NAME_value(g, i);
            if (n->type != (pass == 0 ? GEN_URI : GEN_DNS))
                continue;
            const ASN1_STRING *s = pass == 0 ? n->d.uniformResourceIdentifier : n->d.dNSName;
            size_t l = (size_t)ASN1_STRING_length(s);
            memcpy(o, ASN1_STRING_get0_data(s), l);
            o[l] = 0;
            t->sans[nuri + ndns] = (slc_str_t){o, l};
            o += l + 1;
            if (pass == 0)
                nuri++;
            else
                ndns++;
        }
    }
    slc_peer_cert_t *pc = &t->pc;
    pc->struct_size = sizeof(*pc);
    pc->uri_sans = t->sans;
    pc->nuri_sans = (uint32_t)nuri;
    pc->dns_sans = t->sans + nuri;
    pc->ndns_sans = (uint32_t)ndns;
    /* Istio: exactly one spiffe:// URI SAN gives the principal. */
    size_t nspiffe = 0, which = 0;
    for (size_t i = 0; i < nuri; i++)
        if (has_prefix(t->sans[i].ptr, t->sans[i].len, "spiffe://")) {
            nspiffe++;
            which = i;
        }
    if (nspiffe == 1) {
        slc_str_t id = t->sans[which];
        pc->spiffe_id = id;
        pc->principal = (slc_str_t){id.ptr + 9, id.len - 9};
        slcu_principal_parts(pc->principal, &pc->trust_domain, &pc->ns);
    }
    memcpy(o, subj ? (const char *)subj : "", nsubj);
    o[nsubj] = 0;
    pc->subject = (slc_str_t){o, nsubj};
    o += nsubj + 1;
    memcpy(o, pem ? (const char *)pem : "", npem);
    o[npem] = 0;
    pc->pem = (slc_str_t){o, npem};
    o += npem + 1;
    uint8_t md[32];
    unsigned mdlen = 0;
    if (X509_digest(x, EVP_sha256(), md, &mdlen) && mdlen == 32) {
        static const char hex[] = "0123456789abcdef";
        for (unsigned i = 0; i < 32; i++) {
            o[2 * i] = hex[md[i] >> 4];
            o[2 * i + 1] = hex[md[i] & 15];
        }
        o[64] = 0;
        pc->sha256_hex = (slc_str_t){o, 64};
    }
    pc->not_before = asn1_unix(X509_get0_notBefore(x));
    pc->not_after = asn1_unix(X509_get0_notAfter(x));
    t->has_cert = true;
out:
    BIO_free(sb);
    BIO_free(pb);
    GENERAL_NAMES_free(g);
    X509_free(x);
}

/* san_ok: the upstream's certificate carries one of the expected SANs. */
static bool san_ok(const tconn_t *t)
{
    if (!t->up || t->up->nsans == 0)
        return true;
    if (!t->has_cert)
        return false;
    size_t n = t->pc.nuri_sans + t->pc.ndns_sans;
    for (size_t i = 0; i < t->up->nsans; i++)
        for (size_t k = 0; k < n; k++)
            if (strlen(t->up->sans[i]) == t->sans[k].len &&
                memcmp(t->up->sans[i], t->sans[k].ptr, t->sans[k].len) == 0)
                return true;
    return false;
}

static slc_status_t tls_write(tconn_t *t, slc_conn_t *c, const uint8_t *p, size_t n)
{
    while (n) {
        int k = n > (1u << 30) ? (1 << 30) : (int)n;
        int r = SSL_write(t->ssl, p, k);
        if (r <= 0)
            return fail(t, c, -1, NULL);
        p += r;
        n -= (size_t)r;
    }
    return SLC_OK;
}

/* pump advances the handshake and decrypts what arrived. */
static slc_status_t pump(tconn_t *t, slc_conn_t *c)
{
    if (t->state == ST_HS) {
        int r = SSL_do_handshake(t->ssl);
        if (r != 1) {
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                return flush_wire(t, c);
            return fail(t, c, -1, NULL);
        }
        t->state = ST_OPEN;
        collect_cert(t);
        if (!t->server && !san_ok(t))
            return fail(t, c, FR_SAN_MISMATCH, "SAN_MISMATCH");
        if (t->w) {
            metric(t, t->w->m_hs[t->server ? 0 : 1]);
            if (SSL_session_reused(t->ssl))
                metric(t, t->w->m_resumed[t->server ? 0 : 1]);
        }
        slc_host->conn_transport_ready(c);
        if (t->npending) {
            slc_status_t st = tls_write(t, c, t->pending, t->npending);
            free(t->pending);
            t->pending = NULL;
            t->npending = t->cpending = 0;
            if (st != SLC_OK)
                return st;
        }
    }
    if (t->state == ST_OPEN) {
        uint8_t buf[16384];
        for (;;) {
            int r = SSL_read(t->ssl, buf, sizeof(buf));
            if (r > 0) {
                slc_status_t st = slc_host->conn_emit(c, SLC_EMIT_PLAIN, buf, (size_t)r);
                if (st != SLC_OK)
                    return st;
                continue;
            }
            int e = SSL_get_error(t->ssl, r);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
                break;
            if (e == SSL_ERROR_ZERO_RETURN)
                break; /* close_notify: the socket's EOF follows */
            return fail(t, c, -1, NULL);
        }
    }
    return flush_wire(t, c);
}

static slc_status_t t_recv(void *ctx, slc_conn_t *c, const uint8_t *wire, size_t len)
{
    tconn_t *t = ctx;
    if (t->state == ST_SNIFF && len) {
        /* PERMISSIVE: a TLS connection starts with a handshake record
         * (content type 22); anything else is a plaintext client. */
        if (t->permissive && wire[0] != 0x16) {
            t->state = ST_PLAIN;
            if (t->w)
                metric(t, t->w->m_plain);
            SSL_free(t->ssl);
            t->ssl = NULL;
            t->wb = NULL;
            slc_host->conn_transport_ready(c);
        } else {
            t->state = ST_HS;
        }
    }
    if (t->state == ST_PLAIN)
        return slc_host->conn_emit(c, SLC_EMIT_PLAIN, wire, len);
    if (t->state == ST_DEAD)
        return SLC_EIO;
    if (len && BIO_write(SSL_get_rbio(t->ssl), wire, (int)len) != (int)len)
        return fail(t, c, FR_OTHER, "OUT_OF_MEMORY");
    return pump(t, c);
}

static slc_status_t t_send(void *ctx, slc_conn_t *c, const uint8_t *plain, size_t len)
{
    tconn_t *t = ctx;
    if (t->state == ST_PLAIN)
        return slc_host->conn_emit(c, SLC_EMIT_WIRE, plain, len);
    if (t->state == ST_DEAD)
        return SLC_EIO;
    if (t->state != ST_OPEN) {
        /* The request head of a new upstream connection arrives before the
         * handshake is done: hold it until then. */
        if (t->npending + len > t->cpending) {
            size_t cap = t->cpending ? t->cpending : 4096;
            while (cap < t->npending + len)
                cap *= 2;
            uint8_t *p = realloc(t->pending, cap);
            if (!p)
                return fail(t, c, FR_OTHER, "OUT_OF_MEMORY");
            t->pending = p;
            t->cpending = cap;
        }
        memcpy(t->pending + t->npending, plain, len);
        t->npending += len;
        return SLC_OK;
    }
    slc_status_t st = tls_write(t, c, plain, len);
    if (st != SLC_OK)
        return st;
    return flush_wire(t, c);
}

static void t_shutdown(void *ctx, slc_conn_t *c)
{
    tconn_t *t = ctx;
    if (t->state != ST_OPEN)
        return;
    SSL_shutdown(t->ssl);
    flush_wire(t, c);
}

static void t_free(void *ctx)
{
    tconn_t *t = ctx;
    SSL_free(t->ssl);
    free(t->pending);
    free(t->blob);
    free(t->sans);
    free(t);
}

static slc_str_t t_identity(void *ctx)
{
    tconn_t *t = ctx;
    return t->has_cert ? t->pc.spiffe_id : SLC_STR_NULL;
}

static slc_str_t t_sni(void *ctx)
{
    tconn_t *t = ctx;
    if (!t->ssl || t->state != ST_OPEN)
        return SLC_STR_NULL;
    const char *n = SSL_get_servername(t->ssl, TLSEXT_NAMETYPE_host_name);
    return n ? (slc_str_t){n, strlen(n)} : SLC_STR_NULL;
}

static slc_str_t t_alpn(void *ctx)
{
    tconn_t *t = ctx;
    if (!t->ssl || t->state != ST_OPEN)
        return SLC_STR_NULL;
    const uint8_t *p;
    unsigned n;
    SSL_get0_alpn_selected(t->ssl, &p, &n);
    return n ? (slc_str_t){(const char *)p, n} : SLC_STR_NULL;
}

slc_status_t tls_peer_cert_of(void *ctx, slc_peer_cert_t *out)
{
    tconn_t *t = ctx;
    if (!t->has_cert)
        return SLC_ENOENT;
    size_t n =
        out->struct_size && out->struct_size < sizeof(*out) ? out->struct_size : sizeof(*out);
    memcpy(out, &t->pc, n);
    out->struct_size = (uint32_t)n;
    return SLC_OK;
}

static bool t_secure(void *ctx)
{
    return ((tconn_t *)ctx)->state != ST_PLAIN;
}

static slc_str_t t_reason(void *ctx)
{
    tconn_t *t = ctx;
    return t->reason[0] ? (slc_str_t){t->reason, strlen(t->reason)} : SLC_STR_NULL;
}

const slc_transport_t tls_transport = {
    .struct_size = sizeof(slc_transport_t),
    .recv = t_recv,
    .send = t_send,
    .shutdown = t_shutdown,
    .free = t_free,
    .peer_identity = t_identity,
    .sni = t_sni,
    .alpn = t_alpn,
    .peer_cert = tls_peer_cert_of,
    .secure = t_secure,
    .failure_reason = t_reason,
};

static tconn_t *tconn_new(SSL_CTX *ctx, tls_worker_t *w)
{
    tconn_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->ssl = SSL_new(ctx);
    BIO *rb = BIO_new(BIO_s_mem()), *wb = BIO_new(BIO_s_mem());
    if (!t->ssl || !rb || !wb) {
        BIO_free(rb);
        BIO_free(wb);
        SSL_free(t->ssl);
        free(t);
        return NULL;
    }
    /* An empty read BIO means "wait for more", not EOF. */
    BIO_set_mem_eof_return(rb, -1);
    SSL_set_bio(t->ssl, rb, wb);
    SSL_set_app_data(t->ssl, t);
    t->wb = wb;
    t->w = w;
    return t;
}

void *tls_server_new(SSL_CTX *ctx, bool permissive, tls_worker_t *w)
{
    tconn_t *t = tconn_new(ctx, w);
    if (!t)
        return NULL;
    t->server = true;
    t->permissive = permissive;
    t->state = ST_SNIFF;
    SSL_set_accept_state(t->ssl);
    return t;
}

void *tls_client_new(const tls_up_t *up, tls_worker_t *w)
{
    tconn_t *t = tconn_new(up->ctx, w);
    if (!t)
        return NULL;
    t->up = up;
    t->state = ST_HS;
    SSL_set_connect_state(t->ssl);
    if (up->sni)
        SSL_set_tlsext_host_name(t->ssl, up->sni);
    if (w && up->idx < w->nsess && w->sess[up->idx])
        SSL_set_session(t->ssl, w->sess[up->idx]);
    return t;
}

slc_status_t tls_client_start(void *ctx, slc_conn_t *c)
{
    return pump(ctx, c);
}

/* A client session (or TLS 1.3 ticket) arrived: keep it in the worker's
 * cache for the next connection to that upstream. */
static int client_new_session(SSL *ssl, SSL_SESSION *sess)
{
    tconn_t *t = SSL_get_app_data(ssl);
    if (!t || !t->w || !t->up || t->up->idx >= t->w->nsess)
        return 0;
    SSL_SESSION **slot = &t->w->sess[t->up->idx];
    SSL_SESSION_free(*slot);
    *slot = sess;
    return 1; /* we took the reference */
}
