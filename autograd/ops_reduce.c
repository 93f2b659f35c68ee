/* ops_reduce.c - sums, means and maxima over one axis or over every element.
 *
 * Every reduction views the contiguous input x as a 3-d block (outer, n, inner): n is the length
 * of the reduced axis, outer the product of the dimensions before it, inner the product of those
 * after it. Element (o, k, i) lives at x[(o * n + k) * inner + i] and reduces into
 * y[o * inner + i]. Reducing every element is the same block with outer = inner = 1 and
 * n = x->size. One pair of loops therefore serves any axis, and the innermost loop (over i)
 * always walks memory contiguously. When inner = 1 (the last axis, or every element) that loop
 * would have length 1, so each op has a second loop for that case, running along k instead.
 *
 *     x (2, 3, 4), axis 1  ->  outer 2, n 3, inner 4  ->  y (2, 4), or (2, 1, 4) with keepdim
 *
 * Sums accumulate in double: a float32 running sum of a million terms loses about three digits.
 */
#include <math.h>

#include "ops.h"
#include "util.h"

/* x seen as (outer, n, inner), reducing over n. */
typedef struct Split {
    long outer, n, inner;
} Split;

static Split split_at_axis(const Tensor *x, int axis) {
    Split split = {1, x->shape[axis], 1};
    for (int d = 0; d < axis; d++) split.outer *= x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) split.inner *= x->shape[d];
    return split;
}

static Split split_all(const Tensor *x) {
    return (Split){1, x->size, 1};
}

/* The shape of x with `axis` removed (or kept as 1); returns the number of dimensions. */
static int reduced_shape(const Tensor *x, int axis, int keepdim, int *shape) {
    int ndim = 0;
    for (int d = 0; d < x->ndim; d++) {
        if (d != axis)
            shape[ndim++] = x->shape[d];
        else if (keepdim)
            shape[ndim++] = 1;
    }
    return ndim;
}

/* What backward needs: the block layout, the divisor (n for a mean, 1 for a sum) and, for a max,
 * where each maximum was found. */
typedef struct ReduceSaved {
    Split split;
    double divisor;
    long *argmax; /* max only: for output (o, i), the k of the first maximum along n */
} ReduceSaved;

/* Attach the saved values to a record (NULL when nothing was recorded: nothing to do). */
static void attach_saved(Tape *tape, TapeRecord *record, Split split, double divisor,
                         long *argmax) {
    if (!record) return;
    ReduceSaved *saved = tape_save(tape, sizeof *saved);
    *saved = (ReduceSaved){split, divisor, argmax};
    record->saved = saved;
}

/* --- sum and mean -------------------------------------------------------------------------
 * Forward:  y[o, i] = (1 / divisor) * sum_k x[o, k, i]    (divisor = 1 for sum, n for mean)
 * Local:    dy[o, i] / dx[o, k, i] = 1 / divisor for every k
 * Backward: dx[o, k, i] += dy[o, i] / divisor             (dy broadcast back along the axis)
 * A mean over an empty axis is 0 / 0 = NaN, as in PyTorch; a sum over it is 0. */

/* sum_k x[k] over n contiguous values, in double. With one running sum every addition waits for
 * the previous one; `omp simd reduction` lets the compiler keep a vector of partial sums instead
 * (a fixed order for a given build, so every run gives the same bits): ~20x faster on 4M floats. */
static double sum_contiguous(const real *x, long n) {
    double total = 0;
#pragma omp simd reduction(+ : total)
    for (long k = 0; k < n; k++) total += x[k];
    return total;
}

static void sum_forward(const real *x, real *y, Split split, double divisor, double *partial) {
    if (split.inner == 1) { /* the last axis, or every element: one contiguous run per output */
        for (long o = 0; o < split.outer; o++)
            y[o] = (real)(sum_contiguous(x + o * split.n, split.n) / divisor);
        return;
    }
    for (long o = 0; o < split.outer; o++) {
        const real *block = x + o * split.n * split.inner;
        for (long i = 0; i < split.inner; i++) partial[i] = 0;
        for (long k = 0; k < split.n; k++) {
            const real *row = block + k * split.inner;
            for (long i = 0; i < split.inner; i++) partial[i] += row[i];
        }
        for (long i = 0; i < split.inner; i++)
            y[o * split.inner + i] = (real)(partial[i] / divisor);
    }
}

static void sum_backward(Tape *tape, TapeRecord *record) {
    real *dx = tape_grad(tape, record->inputs[0]);
    if (!dx) return;
    const ReduceSaved *saved = record->saved;
    Split split = saved->split;
    const real *dy = record->output->grad;
    real scale = (real)(1.0 / saved->divisor);
    if (split.inner == 1) { /* one contiguous run of n per output */
        for (long o = 0; o < split.outer; o++) {
            real g = dy[o] * scale;
            for (long k = 0; k < split.n; k++) dx[o * split.n + k] += g;
        }
        return;
    }
    for (long o = 0; o < split.outer; o++) {
        const real *dy_block = dy + o * split.inner;
        for (long k = 0; k < split.n; k++) {
            real *dx_row = dx + (o * split.n + k) * split.inner;
            for (long i = 0; i < split.inner; i++) dx_row[i] += dy_block[i] * scale;
        }
    }
}

