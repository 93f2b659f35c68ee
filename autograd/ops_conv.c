/* ops_conv.c - convolution (1-d and 2-d, grouped) and 2-d pooling, as in PyTorch.
 *
 * Convolution is cross-correlation with zero padding (no kernel flip), as torch.nn.functional:
 *
 *   y[b, o, i, j] = bias[o] + sum_{c in group(o), p, q} w[o, c', p, q] x[b, c, i s + p - pt,
 *                                                                        j s + q - pl]
 *
 * where s is the stride, pt/pl the top/left padding, c' = c - group_start the channel within o's
 * group, and x is 0 outside the input. Channels are split into `groups` equal groups; output
 * channel o (group g = o / (O / groups)) sees only the C / groups input channels of group g.
 *
 * Two paths compute it, both im2col + gemm (conv_takes_batched_path says which):
 *
 * The per-(b, g) path, for several groups and for the small shapes: per batch element b and
 * group g,
 *   columns (Cg KH KW, Ho Wo):  columns[(c, p, q), (i, j)] = x[b, c, i s + p - pt, j s + q - pl]
 *   forward:   y_g (Og, Ho Wo)  = w_g (Og, Cg KH KW) @ columns     (+ bias[o] per row)
 *   backward:  dw_g            += dy_g @ columns^T
 *              dcolumns         = w_g^T @ dy_g, then dx += col2im(dcolumns)
 *              dbias[o]        += sum_{b, i, j} dy[b, o, i, j]
 * col2im adds each column entry back into the x element it was copied from: it is the transpose
 * of im2col (a gather becomes a scatter-add), which is why padding and overlapping windows need
 * no special care in backward. A 1x1 kernel with stride 1 and no padding needs no columns at
 * all: they are x itself.
 *
 * The batched path, for one group: the whole batch in one product per direction, with x laid
 * out channels-last, the output positions in rows and the channels in columns (conv_batched.c).
 * Its products are long (M = B Ho Wo rows), which gemm runs near its peak; the per-(b, g)
 * products of the models' shapes were short (the ViT's 3x3 conv: 64 products of 16 x 49 x 576
 * at ~15 GFLOP/s).
 *
 * conv1d is conv2d with H = KH = 1 (then the top padding and the vertical stride never matter),
 * so both share one geometry and one implementation; conv1d alone has asymmetric padding
 * (pad_left = K - 1, pad_right = 0 is the causal convolution).
 *
 * Memory (arena; the per-(b, g) path): the columns buffer (Cg KH KW x Ho Wo, reused for every b
 * and g), and in backward a column-gradient buffer of the same size when x needs a gradient
 * (none for a 1x1 stride-1 unpadded kernel); backward recomputes columns into the first rather
 * than keeping one copy per batch element. The batched path's buffers: see conv_batched.c.
 *
 * Determinism: every sum runs in a fixed order on one thread, except inside gemm, whose
 * results do not depend on the thread count either (gemm.c): so neither do the convolutions. */
#include <math.h>
#include <string.h>

#include "conv_batched.h"
#include "gemm.h"
#include "ops.h"
#include "util.h"

/* ---- Geometry (ConvGeometry and its sizes: conv_batched.h) ------------------------------ */

/* 1x1 kernel, stride 1, no padding: the columns matrix (Cg, H W) is the input slab itself. */
static int is_pointwise(const ConvGeometry *g) {
    return g->kernel_h == 1 && g->kernel_w == 1 && g->stride == 1 && g->pad_top == 0 &&
           g->pad_left == 0 && g->out_h == g->in_h && g->out_w == g->in_w;
}

/* ceil(a / s) for a > 0, else 0: the first output index whose tap lands at or after a. */
static int first_at_or_after(int a, int s) {
    return a > 0 ? (a + s - 1) / s : 0;
}

/* Output columns j whose tap j s + q - pad_left falls inside [0, in_w): j in [*lo, *hi). */
static void valid_columns(const ConvGeometry *g, int q, int *lo, int *hi) {
    *lo = first_at_or_after(g->pad_left - q, g->stride);
    *hi = first_at_or_after(g->in_w + g->pad_left - q, g->stride);
    if (*lo > g->out_w) *lo = g->out_w;
    if (*hi > g->out_w) *hi = g->out_w;
    if (*hi < *lo) *hi = *lo;
}

