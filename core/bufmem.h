/* bufmem: where libevent's buffer chains live.
 *
 * Why: connections live long and are small (a dconn, its two evbuffers,
 * libevent's per-fd entry); buffer chains live for one request and are
 * 1-32 KiB. From one malloc heap, a burst of requests left every page of
 * the heap holding some small survivor between freed chains, and glibc
 * can give back a page only when nothing on it is live: after 1,000
 * clients sent one request each, the worker kept ~9 KiB per client
 * (docs/performance.md, memory after a burst).
 *
 * So libevent's allocations of BUFMEM_MIN..BUFMEM_MAX bytes (its chains:
 * libevent rounds them to powers of two) come from a reserved range of
 * address space, one sub-range per size class (4, 8, 16, 32 KiB), in
 * whole pages. libevent's allocations of at most BUFMEM_TINY bytes (its
 * entry per file descriptor number, made when the number is first used
 * and kept for good) get 32-byte slots in a range of their own: from the
 * heap, each one was a survivor pinning the page of a closed upstream
 * connection. Everything else stays with malloc. A freed block goes to
 * the freeing thread's cache for its class; bufmem_trim, from the worker's
 * timer, hands the pages of blocks that a whole interval did not need
 * back to the kernel (madvise) and keeps the blocks for reuse. In the
 * steady state a chain costs a list pop and a push: no system call.
 *
 * OWNERSHIP: blocks are owned by whoever allocated them until freed; the
 * caches are per thread (no locks) and a block may be freed on any thread.
 * The reserved range is never unmapped. If it is used up, or bufmem_install
 * was not called, allocations fall back to malloc.
 */
#ifndef SLUICE_BUFMEM_H
#define SLUICE_BUFMEM_H

#include <stdbool.h>
#include <stddef.h>

#define BUFMEM_MIN    1024
#define BUFMEM_MAX    (32 * 1024)
#define BUFMEM_CLASS0 4096 /* the smallest block: one page */
#define BUFMEM_NCLASS 4    /* 4, 8, 16, 32 KiB */
#define BUFMEM_TINY   32   /* and a class of 32-byte slots */

/* bufmem_install reserves the range and makes libevent allocate through
 * bufmem (event_set_mem_functions). Call it once, before any libevent
 * call. A sanitizer build skips it (returns false) so that AddressSanitizer
 * keeps checking libevent's buffers as malloc'd memory. */
bool bufmem_install(void);

/* The allocator itself, as libevent calls it (exposed for unit tests). */
void *bufmem_malloc(size_t n);
void *bufmem_realloc(void *p, size_t n);
void bufmem_free(void *p);
/* bufmem_owns: |p| is a bufmem block (not malloc's). */
bool bufmem_owns(const void *p);
/* bufmem_init reserves the range without touching libevent (tests).
 * |class_bytes|: address space per class (0: the default, 1 GiB). */
bool bufmem_init(size_t class_bytes);

/* Per-thread cache figures, in blocks, for the calling thread. */
typedef struct bufmem_stats {
    size_t hot[BUFMEM_NCLASS];  /* free, pages still resident */
    size_t cold[BUFMEM_NCLASS]; /* free, pages given back */
} bufmem_stats_t;
void bufmem_stats(bufmem_stats_t *st);

/* bufmem_trim gives back the pages of the calling thread's free blocks
 * that stayed unused since its last call, keeping |keep| resident per
 * class. Returns the bytes given back. One madvise per block: call it
 * from a timer. */
size_t bufmem_trim(size_t keep);

#endif
