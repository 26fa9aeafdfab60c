/* Unit tests of the router filter against the fake host (the RE2 shim's
 * own tests are in tests/unit/util/test_regex.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_host.h"

typedef struct fixture {
    fake_gen_t *gen;
    slc_cluster_t *api, *web, *v1, *v2, *v3, *shadow;
    const slc_filter_desc_t *desc;
    fake_inst_t *inst;
} fixture_t;

#define S fake_scalar

static slc_cfg_node_t *direct(const char *status, const char *body)
{
    return fake_map("direct_response", fake_map("status", S(status), "body", S(body), NULL), NULL);
}

/* standard_config:
 *   virtual_hosts:
 *     - name: exact
 *       domains: [api.example.com, Other.Example.com]
 *       routes:
 *         - { match: { path: /exact }, route: { cluster: web } }
 *         - { match: { prefix: /api }, route: { cluster: api, timeout: 5s } }
 *         - { match: { prefix: /api/v2 }, direct_response: { status: 200, body: "shadowed\n" } }
 *         - { match: { prefix: / }, direct_response: { status: 200, body: "exact\n" } }
 *     - name: suffix
 *       domains: ["*.example.com"]
 *       routes: [ { direct_response: { status: 200, body: "suffix\n" } } ]
 *     - name: eu
 *       domains: ["*.eu.example.com"]
 *       routes: [ { match: {}, direct_response: { status: 201, body: "eu\n" } } ]
 *     - name: any
 *       domains: ["*"]
 *       routes: [ { match: { prefix: /only }, direct_response: { status: 202, body: "any\n" } } ]
 */
static slc_cfg_node_t *standard_config(void)
{
    slc_cfg_node_t *exact_routes =
        fake_seq(fake_map("match", fake_map("path", S("/exact"), NULL), "route",
                          fake_map("cluster", S("web"), NULL), NULL),
                 fake_map("match", fake_map("prefix", S("/api"), NULL), "route",
                          fake_map("cluster", S("api"), "timeout", S("5s"), NULL), NULL),
                 fake_map("match", fake_map("prefix", S("/api/v2"), NULL), "direct_response",
                          fake_map("status", S("200"), "body", S("shadowed\n"), NULL), NULL),
                 fake_map("match", fake_map("prefix", S("/"), NULL), "direct_response",
                          fake_map("status", S("200"), "body", S("exact\n"), NULL), NULL),
                 NULL);
    return fake_map(
        "virtual_hosts",
        fake_seq(
            fake_map("name", S("exact"), "domains",
                     fake_seq(S("api.example.com"), S("Other.Example.com"), NULL), "routes",
                     exact_routes, NULL),
            fake_map("name", S("suffix"), "domains", fake_seq(S("*.example.com"), NULL), "routes",
                     fake_seq(direct("200", "suffix\n"), NULL), NULL),
            fake_map("name", S("eu"), "domains", fake_seq(S("*.eu.example.com"), NULL), "routes",
                     fake_seq(fake_map("match", fake_empty_map(), "direct_response",
                                       fake_map("status", S("201"), "body", S("eu\n"), NULL), NULL),
                              NULL),
                     NULL),
            fake_map(
                "name", S("any"), "domains", fake_seq(S("*"), NULL), "routes",
                fake_seq(fake_map("match", fake_map("prefix", S("/only"), NULL), "direct_response",
                                  fake_map("status", S("202"), "body", S("any\n"), NULL), NULL),
                         NULL),
                NULL),
            NULL),
        NULL);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->gen = fake_gen_new();
    f->api = fake_cluster_add(f->gen, "api", "127.0.0.1:8081", "127.0.0.1:8082", NULL);
    f->web = fake_cluster_add(f->gen, "web", "127.0.0.1:9000", NULL);
    f->v1 = fake_cluster_add(f->gen, "v1", "127.0.0.1:9101", NULL);
    f->v2 = fake_cluster_add(f->gen, "v2", "127.0.0.1:9102", NULL);
    f->v3 = fake_cluster_add(f->gen, "v3", "127.0.0.1:9103", NULL);
    f->shadow = fake_cluster_add(f->gen, "shadow", "127.0.0.1:9200", NULL);
    f->desc = slc_filter_entry(&fake_host_table);
    *state = f;
    return 0;
}

static int setup_standard(void **state)
{
    setup(state);
    fixture_t *f = *state;
    f->inst = fake_inst_new(f->desc, f->gen, standard_config(), 1);
    if (f->inst->status != SLC_OK) {
        fake_diag_dump(f->inst->diag);
        return -1;
    }
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    fake_inst_free(f->inst);
    fake_gen_free(f->gen);
    fake_cfg_free_all();
    free(f);
    return 0;
}

/* run sends one request through the router; the caller frees it. */
static slc_req_t *run(fixture_t *f, const char *authority, const char *path, slc_action_t *act)
{
    slc_req_t *r = fake_req_new(f->gen, "GET", authority, path);
    *act = fake_inst_run(f->inst, r, FAKE_REQUEST_HEADERS);
    return r;
}

/* expect_cluster checks that the request was routed to |c|. */
static void expect_cluster(fixture_t *f, const char *authority, const char *path,
                           const slc_cluster_t *c)
{
    slc_action_t act;
    slc_req_t *r = run(f, authority, path, &act);
    assert_int_equal(act, SLC_CONTINUE);
    assert_int_equal(fake_req_reply_status(r), 0);
    assert_ptr_equal(fake_req_cluster(r), c);
    fake_req_free(r);
}

/* expect_reply checks that the request was answered locally. */
static void expect_reply(fixture_t *f, const char *authority, const char *path, int status,
                         const char *body)
{
    slc_action_t act;
    slc_req_t *r = run(f, authority, path, &act);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), status);
    assert_string_equal(fake_req_reply_body(r), body);
    assert_null(fake_req_cluster(r));
    fake_req_free(r);
}

static void test_descriptor(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(f->desc->abi_version, SLC_ABI_VERSION);
    assert_int_equal(f->desc->struct_size, sizeof(slc_filter_desc_t));
    assert_string_equal(f->desc->name, "router");
    assert_non_null(f->desc->on_request_headers);
    /* Per-stream state (the route, for response_headers and fault delays)
     * and per-worker PRNGs. */
    assert_non_null(f->desc->request_new);
    assert_non_null(f->desc->on_response_headers);
    assert_non_null(f->desc->worker_init);
    assert_non_null(f->desc->worker_fini);
}

static void test_exact_domain(void **state)
{
    fixture_t *f = *state;
    expect_cluster(f, "api.example.com", "/api/users", f->api);
    expect_reply(f, "api.example.com", "/other", 200, "exact\n");
}

static void test_domain_port_and_case(void **state)
{
    fixture_t *f = *state;
    expect_cluster(f, "api.example.com:8080", "/api", f->api);
    expect_cluster(f, "API.Example.COM", "/api", f->api);
    expect_cluster(f, "Api.EXAMPLE.com:443", "/api", f->api);
    /* The config spelled this one in mixed case. */
    expect_cluster(f, "other.example.com", "/exact", f->web);
    expect_cluster(f, "OTHER.EXAMPLE.COM:1", "/exact", f->web);
}

static void test_suffix_domain(void **state)
{
    fixture_t *f = *state;
    expect_reply(f, "www.example.com", "/anything", 200, "suffix\n");
    expect_reply(f, "WWW.Example.Com:8443", "/", 200, "suffix\n");
    /* The longest suffix wins over a shorter one listed first. */
    expect_reply(f, "a.eu.example.com", "/", 201, "eu\n");
    /* An exact domain wins over a matching suffix. */
    expect_cluster(f, "api.example.com", "/api", f->api);
    /* "*.example.com" needs something before ".example.com". */
    expect_reply(f, "example.com", "/only", 202, "any\n");
    expect_reply(f, ".example.com", "/only", 202, "any\n");
}

static void test_wildcard_domain(void **state)
{
    fixture_t *f = *state;
    expect_reply(f, "unknown.org", "/only/this", 202, "any\n");
    expect_reply(f, "unknown.org:9999", "/only", 202, "any\n");
    expect_reply(f, "[::1]:8080", "/only", 202, "any\n");
    expect_reply(f, "", "/only", 202, "any\n");
}

static void test_prefix_vs_path(void **state)
{
    fixture_t *f = *state;
    expect_cluster(f, "api.example.com", "/exact", f->web);
    /* `path` is exact: longer paths fall through to the catch-all. */
    expect_reply(f, "api.example.com", "/exact/more", 200, "exact\n");
    expect_reply(f, "api.example.com", "/exactly", 200, "exact\n");
    expect_reply(f, "api.example.com", "/Exact", 200, "exact\n");
    /* `prefix` is a byte prefix, case-sensitive. */
    expect_cluster(f, "api.example.com", "/api", f->api);
    expect_cluster(f, "api.example.com", "/apix", f->api);
    expect_reply(f, "api.example.com", "/ap", 200, "exact\n");
    expect_reply(f, "api.example.com", "/API", 200, "exact\n");
}