/* ---- im2col and col2im ------------------------------------------------------------------
 * Both walk the same index map (row (c, p, q), column (i, j)) <-> x[c, i s + p - pt, j s + q - pl].
 * For each row and output line i the valid j form one interval, so the inner loops have no
 * bounds tests: zeros before and after, a strided copy (or add) in between. */

/* columns (Cg KH KW, Ho Wo) <- x_group (Cg, H, W), zeros where the tap is in the padding. */
static void im2col(const ConvGeometry *g, const real *x_group, real *columns) {
    const int s = g->stride, out_w = g->out_w;
    real *row = columns;
    for (int c = 0; c < group_in(g); c++)
        for (int p = 0; p < g->kernel_h; p++)
            for (int q = 0; q < g->kernel_w; q++) {
                int lo, hi;
                valid_columns(g, q, &lo, &hi);
                for (int i = 0; i < g->out_h; i++, row += out_w) {
                    int ih = i * s + p - g->pad_top;
                    if (ih < 0 || ih >= g->in_h) {
                        memset(row, 0, (size_t)out_w * sizeof(real));
                        continue;
                    }
                    memset(row, 0, (size_t)lo * sizeof(real));
                    memset(row + hi, 0, (size_t)(out_w - hi) * sizeof(real));
                    if (hi == lo) continue;
                    const real *line = x_group + ((long)c * g->in_h + ih) * g->in_w;
                    const real *tap = line + ((long)lo * s + q - g->pad_left); /* x at j = lo */
                    if (s == 1)
                        memcpy(row + lo, tap, (size_t)(hi - lo) * sizeof(real));
                    else
                        for (int j = lo; j < hi; j++) row[j] = tap[(long)(j - lo) * s];
                }
            }
}

/* dx_group (Cg, H, W) += col2im(column_grads): each entry goes back to the x element it came
 * from; entries that came from the padding are dropped. */
static void col2im_add(const ConvGeometry *g, const real *column_grads, real *dx_group) {
    const int s = g->stride, out_w = g->out_w;
    const real *row = column_grads;
    for (int c = 0; c < group_in(g); c++)
        for (int p = 0; p < g->kernel_h; p++)
            for (int q = 0; q < g->kernel_w; q++) {
                int lo, hi;
                valid_columns(g, q, &lo, &hi);
                for (int i = 0; i < g->out_h; i++, row += out_w) {
                    int ih = i * s + p - g->pad_top;
                    if (ih < 0 || ih >= g->in_h || hi == lo) continue;
                    real *line = dx_group + ((long)c * g->in_h + ih) * g->in_w;
                    real *tap = line + ((long)lo * s + q - g->pad_left);
                    if (s == 1)
                        for (int j = lo; j < hi; j++) tap[j - lo] += row[j];
                    else
                        for (int j = lo; j < hi; j++) tap[(long)(j - lo) * s] += row[j];
                }
            }
}

/* ---- Forward and backward (shared by conv1d and conv2d) ----------------------------------- */

typedef struct ConvSaved {
    ConvGeometry geometry;
    real *columns; /* the forward's im2col buffer (arena), reused as scratch in backward */
} ConvSaved;

/* Slabs of one batch element b and group k: x (Cg, H W), w (Og, Cg KH KW), y (Og, Ho Wo). */
static long x_offset(const ConvGeometry *g, int b, int k) {
    return ((long)b * g->in_channels + (long)k * group_in(g)) * g->in_h * g->in_w;
}
static long w_offset(const ConvGeometry *g, int k) {
    return (long)k * group_out(g) * column_rows(g);
}
static long y_offset(const ConvGeometry *g, int b, int k) {
    return ((long)b * g->out_channels + (long)k * group_out(g)) * column_cols(g);
}

