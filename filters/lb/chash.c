/* chash: hashing, ring and Maglev tables for the lb filter (see chash.h). */
#include "chash.h"

#include <stdlib.h>
#include <string.h>

/* Odd 64-bit constants with well spread bits (the fractional parts of the
 * golden ratio and of sqrt(2), sqrt(3)), used as multipliers. */
#define K_GOLD  0x9e3779b97f4a7c15ull
#define K_SQRT2 0x6a09e667f3bcc909ull
#define K_SQRT3 0xbb67ae8584caa73bull

uint64_t chash_mix64(uint64_t x)
{
    /* Two xor-shift-multiply rounds: the shifts fold the high bits (which
     * the multiplications fill best) back into the low ones. */
    x ^= x >> 31;
    x *= 0xd6e8feb86659fd93ull;
    x ^= x >> 29;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 32;
    return x;
}

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t load_le(const unsigned char *p, size_t n)
{
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) {
        w |= (uint64_t)p[i] << (8 * i);
    }
    return w;
}

uint64_t chash_hash64(const void *data, size_t len, uint64_t seed)
{
    const unsigned char *p = data;
    /* The length goes into the start state so that keys differing only in
     * trailing zero bytes differ. */
    uint64_t h = chash_mix64(seed + K_GOLD) ^ ((uint64_t)len * K_SQRT2);
    while (len >= 8) {
        uint64_t w = load_le(p, 8);
        h ^= rotl64(w * K_SQRT3, 29) * K_GOLD;
        h = rotl64(h, 27) * K_SQRT2 + K_SQRT3;
        p += 8;
        len -= 8;
    }
    if (len > 0) {
        uint64_t w = load_le(p, len);
        h ^= rotl64(w * K_SQRT3, 29) * K_GOLD;
        h = rotl64(h, 27) * K_SQRT2 + K_SQRT3;
    }
    return chash_mix64(h);
}

bool chash_is_prime(uint32_t n)
{
    if (n < 2) {
        return false;
    }
    if (n % 2 == 0) {
        return n == 2;
    }
    for (uint32_t d = 3; (uint64_t)d * d <= n; d += 2) {
        if (n % d == 0) {
            return false;
        }
    }
    return true;
}

static int point_cmp(const void *a, const void *b)
{
    const chash_point_t *x = a, *y = b;
    if (x->hash != y->hash) {
        return x->hash < y->hash ? -1 : 1;
    }
    /* Equal hashes (duplicate addresses): order by index so the ring does
     * not depend on qsort's instability. */
    return x->ep < y->ep ? -1 : x->ep > y->ep;
}

void chash_ring_build(chash_ring_t *ring, const char *const *addrs, const size_t *lens, size_t n,
                      uint32_t min_size, chash_alloc_fn alloc, void *alloc_arg)
{
    if (min_size > CHASH_RING_MAX) {
        min_size = CHASH_RING_MAX;
    }
    size_t per = (min_size + n - 1) / n;
    if (per == 0) {
        per = 1;
    }
    ring->npoints = per * n;
    ring->points = alloc(alloc_arg, ring->npoints * sizeof(*ring->points));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        /* Point j of an endpoint is hash(address, seed j): it depends only
         * on the endpoint's own address, so adding or removing another
         * endpoint does not move it. */
        for (size_t j = 0; j < per; j++) {
            ring->points[k].hash = chash_hash64(addrs[i], lens[i], (uint64_t)j);
            ring->points[k].ep = (uint32_t)i;
            k++;
        }
    }
    qsort(ring->points, ring->npoints, sizeof(*ring->points), point_cmp);
}

size_t chash_ring_find(const chash_ring_t *ring, uint64_t h)
{
    size_t lo = 0, hi = ring->npoints;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ring->points[mid].hash < h) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo == ring->npoints ? 0 : lo;
}

void chash_maglev_build(uint32_t *table, uint32_t m, const char *const *addrs, const size_t *lens,
                        size_t n, uint64_t *scratch)
{
    uint64_t *pos = scratch, *skip = scratch + n;
    for (size_t i = 0; i < n; i++) {
        /* Two independent hashes of the address: where the endpoint's
         * permutation starts and its stride. A stride in [1, m-1] with m
         * prime visits every slot exactly once. */
        pos[i] = chash_hash64(addrs[i], lens[i], 0x6d61676c65763031ull) % m;
        skip[i] = chash_hash64(addrs[i], lens[i], 0x6d61676c65763032ull) % (m - 1) + 1;
    }
    for (uint32_t s = 0; s < m; s++) {
        table[s] = UINT32_MAX;
    }
    /* Endpoints take turns claiming their next preferred free slot, so each
     * ends with m/n slots (give or take one). */
    uint32_t filled = 0;
    while (filled < m) {
        for (size_t i = 0; i < n && filled < m; i++) {
            while (table[pos[i]] != UINT32_MAX) {
                pos[i] = (pos[i] + skip[i]) % m;
            }
            table[pos[i]] = (uint32_t)i;
            pos[i] = (pos[i] + skip[i]) % m;
            filled++;
        }
    }
}
