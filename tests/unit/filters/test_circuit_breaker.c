/* Unit tests of the circuit-breaker filter against the fake host.
 *
 * Outlier state is module-wide and survives instances (as it survives
 * reloads), so every test uses cluster names of its own.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fake_host.h"
#include "outlier.h"

#define T0 1000000u /* virtual clock at the start of each test, ms */

typedef struct fixture {
    fake_gen_t *gen;
    const slc_filter_desc_t *desc;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->gen = fake_gen_new();
    f->desc = slc_filter_entry(&fake_host_table);
    fake_set_now_ms(T0);
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

/* inst_ok builds an instance and insists that it configured. */
static fake_inst_t *inst_ok(fixture_t *f, slc_cfg_node_t *config)
{
    fake_inst_t *inst = fake_inst_new(f->desc, f->gen, config, 2);
    if (inst->status != SLC_OK) {
        fake_diag_dump(inst->diag);
    }
    assert_int_equal(inst->status, SLC_OK);
    return inst;
}

/* one_cluster: config { clusters: { name: body } }. */
static slc_cfg_node_t *one_cluster(const char *name, slc_cfg_node_t *body)
{
    return fake_map("clusters", fake_map(name, body, NULL), NULL);
}

/* od: an outlier_detection body from key/value text pairs ended by NULL. */
static slc_cfg_node_t *od(const char *k1, const char *v1, const char *k2, const char *v2,
                          const char *k3, const char *v3)
{
    if (k1 == NULL) {
        return fake_map("outlier_detection", fake_empty_map(), NULL);
    }
    if (k2 == NULL) {
        return fake_map("outlier_detection", fake_map(k1, fake_scalar(v1), NULL), NULL);
    }
    if (k3 == NULL) {
        return fake_map("outlier_detection",
                        fake_map(k1, fake_scalar(v1), k2, fake_scalar(v2), NULL), NULL);
    }
    return fake_map("outlier_detection",
                    fake_map(k1, fake_scalar(v1), k2, fake_scalar(v2), k3, fake_scalar(v3), NULL),
                    NULL);
}

/* select_on starts a stream to |c| and runs on_upstream_select. The caller
 * completes and frees it. */
static slc_req_t *select_on(fixture_t *f, fake_inst_t *inst, const slc_cluster_t *c,
                            slc_action_t *act)
{
    slc_req_t *r = fake_req_new(f->gen, "GET", "a", "/");
    assert_int_equal(fake_host_table.route_set_cluster(r, c), SLC_OK);
    *act = fake_inst_run(inst, r, FAKE_UPSTREAM_SELECT);
    return r;
}

static void finish(fake_inst_t *inst, slc_req_t *r)
{
    fake_inst_complete(inst, r);
    fake_req_free(r);
}

/* attempt runs one whole stream whose single attempt at endpoint |i| of
 * |c| came to |res| / |status|. */
static void attempt(fixture_t *f, fake_inst_t *inst, slc_cluster_t *c, size_t i,
                    slc_attempt_result_t res, int status)
{
    slc_action_t act;
    slc_req_t *r = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    fake_req_mark_tried(r, fake_endpoint(c, i));
    fake_inst_result(inst, r, fake_endpoint(c, i), res, status);
    finish(inst, r);
}

static void responses(fixture_t *f, fake_inst_t *inst, slc_cluster_t *c, size_t i, int status,
                      int count)
{
    for (int k = 0; k < count; k++) {
        attempt(f, inst, c, i, SLC_ATTEMPT_RESPONSE, status);
    }
}

/* until_of: when endpoint |i| of |c| comes back, 0 if it is in service. */
static uint64_t until_of(slc_cluster_t *c, size_t i)
{
    return fake_host_table.endpoint_ejected_until(fake_endpoint(c, i));
}

static int64_t metric(fake_inst_t *inst, const char *name, const char *cluster)
{
    char key[200];
    snprintf(key, sizeof(key), "%s{cluster=%s}", name, cluster);
    slc_metric_t *m = fake_metric(inst->diag, key);
    assert_non_null(m);
    return fake_metric_value(m);
}

/* ---- connection pool ----------------------------------------------------- */

static void test_pool_options(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "pool", "127.0.0.1:1", NULL);
    slc_cluster_t *other = fake_cluster_add(f->gen, "pool-od", "127.0.0.1:2", NULL);
    slc_cfg_node_t *cfg = fake_map(
        "clusters",
        fake_map("pool",
                 fake_map("connection_pool",
                          fake_map("tcp",
                                   fake_map("max_connections", fake_scalar("100"),
                                            "connect_timeout", fake_scalar("5s"), NULL),
                                   "http",
                                   fake_map("http1_max_pending_requests", fake_scalar("50"),
                                            "http2_max_requests", fake_scalar("100"),
                                            "max_requests_per_connection", fake_scalar("10"),
                                            "max_retries", fake_scalar("3"), "idle_timeout",
                                            fake_scalar("2m"), NULL),
                                   NULL),
                          NULL),
                 "pool-od", od(NULL, NULL, NULL, NULL, NULL, NULL), NULL),
        NULL);
    fake_inst_t *inst = inst_ok(f, cfg);
    slc_pool_options_t o;
    assert_true(fake_cluster_pool(c, &o));
    assert_int_equal(o.max_connections, 100);
    assert_int_equal(o.connect_timeout_ms, 5000);
    assert_int_equal(o.max_pending_requests, 50);
    assert_int_equal(o.max_requests_per_connection, 10);
    assert_int_equal(o.idle_timeout_ms, 120000);
    /* Only connection_pool hands limits to the core. */
    assert_false(fake_cluster_pool(other, NULL));
    /* A second instance cannot set the same cluster's pool. */
    slc_cfg_node_t *again =
        fake_map("connection_pool", fake_map("tcp", fake_empty_map(), NULL), NULL);
    fake_inst_t *i2 = fake_inst_new(f->desc, f->gen, one_cluster("pool", again), 1);
    assert_int_equal(i2->status, SLC_EINVAL);
    assert_ptr_equal(fake_diag_node(i2->diag, 0), fake_cfg_find(again, "connection_pool"));
    assert_non_null(strstr(fake_diag_msg(i2->diag, 0), "already set"));
    fake_inst_free(i2);
    fake_inst_free(inst);
}