static void test_first_match_wins(void **state)
{
    fixture_t *f = *state;
    /* /api (route 2) shadows /api/v2 (route 3). */
    expect_cluster(f, "api.example.com", "/api/v2/x", f->api);
}

static void test_query_ignored(void **state)
{
    fixture_t *f = *state;
    expect_cluster(f, "api.example.com", "/exact?x=1", f->web);
    expect_cluster(f, "api.example.com", "/exact?", f->web);
    /* The query must not help a prefix match either. */
    expect_reply(f, "api.example.com", "/?next=/api", 200, "exact\n");
}

static void test_direct_response(void **state)
{
    fixture_t *f = *state;
    slc_action_t act;
    slc_req_t *r = run(f, "www.example.com", "/", &act);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), 200);
    assert_string_equal(fake_req_reply_body(r), "suffix\n");
    assert_string_equal(fake_req_reply_content_type(r), "text/plain");
    assert_int_equal(fake_req_flags(r), 0);
    assert_false(fake_req_timeout_set(r));
    fake_req_free(r);
}

static void test_no_route(void **state)
{
    fixture_t *f = *state;
    slc_action_t act;
    /* "*" matches the host but none of its routes matches the path. */
    slc_req_t *r = run(f, "unknown.org", "/nope", &act);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), 404);
    assert_string_equal(fake_req_reply_body(r), "no route\n");
    assert_int_equal(fake_req_flags(r), SLC_RF_NR);
    assert_null(fake_req_cluster(r));
    fake_req_free(r);
}

static void test_no_vhost(void **state)
{
    fixture_t *f = *state;
    f->inst =
        fake_inst_new(f->desc, f->gen,
                      fake_map("virtual_hosts",
                               fake_seq(fake_map("domains", fake_seq(S("a.com"), NULL), "routes",
                                                 fake_seq(direct("200", "a\n"), NULL), NULL),
                                        NULL),
                               NULL),
                      1);
    assert_int_equal(f->inst->status, SLC_OK);
    expect_reply(f, "a.com", "/", 200, "a\n");
    slc_action_t act;
    slc_req_t *r = run(f, "b.com", "/", &act);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), 404);
    assert_true(fake_req_flags(r) & SLC_RF_NR);
    fake_req_free(r);
}

static void test_timeout_recorded(void **state)
{
    fixture_t *f = *state;
    slc_action_t act;
    slc_req_t *r = run(f, "api.example.com", "/api/x", &act);
    assert_int_equal(act, SLC_CONTINUE);
    assert_true(fake_req_timeout_set(r));
    assert_int_equal(fake_req_timeout(r), 5000);
    fake_req_free(r);

    /* No timeout configured: the router says "none" explicitly. */
    r = run(f, "api.example.com", "/exact", &act);
    assert_int_equal(act, SLC_CONTINUE);
    assert_true(fake_req_timeout_set(r));
    assert_int_equal(fake_req_timeout(r), 0);
    fake_req_free(r);
}

static void test_cluster_resolved_at_config_time(void **state)
{
    fixture_t *f = *state;
    /* Destinations and mirrors are handles resolved in config_new (the
     * instance and its streams share one generation): no lookup by name on
     * the request path. */
    unsigned before = fake_cluster_get_calls();
    slc_req_t *r = fake_req_new(f->gen, "GET", "api.example.com", "/api");
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_REQUEST_HEADERS), SLC_CONTINUE);
    assert_ptr_equal(fake_req_cluster(r), f->api);
    fake_req_free(r);
    assert_int_equal(fake_cluster_get_calls(), before);

    /* A stream of another generation never runs this instance in the core;
     * if a host handed one over anyway, the handle is refused and the
     * router fails closed. */
    fake_gen_t *g2 = fake_gen_new();
    fake_cluster_add(g2, "api", "127.0.0.1:7000", NULL);
    r = fake_req_new(g2, "GET", "api.example.com", "/api");
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_REQUEST_HEADERS), SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), 503);
    fake_req_free(r);
    fake_gen_free(g2);
}

static void test_no_allocation_per_request(void **state)
{
    fixture_t *f = *state;
    slc_action_t act;
    /* Only the small stream state is allocated; matching builds nothing. */
    slc_req_t *r = run(f, "API.example.com:80", "/api/x?y=1", &act);
    assert_int_equal(act, SLC_CONTINUE);
    size_t base = fake_req_arena_bytes(r);
    assert_true(base > 0 && base <= 32);
    fake_req_free(r);
    r = run(f, "www.example.com", "/", &act);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_arena_bytes(r), base);
    fake_req_free(r);
}

/* ---- config errors ---------------------------------------------------------- */

/* one_route_config wraps a single route entry in a "*" virtual host. */
static slc_cfg_node_t *one_route_config(slc_cfg_node_t *route_entry)
{
    return fake_map("virtual_hosts",
                    fake_seq(fake_map("domains", fake_seq(S("*"), NULL), "routes",
                                      fake_seq(route_entry, NULL), NULL),
                             NULL),
                    NULL);
}

/* expect_error builds |cfg| and checks it fails with exactly one error, at
 * |node|, whose message contains |needle|. */
static void expect_error(fixture_t *f, slc_cfg_node_t *cfg, const slc_cfg_node_t *node,
                         const char *needle)
{
    f->inst = fake_inst_new(f->desc, f->gen, cfg, 1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_null(f->inst->cfg);
    if (fake_diag_errors(f->inst->diag) != 1) {
        fake_diag_dump(f->inst->diag);
    }
    assert_int_equal(fake_diag_errors(f->inst->diag), 1);
    assert_ptr_equal(fake_diag_node(f->inst->diag, 0), node);
    assert_non_null(strstr(fake_diag_msg(f->inst->diag, 0), needle));
}

static void test_err_unknown_cluster(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *cl = S("nope");
    expect_error(f, one_route_config(fake_map("route", fake_map("cluster", cl, NULL), NULL)), cl,
                 "unknown cluster 'nope'");
    assert_string_equal(fake_diag_path(f->inst->diag, 0),
                        "virtual_hosts[0].routes[0].route.cluster");
}

static void test_err_route_and_direct(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *entry = fake_map("route", fake_map("cluster", S("api"), NULL),
                                     "direct_response", fake_map("status", S("200"), NULL), NULL);
    expect_error(f, one_route_config(entry), entry,
                 "exactly one of 'route', 'redirect', 'https_redirect' or 'direct_response'");
}

static void test_err_no_action(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *entry = fake_map("match", fake_map("prefix", S("/"), NULL), NULL);
    expect_error(f, one_route_config(entry), entry, "exactly one of");
}

static void test_err_bad_status(void **state)
{
    /* The binder reports a bad value at the value, naming the key in the
     * path rather than in the message (the core's cfg_bind wording). */
    fixture_t *f = *state;
    slc_cfg_node_t *st = S("99");
    expect_error(f,
                 one_route_config(fake_map("direct_response",
                                           fake_map("status", st, "body", S("x"), NULL), NULL)),
                 st, "expected an integer from 200 to 599, got '99'");
    assert_string_equal(fake_diag_path(f->inst->diag, 0),
                        "virtual_hosts[0].routes[0].direct_response.status");
    fake_inst_free(f->inst);

    st = S("600");
    expect_error(f,
                 one_route_config(fake_map("direct_response", fake_map("status", st, NULL), NULL)),
                 st, "expected an integer from 200 to 599, got '600'");
    assert_string_equal(fake_diag_path(f->inst->diag, 0),
                        "virtual_hosts[0].routes[0].direct_response.status");
    fake_inst_free(f->inst);

    st = S("two hundred");
    expect_error(f,
                 one_route_config(fake_map("direct_response", fake_map("status", st, NULL), NULL)),
                 st, "expected an integer from 200 to 599, got 'two hundred'");
    assert_string_equal(fake_diag_path(f->inst->diag, 0),
                        "virtual_hosts[0].routes[0].direct_response.status");
}

static void test_err_unknown_key(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *bad = S("/api");
    expect_error(f,
                 one_route_config(fake_map("match", fake_map("prefx", bad, NULL), "route",
                                           fake_map("cluster", S("api"), NULL), NULL)),
                 bad, "unknown key 'prefx'");
    assert_non_null(strstr(fake_diag_msg(f->inst->diag, 0), "did you mean 'prefix'"));
}

static void test_err_prefix_without_slash(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *p = S("api");
    expect_error(f,
                 one_route_config(fake_map("match", fake_map("prefix", p, NULL), "route",
                                           fake_map("cluster", S("api"), NULL), NULL)),
                 p, "must start with '/'");
    fake_inst_free(f->inst);

    p = S("exact");
    expect_error(f,
                 one_route_config(fake_map("match", fake_map("path", p, NULL), "route",
                                           fake_map("cluster", S("api"), NULL), NULL)),
                 p, "must start with '/'");
}

static void test_err_prefix_and_path(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *m = fake_map("prefix", S("/a"), "path", S("/b"), NULL);
    expect_error(f,
                 one_route_config(fake_map("match", m, "direct_response",
                                           fake_map("status", S("200"), NULL), NULL)),
                 m, "more than one of 'prefix', 'path' and 'regex'");
}

static void test_err_bad_timeout(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *t = S("soon");
    expect_error(f,
                 one_route_config(
                     fake_map("route", fake_map("cluster", S("api"), "timeout", t, NULL), NULL)),
                 t, "duration");
}

static void test_err_empty_domains(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *doms = fake_empty_seq();
    expect_error(f,
                 fake_map("virtual_hosts",
                          fake_seq(fake_map("domains", doms, "routes",
                                            fake_seq(direct("200", "x"), NULL), NULL),
                                   NULL),
                          NULL),
                 doms, "must not be empty");
}

static void test_err_bad_domains(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *port = S("a.com:80");
    slc_cfg_node_t *mid = S("foo.*.com");
    slc_cfg_node_t *dup = S("B.com");
    slc_cfg_node_t *first = S("b.com");
    slc_cfg_node_t *cfg =
        fake_map("virtual_hosts",
                 fake_seq(fake_map("domains", fake_seq(port, mid, first, NULL), "routes",
                                   fake_seq(direct("200", "x"), NULL), NULL),
                          fake_map("domains", fake_seq(dup, NULL), "routes",
                                   fake_seq(direct("200", "y"), NULL), NULL),
                          NULL),
                 NULL);
    f->inst = fake_inst_new(f->desc, f->gen, cfg, 1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(f->inst->diag), 3);
    int i = fake_diag_find(f->inst->diag, "port");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), port);
    i = fake_diag_find(f->inst->diag, "'*' is only allowed");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), mid);
    i = fake_diag_find(f->inst->diag, "listed twice");
    assert_true(i >= 0);
    /* Domains are case-insensitive, so "B.com" repeats "b.com"; either
     * spelling may be the one reported. */
    const slc_cfg_node_t *at = fake_diag_node(f->inst->diag, (size_t)i);
    assert_true(at == dup || at == first);
}