/* y = w * x (+ bias): each output row starts at its bias and gemm accumulates onto it. */
static void conv_forward(const ConvGeometry *g, const real *x, const real *w, const real *bias,
                         real *columns, real *y) {
    const long rows = column_rows(g), cols = column_cols(g);
    for (int b = 0; b < g->batch; b++)
        for (int k = 0; k < g->groups; k++) {
            const real *x_group = x + x_offset(g, b, k);
            real *y_group = y + y_offset(g, b, k);
            if (bias)
                for (int o = 0; o < group_out(g); o++) {
                    real value = bias[k * group_out(g) + o];
                    for (long n = 0; n < cols; n++) y_group[o * cols + n] = value;
                }
            if (!is_pointwise(g)) im2col(g, x_group, columns);
            gemm(0, 0, group_out(g), (int)cols, (int)rows, w + w_offset(g, k), (int)rows,
                 is_pointwise(g) ? x_group : columns, (int)cols, y_group, (int)cols, bias != NULL);
        }
}

/* dbias[o] += sum over b and positions of dy[b, o, :], summed in double: in LANES partial sums
 * (position n into lane n mod LANES, then the lanes in order), which compilers vectorize; one
 * running sum is a chain of dependent adds, 4 cycles each. */
void conv_bias_backward(const ConvGeometry *g, const real *dy, real *dbias) {
    enum { LANES = 8 };
    const long cols = column_cols(g), whole = cols / LANES * LANES;
    for (int o = 0; o < g->out_channels; o++) {
        double lane[LANES] = {0};
        for (int b = 0; b < g->batch; b++) {
            const real *row = dy + ((long)b * g->out_channels + o) * cols;
            for (long n = 0; n < whole; n += LANES)
                for (int k = 0; k < LANES; k++) lane[k] += row[n + k];
            for (long n = whole; n < cols; n++) lane[n - whole] += row[n];
        }
        double sum = 0;
        for (int k = 0; k < LANES; k++) sum += lane[k];
        dbias[o] += (real)sum;
    }
}

static void conv_backward(Tape *tape, TapeRecord *record) {
    const ConvSaved *saved = record->saved;
    const ConvGeometry *g = &saved->geometry;
    Tensor *x = record->inputs[0], *w = record->inputs[1], *y = record->output;
    real *dx = tape_grad(tape, x), *dw = tape_grad(tape, w);
    real *dbias = record->n_inputs == 3 ? tape_grad(tape, record->inputs[2]) : NULL;
    const long rows = column_rows(g), cols = column_cols(g);
    const int pointwise = is_pointwise(g);
    real *column_grads = NULL;
    if (dx && !pointwise) column_grads = arena_alloc(&tape->arena, rows * cols * sizeof(real));

    for (int b = 0; b < g->batch; b++)
        for (int k = 0; k < g->groups; k++) {
            const real *x_group = x->data + x_offset(g, b, k), *w_group = w->data + w_offset(g, k);
            const real *dy_group = y->grad + y_offset(g, b, k);
            if (dw) { /* dw_g (Og, Cg KH KW) += dy_g (Og, Ho Wo) @ columns^T */
                if (!pointwise) im2col(g, x_group, saved->columns);
                gemm(0, 1, group_out(g), (int)rows, (int)cols, dy_group, (int)cols,
                     pointwise ? x_group : saved->columns, (int)cols, dw + w_offset(g, k),
                     (int)rows, 1);
            }
            if (dx && pointwise) /* dx_g (Cg, H W) += w_g^T @ dy_g directly */
                gemm(1, 0, (int)rows, (int)cols, group_out(g), w_group, (int)rows, dy_group,
                     (int)cols, dx + x_offset(g, b, k), (int)cols, 1);
            if (dx && !pointwise) { /* dcolumns = w_g^T @ dy_g; dx_g += col2im(dcolumns) */
                gemm(1, 0, (int)rows, (int)cols, group_out(g), w_group, (int)rows, dy_group,
                     (int)cols, column_grads, (int)cols, 0);
                col2im_add(g, column_grads, dx + x_offset(g, b, k));
            }
        }
    if (dbias) conv_bias_backward(g, y->grad, dbias);
}

