/* Unit tests of the lb filter against the fake host. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chash.h"
#include "fake_host.h"

typedef struct fixture {
    fake_gen_t *gen;
    slc_cluster_t *api, *web, *big;
    const slc_filter_desc_t *desc;
    fake_inst_t *inst;
} fixture_t;

/* BIG_N endpoints in cluster "big", for the hashing tests. */
#define BIG_N 10

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->gen = fake_gen_new();
    f->api =
        fake_cluster_add(f->gen, "api", "127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083", NULL);
    f->web = fake_cluster_add(f->gen, "web", "127.0.0.1:9001", "127.0.0.1:9002", NULL);
    f->big = fake_cluster_add(f->gen, "big", "127.0.10.1:80", "127.0.10.2:80", "127.0.10.3:80",
                              "127.0.10.4:80", "127.0.10.5:80", "127.0.10.6:80", "127.0.10.7:80",
                              "127.0.10.8:80", "127.0.10.9:80", "127.0.10.10:80", NULL);
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

/* new_inst builds an lb instance from |config| with two workers and
 * insists that it was accepted. */
static fake_inst_t *new_inst(fixture_t *f, slc_cfg_node_t *config)
{
    fake_inst_t *i = fake_inst_new(f->desc, f->gen, config, 2);
    if (i->status != SLC_OK) {
        fake_diag_dump(i->diag);
    }
    assert_int_equal(i->status, SLC_OK);
    assert_int_equal(fake_diag_errors(i->diag), 0);
    return i;
}

/* bad_inst builds an instance that must be refused and returns it for the
 * diagnostics to be checked. */
static fake_inst_t *bad_inst(fixture_t *f, slc_cfg_node_t *config)
{
    fake_inst_t *i = fake_inst_new(f->desc, f->gen, config, 1);
    assert_int_equal(i->status, SLC_EINVAL);
    assert_true(fake_diag_errors(i->diag) >= 1);
    return i;
}

/* ep_index returns the index of |e| in |c|, or -1. */
static int ep_index(slc_cluster_t *c, const slc_endpoint_t *e)
{
    for (size_t i = 0; c != NULL && fake_endpoint(c, i) != NULL; i++) {
        if (e == fake_endpoint(c, i)) {
            return (int)i;
        }
    }
    return -1;
}

/* run routes |r| to |c|, runs the lb of |inst| and returns the index of
 * the chosen endpoint (or -1 with a STOP). Frees |r|. */
