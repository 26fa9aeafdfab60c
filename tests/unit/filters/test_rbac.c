/* Unit tests of the rbac filter against the fake host. Configurations are
 * YAML text loaded by the core's own loader (cfg_tree_load_string), so the
 * error cases check the exact "file:line:col: path: message" a user sees.
 *
 * The decision table holds AuthorizationPolicy rules in the shapes of
 * Istio's reference and task pages, each with one request and the decision
 * Istio makes for it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"
#include "rbac_policy.h"

#include "cfgtree.h"

/* ---- helpers --------------------------------------------------------------- */

static const slc_cfg_node_t *yaml(const char *text)
{
    return fake_yaml("rbac.yaml", text);
}

typedef struct fixture {
    fake_gen_t *gen;
    const slc_filter_desc_t *desc;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->gen = fake_gen_new();
    f->desc = slc_filter_entry(&fake_host_table);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    fake_gen_free(f->gen);
    fake_cfg_free_all();
    free(f);
    return 0;
}

static fake_inst_t *inst_ok(fixture_t *f, const char *text)
{
    fake_inst_t *inst = fake_inst_new(f->desc, f->gen, yaml(text), 1);
    if (inst->status != SLC_OK) {
        fake_diag_dump(inst->diag);
        fail_msg("config refused: %s", text);
    }
    return inst;
}

/* A request as the table describes it. */
typedef struct req_spec {
    const char *method, *host, *path;
    const char *peer, *local; /* "ip:port"; NULL: the defaults below */
    const char *identity;     /* transport peer identity (spiffe://...) */
    const char *cert;         /* peer certificate principal */
    const char *client;       /* stream_info client_address (XFF-aware) */
    const char *hname, *hvalue;
    const char *sni;
} req_spec_t;

#define PEER  "127.0.0.5:40000"
#define LOCAL "127.1.0.1:8080"

typedef struct run {
    slc_req_t *r;
    slc_conn_t *c;
    slc_action_t act;
} run_t;

static run_t run_req(fake_inst_t *inst, fake_gen_t *g, const req_spec_t *q)
{
    run_t out = {0};
    out.c = fake_conn_new(q->peer ? q->peer : PEER, q->local ? q->local : LOCAL);
    if (q->identity != NULL || q->sni != NULL) {
        fake_conn_set_tls(out.c, q->identity, q->sni, NULL);
    }
    if (q->cert != NULL) {
        fake_conn_set_peer_cert(out.c, q->cert);
    }
    out.r = fake_req_new(g, q->method ? q->method : "GET", q->host ? q->host : "svc.example.com",
                         q->path ? q->path : "/");
    fake_req_set_conn(out.r, out.c);
    const char *client = q->client ? q->client : "127.0.0.5";
    fake_req_info(out.r)->client_address = (slc_str_t){client, strlen(client)};
    if (q->hname != NULL) {
        fake_req_add_header(out.r, SLC_REQUEST_HEADERS, q->hname, q->hvalue);
    }
    out.act = fake_inst_run(inst, out.r, FAKE_REQUEST_HEADERS);
    return out;
}

static void run_free(run_t *x)
{
    fake_req_free(x->r);
    fake_conn_free(x->c);
}

/* status: 403 / 400 from a local reply, else 200 (passed on). */
static int status_of(const run_t *x)
{
    int st = fake_req_reply_status(x->r);
    if (st == 0) {
        assert_int_equal(x->act, SLC_CONTINUE);
        return 200;
    }
    assert_int_equal(x->act, SLC_STOP);
    return st;
}

/* ---- the decision table ---------------------------------------------------------- */

/* Policy shapes used by several cases. */
#define ALLOW1(rule) "policies: [{name: p, action: ALLOW, rules: [" rule "]}]"
#define DENY1(rule)  "policies: [{name: p, action: DENY, rules: [" rule "]}]"
#define SRC(x)       "{from: [{source: {" x "}}]}"
#define OP(x)        "{to: [{operation: {" x "}}]}"
#define WHEN(x)      "{when: [" x "]}"

#define FOO_SA  "spiffe://cluster.local/ns/foo/sa/sleep"
#define BAR_SA  "spiffe://cluster.local/ns/bar/sa/web"
#define GW_SA   "spiffe://cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"
#define ALLOWED 200
#define DENIED  403
#define BAD     400

typedef struct tcase {
    const char *name;
    const char *config;
    req_spec_t q;
    bool tcp;
    int expect;
} tcase_t;

