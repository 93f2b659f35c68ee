/* rng.c - xoshiro256** by Blackman and Vigna (public domain algorithm), seeded by splitmix64. */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(Rng *rng, uint64_t seed) {
    for (int i = 0; i < 4; i++) rng->state[i] = splitmix64(&seed);
}

static uint64_t rotate_left(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_u64(Rng *rng) {
    uint64_t *s = rng->state;
    uint64_t result = rotate_left(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotate_left(s[3], 45);
    return result;
}

double rng_uniform(Rng *rng) {
    return (double)(rng_u64(rng) >> 11) * 0x1.0p-53;
}

double rng_range(Rng *rng, double lo, double hi) {
    return lo + (hi - lo) * rng_uniform(rng);
}

int rng_int(Rng *rng, int n) {
    return (int)(rng_uniform(rng) * n);
}

double rng_normal(Rng *rng) {
    /* Box-Muller; 1 - u keeps the log argument in (0, 1]. One value per call keeps the state
     * simple to save (no cached second value). */
    double u = 1.0 - rng_uniform(rng), v = rng_uniform(rng);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}
