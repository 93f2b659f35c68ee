/* ops_shape.c - ops that move elements without changing them: reshape, transpose, permute,
 * slice, concat.
 *
 * Every op here is linear and merely relabels elements: y[j] = x[source(j)] for some index map.
 * Its backward sends each gradient back along the same map: dx[source(j)] += dy[j]. Because
 * tensors are contiguous (tensor.h), every op but reshape copies.
 *
 * Two copy helpers do all the moving:
 *   - permute_into(): y = x with its axes permuted, written in y's row-major order. Forward calls
 *     it with perm, backward with the inverse permutation (and accumulate = 1), so both passes
 *     write contiguously and read strided.
 *   - copy_blocks(): rows of a fixed length between two strided row layouts; slice and concat are
 *     both "a window of an axis", which is exactly that once the axis is viewed as
 *     (outer, axis * inner). */
#include <string.h>

#include "ops.h"
#include "util.h"

/* ---- Copy helpers ---------------------------------------------------------------------- */

/* dst[j] (+)= src[j * stride] for j in [0, n). Four loops so that none branches per element. */
static void copy_row(real *dst, const real *src, long n, long stride, int accumulate) {
    if (stride == 1 && accumulate)
        for (long j = 0; j < n; j++) dst[j] += src[j];
    else if (stride == 1)
        memcpy(dst, src, (size_t)n * sizeof(real));
    else if (accumulate)
        for (long j = 0; j < n; j++) dst[j] += src[j * stride];
    else
        for (long j = 0; j < n; j++) dst[j] = src[j * stride];
}

/* dst (+)= src with its axes permuted: dst has shape (src_shape[perm[0]], ...,
 * src_shape[perm[n-1]]) and dst[i0, ..., i(n-1)] = src[the index whose axis perm[d] is i_d]. dst is
 * walked in row-major order (contiguous writes); an odometer over dst's leading axes tracks the
 * source offset, and the last axis is one copy_row with the source stride of axis perm[n-1]. */
static void permute_into(real *dst, const real *src, int ndim, const int *src_shape,
                         const int *perm, int accumulate) {
    /* shape[d], stride[d]: dst's axis d and the src step along it. A scalar is one row of 1. */
    int shape[TENSOR_MAX_DIMS] = {1}, index[TENSOR_MAX_DIMS] = {0};
    long src_stride[TENSOR_MAX_DIMS] = {0}, stride[TENSOR_MAX_DIMS] = {1};
    long step = 1, rows = 1;
    for (int d = ndim - 1; d >= 0; d--) {
        src_stride[d] = step;
        step *= src_shape[d];
    }
    for (int d = 0; d < ndim; d++) {
        shape[d] = src_shape[perm[d]];
        stride[d] = src_stride[perm[d]];
    }
    int last = ndim > 0 ? ndim - 1 : 0;
    for (int d = 0; d < last; d++) rows *= shape[d];
    long row_len = shape[last], offset = 0;
    if (row_len == 0) return;
    for (long row = 0; row < rows; row++, dst += row_len) {
        copy_row(dst, src + offset, row_len, stride[last], accumulate);
        for (int d = last - 1; d >= 0; d--) { /* advance the odometer over dst's axes 0..last-1 */
            offset += stride[d];
            if (++index[d] < shape[d]) break;
            offset -= (long)shape[d] * stride[d];
            index[d] = 0;
        }
    }
}

/* For each of n_rows rows: dst[r * dst_stride + j] (+)= src[r * src_stride + j], j < row_len. */
static void copy_blocks(real *dst, long dst_stride, const real *src, long src_stride, long n_rows,
                        long row_len, int accumulate) {
    for (long r = 0; r < n_rows; r++)
        copy_row(dst + r * dst_stride, src + r * src_stride, row_len, 1, accumulate);
}