static void test_pool_defaults_unlimited(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "pool-dflt", "127.0.0.1:1", NULL);
    fake_inst_t *inst =
        inst_ok(f, one_cluster("pool-dflt", fake_map("connection_pool", fake_empty_map(), NULL)));
    slc_pool_options_t o;
    assert_true(fake_cluster_pool(c, &o));
    /* 0: unlimited, and the cluster's own timeouts (10s, 1h). */
    assert_int_equal(o.max_connections, 0);
    assert_int_equal(o.max_pending_requests, 0);
    assert_int_equal(o.max_requests_per_connection, 0);
    assert_int_equal(o.connect_timeout_ms, 0);
    assert_int_equal(o.idle_timeout_ms, 0);
    /* Without a limit, any number of requests is let through. */
    slc_req_t *rs[50];
    for (int i = 0; i < 50; i++) {
        slc_action_t act;
        rs[i] = select_on(f, inst, c, &act);
        assert_int_equal(act, SLC_CONTINUE);
    }
    assert_int_equal(metric(inst, "cb_active_requests", "pool-dflt"), 50);
    for (int i = 0; i < 50; i++) {
        finish(inst, rs[i]);
    }
    assert_int_equal(metric(inst, "cb_active_requests", "pool-dflt"), 0);
    fake_inst_free(inst);
}

static slc_cfg_node_t *http_limits(const char *key, const char *value)
{
    return fake_map("connection_pool",
                    fake_map("http", fake_map(key, fake_scalar(value), NULL), NULL), NULL);
}

static void test_max_requests_overflow(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "mr", "127.0.0.1:1", "127.0.0.1:2", NULL);
    slc_cluster_t *free_c = fake_cluster_add(f->gen, "mr-unlisted", "127.0.0.1:3", NULL);
    fake_inst_t *inst = inst_ok(f, one_cluster("mr", http_limits("http2_max_requests", "2")));
    slc_action_t act;
    slc_req_t *a = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    slc_req_t *b = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    assert_int_equal(metric(inst, "cb_active_requests", "mr"), 2);

    slc_req_t *over = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_STOP);
    assert_int_equal(fake_req_reply_status(over), 503);
    assert_string_equal(fake_req_reply_body(over), "upstream overflow\n");
    assert_true(fake_req_flags(over) & SLC_RF_UO);
    assert_int_equal(metric(inst, "cb_overflow_total", "mr"), 1);
    /* The refused stream never counted, so it gives nothing back. */
    finish(inst, over);
    assert_int_equal(metric(inst, "cb_active_requests", "mr"), 2);

    /* Unlisted clusters are not limited. */
    slc_req_t *u = select_on(f, inst, free_c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    assert_int_equal(fake_req_reply_status(u), 0);
    finish(inst, u);

    /* Completing one frees exactly one slot. */
    finish(inst, a);
    assert_int_equal(metric(inst, "cb_active_requests", "mr"), 1);
    slc_req_t *d = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    slc_req_t *e = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_STOP);
    finish(inst, e);
    assert_int_equal(metric(inst, "cb_overflow_total", "mr"), 2);
    /* on_complete twice (a bug elsewhere) still releases once. */
    fake_inst_complete(inst, d);
    finish(inst, d);
    finish(inst, b);
    assert_int_equal(metric(inst, "cb_active_requests", "mr"), 0);
    slc_req_t *g1 = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    slc_req_t *g2 = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    finish(inst, g1);
    finish(inst, g2);
    fake_inst_free(inst);
}