/* Runs the convolution described by g and records it; y has shape (B, O, out_shape...). */
static Tensor *conv_run(Tape *tape, const ConvGeometry *g, Tensor *x, Tensor *w, Tensor *bias,
                        int out_ndim, const int *out_shape, const char *name) {
    Tensor *y = tape_tensor(tape, out_ndim, out_shape);
    Tensor *inputs[3] = {x, w, bias};
    const real *bias_data = bias ? bias->data : NULL;
    if (conv_takes_batched_path(g)) {
        conv_batched_run(tape, g, x, w, bias, y, name);
        return y;
    }
    real *columns = NULL;
    if (!is_pointwise(g))
        columns = arena_alloc(&tape->arena, column_rows(g) * column_cols(g) * sizeof(real));
    conv_forward(g, x->data, w->data, bias_data, columns, y->data);
    TapeRecord *record = tape_record(tape, name, conv_backward, y, bias ? 3 : 2, inputs);
    if (record) {
        ConvSaved *saved = tape_save(tape, sizeof *saved);
        *saved = (ConvSaved){.geometry = *g, .columns = columns};
        record->saved = saved;
    }
    return y;
}

/* ---- Argument checks --------------------------------------------------------------------- */

/* Ranks, non-empty w, stride, groups, channel counts and bias, for x of rank 2 + spatial. */
static void check_conv_args(const char *name, const Tensor *x, const Tensor *w, const Tensor *bias,
                            int spatial, int stride, int groups) {
    char xs[64], ws[64], bs[64];
    const char *x_form = spatial == 1 ? "(B, C, L)" : "(B, C, H, W)";
    const char *w_form = spatial == 1 ? "(O, C/groups, K)" : "(O, C/groups, KH, KW)";
    if (x->ndim != 2 + spatial)
        cpool_fail("%s: x must be %s, got shape %s", name, x_form, TENSOR_SHAPE_STR(x, xs));
    int w_ok = w->ndim == 2 + spatial;
    for (int d = 0; d < w->ndim && w_ok; d++) w_ok = w->shape[d] >= 1;
    if (!w_ok)
        cpool_fail("%s: w must be %s with every size >= 1, got shape %s", name, w_form,
                   TENSOR_SHAPE_STR(w, ws));
    if (stride < 1) cpool_fail("%s: stride must be >= 1, got %d", name, stride);
    if (groups < 1) cpool_fail("%s: groups must be >= 1, got %d", name, groups);
    if (x->shape[1] % groups != 0)
        cpool_fail("%s: %d input channels of x %s are not divisible by groups = %d", name,
                   x->shape[1], TENSOR_SHAPE_STR(x, xs), groups);
    if (w->shape[0] % groups != 0)
        cpool_fail("%s: %d output channels of w %s are not divisible by groups = %d", name,
                   w->shape[0], TENSOR_SHAPE_STR(w, ws), groups);
    if (w->shape[1] != x->shape[1] / groups)
        cpool_fail("%s: w %s has %d input channels per group, x %s with groups = %d needs %d", name,
                   TENSOR_SHAPE_STR(w, ws), w->shape[1], TENSOR_SHAPE_STR(x, xs), groups,
                   x->shape[1] / groups);
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        cpool_fail("%s: bias must be (%d) for w %s, got shape %s", name, w->shape[0],
                   TENSOR_SHAPE_STR(w, ws), TENSOR_SHAPE_STR(bias, bs));
}

static ConvGeometry geometry_of(const Tensor *x, const Tensor *w, int groups) {
    return (ConvGeometry){.batch = x->shape[0],
                          .in_channels = x->shape[1],
                          .out_channels = w->shape[0],
                          .groups = groups};
}

/* ---- conv1d, conv2d ---------------------------------------------------------------------- */

Tensor *op_conv1d(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int stride, int pad_left,
                  int pad_right, int groups) {
    check_conv_args("op_conv1d", x, w, bias, 1, stride, groups);
    if (pad_left < 0 || pad_right < 0)
        cpool_fail("op_conv1d: padding must be >= 0, got pad_left = %d, pad_right = %d", pad_left,
                   pad_right);
    int length = x->shape[2], kernel = w->shape[2], padded = length + pad_left + pad_right;
    if (kernel > padded) {
        char xs[64], ws[64];
        cpool_fail("op_conv1d: kernel %d of w %s is larger than the padded input %d (x %s, "
                   "padding %d + %d)",
                   kernel, TENSOR_SHAPE_STR(w, ws), padded, TENSOR_SHAPE_STR(x, xs), pad_left,
                   pad_right);
    }
    ConvGeometry g = geometry_of(x, w, groups);
    g.in_h = g.kernel_h = g.out_h = 1;
    g.in_w = length;
    g.kernel_w = kernel;
    g.stride = stride;
    g.pad_left = pad_left;
    g.out_w = (padded - kernel) / stride + 1;
    int out_shape[3] = {g.batch, g.out_channels, g.out_w};
    return conv_run(tape, &g, x, w, bias, 3, out_shape, "conv1d");
}

