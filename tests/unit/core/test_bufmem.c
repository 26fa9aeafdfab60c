/* Unit tests for core/bufmem.c: which sizes it takes, reuse through the
 * thread's cache, realloc across the malloc boundary, and the trim that
 * gives back the pages of blocks an interval did not need. The range is
 * reserved small (1 MiB per class) so that running out is tested too. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bufmem.h"

#define SPAN (1u << 20)

static int setup(void **state)
{
    (void)state;
    return bufmem_init(SPAN) ? 0 : -1;
}

/* resident: is the page holding |p| in memory? */
static bool resident(const void *p)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char v = 0;
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)(pg - 1));
    assert_int_equal(mincore(page, pg, &v), 0);
    return v & 1;
}

/* drain_caches: trim everything this thread holds, so tests start clean. */
static void drain_caches(void)
{
    bufmem_trim(0);
    bufmem_trim(0);
}

static void test_sizes_taken_and_left_to_malloc(void **state)
{
    (void)state;
    static const size_t ours[] = {1, 16, BUFMEM_TINY, BUFMEM_MIN, 4096, 4097, 16384, BUFMEM_MAX};
    static const size_t theirs[] = {BUFMEM_TINY + 1, 200, BUFMEM_MIN - 1, BUFMEM_MAX + 1, 1 << 20};
    for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
        char *p = bufmem_malloc(ours[i]);
        assert_non_null(p);
        assert_true(bufmem_owns(p));
        memset(p, 0x5a, ours[i]); /* the whole size is usable */
        bufmem_free(p);
    }
    for (size_t i = 0; i < sizeof(theirs) / sizeof(theirs[0]); i++) {
        char *p = bufmem_malloc(theirs[i]);
        assert_non_null(p);
        assert_false(bufmem_owns(p));
        memset(p, 0x5a, theirs[i]);
        bufmem_free(p); /* goes back to free(): LeakSanitizer checks */
    }
    drain_caches();
}

static void test_blocks_page_aligned_and_distinct(void **state)
{
    (void)state;
    char *p[16];
    for (int i = 0; i < 16; i++) {
        p[i] = bufmem_malloc(1024);
        assert_int_equal((uintptr_t)p[i] % 4096, 0);
        memset(p[i], i, 1024);
    }
    for (int i = 0; i < 16; i++) {
        for (int j = 0; j < 1024; j++)
            assert_int_equal(p[i][j], i);
        for (int j = i + 1; j < 16; j++)
            assert_true(p[i] + 4096 <= p[j] || p[j] + 4096 <= p[i]);
    }
    for (int i = 0; i < 16; i++)
        bufmem_free(p[i]);
    drain_caches();
}

static void test_freed_block_reused_lifo(void **state)
{
    (void)state;
    void *a = bufmem_malloc(8000);
    void *b = bufmem_malloc(8000);
    bufmem_free(a);
    bufmem_free(b);
    /* the one freed last comes back first: its pages are warm */
    assert_ptr_equal(bufmem_malloc(5000), b);
    assert_ptr_equal(bufmem_malloc(8192), a);
    bufmem_stats_t st;
    bufmem_stats(&st);
    assert_int_equal(st.hot[1], 0);
    bufmem_free(a);
    bufmem_free(b);
    bufmem_stats(&st);
    assert_int_equal(st.hot[1], 2);
    drain_caches();
}

