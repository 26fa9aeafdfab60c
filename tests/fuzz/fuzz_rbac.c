/* fuzz_rbac: libFuzzer target for the rbac policy evaluator
 * (filters/rbac/rbac_policy.c) and the path normalization it judges by.
 *
 * Fixed policy sets are compiled once, through the core's own config loader
 * and binder, with a host table made of the core's config functions. Each
 * input is split at '\n' into request attributes: principal, host, method,
 * raw path, x-token header, source "ip:port", client address, local
 * "ip:port", SNI; the first byte holds flags (TCP mode, which of the
 * optional attributes are present, the normalization option).
 *
 * Invariants:
 *  - a DENY policy with `rules: [{}]` denies everything, naming itself;
 *  - an ALLOW policy without rules (Istio's `spec: {}`) denies everything,
 *    naming no policy; no policy at all allows everything;
 *  - every decision is deterministic (evaluated twice, same result);
 *  - for each field, X: [v] and notX: [v] never both match or both fail;
 *  - TCP mode never allows more with ALLOW policies, nor denies less with
 *    DENY policies, than HTTP mode;
 *  - normalization is idempotent: a normalized path normalizes to itself,
 *    so what rbac judged is what the upstream would judge again.
 */
#include "cfgtree.h"
#include "rbac_policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The filter sources use the module-wide table only through wrappers the
 * policy code never calls; the symbol must exist all the same. */
const slc_host_t *slc_host;

static const slc_host_t fz_host = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_host_t),
    .cfg_type = cfg_type,
    .cfg_scalar = cfg_scalar,
    .cfg_len = cfg_len,
    .cfg_at = cfg_at,
    .cfg_key_at = cfg_key_at,
    .cfg_get = cfg_get,
    .cfg_bind = cfg_bind,
    .cfg_duration_ms = cfg_duration_ms,
    .diag_error = diag_verror,
    .diag_warn = diag_vwarn,
    .cfg_alloc = cfg_build_alloc,
};

static const char rich_yaml[] =
    "policies:\n"
    "  - name: audit\n"
    "    action: AUDIT\n"
    "    rules: [{to: [{operation: {methods: [DELETE]}}]}]\n"
    "  - name: deny-admin\n"
    "    action: DENY\n"
    "    rules:\n"
    "      - to: [{operation: {paths: [/admin, \"/admin/*\"]}}]\n"
    "      - from: [{source: {notNamespaces: [foo, bar]}}]\n"
    "        to: [{operation: {hosts: [\"*.internal\"], ports: [\"9000\"]}}]\n"
    "  - name: deny-ip\n"
    "    action: DENY\n"
    "    rules: [{from: [{source: {ipBlocks: [192.0.2.0/24, \"2001:db8::/32\"]}}]}]\n"
    "  - name: allow-foo\n"
    "    rules:\n"
    "      - from: [{source: {principals: [\"cluster.local/ns/foo/*\"]}}]\n"
    "      - from: [{source: {remoteIpBlocks: [127.0.0.0/8]}}]\n"
    "        to: [{operation: {methods: [GET, HEAD], paths: [\"/public/*\", \"*.css\"]}}]\n"
    "        when: [{key: \"request.headers[x-token]\", values: [\"ok*\"]},\n"
    "               {key: connection.sni, notValues: [\"*.evil\"]}]\n";

