/* conv.h - 1-d and 2-d convolution layers (PyTorch nn.Conv1d / nn.Conv2d).
 *
 * Parameters: "weight" (out, in/groups, k) or (out, in/groups, k, k), "bias" (out) when
 * config.bias; initialised as PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups *
 * kernel elements, drawn from rng: the weight in row-major order, then the bias. Conv1d with
 * causal = 1 pads kernel-1 zeros on the left only (padding must then be 0), so output i sees
 * inputs i-kernel+1 .. i. Bad config or x: cpool_fail("conv1d: ...") / ("conv2d: ...").
 *
 *     Conv conv;
 *     conv1d_init(&conv, (ConvConfig){.in = 64, .out = 64, .kernel = 3, .groups = 64, .bias = 1,
 *                                     .causal = 1}, &params, "mixer", &rng);
 *     Tensor *y = conv1d_forward(tape, &conv, x);   // x (B, 64, L) -> y (B, 64, L)
 */
#ifndef CPOOL_CONV_H
#define CPOOL_CONV_H

#include "params.h"
#include "rng.h"
#include "tape.h"

typedef struct ConvConfig {
    int in, out, kernel;
    int stride;  /* 0 means 1 */
    int padding; /* zeros on each side */
    int groups;  /* 0 means 1 */
    int bias;    /* 1: add a bias */
    int causal;  /* conv1d only: pad kernel-1 on the left, none on the right (padding 0) */
} ConvConfig;

typedef struct Conv {
    ConvConfig config;
    Tensor *weight; /* (out, in/groups, k) or (out, in/groups, k, k) */
    Tensor *bias;   /* (out), or NULL */
} Conv;

void conv1d_init(Conv *layer, ConvConfig config, ParamSet *params, const char *prefix, Rng *rng);
Tensor *conv1d_forward(Tape *tape, const Conv *layer, Tensor *x); /* (B, in, L) -> (B, out, L') */
void conv2d_init(Conv *layer, ConvConfig config, ParamSet *params, const char *prefix, Rng *rng);
Tensor *conv2d_forward(Tape *tape, const Conv *layer, Tensor *x); /* (B, in, H, W) -> ... */

#endif
