/* Unit tests of the lb filter against the fake host. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"

typedef struct fixture {
    fake_gen_t *gen;
    slc_cluster_t *api, *web;
    const slc_filter_desc_t *desc;
    fake_inst_t *inst;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->gen = fake_gen_new();
    f->api =
        fake_cluster_add(f->gen, "api", "127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083", NULL);
    f->web = fake_cluster_add(f->gen, "web", "127.0.0.1:9001", "127.0.0.1:9002", NULL);
    f->desc = slc_filter_entry(&fake_host_table);
    f->inst =
        fake_inst_new(f->desc, f->gen, fake_map("policy", fake_scalar("round_robin"), NULL), 2);
    if (f->inst->status != SLC_OK) {
        fake_diag_dump(f->inst->diag);
        return -1;
    }
    *state = f;
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

/* pick routes a fresh request on |worker| to |c| (may be NULL), runs the
 * lb and returns the index of the chosen endpoint of |c|, or -1 with the
 * action in *act. */
static int pick_on(fixture_t *f, int worker, slc_cluster_t *c, slc_action_t *act)
{
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_set_worker(r, worker);
    if (c != NULL) {
        assert_int_equal(fake_host_table.route_set_cluster(r, c), SLC_OK);
    }
    *act = fake_inst_run(f->inst, r, FAKE_UPSTREAM_SELECT);
    int idx = -1;
    for (size_t i = 0; c != NULL && fake_endpoint(c, i) != NULL; i++) {
        if (fake_req_endpoint(r) == fake_endpoint(c, i)) {
            idx = (int)i;
        }
    }
    /* A pick is never made when there is no cluster, and never allocates. */
    assert_int_equal(fake_req_arena_bytes(r), 0);
    fake_req_free(r);
    return idx;
}

static int pick(fixture_t *f, slc_cluster_t *c)
{
    slc_action_t act;
    int idx = pick_on(f, 0, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    return idx;
}

static void test_descriptor(void **state)
{
    fixture_t *f = *state;
    assert_string_equal(f->desc->name, "lb");
    assert_int_equal(f->desc->abi_version, SLC_ABI_VERSION);
    assert_non_null(f->desc->on_upstream_select);
    assert_null(f->desc->on_request_headers);
    assert_int_equal(f->inst->nworkers, 2);
    assert_non_null(f->inst->wctx[0]);
    assert_ptr_not_equal(f->inst->wctx[0], f->inst->wctx[1]);
}

static void test_round_robin_order(void **state)
{
    fixture_t *f = *state;
    int got[7];
    for (int i = 0; i < 7; i++) {
        got[i] = pick(f, f->api);
    }
    int want[7] = {0, 1, 2, 0, 1, 2, 0};
    assert_memory_equal(got, want, sizeof(want));
}

static void test_skips_unhealthy(void **state)
{
    fixture_t *f = *state;
    fake_endpoint_set_healthy(fake_endpoint(f->api, 1), false);
    int got[6];
    for (int i = 0; i < 6; i++) {
        got[i] = pick(f, f->api);
    }
    /* The two healthy endpoints share the load evenly. */
    int want[6] = {0, 2, 0, 2, 0, 2};
    assert_memory_equal(got, want, sizeof(want));

    /* Back to healthy: it rejoins the rotation (the cursor sits after 2). */
    fake_endpoint_set_healthy(fake_endpoint(f->api, 1), true);
    assert_int_equal(pick(f, f->api), 0);
    assert_int_equal(pick(f, f->api), 1);
    assert_int_equal(pick(f, f->api), 2);
}

static void test_all_unhealthy(void **state)
{
    fixture_t *f = *state;
    for (size_t i = 0; i < 3; i++) {
        fake_endpoint_set_healthy(fake_endpoint(f->api, i), false);
    }
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_host_table.route_set_cluster(r, f->api);
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_UPSTREAM_SELECT), SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), 503);
    assert_string_equal(fake_req_reply_body(r), "no healthy upstream\n");
    assert_int_equal(fake_req_flags(r), SLC_RF_UH);
    assert_null(fake_req_endpoint(r));
    fake_req_free(r);

    slc_metric_t *m = fake_metric(f->inst->diag, "lb_no_healthy_upstream_total");
    assert_non_null(m);
    assert_int_equal(fake_metric_value(m), 1);
}