static void test_max_retries(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "rt", "127.0.0.1:1", "127.0.0.1:2", NULL);
    fake_inst_t *inst = inst_ok(f, one_cluster("rt", http_limits("max_retries", "1")));
    slc_action_t act;
    /* Stream a: first attempt, then a retry round: allowed (1 of 1). */
    slc_req_t *a = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    fake_req_mark_tried(a, fake_endpoint(c, 0));
    fake_inst_result(inst, a, fake_endpoint(c, 0), SLC_ATTEMPT_RESPONSE, 503);
    assert_int_equal(fake_inst_run(inst, a, FAKE_UPSTREAM_SELECT), SLC_CONTINUE);
    /* a's second retry round does not count again. */
    fake_req_mark_tried(a, fake_endpoint(c, 1));
    assert_int_equal(fake_inst_run(inst, a, FAKE_UPSTREAM_SELECT), SLC_CONTINUE);

    /* Stream b's first attempt is fine; its retry is over the limit. */
    slc_req_t *b = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    fake_req_mark_tried(b, fake_endpoint(c, 1));
    assert_int_equal(fake_inst_run(inst, b, FAKE_UPSTREAM_SELECT), SLC_STOP);
    assert_int_equal(fake_req_reply_status(b), 503);
    assert_true(fake_req_flags(b) & SLC_RF_UO);
    assert_int_equal(metric(inst, "cb_overflow_total", "rt"), 1);
    finish(inst, b);

    /* Once a completes, a retry may go again. */
    finish(inst, a);
    slc_req_t *d = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    fake_req_mark_tried(d, fake_endpoint(c, 0));
    assert_int_equal(fake_inst_run(inst, d, FAKE_UPSTREAM_SELECT), SLC_CONTINUE);
    finish(inst, d);
    assert_int_equal(metric(inst, "cb_active_requests", "rt"), 0);
    assert_int_equal(metric(inst, "cb_overflow_total", "rt"), 1);
    fake_inst_free(inst);
}

/* ---- outlier detection --------------------------------------------------- */

static void test_eject_after_consecutive_5xx(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "od5", "127.0.0.1:1", "127.0.0.1:2", NULL);
    /* All defaults: 5 consecutive 5xx, 30s, max 10% (still one host). */
    fake_inst_t *inst = inst_ok(f, one_cluster("od5", od(NULL, NULL, NULL, NULL, NULL, NULL)));
    responses(f, inst, c, 0, 500, 4);
    assert_int_equal(until_of(c, 0), 0);
    assert_true(fake_host_table.endpoint_healthy(fake_endpoint(c, 0)));
    /* Errors at another endpoint do not count for this one. */
    responses(f, inst, c, 1, 503, 4);
    assert_int_equal(until_of(c, 1), 0);
    responses(f, inst, c, 0, 500, 1);
    assert_int_equal(until_of(c, 0), T0 + 30000);
    assert_false(fake_host_table.endpoint_healthy(fake_endpoint(c, 0)));
    assert_int_equal(metric(inst, "cb_ejections_total", "od5"), 1);
    assert_int_equal(metric(inst, "cb_ejections_active", "od5"), 1);
    /* max_ejection_percent 10: with 1 of 2 out, the other stays in. */
    responses(f, inst, c, 1, 503, 1);
    assert_int_equal(until_of(c, 1), 0);
    assert_int_equal(metric(inst, "cb_ejections_total", "od5"), 1);
    fake_inst_free(inst);
}

/* A worker never waits for another's ejection decision: a trip that finds
 * the cluster busy is carried to the host's next failure (and dropped if a
 * success breaks the run first). */