static void test_err_missing_virtual_hosts(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *root = fake_empty_map();
    expect_error(f, root, root, "virtual_hosts");
}

static void test_err_all_reported(void **state)
{
    fixture_t *f = *state;
    /* Two independent mistakes in two routes: both are reported in one go. */
    slc_cfg_node_t *cl = S("nope");
    slc_cfg_node_t *st = S("1000");
    slc_cfg_node_t *cfg = fake_map(
        "virtual_hosts",
        fake_seq(fake_map("domains", fake_seq(S("*"), NULL), "routes",
                          fake_seq(fake_map("route", fake_map("cluster", cl, NULL), NULL),
                                   fake_map("direct_response", fake_map("status", st, NULL), NULL),
                                   NULL),
                          NULL),
                 NULL),
        NULL);
    f->inst = fake_inst_new(f->desc, f->gen, cfg, 1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(f->inst->diag), 2);
    assert_ptr_equal(fake_diag_node(f->inst->diag, 0), cl);
    assert_ptr_equal(fake_diag_node(f->inst->diag, 1), st);
}

/* ---- helpers for the VirtualService features ------------------------------------ */

/* inst_ok builds |cfg| and insists it is accepted. */
static void inst_ok(fixture_t *f, slc_cfg_node_t *cfg)
{
    f->inst = fake_inst_new(f->desc, f->gen, cfg, 2);
    if (f->inst->status != SLC_OK) {
        fake_diag_dump(f->inst->diag);
    }
    assert_int_equal(f->inst->status, SLC_OK);
}

/* routes_config wraps route entries (NULL-terminated) in a "*" vhost. */
__attribute__((sentinel)) static slc_cfg_node_t *routes_config(slc_cfg_node_t *first, ...)
{
    slc_cfg_node_t *items[32];
    size_t n = 0;
    va_list ap;
    va_start(ap, first);
    for (slc_cfg_node_t *e = first; e != NULL && n < 31; e = va_arg(ap, slc_cfg_node_t *)) {
        items[n++] = e;
    }
    va_end(ap);
    slc_cfg_node_t *seq = NULL;
    /* fake_seq is variadic only: rebuild it from the array. */
    switch (n) {
    case 1:
        seq = fake_seq(items[0], NULL);
        break;
    case 2:
        seq = fake_seq(items[0], items[1], NULL);
        break;
    case 3:
        seq = fake_seq(items[0], items[1], items[2], NULL);
        break;
    case 4:
        seq = fake_seq(items[0], items[1], items[2], items[3], NULL);
        break;
    case 5:
        seq = fake_seq(items[0], items[1], items[2], items[3], items[4], NULL);
        break;
    case 6:
        seq = fake_seq(items[0], items[1], items[2], items[3], items[4], items[5], NULL);
        break;
    default:
        fail_msg("routes_config takes 1 to 6 routes, got %zu", n);
    }
    return fake_map(
        "virtual_hosts",
        fake_seq(fake_map("domains", fake_seq(S("*"), NULL), "routes", seq, NULL), NULL), NULL);
}

static slc_cfg_node_t *to_cluster(const char *name)
{
    return fake_map("cluster", S(name), NULL);
}

/* req_run makes a request with optional headers ("name", "value", ...,
 * NULL) and runs on_request_headers. */
__attribute__((sentinel)) static slc_req_t *req_run(fixture_t *f, const char *method,
                                                    const char *authority, const char *path,
                                                    slc_action_t *act, ...)
{
    slc_req_t *r = fake_req_new(f->gen, method, authority, path);
    va_list ap;
    va_start(ap, act);
    for (const char *n = va_arg(ap, const char *); n != NULL; n = va_arg(ap, const char *)) {
        fake_req_add_header(r, SLC_REQUEST_HEADERS, n, va_arg(ap, const char *));
    }
    va_end(ap);
    *act = fake_inst_run(f->inst, r, FAKE_REQUEST_HEADERS);
    return r;
}

/* routed_to runs a GET and returns the cluster it was routed to (NULL for a
 * local reply), freeing the request. */
__attribute__((sentinel)) static const slc_cluster_t *routed_to(fixture_t *f, const char *path, ...)
{
    slc_req_t *r = fake_req_new(f->gen, "GET", "h.example.com", path);
    va_list ap;
    va_start(ap, path);
    for (const char *n = va_arg(ap, const char *); n != NULL; n = va_arg(ap, const char *)) {
        fake_req_add_header(r, SLC_REQUEST_HEADERS, n, va_arg(ap, const char *));
    }
    va_end(ap);
    slc_action_t act = fake_inst_run(f->inst, r, FAKE_REQUEST_HEADERS);
    const slc_cluster_t *c = act == SLC_CONTINUE ? fake_req_cluster(r) : NULL;
    fake_req_free(r);
    return c;
}

static const char *pseudo_of(slc_req_t *r, slc_pseudo_t which, char *buf, size_t size)
{
    slc_str_t v = fake_host_table.pseudo(r, which);
    snprintf(buf, size, "%.*s", (int)v.len, v.ptr ? v.ptr : "");
    return buf;
}

/* ---- matching ------------------------------------------------------------------ */

static void test_match_headers(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *hdrs = fake_map("x-user", fake_map("exact", S("jason"), NULL), "x-tier",
                                    fake_map("prefix", S("gold"), NULL), "x-id",
                                    fake_map("regex", S("[0-9]{3}"), NULL), "x-debug",
                                    fake_map("present", S("true"), NULL), "x-block",
                                    fake_map("absent", S("true"), NULL), NULL);
    inst_ok(f, routes_config(fake_map("match", fake_map("headers", hdrs, NULL), "route",
                                      to_cluster("v2"), NULL),
                             fake_map("route", to_cluster("v1"), NULL), NULL));
    assert_ptr_equal(routed_to(f, "/", "x-user", "jason", "x-tier", "gold-plus", "x-id", "123",
                               "x-debug", "", NULL),
                     f->v2);
    /* Header names are case-insensitive, values are not. */
    assert_ptr_equal(
        routed_to(f, "/", "X-User", "jason", "X-Tier", "gold", "X-ID", "007", "X-Debug", "1", NULL),
        f->v2);
    assert_ptr_equal(
        routed_to(f, "/", "x-user", "Jason", "x-tier", "gold", "x-id", "123", "x-debug", "1", NULL),
        f->v1);
    assert_ptr_equal(routed_to(f, "/", "x-user", "jason", "x-tier", "silver", "x-id", "123",
                               "x-debug", "1", NULL),
                     f->v1);
    assert_ptr_equal(routed_to(f, "/", "x-user", "jason", "x-tier", "gold", "x-id", "1234",
                               "x-debug", "1", NULL),
                     f->v1);
    assert_ptr_equal(routed_to(f, "/", "x-user", "jason", "x-tier", "gold", "x-id", "123", NULL),
                     f->v1);
    assert_ptr_equal(routed_to(f, "/", "x-user", "jason", "x-tier", "gold", "x-id", "123",
                               "x-debug", "1", "x-block", "", NULL),
                     f->v1);
}