static int run(fake_inst_t *inst, slc_req_t *r, slc_cluster_t *c)
{
    assert_int_equal(fake_host_table.route_set_cluster(r, c), SLC_OK);
    slc_action_t act = fake_inst_run(inst, r, FAKE_UPSTREAM_SELECT);
    int idx = ep_index(c, fake_req_endpoint(r));
    assert_int_equal(act, idx >= 0 ? SLC_CONTINUE : SLC_STOP);
    /* A pick never allocates. */
    assert_int_equal(fake_req_arena_bytes(r), 0);
    fake_req_free(r);
    return idx;
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
    int idx = ep_index(c, fake_req_endpoint(r));
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

/* pick_header picks for a request carrying |name: value| (no header if
 * value is NULL) on |worker|. */
static int pick_header(fixture_t *f, fake_inst_t *inst, slc_cluster_t *c, int worker,
                       const char *name, const char *value)
{
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_set_worker(r, worker);
    if (value != NULL) {
        fake_req_add_header(r, SLC_REQUEST_HEADERS, name, value);
    }
    return run(inst, r, c);
}

/* ---- round robin (the fixture's instance) ---------------------------------- */

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

static void test_skips_ejected(void **state)
{
    fixture_t *f = *state;
    /* Ejected until later on the host clock: skipped; once the time has
     * passed it is back. */
    uint64_t now = fake_get_now_ms();
    fake_endpoint_set_ejected_until(fake_endpoint(f->api, 0), now + 30000);
    for (int i = 0; i < 6; i++) {
        assert_int_not_equal(pick(f, f->api), 0);
    }
    fake_set_now_ms(now + 30001);
    int seen0 = 0;
    for (int i = 0; i < 3; i++) {
        seen0 += pick(f, f->api) == 0;
    }
    assert_int_equal(seen0, 1);
    fake_set_now_ms(now);
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
    /* Worker 1 has its own cursor, untouched by worker 0; it starts at its
     * worker id, so the workers' first requests spread out. */
    assert_int_equal(pick_on(f, 1, f->api, &act), 1);
    assert_int_equal(pick_on(f, 0, f->api, &act), 2);
    assert_int_equal(pick_on(f, 1, f->api, &act), 2);
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
    /* More clusters than a worker has slots: the first ones keep exact
     * per-cluster rotation despite hash collisions, the rest still get a
     * healthy endpoint. */
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

/* ---- per-cluster policies ---------------------------------------------------- */

static void test_per_cluster_policy(void **state)
{
    fixture_t *f = *state;
    /* api is random, every other cluster keeps the default round robin. */
    fake_inst_t *i = new_inst(
        f, fake_map("policy", fake_scalar("round_robin"), "clusters",
                    fake_map("api", fake_map("policy", fake_scalar("random"), NULL), NULL), NULL));
    for (int k = 0; k < 6; k++) {
        assert_int_equal(pick_header(f, i, f->web, 0, "x", NULL), k % 2);
    }
    int seen[3] = {0};
    for (int k = 0; k < 300; k++) {
        seen[pick_header(f, i, f->api, 0, "x", NULL)]++;
    }
    /* Random, not round robin: not exactly 100 each every time. */
    assert_true(seen[0] > 50 && seen[1] > 50 && seen[2] > 50);
    assert_false(seen[0] == 100 && seen[1] == 100 && seen[2] == 100);
    fake_inst_free(i);
}

static void test_least_request_two(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = new_inst(
        f, fake_map("clusters",
                    fake_map("web", fake_map("policy", fake_scalar("least_request"), NULL), NULL),
                    NULL));
    /* Two endpoints: both are the two choices, the less loaded wins. */
    fake_endpoint_set_active(fake_endpoint(f->web, 0), 5);
    fake_endpoint_set_active(fake_endpoint(f->web, 1), 1);
    for (int k = 0; k < 200; k++) {
        assert_int_equal(pick_header(f, i, f->web, k % 2, "x", NULL), 1);
    }
    fake_endpoint_set_active(fake_endpoint(f->web, 0), 0);
    for (int k = 0; k < 200; k++) {
        assert_int_equal(pick_header(f, i, f->web, k % 2, "x", NULL), 0);
    }
    /* Unless it is unhealthy. */
    fake_endpoint_set_healthy(fake_endpoint(f->web, 0), false);
    for (int k = 0; k < 50; k++) {
        assert_int_equal(pick_header(f, i, f->web, 0, "x", NULL), 1);
    }
    fake_inst_free(i);
}

static void test_least_conn_alias(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = new_inst(f, fake_map("policy", fake_scalar("least_conn"), NULL));
    /* Three endpoints, power of two choices: the most loaded never wins a
     * pair, the least loaded wins every pair it is in (2 of 3 pairs). */
    fake_endpoint_set_active(fake_endpoint(f->api, 0), 3);
    fake_endpoint_set_active(fake_endpoint(f->api, 1), 1);
    fake_endpoint_set_active(fake_endpoint(f->api, 2), 7);
    int seen[3] = {0};
    for (int k = 0; k < 3000; k++) {
        seen[pick_header(f, i, f->api, 0, "x", NULL)]++;
    }
    assert_int_equal(seen[2], 0);
    assert_true(seen[1] > 1800 && seen[1] < 2200);
    assert_true(seen[0] > 800 && seen[0] < 1200);
    fake_inst_free(i);
}

static void test_random_uniform(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = new_inst(f, fake_map("policy", fake_scalar("random"), NULL));
    enum { N = 30000 };
    int seen[3] = {0};
    for (int k = 0; k < N; k++) {
        seen[pick_header(f, i, f->api, k % 2, "x", NULL)]++;
    }
    for (int e = 0; e < 3; e++) {
        /* 10,000 expected; +-5% is about 7 standard deviations. */
        assert_true(seen[e] > 9500 && seen[e] < 10500);
    }
    /* With one unhealthy, the other two share evenly. */
    fake_endpoint_set_healthy(fake_endpoint(f->api, 0), false);
    int seen2[3] = {0};
    for (int k = 0; k < 10000; k++) {
        seen2[pick_header(f, i, f->api, 0, "x", NULL)]++;
    }
    assert_int_equal(seen2[0], 0);
    assert_true(seen2[1] > 4700 && seen2[1] < 5300);
    fake_inst_free(i);
}

static void test_panic_threshold(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = new_inst(
        f, fake_map("clusters",
                    fake_map("api", fake_map("min_health_percent", fake_scalar("50"), NULL), NULL),
                    NULL));
    slc_metric_t *panic = fake_metric(i->diag, "lb_panic_total");
    assert_non_null(panic);

    /* 2 of 3 healthy (66% >= 50%): the unhealthy one is skipped. */
    fake_endpoint_set_healthy(fake_endpoint(f->api, 1), false);
    for (int k = 0; k < 6; k++) {
        assert_int_not_equal(pick_header(f, i, f->api, 0, "x", NULL), 1);
    }
    assert_int_equal(fake_metric_value(panic), 0);

    /* 1 of 3 healthy (33% < 50%): panic, all three take load again. */
    fake_endpoint_set_healthy(fake_endpoint(f->api, 2), false);
    int seen[3] = {0};
    for (int k = 0; k < 6; k++) {
        seen[pick_header(f, i, f->api, 0, "x", NULL)]++;
    }
    assert_int_equal(seen[0], 2);
    assert_int_equal(seen[1], 2);
    assert_int_equal(seen[2], 2);
    assert_int_equal(fake_metric_value(panic), 6);

    /* None healthy: still panic, still served (Envoy). */
    fake_endpoint_set_healthy(fake_endpoint(f->api, 0), false);
    assert_true(pick_header(f, i, f->api, 0, "x", NULL) >= 0);

    /* web is not listed: the top-level default 0 applies, no panic. */
    fake_endpoint_set_healthy(fake_endpoint(f->web, 0), false);
    fake_endpoint_set_healthy(fake_endpoint(f->web, 1), false);
    assert_int_equal(pick_header(f, i, f->web, 0, "x", NULL), -1);
    fake_inst_free(i);

    /* A top-level min_health_percent is the default for every cluster. */
    i = new_inst(f, fake_map("min_health_percent", fake_scalar("100"), NULL));
    assert_true(pick_header(f, i, f->web, 0, "x", NULL) >= 0);
    fake_inst_free(i);
}

/* ---- retries ------------------------------------------------------------------- */

static void test_retry_prefers_untried(void **state)
{
    fixture_t *f = *state;
    /* Round robin: the cursor would give 0, which this stream tried. */
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_mark_tried(r, fake_endpoint(f->api, 0));
    assert_int_equal(run(f->inst, r, f->api), 1);

    /* Tried 1 and 2: 0 is the only untried one. */
    r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_mark_tried(r, fake_endpoint(f->api, 1));
    fake_req_mark_tried(r, fake_endpoint(f->api, 2));
    assert_int_equal(run(f->inst, r, f->api), 0);

    /* All tried: one of them again rather than a 503. */
    r = fake_req_new(f->gen, "GET", "a", "/");
    for (size_t k = 0; k < 3; k++) {
        fake_req_mark_tried(r, fake_endpoint(f->api, k));
    }
    assert_true(run(f->inst, r, f->api) >= 0);

    /* Tried and the rest unhealthy: the tried healthy one. */
    fake_endpoint_set_healthy(fake_endpoint(f->api, 1), false);
    fake_endpoint_set_healthy(fake_endpoint(f->api, 2), false);
    r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_mark_tried(r, fake_endpoint(f->api, 0));
    assert_int_equal(run(f->inst, r, f->api), 0);
}

static void test_retry_hash_and_least_request(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = new_inst(
        f, fake_map("clusters",
                    fake_map("big",
                             fake_map("policy", fake_scalar("maglev"), "hash",
                                      fake_map("header", fake_scalar("x-user"), NULL), NULL),
                             "api", fake_map("policy", fake_scalar("least_request"), NULL), NULL),
                    NULL));
    for (int k = 0; k < 50; k++) {
        char key[16];
        snprintf(key, sizeof(key), "u%d", k);
        int home = pick_header(f, i, f->big, 0, "x-user", key);
        slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
        fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-user", key);
        fake_req_mark_tried(r, fake_endpoint(f->big, (size_t)home));
        int again = run(i, r, f->big);
        assert_true(again >= 0);
        assert_int_not_equal(again, home);
    }
    /* least_request: the lightest endpoint was tried, so not it. */
    fake_endpoint_set_active(fake_endpoint(f->api, 0), 0);
    fake_endpoint_set_active(fake_endpoint(f->api, 1), 5);
    fake_endpoint_set_active(fake_endpoint(f->api, 2), 9);
    for (int k = 0; k < 50; k++) {
        slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
        fake_req_mark_tried(r, fake_endpoint(f->api, 0));
        assert_int_equal(run(i, r, f->api), 1);
    }
    fake_inst_free(i);
}

/* ---- consistent hashing -------------------------------------------------------- */

/* hash_inst_cfg is the config "clusters: { big: { policy, hash } }". */
static slc_cfg_node_t *hash_inst_cfg(fixture_t *f, const char *policy, slc_cfg_node_t *hash)
{
    (void)f;
    return fake_map(
        "clusters",
        fake_map("big", fake_map("policy", fake_scalar(policy), "hash", hash, NULL), NULL), NULL);
}

static fake_inst_t *hash_inst(fixture_t *f, const char *policy, slc_cfg_node_t *hash)
{
    return new_inst(f, hash_inst_cfg(f, policy, hash));
}

/* check_remap sends KEYS keys, removes endpoint |gone| (unhealthy), sends
 * them again and checks that only the keys on |gone| moved. Returns the
 * moved fraction. */
static double check_remap(fixture_t *f, fake_inst_t *inst, size_t gone, int min_share,
                          int max_share)
{
    enum { KEYS = 10000 };
    static int before[KEYS];
    int share[BIG_N] = {0};
    char key[32];
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "user-%d", k);
        before[k] = pick_header(f, inst, f->big, k % 2, "x-user", key);
        assert_true(before[k] >= 0);
        share[before[k]]++;
    }
    for (int e = 0; e < BIG_N; e++) {
        if (share[e] < min_share || share[e] > max_share) {
            fail_msg("endpoint %d got %d of %d keys", e, share[e], KEYS);
        }
    }
    /* The same key always lands on the same endpoint, on either worker. */
    for (int k = 0; k < 200; k++) {
        snprintf(key, sizeof(key), "user-%d", k);
        assert_int_equal(pick_header(f, inst, f->big, 1 - k % 2, "x-user", key), before[k]);
    }

    fake_endpoint_set_healthy(fake_endpoint(f->big, gone), false);
    int moved = 0, dest[BIG_N] = {0};
    for (int k = 0; k < KEYS; k++) {
        snprintf(key, sizeof(key), "user-%d", k);
        int now = pick_header(f, inst, f->big, k % 2, "x-user", key);
        assert_int_not_equal(now, (int)gone);
        if (before[k] != (int)gone) {
            /* A key that was not on the removed endpoint keeps its own. */
            assert_int_equal(now, before[k]);
        } else {
            moved++;
            dest[now]++;
        }
    }
    /* The moved keys spread over the others instead of piling onto one. */
    int targets = 0;
    for (int e = 0; e < BIG_N; e++) {
        targets += dest[e] > 0;
    }
    assert_true(targets >= BIG_N / 2);

    /* Back again: every key returns home. */
    fake_endpoint_set_healthy(fake_endpoint(f->big, gone), true);
    for (int k = 0; k < KEYS; k += 7) {
        snprintf(key, sizeof(key), "user-%d", k);
        assert_int_equal(pick_header(f, inst, f->big, 0, "x-user", key), before[k]);
    }
    double frac = (double)moved / KEYS;
    print_message("    moved %.4f of %d keys removing 1 of %d endpoints (1/N = %.4f)\n", frac, KEYS,
                  BIG_N, 1.0 / BIG_N);
    return frac;
}

