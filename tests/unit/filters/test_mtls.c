/* Unit tests of the mtls filter against the fake host: config binding and
 * its errors, and real TLS handshakes between a server transport (installed
 * by on_connection) and a client transport (installed by
 * on_upstream_connect), with the wire bytes carried between two fake
 * connections by the test. Certificates are made here with BoringSSL: a CA,
 * a second CA, leaves with SPIFFE URI SANs, an expired leaf. */
#include "fake_host.h"
#include "tls.h"

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

static char dir[64];

/* ---- certificates ---------------------------------------------------------- */

typedef struct pki {
    X509 *cert;
    EVP_PKEY *key;
} pki_t;

static EVP_PKEY *new_key(void)
{
    EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
    assert_non_null(ec);
    assert_true(EC_KEY_generate_key(ec));
    EVP_PKEY *k = EVP_PKEY_new();
    assert_true(EVP_PKEY_assign_EC_KEY(k, ec));
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_nconf_nid(NULL, &v3, nid, value);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
}

/* make_cert signs a certificate for |cn| with |ca| (NULL: self-signed CA).
 * |san| is an X509v3 subjectAltName value or NULL; validity is
 * [now+from_s, now+to_s]. */
static pki_t make_cert(const pki_t *ca, const char *cn, const char *san, long from_s, long to_s)
{
    static long serial = 1;
    pki_t p = {X509_new(), new_key()};
    X509_set_version(p.cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(p.cert), serial++);
    X509_gmtime_adj(X509_getm_notBefore(p.cert), from_s);
    X509_gmtime_adj(X509_getm_notAfter(p.cert), to_s);
    X509_NAME *n = X509_get_subject_name(p.cert);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const uint8_t *)cn, -1, -1, 0);
    X509_set_issuer_name(p.cert, ca ? X509_get_subject_name(ca->cert) : n);
    X509_set_pubkey(p.cert, p.key);
    X509 *issuer = ca ? ca->cert : p.cert;
    if (!ca)
        add_ext(p.cert, issuer, NID_basic_constraints, "critical,CA:TRUE");
    if (san)
        add_ext(p.cert, issuer, NID_subject_alt_name, san);
    assert_true(X509_sign(p.cert, ca ? ca->key : p.key, EVP_sha256()));
    return p;
}

static void pki_free(pki_t *p)
{
    X509_free(p->cert);
    EVP_PKEY_free(p->key);
}

/* write writes |p| as <name>.pem and <name>.key (and, with |ca|, the chain
 * file holds the leaf only: the CA is the trust anchor). */
static void write_pki(const pki_t *p, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_true(PEM_write_X509(f, p->cert));
    fclose(f);
    snprintf(path, sizeof(path), "%s/%s.key", dir, name);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_true(PEM_write_PrivateKey(f, p->key, NULL, NULL, 0, NULL, NULL));
    fclose(f);
}

static const char *path_of(const char *name, const char *ext)
{
    static char buf[8][128];
    static int i;
    char *b = buf[i++ % 8];
    snprintf(b, 128, "%s/%s.%s", dir, name, ext);
    return b;
}

/* An Istio-layout directory <dir>/<name>/ for leaf |leaf| under CA |ca|. */
static const char *istio_dir(const char *name, const char *leaf, const char *ca)
{
    static char d[4][128];
    static int i;
    char *b = d[i++ % 4];
    snprintf(b, 128, "%s/%s", dir, name);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "mkdir -p %s && cp %s %s/cert-chain.pem && cp %s %s/key.pem && cp %s "
             "%s/root-cert.pem",
             b, path_of(leaf, "pem"), b, path_of(leaf, "key"), b, path_of(ca, "pem"), b);
    assert_int_equal(system(cmd), 0);
    return b;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_mtls.XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    pki_t ca = make_cert(NULL, "ca", NULL, -3600, 86400);
    pki_t other = make_cert(NULL, "other-ca", NULL, -3600, 86400);
    write_pki(&ca, "ca");
    write_pki(&other, "other");
    struct {
        const char *name, *san;
        const pki_t *ca;
        long from, to;
    } leaves[] = {
        {"b", "URI:spiffe://cluster.local/ns/shop/sa/b,DNS:b.shop", &ca, -3600, 86400},
        {"a", "URI:spiffe://cluster.local/ns/shop/sa/a,DNS:a.shop,DNS:a2.shop", &ca, -3600, 86400},
        {"a2", "URI:spiffe://cluster.local/ns/shop/sa/a", &ca, -3600, 2 * 86400},
        {"nospiffe", "URI:https://example.com/x,DNS:plain", &ca, -3600, 86400},
        {"twospiffe", "URI:spiffe://td/ns/x/sa/y,URI:spiffe://td/ns/z/sa/w", &ca, -3600, 86400},
        {"expired", "URI:spiffe://cluster.local/ns/shop/sa/old", &ca, -7200, -3600},
        {"foreign", "URI:spiffe://cluster.local/ns/shop/sa/a", &other, -3600, 86400},
        {"api", "DNS:api.example.com", &ca, -3600, 86400},
        {"wild", "DNS:*.example.org", &ca, -3600, 86400},
    };
    for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
        pki_t p =
            make_cert(leaves[i].ca, leaves[i].name, leaves[i].san, leaves[i].from, leaves[i].to);
        write_pki(&p, leaves[i].name);
        pki_free(&p);
    }
    pki_free(&ca);
    pki_free(&other);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    fake_cfg_free_all();
    return system(cmd) == 0 ? 0 : -1;
}