static void test_match_method_authority_query(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *m = fake_map("method", fake_map("exact", S("POST"), NULL), "authority",
                                 fake_map("prefix", S("api."), NULL), "query_params",
                                 fake_map("debug", fake_map("exact", S("1"), NULL), "v",
                                          fake_map("regex", S("v[0-9]+"), NULL), "trace",
                                          fake_map("present", S("true"), NULL), NULL),
                                 NULL);
    inst_ok(f, routes_config(fake_map("match", m, "route", to_cluster("v2"), NULL),
                             fake_map("route", to_cluster("v1"), NULL), NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "POST", "api.example.com", "/x?v=v12&debug=1&trace", &act, NULL);
    assert_ptr_equal(fake_req_cluster(r), f->v2);
    fake_req_free(r);
    r = req_run(f, "GET", "api.example.com", "/x?v=v12&debug=1&trace", &act, NULL);
    assert_ptr_equal(fake_req_cluster(r), f->v1);
    fake_req_free(r);
    r = req_run(f, "POST", "www.example.com", "/x?v=v12&debug=1&trace", &act, NULL);
    assert_ptr_equal(fake_req_cluster(r), f->v1);
    fake_req_free(r);
    r = req_run(f, "POST", "api.example.com", "/x?v=v12&debug=10&trace=", &act, NULL);
    assert_ptr_equal(fake_req_cluster(r), f->v1);
    fake_req_free(r);
    r = req_run(f, "POST", "api.example.com", "/x?v=x1&debug=1&trace", &act, NULL);
    assert_ptr_equal(fake_req_cluster(r), f->v1);
    fake_req_free(r);
    r = req_run(f, "POST", "api.example.com", "/x?v=v1&debug=1", &act, NULL);
    assert_ptr_equal(fake_req_cluster(r), f->v1);
    fake_req_free(r);
    /* The path part never reads as a query parameter. */
    r = req_run(f, "POST", "api.example.com", "/debug=1?v=v1&trace", &act, NULL);
    assert_ptr_equal(fake_req_cluster(r), f->v1);
    fake_req_free(r);
}

static void test_match_regex_path_and_list(void **state)
{
    fixture_t *f = *state;
    /* A list of matches is an OR; each map is an AND. */
    slc_cfg_node_t *ms =
        fake_seq(fake_map("regex", S("/users/[0-9]+(/profile)?"), NULL),
                 fake_map("path", S("/Exact"), "ignore_uri_case", S("true"), NULL),
                 fake_map("prefix", S("/API/"), "ignore_uri_case", S("true"), NULL), NULL);
    inst_ok(f, routes_config(fake_map("match", ms, "route", to_cluster("v2"), NULL),
                             fake_map("match", fake_empty_seq(), "route", to_cluster("v1"), NULL),
                             NULL));
    assert_ptr_equal(routed_to(f, "/users/42", NULL), f->v2);
    assert_ptr_equal(routed_to(f, "/users/42/profile?x=1", NULL), f->v2);
    assert_ptr_equal(routed_to(f, "/users/42/other", NULL), f->v1);
    assert_ptr_equal(routed_to(f, "/users/x", NULL), f->v1);
    assert_ptr_equal(routed_to(f, "/eXACT", NULL), f->v2);
    assert_ptr_equal(routed_to(f, "/exact/", NULL), f->v1);
    assert_ptr_equal(routed_to(f, "/api/v1", NULL), f->v2);
    assert_ptr_equal(routed_to(f, "/Api/", NULL), f->v2);
    assert_ptr_equal(routed_to(f, "/apix", NULL), f->v1);
}

/* RE2 matches UTF-8 text: '.' and a negated class take one character
 * whatever its bytes, and (?i) folds non-ASCII letters. */
static void test_match_regex_unicode(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(
                   fake_map("match", fake_map("regex", S("/u/[^a]"), NULL), "route",
                            to_cluster("v2"), NULL),
                   fake_map(
                       "match",
                       fake_map("headers",
                                fake_map("x-name",
                                         fake_map("regex", S("(?i)\xc3\xa9t\xc3\xa9"), NULL), NULL),
                                NULL),
                       "route", to_cluster("v3"), NULL),
                   fake_map("route", to_cluster("v1"), NULL), NULL));
    assert_ptr_equal(routed_to(f, "/u/\xc3\xa9", NULL), f->v2);
    assert_ptr_equal(routed_to(f, "/u/\xc3\xa9\xc3\xa9", NULL), f->v1);
    assert_ptr_equal(routed_to(f, "/u/a", NULL), f->v1);
    assert_ptr_equal(routed_to(f, "/x", "x-name", "\xc3\x89T\xc3\x89", NULL), f->v3);
    assert_ptr_equal(routed_to(f, "/x", "x-name", "ete", NULL), f->v1);
}

/* max_program_size is Envoy's GoogleRE2 limit, 100 unless raised: \pL
 * (every Unicode letter) is over it. */
static void test_regex_max_program_size(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *re = S("/\\pL+");
    expect_error(f,
                 one_route_config(fake_map("match", fake_map("regex", re, NULL), "route",
                                           to_cluster("v1"), NULL)),
                 re, "over max_program_size 100");
    fake_inst_free(f->inst);
    slc_cfg_node_t *route =
        fake_map("match", fake_map("regex", S("/\\pL+"), NULL), "route", to_cluster("v2"), NULL);
    slc_cfg_node_t *cfg = fake_map(
        "max_program_size", S("5000"), "virtual_hosts",
        fake_seq(fake_map("domains", fake_seq(S("*"), NULL), "routes", fake_seq(route, NULL), NULL),
                 NULL),
        NULL);
    inst_ok(f, cfg);
    assert_ptr_equal(routed_to(f, "/caf\xc3\xa9", NULL), f->v2);
    assert_null(routed_to(f,
                          "/caf\xc3\xa9"
                          "1",
                          NULL));
}

/* ---- weighted destinations ------------------------------------------------------- */

static void count_picks(fixture_t *f, size_t n, size_t *c1, size_t *c2, size_t *c3, int worker)
{
    for (size_t i = 0; i < n; i++) {
        slc_req_t *r = fake_req_new(f->gen, "GET", "h", "/");
        fake_req_set_worker(r, worker);
        assert_int_equal(fake_inst_run(f->inst, r, FAKE_REQUEST_HEADERS), SLC_CONTINUE);
        const slc_cluster_t *c = fake_req_cluster(r);
        *c1 += c == f->v1;
        *c2 += c == f->v2;
        *c3 += c == f->v3;
        fake_req_free(r);
    }
}

/* within checks |got| of |n| picks is |pct| percent, +-2 points. */
static void within(size_t got, size_t n, double pct)
{
    double share = 100.0 * (double)got / (double)n;
    if (share < pct - 2.0 || share > pct + 2.0) {
        fail_msg("share %.2f%% is not within 2 points of %.0f%%", share, pct);
    }
}

static void test_weighted_90_10(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(
                   fake_map("route",
                            fake_seq(fake_map("cluster", S("v1"), "weight", S("90"), NULL),
                                     fake_map("cluster", S("v2"), "weight", S("10"), NULL), NULL),
                            NULL),
                   NULL));
    for (int w = 0; w < 2; w++) {
        size_t c1 = 0, c2 = 0, c3 = 0;
        count_picks(f, 10000, &c1, &c2, &c3, w);
        assert_int_equal(c1 + c2, 10000);
        within(c1, 10000, 90);
        within(c2, 10000, 10);
    }
}

static void test_weighted_three_and_zero(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(
                   fake_map("route",
                            fake_seq(fake_map("cluster", S("v1"), "weight", S("50"), NULL),
                                     fake_map("cluster", S("shadow"), "weight", S("0"), NULL),
                                     fake_map("cluster", S("v2"), "weight", S("30"), NULL),
                                     fake_map("cluster", S("v3"), "weight", S("20"), NULL), NULL),
                            NULL),
                   NULL));
    size_t c1 = 0, c2 = 0, c3 = 0;
    count_picks(f, 10000, &c1, &c2, &c3, 0);
    /* A weight-0 destination never gets traffic. */
    assert_int_equal(c1 + c2 + c3, 10000);
    within(c1, 10000, 50);
    within(c2, 10000, 30);
    within(c3, 10000, 20);
}

