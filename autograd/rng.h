/* rng.h - a small, seeded, reproducible random number generator (xoshiro256**).
 *
 * Everything random in the project (initialisation, dropout masks, batches, sampling, gradient
 * checks) draws from an explicit Rng, so a seed fixes a run completely and the generator state
 * can be saved in a checkpoint (it is four 64-bit words).
 *
 *     Rng rng;
 *     rng_seed(&rng, 42);
 *     double u = rng_uniform(&rng);        // [0, 1)
 *     double z = rng_normal(&rng);         // N(0, 1)
 */
#ifndef CPOOL_RNG_H
#define CPOOL_RNG_H

#include <stdint.h>

typedef struct Rng {
    uint64_t state[4];
} Rng;

void rng_seed(Rng *rng, uint64_t seed); /* expands the seed with splitmix64 */
uint64_t rng_u64(Rng *rng);
double rng_uniform(Rng *rng);                     /* [0, 1), 53 random bits */
double rng_range(Rng *rng, double lo, double hi); /* [lo, hi) */
int rng_int(Rng *rng, int n);                     /* uniform in 0..n-1 (n > 0) */
double rng_normal(Rng *rng);                      /* standard normal (Box-Muller) */

#endif