static void test_ring_hash_remap(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = hash_inst(f, "ring_hash", fake_map("header", fake_scalar("x-user"), NULL));
    /* 1024 points over 10 endpoints: shares vary by some 10%. */
    double frac = check_remap(f, i, 3, 600, 1400);
    assert_true(frac > 0.06 && frac < 0.14);
    fake_inst_free(i);
}

static void test_maglev_remap(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = hash_inst(f, "maglev", fake_map("header", fake_scalar("x-user"), NULL));
    /* Maglev tables are balanced to one slot: only key sampling noise. */
    double frac = check_remap(f, i, 7, 880, 1120);
    assert_true(frac > 0.085 && frac < 0.115);
    fake_inst_free(i);
}

static void test_ring_size_and_table_size(void **state)
{
    fixture_t *f = *state;
    /* A bigger ring evens out the shares; a small prime Maglev table
     * still works. Both stay consistent per key. */
    fake_inst_t *i = new_inst(
        f,
        fake_map(
            "clusters",
            fake_map("big",
                     fake_map("policy", fake_scalar("ring_hash"), "ring_size", fake_scalar("65536"),
                              "hash", fake_map("header", fake_scalar("x-user"), NULL), NULL),
                     "api",
                     fake_map("policy", fake_scalar("maglev"), "table_size", fake_scalar("101"),
                              "hash", fake_map("header", fake_scalar("x-user"), NULL), NULL),
                     NULL),
            NULL));
    double frac = check_remap(f, i, 0, 850, 1150);
    assert_true(frac > 0.085 && frac < 0.115);
    int seen[3] = {0};
    for (int k = 0; k < 300; k++) {
        char key[16];
        snprintf(key, sizeof(key), "k%d", k);
        int e = pick_header(f, i, f->api, 0, "x-user", key);
        assert_int_equal(pick_header(f, i, f->api, 1, "x-user", key), e);
        seen[e]++;
    }
    assert_true(seen[0] > 50 && seen[1] > 50 && seen[2] > 50);
    fake_inst_free(i);
}