static void test_busy_cluster_carries_trip(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "odb", "127.0.0.1:1", "127.0.0.1:2", NULL);
    fake_inst_t *inst = inst_ok(f, one_cluster("odb", od(NULL, NULL, NULL, NULL, NULL, NULL)));
    ob_entry_t *cl = ob_entry_get(SLC_STR("odb"), SLC_STR(""), false);
    assert_non_null(cl);
    assert_true(ob_trylock(cl)); /* another worker is deciding */
    responses(f, inst, c, 0, 500, 5);
    assert_int_equal(until_of(c, 0), 0);
    ob_unlock(cl);
    responses(f, inst, c, 0, 500, 1); /* the carried trip */
    assert_int_equal(until_of(c, 0), T0 + 30000);

    /* Endpoint 1: a success after the busy trip drops it. */
    assert_true(ob_trylock(cl));
    responses(f, inst, c, 1, 503, 5);
    ob_unlock(cl);
    responses(f, inst, c, 1, 200, 1);
    responses(f, inst, c, 1, 503, 4);
    assert_int_equal(until_of(c, 1), 0);
    fake_inst_free(inst);
}

static void test_success_resets(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "odr", "127.0.0.1:1", "127.0.0.1:2", NULL);
    fake_inst_t *inst = inst_ok(f, one_cluster("odr", od(NULL, NULL, NULL, NULL, NULL, NULL)));
    responses(f, inst, c, 0, 500, 4);
    responses(f, inst, c, 0, 200, 1);
    responses(f, inst, c, 0, 500, 4);
    assert_int_equal(until_of(c, 0), 0);
    /* A 404 is not a server error either. */
    responses(f, inst, c, 0, 404, 1);
    responses(f, inst, c, 0, 502, 4);
    assert_int_equal(until_of(c, 0), 0);
    attempt(f, inst, c, 0, SLC_ATTEMPT_RESET, 0);
    assert_int_equal(until_of(c, 0), T0 + 30000);
    fake_inst_free(inst);
}

static void test_gateway_errors(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c =
        fake_cluster_add(f->gen, "odgw", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", NULL);
    fake_inst_t *inst = inst_ok(
        f, one_cluster("odgw", od("consecutive_5xx_errors", "0", "consecutive_gateway_errors", "3",
                                  "max_ejection_percent", "100")));
    /* 500 is not a gateway error and breaks a run of them. */
    responses(f, inst, c, 0, 500, 10);
    assert_int_equal(until_of(c, 0), 0);
    responses(f, inst, c, 0, 502, 2);
    responses(f, inst, c, 0, 500, 1);
    responses(f, inst, c, 0, 504, 2);
    assert_int_equal(until_of(c, 0), 0);
    attempt(f, inst, c, 0, SLC_ATTEMPT_CONNECT_FAILURE, 0);
    assert_int_equal(until_of(c, 0), T0 + 30000);
    /* Connect failures, resets and timeouts are gateway errors. */
    attempt(f, inst, c, 1, SLC_ATTEMPT_TIMEOUT, 0);
    attempt(f, inst, c, 1, SLC_ATTEMPT_RESET, 0);
    assert_int_equal(until_of(c, 1), 0);
    responses(f, inst, c, 1, 503, 1);
    assert_int_equal(until_of(c, 1), T0 + 30000);
    assert_int_equal(metric(inst, "cb_ejections_active", "odgw"), 2);
    fake_inst_free(inst);
}

static void test_max_ejection_percent(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "odpct", "127.0.0.1:1", "127.0.0.1:2",
                                        "127.0.0.1:3", "127.0.0.1:4", NULL);
    fake_inst_t *inst =
        inst_ok(f, one_cluster("odpct", od("consecutive_5xx_errors", "2", "max_ejection_percent",
                                           "50", NULL, NULL)));
    responses(f, inst, c, 0, 500, 2);
    responses(f, inst, c, 1, 500, 2);
    assert_int_not_equal(until_of(c, 0), 0);
    assert_int_not_equal(until_of(c, 1), 0);
    /* 2 of 4 out = 50%: no third ejection. */
    responses(f, inst, c, 2, 500, 2);
    assert_int_equal(until_of(c, 2), 0);
    /* The counter restarted: two more failures try again, still capped. */
    responses(f, inst, c, 2, 500, 2);
    assert_int_equal(until_of(c, 2), 0);
    assert_int_equal(metric(inst, "cb_ejections_total", "odpct"), 2);
    /* Once one is back, there is room again. */
    fake_set_now_ms(T0 + 30000);
    responses(f, inst, c, 2, 500, 2);
    assert_int_equal(until_of(c, 2), T0 + 30000 + 30000);
    fake_inst_free(inst);

    /* max_ejection_percent 0 disables ejection. */
    slc_cluster_t *z = fake_cluster_add(f->gen, "odpct0", "127.0.0.1:1", "127.0.0.1:2", NULL);
    inst =
        inst_ok(f, one_cluster("odpct0", od("max_ejection_percent", "0", NULL, NULL, NULL, NULL)));
    responses(f, inst, z, 0, 500, 20);
    assert_int_equal(until_of(z, 0), 0);
    fake_inst_free(inst);
}

