/* One FNV-1a and one PRNG for the core and every filter. */
#include <sluice/util.h>

uint64_t slcu_fnv1a64_add(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t slcu_fnv1a64(const void *p, size_t n)
{
    return slcu_fnv1a64_add(SLCU_FNV1A64_INIT, p, n);
}

uint64_t slcu_mix64(uint64_t x)
{
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

void slcu_rng_seed(slcu_rng_t *r, uint64_t seed)
{
    /* Mixing the seed keeps nearby seeds (worker 0, 1, 2) from starting
     * nearby counters, whose outputs would be shifted copies. */
    r->state = slcu_mix64(seed ^ 0x6a09e667f3bcc909ull);
}

uint64_t slcu_rng_next(slcu_rng_t *r)
{
    r->state += 0x9e3779b97f4a7c15ull;
    return slcu_mix64(r->state);
}

uint64_t slcu_rng_below(slcu_rng_t *r, uint64_t n)
{
    return ((slcu_rng_next(r) >> 32) * n) >> 32;
}
