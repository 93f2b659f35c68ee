/* layernorm.h - layer normalisation over the last axis (PyTorch nn.LayerNorm(dim, eps)).
 *
 * Parameters: "weight" (dim) initialised to 1, "bias" (dim) initialised to 0. The computation is
 * the fused op_layernorm (biased variance, eps inside the square root). No random draws.
 *
 *     LayerNorm ln;
 *     layernorm_init(&ln, (LayerNormConfig){.dim = 64, .eps = 1e-5}, &params, "ln1");
 *     Tensor *y = layernorm_forward(tape, &ln, x);  // x (..., 64)
 */
#ifndef CPOOL_LAYERNORM_H
#define CPOOL_LAYERNORM_H

#include "params.h"
#include "tape.h"

typedef struct LayerNormConfig {
    int dim;
    double eps; /* 0 means the default 1e-5 */
} LayerNormConfig;

typedef struct LayerNorm {
    LayerNormConfig config;
    Tensor *weight, *bias; /* (dim) each */
} LayerNorm;

void layernorm_init(LayerNorm *layer, LayerNormConfig config, ParamSet *params, const char *prefix);
Tensor *layernorm_forward(Tape *tape, const LayerNorm *layer, Tensor *x);

#endif
