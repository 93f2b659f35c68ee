/* check_helpers.c - see check_helpers.h. */
#include "check_helpers.h"

#include "gradcheck.h"

void check_jitter_params(ParamSet *params, Rng *rng) {
    for (int p = 0; p < params->count; p++) {
        Tensor *t = params->items[p].tensor;
        for (long i = 0; i < t->size; i++) t->data[i] += (real)rng_range(rng, -0.5, 0.5);
    }
}

Tensor *check_input_spread_rows(Rng *rng, int ndim, const int *shape) {
    Tensor *x = gradcheck_input(rng, ndim, shape, -1, 1);
    long D = shape[ndim - 1];
    for (long row = 0; D > 1 && row < x->size / D; row++) {
        real *v = x->data + row * D;
        for (;;) {
            double mean = 0, var = 0;
            for (long j = 0; j < D; j++) mean += v[j] / (double)D;
            for (long j = 0; j < D; j++) var += (v[j] - mean) * (v[j] - mean) / (double)D;
            if (var >= 0.09) break; /* std >= 0.3 */
            for (long j = 0; j < D; j++) v[j] = (real)rng_range(rng, -1, 1);
        }
    }
    return x;
}