static void test_single_destination_list(void **state)
{
    fixture_t *f = *state;
    /* One destination takes everything, with or without a weight (Istio). */
    inst_ok(f, routes_config(
                   fake_map("route", fake_seq(to_cluster("v3"), NULL), "timeout", S("250ms"), NULL),
                   NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
    assert_int_equal(act, SLC_CONTINUE);
    assert_ptr_equal(fake_req_cluster(r), f->v3);
    assert_int_equal(fake_req_timeout(r), 250);
    fake_req_free(r);
}

/* ---- retries, mirror ------------------------------------------------------------- */

/* The policy the router hands a host older than 1.3 (route_set_retry) is
 * checked with the requests running on such a host; a 1.3 host gets the
 * router's own decisions instead (test_retry_decisions_*). setup() puts the
 * current table back for the next test. */
static slc_host_t host_1_2;
static void on_host_1_2(void)
{
    host_1_2 = fake_host_table;
    host_1_2.abi_version = (1u << 16) | 2u;
    host_1_2.struct_size = offsetof(slc_host_t, attempt_retry);
    slc_host = &host_1_2;
}

static void test_retry_default_policy(void **state)
{
    fixture_t *f = *state;
    on_host_1_2();
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), NULL), NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
    slc_retry_policy_t p;
    assert_true(fake_req_retry(r, &p));
    assert_int_equal(p.struct_size, sizeof(p));
    assert_int_equal(p.max_retries, 2);
    assert_int_equal(p.retry_on, SLC_RETRY_CONNECT_FAILURE | SLC_RETRY_REFUSED_STREAM |
                                     SLC_RETRY_UNAVAILABLE | SLC_RETRY_CANCELLED |
                                     SLC_RETRY_RETRIABLE_STATUS);
    assert_int_equal(p.nretriable_statuses, 1);
    assert_int_equal(p.retriable_statuses[0], 503);
    /* ABI 1.3 form, which a 1.3 host reads instead. */
    assert_int_equal(p.nstatuses, 1);
    assert_non_null(p.statuses);
    assert_int_equal(p.statuses[0], 503);
    assert_int_equal(p.backoff_base_ms, 25);
    assert_int_equal(p.per_try_timeout_ms, 0);
    /* No route timeout by default (Istio). */
    assert_int_equal(fake_req_timeout(r), 0);
    fake_req_free(r);
}

static void test_retry_custom_policy(void **state)
{
    fixture_t *f = *state;
    on_host_1_2();
    slc_cfg_node_t *custom = fake_map("attempts", S("3"), "per_try_timeout", S("1500ms"),
                                      "retry_on", S("connect-failure, 5xx,reset,504,502"), NULL);
    slc_cfg_node_t *no_on = fake_map("attempts", S("5"), "per_try_timeout", S("1s"), NULL);
    inst_ok(f, routes_config(fake_map("match", fake_map("prefix", S("/a"), NULL), "route",
                                      to_cluster("v1"), "retries", custom, NULL),
                             fake_map("match", fake_map("prefix", S("/b"), NULL), "route",
                                      to_cluster("v1"), "retries", no_on, NULL),
                             fake_map("match", fake_map("prefix", S("/c"), NULL), "route",
                                      to_cluster("v1"), "retries",
                                      fake_map("attempts", S("0"), NULL), NULL),
                             NULL));
    slc_action_t act;
    slc_retry_policy_t p;
    slc_req_t *r = req_run(f, "GET", "h", "/a", &act, NULL);
    assert_true(fake_req_retry(r, &p));
    assert_int_equal(p.max_retries, 3);
    assert_int_equal(p.per_try_timeout_ms, 1500);
    assert_int_equal(p.retry_on, SLC_RETRY_CONNECT_FAILURE | SLC_RETRY_5XX | SLC_RETRY_RESET |
                                     SLC_RETRY_RETRIABLE_STATUS);
    assert_int_equal(p.nretriable_statuses, 2);
    assert_int_equal(p.retriable_statuses[0], 504);
    assert_int_equal(p.retriable_statuses[1], 502);
    assert_int_equal(p.nstatuses, 2);
    assert_int_equal(p.statuses[0], 504);
    assert_int_equal(p.statuses[1], 502);
    assert_int_equal(p.backoff_base_ms, 25);
    fake_req_free(r);

    /* Without retry_on, Istio keeps its default conditions and 503. */
    r = req_run(f, "GET", "h", "/b", &act, NULL);
    assert_true(fake_req_retry(r, &p));
    assert_int_equal(p.max_retries, 5);
    assert_int_equal(p.per_try_timeout_ms, 1000);
    assert_true(p.retry_on & SLC_RETRY_CONNECT_FAILURE);
    assert_true(p.retry_on & SLC_RETRY_RETRIABLE_STATUS);
    assert_int_equal(p.retriable_statuses[0], 503);
    fake_req_free(r);

    /* attempts: 0 turns retries off. */
    r = req_run(f, "GET", "h", "/c", &act, NULL);
    assert_true(fake_req_retry(r, &p));
    assert_int_equal(p.max_retries, 0);
    fake_req_free(r);
}

/* ABI 1.3: more than the 1.1 form's 8 statuses; the first 8 are mirrored
 * into the fixed array for hosts older than 1.3. */
static void test_retry_many_statuses(void **state)
{
    fixture_t *f = *state;
    on_host_1_2();
    slc_cfg_node_t *rn = fake_map("attempts", S("2"), "retry_on",
                                  S("500,501,502,503,504,505,507,508,509,510,reset"), NULL);
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), "retries", rn, NULL), NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
    slc_retry_policy_t p;
    assert_true(fake_req_retry(r, &p));
    static const uint16_t want[] = {500, 501, 502, 503, 504, 505, 507, 508, 509, 510};
    assert_int_equal(p.nstatuses, 10);
    for (size_t i = 0; i < 10; i++)
        assert_int_equal(p.statuses[i], want[i]);
    assert_int_equal(p.nretriable_statuses, 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(p.retriable_statuses[i], want[i]);
    assert_int_equal(p.retry_on, SLC_RETRY_RESET | SLC_RETRY_RETRIABLE_STATUS);
    fake_req_free(r);
}

/* On a host older than 1.3 only the fixed array reaches the core, so a
 * 9th status would be dropped silently: it is a config error there. */
static void test_retry_many_statuses_on_old_host(void **state)
{
    fixture_t *f = *state;
    slc_host_t old = fake_host_table;
    old.abi_version = (1u << 16) | 2u;
    old.struct_size = SLC_HOST_SIZE_1_1;
    slc_cfg_node_t *rn =
        fake_map("attempts", S("2"), "retry_on", S("500,501,502,503,504,505,507,508,509"), NULL);
    slc_cfg_node_t *cfg =
        routes_config(fake_map("route", to_cluster("v1"), "retries", rn, NULL), NULL);
    slc_diag_t *d = fake_diag_new(f->gen);
    void *out = NULL;
    assert_int_equal(f->desc->config_new(&old, cfg, &out, d), SLC_EINVAL);
    assert_true(fake_diag_find(d, "at most 8 retriable status codes before ABI 1.3") >= 0);
    if (out != NULL && f->desc->config_free != NULL) {
        f->desc->config_free(out);
    }
    fake_diag_free(d);
}

static void test_retries_without_attempts_warns(void **state)
{
    fixture_t *f = *state;
    on_host_1_2();
    slc_cfg_node_t *rn = fake_map("per_try_timeout", S("1s"), NULL);
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), "retries", rn, NULL), NULL));
    int i = fake_diag_find(f->inst->diag, "disables retries");
    assert_true(i >= 0);
    assert_false(fake_diag_is_error(f->inst->diag, (size_t)i));
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), rn);
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
    slc_retry_policy_t p;
    assert_true(fake_req_retry(r, &p));
    assert_int_equal(p.max_retries, 0);
    fake_req_free(r);
}

/* ABI 1.3: the router keeps the body, bounds each try, and decides each
 * retry itself from on_upstream_result, within the route's policy. */
static void test_retry_decisions_default_policy(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), NULL), NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
    assert_int_equal(act, SLC_CONTINUE);
    slc_retry_policy_t p;
    assert_false(fake_req_retry(r, &p)); /* no built-in policy on a 1.3 host */
    assert_true(fake_req_keep_body(r));
    assert_int_equal(fake_req_try_timeout(r), 0);
    const slc_endpoint_t *e = fake_endpoint(f->v1, 0);
    uint64_t backoff = 0;
    /* Istio's default: connect failures and 503, two retries at most. */
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_RESPONSE, 500);
    assert_int_equal(fake_req_retry_asks(r, NULL), 0);
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_CONNECT_FAILURE, 0);
    assert_int_equal(fake_req_retry_asks(r, &backoff), 1);
    assert_true(backoff <= 25); /* full jitter under base * 2^0 */
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_RESPONSE, 503);
    assert_int_equal(fake_req_retry_asks(r, &backoff), 2);
    assert_true(backoff <= 50);
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_RESPONSE, 503);
    assert_int_equal(fake_req_retry_asks(r, NULL), 2); /* attempts used up */
    fake_req_free(r);
}