/* One pair of policies per field: index 2k is X: [v], 2k+1 is notX: [v]. */
static const char pairs_yaml[] =
    "policies:\n"
    "  - {name: p0, rules: [{from: [{source: {principals: [\"cluster.local/ns/foo/*\"]}}]}]}\n"
    "  - {name: n0, rules: [{from: [{source: {notPrincipals: [\"cluster.local/ns/foo/*\"]}}]}]}\n"
    "  - {name: p1, rules: [{from: [{source: {namespaces: [\"*\"]}}]}]}\n"
    "  - {name: n1, rules: [{from: [{source: {notNamespaces: [\"*\"]}}]}]}\n"
    "  - {name: p2, rules: [{from: [{source: {ipBlocks: [127.0.0.0/8]}}]}]}\n"
    "  - {name: n2, rules: [{from: [{source: {notIpBlocks: [127.0.0.0/8]}}]}]}\n"
    "  - {name: p3, rules: [{from: [{source: {remoteIpBlocks: [\"::/0\"]}}]}]}\n"
    "  - {name: n3, rules: [{from: [{source: {notRemoteIpBlocks: [\"::/0\"]}}]}]}\n"
    "  - {name: p4, rules: [{to: [{operation: {hosts: [\"*.Example.com\"]}}]}]}\n"
    "  - {name: n4, rules: [{to: [{operation: {notHosts: [\"*.Example.com\"]}}]}]}\n"
    "  - {name: p5, rules: [{to: [{operation: {ports: [\"8080\"]}}]}]}\n"
    "  - {name: n5, rules: [{to: [{operation: {notPorts: [\"8080\"]}}]}]}\n"
    "  - {name: p6, rules: [{to: [{operation: {methods: [GET]}}]}]}\n"
    "  - {name: n6, rules: [{to: [{operation: {notMethods: [GET]}}]}]}\n"
    "  - {name: p7, rules: [{to: [{operation: {paths: [\"/a*\"]}}]}]}\n"
    "  - {name: n7, rules: [{to: [{operation: {notPaths: [\"/a*\"]}}]}]}\n"
    "  - {name: p8, rules: [{when: [{key: \"request.headers[x-token]\", values: [\"*\"]}]}]}\n"
    "  - {name: n8, rules: [{when: [{key: \"request.headers[x-token]\", notValues: [\"*\"]}]}]}\n"
    "  - {name: p9, rules: [{when: [{key: connection.sni, values: [\"*.com\"]}]}]}\n"
    "  - {name: n9, rules: [{when: [{key: connection.sni, notValues: [\"*.com\"]}]}]}\n";

static const char deny_all_yaml[] = "policies: [{name: deny-all, action: DENY, rules: [{}]},"
                                    " {name: a, rules: [{}]}]\n";
static const char allow_none_yaml[] = "policies: [{name: nothing}]\n";
static const char empty_yaml[] = "policies: []\n";

static rbac_set_t g_rich, g_pairs, g_deny_all, g_allow_none, g_empty;
/* The rich set's policies split by kind, for the TCP monotonicity checks. */
static rbac_set_t g_rich_allow_only, g_rich_deny_only;

/* The trees stay reachable for the process (LeakSanitizer checks at exit):
 * the compiled sets point into them. */
static cfg_tree_t *g_trees[8];
static size_t g_ntrees;

static void compile(const char *text, rbac_set_t *out)
{
    slc_diag_t d;
    diag_init(&d, NULL);
    cfg_tree_t *t = cfg_tree_load_string("fuzz.yaml", text, strlen(text), &d);
    CHECK(g_ntrees < sizeof(g_trees) / sizeof(g_trees[0]));
    g_trees[g_ntrees++] = t;
    d.tree = t;
    bool ok = d.nerrors == 0 && rbac_compile(&fz_host, &d, cfg_tree_root(t), out);
    if (!ok || d.nerrors != 0) {
        diag_print(&d, stderr);
        abort();
    }
    diag_cleanup(&d);
}

static void init(void)
{
    static bool done;
    if (done) {
        return;
    }
    done = true;
    compile(rich_yaml, &g_rich);
    compile(pairs_yaml, &g_pairs);
    compile(deny_all_yaml, &g_deny_all);
    compile(allow_none_yaml, &g_allow_none);
    compile(empty_yaml, &g_empty);
    g_rich_allow_only = g_rich;
    g_rich_allow_only.ndeny = 0;
    g_rich_deny_only = g_rich;
    g_rich_deny_only.nallow = 0;
}

typedef struct fz_req {
    slc_str_t token;
    bool has_token;
} fz_req_t;

static bool fz_header(void *arg, slc_str_t name, slc_str_t *out)
{
    const fz_req_t *q = arg;
    if (!q->has_token || !slcu_caseeq(name, SLC_STR("x-token"))) {
        return false;
    }
    *out = q->token;
    return true;
}