/* ---- helpers ------------------------------------------------------------- */

static const slc_filter_desc_t *desc(void)
{
    return slc_filter_entry(&fake_host_table);
}

static slc_cfg_node_t *s(const char *t)
{
    return fake_scalar(t);
}

static fake_inst_t *inst(fake_gen_t *g, slc_cfg_node_t *cfg)
{
    fake_inst_t *i = fake_inst_new(desc(), g, cfg, 1);
    if (i->status != SLC_OK)
        fake_diag_dump(i->diag);
    return i;
}

/* expect_error builds |cfg| and checks it fails with |needle| at |path|. */
static void expect_error(fake_gen_t *g, slc_cfg_node_t *cfg, const char *needle, const char *path)
{
    fake_inst_t *i = fake_inst_new(desc(), g, cfg, 1);
    assert_int_equal(i->status, SLC_EINVAL);
    int k = fake_diag_find(i->diag, needle);
    if (k < 0) {
        fake_diag_dump(i->diag);
        fail_msg("no error containing '%s'", needle);
    }
    if (path)
        assert_string_equal(fake_diag_path(i->diag, (size_t)k), path);
    fake_inst_free(i);
}

typedef struct pair {
    slc_conn_t *srv, *cli;
    slc_req_t *r;
    slc_status_t srv_st, cli_st;
} pair_t;

/* carry moves the wire bytes between the two transports until neither has
 * anything to say or one fails. */
static void carry(pair_t *p)
{
    for (int round = 0; round < 20; round++) {
        slc_str_t to_srv = fake_conn_emitted(p->cli, SLC_EMIT_WIRE);
        slc_str_t to_cli = fake_conn_emitted(p->srv, SLC_EMIT_WIRE);
        if (!to_srv.len && !to_cli.len)
            return;
        if (to_srv.len && p->srv_st == SLC_OK) {
            char *copy = malloc(to_srv.len);
            memcpy(copy, to_srv.ptr, to_srv.len);
            p->srv_st = fake_conn_transport(p->srv)->recv(fake_conn_transport_ctx(p->srv), p->srv,
                                                          (uint8_t *)copy, to_srv.len);
            free(copy);
        }
        if (to_cli.len && p->cli_st == SLC_OK) {
            char *copy = malloc(to_cli.len);
            memcpy(copy, to_cli.ptr, to_cli.len);
            p->cli_st = fake_conn_transport(p->cli)->recv(fake_conn_transport_ctx(p->cli), p->cli,
                                                          (uint8_t *)copy, to_cli.len);
            free(copy);
        }
    }
}

/* handshake: |server| accepts on one fake connection, |client| originates
 * to cluster "up" of |g| on another, and the bytes are carried. */
static pair_t handshake(fake_gen_t *g, fake_inst_t *server, fake_inst_t *client)
{
    pair_t p = {0};
    p.srv = fake_conn_new("127.0.0.1:40000", "127.0.0.1:15006");
    p.cli = fake_conn_new("127.0.0.1:15006", "127.0.0.1:40000");
    assert_int_equal(server->desc->on_connection(server->cfg, server->wctx[0], p.srv),
                     SLC_CONTINUE);
    assert_non_null(fake_conn_transport(p.srv));
    p.r = fake_req_new(g, "GET", "up", "/");
    assert_int_equal(slc_host->route_set_cluster(p.r, slc_host->cluster_get(p.r, SLC_STR("up"))),
                     SLC_OK);
    assert_int_equal(client->desc->on_upstream_connect(client->cfg, p.r, p.cli), SLC_CONTINUE);
    assert_non_null(fake_conn_transport(p.cli));
    carry(&p);
    return p;
}

static void pair_free(pair_t *p)
{
    fake_req_free(p->r);
    fake_conn_free(p->srv);
    fake_conn_free(p->cli);
}

static slc_str_t reason(slc_conn_t *c)
{
    return fake_conn_transport(c)->failure_reason(fake_conn_transport_ctx(c));
}