/* distinct_endpoints counts the endpoints that |n| requests built by |mk|
 * reach (each request built from its number). */
typedef slc_req_t *(*mk_req_fn)(fixture_t *f, int k);

static int distinct_endpoints(fixture_t *f, fake_inst_t *inst, mk_req_fn mk, int n)
{
    int seen[BIG_N] = {0}, distinct = 0;
    for (int k = 0; k < n; k++) {
        int e = run(inst, mk(f, k), f->big);
        assert_true(e >= 0);
        distinct += seen[e]++ == 0;
    }
    return distinct;
}

static slc_req_t *mk_no_key(fixture_t *f, int k)
{
    (void)k;
    return fake_req_new(f->gen, "GET", "a", "/p?other=1");
}

static slc_req_t *mk_header_key(fixture_t *f, int k)
{
    char v[16];
    snprintf(v, sizeof(v), "h%d", k);
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-user", v);
    return r;
}

static slc_req_t *mk_same_header_key(fixture_t *f, int k)
{
    (void)k;
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "X-User", "alice");
    return r;
}

static void test_hash_header(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = hash_inst(f, "ring_hash", fake_map("header", fake_scalar("x-user"), NULL));
    /* One key, one endpoint (header names are case-insensitive). */
    assert_int_equal(distinct_endpoints(f, i, mk_same_header_key, 100), 1);
    /* Different keys spread. */
    assert_true(distinct_endpoints(f, i, mk_header_key, 200) >= 8);
    /* No header: a random endpoint, never a failure. */
    assert_true(distinct_endpoints(f, i, mk_no_key, 200) >= 5);
    fake_inst_free(i);
}

