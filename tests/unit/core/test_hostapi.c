/* Unit tests for core/hostapi.c: the contracts host.h states that the core
 * enforces itself (phases, changes during header_iterate) and the versioned
 * structs it copies (slc_retry_policy_t of 1.1 and of 1.3).
 *
 * A stream here is a zeroed slc_req_t with an arena and a state: enough for
 * the entries under test, which touch nothing else. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "coretypes.h"
#include "hostapi.h"

#include <sluice/util.h>

typedef struct fixture {
    slc_req_t *r;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    f->r = calloc(1, sizeof(*f->r));
    if (!f || !f->r)
        return -1;
    arena_init(&f->r->arena, NULL, 0);
    f->r->state = ST_REQ_FILTERS;
    f->r->phase = PH_REQ_HEADERS;
    f->r->in_chain = true;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    arena_reset(&f->r->arena);
    free(f->r);
    free(f);
    return 0;
}

/* ---- header_iterate ----------------------------------------------------- */

typedef struct walk {
    slc_req_t *r;
    slc_hdrs_t which; /* the block the callback tries to change */
    int seen;
    slc_status_t set, add, remove, pseudo;
} walk_t;

static bool change_during_walk(void *arg, slc_str_t name, slc_str_t value)
{
    walk_t *w = arg;
    (void)name;
    (void)value;
    w->seen++;
    w->set = host_table.header_set(w->r, w->which, SLC_STR("x-new"), SLC_STR("1"));
    w->add = host_table.header_add(w->r, w->which, SLC_STR("x-new"), SLC_STR("2"));
    w->remove = host_table.header_remove(w->r, w->which, SLC_STR("a"));
    w->pseudo = host_table.set_pseudo(w->r, SLC_PSEUDO_AUTHORITY, SLC_STR("example.com"));
    return true;
}

/* Changing the block being walked would grow or shift it under the walk (a
 * callback adding one header per call never ends): refused with SLC_ESTATE.
 * The other block may change, and after the walk everything may again. */
static void test_no_changes_during_iterate(void **state)
{
    fixture_t *f = *state;
    slc_req_t *r = f->r;
    assert_int_equal(host_table.header_add(r, SLC_REQUEST_HEADERS, SLC_STR("a"), SLC_STR("1")),
                     SLC_OK);
    assert_int_equal(host_table.header_add(r, SLC_REQUEST_HEADERS, SLC_STR("b"), SLC_STR("2")),
                     SLC_OK);

    walk_t w = {.r = r, .which = SLC_REQUEST_HEADERS};
    host_table.header_iterate(r, SLC_REQUEST_HEADERS, change_during_walk, &w);
    assert_int_equal(w.seen, 2);
    assert_int_equal(w.set, SLC_ESTATE);
    assert_int_equal(w.add, SLC_ESTATE);
    assert_int_equal(w.remove, SLC_ESTATE);
    assert_int_equal(w.pseudo, SLC_ESTATE); /* the authority is the Host header */
    slc_str_t v;
    assert_int_equal(host_table.header_get(r, SLC_REQUEST_HEADERS, SLC_STR("x-new"), &v),
                     SLC_ENOENT);

    /* Walking requests, changing responses: allowed. */
    w = (walk_t){.r = r, .which = SLC_RESPONSE_HEADERS};
    host_table.header_iterate(r, SLC_REQUEST_HEADERS, change_during_walk, &w);
    assert_int_equal(w.set, SLC_OK);
    assert_int_equal(w.add, SLC_OK);
    assert_int_equal(w.remove, SLC_ENOENT);

    /* After the walk the block is writable again. */
    assert_int_equal(host_table.header_set(r, SLC_REQUEST_HEADERS, SLC_STR("x-new"), SLC_STR("3")),
                     SLC_OK);
    assert_int_equal(host_table.set_pseudo(r, SLC_PSEUDO_AUTHORITY, SLC_STR("example.com")),
                     SLC_OK);
    assert_int_equal(r->iterating, 0);
}

/* ---- phases ------------------------------------------------------------- */

static void test_set_response_status_only_in_response_filters(void **state)
{
    fixture_t *f = *state;
    slc_req_t *r = f->r;
    r->status = 0;
    assert_int_equal(host_table.set_response_status(r, 418), SLC_ESTATE); /* request phase */
    r->state = ST_UPSTREAM;
    assert_int_equal(host_table.set_response_status(r, 418), SLC_ESTATE);
    r->state = ST_RESP_FILTERS;
    r->status = 200;
    assert_int_equal(host_table.set_response_status(r, 99), SLC_EINVAL);
    assert_int_equal(host_table.set_response_status(r, 418), SLC_OK);
    assert_int_equal(host_table.response_status(r), 418);
    r->resp_head_sent = true;
    assert_int_equal(host_table.set_response_status(r, 500), SLC_ESTATE);
    assert_int_equal(host_table.response_status(r), 418);
}

static void test_route_set_timeout_ignored_after_request_filters(void **state)
{
    fixture_t *f = *state;
    slc_req_t *r = f->r;
    host_table.route_set_timeout(r, 1500);
    assert_int_equal(r->timeout_ms, 1500);
    r->state = ST_UPSTREAM; /* the timer is armed from here on */
    host_table.route_set_timeout(r, 10);
    assert_int_equal(r->timeout_ms, 1500);
}

