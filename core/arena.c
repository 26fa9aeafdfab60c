#include "arena.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifdef ARENA_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct arena_chunk {
    arena_chunk_t *next;
    size_t size;   /* usable bytes after the header */
    bool mapped;   /* mmap'd (else malloc'd: see chunk_map) */
    bool standard; /* a pool-size chunk (its size is page-rounded, so the
                    * flag, not the size, says so on 16/64 KiB pages) */
    _Alignas(16) char data[];
};

struct arena_defer {
    arena_defer_t *next;
    void (*fn)(void *);
    void *arg;
};

/* Usable bytes of a standard chunk: its header and data fill exactly
 * ARENA_CHUNK_SIZE bytes, two pages. */
#define CHUNK_USABLE (ARENA_CHUNK_SIZE - offsetof(arena_chunk_t, data))

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fputs("sluice: out of memory\n", stderr);
        abort();
    }
    return p;
}

/* Chunks are mapped, not malloc'd. A stream's chunks live only as long as
 * the stream, while connections live long: from malloc's heap, the chunks
 * of a burst of streams left holes between connections that glibc could
 * not give back (a freed 8 KiB chunk keeps its pages while anything live
 * shares them). A mapping is returned whole by munmap, at once. */
static size_t map_len(size_t usable)
{
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    size_t n = offsetof(arena_chunk_t, data) + usable;
    return (n + pg - 1) & ~(pg - 1);
}

static arena_chunk_t *chunk_map(size_t usable)
{
    size_t len = map_len(usable);
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    bool mapped = m != MAP_FAILED;
    /* Past vm.max_map_count (tens of thousands of streams in flight, each
     * chunk a mapping unless the kernel merges neighbours) mmap fails:
     * malloc then, rather than refuse the stream. */
    arena_chunk_t *c = mapped ? m : xmalloc(len);
    c->mapped = mapped;
    c->standard = false;
    c->size = len - offsetof(arena_chunk_t, data); /* what the pages hold */
    POISON(c->data, c->size);
    return c;
}

static void chunk_unmap(arena_chunk_t *c)
{
    UNPOISON(c->data, c->size);
    if (c->mapped)
        munmap(c, offsetof(arena_chunk_t, data) + c->size);
    else
        free(c);
}

void arena_pool_init(arena_pool_t *p, size_t max_free)
{
    memset(p, 0, sizeof(*p));
    p->max_free = max_free;
}

void arena_pool_cleanup(arena_pool_t *p)
{
    while (p->free) {
        arena_chunk_t *c = p->free;
        p->free = c->next;
        chunk_unmap(c);
    }
    p->nfree = 0;
    p->low_free = 0;
}

size_t arena_pool_trim(arena_pool_t *p, size_t keep)
{
    /* low_free chunks stayed on the list through the whole interval: the
     * load since the last trim never needed them. */
    size_t n = p->low_free;
    if (p->nfree - n < keep)
        n = p->nfree > keep ? p->nfree - keep : 0;
    if (n) {
        /* The list is LIFO: its head holds the recently used (cache-warm)
         * chunks, so the ones past position nfree - n go. */
        arena_chunk_t **pp = &p->free;
        for (size_t i = 0; i < p->nfree - n; i++)
            pp = &(*pp)->next;
        arena_chunk_t *c = *pp;
        *pp = NULL;
        while (c) {
            arena_chunk_t *next = c->next;
            chunk_unmap(c);
            c = next;
        }
        p->nfree -= n;
    }
    p->low_free = p->nfree;
    p->peak_out = p->out;
    p->taken = 0;
    return n;
}

void arena_init(arena_t *a, arena_pool_t *pool, size_t budget)
{
    memset(a, 0, sizeof(*a));
    a->pool = pool;
    a->budget = budget;
}

__attribute__((unused)) static arena_chunk_t *chunk_get(arena_t *a, size_t need)
{
    arena_pool_t *p = a->pool;
    if (need > CHUNK_USABLE)
        return chunk_map(need); /* oversized: never pooled */
    if (p) {
        /* Standard chunks of a pooled arena are counted while out, so that
         * arena_pool_trim knows how far the load fell. */
        p->taken++;
        if (++p->out > p->peak_out)
            p->peak_out = p->out;
        if (p->free) {
            arena_chunk_t *c = p->free;
            p->free = c->next;
            if (--p->nfree < p->low_free)
                p->low_free = p->nfree;
            return c;
        }
    }
    arena_chunk_t *c = chunk_map(CHUNK_USABLE);
    c->standard = true;
    return c;
}

void *arena_alloc_nozero(arena_t *a, size_t n)
{
    size_t asked = n;
    (void)asked;
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    if (a->budget && a->used + n > a->budget)
        return NULL;
    a->used += n;
#ifdef SLUICE_ARENA_DEBUG
    /* Each allocation its own chunk so ASan sees overruns. */
    arena_chunk_t *c = xmalloc(sizeof(*c) + n);
    c->size = 0; /* never recycled */
    c->next = a->chunks;
    a->chunks = c;
    return c->data;
#else
    size_t take = n + ARENA_REDZONE; /* the budget counts only what was asked */
    if ((size_t)(a->end - a->pos) < take) {
        arena_chunk_t *c = chunk_get(a, take);
        if (a->chunks && take > ARENA_CHUNK_SIZE / 2) {
            /* A big allocation gets its own chunk behind the current one,
             * so the rest of the current chunk stays usable. */
            c->next = a->chunks->next;
            a->chunks->next = c;
            UNPOISON(c->data, asked);
            return c->data;
        }
        c->next = a->chunks;
        a->chunks = c;
        a->pos = c->data;
        a->end = c->data + c->size;
    }
    void *p = a->pos;
    a->pos += take;
    UNPOISON(p, asked);
    return p;
#endif
}

void *arena_alloc_cb(void *a, size_t n)
{
    return arena_alloc_nozero(a, n);
}

void *arena_alloc(arena_t *a, size_t n)
{
    void *p = arena_alloc_nozero(a, n);
    if (p)
        memset(p, 0, n);
    return p;
}

char *arena_strndup(arena_t *a, const char *s, size_t n)
{
    char *p = arena_alloc_nozero(a, n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

int arena_defer(arena_t *a, void (*fn)(void *), void *arg)
{
    arena_defer_t *d = arena_alloc_nozero(a, sizeof(*d));
    if (!d)
        return -1;
    d->fn = fn;
    d->arg = arg;
    d->next = a->defers;
    a->defers = d;
    return 0;
}

void arena_reset(arena_t *a)
{
    /* Defers live in the arena itself: run them all before releasing. */
    while (a->defers) {
        arena_defer_t *d = a->defers;
        a->defers = d->next;
        d->fn(d->arg);
    }
    while (a->chunks) {
        arena_chunk_t *c = a->chunks;
        a->chunks = c->next;
        bool standard = c->standard;
        if (a->pool && standard)
            a->pool->out--;
        if (a->pool && standard && a->pool->nfree < a->pool->max_free) {
            POISON(c->data, c->size); /* stale pointers into it are caught */
            c->next = a->pool->free;
            a->pool->free = c;
            a->pool->nfree++;
        } else if (c->size) {
            chunk_unmap(c);
        } else {
            free(c); /* SLUICE_ARENA_DEBUG: one malloc per allocation */
        }
    }
    a->pos = a->end = NULL;
    a->used = 0;
}
