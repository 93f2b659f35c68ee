/* conv.h - 1-d and 2-d convolution layers (PyTorch nn.Conv1d / nn.Conv2d).
 *
 * Parameters: "weight" (out, in/groups, k) or (out, in/groups, k, k), "bias" (out) when
 * config.bias; initialised as PyTorch: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups *
 * kernel elements. Conv1d with causal = 1 pads kernel-1 zeros on the left only (and ignores
 * padding), so output i sees inputs i-kernel+1 .. i.
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
    int causal;  /* conv1d only: pad kernel-1 on the left, none on the right */
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