static const tcase_t cases[] = {
    /* -- principals ------------------------------------------------------------ */
    {"principal exact",
     ALLOW1(SRC("principals: [cluster.local/ns/foo/sa/sleep]")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"principal exact, other sa",
     ALLOW1(SRC("principals: [cluster.local/ns/foo/sa/sleep]")),
     {.identity = BAR_SA},
     false,
     DENIED},
    {"principal prefix",
     ALLOW1(SRC("principals: [\"cluster.local/ns/foo/*\"]")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"principal prefix, other ns",
     ALLOW1(SRC("principals: [\"cluster.local/ns/foo/*\"]")),
     {.identity = BAR_SA},
     false,
     DENIED},
    {"principal suffix",
     ALLOW1(SRC("principals: [\"*/sa/web\"]")),
     {.identity = BAR_SA},
     false,
     ALLOWED},
    {"principal presence with identity",
     ALLOW1(SRC("principals: [\"*\"]")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"principal presence without identity", ALLOW1(SRC("principals: [\"*\"]")), {0}, false, DENIED},
    {"notPrincipals presence without identity (deny plaintext)",
     DENY1(SRC("notPrincipals: [\"*\"]")),
     {0},
     false,
     DENIED},
    {"notPrincipals presence with identity",
     DENY1(SRC("notPrincipals: [\"*\"]")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"principal values OR",
     ALLOW1(SRC("principals: [cluster.local/ns/bar/sa/web, "
                "cluster.local/ns/foo/sa/sleep]")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"principal from a peer certificate",
     ALLOW1(SRC("principals: [cluster.local/ns/foo/sa/sleep]")),
     {.cert = "cluster.local/ns/foo/sa/sleep", .identity = BAR_SA},
     false,
     ALLOWED},
    {"a certificate without SPIFFE identity has no principal",
     ALLOW1(SRC("principals: [\"*\"]")),
     {.cert = "", .identity = FOO_SA},
     false,
     DENIED},
    {"notPrincipals for a certificate without SPIFFE identity",
     DENY1(SRC("notPrincipals: [\"*\"]")),
     {.cert = ""},
     false,
     DENIED},
    {"identity without spiffe:// prefix",
     ALLOW1(SRC("principals: [cluster.local/ns/foo/sa/sleep]")),
     {.identity = "cluster.local/ns/foo/sa/sleep"},
     false,
     ALLOWED},
    {"notPrincipals excludes one",
     DENY1(SRC("notPrincipals: [\"cluster.local/ns/foo/*\"]")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"notPrincipals denies the rest",
     DENY1(SRC("notPrincipals: [\"cluster.local/ns/foo/*\"]")),
     {.identity = BAR_SA},
     false,
     DENIED},
    /* -- namespaces ------------------------------------------------------------- */
    {"namespace exact", ALLOW1(SRC("namespaces: [foo]")), {.identity = FOO_SA}, false, ALLOWED},
    {"namespace other", ALLOW1(SRC("namespaces: [foo]")), {.identity = BAR_SA}, false, DENIED},
    {"namespace of a certificate",
     ALLOW1(SRC("namespaces: [bar]")),
     {.cert = "cluster.local/ns/bar/sa/x"},
     false,
     ALLOWED},
    {"namespace absent without identity", ALLOW1(SRC("namespaces: [\"*\"]")), {0}, false, DENIED},
    {"notNamespaces: deny from outside foo",
     DENY1(SRC("notNamespaces: [foo]")),
     {.identity = BAR_SA},
     false,
     DENIED},
    {"notNamespaces: foo passes",
     DENY1(SRC("notNamespaces: [foo]")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"namespace prefix",
     ALLOW1(SRC("namespaces: [\"istio-*\"]")),
     {.identity = GW_SA},
     false,
     ALLOWED},
    /* -- ipBlocks and remoteIpBlocks --------------------------------------------- */
    {"ipBlocks CIDR", ALLOW1(SRC("ipBlocks: [127.0.0.0/16]")), {0}, false, ALLOWED},
    {"ipBlocks bare address", ALLOW1(SRC("ipBlocks: [127.0.0.5]")), {0}, false, ALLOWED},
    {"ipBlocks other", ALLOW1(SRC("ipBlocks: [192.0.2.0/24]")), {0}, false, DENIED},
    {"ipBlocks IPv6",
     ALLOW1(SRC("ipBlocks: [\"2001:db8::/32\"]")),
     {.peer = "[2001:db8::7]:5000"},
     false,
     ALLOWED},
    {"ipBlocks IPv4 range, mapped peer",
     ALLOW1(SRC("ipBlocks: [127.0.0.0/8]")),
     {.peer = "[::ffff:127.2.3.4]:5000"},
     false,
     ALLOWED},
    {"notIpBlocks",
     DENY1(SRC("notIpBlocks: [127.0.0.0/8]")),
     {.peer = "192.0.2.1:1"},
     false,
     DENIED},
    {"ipBlocks is the peer, not XFF",
     ALLOW1(SRC("ipBlocks: [203.0.113.0/24]")),
     {.client = "203.0.113.9"},
     false,
     DENIED},
    {"remoteIpBlocks is the client address",
     ALLOW1(SRC("remoteIpBlocks: [203.0.113.0/24]")),
     {.client = "203.0.113.9"},
     false,
     ALLOWED},
    {"notRemoteIpBlocks",
     DENY1(SRC("notRemoteIpBlocks: [203.0.113.0/24]")),
     {.client = "198.51.100.1"},
     false,
     DENIED},
    /* -- hosts ---------------------------------------------------------------------- */
    {"hosts exact, any case",
     ALLOW1(OP("hosts: [Bookinfo.COM]")),
     {.host = "bookinfo.com"},
     false,
     ALLOWED},
    {"hosts exact does not match with a port",
     ALLOW1(OP("hosts: [bookinfo.com]")),
     {.host = "bookinfo.com:8080"},
     false,
     DENIED},
    {"hosts prefix with port",
     ALLOW1(OP("hosts: [\"bookinfo.com:*\"]")),
     {.host = "bookinfo.com:8080"},
     false,
     ALLOWED},
    {"hosts suffix",
     ALLOW1(OP("hosts: [\"*.example.com\"]")),
     {.host = "api.EXAMPLE.com"},
     false,
     ALLOWED},
    {"notHosts", DENY1(OP("notHosts: [\"*.example.com\"]")), {.host = "evil.test"}, false, DENIED},
    /* -- ports ----------------------------------------------------------------------- */
    {"ports match the local port", ALLOW1(OP("ports: [\"8080\"]")), {0}, false, ALLOWED},
    {"ports other", ALLOW1(OP("ports: [\"9090\"]")), {0}, false, DENIED},
    {"ports as numbers", ALLOW1(OP("ports: [9090, 8080]")), {0}, false, ALLOWED},
    {"notPorts", DENY1(OP("notPorts: [\"8080\"]")), {.local = "127.1.0.1:9000"}, false, DENIED},
    /* -- methods ---------------------------------------------------------------------- */
    {"methods GET", ALLOW1(OP("methods: [GET]")), {.method = "GET"}, false, ALLOWED},
    {"methods POST not listed",
     ALLOW1(OP("methods: [GET, HEAD]")),
     {.method = "POST"},
     false,
     DENIED},
    {"methods are case-sensitive", ALLOW1(OP("methods: [get]")), {.method = "GET"}, false, DENIED},
    {"notMethods", DENY1(OP("notMethods: [GET]")), {.method = "DELETE"}, false, DENIED},
    /* -- paths ------------------------------------------------------------------------- */
    {"paths exact", ALLOW1(OP("paths: [/info]")), {.path = "/info"}, false, ALLOWED},
    {"paths exact ignores the query",
     ALLOW1(OP("paths: [/info]")),
     {.path = "/info?x=1"},
     false,
     ALLOWED},
    {"paths exact, longer", ALLOW1(OP("paths: [/info]")), {.path = "/info/x"}, false, DENIED},
    {"paths prefix", ALLOW1(OP("paths: [\"/api/*\"]")), {.path = "/api/v1/x"}, false, ALLOWED},
    {"paths prefix excludes the bare dir",
     ALLOW1(OP("paths: [\"/api/*\"]")),
     {.path = "/api"},
     false,
     DENIED},
    {"paths suffix", ALLOW1(OP("paths: [\"*/status\"]")), {.path = "/svc/status"}, false, ALLOWED},
    {"paths presence", ALLOW1(OP("paths: [\"*\"]")), {.path = "/anything"}, false, ALLOWED},
    {"paths are case-sensitive", DENY1(OP("paths: [/admin]")), {.path = "/ADMIN"}, false, ALLOWED},
    {"notPaths", DENY1(OP("notPaths: [\"/public/*\"]")), {.path = "/private"}, false, DENIED},
    {"paths judged after normalization",
     DENY1(OP("paths: [/admin]")),
     {.path = "/public/../admin"},
     false,
     DENIED},
    /* -- fields AND, lists OR ------------------------------------------------------- */
    {"method AND path: both",
     ALLOW1(OP("methods: [GET], paths: [/info]")),
     {.method = "GET", .path = "/info"},
     false,
     ALLOWED},
    {"method AND path: one",
     ALLOW1(OP("methods: [GET], paths: [/info]")),
     {.method = "POST", .path = "/info"},
     false,
     DENIED},
    {"operations OR",
     ALLOW1("{to: [{operation: {methods: [POST]}}, {operation: {paths: [/info]}}]}"),
     {.method = "GET", .path = "/info"},
     false,
     ALLOWED},
    {"from AND to",
     ALLOW1("{from: [{source: {namespaces: [foo]}}], to: [{operation: {methods: [GET]}}]}"),
     {.identity = BAR_SA, .method = "GET"},
     false,
     DENIED},
    {"rules OR",
     ALLOW1(SRC("namespaces: [bar]") ", " OP("methods: [HEAD]")),
     {.identity = FOO_SA, .method = "HEAD"},
     false,
     ALLOWED},
    /* -- when conditions --------------------------------------------------------------- */
    {"when header values",
     ALLOW1(WHEN("{key: \"request.headers[X-Token]\", values: [abc]}")),
     {.hname = "x-token", .hvalue = "abc"},
     false,
     ALLOWED},
    {"when header absent",
     ALLOW1(WHEN("{key: \"request.headers[x-token]\", values: [\"*\"]}")),
     {0},
     false,
     DENIED},
    {"when header prefix",
     ALLOW1(WHEN("{key: \"request.headers[x-token]\", values: [\"ab*\"]}")),
     {.hname = "X-Token", .hvalue = "abcdef"},
     false,
     ALLOWED},
    {"when header notValues",
     DENY1(WHEN("{key: \"request.headers[x-env]\", notValues: [prod]}")),
     {.hname = "x-env", .hvalue = "dev"},
     false,
     DENIED},
    {"when source.ip",
     ALLOW1(WHEN("{key: source.ip, values: [127.0.0.0/24]}")),
     {0},
     false,
     ALLOWED},
    {"when remote.ip",
     ALLOW1(WHEN("{key: remote.ip, values: [203.0.113.9]}")),
     {.client = "203.0.113.9"},
     false,
     ALLOWED},
    {"when source.namespace",
     ALLOW1(WHEN("{key: source.namespace, values: [foo]}")),
     {.identity = FOO_SA},
     false,
     ALLOWED},
    {"when source.principal",
     ALLOW1(WHEN("{key: source.principal, notValues: [\"*/sa/web\"]}")),
     {.identity = BAR_SA},
     false,
     DENIED},
    {"when destination.port",
     ALLOW1(WHEN("{key: destination.port, values: [\"8080\"]}")),
     {0},
     false,
     ALLOWED},
    {"when destination.ip",
     ALLOW1(WHEN("{key: destination.ip, values: [127.1.0.0/16]}")),
     {0},
     false,
     ALLOWED},
    {"when connection.sni",
     ALLOW1(WHEN("{key: connection.sni, values: [\"*.example.com\"]}")),
     {.sni = "api.example.com"},
     false,
     ALLOWED},
    {"when request.auth.claims never present yet",
     ALLOW1(WHEN("{key: \"request.auth.claims[iss]\", values: [\"*\"]}")),
     {0},
     false,
     DENIED},
    {"requestPrincipals never present yet",
     ALLOW1(SRC("requestPrincipals: [\"*\"]")),
     {.identity = FOO_SA},
     false,
     DENIED},
    {"notRequestPrincipals: a DENY for requests without a JWT",
     DENY1(SRC("notRequestPrincipals: [\"*\"]")),
     {.identity = FOO_SA},
     false,
     DENIED},
    /* -- ALLOW / DENY / AUDIT interplay ---------------------------------------------- */
    {"spec {} as ALLOW denies everything", "policies: [{name: p}]", {0}, false, DENIED},
    {"rules [{}] allows everything", "policies: [{name: p, rules: [{}]}]", {0}, false, ALLOWED},
    {"DENY with rules [{}] denies everything",
     "policies: [{name: p, action: DENY, rules: [{}]}]",
     {0},
     false,
     DENIED},
    {"DENY without rules denies nothing",
     "policies: [{name: p, action: DENY}]",
     {0},
     false,
     ALLOWED},
    {"no policies allows", "policies: []", {0}, false, ALLOWED},
    {"no ALLOW policy means allow",
     "policies: [{name: d, action: DENY, rules: [" OP("methods: [DELETE]") "]}]",
     {.method = "GET"},
     false,
     ALLOWED},
    {"DENY over ALLOW",
     "policies: [{name: a, rules: [{}]}, {name: d, action: DENY, rules: [" OP(
         "paths: [/admin]") "]}]",
     {.path = "/admin"},
     false,
     DENIED},
    {"ALLOW when DENY does not match",
     "policies: [{name: a, rules: [{}]}, {name: d, action: DENY, rules: [" OP(
         "paths: [/admin]") "]}]",
     {.path = "/home"},
     false,
     ALLOWED},
    {"any ALLOW suffices",
     "policies: [{name: a1, rules: [" OP("methods: [PUT]") "]}, {name: a2, rules: [" OP(
         "methods: [GET]") "]}]",
     {.method = "GET"},
     false,
     ALLOWED},
    {"AUDIT never allows",
     "policies: [{name: x, action: AUDIT, rules: [{}]}, {name: a}]",
     {0},
     false,
     DENIED},
    {"AUDIT never denies",
     "policies: [{name: x, action: AUDIT, rules: [{}]}]",
     {0},
     false,
     ALLOWED},
    /* -- TCP semantics ----------------------------------------------------------------- */
    {"tcp: ALLOW with ports only", ALLOW1(OP("ports: [\"8080\"]")), {0}, true, ALLOWED},
    {"tcp: ALLOW rule with methods never matches",
     ALLOW1(OP("ports: [\"8080\"], methods: [GET]")),
     {.method = "GET"},
     true,
     DENIED},
    {"tcp: ALLOW rule with requestPrincipals never matches",
     ALLOW1(SRC("namespaces: [foo], requestPrincipals: [\"*\"]")),
     {.identity = FOO_SA},
     true,
     DENIED},
    {"tcp: ALLOW, the other rule without HTTP fields still matches",
     ALLOW1(OP("paths: [/x]") ", " SRC("namespaces: [foo]")),
     {.identity = FOO_SA},
     true,
     ALLOWED},
    {"tcp: DENY with methods treats them as matching",
     DENY1(OP("ports: [\"8080\"], methods: [GET]")),
     {.method = "POST"},
     true,
     DENIED},
    {"tcp: DENY with header condition treats it as matching",
     DENY1("{from: [{source: {namespaces: [bar]}}], when: [{key: \"request.headers[x]\", values: "
           "[y]}]}"),
     {.identity = BAR_SA},
     true,
     DENIED},
    {"tcp: DENY still needs its TCP fields",
     DENY1(OP("ports: [\"9090\"], paths: [/admin]")),
     {.path = "/admin"},
     true,
     ALLOWED},
    {"http: DENY with methods judged",
     DENY1(OP("ports: [\"8080\"], methods: [GET]")),
     {.method = "POST"},
     false,
     ALLOWED},
};

static bool tcp_header(void *arg, slc_str_t name, slc_str_t *out)
{
    const req_spec_t *q = arg;
    if (q->hname == NULL || !slcu_caseeq(name, (slc_str_t){q->hname, strlen(q->hname)})) {
        return false;
    }
    *out = (slc_str_t){q->hvalue, strlen(q->hvalue)};
    return true;
}

/* eval_tcp runs the evaluator directly in TCP mode, with the attributes the
 * filter would gather for |q| (its path taken as already normalized). */
static bool eval_tcp(const rbac_set_t *s, const req_spec_t *q)
{
    rbac_attrs_t a = {.tcp = true, .header = tcp_header, .header_arg = (void *)q};
    const char *id = q->identity;
    if (id != NULL) {
        id += strncmp(id, "spiffe://", 9) == 0 ? 9 : 0;
        a.principal = (slc_str_t){id, strlen(id)};
        const char *ns = strstr(id, "/ns/") + 4;
        a.ns = (slc_str_t){ns, (size_t)(strchr(ns, '/') - ns)};
    }
    uint32_t port;
    const char *peer = q->peer ? q->peer : PEER, *local = q->local ? q->local : LOCAL;
    a.has_src_ip = rbac_split_hostport((slc_str_t){peer, strlen(peer)}, &a.src_ip, &port);
    a.has_dst_ip = rbac_split_hostport((slc_str_t){local, strlen(local)}, &a.dst_ip, &a.dst_port);
    a.has_dst_port = true;
    a.method = q->method ? (slc_str_t){q->method, strlen(q->method)} : SLC_STR("GET");
    a.path = q->path ? (slc_str_t){q->path, strlen(q->path)} : SLC_STR("/");
    a.host = SLC_STR("svc.example.com");
    rbac_decision_t d;
    rbac_evaluate(s, &a, &d, NULL);
    return d.allowed;
}

static void test_decision_table(void **state)
{
    fixture_t *f = *state;
    size_t n = sizeof(cases) / sizeof(cases[0]);
    assert_true(n >= 60);
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        const tcase_t *tc = &cases[i];
        fake_inst_t *inst = inst_ok(f, tc->config);
        int got;
        if (tc->tcp) {
            got = eval_tcp(inst->cfg, &tc->q) ? ALLOWED : DENIED;
        } else {
            run_t x = run_req(inst, f->gen, &tc->q);
            got = status_of(&x);
            run_free(&x);
        }
        if (got != tc->expect) {
            fprintf(stderr, "case %zu \"%s\": expected %d, got %d\n  config: %s\n", i, tc->name,
                    tc->expect, got, tc->config);
            failed++;
        }
        fake_inst_free(inst);
    }
    assert_int_equal(failed, 0);
}

/* ---- denial, facts, metrics --------------------------------------------------- */

static void test_denied_reply_and_facts(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst = inst_ok(f, "policies:\n"
                                   "  - name: ns/allow-foo\n"
                                   "    rules: [{from: [{source: {namespaces: [foo]}}]}]\n"
                                   "  - name: ns/deny-admin\n"
                                   "    action: DENY\n"
                                   "    rules: [{to: [{operation: {paths: [\"/admin/*\"]}}]}]\n"
                                   "  - name: ns/audit-all\n"
                                   "    action: AUDIT\n"
                                   "    rules: [{}]\n");
    /* Denied by a DENY policy. */
    run_t x = run_req(inst, f->gen, &(req_spec_t){.identity = FOO_SA, .path = "/admin/x"});
    assert_int_equal(status_of(&x), 403);
    assert_string_equal(fake_req_reply_body(x.r), "RBAC: access denied");
    assert_string_equal(fake_req_reply_content_type(x.r), "text/plain");
    assert_string_equal(fake_req_fact(x.r, "rbac.policy"), "ns/deny-admin");
    assert_string_equal(fake_req_fact(x.r, "rbac.audit"), "ns/audit-all");
    assert_true(fake_req_flags(x.r) & SLC_RF_UAEX);
    run_free(&x);
    /* Denied because no ALLOW policy matched. */
    x = run_req(inst, f->gen, &(req_spec_t){.identity = BAR_SA, .path = "/"});
    assert_int_equal(status_of(&x), 403);
    assert_string_equal(fake_req_fact(x.r, "rbac.policy"), RBAC_NO_ALLOW_MATCH);
    assert_true(fake_req_flags(x.r) & SLC_RF_UAEX);
    run_free(&x);
    /* Allowed by an ALLOW policy. */
    x = run_req(inst, f->gen, &(req_spec_t){.identity = FOO_SA, .path = "/home"});
    assert_int_equal(status_of(&x), 200);
    assert_string_equal(fake_req_fact(x.r, "rbac.policy"), "ns/allow-foo");
    assert_string_equal(fake_req_fact(x.r, "rbac.audit"), "ns/audit-all");
    assert_false(fake_req_flags(x.r) & SLC_RF_UAEX);
    run_free(&x);

    const slc_diag_t *d = inst->diag;
    assert_int_equal(fake_metric_value(fake_metric(d, "rbac_denied_total{policy=ns/deny-admin}")),
                     1);
    assert_int_equal(
        fake_metric_value(fake_metric(d, "rbac_denied_total{policy=" RBAC_NO_ALLOW_MATCH "}")), 1);
    assert_int_equal(fake_metric_value(fake_metric(d, "rbac_allowed_total{policy=ns/allow-foo}")),
                     1);
    assert_int_equal(fake_metric_value(fake_metric(d, "rbac_audit_total{policy=ns/audit-all}")), 3);
    assert_int_equal(fake_metric_value(fake_metric(d, "rbac_bad_path_total")), 0);
    fake_inst_free(inst);
}

static void test_allowed_without_allow_policy_sets_no_fact(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst =
        inst_ok(f, "policies: [{name: d, action: DENY, rules: [{to: [{operation: {methods: "
                   "[DELETE]}}]}]}]");
    run_t x = run_req(inst, f->gen, &(req_spec_t){0});
    assert_int_equal(status_of(&x), 200);
    assert_null(fake_req_fact(x.r, "rbac.policy"));
    assert_null(fake_req_fact(x.r, "rbac.audit"));
    run_free(&x);
    fake_inst_free(inst);
}

/* ---- path normalization per option ---------------------------------------------- */

typedef struct ncase {
    const char *option, *path;
    int expect;         /* with a policy denying /admin and /admin/... */
    const char *judged; /* :path after the filter, NULL: unchanged */
} ncase_t;

static const ncase_t ncases[] = {
    {"NONE", "/admin", 403, NULL},
    {"NONE", "/./admin", 200, NULL},
    {"NONE", "//admin", 200, NULL},
    {"NONE", "/%61dmin", 200, NULL},
    {"NONE", "/public/../admin", 200, NULL},
    {"NONE", "/admin%00", 200, NULL},
    {"NONE", "/admin?x=1", 403, NULL},
    {"BASE", "/./admin", 403, NULL},
    {"BASE", "/public/../admin", 403, NULL},
    {"BASE", "/%61dmin", 403, NULL},
    {"BASE", "/%2e/admin", 403, NULL},
    {"BASE", "//admin", 200, NULL},
    {"BASE", "/admin%2Fx", 200, NULL},
    {"BASE", "/public/..%2Fadmin", 200, NULL},
    {"BASE", "/admin%00", 400, NULL},
    {"BASE", "/a\\..\\admin", 403, NULL},
    {"BASE", "/x/./y?q=/./", 200, "/x/y?q=/./"},
    {"BASE", "/%7Euser", 200, "/~user"},
    {"BASE", "/ADMIN", 200, NULL},
    {"BASE", "admin", 400, NULL},
    /* A '%' that starts no escape: one decoding pass would make "%%32e"
     * into a new "%2e", a "." to a second decoder (found by fuzz_rbac). */
    {"BASE", "/public/%%32e%%32e/admin", 400, NULL},
    {"BASE", "/a%zz", 400, NULL},
    {"BASE", "/100%", 400, NULL},
    {"NONE", "/public/%%32e%%32e/admin", 200, NULL},
    {"DECODE_AND_MERGE_SLASHES", "/a%2", 400, NULL},
    {"MERGE_SLASHES", "//admin", 403, NULL},
    {"MERGE_SLASHES", "/a//b?x=//", 200, "/a/b?x=//"},
    {"MERGE_SLASHES", "/admin%2Fx", 200, NULL},
    {"MERGE_SLASHES", "/admin%00", 400, NULL},
    {"DECODE_AND_MERGE_SLASHES", "/admin%2Fx", 403, NULL},
    {"DECODE_AND_MERGE_SLASHES", "/public/..%2Fadmin", 403, NULL},
    {"DECODE_AND_MERGE_SLASHES", "/public%5C..%5Cadmin", 403, NULL},
    {"DECODE_AND_MERGE_SLASHES", "/x%2Fy", 200, "/x/y"},
    {"DECODE_AND_MERGE_SLASHES", "/admin%00", 400, NULL},
};

static void test_normalization(void **state)
{
    fixture_t *f = *state;
    size_t failed = 0;
    for (size_t i = 0; i < sizeof(ncases) / sizeof(ncases[0]); i++) {
        const ncase_t *nc = &ncases[i];
        char cfg[512];
        snprintf(cfg, sizeof(cfg),
                 "path_normalization: %s\n"
                 "policies: [{name: d, action: DENY, rules: [{to: [{operation: {paths: "
                 "[/admin, \"/admin/*\"]}}]}]}]\n",
                 nc->option);
        fake_inst_t *inst = inst_ok(f, cfg);
        run_t x = run_req(inst, f->gen, &(req_spec_t){.path = nc->path});
        int got = status_of(&x);
        slc_str_t p = fake_host_table.pseudo(x.r, SLC_PSEUDO_PATH);
        const char *want = nc->judged ? nc->judged : nc->path;
        bool path_ok = p.len == strlen(want) && memcmp(p.ptr, want, p.len) == 0;
        if (got != nc->expect || (got == 200 && !path_ok)) {
            fprintf(stderr, "%s %s: expected %d %s, got %d %.*s\n", nc->option, nc->path,
                    nc->expect, want, got, (int)p.len, p.ptr);
            failed++;
        }
        if (got == 400) {
            assert_string_equal(fake_req_reply_body(x.r), "Bad Request");
            assert_int_equal(fake_metric_value(fake_metric(inst->diag, "rbac_bad_path_total")), 1);
        }
        run_free(&x);
        fake_inst_free(inst);
    }
    assert_int_equal(failed, 0);
}

static void test_long_path_uses_arena(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst =
        inst_ok(f, "policies: [{name: d, action: DENY, rules: [{to: [{operation: {paths: "
                   "[\"/admin/*\"]}}]}]}]");
    size_t n = 20000;
    char *path = malloc(n + 1);
    memcpy(path, "/x/../admin/", 12);
    memset(path + 12, 'a', n - 12);
    path[n] = '\0';
    run_t x = run_req(inst, f->gen, &(req_spec_t){.path = path});
    assert_int_equal(status_of(&x), 403);
    run_free(&x);
    memcpy(path, "/public/aaaa", 12);
    x = run_req(inst, f->gen, &(req_spec_t){.path = path});
    assert_int_equal(status_of(&x), 200);
    run_free(&x);
    free(path);
    fake_inst_free(inst);
}

/* ---- configuration errors ---------------------------------------------------------- */

static void expect_error(fixture_t *f, const char *text, const char *full)
{
    fake_inst_t *inst = fake_inst_new(f->desc, f->gen, yaml(text), 1);
    assert_int_not_equal(inst->status, SLC_OK);
    bool found = false;
    for (size_t i = 0; i < inst->diag->nmsgs && !found; i++) {
        found = inst->diag->msgs[i].is_error && strcmp(inst->diag->msgs[i].text, full) == 0;
    }
    if (!found) {
        fprintf(stderr, "expected: %s\n", full);
        for (size_t i = 0; i < inst->diag->nmsgs; i++) {
            fprintf(stderr, "     got: %s\n", inst->diag->msgs[i].text);
        }
    }
    assert_true(found);
    fake_inst_free(inst);
}

static void test_config_errors(void **state)
{
    fixture_t *f = *state;
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules:\n"
                 "      - from:\n"
                 "          - source:\n"
                 "              ipBlocks: [127.0.0.0/8, 127.1.0.0/33]\n",
                 "rbac.yaml:6:39: policies[0].rules[0].from[0].source.ipBlocks[1]: bad IP address "
                 "or CIDR range '127.1.0.0/33'");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules:\n"
                 "      - to:\n"
                 "          - operation:\n"
                 "              ports: [\"80\", \"70000\"]\n",
                 "rbac.yaml:6:29: policies[0].rules[0].to[0].operation.ports[1]: bad port '70000' "
                 "(1-65535)");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules:\n"
                 "      - when:\n"
                 "          - key: request.header[x]\n"
                 "            values: [y]\n",
                 "rbac.yaml:5:18: policies[0].rules[0].when[0].key: unknown when key "
                 "'request.header[x]' (did you mean 'request.headers[NAME]'?)");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules:\n"
                 "      - when:\n"
                 "          - key: experimental.envoy.filters.network.mysql_proxy[db]\n"
                 "            values: [y]\n",
                 "rbac.yaml:5:18: policies[0].rules[0].when[0].key: unknown when key "
                 "'experimental.envoy.filters.network.mysql_proxy[db]'");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules:\n"
                 "      - when:\n"
                 "          - key: source.ip\n",
                 "rbac.yaml:5:13: policies[0].rules[0].when[0]: condition 'source.ip' needs "
                 "values or notValues");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "  - name: b\n"
                 "  - name: a\n",
                 "rbac.yaml:4:11: policies[2].name: duplicate policy name 'a'");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    action: CUSTOM\n",
                 "rbac.yaml:3:13: policies[0].action: action CUSTOM is not supported yet");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules: [{to: [{operation: {paths: [\"/api/{*}/x\"]}}]}]\n",
                 "rbac.yaml:3:40: policies[0].rules[0].to[0].operation.paths[0]: path templates "
                 "('{*}', '{**}') are not supported yet: '/api/{*}/x'");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules: [{from: [{source: {principal: [x]}}]}]\n",
                 "rbac.yaml:3:31: policies[0].rules[0].from[0].source.principal: unknown key "
                 "'principal' (did you mean 'principals'?)");
    expect_error(f, "path_normalization: MERGE\n",
                 "rbac.yaml:1:21: path_normalization: expected one of NONE, BASE, "
                 "MERGE_SLASHES, DECODE_AND_MERGE_SLASHES, got 'MERGE'");
    expect_error(f,
                 "policies:\n"
                 "  - action: DENY\n",
                 "rbac.yaml:2:5: policies[0]: missing required key 'name'");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules: [{from: {source: {}}}]\n",
                 "rbac.yaml:3:20: policies[0].rules[0].from: from must be a list");
    expect_error(f,
                 "policies:\n"
                 "  - name: a\n"
                 "    rules: [{when: [{key: destination.port, values: [http]}]}]\n",
                 "rbac.yaml:3:54: policies[0].rules[0].when[0].values[0]: bad port 'http' "
                 "(1-65535)");
}

static void test_selector_is_a_warning(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *inst =
        inst_ok(f, "policies: [{name: a, selector: {matchLabels: {app: x}}, rules: [{}]}]");
    assert_int_equal(fake_diag_errors(inst->diag), 0);
    assert_true(fake_diag_find(inst->diag, "selector is ignored") >= 0);
    fake_inst_free(inst);
}

static void test_no_identity_transport_without_cert(void **state)
{
    fixture_t *f = *state;
    /* A transport identity with no namespace segment: principal only. */
    fake_inst_t *inst = inst_ok(f, "policies: [{name: a, rules: [{from: [{source: {namespaces: "
                                   "[\"*\"]}}]}]}]");
    run_t x = run_req(inst, f->gen, &(req_spec_t){.identity = "spiffe://example.org/workload"});
    assert_int_equal(status_of(&x), 403);
    run_free(&x);
    fake_inst_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_decision_table, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denied_reply_and_facts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_allowed_without_allow_policy_sets_no_fact, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_normalization, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_path_uses_arena, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_selector_is_a_warning, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_identity_transport_without_cert, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
