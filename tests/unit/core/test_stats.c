/* Unit tests for core/stats.c: series slots, printf keys, adds, sums across
 * shards, the Prometheus rendering and the full-table overflow slot.
 *
 * Family descriptions are process-global and cannot be removed, so every
 * test uses family names of its own (prefix "t_<test>_"). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

/* render returns the exposition of |n| shards (malloc'd; free it). */
static char *render(stats_shard_t *const *shards, size_t n)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    stats_render(shards, n, f);
    fclose(f);
    return buf;
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* pos_of: offset of |needle| in |hay|; fails the test if absent. */
__attribute__((noinline)) static size_t pos_of(const char *hay, const char *needle)
{
    const char *p = strstr(hay, needle);
    if (!p) {
        print_message("--- exposition ---\n%s------------------\n", hay);
        fail_msg("\"%s\" not in the exposition", needle);
    }
    return (size_t)(p - hay);
}

static bool in_shard(const stats_shard_t *s, const stat_t *st)
{
    return st >= &s->slots[0] && st < &s->slots[STATS_SLOTS];
}

/* ---- slots ---------------------------------------------------------- */

static void test_get_creates_and_returns_same_slot(void **state)
{
    (void)state;
    stats_shard_t *s = stats_shard_new();
    stat_t *a = stats_get(s, "t_get_total{x=\"1\"}");
    assert_non_null(a);
    assert_true(in_shard(s, a));
    assert_int_equal(atomic_load(&a->value), 0);
    assert_string_equal(atomic_load(&a->key), "t_get_total{x=\"1\"}");
    assert_int_equal(s->used, 1);

    stat_t *again = stats_get(s, "t_get_total{x=\"1\"}");
    assert_ptr_equal(again, a);
    assert_int_equal(s->used, 1);

    stat_t *b = stats_get(s, "t_get_total{x=\"2\"}");
    assert_ptr_not_equal(b, a);
    assert_int_equal(s->used, 2);

    /* The key is copied: the caller's buffer may change afterwards. */
    char key[64];
    strcpy(key, "t_get_copy");
    stat_t *c = stats_get(s, key);
    strcpy(key, "t_get_other");
    assert_string_equal(atomic_load(&c->key), "t_get_copy");
    assert_ptr_equal(stats_get(s, "t_get_copy"), c);
    stats_shard_free(s);
}

static void test_getf_formats_key(void **state)
{
    (void)state;
    stats_shard_t *s = stats_shard_new();
    stat_t *a = stats_getf(s, "t_getf_total{code=\"%d\",listener=\"%s\"}", 200, "public");
    assert_string_equal(atomic_load(&a->key), "t_getf_total{code=\"200\",listener=\"public\"}");
    assert_ptr_equal(stats_get(s, "t_getf_total{code=\"200\",listener=\"public\"}"), a);
    assert_ptr_equal(stats_getf(s, "t_getf_total{code=\"%s\",listener=\"%s\"}", "200", "public"),
                     a);
    stats_shard_free(s);
}

static void test_add_and_inc(void **state)
{
    (void)state;
    stats_shard_t *s = stats_shard_new();
    stat_t *a = stats_get(s, "t_add_total");
    stat_inc(a);
    stat_inc(a);
    stat_add(a, 40);
    assert_int_equal(atomic_load(&a->value), 42);
    stat_add(a, -50); /* gauges go down */
    assert_int_equal(atomic_load(&a->value), -8);
    stat_t *b = stats_get(s, "t_add_other");
    stat_inc(b);
    assert_int_equal(atomic_load(&a->value), -8);
    assert_int_equal(atomic_load(&b->value), 1);
    stats_shard_free(s);
}

static void test_sum_across_shards(void **state)
{
    (void)state;
    stats_shard_t *sh[4] = {stats_shard_new(), NULL, stats_shard_new(), stats_shard_new()};
    stat_add(stats_get(sh[0], "t_sum_total"), 5);
    stat_add(stats_get(sh[2], "t_sum_total"), 7);
    stat_add(stats_get(sh[3], "t_sum_total{x=\"1\"}"), 100); /* another series */
    stat_add(stats_get(sh[3], "t_sum_total"), -2);
    assert_int_equal(stats_sum(sh, 4, "t_sum_total"), 10);
    assert_int_equal(stats_sum(sh, 4, "t_sum_total{x=\"1\"}"), 100);
    assert_int_equal(stats_sum(sh, 4, "t_sum_absent"), 0);
    assert_int_equal(stats_sum(sh, 1, "t_sum_total"), 5); /* only the first n */
    for (int i = 0; i < 4; i++)
        stats_shard_free(sh[i]);
}

/* ---- rendering -------------------------------------------------------- */

