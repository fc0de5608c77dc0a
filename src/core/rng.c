/* rng.c - xoshiro256** seeded through splitmix64 (Blackman & Vigna). The library's only source
 * of randomness, so a seed fixes initialisation and shuffling on every platform. */
#include <math.h>

#include "core.h"

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t bp_rng_counter_key(uint64_t seed, uint64_t step, uint32_t layer, uint32_t column)
{
    /* Each coordinate enters through its own odd constant, so (a, b) and (b, a) differ, and
     * is avalanched before the next: a chain of bijections keyed by the seed. */
    uint64_t h = bp_rng_mix64(seed + 0x9e3779b97f4a7c15ULL);
    h = bp_rng_mix64(h ^ (step * 0xd1b54a32d192ed03ULL));
    return bp_rng_mix64(h ^ (((uint64_t)layer << 32 | column) * 0x8cb92ba72f3d8dd7ULL));
}

uint64_t bp_rng_counter(uint64_t seed, uint64_t step, uint32_t layer, uint32_t column,
                        uint32_t index)
{
    return bp_rng_counter_draw(bp_rng_counter_key(seed, step, layer, column), index);
}

void bp_rng_seed(bp_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bp_rng_next(bp_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double bp_rng_uniform(bp_rng *rng) { return (double)(bp_rng_next(rng) >> 11) * 0x1.0p-53; }

double bp_rng_gaussian(bp_rng *rng)
{
    /* 1 - u lies in (0, 1], so the log is finite. */
    double u1 = 1.0 - bp_rng_uniform(rng);
    double u2 = bp_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

uint64_t bp_rng_below(bp_rng *rng, uint64_t n)
{
    /* Rejection on the top of the range removes modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do
        x = bp_rng_next(rng);
    while (x >= limit);
    return x % n;
}