static slc_peer_cert_t peer(slc_conn_t *c, slc_status_t want)
{
    slc_peer_cert_t pc = {.struct_size = sizeof(pc)};
    assert_int_equal(tls_peer_cert_of(fake_conn_transport_ctx(c), &pc), want);
    return pc;
}

static void assert_str(slc_str_t got, const char *want)
{
    if (!want) {
        assert_int_equal(got.len, 0);
        return;
    }
    assert_int_equal(got.len, strlen(want));
    assert_memory_equal(got.ptr, want, got.len);
}

/* A server in |mode| with workload certs for "b"; a client originating
 * |upmode| to cluster up with the "a" workload certs (or named files). */
static slc_cfg_node_t *server_cfg(const char *mode)
{
    return fake_map("mode", s(mode), "certs_dir", s(istio_dir("srv-b", "b", "ca")), "watch",
                    s("false"), NULL);
}

static slc_cfg_node_t *client_cfg(const char *leaf, slc_cfg_node_t *entry)
{
    slc_cfg_node_t *up = entry ? fake_map("clusters", fake_seq(entry, NULL), NULL)
                               : fake_map("mesh_clusters", fake_seq(s("up"), NULL), NULL);
    return fake_map("mode", s("DISABLE"), "certs_dir", s(istio_dir("cli", leaf, "ca")), "watch",
                    s("false"), "upstream", up, NULL);
}

/* ---- tests: handshakes --------------------------------------------------- */

static void test_strict_mutual_handshake_gives_identity(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    fake_inst_t *sv = inst(g, server_cfg("STRICT"));
    fake_inst_t *cl = inst(g, client_cfg("a", NULL)); /* auto mTLS: ISTIO_MUTUAL */
    assert_int_equal(sv->status, SLC_OK);
    assert_int_equal(cl->status, SLC_OK);
    pair_t p = handshake(g, sv, cl);
    assert_int_equal(p.srv_st, SLC_OK);
    assert_int_equal(p.cli_st, SLC_OK);
    assert_true(fake_conn_ready(p.srv));
    assert_true(fake_conn_ready(p.cli));

    slc_peer_cert_t pc = peer(p.srv, SLC_OK);
    assert_str(pc.principal, "cluster.local/ns/shop/sa/a");
    assert_str(pc.spiffe_id, "spiffe://cluster.local/ns/shop/sa/a");
    assert_str(pc.trust_domain, "cluster.local");
    assert_str(pc.ns, "shop");
    assert_str(pc.subject, "CN=a");
    assert_int_equal(pc.nuri_sans, 1);
    assert_int_equal(pc.ndns_sans, 2);
    assert_str(pc.dns_sans[1], "a2.shop");
    assert_int_equal(pc.sha256_hex.len, 64);
    assert_true(pc.not_after > time(NULL) + 80000 && pc.not_after < time(NULL) + 90000);
    assert_true(strstr(pc.pem.ptr, "-----BEGIN CERTIFICATE-----") == pc.pem.ptr);
    const slc_transport_t *t = fake_conn_transport(p.srv);
    assert_str(t->peer_identity(fake_conn_transport_ctx(p.srv)),
               "spiffe://cluster.local/ns/shop/sa/a");
    /* The server prefers http/1.1; the ISTIO_MUTUAL client offered it. */
    assert_str(t->alpn(fake_conn_transport_ctx(p.srv)), "http/1.1");
    assert_true(t->secure(fake_conn_transport_ctx(p.srv)));
    /* And the client sees the server's identity. */
    assert_str(peer(p.cli, SLC_OK).principal, "cluster.local/ns/shop/sa/b");

    /* Application data both ways, through the records. */
    const slc_transport_t *ct = fake_conn_transport(p.cli);
    assert_int_equal(ct->send(fake_conn_transport_ctx(p.cli), p.cli, (const uint8_t *)"ping", 4),
                     SLC_OK);
    carry(&p);
    slc_str_t got = fake_conn_emitted(p.srv, SLC_EMIT_PLAIN);
    assert_str(got, "ping");
    pair_free(&p);
    fake_inst_free(sv);
    fake_inst_free(cl);
    fake_gen_free(g);
}

static void test_client_request_waits_for_handshake(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    fake_inst_t *sv = inst(g, server_cfg("STRICT"));
    fake_inst_t *cl = inst(g, client_cfg("a", NULL));
    pair_t p = {0};
    p.srv = fake_conn_new("127.0.0.1:40000", "127.0.0.1:15006");
    p.cli = fake_conn_new("127.0.0.1:15006", "127.0.0.1:40000");
    sv->desc->on_connection(sv->cfg, sv->wctx[0], p.srv);
    p.r = fake_req_new(g, "GET", "up", "/");
    slc_host->route_set_cluster(p.r, slc_host->cluster_get(p.r, SLC_STR("up")));
    assert_int_equal(cl->desc->on_upstream_connect(cl->cfg, p.r, p.cli), SLC_CONTINUE);
    /* The core writes the request head at once; it must wait, encrypted
     * later, never leave in the clear. */
    const slc_transport_t *ct = fake_conn_transport(p.cli);
    const char head[] = "GET / HTTP/1.1\r\nhost: up\r\n\r\n";
    assert_int_equal(
        ct->send(fake_conn_transport_ctx(p.cli), p.cli, (const uint8_t *)head, sizeof(head) - 1),
        SLC_OK);
    carry(&p);
    assert_true(fake_conn_ready(p.cli));
    assert_str(fake_conn_emitted(p.srv, SLC_EMIT_PLAIN), head);
    pair_free(&p);
    fake_inst_free(sv);
    fake_inst_free(cl);
    fake_gen_free(g);
}