static Tensor *sum_or_mean(Tape *tape, const char *name, Tensor *x, Split split, int is_mean,
                           int out_ndim, const int *out_shape) {
    Tensor *y = tape_tensor(tape, out_ndim, out_shape);
    double divisor = is_mean ? (double)split.n : 1.0;
    double *partial = tape_save(tape, (size_t)split.inner * sizeof(double));
    sum_forward(x->data, y->data, split, divisor, partial);
    attach_saved(tape, tape_record(tape, name, sum_backward, y, 1, &x), split, divisor, NULL);
    return y;
}

/* --- max ----------------------------------------------------------------------------------
 * Forward:  y[o, i] = max_k x[o, k, i], argmax[o, i] = the FIRST k attaining it
 * Local:    dy[o, i] / dx[o, k, i] = 1 if k == argmax[o, i], else 0
 * Backward: dx[o, argmax[o, i], i] += dy[o, i]
 * Ties: PyTorch 1.13's torch.max(x, dim) returns the index of the first maximum and sends the
 * whole gradient there, which is what we do. Its torch.max(x) (all elements) and torch.amax
 * instead split the gradient equally among tied maxima; we keep first-maximum everywhere, so
 * op_max_all differs from torch.max(x) on ties only. A NaN is the maximum (the first NaN wins),
 * as in PyTorch. */

/* Is `candidate` a new maximum over `best`? Strictly greater (so the first of equal values
 * stays), or the first NaN. */
static inline int beats(real candidate, real best) {
    return candidate > best || (isnan(candidate) && !isnan(best));
}

static void max_forward(const real *x, real *y, long *argmax, Split split) {
    if (split.inner == 1) { /* one contiguous run of n per output */
        for (long o = 0; o < split.outer; o++) {
            const real *run = x + o * split.n;
            long where = 0;
            for (long k = 1; k < split.n; k++)
                if (beats(run[k], run[where])) where = k;
            y[o] = run[where];
            argmax[o] = where;
        }
        return;
    }
    for (long o = 0; o < split.outer; o++) {
        const real *block = x + o * split.n * split.inner;
        real *best = y + o * split.inner;
        long *where = argmax + o * split.inner;
        for (long i = 0; i < split.inner; i++) best[i] = block[i], where[i] = 0;
        for (long k = 1; k < split.n; k++) {
            const real *row = block + k * split.inner;
            for (long i = 0; i < split.inner; i++)
                if (beats(row[i], best[i])) best[i] = row[i], where[i] = k;
        }
    }
}

static void max_backward(Tape *tape, TapeRecord *record) {
    real *dx = tape_grad(tape, record->inputs[0]);
    if (!dx) return;
    const ReduceSaved *saved = record->saved;
    Split split = saved->split;
    const real *dy = record->output->grad;
    for (long o = 0; o < split.outer; o++)
        for (long i = 0; i < split.inner; i++) {
            long out = o * split.inner + i;
            dx[(o * split.n + saved->argmax[out]) * split.inner + i] += dy[out];
        }
}

static Tensor *max_over(Tape *tape, const char *name, Tensor *x, Split split, int out_ndim,
                        const int *out_shape) {
    if (split.n == 0) {
        char shape[64];
        cpool_fail("op_%s: cannot take the max over an empty axis (input shape %s)", name,
                   TENSOR_SHAPE_STR(x, shape));
    }
    Tensor *y = tape_tensor(tape, out_ndim, out_shape);
    long *argmax = tape_save(tape, (size_t)y->size * sizeof(long));
    max_forward(x->data, y->data, argmax, split);
    attach_saved(tape, tape_record(tape, name, max_backward, y, 1, &x), split, 1.0, argmax);
    return y;
}

/* --- public entry points ------------------------------------------------------------------ */
Tensor *op_sum(Tape *tape, Tensor *x, int axis, int keepdim) {
    int shape[TENSOR_MAX_DIMS];
    axis = tensor_axis(x, axis, "op_sum");
    int ndim = reduced_shape(x, axis, keepdim, shape);
    return sum_or_mean(tape, "sum", x, split_at_axis(x, axis), 0, ndim, shape);
}

Tensor *op_mean(Tape *tape, Tensor *x, int axis, int keepdim) {
    int shape[TENSOR_MAX_DIMS];
    axis = tensor_axis(x, axis, "op_mean");
    int ndim = reduced_shape(x, axis, keepdim, shape);
    return sum_or_mean(tape, "mean", x, split_at_axis(x, axis), 1, ndim, shape);
}

Tensor *op_max(Tape *tape, Tensor *x, int axis, int keepdim) {
    int shape[TENSOR_MAX_DIMS];
    axis = tensor_axis(x, axis, "op_max");
    int ndim = reduced_shape(x, axis, keepdim, shape);
    return max_over(tape, "max", x, split_at_axis(x, axis), ndim, shape);
}

Tensor *op_sum_all(Tape *tape, Tensor *x) {
    return sum_or_mean(tape, "sum_all", x, split_all(x), 0, 0, NULL);
}

Tensor *op_mean_all(Tape *tape, Tensor *x) {
    return sum_or_mean(tape, "mean_all", x, split_all(x), 1, 0, NULL);
}

Tensor *op_max_all(Tape *tape, Tensor *x) {
    return max_over(tape, "max_all", x, split_all(x), 0, NULL);
}