static slc_req_t *mk_cookie(fixture_t *f, int k)
{
    /* The same session in different cookie layouts. */
    static const char *const forms[] = {
        "session=abc",
        "a=1; session=abc",
        "session=abc; z=2",
        "  x=y ;session=\"abc\"",
    };
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    if (k % 5 == 4) {
        /* A second Cookie header carries it. */
        fake_req_add_header(r, SLC_REQUEST_HEADERS, "cookie", "other=1");
        fake_req_add_header(r, SLC_REQUEST_HEADERS, "Cookie", "session=abc");
    } else {
        fake_req_add_header(r, SLC_REQUEST_HEADERS, "cookie", forms[k % 5]);
    }
    return r;
}

static slc_req_t *mk_cookie_var(fixture_t *f, int k)
{
    char v[32];
    snprintf(v, sizeof(v), "session=s%d", k);
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "cookie", v);
    return r;
}

static slc_req_t *mk_cookie_other(fixture_t *f, int k)
{
    (void)k;
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    /* "sessionx" and "xsession" are not "session". */
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "cookie", "sessionx=abc; xsession=abc");
    return r;
}

static void test_hash_cookie(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = hash_inst(
        f, "maglev", fake_map("cookie", fake_map("name", fake_scalar("session"), NULL), NULL));
    assert_int_equal(distinct_endpoints(f, i, mk_cookie, 100), 1);
    assert_true(distinct_endpoints(f, i, mk_cookie_var, 200) >= 8);
    assert_true(distinct_endpoints(f, i, mk_cookie_other, 200) >= 5);
    assert_true(distinct_endpoints(f, i, mk_no_key, 200) >= 5);
    fake_inst_free(i);

    /* The short form `cookie: session` means the same. */
    i = hash_inst(f, "maglev", fake_map("cookie", fake_scalar("session"), NULL));
    assert_int_equal(distinct_endpoints(f, i, mk_cookie, 50), 1);
    fake_inst_free(i);
}

static slc_conn_t *conns[64];
static size_t nconns;

static slc_req_t *req_with_peer(fixture_t *f, const char *peer)
{
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    if (nconns < sizeof(conns) / sizeof(conns[0])) {
        conns[nconns] = fake_conn_new(peer, "127.0.0.1:8080");
        fake_req_set_conn(r, conns[nconns++]);
    }
    return r;
}

static void free_conns(void)
{
    while (nconns > 0) {
        fake_conn_free(conns[--nconns]);
    }
}

static slc_req_t *mk_peer_same_ip(fixture_t *f, int k)
{
    char peer[32];
    snprintf(peer, sizeof(peer), "192.0.2.7:%d", 40000 + k);
    return req_with_peer(f, peer);
}

static slc_req_t *mk_peer_v6(fixture_t *f, int k)
{
    char peer[48];
    snprintf(peer, sizeof(peer), "[2001:db8::17]:%d", 40000 + k);
    return req_with_peer(f, peer);
}

static slc_req_t *mk_peer_var(fixture_t *f, int k)
{
    char peer[32];
    snprintf(peer, sizeof(peer), "198.51.100.%d:5000", k);
    return req_with_peer(f, peer);
}

static slc_req_t *mk_no_conn(fixture_t *f, int k)
{
    (void)k;
    return fake_req_new(f->gen, "GET", "a", "/");
}

static void test_hash_source_ip(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = hash_inst(f, "ring_hash", fake_map("source_ip", fake_scalar("true"), NULL));
    /* Only the IP counts: every port of one client lands together. */
    assert_int_equal(distinct_endpoints(f, i, mk_peer_same_ip, 60), 1);
    free_conns();
    assert_int_equal(distinct_endpoints(f, i, mk_peer_v6, 60), 1);
    free_conns();
    assert_true(distinct_endpoints(f, i, mk_peer_var, 60) >= 6);
    free_conns();
    /* No connection known: random. */
    assert_true(distinct_endpoints(f, i, mk_no_conn, 200) >= 5);

    /* The IPv4 client hashes the same with or without a port. */
    slc_req_t *r = req_with_peer(f, "192.0.2.7:1");
    int a = run(i, r, f->big);
    r = req_with_peer(f, "192.0.2.7");
    assert_int_equal(run(i, r, f->big), a);
    free_conns();
    fake_inst_free(i);
}

static slc_req_t *mk_query_same(fixture_t *f, int k)
{
    static const char *const paths[] = {
        "/p?user=bob",
        "/q?x=1&user=bob",
        "/r?user=bob&x=2#frag",
        "/s?a&user=bob&user=eve",
    };
    return fake_req_new(f->gen, "GET", "a", paths[k % 4]);
}

static slc_req_t *mk_query_var(fixture_t *f, int k)
{
    char p[32];
    snprintf(p, sizeof(p), "/p?user=u%d", k);
    return fake_req_new(f->gen, "GET", "a", p);
}

static slc_req_t *mk_query_near(fixture_t *f, int k)
{
    static const char *const paths[] = {
        "/p", "/p?username=bob", "/p?xuser=bob", "/user=bob", "/p#?user=bob",
    };
    return fake_req_new(f->gen, "GET", "a", paths[k % 5]);
}