static void test_min_health_percent(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "odmh", "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3",
                                        "127.0.0.1:4", NULL);
    fake_inst_t *inst =
        inst_ok(f, one_cluster("odmh", od("consecutive_5xx_errors", "1", "max_ejection_percent",
                                          "100", "min_health_percent", "75")));
    /* 4 of 4 healthy (100% >= 75): eject one. */
    responses(f, inst, c, 0, 500, 1);
    assert_int_not_equal(until_of(c, 0), 0);
    /* 3 of 4 healthy (75% >= 75): eject another. */
    responses(f, inst, c, 1, 500, 1);
    assert_int_not_equal(until_of(c, 1), 0);
    /* 2 of 4 healthy (50% < 75): outlier ejection is suspended. */
    responses(f, inst, c, 2, 500, 1);
    assert_int_equal(until_of(c, 2), 0);
    fake_inst_free(inst);

    /* Hosts failing health checks count as unhealthy too. */
    slc_cluster_t *d = fake_cluster_add(f->gen, "odmh2", "127.0.0.1:1", "127.0.0.1:2", NULL);
    fake_endpoint_set_healthy(fake_endpoint(d, 1), false);
    inst = inst_ok(f, one_cluster("odmh2", od("consecutive_5xx_errors", "1", "min_health_percent",
                                              "60", "max_ejection_percent", "100")));
    responses(f, inst, d, 0, 500, 3);
    assert_int_equal(until_of(d, 0), 0);
    fake_endpoint_set_healthy(fake_endpoint(d, 1), true);
    responses(f, inst, d, 0, 500, 1);
    assert_int_not_equal(until_of(d, 0), 0);
    fake_inst_free(inst);
}

static void test_ejection_time_multiplied(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "odm", "127.0.0.1:1", "127.0.0.1:2", NULL);
    fake_inst_t *inst =
        inst_ok(f, one_cluster("odm", od("consecutive_5xx_errors", "1", "base_ejection_time", "10s",
                                         "interval", "5s")));
    uint64_t now = T0;
    responses(f, inst, c, 0, 500, 1);
    assert_int_equal(until_of(c, 0), now + 10000);
    /* Failing right after it returns: twice as long, then three times. */
    now += 10000;
    fake_set_now_ms(now);
    responses(f, inst, c, 0, 500, 1);
    assert_int_equal(until_of(c, 0), now + 20000);
    now += 20000;
    fake_set_now_ms(now);
    responses(f, inst, c, 0, 500, 1);
    assert_int_equal(until_of(c, 0), now + 30000);
    /* Back for one full interval (5s): the multiplier decays 3 -> 2, so
     * the next ejection is 3 x 10s, not 4 x 10s. */
    now += 30000 + 5000;
    fake_set_now_ms(now);
    responses(f, inst, c, 0, 500, 1);
    assert_int_equal(until_of(c, 0), now + 30000);
    /* Back for a long time: the multiplier is gone. */
    now += 30000 + 60000;
    fake_set_now_ms(now);
    responses(f, inst, c, 0, 500, 1);
    assert_int_equal(until_of(c, 0), now + 10000);
    fake_inst_free(inst);

    /* The ejection time is capped at max(300s, base), as in Envoy. */
    slc_cluster_t *d = fake_cluster_add(f->gen, "odcap", "127.0.0.1:1", "127.0.0.1:2", NULL);
    inst = inst_ok(f, one_cluster("odcap", od("consecutive_5xx_errors", "1", "base_ejection_time",
                                              "2m", NULL, NULL)));
    uint64_t expect[] = {120000, 240000, 300000, 300000};
    for (size_t i = 0; i < 4; i++) {
        responses(f, inst, d, 0, 500, 1);
        assert_int_equal(until_of(d, 0), now + expect[i]);
        now += expect[i];
        fake_set_now_ms(now);
    }
    fake_inst_free(inst);
}

