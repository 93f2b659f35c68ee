/* layernorm.c - see layernorm.h. */
#include "layernorm.h"

#include "ops.h"
#include "util.h"

static const double DEFAULT_EPS = 1e-5; /* PyTorch's nn.LayerNorm default */

void layernorm_init(LayerNorm *layer, LayerNormConfig config, ParamSet *params,
                    const char *prefix) {
    if (config.dim < 1) cpool_fail("layernorm: dim=%d must be positive", config.dim);
    if (config.eps < 0) cpool_fail("layernorm: eps=%g must be positive (0 means 1e-5)", config.eps);
    if (config.eps == 0) config.eps = DEFAULT_EPS;
    layer->config = config;
    layer->weight = params_new(params, prefix, "weight", 1, (int[]){config.dim});
    layer->bias = params_new(params, prefix, "bias", 1, (int[]){config.dim}); /* zeros */
    tensor_fill(layer->weight, 1);
}

/* y = (x - mean) / sqrt(var + eps) * weight + bias over the last axis; x (..., dim) -> same. */
Tensor *layernorm_forward(Tape *tape, const LayerNorm *layer, Tensor *x) {
    if (x->ndim < 1 || x->shape[x->ndim - 1] != layer->config.dim) {
        char shape[64];
        cpool_fail("layernorm: x must be (..., %d), got shape %s", layer->config.dim,
                   TENSOR_SHAPE_STR(x, shape));
    }
    return op_layernorm(tape, x, layer->weight, layer->bias, (real)layer->config.eps);
}