Tensor *op_conv2d(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int stride, int padding,
                  int groups) {
    check_conv_args("op_conv2d", x, w, bias, 2, stride, groups);
    if (padding < 0) cpool_fail("op_conv2d: padding must be >= 0, got %d", padding);
    int padded_h = x->shape[2] + 2 * padding, padded_w = x->shape[3] + 2 * padding;
    if (w->shape[2] > padded_h || w->shape[3] > padded_w) {
        char xs[64], ws[64];
        cpool_fail("op_conv2d: kernel %dx%d of w %s is larger than the padded input %dx%d (x %s, "
                   "padding %d)",
                   w->shape[2], w->shape[3], TENSOR_SHAPE_STR(w, ws), padded_h, padded_w,
                   TENSOR_SHAPE_STR(x, xs), padding);
    }
    ConvGeometry g = geometry_of(x, w, groups);
    g.in_h = x->shape[2];
    g.in_w = x->shape[3];
    g.kernel_h = w->shape[2];
    g.kernel_w = w->shape[3];
    g.stride = stride;
    g.pad_top = g.pad_left = padding;
    g.out_h = (padded_h - g.kernel_h) / stride + 1;
    g.out_w = (padded_w - g.kernel_w) / stride + 1;
    int out_shape[4] = {g.batch, g.out_channels, g.out_h, g.out_w};
    return conv_run(tape, &g, x, w, bias, 4, out_shape, "conv2d");
}

/* ---- Pooling ------------------------------------------------------------------------------
 * x (B, C, H, W) -> y (B, C, Ho, Wo), Ho = (H - k) / s + 1 (floor: torch's ceil_mode = False),
 * no padding, each (b, c) plane on its own. Window (i, j) covers rows i s .. i s + k - 1 and
 * columns j s .. j s + k - 1. */

typedef struct PoolSaved {
    int kernel, stride;
    int *argmax; /* maxpool: per output element, the offset ih W + iw of its max in the plane */
} PoolSaved;

/* Rank 4, kernel and stride >= 1, window fits; returns the output shape. */
static void pool_shape(const char *name, const Tensor *x, int kernel, int stride, int *shape) {
    char xs[64];
    if (x->ndim != 4)
        cpool_fail("%s: x must be (B, C, H, W), got shape %s", name, TENSOR_SHAPE_STR(x, xs));
    if (kernel < 1 || stride < 1)
        cpool_fail("%s: kernel and stride must be >= 1, got kernel %d, stride %d", name, kernel,
                   stride);
    if (kernel > x->shape[2] || kernel > x->shape[3])
        cpool_fail("%s: kernel %d is larger than the input %dx%d of x %s", name, kernel,
                   x->shape[2], x->shape[3], TENSOR_SHAPE_STR(x, xs));
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    shape[2] = (x->shape[2] - kernel) / stride + 1;
    shape[3] = (x->shape[3] - kernel) / stride + 1;
}

static PoolSaved *pool_save(Tape *tape, TapeRecord *record, int kernel, int stride, int *argmax) {
    if (!record) return NULL;
    PoolSaved *saved = tape_save(tape, sizeof *saved);
    *saved = (PoolSaved){.kernel = kernel, .stride = stride, .argmax = argmax};
    record->saved = saved;
    return saved;
}

/* avgpool: y[i, j] = (1 / k^2) sum_{p, q < k} x[i s + p, j s + q], so every x element in the
 * window gets dx[i s + p, j s + q] += dy[i, j] / k^2. */
