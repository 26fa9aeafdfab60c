/* arena: the per-request bump allocator.
 *
 * A stream allocates from its arena and frees nothing; arena_reset runs the
 * deferred cleanups (LIFO) and returns every chunk to the worker's free list
 * in one step. Chunks are recycled per worker, so a steady request load does
 * no malloc at all. Single-threaded: one arena, one worker.
 *
 * Budget: an arena refuses (returns NULL) past |budget| bytes; that is the
 * only NULL. A failing malloc aborts.
 *
 * With -DSLUICE_ARENA_DEBUG every allocation is its own malloc, so
 * AddressSanitizer sees overruns between allocations. Without it, an ASan
 * build poisons what the arena has not handed out and puts a 16-byte
 * redzone after each allocation (arena.c), with the same effect.
 */
#ifndef SLUICE_ARENA_H
#define SLUICE_ARENA_H

#include <stddef.h>
#include <stdint.h>

#define ARENA_CHUNK_SIZE 8192

/* Under AddressSanitizer a bump allocator hides overruns: the bytes past an
 * allocation belong to the same malloc'd chunk. So chunk space is poisoned
 * until handed out, each allocation is unpoisoned to its exact size, and a
 * poisoned redzone of ARENA_REDZONE bytes follows it: a write past what was
 * asked for is reported where it happens, as with malloc. */
#if defined(__SANITIZE_ADDRESS__)
#define ARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ARENA_ASAN 1
#endif
#endif
#ifdef ARENA_ASAN
#define ARENA_REDZONE 16
#else
#define ARENA_REDZONE 0
#endif

typedef struct arena_chunk arena_chunk_t;
typedef struct arena_defer arena_defer_t;

/* arena_pool_t is a worker's free list of standard-size chunks. */
typedef struct arena_pool {
    arena_chunk_t *free;
    size_t nfree, max_free;
} arena_pool_t;

typedef struct arena {
    arena_pool_t *pool;
    arena_chunk_t *chunks; /* current chunk first */
    char *pos, *end;
    size_t used, budget;
    arena_defer_t *defers;
} arena_t;

void arena_pool_init(arena_pool_t *p, size_t max_free);
void arena_pool_cleanup(arena_pool_t *p);

void arena_init(arena_t *a, arena_pool_t *pool, size_t budget);
/* arena_alloc returns |n| zeroed bytes aligned to 16, or NULL over budget. */
void *arena_alloc(arena_t *a, size_t n);
/* arena_alloc_nozero is arena_alloc without the memset (caller fills it). */
void *arena_alloc_nozero(arena_t *a, size_t n);
char *arena_strndup(arena_t *a, const char *s, size_t n);
/* arena_defer schedules fn(arg) at reset/cleanup. Returns 0 or -1 (budget). */
int arena_defer(arena_t *a, void (*fn)(void *), void *arg);
/* arena_reset runs defers and releases all memory, leaving |a| reusable. */
void arena_reset(arena_t *a);

#endif