static void test_strict_refuses_bad_clients(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    fake_inst_t *sv = inst(g, server_cfg("STRICT"));
    struct {
        const char *leaf;
        const char *want; /* in the server's failure reason */
    } cases[] = {
        {"foreign", "CERTIFICATE_VERIFY_FAILED"},
        {"expired", "CERTIFICATE_VERIFY_FAILED"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* A MUTUAL client with the bad certificate that trusts our CA. */
        slc_cfg_node_t *entry = fake_map("cluster", s("up"), "mode", s("MUTUAL"),
                                         "client_certificate", s(path_of(cases[i].leaf, "pem")),
                                         "private_key", s(path_of(cases[i].leaf, "key")),
                                         "ca_certificates", s(path_of("ca", "pem")), NULL);
        fake_inst_t *cl = inst(g, client_cfg("a", entry));
        assert_int_equal(cl->status, SLC_OK);
        pair_t p = handshake(g, sv, cl);
        assert_int_equal(p.srv_st, SLC_EIO);
        assert_false(fake_conn_ready(p.srv));
        slc_str_t why = reason(p.srv);
        if (!why.len || !memmem(why.ptr, why.len, cases[i].want, strlen(cases[i].want)))
            fail_msg("%s: reason '%.*s'", cases[i].leaf, (int)why.len, why.ptr);
        pair_free(&p);
        fake_inst_free(cl);
    }
    /* No certificate at all: a SIMPLE client. */
    slc_cfg_node_t *entry = fake_map("cluster", s("up"), "mode", s("SIMPLE"), "ca_certificates",
                                     s(path_of("ca", "pem")), NULL);
    fake_inst_t *cl = inst(g, client_cfg("a", entry));
    pair_t p = handshake(g, sv, cl);
    assert_false(fake_conn_ready(p.srv) && p.srv_st == SLC_OK && p.cli_st == SLC_OK &&
                 fake_conn_emitted(p.srv, SLC_EMIT_PLAIN).len);
    assert_int_equal(peer(p.srv, SLC_ENOENT).principal.len, 0);
    pair_free(&p);
    fake_inst_free(cl);
    fake_inst_free(sv);
    fake_gen_free(g);
}

static void test_simple_serves_a_client_without_certificate(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    fake_inst_t *sv = inst(g, fake_map("mode", s("SIMPLE"), "cert_chain", s(path_of("b", "pem")),
                                       "private_key", s(path_of("b", "key")), NULL));
    assert_int_equal(sv->status, SLC_OK);
    slc_cfg_node_t *entry =
        fake_map("cluster", s("up"), "mode", s("SIMPLE"), "ca_certificates",
                 s(path_of("ca", "pem")), "subject_alt_names", fake_seq(s("b.shop"), NULL), NULL);
    fake_inst_t *cl = inst(g, client_cfg("a", entry));
    pair_t p = handshake(g, sv, cl);
    assert_int_equal(p.srv_st, SLC_OK);
    assert_int_equal(p.cli_st, SLC_OK);
    assert_true(fake_conn_ready(p.srv));
    peer(p.srv, SLC_ENOENT); /* no client certificate */
    pair_free(&p);
    fake_inst_free(cl);
    fake_inst_free(sv);
    fake_gen_free(g);
}

static void test_upstream_san_mismatch_fails_the_client(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    fake_inst_t *sv = inst(g, server_cfg("STRICT"));
    slc_cfg_node_t *entry =
        fake_map("cluster", s("up"), "mode", s("ISTIO_MUTUAL"), "subject_alt_names",
                 fake_seq(s("spiffe://cluster.local/ns/shop/sa/not-b"), NULL), NULL);
    fake_inst_t *cl = inst(g, client_cfg("a", entry));
    pair_t p = handshake(g, sv, cl);
    assert_int_equal(p.cli_st, SLC_EIO);
    assert_false(fake_conn_ready(p.cli));
    assert_str(reason(p.cli), "TLS_error:SAN_MISMATCH");
    pair_free(&p);
    fake_inst_free(cl);
    fake_gen_free(g);

    /* The expected identity matches: accepted. */
    g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    entry = fake_map("cluster", s("up"), "mode", s("ISTIO_MUTUAL"), "subject_alt_names",
                     fake_seq(s("spiffe://cluster.local/ns/shop/sa/b"), NULL), NULL);
    cl = inst(g, client_cfg("a", entry));
    p = handshake(g, sv, cl);
    assert_int_equal(p.cli_st, SLC_OK);
    assert_true(fake_conn_ready(p.cli));
    pair_free(&p);
    fake_inst_free(cl);
    fake_inst_free(sv);
    fake_gen_free(g);
}

static void test_identity_needs_exactly_one_spiffe_uri(void **state)
{
    (void)state;
    const char *leaves[] = {"nospiffe", "twospiffe"};
    for (size_t i = 0; i < 2; i++) {
        fake_gen_t *g = fake_gen_new();
        fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
        fake_inst_t *sv = inst(g, server_cfg("STRICT"));
        fake_inst_t *cl = inst(g, client_cfg(leaves[i], NULL));
        pair_t p = handshake(g, sv, cl);
        assert_true(fake_conn_ready(p.srv));
        slc_peer_cert_t pc = peer(p.srv, SLC_OK);
        assert_int_equal(pc.principal.len, 0);
        assert_int_equal(pc.ns.len, 0);
        assert_int_equal(pc.spiffe_id.len, 0);
        assert_true(pc.nuri_sans >= 1);
        assert_int_equal(
            fake_conn_transport(p.srv)->peer_identity(fake_conn_transport_ctx(p.srv)).len, 0);
        pair_free(&p);
        fake_inst_free(cl);
        fake_inst_free(sv);
        fake_gen_free(g);
    }
}

static void test_permissive_tells_plaintext_from_tls(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    fake_inst_t *sv = inst(g, server_cfg("PERMISSIVE"));
    /* Plaintext: passed through as is, not secure, no identity. */
    slc_conn_t *c = fake_conn_new("127.0.0.1:40000", "127.0.0.1:15006");
    sv->desc->on_connection(sv->cfg, sv->wctx[0], c);
    const slc_transport_t *t = fake_conn_transport(c);
    const char req[] = "GET / HTTP/1.1\r\n\r\n";
    assert_int_equal(t->recv(fake_conn_transport_ctx(c), c, (const uint8_t *)req, 18), SLC_OK);
    assert_true(fake_conn_ready(c));
    assert_str(fake_conn_emitted(c, SLC_EMIT_PLAIN), req);
    assert_false(t->secure(fake_conn_transport_ctx(c)));
    assert_int_equal(t->send(fake_conn_transport_ctx(c), c, (const uint8_t *)"HTTP", 4), SLC_OK);
    assert_str(fake_conn_emitted(c, SLC_EMIT_WIRE), "HTTP");
    fake_conn_free(c);
    /* TLS on the same port: an mTLS handshake. */
    fake_inst_t *cl = inst(g, client_cfg("a", NULL));
    pair_t p = handshake(g, sv, cl);
    assert_true(fake_conn_ready(p.srv));
    assert_true(fake_conn_transport(p.srv)->secure(fake_conn_transport_ctx(p.srv)));
    assert_str(peer(p.srv, SLC_OK).ns, "shop");
    pair_free(&p);
    fake_inst_free(cl);
    fake_inst_free(sv);
    fake_gen_free(g);
}

static void test_strict_refuses_plaintext_and_port_override(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_inst_t *sv =
        inst(g, fake_map("mode", s("STRICT"), "certs_dir", s(istio_dir("srv-b", "b", "ca")),
                         "port_level_mtls", fake_map("8080", s("DISABLE"), NULL), "watch",
                         s("false"), NULL));
    assert_int_equal(sv->status, SLC_OK);
    slc_conn_t *c = fake_conn_new("127.0.0.1:40000", "127.0.0.1:15006");
    sv->desc->on_connection(sv->cfg, sv->wctx[0], c);
    const slc_transport_t *t = fake_conn_transport(c);
    assert_int_equal(
        t->recv(fake_conn_transport_ctx(c), c, (const uint8_t *)"GET / HTTP/1.1\r\n", 16), SLC_EIO);
    assert_false(fake_conn_ready(c));
    assert_int_equal(fake_conn_emitted(c, SLC_EMIT_PLAIN).len, 0);
    fake_conn_free(c);
    /* Port 8080 is DISABLE: no transport at all. */
    c = fake_conn_new("127.0.0.1:40000", "127.0.0.1:8080");
    assert_int_equal(sv->desc->on_connection(sv->cfg, sv->wctx[0], c), SLC_CONTINUE);
    assert_null(fake_conn_transport(c));
    fake_conn_free(c);
    fake_inst_free(sv);
    fake_gen_free(g);
}

static void test_sni_picks_the_server_certificate(void **state)
{
    (void)state;
    struct {
        const char *sni, *want_cn;
    } cases[] = {
        {"api.example.com", "CN=api"}, /* exact */
        {"API.Example.COM", "CN=api"}, /* case-insensitive */
        {"x.example.org", "CN=wild"},  /* wildcard */
        {"example.org", "CN=b"},       /* the wildcard needs a label: default */
        {"other.test", "CN=b"},        /* no match: the listener's own */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        fake_gen_t *g = fake_gen_new();
        fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
        slc_cfg_node_t *servers = fake_seq(
            fake_map("hosts", fake_seq(s("api.example.com"), NULL), "cert_chain",
                     s(path_of("api", "pem")), "private_key", s(path_of("api", "key")), NULL),
            fake_map("hosts", fake_seq(s("*.example.org"), NULL), "cert_chain",
                     s(path_of("wild", "pem")), "private_key", s(path_of("wild", "key")), NULL),
            NULL);
        fake_inst_t *sv = inst(
            g, fake_map("mode", s("SIMPLE"), "cert_chain", s(path_of("b", "pem")), "private_key",
                        s(path_of("b", "key")), "servers", servers, "watch", s("false"), NULL));
        assert_int_equal(sv->status, SLC_OK);
        slc_cfg_node_t *entry =
            fake_map("cluster", s("up"), "mode", s("SIMPLE"), "sni", s(cases[i].sni),
                     "ca_certificates", s(path_of("ca", "pem")), NULL);
        fake_inst_t *cl = inst(g, client_cfg("a", entry));
        pair_t p = handshake(g, sv, cl);
        assert_int_equal(p.cli_st, SLC_OK);
        assert_str(peer(p.cli, SLC_OK).subject, cases[i].want_cn);
        pair_free(&p);
        fake_inst_free(cl);
        fake_inst_free(sv);
        fake_gen_free(g);
    }
}

static void test_rotation_on_disk_is_picked_up(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    const char *d = istio_dir("rot", "b", "ca");
    fake_inst_t *sv = inst(g, fake_map("mode", s("STRICT"), "certs_dir", s(d), NULL));
    assert_int_equal(sv->status, SLC_OK);
    fake_inst_t *cl = inst(g, client_cfg("a", NULL));
    pair_t p = handshake(g, sv, cl);
    assert_str(peer(p.cli, SLC_OK).subject, "CN=b");
    /* Replace the pair as a secret mount does: new files renamed in. */
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "cp %s %s/key.tmp && cp %s %s/chain.tmp && mv %s/key.tmp %s/key.pem && mv "
             "%s/chain.tmp %s/cert-chain.pem",
             path_of("a2", "key"), d, path_of("a2", "pem"), d, d, d, d, d);
    assert_int_equal(system(cmd), 0);
    /* The watcher settles for 100 ms; allow it up to 5 s. */
    bool seen = false;
    for (int i = 0; i < 100 && !seen; i++) {
        usleep(50000);
        pair_t q = handshake(g, sv, cl);
        seen = q.cli_st == SLC_OK && peer(q.cli, SLC_OK).subject.len == 5 &&
               memcmp(peer(q.cli, SLC_OK).subject.ptr, "CN=a2", 5) == 0;
        pair_free(&q);
    }
    assert_true(seen);
    /* The connection made before keeps its session. */
    const slc_transport_t *ct = fake_conn_transport(p.cli);
    assert_int_equal(ct->send(fake_conn_transport_ctx(p.cli), p.cli, (const uint8_t *)"x", 1),
                     SLC_OK);
    carry(&p);
    assert_str(fake_conn_emitted(p.srv, SLC_EMIT_PLAIN), "x");
    pair_free(&p);
    fake_inst_free(cl);
    fake_inst_free(sv);
    fake_gen_free(g);
}

