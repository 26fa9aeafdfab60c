#include "bufmem.h"

#include <event2/event.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define BUFMEM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BUFMEM_ASAN 1
#endif
#endif

#define DEFAULT_CLASS_BYTES ((size_t)1 << 30)

typedef struct blk {
    struct blk *next;
} blk_t;

/* The reserved range: class c is [base + c*span, base + (c+1)*span), carved
 * upwards by next[c]. Set once by bufmem_init before any other thread
 * allocates; read-only after. */
static char *g_base;
static size_t g_span;
static _Atomic size_t g_next[BUFMEM_NCLASS + 1];

/* A thread's free blocks. Hot ones keep their pages and are linked through
 * their first bytes; cold ones gave their pages back (they read as zero),
 * so their addresses are kept in an array instead. */
typedef struct cache {
    blk_t *hot[BUFMEM_NCLASS + 1]; /* [BUFMEM_NCLASS]: the tiny slots */
    size_t nhot[BUFMEM_NCLASS + 1];
    size_t low[BUFMEM_NCLASS + 1]; /* fewest hot blocks since the last trim */
    void **cold[BUFMEM_NCLASS];
    size_t ncold[BUFMEM_NCLASS], capcold[BUFMEM_NCLASS];
} cache_t;

static __thread cache_t tc;

static size_t class_size(int c)
{
    return c == BUFMEM_NCLASS ? BUFMEM_TINY : (size_t)BUFMEM_CLASS0 << c;
}

static int class_of(size_t n)
{
    int c = 0;
    while (class_size(c) < n)
        c++;
    return c;
}

bool bufmem_owns(const void *p)
{
    const char *q = p;
    return g_base && q >= g_base && q < g_base + g_span * (BUFMEM_NCLASS + 1);
}

bool bufmem_init(size_t class_bytes)
{
    if (g_base)
        return true;
    size_t span = class_bytes ? class_bytes : DEFAULT_CLASS_BYTES;
    span = (span + BUFMEM_MAX - 1) & ~(size_t)(BUFMEM_MAX - 1);
    /* Address space only: MAP_NORESERVE commits nothing, a page costs
     * memory once written. No huge pages: a 2 MiB page behind a 4 KiB
     * block would make every block cost 2 MiB. */
    size_t len = span * (BUFMEM_NCLASS + 1);
    void *m =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return false;
    madvise(m, len, MADV_NOHUGEPAGE);
    g_span = span;
    g_base = m;
    return true;
}

bool bufmem_install(void)
{
#ifdef BUFMEM_ASAN
    return false;
#else
    /* The size classes are whole 4 KiB pages; a trim's madvise on a larger
     * page would also discard the neighbours sharing it. */
    if (sysconf(_SC_PAGESIZE) != BUFMEM_CLASS0 || !bufmem_init(0))
        return false;
    event_set_mem_functions(bufmem_malloc, bufmem_realloc, bufmem_free);
    return true;
#endif
}

void *bufmem_malloc(size_t n)
{
    if (!g_base || (n > BUFMEM_TINY && n < BUFMEM_MIN) || n > BUFMEM_MAX)
        return malloc(n);
    int c = n <= BUFMEM_TINY ? BUFMEM_NCLASS : class_of(n);
    cache_t *t = &tc;
    blk_t *b = t->hot[c];
    if (b) {
        t->hot[c] = b->next;
        if (--t->nhot[c] < t->low[c])
            t->low[c] = t->nhot[c];
        return b;
    }
    if (c < BUFMEM_NCLASS && t->ncold[c])
        return t->cold[c][--t->ncold[c]]; /* faults in zeroed pages */
    size_t sz = class_size(c);
    size_t off = atomic_fetch_add_explicit(&g_next[c], sz, memory_order_relaxed);
    if (off >= g_span || g_span - off < sz)
        return malloc(n); /* the class's range is used up */
    return g_base + (size_t)c * g_span + off;
}

void bufmem_free(void *p)
{
    if (!bufmem_owns(p)) {
        free(p);
        return;
    }
    int c = (int)((size_t)((char *)p - g_base) / g_span);
    cache_t *t = &tc;
    blk_t *b = p;
    b->next = t->hot[c];
    t->hot[c] = b;
    t->nhot[c]++;
}

void *bufmem_realloc(void *p, size_t n)
{
    if (!p)
        return bufmem_malloc(n);
    if (n == 0) {
        bufmem_free(p);
        return NULL;
    }
    size_t have;
    if (bufmem_owns(p)) {
        have = class_size((int)((size_t)((char *)p - g_base) / g_span));
        if (n <= have)
            return p;
    } else {
        if (!g_base || (n > BUFMEM_TINY && n < BUFMEM_MIN) || n > BUFMEM_MAX)
            return realloc(p, n);
        have = malloc_usable_size(p);
    }
    void *q = bufmem_malloc(n);
    if (!q)
        return NULL;
    memcpy(q, p, have < n ? have : n);
    bufmem_free(p);
    return q;
}

void bufmem_stats(bufmem_stats_t *st)
{
    for (int c = 0; c < BUFMEM_NCLASS; c++) {
        st->hot[c] = tc.nhot[c];
        st->cold[c] = tc.ncold[c];
    }
}

size_t bufmem_trim(size_t keep)
{
    cache_t *t = &tc;
    size_t given = 0;
    for (int c = 0; c < BUFMEM_NCLASS; c++) {
        /* low[c] blocks stayed in the cache through the whole interval:
         * the load since the last trim never needed them. */
        size_t n = t->low[c];
        if (t->nhot[c] - n < keep)
            n = t->nhot[c] > keep ? t->nhot[c] - keep : 0;
        if (t->ncold[c] + n > t->capcold[c]) {
            size_t cap = t->capcold[c] ? t->capcold[c] : 64;
            while (cap < t->ncold[c] + n)
                cap *= 2;
            void **a = realloc(t->cold[c], cap * sizeof(*a));
            if (a) {
                t->cold[c] = a;
                t->capcold[c] = cap;
            } else {
                n = t->capcold[c] - t->ncold[c]; /* give back what fits */
            }
        }
        /* The list is LIFO: its head holds the blocks used last (warm in
         * the caches), so the ones past position nhot - n go. */
        blk_t **pp = &t->hot[c];
        for (size_t i = 0; i < t->nhot[c] - n; i++)
            pp = &(*pp)->next;
        blk_t *b = *pp;
        *pp = NULL;
        while (b) {
            blk_t *next = b->next;
            madvise(b, class_size(c), MADV_DONTNEED);
            t->cold[c][t->ncold[c]++] = b;
            b = next;
        }
        t->nhot[c] -= n;
        t->low[c] = t->nhot[c];
        given += n * class_size(c);
    }
    return given;
}
