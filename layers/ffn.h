/* ffn.h - the transformer's position-wise feed-forward net: fc2(GELU(fc1(x))).
 *
 * Parameters: "fc1.weight" (hidden, dim), "fc1.bias" (hidden), "fc2.weight" (dim, hidden),
 * "fc2.bias" (dim). GELU is the exact erf form (PyTorch nn.GELU() default). Both are nn.Linear
 * layers, initialised (and drawn from rng) in the order fc1.weight, fc1.bias, fc2.weight,
 * fc2.bias.
 *
 *     Ffn ffn;
 *     ffn_init(&ffn, (FfnConfig){.dim = 64, .hidden = 256}, &params, "ffn", &rng);
 *     Tensor *y = ffn_forward(tape, &ffn, x);      // x (..., 64) -> y (..., 64)
 */
#ifndef CPOOL_FFN_H
#define CPOOL_FFN_H

#include "linear.h"

typedef struct FfnConfig {
    int dim, hidden;
} FfnConfig;

typedef struct Ffn {
    FfnConfig config;
    Linear fc1, fc2;
} Ffn;

void ffn_init(Ffn *layer, FfnConfig config, ParamSet *params, const char *prefix, Rng *rng);
Tensor *ffn_forward(Tape *tape, const Ffn *layer, Tensor *x); /* (..., dim) -> (..., dim) */

#endif
