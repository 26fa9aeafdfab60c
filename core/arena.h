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

/* A standard chunk is ARENA_CHUNK_SIZE bytes with its header: two pages. */
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

/* arena_pool_t is a worker's free list of standard-size chunks: at most
 * |max_free| of them, and arena_pool_trim, called now and then, returns
 * those a whole interval did not need (what a burst of streams took comes
 * back once the burst is over). Chunks are mmap'd pages: a returned chunk
 * leaves no hole in malloc's heap. The pool owns the chunks on |free|;
 * an arena owns the chunks it took until arena_reset. */
typedef struct arena_pool {
    arena_chunk_t *free;
    size_t nfree, max_free;
    size_t low_free; /* fewest chunks on |free| since the last trim */
    size_t out;      /* standard chunks held by arenas now */
    size_t peak_out; /* most held at once since the last trim */
    size_t taken;    /* standard chunks handed out since the last trim */
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
/* arena_pool_trim frees the free chunks that stayed unused since the last
 * trim, keeping at least |keep| (or all there are), and starts a new
 * interval (low_free = nfree, peak_out = out, taken = 0). Returns how
 * many it freed.
 * Cost: a walk of the free list; call it from a timer, not per request. */
size_t arena_pool_trim(arena_pool_t *p, size_t keep);

void arena_init(arena_t *a, arena_pool_t *pool, size_t budget);
/* arena_alloc returns |n| zeroed bytes aligned to 16, or NULL over budget. */
void *arena_alloc(arena_t *a, size_t n);
/* arena_alloc_nozero is arena_alloc without the memset (caller fills it). */
void *arena_alloc_nozero(arena_t *a, size_t n);
/* arena_alloc_cb: arena_alloc_nozero as a callback for code that takes an
 * allocator (h1body_rd_trailers); |a| is the arena_t. */
void *arena_alloc_cb(void *a, size_t n);
char *arena_strndup(arena_t *a, const char *s, size_t n);
/* arena_defer schedules fn(arg) at reset/cleanup. Returns 0 or -1 (budget). */
int arena_defer(arena_t *a, void (*fn)(void *), void *arg);
/* arena_reset runs defers and releases all memory, leaving |a| reusable. */
void arena_reset(arena_t *a);

#endif