static void test_render_help_type_once_and_sum(void **state)
{
    (void)state;
    stats_describe("t_r_requests_total", "counter", "Requests seen.");
    stats_describe("t_r_active", "gauge", "Active things.");
    /* A second description of the same family is ignored. */
    stats_describe("t_r_active", "counter", "Something else.");

    stats_shard_t *sh[2] = {stats_shard_new(), stats_shard_new()};
    stat_add(stats_get(sh[0], "t_r_requests_total{code=\"2xx\"}"), 3);
    stat_add(stats_get(sh[1], "t_r_requests_total{code=\"2xx\"}"), 4);
    stat_add(stats_get(sh[1], "t_r_requests_total{code=\"5xx\"}"), 1);
    stat_add(stats_get(sh[0], "t_r_active"), 2);
    stat_add(stats_get(sh[1], "t_r_active"), 3);
    char *out = render(sh, 2);

    assert_int_equal(count_of(out, "# HELP t_r_requests_total Requests seen.\n"), 1);
    assert_int_equal(count_of(out, "# TYPE t_r_requests_total counter\n"), 1);
    assert_int_equal(count_of(out, "# HELP t_r_active Active things.\n"), 1);
    assert_int_equal(count_of(out, "# TYPE t_r_active gauge\n"), 1);
    assert_int_equal(count_of(out, "Something else"), 0);

    /* Summed over shards, one line per series. */
    assert_int_equal(count_of(out, "\nt_r_requests_total{code=\"2xx\"} 7\n"), 1);
    assert_int_equal(count_of(out, "\nt_r_requests_total{code=\"5xx\"} 1\n"), 1);
    assert_int_equal(count_of(out, "\nt_r_active 5\n"), 1);
    assert_int_equal(count_of(out, "t_r_requests_total{code=\"2xx\"}"), 1);

    /* HELP, then TYPE, then the family's series. */
    size_t help = pos_of(out, "# HELP t_r_requests_total");
    size_t type = pos_of(out, "# TYPE t_r_requests_total");
    size_t s2 = pos_of(out, "t_r_requests_total{code=\"2xx\"} 7");
    size_t s5 = pos_of(out, "t_r_requests_total{code=\"5xx\"} 1");
    assert_true(help < type);
    assert_true(type < s2);
    assert_true(s2 < s5);
    assert_true(pos_of(out, "# TYPE t_r_active gauge") < pos_of(out, "\nt_r_active 5"));

    /* The whole exposition ends with a newline, no blank lines. */
    size_t len = strlen(out);
    assert_true(len > 0);
    assert_int_equal(out[len - 1], '\n');
    assert_null(strstr(out, "\n\n"));
    free(out);
    stats_shard_free(sh[0]);
    stats_shard_free(sh[1]);
}

static void test_render_described_family_without_series(void **state)
{
    (void)state;
    stats_describe("t_empty_total", "counter", "Never incremented.");
    stats_shard_t *sh[1] = {stats_shard_new()};
    char *out = render(sh, 1);
    assert_int_equal(count_of(out, "# HELP t_empty_total Never incremented.\n"), 1);
    assert_int_equal(count_of(out, "# TYPE t_empty_total counter\n"), 1);
    assert_int_equal(count_of(out, "\nt_empty_total "), 0);
    free(out);

    /* Once it has a series, HELP/TYPE still appear exactly once. */
    stat_inc(stats_get(sh[0], "t_empty_total{a=\"b\"}"));
    out = render(sh, 1);
    assert_int_equal(count_of(out, "# HELP t_empty_total "), 1);
    assert_int_equal(count_of(out, "# TYPE t_empty_total "), 1);
    assert_true(pos_of(out, "# TYPE t_empty_total counter\n") <
                pos_of(out, "t_empty_total{a=\"b\"} 1\n"));
    free(out);
    stats_shard_free(sh[0]);
}

static void test_render_series_sorted(void **state)
{
    (void)state;
    stats_describe("t_sort_total", "counter", "Sorted.");
    stats_shard_t *sh[2] = {stats_shard_new(), stats_shard_new()};
    /* Inserted in scrambled order, over two shards. */
    static const char *const keys[] = {
        "t_sort_total{k=\"m\"}", "t_sort_total{k=\"c\"}", "t_sort_total{k=\"x\"}",
        "t_sort_total{k=\"a\"}", "t_sort_total{k=\"q\"}",
    };
    for (size_t i = 0; i < 5; i++)
        stat_inc(stats_get(sh[i % 2], keys[i]));
    char *out = render(sh, 2);
    size_t a = pos_of(out, "t_sort_total{k=\"a\"} 1");
    size_t c = pos_of(out, "t_sort_total{k=\"c\"} 1");
    size_t m = pos_of(out, "t_sort_total{k=\"m\"} 1");
    size_t q = pos_of(out, "t_sort_total{k=\"q\"} 1");
    size_t x = pos_of(out, "t_sort_total{k=\"x\"} 1");
    assert_true(a < c && c < m && m < q && q < x);
    /* Undescribed series are still exported (without HELP/TYPE). */
    stat_inc(stats_get(sh[0], "t_sort_undescribed"));
    free(out);
    out = render(sh, 2);
    assert_int_equal(count_of(out, "\nt_sort_undescribed 1\n"), 1);
    assert_int_equal(count_of(out, "# TYPE t_sort_undescribed"), 0);
    free(out);
    stats_shard_free(sh[0]);
    stats_shard_free(sh[1]);
}