static void test_set_pseudo_only_in_request_filters(void **state)
{
    fixture_t *f = *state;
    slc_req_t *r = f->r;
    assert_int_equal(host_table.set_pseudo(r, SLC_PSEUDO_PATH, SLC_STR("/x")), SLC_OK);
    r->state = ST_UPSTREAM;
    assert_int_equal(host_table.set_pseudo(r, SLC_PSEUDO_PATH, SLC_STR("/y")), SLC_ESTATE);
    assert_int_equal(host_table.pseudo(r, SLC_PSEUDO_PATH).len, 2);
}

static void test_upstream_set_endpoint_only_in_upstream_select(void **state)
{
    fixture_t *f = *state;
    slc_req_t *r = f->r;
    slc_cluster_t c = {.name = "c"};
    slc_endpoint_t eps[1] = {{.cluster = &c}};
    c.eps = eps;
    c.neps = 1;
    r->cluster = &c;

    r->phase = PH_REQ_HEADERS;
    assert_int_equal(host_table.upstream_set_endpoint(r, &eps[0]), SLC_ESTATE);
    r->phase = PH_UP_SELECT; /* running */
    assert_int_equal(host_table.upstream_set_endpoint(r, &eps[0]), SLC_OK);
    assert_ptr_equal(r->ep, &eps[0]);
    r->in_chain = false; /* paused in upstream_select: still its round */
    r->paused = true;
    assert_int_equal(host_table.upstream_set_endpoint(r, &eps[0]), SLC_OK);
    r->paused = false; /* the round is over: the attempt holds r->ep */
    r->ep = NULL;
    assert_int_equal(host_table.upstream_set_endpoint(r, &eps[0]), SLC_ESTATE);
    assert_null(r->ep);
}

/* ---- retry policies: the 1.1 form and the 1.3 form ---------------------- */

/* A filter built against 1.1/1.2: its struct stops after the fixed array, so
 * whatever follows in memory must not be read as statuses. */
static void test_retry_policy_old_layout(void **state)
{
    fixture_t *f = *state;
    slc_retry_policy_t in;
    memset(&in, 0xa5, sizeof(in)); /* "the caller's memory beyond its struct" */
    in.struct_size = offsetof(slc_retry_policy_t, statuses);
    in.max_retries = 2;
    in.retry_on = SLC_RETRY_RETRIABLE_STATUS;
    in.per_try_timeout_ms = 0;
    in.backoff_base_ms = 25;
    memset(in.retriable_statuses, 0, sizeof(in.retriable_statuses));
    in.retriable_statuses[0] = 503;
    in.retriable_statuses[1] = 429;
    in.nretriable_statuses = 2;
    slc_retry_policy_t *c;
    assert_int_equal(retry_policy_copy(&f->r->arena, &in, &c), SLC_OK);
    assert_int_equal(c->struct_size, sizeof(*c));
    assert_int_equal(c->max_retries, 2);
    assert_int_equal(c->nstatuses, 2);
    assert_true(slcu_retry_covers(c, SLC_ATTEMPT_RESPONSE, 503));
    assert_true(slcu_retry_covers(c, SLC_ATTEMPT_RESPONSE, 429));
    assert_false(slcu_retry_covers(c, SLC_ATTEMPT_RESPONSE, 502));

    /* struct_size 0 (never set by an old filter) means the 1.1 layout too,
     * and a count past the fixed array is clamped to it. */
    in.struct_size = 0;
    in.nretriable_statuses = 100;
    assert_int_equal(retry_policy_copy(&f->r->arena, &in, &c), SLC_OK);
    assert_int_equal(c->nstatuses, 8);
}

/* A 1.3 filter: any number of statuses, copied (the caller's array may
 * change or go away after the call). */
static void test_retry_policy_appendable_form(void **state)
{
    fixture_t *f = *state;
    uint16_t many[12];
    for (int i = 0; i < 12; i++)
        many[i] = (uint16_t)(500 + i);
    slc_retry_policy_t in = {
        .struct_size = sizeof(in),
        .max_retries = 1,
        .retry_on = SLC_RETRY_RETRIABLE_STATUS,
        .retriable_statuses = {404}, /* ignored: |statuses| wins */
        .nretriable_statuses = 1,
        .statuses = many,
        .nstatuses = 12,
    };
    slc_retry_policy_t *c;
    assert_int_equal(retry_policy_copy(&f->r->arena, &in, &c), SLC_OK);
    memset(many, 0, sizeof(many));
    assert_int_equal(c->nstatuses, 12);
    assert_ptr_not_equal(c->statuses, many);
    assert_true(slcu_retry_covers(c, SLC_ATTEMPT_RESPONSE, 500));
    assert_true(slcu_retry_covers(c, SLC_ATTEMPT_RESPONSE, 511));
    assert_false(slcu_retry_covers(c, SLC_ATTEMPT_RESPONSE, 404));

    /* Through the host entry, as a filter calls it. */
    assert_int_equal(host_table.route_set_retry(f->r, &in), SLC_OK);
    assert_non_null(f->r->retry);
    assert_int_equal(f->r->retry->nstatuses, 12);
    assert_int_equal(f->r->retry->statuses[0], 0); /* copied after the memset */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_no_changes_during_iterate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_set_response_status_only_in_response_filters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_route_set_timeout_ignored_after_request_filters, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_set_pseudo_only_in_request_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upstream_set_endpoint_only_in_upstream_select, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_retry_policy_old_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_policy_appendable_form, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
