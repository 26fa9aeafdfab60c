/* chash: the lb filter's hashing and consistent-hash tables.
 *
 * Pure functions over plain memory: no host table, no allocation except in
 * the builders (which take an allocator so the filter can put the tables in
 * its config arena). Unit tests call them directly.
 *
 * Two table kinds map a 64-bit key hash to an endpoint index:
 *
 *   - a ring (Karger et al., as Envoy's ring_hash): every endpoint owns
 *     ceil(ring_size / N) points at hash(address, point#); a key belongs to
 *     the first point at or after its hash, wrapping around;
 *   - a Maglev lookup table (Eisenbud et al., NSDI '16): a prime number M of
 *     slots filled by the endpoints in turn, each following its own
 *     permutation (offset + j * skip) mod M; a key belongs to slot hash mod M.
 *
 * Both are immutable once built. When the owner of a key cannot be used, the
 * caller walks to the next point (ring) or the next slot (Maglev) and takes
 * the first usable endpoint found: keys of other endpoints never move, and
 * the keys of the missing endpoint spread over the rest.
 *
 * Everything here is hidden in the module (-fvisibility=hidden): the names
 * are not exported.
 */
#ifndef SLUICE_LB_CHASH_H
#define SLUICE_LB_CHASH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits, as Envoy's: ring_hash maximum_ring_size and Maglev's largest
 * table_size. */
#define CHASH_RING_MAX    8388608u
#define CHASH_MAGLEV_MAX  5000011u
#define CHASH_MAGLEV_DFLT 65537u
#define CHASH_RING_DFLT   1024u

/* chash_mix64 is a bijective 64-bit finalizer: every input bit affects
 * every output bit with probability about 1/2. */
uint64_t chash_mix64(uint64_t x);

/* chash_hash64 hashes |len| bytes at |p| with |seed|. Eight bytes per
 * round, then a full finalizer, so short keys (header values, IPs) hash
 * well and fast. Stable across runs and machines (little-endian reads are
 * assembled byte by byte). */
uint64_t chash_hash64(const void *p, size_t len, uint64_t seed);

/* chash_is_prime: |n| is prime (trial division; config time only). */
bool chash_is_prime(uint32_t n);

/* chash_alloc_fn returns zeroed memory that the builder's caller owns (the
 * lb passes cfg_alloc); it must not return NULL. */
typedef void *(*chash_alloc_fn)(void *arg, size_t size);

/* chash_ring_t is a sorted ring of points. */
typedef struct chash_point {
    uint64_t hash;
    uint32_t ep; /* endpoint index */
} chash_point_t;

typedef struct chash_ring {
    chash_point_t *points; /* allocated by the builder's allocator */
    size_t npoints;
} chash_ring_t;

/* chash_ring_build fills |ring| for the |n| endpoint addresses |addrs| (with
 * lengths |lens|) with at least |min_size| points (capped at
 * CHASH_RING_MAX). Uses |alloc| for the points and malloc for nothing.
 * Requires n >= 1. */
void chash_ring_build(chash_ring_t *ring, const char *const *addrs, const size_t *lens, size_t n,
                      uint32_t min_size, chash_alloc_fn alloc, void *alloc_arg);

/* chash_ring_find returns the position of the first point whose hash is at
 * or after |h| (0 past the last one). */
size_t chash_ring_find(const chash_ring_t *ring, uint64_t h);

/* chash_maglev_build fills |table| (|m| slots, |m| prime and >= n) for the
 * |n| endpoint addresses. |scratch| needs 2 * n uint64_t. */
void chash_maglev_build(uint32_t *table, uint32_t m, const char *const *addrs, const size_t *lens,
                        size_t n, uint64_t *scratch);

#endif