static void test_hash_query_param(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = hash_inst(f, "maglev", fake_map("query_param", fake_scalar("user"), NULL));
    assert_int_equal(distinct_endpoints(f, i, mk_query_same, 100), 1);
    assert_true(distinct_endpoints(f, i, mk_query_var, 200) >= 8);
    /* Not the parameter: random. */
    assert_true(distinct_endpoints(f, i, mk_query_near, 200) >= 5);
    fake_inst_free(i);
}

static void test_hash_without_policy_is_ring(void **state)
{
    fixture_t *f = *state;
    /* Istio: consistentHash alone means a ring. */
    fake_inst_t *i = new_inst(
        f,
        fake_map("clusters",
                 fake_map("big",
                          fake_map("hash", fake_map("header", fake_scalar("x-user"), NULL), NULL),
                          NULL),
                 NULL));
    assert_int_equal(distinct_endpoints(f, i, mk_same_header_key, 50), 1);
    assert_true(distinct_endpoints(f, i, mk_header_key, 200) >= 8);
    fake_inst_free(i);
}

static void test_hash_all_unhealthy(void **state)
{
    fixture_t *f = *state;
    fake_inst_t *i = hash_inst(f, "maglev", fake_map("header", fake_scalar("x-user"), NULL));
    for (size_t e = 0; e < BIG_N; e++) {
        fake_endpoint_set_healthy(fake_endpoint(f->big, e), false);
    }
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    fake_req_add_header(r, SLC_REQUEST_HEADERS, "x-user", "bob");
    fake_host_table.route_set_cluster(r, f->big);
    assert_int_equal(fake_inst_run(i, r, FAKE_UPSTREAM_SELECT), SLC_STOP);
    assert_int_equal(fake_req_reply_status(r), 503);
    assert_int_equal(fake_req_flags(r), SLC_RF_UH);
    fake_req_free(r);
    /* One comes back: every key goes there. */
    fake_endpoint_set_healthy(fake_endpoint(f->big, 4), true);
    for (int k = 0; k < 50; k++) {
        char key[16];
        snprintf(key, sizeof(key), "u%d", k);
        assert_int_equal(pick_header(f, i, f->big, 0, "x-user", key), 4);
    }
    fake_inst_free(i);
}

/* ---- chash directly --------------------------------------------------------- */

static void test_chash_tables(void **state)
{
    (void)state;
    assert_true(chash_is_prime(2));
    assert_true(chash_is_prime(65537));
    assert_true(chash_is_prime(5000011));
    assert_false(chash_is_prime(1));
    assert_false(chash_is_prime(65536));
    assert_false(chash_is_prime(65539 * 3));

    /* The hash is stable and seed- and length-sensitive. */
    assert_int_equal(chash_hash64("abc", 3, 0), chash_hash64("abc", 3, 0));
    assert_int_not_equal(chash_hash64("abc", 3, 0), chash_hash64("abc", 3, 1));
    assert_int_not_equal(chash_hash64("abc", 3, 0), chash_hash64("abc\0", 4, 0));
    assert_int_not_equal(chash_hash64("", 0, 0), chash_hash64("", 0, 1));

    /* Maglev: every slot filled, shares differ by at most one. */
    const char *addrs[5] = {"a:1", "b:1", "c:1", "d:1", "e:1"};
    size_t lens[5] = {3, 3, 3, 3, 3};
    uint32_t table[251];
    uint64_t scratch[10];
    chash_maglev_build(table, 251, addrs, lens, 5, scratch);
    int share[5] = {0};
    for (int s = 0; s < 251; s++) {
        assert_true(table[s] < 5);
        share[table[s]]++;
    }
    for (int e = 0; e < 5; e++) {
        assert_true(share[e] == 50 || share[e] == 51);
    }

    /* Ring lookup wraps past the last point. */
    chash_point_t pts[3] = {{10, 0}, {20, 1}, {30, 2}};
    chash_ring_t ring = {pts, 3};
    assert_int_equal(chash_ring_find(&ring, 0), 0);
    assert_int_equal(chash_ring_find(&ring, 10), 0);
    assert_int_equal(chash_ring_find(&ring, 11), 1);
    assert_int_equal(chash_ring_find(&ring, 30), 2);
    assert_int_equal(chash_ring_find(&ring, 31), 0);
}

/* ---- configuration ------------------------------------------------------------ */

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
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "did you mean 'least_conn'"));
    fake_inst_free(i);

    slc_cfg_node_t *typo = fake_scalar("round_robin");
    i = fake_inst_new(f->desc, f->gen, fake_map("polcy", typo, NULL), 1);
    assert_int_equal(i->status, SLC_EINVAL);
    assert_ptr_equal(fake_diag_node(i->diag, 0), typo);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "did you mean 'policy'"));
    fake_inst_free(i);
}