static void test_empty_cluster(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *none = fake_cluster_add(f->gen, "none", NULL);
    slc_action_t act;
    assert_int_equal(pick_on(f, 0, none, &act), -1);
    assert_int_equal(act, SLC_STOP);
}

static void test_per_worker_counters(void **state)
{
    fixture_t *f = *state;
    slc_action_t act;
    assert_int_equal(pick_on(f, 0, f->api, &act), 0);
    assert_int_equal(pick_on(f, 0, f->api, &act), 1);
    /* Worker 1 has its own cursor, untouched by worker 0. */
    assert_int_equal(pick_on(f, 1, f->api, &act), 0);
    assert_int_equal(pick_on(f, 0, f->api, &act), 2);
    assert_int_equal(pick_on(f, 1, f->api, &act), 1);
}

static void test_per_cluster_cursors(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(pick(f, f->api), 0);
    assert_int_equal(pick(f, f->web), 0);
    assert_int_equal(pick(f, f->api), 1);
    assert_int_equal(pick(f, f->web), 1);
    assert_int_equal(pick(f, f->api), 2);
}

static void test_many_clusters(void **state)
{
    fixture_t *f = *state;
    /* More clusters than a worker has cursor slots: the first ones keep
     * exact per-cluster rotation despite hash collisions, the rest still get
     * a healthy endpoint. */
    enum { N = 200 };
    slc_cluster_t *cs[N];
    for (int i = 0; i < N; i++) {
        char name[16];
        snprintf(name, sizeof(name), "c%d", i);
        cs[i] = fake_cluster_add(f->gen, name, "127.0.0.1:1", "127.0.0.1:2", NULL);
    }
    for (int i = 0; i < N; i++) {
        int idx = pick(f, cs[i]);
        assert_true(idx == 0 || idx == 1);
        if (i < 128) {
            assert_int_equal(idx, 0);
        }
    }
    for (int i = 0; i < 128; i++) {
        assert_int_equal(pick(f, cs[i]), 1);
    }
}

static void test_no_cluster_continue(void **state)
{
    fixture_t *f = *state;
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    assert_int_equal(fake_inst_run(f->inst, r, FAKE_UPSTREAM_SELECT), SLC_CONTINUE);
    assert_int_equal(fake_req_reply_status(r), 0);
    assert_null(fake_req_endpoint(r));
    assert_int_equal(fake_req_flags(r), 0);
    fake_req_free(r);
}

static void test_config_default_and_errors(void **state)
{
    fixture_t *f = *state;
    /* No config: round robin. */
    fake_inst_t *i = fake_inst_new(f->desc, f->gen, NULL, 1);
    assert_int_equal(i->status, SLC_OK);
    fake_inst_free(i);

    slc_cfg_node_t *bad = fake_scalar("least_connections");
    i = fake_inst_new(f->desc, f->gen, fake_map("policy", bad, NULL), 1);
    assert_int_equal(i->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(i->diag), 1);
    assert_ptr_equal(fake_diag_node(i->diag, 0), bad);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "round_robin"));
    fake_inst_free(i);

    slc_cfg_node_t *typo = fake_scalar("round_robin");
    i = fake_inst_new(f->desc, f->gen, fake_map("polcy", typo, NULL), 1);
    assert_int_equal(i->status, SLC_EINVAL);
    assert_ptr_equal(fake_diag_node(i->diag, 0), typo);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "did you mean 'policy'"));
    fake_inst_free(i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skips_unhealthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_unhealthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_worker_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_cluster_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_clusters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_cluster_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_default_and_errors, setup, teardown),
    };
    return cmocka_run_group_tests_name("lb", tests, NULL, NULL);
}
