/* linear.h - y = x W^T + b over the last axis (PyTorch nn.Linear).
 *
 * Parameters: "weight" (out, in), "bias" (out) when config.bias. Initialisation as PyTorch:
 * weight and bias ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform with a = sqrt(5) reduces to this),
 * drawn from rng: every weight element in row-major order, then every bias element.
 * x may have any number of leading axes (a 1-d x is one row); they are flattened into the rows of
 * a single matrix product. Bad config or x: cpool_fail("linear: ...").
 *
 *     Linear fc;
 *     linear_init(&fc, (LinearConfig){.in = 64, .out = 256, .bias = 1}, &params, "ffn.fc1", &rng);
 *     Tensor *y = linear_forward(tape, &fc, x);    // x (..., 64) -> y (..., 256)
 */
#ifndef CPOOL_LINEAR_H
#define CPOOL_LINEAR_H

#include "params.h"
#include "rng.h"
#include "tape.h"

typedef struct LinearConfig {
    int in, out;
    int bias; /* 1: add a bias */
} LinearConfig;

typedef struct Linear {
    LinearConfig config;
    Tensor *weight; /* (out, in) */
    Tensor *bias;   /* (out), or NULL */
} Linear;

void linear_init(Linear *layer, LinearConfig config, ParamSet *params, const char *prefix,
                 Rng *rng);
Tensor *linear_forward(Tape *tape, const Linear *layer, Tensor *x);

#endif