static void test_config_policy_hints(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *in, *hint;
    } cases[] = {
        {"LEAST_CONN", "least_conn"},      {"ROUND_ROBIN", "round_robin"},
        {"leastRequest", "least_request"}, {"least_reqest", "least_request"},
        {"RING_HASH", "ring_hash"},        {"Maglev", "maglev"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        slc_cfg_node_t *p = fake_scalar(cases[k].in);
        fake_inst_t *i = bad_inst(
            f, fake_map("clusters", fake_map("api", fake_map("policy", p, NULL), NULL), NULL));
        assert_int_equal(fake_diag_errors(i->diag), 1);
        assert_ptr_equal(fake_diag_node(i->diag, 0), p);
        assert_string_equal(fake_diag_path(i->diag, 0), "clusters.api.policy");
        char want[64];
        snprintf(want, sizeof(want), "did you mean '%s'", cases[k].hint);
        if (strstr(fake_diag_msg(i->diag, 0), want) == NULL) {
            fail_msg("%s: got '%s'", cases[k].in, fake_diag_msg(i->diag, 0));
        }
        fake_inst_free(i);
    }
    /* Nothing close: no hint. */
    slc_cfg_node_t *p = fake_scalar("weighted_zebra");
    fake_inst_t *i = bad_inst(f, fake_map("policy", p, NULL));
    assert_null(strstr(fake_diag_msg(i->diag, 0), "did you mean"));
    fake_inst_free(i);
}

static void test_config_hash_errors(void **state)
{
    fixture_t *f = *state;

    /* ring_hash without a hash: at the policy. */
    slc_cfg_node_t *pol = fake_scalar("ring_hash");
    fake_inst_t *i = bad_inst(
        f, fake_map("clusters", fake_map("big", fake_map("policy", pol, NULL), NULL), NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), pol);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "needs a hash key"));
    fake_inst_free(i);

    /* Two sources: at the second. */
    slc_cfg_node_t *second = fake_map("name", fake_scalar("s"), NULL);
    i = bad_inst(f, fake_map("clusters",
                             fake_map("big",
                                      fake_map("policy", fake_scalar("maglev"), "hash",
                                               fake_map("header", fake_scalar("x-user"), "cookie",
                                                        second, NULL),
                                               NULL),
                                      NULL),
                             NULL));
    assert_int_equal(fake_diag_errors(i->diag), 1);
    assert_ptr_equal(fake_diag_node(i->diag, 0), second);
    assert_string_equal(fake_diag_path(i->diag, 0), "clusters.big.hash.cookie");
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "only one hash source"));
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "'header'"));
    fake_inst_free(i);

    /* No source at all (source_ip: false is none). */
    slc_cfg_node_t *empty = fake_map("source_ip", fake_scalar("false"), NULL);
    i = bad_inst(
        f,
        fake_map("clusters",
                 fake_map("big", fake_map("policy", fake_scalar("ring_hash"), "hash", empty, NULL),
                          NULL),
                 NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), empty);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "hash needs one of"));
    fake_inst_free(i);

    /* A hash with a policy that does not hash. */
    slc_cfg_node_t *h = fake_map("header", fake_scalar("x-user"), NULL);
    i = bad_inst(
        f,
        fake_map("clusters",
                 fake_map("big", fake_map("policy", fake_scalar("random"), "hash", h, NULL), NULL),
                 NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), h);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "only used by ring_hash and maglev"));
    fake_inst_free(i);

    /* A header name that is no HTTP token. */
    slc_cfg_node_t *hn = fake_scalar("x user");
    i = bad_inst(f, hash_inst_cfg(f, "ring_hash", fake_map("header", hn, NULL)));
    assert_ptr_equal(fake_diag_node(i->diag, 0), hn);
    fake_inst_free(i);

    /* A cookie map without its name: the binder says so. */
    i = bad_inst(
        f, hash_inst_cfg(f, "ring_hash",
                         fake_map("cookie", fake_map("ttl", fake_scalar("10s"), NULL), NULL)));
    assert_true(fake_diag_find(i->diag, "name") >= 0);
    fake_inst_free(i);

    /* A cookie ttl is accepted with a warning (no cookie generation). */
    fake_inst_t *ok = fake_inst_new(
        f->desc, f->gen,
        hash_inst_cfg(f, "ring_hash",
                      fake_map("cookie",
                               fake_map("name", fake_scalar("s"), "ttl", fake_scalar("10s"), NULL),
                               NULL)),
        1);
    assert_int_equal(ok->status, SLC_OK);
    assert_int_equal(fake_diag_errors(ok->diag), 0);
    assert_int_equal(fake_diag_count(ok->diag), 1);
    assert_false(fake_diag_is_error(ok->diag, 0));
    fake_inst_free(ok);

    /* A default policy that hashes: refused (tables are per cluster). */
    slc_cfg_node_t *top = fake_scalar("maglev");
    i = bad_inst(f, fake_map("policy", top, NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), top);
    fake_inst_free(i);
}

