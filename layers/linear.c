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

/* y = x W^T + b. The leading axes are flattened into rows so that the whole layer is ONE matrix
 * product (rows, in) x (in, out) whatever the batch shape. Reshape shares data; only its backward
 * costs a pass (dx += dy), so a 2-d x skips it. */
Tensor *linear_forward(Tape *tape, const Linear *layer, Tensor *x) {
    int in = layer->config.in, out = layer->config.out;
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in) {
        char shape[64];
        cpool_fail("linear: x must be (..., %d), got shape %s", in, TENSOR_SHAPE_STR(x, shape));
    }
    int rows = (int)(x->size / in);
    Tensor *x2 = x->ndim == 2 ? x : op_reshape(tape, x, 2, (int[]){rows, in}); /* (rows, in) */
    Tensor *y = op_matmul(tape, x2, layer->weight, 0, 1);                      /* (rows, out) */
    if (layer->bias) y = op_add(tape, y, layer->bias); /* (rows, out) + (out) */
    if (x->ndim == 2) return y;
    int shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = out;
    return op_reshape(tape, y, x->ndim, shape); /* (..., out) */
}