/* ---- tests: x-forwarded-client-cert -------------------------------------- */

/* xfcc_after runs the server instance's request hook for a request on the
 * server side of an established pair (|mtls|) or on a plaintext
 * connection, with |sent| as the client's header (NULL: none); returns the
 * header's values joined by '|', or "(none)". */
static const char *xfcc_after(fake_gen_t *g, fake_inst_t *sv, slc_conn_t *c, const char *sent)
{
    static char out[2048];
    slc_req_t *r = fake_req_new(g, "GET", "svc", "/");
    fake_req_set_conn(r, c);
    if (sent)
        fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-forwarded-client-cert", sent);
    assert_int_equal(fake_inst_run(sv, r, FAKE_REQUEST_HEADERS), SLC_CONTINUE);
    size_t n = fake_req_header_count(r, SLC_REQUEST_HEADERS, "x-forwarded-client-cert");
    const char *v = fake_req_header(r, SLC_REQUEST_HEADERS, "x-forwarded-client-cert");
    snprintf(out, sizeof(out), "%s", n ? v : "(none)");
    assert_true(n <= 1);
    fake_req_free(r);
    return out;
}

static void test_xfcc_modes(void **state)
{
    (void)state;
    static const struct {
        const char *mode;
        bool keeps_sent_mtls, adds, keeps_sent_plain;
    } modes[] = {
        {"SANITIZE", false, false, false},          {"FORWARD_ONLY", true, false, false},
        {"APPEND_FORWARD", true, true, false},      {"SANITIZE_SET", false, true, false},
        {"ALWAYS_FORWARD_ONLY", true, false, true},
    };
    const char *sent = "By=spiffe://forged;Hash=00;URI=spiffe://cluster.local/ns/x/sa/admin";
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        fake_gen_t *g = fake_gen_new();
        fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
        fake_inst_t *sv =
            inst(g, fake_map("mode", s("PERMISSIVE"), "certs_dir", s(istio_dir("srv-b", "b", "ca")),
                             "xfcc", s(modes[i].mode), "watch", s("false"), NULL));
        assert_int_equal(sv->status, SLC_OK);
        fake_inst_t *cl = inst(g, client_cfg("a", NULL));
        pair_t p = handshake(g, sv, cl);
        assert_true(fake_conn_ready(p.srv));

        /* The mTLS client, with and without a header of its own. */
        const char *got = xfcc_after(g, sv, p.srv, sent);
        bool has_sent = strstr(got, "spiffe://forged") != NULL;
        bool has_ours = strstr(got, "By=spiffe://cluster.local/ns/shop/sa/b;Hash=") != NULL;
        if (has_sent != modes[i].keeps_sent_mtls || has_ours != modes[i].adds)
            fail_msg("%s over mTLS: %s", modes[i].mode, got);
        if (modes[i].adds) {
            got = xfcc_after(g, sv, p.srv, NULL);
            slc_peer_cert_t pc = peer(p.srv, SLC_OK);
            char want[512];
            snprintf(want, sizeof(want),
                     "By=spiffe://cluster.local/ns/shop/sa/b;Hash=%.*s;Subject=\"CN=a\";URI=spiffe:"
                     "//cluster.local/ns/shop/sa/a;DNS=a.shop;DNS=a2.shop",
                     (int)pc.sha256_hex.len, pc.sha256_hex.ptr);
            assert_string_equal(got, want);
        }
        if (!strcmp(modes[i].mode, "APPEND_FORWARD"))
            assert_non_null(strstr(xfcc_after(g, sv, p.srv, sent), "admin,By=spiffe://cluster"));

        /* A plaintext client on the same PERMISSIVE port can never inject
         * the header past a sanitizing hop. */
        slc_conn_t *c = fake_conn_new("127.0.0.1:40001", "127.0.0.1:15006");
        sv->desc->on_connection(sv->cfg, sv->wctx[0], c);
        fake_conn_transport(c)->recv(fake_conn_transport_ctx(c), c, (const uint8_t *)"GET", 3);
        got = xfcc_after(g, sv, c, sent);
        if ((strstr(got, "forged") != NULL) != modes[i].keeps_sent_plain)
            fail_msg("%s over plaintext: %s", modes[i].mode, got);
        assert_null(strstr(got, "By=spiffe://cluster.local/ns/shop/sa/b"));
        fake_conn_free(c);
        pair_free(&p);
        fake_inst_free(cl);
        fake_inst_free(sv);
        fake_gen_free(g);
    }
}