/* x viewed as (outer, shape[axis], inner): the products of the dims before and after axis. */
static void split_at_axis(const Tensor *x, int axis, long *outer, long *inner) {
    *outer = 1;
    *inner = 1;
    for (int d = 0; d < axis; d++) *outer *= x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) *inner *= x->shape[d];
}

/* ---- reshape ----------------------------------------------------------------------------
 * y = x with a new shape of the same size; the elements keep their row-major order, so
 * y[j] = x[j] and dx[j] += dy[j].
 *
 * The output SHARES x's data buffer (no copy): tensors are never modified in place, so the two
 * views can never disagree. Only the Tensor header is new; y's gradient is its own buffer
 * (allocated during backward), which backward copies into x's, or adds when x's already holds
 * other contributions. (Sharing the gradient buffer too would save the copy, but y->grad would
 * then also show x's other contributions, and docs/autograd.md lets a user read y->grad.) */
static void reshape_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    int overwrite;
    real *dx = tape_grad_write(tape, x, &overwrite); /* a fresh buffer is copied into */
    if (dx) copy_row(dx, y->grad, y->size, 1, !overwrite);
}

/* The shape with its -1 entry (if any) replaced so that it holds x->size elements. */
static void resolve_shape(const Tensor *x, int ndim, const int *shape, int *resolved) {
    char x_shape[64], want[64];
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS)
        cpool_fail("op_reshape: %d dimensions requested, between 0 and %d supported", ndim,
                   TENSOR_MAX_DIMS);
    int inferred = -1;
    long known = 1;
    for (int d = 0; d < ndim; d++) {
        resolved[d] = shape[d];
        if (shape[d] == -1 && inferred < 0) {
            inferred = d;
        } else if (shape[d] < 0) {
            cpool_fail("op_reshape: bad shape %s for a tensor of shape %s (only one -1 allowed, "
                       "no other negative size)",
                       shape_string(ndim, shape, want, sizeof want), TENSOR_SHAPE_STR(x, x_shape));
        } else {
            known *= shape[d];
        }
    }
    if (inferred >= 0) {
        long missing = known > 0 ? x->size / known : 0; /* the -1 entry */
        if (known == 0 || missing * known != x->size)
            cpool_fail("op_reshape: cannot infer the -1 in %s for a tensor of shape %s (%ld "
                       "elements)",
                       shape_string(ndim, shape, want, sizeof want), TENSOR_SHAPE_STR(x, x_shape),
                       x->size);
        resolved[inferred] = (int)missing;
        known = x->size;
    }
    if (known != x->size)
        cpool_fail("op_reshape: shape %s holds %ld elements, the tensor of shape %s has %ld",
                   shape_string(ndim, shape, want, sizeof want), known,
                   TENSOR_SHAPE_STR(x, x_shape), x->size);
}

Tensor *op_reshape(Tape *tape, Tensor *x, int ndim, const int *shape) {
    int resolved[TENSOR_MAX_DIMS];
    resolve_shape(x, ndim, shape, resolved);
    Tensor *y = arena_calloc(&tape->arena, sizeof *y); /* a header only: the data is x's */
    y->ndim = ndim;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) y->shape[d] = d < ndim ? resolved[d] : 1;
    y->size = x->size;
    y->data = x->data;
    tape_record(tape, "reshape", reshape_backward, y, 1, &x);
    return y;
}

/* ---- permute and transpose --------------------------------------------------------------
 * x (s0, ..., s(n-1)) -> y (s[perm[0]], ..., s[perm[n-1]]): y[i] = x[j] where j[perm[d]] = i[d].
 * Backward: dx[j] += dy[i], i.e. dx += dy permuted by the inverse permutation
 * (inverse[perm[d]] = d), which walks dx contiguously. transpose is the permutation that swaps
 * two axes (its own inverse). */
typedef struct PermuteSaved {
    int inverse[TENSOR_MAX_DIMS];
} PermuteSaved;