static void test_retry_decisions_custom_and_off(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *custom = fake_map("attempts", S("3"), "per_try_timeout", S("1500ms"),
                                      "retry_on", S("gateway-error,reset,418"), NULL);
    inst_ok(f, routes_config(fake_map("match", fake_map("prefix", S("/a"), NULL), "route",
                                      to_cluster("v1"), "retries", custom, NULL),
                             fake_map("match", fake_map("prefix", S("/c"), NULL), "route",
                                      to_cluster("v1"), "retries",
                                      fake_map("attempts", S("0"), NULL), NULL),
                             NULL));
    const slc_endpoint_t *e = fake_endpoint(f->v1, 0);
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/a", &act, NULL);
    assert_true(fake_req_keep_body(r));
    assert_int_equal(fake_req_try_timeout(r), 1500);
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_RESPONSE, 500); /* not a gateway error */
    assert_int_equal(fake_req_retry_asks(r, NULL), 0);
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_TIMEOUT, 0); /* a per-try timeout is a 504 */
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_RESET, 0);
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_RESPONSE, 418); /* a listed status */
    assert_int_equal(fake_req_retry_asks(r, NULL), 3);
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_RESPONSE, 502);
    assert_int_equal(fake_req_retry_asks(r, NULL), 3);
    fake_req_free(r);

    /* attempts: 0: no body kept, no try bound, no retry asked for. */
    r = req_run(f, "GET", "h", "/c", &act, NULL);
    assert_false(fake_req_keep_body(r));
    assert_int_equal(fake_req_try_timeout(r), 0);
    fake_inst_result(f->inst, r, e, SLC_ATTEMPT_CONNECT_FAILURE, 0);
    assert_int_equal(fake_req_retry_asks(r, NULL), 0);
    fake_req_free(r);
}

static void test_mirror(void **state)
{
    fixture_t *f = *state;
    inst_ok(
        f,
        routes_config(
            fake_map("match", fake_map("prefix", S("/all"), NULL), "route", to_cluster("v1"),
                     "mirror", fake_map("cluster", S("shadow"), NULL), NULL),
            fake_map("match", fake_map("prefix", S("/half"), NULL), "route", to_cluster("v1"),
                     "mirror", fake_map("cluster", S("shadow"), "percentage", S("50"), NULL), NULL),
            fake_map("match", fake_map("prefix", S("/none"), NULL), "route", to_cluster("v1"),
                     "mirror", fake_map("cluster", S("shadow"), "percentage", S("0"), NULL), NULL),
            fake_map("route", to_cluster("v1"), NULL), NULL));
    size_t all = 0, half = 0, none = 0, plain = 0;
    const size_t n = 10000;
    for (size_t i = 0; i < n; i++) {
        const char *paths[4] = {"/all", "/half", "/none", "/plain"};
        size_t *cnt[4] = {&all, &half, &none, &plain};
        for (int k = 0; k < 4; k++) {
            slc_action_t act;
            slc_req_t *r = req_run(f, "GET", "h", paths[k], &act, NULL);
            assert_int_equal(act, SLC_CONTINUE);
            assert_ptr_equal(fake_req_cluster(r), f->v1);
            const slc_cluster_t *m = fake_req_mirror(r);
            assert_true(m == NULL || m == f->shadow);
            *cnt[k] += m != NULL;
            fake_req_free(r);
        }
    }
    assert_int_equal(all, n);
    assert_int_equal(none, 0);
    assert_int_equal(plain, 0);
    within(half, n, 50);
}

/* ---- fault injection --------------------------------------------------------------- */

static void test_fault_abort(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), "fault",
                                      fake_map("abort",
                                               fake_map("http_status", S("418"), "percentage",
                                                        S("100"), NULL),
                                               NULL),
                                      NULL),
                             NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), 418);
    assert_string_equal(fake_req_reply_body(r), "fault filter abort\n");
    assert_int_equal(fake_req_flags(r), SLC_RF_FI);
    assert_null(fake_req_cluster(r));
    fake_req_free(r);
}

static void test_fault_delay(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), "fault",
                                      fake_map("delay",
                                               fake_map("fixed_delay", S("1500ms"), "percentage",
                                                        S("100"), NULL),
                                               NULL),
                                      NULL),
                             NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
    assert_int_equal(act, SLC_PAUSE);
    assert_int_equal(fake_req_flags(r), SLC_RF_DI);
    /* Routed before the pause; continues when the timer fires. */
    assert_ptr_equal(fake_req_cluster(r), f->v1);
    assert_int_equal(fake_req_timers_pending(r), 1);
    assert_int_equal(fake_req_next_timer_ms(r), 1500);
    assert_int_equal(fake_req_resumed(r), 0);
    assert_true(fake_req_fire_next(r));
    assert_int_equal(fake_req_resumed(r), 1);
    assert_int_equal(fake_req_reply_status(r), 0);
    assert_int_equal(fake_req_now_ms(r), 1500);
    fake_req_free(r);
}

static void test_fault_delay_then_abort(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *fault =
        fake_map("delay", fake_map("fixed_delay", S("2s"), "percentage", S("100"), NULL), "abort",
                 fake_map("http_status", S("503"), "percentage", S("100.0"), NULL), NULL);
    slc_cfg_node_t *fault2 =
        fake_map("delay", fake_map("fixed_delay", S("1s"), "percentage", S("100"), NULL), NULL);
    inst_ok(f, routes_config(fake_map("match", fake_map("prefix", S("/a"), NULL), "route",
                                      to_cluster("v1"), "fault", fault, NULL),
                             fake_map("match", fake_map("prefix", S("/d"), NULL), "direct_response",
                                      fake_map("status", S("200"), "body", S("late\n"), NULL),
                                      "fault", fault2, NULL),
                             NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/a", &act, NULL);
    assert_int_equal(act, SLC_PAUSE);
    assert_null(fake_req_cluster(r));
    assert_true(fake_req_fire_next(r));
    assert_int_equal(fake_req_resumed(r), 1);
    assert_int_equal(fake_req_reply_status(r), 503);
    assert_int_equal(fake_req_flags(r), SLC_RF_DI | SLC_RF_FI);
    fake_req_free(r);

    /* A delayed direct response is sent when the delay ends. */
    r = req_run(f, "GET", "h", "/d", &act, NULL);
    assert_int_equal(act, SLC_PAUSE);
    assert_int_equal(fake_req_reply_status(r), 0);
    assert_true(fake_req_fire_next(r));
    assert_int_equal(fake_req_reply_status(r), 200);
    assert_string_equal(fake_req_reply_body(r), "late\n");
    assert_int_equal(fake_req_resumed(r), 1);
    fake_req_free(r);
}

static void test_fault_rates(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *fault =
        fake_map("delay", fake_map("fixed_delay", S("10ms"), "percentage", S("10"), NULL), "abort",
                 fake_map("http_status", S("500"), "percentage", S("5.5"), NULL), NULL);
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), "fault", fault, NULL), NULL));
    const size_t n = 20000;
    size_t delayed = 0, aborted = 0, both = 0;
    for (size_t i = 0; i < n; i++) {
        slc_action_t act;
        slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
        if (act == SLC_PAUSE) {
            fake_req_fire_next(r);
        }
        uint32_t fl = fake_req_flags(r);
        delayed += (fl & SLC_RF_DI) != 0;
        aborted += (fl & SLC_RF_FI) != 0;
        both += (fl & (SLC_RF_DI | SLC_RF_FI)) == (SLC_RF_DI | SLC_RF_FI);
        if (fl & SLC_RF_FI) {
            assert_int_equal(fake_req_reply_status(r), 500);
        }
        fake_req_free(r);
    }
    within(delayed, n, 10);
    within(aborted, n, 5.5);
    /* Independent draws: about 10% of 5.5% are both. */
    within(both, n, 0.55);
}

static void test_fault_percentage_absent_warns(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *delay = fake_map("fixed_delay", S("1s"), NULL);
    inst_ok(f, routes_config(fake_map("route", to_cluster("v1"), "fault",
                                      fake_map("delay", delay, NULL), NULL),
                             NULL));
    int i = fake_diag_find(f->inst->diag, "no request will be delayed");
    assert_true(i >= 0);
    assert_false(fake_diag_is_error(f->inst->diag, (size_t)i));
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), delay);
    for (int k = 0; k < 200; k++) {
        slc_action_t act;
        slc_req_t *r = req_run(f, "GET", "h", "/", &act, NULL);
        assert_int_equal(act, SLC_CONTINUE);
        fake_req_free(r);
    }
}

/* ---- redirects ------------------------------------------------------------------------ */

static void expect_location(fixture_t *f, const char *authority, const char *path, int status,
                            const char *location)
{
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", authority, path, &act, NULL);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), status);
    assert_string_equal(fake_req_header(r, SLC_RESPONSE_HEADERS, "location"), location);
    assert_null(fake_req_cluster(r));
    assert_int_equal(fake_req_flags(r), 0);
    fake_req_free(r);
}