static void test_expiry_gauge_and_counters(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    fake_inst_t *sv = inst(g, server_cfg("STRICT"));
    fake_inst_t *cl = inst(g, client_cfg("a", NULL));
    /* worker 0 published the serving certificate's notAfter at init */
    int64_t exp = fake_metric_value(
        fake_metric(sv->diag, "mtls_cert_expiry_timestamp_seconds{cert=default}"));
    assert_true(exp > time(NULL) + 80000 && exp < time(NULL) + 90000);
    pair_t p = handshake(g, sv, cl);
    assert_true(fake_conn_ready(p.srv));
    /* one handshake on each side, each counted by its own instance */
    assert_int_equal(
        fake_metric_value(fake_metric(sv->diag, "mtls_handshakes_total{side=downstream}")), 1);
    assert_int_equal(
        fake_metric_value(fake_metric(cl->diag, "mtls_handshakes_total{side=upstream}")), 1);
    assert_int_equal(
        fake_metric_value(fake_metric(cl->diag, "mtls_handshakes_total{side=downstream}")), 0);
    /* a plaintext client in STRICT: a failure, by reason */
    slc_conn_t *c = fake_conn_new("127.0.0.1:40001", "127.0.0.1:15006");
    sv->desc->on_connection(sv->cfg, sv->wctx[0], c);
    assert_int_equal(
        fake_conn_transport(c)->recv(fake_conn_transport_ctx(c), c, (const uint8_t *)"GET / ", 6),
        SLC_EIO);
    fake_conn_free(c);
    assert_int_equal(
        fake_metric_value(fake_metric(sv->diag, "mtls_handshake_failures_total{reason=plaintext}")),
        1);
    pair_free(&p);
    fake_inst_free(cl);
    fake_inst_free(sv);
    fake_gen_free(g);
}