static void permute_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    const PermuteSaved *saved = record->saved;
    int overwrite;
    real *dx = tape_grad_write(tape, x, &overwrite); /* a fresh buffer is written, not added to */
    if (!dx) return;
    permute_into(dx, y->grad, y->ndim, y->shape, saved->inverse, !overwrite);
}

/* perm is already validated and normalised (entries in 0..ndim-1, each once). */
static Tensor *permute_checked(Tape *tape, Tensor *x, const int *perm, const char *name) {
    int shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) shape[d] = x->shape[perm[d]];
    Tensor *y = tape_tensor(tape, x->ndim, shape);
    permute_into(y->data, x->data, x->ndim, x->shape, perm, 0);
    TapeRecord *record = tape_record(tape, name, permute_backward, y, 1, &x);
    if (record) {
        PermuteSaved *saved = tape_save(tape, sizeof *saved);
        for (int d = 0; d < x->ndim; d++) saved->inverse[perm[d]] = d;
        record->saved = saved;
    }
    return y;
}

Tensor *op_permute(Tape *tape, Tensor *x, const int *perm) {
    int normalised[TENSOR_MAX_DIMS], seen[TENSOR_MAX_DIMS] = {0};
    for (int d = 0; d < x->ndim; d++) {
        int axis = perm[d] < 0 ? perm[d] + x->ndim : perm[d]; /* -1 is the last axis */
        if (axis < 0 || axis >= x->ndim || seen[axis]++) {
            char x_shape[64], perm_text[64];
            cpool_fail("op_permute: %s is not a permutation of the axes of a tensor of shape %s",
                       shape_string(x->ndim, perm, perm_text, sizeof perm_text),
                       TENSOR_SHAPE_STR(x, x_shape));
        }
        normalised[d] = axis;
    }
    return permute_checked(tape, x, normalised, "permute");
}

Tensor *op_transpose(Tape *tape, Tensor *x, int dim0, int dim1) {
    int a = tensor_axis(x, dim0, "op_transpose"), b = tensor_axis(x, dim1, "op_transpose");
    int perm[TENSOR_MAX_DIMS];
    for (int d = 0; d < x->ndim; d++) perm[d] = d;
    perm[a] = b;
    perm[b] = a;
    return permute_checked(tape, x, perm, "transpose");
}

/* ---- slice ------------------------------------------------------------------------------
 * y = x[..., start:end, ...] along `axis` (negative axis counts from the end). Indices must
 * satisfy 0 <= start <= end <= shape[axis]: no negative indices and no clamping (unlike Python),
 * so an out-of-range slice is an error rather than a silently shorter result. start == end gives
 * an empty tensor. With x viewed as (outer, n, inner) and len = end - start:
 *   forward:  y[o, i, k] = x[o, start + i, k]
 *   backward: dx[o, start + i, k] += dy[o, i, k]   (the rest of dx receives nothing) */
typedef struct SliceSaved {
    int axis, start;
} SliceSaved;

static void slice_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    const SliceSaved *saved = record->saved;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    long outer, inner;
    split_at_axis(x, saved->axis, &outer, &inner);
    long x_row = x->shape[saved->axis] * inner, y_row = y->shape[saved->axis] * inner;
    copy_blocks(dx + saved->start * inner, x_row, y->grad, y_row, outer, y_row, 1);
}

Tensor *op_slice(Tape *tape, Tensor *x, int axis, int start, int end) {
    axis = tensor_axis(x, axis, "op_slice");
    if (start < 0 || start > end || end > x->shape[axis]) {
        char x_shape[64];
        cpool_fail("op_slice: [%d, %d) is not a range within axis %d of size %d (shape %s); "
                   "need 0 <= start <= end <= size",
                   start, end, axis, x->shape[axis], TENSOR_SHAPE_STR(x, x_shape));
    }
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[axis] = end - start;
    Tensor *y = tape_tensor(tape, x->ndim, shape);
    long outer, inner;
    split_at_axis(x, axis, &outer, &inner);
    long x_row = x->shape[axis] * inner, y_row = y->shape[axis] * inner;
    copy_blocks(y->data, y_row, x->data + start * inner, x_row, outer, y_row, 0);
    TapeRecord *record = tape_record(tape, "slice", slice_backward, y, 1, &x);
    if (record) {
        SliceSaved *saved = tape_save(tape, sizeof *saved);
        *saved = (SliceSaved){.axis = axis, .start = start};
        record->saved = saved;
    }
    return y;
}

