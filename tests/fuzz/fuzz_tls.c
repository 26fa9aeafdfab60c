/* fuzz_tls: the mtls filter's TLS record path (filters/mtls/tls.c) fed
 * arbitrary bytes as the peer's wire data, in every role the transport
 * plays: a STRICT server, a PERMISSIVE server (which sniffs the first
 * byte), a SIMPLE server, and an upstream client after its ClientHello.
 *
 * The host is a stub: conn_emit counts what the transport hands the core,
 * conn_transport_ready records the handshake. Contexts come from a
 * certificate this target makes at start-up (BoringSSL, in memory, written
 * to a private directory because tls_server_ctx reads files).
 *
 * Input: byte 0 picks the role, byte 1 the chunk size the wire bytes are cut
 * into (so records split across reads are exercised), the rest is wire.
 * Invariants: a failed transport stays failed and says why; plaintext is
 * only emitted after the handshake (or for a PERMISSIVE plaintext peer);
 * sending after failure is refused.
 */
#include "../../filters/mtls/tls.h"
#include "fuzz_check.h"

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const slc_host_t *slc_host;

static struct {
    size_t plain, wire;
    bool ready;
} seen;

static slc_status_t stub_emit(slc_conn_t *c, slc_emit_t dir, const uint8_t *p, size_t n)
{
    (void)c;
    (void)p;
    if (dir == SLC_EMIT_PLAIN)
        seen.plain += n;
    else
        seen.wire += n;
    return SLC_OK;
}

static void stub_ready(slc_conn_t *c)
{
    (void)c;
    seen.ready = true;
}

static void stub_metric(int w, slc_metric_t *m, int64_t v)
{
    (void)w;
    (void)m;
    (void)v;
}

static slc_host_t host = {
    .struct_size = sizeof(slc_host_t),
    .conn_emit = stub_emit,
    .conn_transport_ready = stub_ready,
    .metric_add_global = stub_metric,
};

static SSL_CTX *strict_ctx, *simple_ctx;
static tls_up_t up;
static tls_worker_t worker;
static SSL_SESSION *sess[1];

static void write_pem(const char *path, X509 *x, EVP_PKEY *k)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (x)
        CHECK(PEM_write_X509(f, x));
    if (k)
        CHECK(PEM_write_PrivateKey(f, k, NULL, NULL, 0, NULL, NULL));
    fclose(f);
}

/* make_cert: a self-signed P-256 certificate with a SPIFFE URI SAN. */
static void make_cert(const char *dir)
{
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    CHECK(ec && EC_KEY_generate_key(ec));
    EVP_PKEY *k = EVP_PKEY_new();
    CHECK(k && EVP_PKEY_assign_EC_KEY(k, ec));
    X509 *x = X509_new();
    CHECK(x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, name);
    X509_set_pubkey(x, k);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(
        NULL, &v3, NID_subject_alt_name, "URI:spiffe://cluster.local/ns/fuzz/sa/fuzz,DNS:fuzz");
    CHECK(ext);
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    CHECK(X509_sign(x, k, EVP_sha256()));
    char p[512];
    snprintf(p, sizeof(p), "%s/cert.pem", dir);
    write_pem(p, x, NULL);
    snprintf(p, sizeof(p), "%s/key.pem", dir);
    write_pem(p, NULL, k);
    X509_free(x);
    EVP_PKEY_free(k);
}

static void init(void)
{
    slc_host = &host;
    char dir[] = "/tmp/fuzz_tls.XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    make_cert(dir);
    char cert[600], key[600];
    snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
    snprintf(key, sizeof(key), "%s/key.pem", dir);
    tls_files_t f = {.chain = cert, .key = key, .ca = cert};
    tls_params_t prm = {
        .min_version = TLS1_2_VERSION, .max_version = TLS1_3_VERSION, .curves = "X25519:P-256"};
    char err[256];
    int64_t na;
    strict_ctx = tls_server_ctx(&f, &prm, true, &na, NULL, err, sizeof(err));
    simple_ctx = tls_server_ctx(&f, &prm, false, &na, NULL, err, sizeof(err));
    CHECK(strict_ctx && simple_ctx);
    tls_files_t cf = {.chain = cert, .key = key, .ca = cert};
    up.ctx = tls_client_ctx(&cf, &prm, true, err, sizeof(err));
    CHECK(up.ctx);
    up.mode = UM_ISTIO_MUTUAL;
    up.sni = "fuzz";
    worker.sess = sess;
    worker.nsess = 1;
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool inited;
    if (!inited) {
        init();
        inited = true;
    }
    if (size < 2)
        return 0;
    int role = data[0] % 4;
    size_t chunk = data[1] ? data[1] : 256;
    data += 2;
    size = size - 2;
    memset(&seen, 0, sizeof(seen));
    slc_conn_t *c = (slc_conn_t *)&seen; /* an opaque handle the stub ignores */
    void *t;
    if (role == 3) {
        t = tls_client_new(&up, &worker);
        CHECK(t);
        CHECK(tls_client_start(t, c) == SLC_OK);
        CHECK(seen.wire > 0); /* the ClientHello */
        /* The request head written before the handshake waits in the
         * transport: nothing may reach the wire in plaintext. */
        size_t before = seen.wire;
        CHECK(tls_transport.send(t, c, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18) == SLC_OK);
        CHECK(seen.wire == before);
    } else {
        t = tls_server_new(role == 2 ? simple_ctx : strict_ctx, role == 1, &worker);
        CHECK(t);
    }
    bool failed = false;
    for (size_t off = 0; off < size && !failed; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        size_t plain_before = seen.plain;
        bool ready_before = seen.ready;
        slc_status_t st = tls_transport.recv(t, c, data + off, n);
        if (st != SLC_OK) {
            CHECK(st == SLC_EIO);
            failed = true;
            slc_str_t why = tls_transport.failure_reason(t);
            CHECK(why.len > 0 && strncmp(why.ptr, "TLS_error:", 10) == 0);
            CHECK(tls_transport.recv(t, c, data + off, n) == SLC_EIO);
            CHECK(tls_transport.send(t, c, (const uint8_t *)"x", 1) == SLC_EIO);
        }
        if (seen.plain > plain_before)
            CHECK(ready_before || seen.ready);
    }
    if (seen.ready && !failed) {
        bool secure = tls_transport.secure(t);
        CHECK(secure || role == 1);
        slc_peer_cert_t pc = {.struct_size = sizeof(pc)};
        if (tls_peer_cert_of(t, &pc) == SLC_OK && pc.principal.len)
            CHECK(pc.spiffe_id.len == pc.principal.len + 9);
        tls_transport.send(t, c, (const uint8_t *)"HTTP/1.1 200 OK\r\n\r\n", 19);
        tls_transport.shutdown(t, c);
    }
    tls_transport.free(t);
    return 0;
}