/* ---- tests: config ------------------------------------------------------- */

static void test_config_errors(void **state)
{
    (void)state;
    fake_gen_t *g = fake_gen_new();
    fake_cluster_add(g, "up", "127.0.0.1:15006", NULL);
    expect_error(g, fake_map("mod", s("STRICT"), NULL), "unknown key 'mod' (did you mean 'mode'?)",
                 NULL);
    expect_error(g, fake_map("mode", s("STRICTT"), NULL), "(did you mean 'STRICT'?)", "mode");
    expect_error(g, fake_map("mode", s("STRICT"), NULL), "mode STRICT serves TLS: set certs_dir",
                 "");
    expect_error(g,
                 fake_map("mode", s("SIMPLE"), "cert_chain", s(path_of("b", "pem")), "private_key",
                          s(path_of("b", "key")), "min_protocol_version", s("TLSV1_1"), NULL),
                 "TLS 1.0 and 1.1 are not supported", "min_protocol_version");
    expect_error(g,
                 fake_map("mode", s("SIMPLE"), "cert_chain", s("/nonexistent/chain.pem"),
                          "private_key", s(path_of("b", "key")), NULL),
                 "cannot load certificate chain '/nonexistent/chain.pem'", "");
    expect_error(g,
                 fake_map("mode", s("SIMPLE"), "cert_chain", s(path_of("b", "pem")), "private_key",
                          s(path_of("a", "key")), NULL),
                 "does not match certificate", "");
    expect_error(g,
                 fake_map("mode", s("DISABLE"), "port_level_mtls",
                          fake_map("99999", s("STRICT"), NULL), NULL),
                 "'99999' is not a port number", "port_level_mtls.99999");
    expect_error(g,
                 fake_map("mode", s("DISABLE"), "upstream",
                          fake_map("mesh_clusters", fake_seq(s("nope"), NULL), NULL), NULL),
                 "unknown cluster 'nope'", "upstream.mesh_clusters[0]");
    expect_error(g,
                 fake_map("mode", s("DISABLE"), "upstream",
                          fake_map("mesh_clusters", fake_seq(s("up"), NULL), NULL), NULL),
                 "originates ISTIO_MUTUAL, which needs the proxy's own certificate", "upstream");
    expect_error(
        g,
        fake_map("mode", s("DISABLE"), "upstream",
                 fake_map("clusters",
                          fake_seq(fake_map("cluster", s("up"), "mode", s("SIMPLE"), NULL), NULL),
                          NULL),
                 NULL),
        "ca_certificates is required to verify the upstream", "upstream.clusters[0]");
    expect_error(g,
                 fake_map("mode", s("SIMPLE"), "cert_chain", s(path_of("b", "pem")), "private_key",
                          s(path_of("b", "key")), "cipher_suites", fake_seq(s("NOPE-CIPHER"), NULL),
                          NULL),
                 "cipher_suites", "");
    fake_gen_free(g);
}