/* ---- concat -----------------------------------------------------------------------------
 * y = [x_0, x_1, ..., x_(n-1)] joined along `axis`; every other dimension must agree. With each
 * x_k viewed as (outer, n_k, inner) and offset_k = n_0 + ... + n_(k-1):
 *   forward:  y[o, offset_k + i, r] = x_k[o, i, r]
 *   backward: dx_k[o, i, r] += dy[o, offset_k + i, r]   (dy is split back into the pieces) */
typedef struct ConcatSaved {
    int axis;
} ConcatSaved;

static void concat_backward(Tape *tape, TapeRecord *record) {
    Tensor *y = record->output;
    int axis = ((const ConcatSaved *)record->saved)->axis;
    long outer, inner, offset = 0;
    split_at_axis(y, axis, &outer, &inner);
    long y_row = y->shape[axis] * inner;
    for (int k = 0; k < record->n_inputs; k++) {
        Tensor *x = record->inputs[k];
        long x_row = x->shape[axis] * inner;
        int overwrite; /* the blocks cover all of dx: a fresh buffer is copied into */
        real *dx = tape_grad_write(tape, x, &overwrite);
        if (dx) copy_blocks(dx, x_row, y->grad + offset, y_row, outer, x_row, !overwrite);
        offset += x_row;
    }
}

/* The output shape: xs[0]'s with the axis lengths summed; fails if the pieces do not fit. */
static void concat_shape(Tensor *const *xs, int n, int axis, int *shape) {
    memcpy(shape, xs[0]->shape, sizeof(int) * TENSOR_MAX_DIMS);
    shape[axis] = 0;
    for (int k = 0; k < n; k++) {
        int fits = xs[k]->ndim == xs[0]->ndim;
        for (int d = 0; d < xs[0]->ndim && fits; d++)
            fits = d == axis || xs[k]->shape[d] == xs[0]->shape[d];
        if (!fits) {
            char first[64], other[64];
            cpool_fail("op_concat: input %d of shape %s does not match input 0 of shape %s "
                       "outside axis %d",
                       k, TENSOR_SHAPE_STR(xs[k], other), TENSOR_SHAPE_STR(xs[0], first), axis);
        }
        shape[axis] += xs[k]->shape[axis];
    }
}

Tensor *op_concat(Tape *tape, Tensor *const *xs, int n, int axis) {
    if (n < 1) cpool_fail("op_concat: need at least one tensor, got %d", n);
    axis = tensor_axis(xs[0], axis, "op_concat");
    int shape[TENSOR_MAX_DIMS];
    concat_shape(xs, n, axis, shape);
    Tensor *y = tape_tensor(tape, xs[0]->ndim, shape);
    long outer, inner, offset = 0;
    split_at_axis(y, axis, &outer, &inner);
    long y_row = y->shape[axis] * inner;
    for (int k = 0; k < n; k++) {
        long x_row = xs[k]->shape[axis] * inner;
        copy_blocks(y->data + offset, y_row, xs[k]->data, x_row, outer, x_row, 0);
        offset += x_row;
    }
    TapeRecord *record = tape_record(tape, "concat", concat_backward, y, n, xs);
    if (record) {
        ConcatSaved *saved = tape_save(tape, sizeof *saved);
        saved->axis = axis;
        record->saved = saved;
    }
    return y;
}