static void test_render_null_shards_skipped(void **state)
{
    (void)state;
    stats_shard_t *sh[3] = {NULL, stats_shard_new(), NULL};
    stat_add(stats_get(sh[1], "t_null_total"), 9);
    char *out = render(sh, 3);
    assert_int_equal(count_of(out, "\nt_null_total 9\n"), 1);
    free(out);
    stats_shard_free(sh[1]);
}

/* BUG (latent, core/stats.c stats_render, lines 178-195): a family that has
 * both an unlabelled series and labelled ones is split when another family
 * sorts between them ("t_split" < "t_split_x" < "t_split{...}"), so its
 * HELP/TYPE block is printed twice and its samples are not contiguous, which
 * Prometheus rejects ("second TYPE line for metric name"). No core metric
 * mixes the two forms today. Expected: one TYPE line per family. */
static void test_render_family_split_by_prefix_BUG(void **state)
{
    (void)state;
    stats_describe("t_split", "gauge", "Split family.");
    stats_describe("t_split_x", "gauge", "Neighbour.");
    stats_shard_t *sh[1] = {stats_shard_new()};
    stat_inc(stats_get(sh[0], "t_split"));
    stat_inc(stats_get(sh[0], "t_split_x"));
    stat_inc(stats_get(sh[0], "t_split{a=\"1\"}"));
    char *out = render(sh, 1);
    size_t n = count_of(out, "# TYPE t_split gauge\n");
    if (n != 1)
        print_message("--- exposition ---\n%s------------------\n", out);
    free(out);
    stats_shard_free(sh[0]);
    assert_int_equal(n, 1);
}

/* ---- overflow ----------------------------------------------------------- */

static void test_table_full_overflow_slot(void **state)
{
    (void)state;
    stats_shard_t *s = stats_shard_new();
    const size_t cap = STATS_SLOTS * 3 / 4;
    stat_t *first = NULL, *last = NULL;
    for (size_t i = 0; i < cap; i++) {
        stat_t *st = stats_getf(s, "t_full_total{i=\"%zu\"}", i);
        assert_true(in_shard(s, st));
        if (i == 0)
            first = st;
        last = st;
        stat_inc(st);
    }
    assert_int_equal(s->used, cap);

    /* Past the limit: a shared slot outside the table, the same for every
     * further series, and nothing is inserted. */
    stat_t *o1 = stats_get(s, "t_full_total{i=\"overflow1\"}");
    stat_t *o2 = stats_get(s, "t_full_total{i=\"overflow2\"}");
    assert_non_null(o1);
    assert_false(in_shard(s, o1));
    assert_ptr_equal(o1, o2);
    assert_int_equal(s->used, cap);
    stat_add(o1, 1000); /* writable, harmless */

    /* Existing series are still found. */
    assert_ptr_equal(stats_getf(s, "t_full_total{i=\"%d\"}", 0), first);
    assert_ptr_equal(stats_getf(s, "t_full_total{i=\"%zu\"}", cap - 1), last);

    /* The overflow slot is not exported and not summed. */
    stats_shard_t *sh[1] = {s};
    assert_int_equal(stats_sum(sh, 1, "t_full_total{i=\"overflow1\"}"), 0);
    char *out = render(sh, 1);
    assert_null(strstr(out, "overflow"));
    assert_int_equal(count_of(out, "t_full_total{i="), cap);
    free(out);
    stats_shard_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_creates_and_returns_same_slot),
        cmocka_unit_test(test_getf_formats_key),
        cmocka_unit_test(test_add_and_inc),
        cmocka_unit_test(test_sum_across_shards),
        cmocka_unit_test(test_render_help_type_once_and_sum),
        cmocka_unit_test(test_render_described_family_without_series),
        cmocka_unit_test(test_render_series_sorted),
        cmocka_unit_test(test_render_null_shards_skipped),
        cmocka_unit_test(test_render_family_split_by_prefix_BUG),
        cmocka_unit_test(test_table_full_overflow_slot),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