static bool decide(const rbac_set_t *s, const rbac_attrs_t *a, rbac_decision_t *d)
{
    rbac_decision_t again;
    bool hits[8], hits2[8];
    CHECK(s->naudit <= 8);
    rbac_evaluate(s, a, d, hits);
    rbac_evaluate(s, a, &again, hits2);
    CHECK(d->allowed == again.allowed && d->policy == again.policy && d->audit == again.audit);
    CHECK(memcmp(hits, hits2, s->naudit * sizeof(bool)) == 0);
    return d->allowed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init();
    if (size < 1 || size > 4096) {
        return 0;
    }
    uint8_t flags = data[0];
    slc_str_t f[9] = {{0}};
    size_t nf = 0, start = 1;
    for (size_t i = 1; i <= size && nf < 9; i++) {
        if (i == size || data[i] == '\n') {
            f[nf++] = (slc_str_t){(const char *)data + start, i - start};
            start = i + 1;
        }
    }
    fz_req_t q = {.token = f[4], .has_token = (flags & 0x02) != 0};
    rbac_attrs_t a = {.header = fz_header, .header_arg = &q, .tcp = (flags & 0x01) != 0};
    if (flags & 0x04) {
        a.principal = f[0];
        const char *ns = f[0].ptr ? memmem(f[0].ptr, f[0].len, "/ns/", 4) : NULL;
        if (ns != NULL) {
            const char *s = ns + 4, *end = f[0].ptr + f[0].len, *e = s;
            while (e < end && *e != '/') {
                e++;
            }
            a.ns = (slc_str_t){s, (size_t)(e - s)};
        }
    }
    a.host = f[1].ptr ? f[1] : SLC_STR("");
    a.method = f[2].ptr ? f[2] : SLC_STR("GET");
    uint32_t port;
    a.has_src_ip = rbac_split_hostport(f[5], &a.src_ip, &port);
    a.has_remote_ip = rbac_split_hostport(f[6], &a.remote_ip, &port);
    a.has_dst_ip = rbac_split_hostport(f[7], &a.dst_ip, &a.dst_port);
    a.has_dst_port = a.has_dst_ip && a.dst_port != 0;
    a.sni = (flags & 0x08) ? f[8] : SLC_STR_NULL;

    /* The path, normalized as the filter does (the query cut first). */
    slc_str_t raw = f[3];
    const char *qm = raw.ptr ? memchr(raw.ptr, '?', raw.len) : NULL;
    if (qm != NULL) {
        raw.len = (size_t)(qm - raw.ptr);
    }
    rbac_norm_t norm = (rbac_norm_t)((flags >> 4) & 3);
    char buf[4096], buf2[4096];
    size_t n = rbac_normalize_path(norm, raw, buf, sizeof(buf));
    if (n == SIZE_MAX) {
        return 0; /* the filter answers 400 */
    }
    CHECK(n <= raw.len && buf[0] == '/');
    /* Idempotent: what rbac judged normalizes to itself, so a second
     * normalizer (or decoder) on the way cannot see another path. */
    size_t n2 = rbac_normalize_path(norm, (slc_str_t){buf, n}, buf2, sizeof(buf2));
    CHECK(n2 == n && memcmp(buf, buf2, n) == 0);
    a.path = (slc_str_t){buf, n};

    rbac_decision_t d;
    CHECK(!decide(&g_deny_all, &a, &d));
    CHECK(d.policy != NULL && strcmp(d.policy->name, "deny-all") == 0);
    CHECK(!decide(&g_allow_none, &a, &d));
    CHECK(d.policy == NULL);
    CHECK(decide(&g_empty, &a, &d));
    CHECK(d.policy == NULL);

    bool rich = decide(&g_rich, &a, &d);
    CHECK(rich == (d.policy != NULL ? d.policy->action == RBAC_ALLOW : false));

    /* X and notX are complements, in HTTP mode (in TCP mode an ALLOW rule
     * with an HTTP-only field matches neither way). */
    rbac_attrs_t http = a;
    http.tcp = false;
    for (uint32_t i = 0; i + 1 < g_pairs.nallow; i += 2) {
        bool pos = rbac_policy_matches(&g_pairs.allow[i], &http);
        bool neg = rbac_policy_matches(&g_pairs.allow[i + 1], &http);
        CHECK(pos != neg);
    }

    /* TCP mode is never more permissive for ALLOW, never laxer for DENY. */
    rbac_attrs_t tcp = a;
    tcp.tcp = true;
    rbac_decision_t dh, dt;
    if (decide(&g_rich_allow_only, &tcp, &dt)) {
        CHECK(decide(&g_rich_allow_only, &http, &dh));
    }
    if (!decide(&g_rich_deny_only, &http, &dh)) {
        CHECK(!decide(&g_rich_deny_only, &tcp, &dt));
    }
    return 0;
}