static void avgpool_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    const PoolSaved *saved = record->saved;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    const int k = saved->kernel, s = saved->stride, H = x->shape[2], W = x->shape[3];
    const int out_h = y->shape[2], out_w = y->shape[3];
    const real inv_area = (real)(1.0 / ((double)k * k));
    for (long plane = 0; plane < (long)x->shape[0] * x->shape[1]; plane++) {
        real *dx_plane = dx + plane * H * W;
        const real *dy_plane = y->grad + plane * out_h * out_w;
        for (int i = 0; i < out_h; i++)
            for (int j = 0; j < out_w; j++) {
                real share = dy_plane[i * out_w + j] * inv_area;
                for (int p = 0; p < k; p++) {
                    real *window_row = dx_plane + (long)(i * s + p) * W + (long)j * s;
                    for (int q = 0; q < k; q++) window_row[q] += share;
                }
            }
    }
}

Tensor *op_avgpool2d(Tape *tape, Tensor *x, int kernel, int stride) {
    int shape[4];
    pool_shape("op_avgpool2d", x, kernel, stride, shape);
    Tensor *y = tape_tensor(tape, 4, shape);
    const int H = x->shape[2], W = x->shape[3], out_h = shape[2], out_w = shape[3];
    const double inv_area = 1.0 / ((double)kernel * kernel);
    for (long plane = 0; plane < (long)shape[0] * shape[1]; plane++) {
        const real *x_plane = x->data + plane * H * W;
        real *y_plane = y->data + plane * out_h * out_w;
        for (int i = 0; i < out_h; i++)
            for (int j = 0; j < out_w; j++) {
                double sum = 0; /* in double, as torch's CPU kernel accumulates */
                for (int p = 0; p < kernel; p++) {
                    const real *window_row =
                        x_plane + (long)(i * stride + p) * W + (long)j * stride;
                    for (int q = 0; q < kernel; q++) sum += window_row[q];
                }
                y_plane[i * out_w + j] = (real)(sum * inv_area);
            }
    }
    pool_save(tape, tape_record(tape, "avgpool2d", avgpool_backward, y, 1, &x), kernel, stride,
              NULL);
    return y;
}

/* maxpool: y[i, j] = x[m] where m is the window's maximum; the gradient goes to that one element,
 * dx[m] += dy[i, j]. Ties go to the FIRST maximum in row-major scan order (a later element must
 * be strictly greater to take over), and a NaN takes over as in torch, so NaN propagates. */
static void maxpool_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    const PoolSaved *saved = record->saved;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    const long plane_size = (long)x->shape[2] * x->shape[3];
    const long out_plane = (long)y->shape[2] * y->shape[3];
    for (long plane = 0; plane < (long)x->shape[0] * x->shape[1]; plane++)
        for (long n = 0; n < out_plane; n++)
            dx[plane * plane_size + saved->argmax[plane * out_plane + n]] +=
                y->grad[plane * out_plane + n];
}

/* The offset (in the plane) of the window's first maximum, and that maximum. */
static int window_argmax(const real *x_plane, int W, int top, int left, int kernel, real *max) {
    int best = top * W + left;
    real best_value = -INFINITY;
    for (int p = 0; p < kernel; p++)
        for (int q = 0; q < kernel; q++) {
            int offset = (top + p) * W + left + q;
            real value = x_plane[offset];
            if (value > best_value || isnan(value)) {
                best_value = value;
                best = offset;
            }
        }
    *max = best_value;
    return best;
}

Tensor *op_maxpool2d(Tape *tape, Tensor *x, int kernel, int stride) {
    int shape[4];
    pool_shape("op_maxpool2d", x, kernel, stride, shape);
    Tensor *y = tape_tensor(tape, 4, shape);
    int *argmax = arena_alloc(&tape->arena, (size_t)y->size * sizeof(int));
    const int H = x->shape[2], W = x->shape[3], out_h = shape[2], out_w = shape[3];
    for (long plane = 0; plane < (long)shape[0] * shape[1]; plane++) {
        const real *x_plane = x->data + plane * H * W;
        long first = plane * out_h * out_w;
        for (int i = 0; i < out_h; i++)
            for (int j = 0; j < out_w; j++) {
                long n = first + (long)i * out_w + j;
                argmax[n] = window_argmax(x_plane, W, i * stride, j * stride, kernel, &y->data[n]);
            }
    }
    pool_save(tape, tape_record(tape, "maxpool2d", maxpool_backward, y, 1, &x), kernel, stride,
              argmax);
    return y;
}