static void test_host_match(void **state)
{
    (void)state;
    assert_true(tls_host_match("a.example.com", "a.example.com", 13));
    assert_true(tls_host_match("a.example.com", "A.EXAMPLE.COM", 13));
    assert_false(tls_host_match("a.example.com", "b.example.com", 13));
    assert_true(tls_host_match("*.example.com", "x.y.example.com", 15));
    assert_false(tls_host_match("*.example.com", "example.com", 11));
    assert_false(tls_host_match("*.example.com", "xexample.com", 12));
    assert_true(tls_host_match("*", "anything", 8));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strict_mutual_handshake_gives_identity),
        cmocka_unit_test(test_client_request_waits_for_handshake),
        cmocka_unit_test(test_strict_refuses_bad_clients),
        cmocka_unit_test(test_simple_serves_a_client_without_certificate),
        cmocka_unit_test(test_upstream_san_mismatch_fails_the_client),
        cmocka_unit_test(test_identity_needs_exactly_one_spiffe_uri),
        cmocka_unit_test(test_permissive_tells_plaintext_from_tls),
        cmocka_unit_test(test_strict_refuses_plaintext_and_port_override),
        cmocka_unit_test(test_sni_picks_the_server_certificate),
        cmocka_unit_test(test_rotation_on_disk_is_picked_up),
        cmocka_unit_test(test_xfcc_modes),
        cmocka_unit_test(test_expiry_gauge_and_counters),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_host_match),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
