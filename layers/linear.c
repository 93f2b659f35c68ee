/* linear.c - see linear.h. */
#include "linear.h"

#include <math.h>

#include "ops.h"
#include "util.h"

/* Every element of t ~ U(-bound, bound), drawn in row-major order. */
static void fill_uniform(Tensor *t, double bound, Rng *rng) {
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, -bound, bound);
}

void linear_init(Linear *layer, LinearConfig config, ParamSet *params, const char *prefix,
                 Rng *rng) {
    if (config.in < 1) cpool_fail("linear: in=%d must be positive", config.in);
    if (config.out < 1) cpool_fail("linear: out=%d must be positive", config.out);
    layer->config = config;
    double bound = 1 / sqrt((double)config.in); /* fan_in = in */
    layer->weight = params_new(params, prefix, "weight", 2, (int[]){config.out, config.in});
    fill_uniform(layer->weight, bound, rng);
    layer->bias = NULL;
    if (config.bias) {
        layer->bias = params_new(params, prefix, "bias", 1, (int[]){config.out});
        fill_uniform(layer->bias, bound, rng);
    }
}

/* y = x W^T + b: one op_linear, whatever the batch shape (its leading axes are the rows of one
 * matrix product). */
Tensor *linear_forward(Tape *tape, const Linear *layer, Tensor *x) {
    int in = layer->config.in;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in) {
        char shape[64];
        cpool_fail("linear: x must be (..., %d), got shape %s", in, TENSOR_SHAPE_STR(x, shape));
    }
    return op_linear(tape, x, layer->weight, layer->bias); /* (..., out) */
}