static void test_redirect(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(
                   fake_map("match", fake_map("prefix", S("/full"), NULL), "redirect",
                            fake_map("scheme", S("https"), "host", S("new.example.com"), "port",
                                     S("8443"), "path", S("/new"), "code", S("308"), NULL),
                            NULL),
                   fake_map("match", fake_map("prefix", S("/path"), NULL), "redirect",
                            fake_map("path", S("/moved"), "code", S("302"), NULL), NULL),
                   fake_map("match", fake_map("prefix", S("/qpath"), NULL), "redirect",
                            fake_map("path", S("/moved?b=2"), NULL), NULL),
                   fake_map("match", fake_map("prefix", S("/host"), NULL), "redirect",
                            fake_map("host", S("other.example.com"), NULL), NULL),
                   fake_map("match", fake_map("prefix", S("/inner"), NULL), "redirect",
                            fake_map("https_redirect", S("true"), "code", S("307"), NULL), NULL),
                   fake_map("https_redirect", S("true"), NULL), NULL));
    /* Envoy's form, https_redirect inside redirect, with its own code. */
    expect_location(f, "a.example.com", "/inner?x", 307, "https://a.example.com/inner?x");
    expect_location(f, "a.example.com:8080", "/full/x?q=1", 308,
                    "https://new.example.com:8443/new?q=1");
    /* Only the path changes: scheme, host and port are the request's. */
    expect_location(f, "a.example.com:8080", "/path/x?q=1", 302,
                    "http://a.example.com:8080/moved?q=1");
    /* A path with its own query replaces the request's. */
    expect_location(f, "a.example.com", "/qpath?q=1", 301, "http://a.example.com/moved?b=2");
    /* A new host replaces the whole authority. */
    expect_location(f, "a.example.com:8080", "/host/y", 301, "http://other.example.com/host/y");
    /* https_redirect: same host and path, port kept unless it was :80. */
    expect_location(f, "a.example.com:8080", "/z?k=v", 301, "https://a.example.com:8080/z?k=v");
    expect_location(f, "a.example.com:80", "/z", 301, "https://a.example.com/z");
    expect_location(f, "a.example.com", "/", 301, "https://a.example.com/");
    expect_location(f, "[::1]:80", "/v6", 301, "https://[::1]/v6");
}

static void test_redirect_default_ports(void **state)
{
    fixture_t *f = *state;
    inst_ok(f, routes_config(fake_map("match", fake_map("prefix", S("/443"), NULL), "redirect",
                                      fake_map("scheme", S("https"), "port", S("443"), NULL), NULL),
                             fake_map("match", fake_map("prefix", S("/80"), NULL), "redirect",
                                      fake_map("port", S("80"), NULL), NULL),
                             NULL));
    expect_location(f, "h:8080", "/443", 301, "https://h/443");
    expect_location(f, "h:8080", "/80", 301, "http://h/80");
}

/* ---- rewrite and headers -------------------------------------------------------------- */

static void expect_rewrite(fixture_t *f, const char *path, const char *want_path)
{
    char buf[256];
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h.example.com:81", path, &act, NULL);
    assert_int_equal(act, SLC_CONTINUE);
    assert_string_equal(pseudo_of(r, SLC_PSEUDO_PATH, buf, sizeof(buf)), want_path);
    fake_req_free(r);
}

static void test_rewrite(void **state)
{
    fixture_t *f = *state;
    inst_ok(f,
            routes_config(
                fake_map("match", fake_map("prefix", S("/api/v1"), NULL), "route", to_cluster("v1"),
                         "rewrite",
                         fake_map("uri", S("/v2"), "authority", S("reviews.internal"), NULL), NULL),
                fake_map("match", fake_map("path", S("/exact"), NULL), "route", to_cluster("v1"),
                         "rewrite", fake_map("uri", S("/other"), NULL), NULL),
                fake_map("match", fake_map("regex", S("/re/[a-z]+"), NULL), "route",
                         to_cluster("v1"), "rewrite", fake_map("uri", S("/fixed"), NULL), NULL),
                fake_map("match", fake_map("prefix", S("/strip/"), NULL), "route", to_cluster("v1"),
                         "rewrite", fake_map("uri", S(""), NULL), NULL),
                fake_map("route", to_cluster("v2"), "rewrite", fake_map("uri", S("/base/"), NULL),
                         NULL),
                NULL));
    expect_rewrite(f, "/api/v1/users?x=1", "/v2/users?x=1");
    expect_rewrite(f, "/api/v1", "/v2");
    expect_rewrite(f, "/exact?q", "/other?q");
    expect_rewrite(f, "/re/abc?z=9", "/fixed?z=9");
    expect_rewrite(f, "/strip/a/b", "/a/b");
    expect_rewrite(f, "/strip/?k", "/?k");
    /* No uri condition: Istio's route is prefix "/", which is what goes. */
    expect_rewrite(f, "/foo?y", "/base/foo?y");

    char buf[256];
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h.example.com:81", "/api/v1/x", &act, NULL);
    assert_string_equal(pseudo_of(r, SLC_PSEUDO_AUTHORITY, buf, sizeof(buf)), "reviews.internal");
    fake_req_free(r);
    r = req_run(f, "GET", "h.example.com:81", "/exact", &act, NULL);
    assert_string_equal(pseudo_of(r, SLC_PSEUDO_AUTHORITY, buf, sizeof(buf)), "h.example.com:81");
    fake_req_free(r);
}

static void test_header_manipulation(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *req_ops =
        fake_map("set", fake_map("x-set", S("one"), "X-Case", S("v"), NULL), "add",
                 fake_map("x-add", S("two"), NULL), "remove", fake_seq(S("x-drop"), NULL), NULL);
    slc_cfg_node_t *resp_ops =
        fake_map("set", fake_map("x-served-by", S("sluice"), NULL), "add",
                 fake_map("x-multi", S("b"), NULL), "remove", fake_seq(S("server"), NULL), NULL);
    slc_cfg_node_t *direct_ops = fake_map("set", fake_map("x-direct", S("yes"), NULL), NULL);
    inst_ok(f, routes_config(fake_map("match", fake_map("prefix", S("/d"), NULL), "direct_response",
                                      fake_map("status", S("200"), NULL), "response_headers",
                                      direct_ops, NULL),
                             fake_map("route", to_cluster("v1"), "request_headers", req_ops,
                                      "response_headers", resp_ops, NULL),
                             NULL));
    slc_action_t act;
    slc_req_t *r = req_run(f, "GET", "h", "/", &act, "x-set", "old", "x-set", "older", "x-add",
                           "first", "x-drop", "gone", "x-keep", "k", NULL);
    assert_int_equal(act, SLC_CONTINUE);
    assert_int_equal(fake_req_header_count(r, SLC_REQUEST_HEADERS, "x-set"), 1);
    assert_string_equal(fake_req_header(r, SLC_REQUEST_HEADERS, "x-set"), "one");
    assert_string_equal(fake_req_header(r, SLC_REQUEST_HEADERS, "x-case"), "v");
    assert_int_equal(fake_req_header_count(r, SLC_REQUEST_HEADERS, "x-add"), 2);
    assert_null(fake_req_header(r, SLC_REQUEST_HEADERS, "x-drop"));
    assert_string_equal(fake_req_header(r, SLC_REQUEST_HEADERS, "x-keep"), "k");
    /* Response side: as the upstream answered. */
    assert_null(fake_req_header(r, SLC_RESPONSE_HEADERS, "x-served-by"));
    fake_req_add_header(r, SLC_RESPONSE_HEADERS, "server", "upstream");
    fake_req_add_header(r, SLC_RESPONSE_HEADERS, "x-multi", "a");
    fake_req_set_response_status(r, 200);
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_RESPONSE_HEADERS), SLC_CONTINUE);
    assert_string_equal(fake_req_header(r, SLC_RESPONSE_HEADERS, "x-served-by"), "sluice");
    assert_int_equal(fake_req_header_count(r, SLC_RESPONSE_HEADERS, "x-multi"), 2);
    assert_null(fake_req_header(r, SLC_RESPONSE_HEADERS, "server"));
    fake_req_free(r);

    /* Response headers apply to local answers too. */
    r = req_run(f, "GET", "h", "/d", &act, NULL);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_RESPONSE_HEADERS), SLC_CONTINUE);
    assert_string_equal(fake_req_header(r, SLC_RESPONSE_HEADERS, "x-direct"), "yes");
    fake_req_free(r);

    /* And a no-route reply has no route: nothing is added. */
    fake_inst_free(f->inst);
    inst_ok(
        f, routes_config(fake_map("match", fake_map("path", S("/only"), NULL), "route",
                                  to_cluster("v1"), "response_headers",
                                  fake_map("set", fake_map("x-direct", S("no"), NULL), NULL), NULL),
                         NULL));
    r = req_run(f, "GET", "h", "/nope", &act, NULL);
    assert_int_equal(fake_req_reply_status(r), 404);
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_RESPONSE_HEADERS), SLC_CONTINUE);
    assert_null(fake_req_header(r, SLC_RESPONSE_HEADERS, "x-direct"));
    fake_req_free(r);
}

/* ---- config errors for the VirtualService keys -------------------------------------- */

static void test_err_unknown_cluster_in_list_and_mirror(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *c1 = S("nope1");
    slc_cfg_node_t *c2 = S("nope2");
    slc_cfg_node_t *cfg =
        routes_config(fake_map("route",
                               fake_seq(fake_map("cluster", S("v1"), "weight", S("1"), NULL),
                                        fake_map("cluster", c1, "weight", S("1"), NULL), NULL),
                               "mirror", fake_map("cluster", c2, NULL), NULL),
                      NULL);
    f->inst = fake_inst_new(f->desc, f->gen, cfg, 1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(f->inst->diag), 2);
    assert_ptr_equal(fake_diag_node(f->inst->diag, 0), c1);
    assert_string_equal(fake_diag_msg(f->inst->diag, 0), "unknown cluster 'nope1'");
    assert_string_equal(fake_diag_path(f->inst->diag, 0),
                        "virtual_hosts[0].routes[0].route[1].cluster");
    assert_ptr_equal(fake_diag_node(f->inst->diag, 1), c2);
}

