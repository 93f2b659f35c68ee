/* check_helpers.h - what the layer and model gradient checks (check_*.c) share.
 *
 * Parameters are jittered before a check: a freshly initialised layer has LayerNorm gains of
 * exactly 1 and biases of exactly 0, where some gradient terms vanish and a wrong backward could
 * pass unseen. Inputs for layers that normalise get rows with a guaranteed spread. */
#ifndef CPOOL_CHECK_HELPERS_H
#define CPOOL_CHECK_HELPERS_H

#include "params.h"
#include "rng.h"

/* Add U(-0.5, 0.5) to every element of every parameter, in creation order. */
void check_jitter_params(ParamSet *params, Rng *rng);

/* An owned U(-1, 1) input (gradcheck_input) whose every row (last axis, if longer than 1) has a
 * standard deviation of at least 0.3, redrawing rows that do not. LayerNorm's curvature grows
 * like 1/std^3: a nearly constant row of 3 values (std 0.01 happens in [-1, 1)) would make the
 * O(h^2) truncation error of central differences, not the gradient, the thing measured. */
Tensor *check_input_spread_rows(Rng *rng, int ndim, const int *shape);

#endif