static void test_realloc_keeps_bytes_across_the_boundary(void **state)
{
    (void)state;
    /* from malloc into a block */
    char *p = bufmem_realloc(NULL, 100);
    assert_false(bufmem_owns(p));
    memset(p, 'a', 100);
    p = bufmem_realloc(p, 3000);
    assert_true(bufmem_owns(p));
    for (int i = 0; i < 100; i++)
        assert_int_equal(p[i], 'a');
    /* within its block: same pointer */
    assert_ptr_equal(bufmem_realloc(p, 4096), p);
    /* to a bigger class */
    memset(p, 'b', 4096);
    p = bufmem_realloc(p, 20000);
    assert_true(bufmem_owns(p));
    for (int i = 0; i < 4096; i++)
        assert_int_equal(p[i], 'b');
    /* past the largest class: back to malloc */
    p = bufmem_realloc(p, BUFMEM_MAX * 4);
    assert_false(bufmem_owns(p));
    for (int i = 0; i < 4096; i++)
        assert_int_equal(p[i], 'b');
    assert_null(bufmem_realloc(p, 0)); /* frees */
    /* tiny ones */
    char *t = bufmem_realloc(NULL, 8);
    assert_true(bufmem_owns(t));
    strcpy(t, "tiny");
    t = bufmem_realloc(t, 200);
    assert_false(bufmem_owns(t));
    assert_string_equal(t, "tiny");
    bufmem_free(t);
    drain_caches();
}

/* The trim gives back the pages of blocks that stayed free for a whole
 * interval, keeps |keep| of them warm, and a block given back is still
 * handed out again (zeroed by the kernel). */
static void test_trim_gives_back_unused_blocks(void **state)
{
    (void)state;
    drain_caches();
    enum { N = 20 };
    char *p[N];
    for (int i = 0; i < N; i++) {
        p[i] = bufmem_malloc(4096);
        memset(p[i], 0x77, 4096);
    }
    for (int i = 0; i < N; i++)
        bufmem_free(p[i]);
    bufmem_stats_t st;
    bufmem_stats(&st);
    assert_int_equal(st.hot[0], N);
    /* The interval that just ended used them all: nothing goes yet. */
    assert_int_equal(bufmem_trim(2), 0);
    for (int i = 0; i < N; i++)
        assert_true(resident(p[i]));
    /* A light load: one block at a time. */
    for (int r = 0; r < 3; r++)
        bufmem_free(bufmem_malloc(2000));
    size_t given = bufmem_trim(2);
    assert_int_equal(given, (N - 2) * 4096);
    bufmem_stats(&st);
    assert_int_equal(st.hot[0], 2);
    assert_int_equal(st.cold[0], N - 2);
    int gone = 0;
    for (int i = 0; i < N; i++)
        gone += !resident(p[i]);
    assert_int_equal(gone, N - 2);
    /* Taking them all again: the warm ones first, then the cold ones,
     * which read as zero. */
    char *q[N];
    int zeroed = 0;
    for (int i = 0; i < N; i++) {
        q[i] = bufmem_malloc(4096);
        assert_non_null(q[i]);
        zeroed += q[i][100] == 0;
    }
    assert_int_equal(zeroed, N - 2);
    bufmem_stats(&st);
    assert_int_equal(st.hot[0], 0);
    assert_int_equal(st.cold[0], 0);
    for (int i = 0; i < N; i++)
        bufmem_free(q[i]);
    drain_caches();
}

/* Past its range a class falls back to malloc instead of failing. */
static void test_range_used_up_falls_back_to_malloc(void **state)
{
    (void)state;
    enum { N = SPAN / BUFMEM_MAX + 4 };
    void **p = calloc(N, sizeof(*p));
    assert_non_null(p);
    size_t ours = 0;
    for (int i = 0; i < N; i++) {
        p[i] = bufmem_malloc(BUFMEM_MAX);
        assert_non_null(p[i]);
        ours += bufmem_owns(p[i]);
    }
    assert_true(ours <= SPAN / BUFMEM_MAX);
    assert_true(ours < N);
    for (int i = 0; i < N; i++)
        bufmem_free(p[i]);
    free(p);
    drain_caches();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sizes_taken_and_left_to_malloc),
        cmocka_unit_test(test_blocks_page_aligned_and_distinct),
        cmocka_unit_test(test_freed_block_reused_lifo),
        cmocka_unit_test(test_realloc_keeps_bytes_across_the_boundary),
        cmocka_unit_test(test_trim_gives_back_unused_blocks),
        cmocka_unit_test(test_range_used_up_falls_back_to_malloc),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