static void test_return_after_time(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "odret", "127.0.0.1:1", "127.0.0.1:2", NULL);
    fake_inst_t *inst =
        inst_ok(f, one_cluster("odret", od("consecutive_5xx_errors", "3", NULL, NULL, NULL, NULL)));
    responses(f, inst, c, 0, 500, 3);
    const slc_endpoint_t *e = fake_endpoint(c, 0);
    assert_false(fake_host_table.endpoint_healthy(e));
    assert_int_equal(metric(inst, "cb_ejections_active", "odret"), 1);
    /* In-flight requests failing while it is out do not extend it. */
    responses(f, inst, c, 0, 500, 2);
    fake_set_now_ms(T0 + 29999);
    assert_false(fake_host_table.endpoint_healthy(e));
    slc_action_t act;
    slc_req_t *r = select_on(f, inst, c, &act);
    finish(inst, r);
    assert_int_equal(metric(inst, "cb_ejections_active", "odret"), 1);
    fake_set_now_ms(T0 + 30000);
    assert_true(fake_host_table.endpoint_healthy(e));
    /* The gauge follows on the next stream to the cluster. */
    r = select_on(f, inst, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    finish(inst, r);
    assert_int_equal(metric(inst, "cb_ejections_active", "odret"), 0);
    /* Counters start from zero after the return. */
    responses(f, inst, c, 0, 500, 2);
    assert_int_equal(until_of(c, 0), 0);
    assert_int_equal(fake_endpoint_get_ejected_until(fake_endpoint(c, 0)), T0 + 30000);
    responses(f, inst, c, 0, 500, 1);
    assert_int_equal(until_of(c, 0), T0 + 30000 + 60000);
    fake_inst_free(inst);
}

static void test_state_survives_reload(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "odrl", "127.0.0.1:1", "127.0.0.1:2", NULL);
    fake_inst_t *inst = inst_ok(
        f, one_cluster("odrl", od("consecutive_5xx_errors", "2", "interval", "1m", NULL, NULL)));
    responses(f, inst, c, 0, 500, 2);
    assert_int_equal(until_of(c, 0), T0 + 30000);
    /* A run of failures half-way through the reload carries over. */
    responses(f, inst, c, 1, 500, 1);
    int64_t old_gauge = metric(inst, "cb_ejections_active", "odrl");
    fake_inst_free(inst);

    fake_inst_t *next = inst_ok(
        f, one_cluster("odrl", od("consecutive_5xx_errors", "2", "interval", "1m", NULL, NULL)));
    /* The core keeps a gauge series across reloads (same instance name
     * and label); the fake gives each instance its own, so here the old
     * and the new instance's values add up to the real series. The old
     * instance counted the ejection: the new one does not again ... */
    slc_action_t act;
    slc_req_t *r = select_on(f, next, c, &act);
    finish(next, r);
    assert_int_equal(old_gauge, 1);
    assert_int_equal(metric(next, "cb_ejections_active", "odrl"), 0);
    /* ... and whichever instance sees the return takes it out. */
    fake_set_now_ms(T0 + 30000);
    r = select_on(f, next, c, &act);
    finish(next, r);
    assert_int_equal(metric(next, "cb_ejections_active", "odrl"), -1);
    responses(f, next, c, 1, 500, 1);
    assert_int_equal(until_of(c, 1), T0 + 30000 + 30000);
    /* Endpoint 0's multiplier survived: its second ejection lasts 60s. */
    responses(f, next, c, 0, 500, 2);
    assert_int_equal(until_of(c, 0), 0); /* 1 of 2 already out (>= 10%) */
    fake_set_now_ms(T0 + 60000);
    responses(f, next, c, 0, 500, 2);
    assert_int_equal(until_of(c, 0), T0 + 60000 + 60000);
    fake_inst_free(next);
}

static void test_in_flight_survives_reload(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "mrrl", "127.0.0.1:1", NULL);
    fake_inst_t *old = inst_ok(f, one_cluster("mrrl", http_limits("http2_max_requests", "1")));
    slc_action_t act;
    slc_req_t *a = select_on(f, old, c, &act);
    assert_int_equal(act, SLC_CONTINUE);
    /* A reload (a new generation with its own cluster objects) while a is
     * in flight: the new instance still counts a. */
    fixture_t g2 = {fake_gen_new(), f->desc};
    slc_cluster_t *c2 = fake_cluster_add(g2.gen, "mrrl", "127.0.0.1:1", NULL);
    fake_inst_t *next = inst_ok(&g2, one_cluster("mrrl", http_limits("http2_max_requests", "1")));
    slc_req_t *b = select_on(&g2, next, c2, &act);
    assert_int_equal(act, SLC_STOP);
    assert_true(fake_req_flags(b) & SLC_RF_UO);
    finish(next, b);
    finish(old, a); /* completes on the instance it started on */
    fake_inst_free(old);
    b = select_on(&g2, next, c2, &act);
    assert_int_equal(act, SLC_CONTINUE);
    finish(next, b);
    fake_inst_free(next);
    fake_gen_free(g2.gen);
}

