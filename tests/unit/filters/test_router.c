/* Unit tests of the router filter against the fake host. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fake_host.h"

typedef struct fixture {
    fake_gen_t *gen;
    slc_cluster_t *api, *web;
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
    /* Nothing per stream: no request_new, no arena use. */
    assert_null(f->desc->request_new);
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

static void test_cluster_from_stream_generation(void **state)
{
    fixture_t *f = *state;
    /* A newer generation with a cluster of the same name: the stream must
     * get that one, not the one the config was validated against. */
    fake_gen_t *g2 = fake_gen_new();
    slc_cluster_t *api2 = fake_cluster_add(g2, "api", "127.0.0.1:7000", NULL);
    slc_req_t *r = fake_req_new(g2, "GET", "api.example.com", "/api");
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_REQUEST_HEADERS), SLC_CONTINUE);
    assert_ptr_equal(fake_req_cluster(r), api2);
    assert_ptr_not_equal(fake_req_cluster(r), f->api);
    fake_req_free(r);
    fake_gen_free(g2);
}

static void test_no_allocation_per_request(void **state)
{
    fixture_t *f = *state;
    slc_action_t act;
    slc_req_t *r = run(f, "API.example.com:80", "/api/x?y=1", &act);
    assert_int_equal(act, SLC_CONTINUE);
    assert_int_equal(fake_req_arena_bytes(r), 0);
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
    expect_error(f, one_route_config(entry), entry, "exactly one of 'route' or 'direct_response'");
}

static void test_err_no_action(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *entry = fake_map("match", fake_map("prefix", S("/"), NULL), NULL);
    expect_error(f, one_route_config(entry), entry, "exactly one of");
}

static void test_err_bad_status(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *st = S("99");
    expect_error(f,
                 one_route_config(fake_map("direct_response",
                                           fake_map("status", st, "body", S("x"), NULL), NULL)),
                 st, "status");
    fake_inst_free(f->inst);

    st = S("600");
    expect_error(f,
                 one_route_config(fake_map("direct_response", fake_map("status", st, NULL), NULL)),
                 st, "status");
    fake_inst_free(f->inst);

    st = S("two hundred");
    expect_error(f,
                 one_route_config(fake_map("direct_response", fake_map("status", st, NULL), NULL)),
                 st, "status");
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
                 m, "both 'prefix' and 'path'");
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
        cmocka_unit_test_setup_teardown(test_cluster_from_stream_generation, setup_standard,
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
    };
    return cmocka_run_group_tests_name("router", tests, NULL, NULL);
}