static void test_config_table_errors(void **state)
{
    fixture_t *f = *state;
    slc_cfg_node_t *hdr = NULL;

    /* table_size must be prime. */
    slc_cfg_node_t *ts = fake_scalar("65536");
    hdr = fake_map("header", fake_scalar("x"), NULL);
    fake_inst_t *i = bad_inst(f, fake_map("clusters",
                                          fake_map("big",
                                                   fake_map("policy", fake_scalar("maglev"),
                                                            "table_size", ts, "hash", hdr, NULL),
                                                   NULL),
                                          NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), ts);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "not a prime"));
    fake_inst_free(i);

    /* ... and at least the number of endpoints. */
    ts = fake_scalar("7");
    hdr = fake_map("header", fake_scalar("x"), NULL);
    i = bad_inst(f, fake_map("clusters",
                             fake_map("big",
                                      fake_map("policy", fake_scalar("maglev"), "table_size", ts,
                                               "hash", hdr, NULL),
                                      NULL),
                             NULL));
    assert_true(fake_diag_find(i->diag, "smaller than the 10 endpoints") >= 0);
    fake_inst_free(i);

    /* ring_size with maglev, table_size with ring_hash. */
    slc_cfg_node_t *rs = fake_scalar("2048");
    hdr = fake_map("header", fake_scalar("x"), NULL);
    i = bad_inst(f, fake_map("clusters",
                             fake_map("big",
                                      fake_map("policy", fake_scalar("maglev"), "ring_size", rs,
                                               "hash", hdr, NULL),
                                      NULL),
                             NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), rs);
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "table_size"));
    fake_inst_free(i);

    ts = fake_scalar("65537");
    hdr = fake_map("header", fake_scalar("x"), NULL);
    i = bad_inst(f, fake_map("clusters",
                             fake_map("big",
                                      fake_map("policy", fake_scalar("ring_hash"), "table_size", ts,
                                               "hash", hdr, NULL),
                                      NULL),
                             NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), ts);
    fake_inst_free(i);

    /* ring_size out of range: the binder. */
    rs = fake_scalar("0");
    hdr = fake_map("header", fake_scalar("x"), NULL);
    i = bad_inst(f, fake_map("clusters",
                             fake_map("big",
                                      fake_map("policy", fake_scalar("ring_hash"), "ring_size", rs,
                                               "hash", hdr, NULL),
                                      NULL),
                             NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), rs);
    fake_inst_free(i);
}

static void test_config_cluster_errors(void **state)
{
    fixture_t *f = *state;
    /* An unknown cluster, a bad one and a good one: both errors reported
     * in one pass, each at its node. */
    slc_cfg_node_t *nope = fake_map("policy", fake_scalar("random"), NULL);
    slc_cfg_node_t *mh = fake_scalar("101");
    fake_inst_t *i = bad_inst(
        f, fake_map("clusters",
                    fake_map("nope", nope, "api", fake_map("min_health_percent", mh, NULL), "web",
                             fake_map("policy", fake_scalar("least_conn"), NULL), NULL),
                    NULL));
    assert_int_equal(fake_diag_errors(i->diag), 2);
    assert_ptr_equal(fake_diag_node(i->diag, 0), nope);
    assert_string_equal(fake_diag_path(i->diag, 0), "clusters.nope");
    assert_non_null(strstr(fake_diag_msg(i->diag, 0), "unknown cluster 'nope'"));
    assert_ptr_equal(fake_diag_node(i->diag, 1), mh);
    fake_inst_free(i);

    /* Istio's camelCase key: the binder's hint. */
    slc_cfg_node_t *v = fake_scalar("50");
    i = bad_inst(f, fake_map("clusters",
                             fake_map("api", fake_map("minHealthPercent", v, NULL), NULL), NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), v);
    fake_inst_free(i);

    /* clusters must be a map. */
    slc_cfg_node_t *seq = fake_seq(fake_scalar("api"), NULL);
    i = bad_inst(f, fake_map("clusters", seq, NULL));
    assert_ptr_equal(fake_diag_node(i->diag, 0), seq);
    fake_inst_free(i);

    /* A listed cluster with nothing under it takes the defaults. */
    i = new_inst(f, fake_map("policy", fake_scalar("random"), "clusters",
                             fake_map("api", fake_null(), NULL), NULL));
    fake_inst_free(i);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_robin_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skips_unhealthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_skips_ejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_all_unhealthy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_worker_counters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_cluster_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_clusters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_cluster_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_per_cluster_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_request_two, setup, teardown),
        cmocka_unit_test_setup_teardown(test_least_conn_alias, setup, teardown),
        cmocka_unit_test_setup_teardown(test_random_uniform, setup, teardown),
        cmocka_unit_test_setup_teardown(test_panic_threshold, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_prefers_untried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_hash_and_least_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_hash_remap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_maglev_remap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ring_size_and_table_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_cookie, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_source_ip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_query_param, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_without_policy_is_ring, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hash_all_unhealthy, setup, teardown),
        cmocka_unit_test(test_chash_tables),
        cmocka_unit_test_setup_teardown(test_config_default_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_policy_hints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_hash_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_table_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_cluster_errors, setup, teardown),
    };
    return cmocka_run_group_tests_name("lb", tests, NULL, NULL);
}
