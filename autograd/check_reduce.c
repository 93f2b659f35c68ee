/* check_reduce.c - gradient checks for the ops in ops_reduce.c.
 *
 * Each reduction is checked over EVERY axis of 1- to 4-d inputs, counted both ways (0 .. ndim-1
 * and -ndim .. -1), with and without keepdim, plus the reduction over all elements of 0-, 1- and
 * 3-d inputs. Dimensions are drawn from 1..4, so size-1 and odd dimensions come up often. */
#include "gradcheck.h"
#include "ops.h"

/* Which reduction to run: over one axis (axis, keepdim) or, if all is set, over every element. */
typedef struct ReduceCall {
    Tensor *(*over_axis)(Tape *tape, Tensor *x, int axis, int keepdim);
    Tensor *(*over_all)(Tape *tape, Tensor *x);
    int axis, keepdim, all;
} ReduceCall;

static Tensor *reduce_fn(Tape *tape, Tensor *const *in, void *context) {
    const ReduceCall *call = context;
    if (call->all) return call->over_all(tape, in[0]);
    return call->over_axis(tape, in[0], call->axis, call->keepdim);
}

/* Values 0, spacing, 2 spacing, ... shuffled (Fisher-Yates), then shifted to be centred on 0:
 * all distinct, so a max has no ties anywhere, and any two differ by >= spacing >> h, so a
 * finite-difference step never changes which element is the maximum. */
static void fill_distinct(Rng *rng, Tensor *x, double spacing) {
    for (long i = 0; i < x->size; i++) x->data[i] = (real)(spacing * (double)(i - x->size / 2));
    for (long i = x->size - 1; i > 0; i--) {
        long j = rng_int(rng, (int)i + 1);
        real swap = x->data[i];
        x->data[i] = x->data[j];
        x->data[j] = swap;
    }
}

/* sum and mean are linear, and max is linear within pieces >= 0.05 wide (fill_distinct), so
 * central differences have no truncation error and a large step only cuts the rounding error
 * (~1e-16 |L| / h). h = 1e-3 stays far inside max's pieces. */
static const double LINEAR_STEP = 1e-3;

static void check_one(Rng *rng, GradcheckStats *stats, ReduceCall *call, int ndim, int distinct) {
    int shape[4];
    for (int d = 0; d < ndim; d++) shape[d] = 1 + rng_int(rng, 4);
    Tensor *x = gradcheck_input(rng, ndim, shape, -2, 2);
    if (distinct) fill_distinct(rng, x, 0.05);
    GradcheckOptions options = {.step = LINEAR_STEP, .seed = rng_u64(rng)};
    gradcheck(reduce_fn, call, &x, 1, &options, stats, NULL);
    gradcheck_free(&x, 1);
}

static void check_reduction(Rng *rng, GradcheckStats *stats, ReduceCall call, int distinct) {
    for (int ndim = 1; ndim <= 4; ndim++)
        for (int axis = -ndim; axis < ndim; axis++)
            for (int keepdim = 0; keepdim <= 1; keepdim++) {
                call.axis = axis;
                call.keepdim = keepdim;
                check_one(rng, stats, &call, ndim, distinct);
            }
    call.all = 1;
    const int all_ndims[] = {0, 1, 3};
    for (int t = 0; t < 3; t++) check_one(rng, stats, &call, all_ndims[t], distinct);
}

static void check_sum(Rng *rng, GradcheckStats *stats) {
    check_reduction(rng, stats, (ReduceCall){.over_axis = op_sum, .over_all = op_sum_all}, 0);
}

static void check_mean(Rng *rng, GradcheckStats *stats) {
    check_reduction(rng, stats, (ReduceCall){.over_axis = op_mean, .over_all = op_mean_all}, 0);
}

static void check_max(Rng *rng, GradcheckStats *stats) {
    check_reduction(rng, stats, (ReduceCall){.over_axis = op_max, .over_all = op_max_all}, 1);
}

const OpCheck check_table_reduce[] = {
    /* sum and mean are linear and max is linear away from ties (ruled out by construction), so
     * central differences have no truncation error at all, only rounding: ~1e-16 |L| / h with
     * h = 1e-3 (LINEAR_STEP), ~1e-13 relative. 1e-8 is the bar for every smooth op. */
    {"sum", check_sum, 1e-8},
    {"mean", check_mean, 1e-8},
    {"max", check_max, 1e-8},
    {0},
};
