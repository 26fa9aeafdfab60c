/* Unit tests for core/hostapi.c: the versioned structs it copies
 * (slc_retry_policy_t of 1.1 and of 1.3).
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

#include "proxy.h"

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
    assert_true(retry_status_listed(c, 503));
    assert_true(retry_status_listed(c, 429));
    assert_false(retry_status_listed(c, 502));

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
    assert_true(retry_status_listed(c, 500));
    assert_true(retry_status_listed(c, 511));
    assert_false(retry_status_listed(c, 404));

    /* Through the host entry, as a filter calls it. */
    assert_int_equal(host_table.route_set_retry(f->r, &in), SLC_OK);
    assert_non_null(f->r->retry);
    assert_int_equal(f->r->retry->nstatuses, 12);
    assert_int_equal(f->r->retry->statuses[0], 0); /* copied after the memset */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_retry_policy_old_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_policy_appendable_form, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