/* ---- configuration ------------------------------------------------------- */

static void test_deprecated_consecutive_errors(void **state)
{
    fixture_t *f = *state;
    slc_cluster_t *c = fake_cluster_add(f->gen, "oddep", "127.0.0.1:1", "127.0.0.1:2", NULL);
    slc_cfg_node_t *body = od("consecutive_errors", "3", NULL, NULL, NULL, NULL);
    fake_inst_t *inst = inst_ok(f, one_cluster("oddep", body));
    assert_int_equal(fake_diag_errors(inst->diag), 0);
    int w = fake_diag_find(inst->diag, "deprecated");
    assert_true(w >= 0);
    assert_false(fake_diag_is_error(inst->diag, (size_t)w));
    assert_ptr_equal(fake_diag_node(inst->diag, (size_t)w),
                     fake_cfg_find(body, "outlier_detection.consecutive_errors"));
    assert_non_null(strstr(fake_diag_msg(inst->diag, (size_t)w), "consecutive_gateway_errors"));
    /* As Istio: gateway errors only, the 5xx detector off. */
    responses(f, inst, c, 0, 500, 10);
    assert_int_equal(until_of(c, 0), 0);
    responses(f, inst, c, 0, 503, 3);
    assert_int_equal(until_of(c, 0), T0 + 30000);
    fake_inst_free(inst);

    /* With consecutive_gateway_errors set, the old key is ignored. */
    slc_cluster_t *d = fake_cluster_add(f->gen, "oddep2", "127.0.0.1:1", "127.0.0.1:2", NULL);
    inst =
        inst_ok(f, one_cluster("oddep2", od("consecutive_errors", "2", "consecutive_gateway_errors",
                                            "4", "consecutive_5xx_errors", "0")));
    w = fake_diag_find(inst->diag, "ignored");
    assert_true(w >= 0);
    responses(f, inst, d, 0, 502, 3);
    assert_int_equal(until_of(d, 0), 0);
    responses(f, inst, d, 0, 502, 1);
    assert_int_not_equal(until_of(d, 0), 0);
    fake_inst_free(inst);
}

static void test_unknown_cluster(void **state)
{
    fixture_t *f = *state;
    fake_cluster_add(f->gen, "known", "127.0.0.1:1", NULL);
    slc_cfg_node_t *bad = fake_empty_map();
    fake_inst_t *inst = fake_inst_new(
        f->desc, f->gen,
        fake_map("clusters", fake_map("known", fake_empty_map(), "nope", bad, NULL), NULL), 1);
    assert_int_equal(inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(inst->diag), 1);
    assert_ptr_equal(fake_diag_node(inst->diag, 0), bad);
    assert_string_equal(fake_diag_path(inst->diag, 0), "clusters.nope");
    assert_string_equal(fake_diag_msg(inst->diag, 0), "unknown cluster 'nope'");
    fake_inst_free(inst);

    /* clusters must be a map. */
    slc_cfg_node_t *seq = fake_seq(fake_scalar("known"), NULL);
    inst = fake_inst_new(f->desc, f->gen, fake_map("clusters", seq, NULL), 1);
    assert_int_equal(inst->status, SLC_EINVAL);
    assert_ptr_equal(fake_diag_node(inst->diag, 0), seq);
    fake_inst_free(inst);

    /* No config at all is valid and does nothing. */
    inst = inst_ok(f, NULL);
    fake_inst_free(inst);
}

