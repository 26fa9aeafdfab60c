#include "arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    size_t size; /* usable bytes after the header */
    _Alignas(16) char data[];
};

struct arena_defer {
    arena_defer_t *next;
    void (*fn)(void *);
    void *arg;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) {
        fputs("sluice: out of memory\n", stderr);
        abort();
    }
    return p;
}

void arena_pool_init(arena_pool_t *p, size_t max_free)
{
    p->free = NULL;
    p->nfree = 0;
    p->max_free = max_free;
}

void arena_pool_cleanup(arena_pool_t *p)
{
    while (p->free) {
        arena_chunk_t *c = p->free;
        p->free = c->next;
        UNPOISON(c->data, c->size);
        free(c);
    }
    p->nfree = 0;
}

void arena_init(arena_t *a, arena_pool_t *pool, size_t budget)
{
    memset(a, 0, sizeof(*a));
    a->pool = pool;
    a->budget = budget;
}

__attribute__((unused)) static arena_chunk_t *chunk_get(arena_t *a, size_t need)
{
    arena_chunk_t *c;
    if (need <= ARENA_CHUNK_SIZE && a->pool && a->pool->free) {
        c = a->pool->free;
        a->pool->free = c->next;
        a->pool->nfree--;
        return c;
    }
    size_t size = need <= ARENA_CHUNK_SIZE ? ARENA_CHUNK_SIZE : need;
    c = xmalloc(sizeof(*c) + size);
    c->size = size;
    POISON(c->data, size);
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
        if (a->pool && c->size == ARENA_CHUNK_SIZE && a->pool->nfree < a->pool->max_free) {
            POISON(c->data, c->size); /* stale pointers into it are caught */
            c->next = a->pool->free;
            a->pool->free = c;
            a->pool->nfree++;
        } else {
            UNPOISON(c->data, c->size);
            free(c);
        }
    }
    a->pos = a->end = NULL;
    a->used = 0;
}