static void test_err_weights_zero(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *list = fake_seq(fake_map("cluster", S("v1"), "weight", S("0"), NULL),
                                    fake_map("cluster", S("v2"), NULL), NULL);
    expect_error(f, one_route_config(fake_map("route", list, NULL)), list, "all zero");
}

static void test_err_actions(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *e =
        fake_map("route", to_cluster("v1"), "redirect", fake_map("path", S("/x"), NULL), NULL);
    expect_error(f, one_route_config(e), e, "exactly one of");
    fake_inst_free(f->inst);
    e = fake_map("redirect", fake_map("path", S("/x"), NULL), "https_redirect", S("true"), NULL);
    expect_error(f, one_route_config(e), e, "exactly one of");
    fake_inst_free(f->inst);
    e = fake_map("direct_response", fake_map("status", S("200"), NULL), "https_redirect", S("true"),
                 NULL);
    expect_error(f, one_route_config(e), e, "exactly one of");
    fake_inst_free(f->inst);
    /* Forwarding keys on a local answer. */
    slc_cfg_node_t *rw = fake_map("uri", S("/x"), NULL);
    e = fake_map("direct_response", fake_map("status", S("200"), NULL), "rewrite", rw, NULL);
    expect_error(f, one_route_config(e), rw, "applies only to routes with 'route'");
    fake_inst_free(f->inst);
    slc_cfg_node_t *rd = fake_map("code", S("302"), NULL);
    expect_error(f, one_route_config(fake_map("redirect", rd, NULL)), rd, "at least one of");
}

static void test_err_bad_regex(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *re = S("/users/(\\d+");
    expect_error(f,
                 one_route_config(fake_map("match", fake_map("regex", re, NULL), "route",
                                           to_cluster("v1"), NULL)),
                 re, "bad regex '/users/(\\d+': missing ): /users/(\\d+ at offset 0");
    fake_inst_free(f->inst);
    re = S("a{2000}");
    expect_error(
        f,
        one_route_config(fake_map(
            "match", fake_map("headers", fake_map("x-a", fake_map("regex", re, NULL), NULL), NULL),
            "route", to_cluster("v1"), NULL)),
        re, "invalid repetition size: {2000} at offset 1");
    assert_string_equal(fake_diag_path(f->inst->diag, 0),
                        "virtual_hosts[0].routes[0].match.headers.x-a.regex");
}

static void test_err_percentages(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *p1 = S("150");
    slc_cfg_node_t *p2 = S("-1");
    slc_cfg_node_t *p3 = S("12.5.1");
    slc_cfg_node_t *cfg = routes_config(
        fake_map("route", to_cluster("v1"), "fault",
                 fake_map("delay", fake_map("fixed_delay", S("1s"), "percentage", p1, NULL),
                          "abort", fake_map("http_status", S("503"), "percentage", p2, NULL), NULL),
                 "mirror", fake_map("cluster", S("shadow"), "percentage", p3, NULL), NULL),
        NULL);
    f->inst = fake_inst_new(f->desc, f->gen, cfg, 1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(f->inst->diag), 3);
    int i = fake_diag_find(f->inst->diag, "percentage 150 is out of range (0 to 100)");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), p1);
    i = fake_diag_find(f->inst->diag, "got '-1'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), p2);
    i = fake_diag_find(f->inst->diag, "got '12.5.1'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), p3);
}

static void test_err_statuses_and_codes(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *st = S("600");
    expect_error(
        f,
        one_route_config(fake_map(
            "route", to_cluster("v1"), "fault",
            fake_map("abort", fake_map("http_status", st, "percentage", S("1"), NULL), NULL),
            NULL)),
        st, "from 200 to 599");
    fake_inst_free(f->inst);
    slc_cfg_node_t *code = S("305");
    expect_error(
        f,
        one_route_config(fake_map("redirect", fake_map("path", S("/x"), "code", code, NULL), NULL)),
        code, "redirect code 305 is not one of 301, 302, 303, 307, 308");
    fake_inst_free(f->inst);
    slc_cfg_node_t *fault = fake_empty_map();
    expect_error(f, one_route_config(fake_map("route", to_cluster("v1"), "fault", fault, NULL)),
                 fault, "'delay', 'abort' or both");
}

static void test_err_string_matches(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *two = fake_map("exact", S("a"), "prefix", S("b"), NULL);
    slc_cfg_node_t *pf = S("false");
    slc_cfg_node_t *qabs = S("true");
    slc_cfg_node_t *mabs = S("true");
    slc_cfg_node_t *hname = fake_map("exact", S("x"), NULL);
    slc_cfg_node_t *m = fake_map(
        "headers",
        fake_map("x-two", two, "x-pf", fake_map("present", pf, NULL), "bad name", hname, NULL),
        "query_params", fake_map("q", fake_map("absent", qabs, NULL), NULL), "method",
        fake_map("absent", mabs, NULL), NULL);
    f->inst =
        fake_inst_new(f->desc, f->gen,
                      one_route_config(fake_map("match", m, "route", to_cluster("v1"), NULL)), 1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(f->inst->diag), 5);
    int i = fake_diag_find(f->inst->diag, "exactly one of 'exact', 'prefix', 'regex', 'present' or "
                                          "'absent'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), two);
    i = fake_diag_find(f->inst->diag, "only 'true' is meaningful");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), pf);
    i = fake_diag_find(f->inst->diag, "invalid header name 'bad name'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), hname);
    i = fake_diag_find(f->inst->diag,
                       "'absent' is not allowed here; use 'exact', 'prefix', 'regex' "
                       "or 'present'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), qabs);
    i = fake_diag_find(f->inst->diag, "'absent' is not allowed here; use 'exact', 'prefix' or "
                                      "'regex'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), mabs);
}

static void test_err_retry_on(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *on = S("connect-failur,5xx,999");
    f->inst = fake_inst_new(
        f->desc, f->gen,
        one_route_config(fake_map("route", to_cluster("v1"), "retries",
                                  fake_map("attempts", S("2"), "retry_on", on, NULL), NULL)),
        1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(f->inst->diag), 2);
    assert_ptr_equal(fake_diag_node(f->inst->diag, 0), on);
    assert_string_equal(fake_diag_msg(f->inst->diag, 0),
                        "retry_on: unknown condition 'connect-failur' (did you mean "
                        "'connect-failure'?)");
    assert_string_equal(fake_diag_msg(f->inst->diag, 1),
                        "retry_on: '999' is not an HTTP status code");
}

static void test_err_header_ops_and_rewrite(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *v = S("a\x01");
    slc_cfg_node_t *rm = S(":authority");
    slc_cfg_node_t *uri = S("v2");
    slc_cfg_node_t *twice = S("2s");
    slc_cfg_node_t *cfg = one_route_config(
        fake_map("route", fake_map("cluster", S("v1"), "timeout", twice, NULL), "timeout", S("1s"),
                 "request_headers",
                 fake_map("set", fake_map("x-a", v, NULL), "remove", fake_seq(rm, NULL), NULL),
                 "rewrite", fake_map("uri", uri, NULL), NULL));
    f->inst = fake_inst_new(f->desc, f->gen, cfg, 1);
    assert_int_equal(f->inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(f->inst->diag), 4);
    int i = fake_diag_find(f->inst->diag, "control character");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), v);
    i = fake_diag_find(f->inst->diag, "invalid header name ':authority'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), rm);
    i = fake_diag_find(f->inst->diag, "must start with '/'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), uri);
    i = fake_diag_find(f->inst->diag, "timeout given twice");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(f->inst->diag, (size_t)i), twice);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exact_domain, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_domain_port_and_case, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_suffix_domain, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard_domain, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_prefix_vs_path, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_first_match_wins, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_query_ignored, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_direct_response, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_no_route, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_no_vhost, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_recorded, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_cluster_resolved_at_config_time, setup_standard,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_no_allocation_per_request, setup_standard, teardown),
        cmocka_unit_test_setup_teardown(test_err_unknown_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_route_and_direct, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_no_action, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_bad_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_unknown_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_prefix_without_slash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_prefix_and_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_bad_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_empty_domains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_bad_domains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_missing_virtual_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_all_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_headers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_method_authority_query, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_regex_path_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_match_regex_unicode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regex_max_program_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weighted_90_10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_weighted_three_and_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_destination_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_default_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_custom_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_many_statuses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_many_statuses_on_old_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_without_attempts_warns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_decisions_default_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_decisions_custom_and_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_delay_then_abort, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_rates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fault_percentage_absent_warns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_redirect_default_ports, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rewrite, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_manipulation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_unknown_cluster_in_list_and_mirror, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_err_weights_zero, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_actions, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_bad_regex, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_percentages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_statuses_and_codes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_string_matches, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_retry_on, setup, teardown),
        cmocka_unit_test_setup_teardown(test_err_header_ops_and_rewrite, setup, teardown),
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