static void test_unknown_keys_did_you_mean(void **state)
{
    fixture_t *f = *state;
    fake_cluster_add(f->gen, "typo", "127.0.0.1:1", NULL);
    /* Istio's camelCase spelling gets the snake_case hint, at every level,
     * and every error is reported in one pass. */
    slc_cfg_node_t *mc = fake_scalar("10");
    slc_cfg_node_t *cp = fake_map("http", fake_empty_map(), NULL);
    slc_cfg_node_t *cbk = fake_empty_map();
    slc_cfg_node_t *cfg =
        fake_map("clusters",
                 fake_map("typo",
                          fake_map("connection_pool",
                                   fake_map("tcp", fake_map("maxConnections", mc, NULL), NULL),
                                   "outlierDetection", cp, "circuitBreaker", cbk, NULL),
                          NULL),
                 NULL);
    fake_inst_t *inst = fake_inst_new(f->desc, f->gen, cfg, 1);
    assert_int_equal(inst->status, SLC_EINVAL);
    int i = fake_diag_find(inst->diag, "did you mean 'max_connections'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(inst->diag, (size_t)i), mc);
    i = fake_diag_find(inst->diag, "did you mean 'outlier_detection'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(inst->diag, (size_t)i), cp);
    i = fake_diag_find(inst->diag, "unknown key 'circuitBreaker'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(inst->diag, (size_t)i), cbk);
    fake_inst_free(inst);

    slc_cfg_node_t *c5 = fake_scalar("5");
    inst = fake_inst_new(
        f->desc, f->gen,
        one_cluster("typo", fake_map("outlier_detection",
                                     fake_map("consecutive5xxErrors", c5, NULL), NULL)),
        1);
    assert_int_equal(inst->status, SLC_EINVAL);
    i = fake_diag_find(inst->diag, "did you mean 'consecutive_5xx_errors'");
    assert_true(i >= 0);
    assert_ptr_equal(fake_diag_node(inst->diag, (size_t)i), c5);
    fake_inst_free(inst);
}

static void test_bad_values(void **state)
{
    fixture_t *f = *state;
    fake_cluster_add(f->gen, "bad", "127.0.0.1:1", NULL);
    slc_cfg_node_t *pct = fake_scalar("101");
    slc_cfg_node_t *iv = fake_scalar("soon");
    slc_cfg_node_t *ct = fake_scalar("0s");
    fake_inst_t *inst = fake_inst_new(
        f->desc, f->gen,
        one_cluster("bad",
                    fake_map("outlier_detection",
                             fake_map("max_ejection_percent", pct, "interval", iv, NULL),
                             "connection_pool",
                             fake_map("tcp", fake_map("connect_timeout", ct, NULL), NULL), NULL)),
        1);
    assert_int_equal(inst->status, SLC_EINVAL);
    assert_int_equal(fake_diag_errors(inst->diag), 3);
    bool seen[3] = {false, false, false};
    for (size_t k = 0; k < fake_diag_count(inst->diag); k++) {
        const slc_cfg_node_t *n = fake_diag_node(inst->diag, k);
        seen[0] = seen[0] || n == pct;
        seen[1] = seen[1] || n == iv;
        seen[2] = seen[2] || n == ct;
    }
    assert_true(seen[0] && seen[1] && seen[2]);
    fake_inst_free(inst);
}

static void test_descriptor(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(f->desc->abi_version, SLC_ABI_VERSION);
    assert_string_equal(f->desc->name, "circuit-breaker");
    assert_non_null(f->desc->on_upstream_select);
    assert_non_null(f->desc->on_upstream_result);
    assert_non_null(f->desc->on_complete);
    /* Metrics are per listed cluster. */
    fake_cluster_add(f->gen, "m1", "127.0.0.1:1", NULL);
    fake_cluster_add(f->gen, "m2", "127.0.0.1:1", NULL);
    fake_inst_t *inst = inst_ok(
        f, fake_map("clusters", fake_map("m1", fake_null(), "m2", fake_empty_map(), NULL), NULL));
    const char *names[] = {"cb_active_requests", "cb_overflow_total", "cb_ejections_total",
                           "cb_ejections_active"};
    slc_metric_kind_t kinds[] = {SLC_METRIC_GAUGE, SLC_METRIC_COUNTER, SLC_METRIC_COUNTER,
                                 SLC_METRIC_GAUGE};
    for (size_t i = 0; i < 4; i++) {
        char key[100];
        snprintf(key, sizeof(key), "%s{cluster=m2}", names[i]);
        slc_metric_t *m = fake_metric(inst->diag, key);
        assert_non_null(m);
        assert_int_equal(fake_metric_kind(m), kinds[i]);
        snprintf(key, sizeof(key), "%s{cluster=m1}", names[i]);
        assert_non_null(fake_metric(inst->diag, key));
    }
    fake_inst_free(inst);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_descriptor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_options, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pool_defaults_unlimited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_requests_overflow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_eject_after_consecutive_5xx, setup, teardown),
        cmocka_unit_test_setup_teardown(test_success_resets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_cluster_carries_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gateway_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_ejection_percent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_min_health_percent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ejection_time_multiplied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_return_after_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_state_survives_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_in_flight_survives_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deprecated_consecutive_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_cluster, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_keys_did_you_mean, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_values, setup, teardown),
    };
    return cmocka_run_group_tests_name("circuit-breaker", tests, NULL, NULL);
}
