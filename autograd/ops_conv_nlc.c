/* ops_conv_nlc.c - conv1d on a channels-last sequence: x (B, L, C) -> y (B, L_out, O).
 *
 * The convolution of op_conv1d (ops_conv.c) with stride 1 and one group, with PyTorch's weight
 * layout w (O, C, K), on a sequence laid out as the transformer blocks keep it, one row of C
 * channels per position:
 *
 *   y[b, l, o] = bias[o] + sum_{p < K, c < C} x[b, l + p - pad_left, c] w[o, c, p]
 *
 * with x = 0 outside [0, L) and L_out = L + pad_left + pad_right - K + 1: op_conv1d of x
 * transposed to (B, C, L), transposed back. ContextPool's predictor runs on the block's input
 * (B, N, D); through op_conv1d it paid for a transpose of x, op_conv1d's own channels-last copy
 * of it, and both again in backward.
 *
 * Windows read in place. The window of output row l is the K input rows l - pad_left ..
 * l - pad_left + K - 1: K C contiguous reals of x, ordered (p, c). So x read in place with row
 * stride C (consecutive rows overlap) is the im2col matrix, for every row whose window lies
 * inside its sequence - the interior, l in [pad_left, pad_left + L - K]. For each sequence b:
 *
 *   forward:   y_b[interior]  (+)= windows(x_b) @ w_t              w_t[(p, c), o] = w[o, c, p]
 *   backward:  dw_r           += dy_b[interior]^T @ windows(x_b)   dw[o, c, p] += dw_r[o, (p, c)]
 *              dx_b           += windows(dy_b) @ w_flip            (below)
 *              dbias[o]       += sum_l dy_b[l, o]
 *
 * The edge rows, whose windows reach into the padding (pad_left + pad_right of them per sequence
 * when L_out = L: 2 of 256 for the char-LM's causal k = 3), are summed directly over their taps
 * inside x. Nothing is copied and nothing is padded.
 *
 * dx is itself such a product, a convolution of dy with the kernel flipped:
 *
 *   dx[b, t, c] = sum_{p, o} dy[b, t + pad_left - p, o] w[o, c, p]
 *               = sum_{q, o} dy[b, t - lead + q, o] w_flip[(q, o), c]      (q = K - 1 - p)
 *   w_flip[(q, o), c] = w[o, c, K - 1 - q],   lead = K - 1 - pad_left
 *
 * so forward and dx share windowed_product: dst row r (+)= the K src rows r - lead + q times the
 * K row blocks of a (K m, n) matrix. (Each dx row is one row of one gemm, K O terms long; one
 * product per tap would add into dx K times.)
 *
 * One product per sequence, not one over the whole batch: that one would also cover windows
 * straddling two sequences, which forward could overwrite afterwards but dx and dw (sums into
 * gradients that may hold other contributions) could not. On the char-LM's shapes the 8 products
 * of 254 rows ran within 5% of one of 2046 (one thread). dw as dy^T @ windows rather than its
 * transpose: 0.55 against 0.58 ms for the k = 3 conv, 0.017 against 0.035 ms for the 1x1.
 *
 * Memory (arena): w_t (K C O reals) in forward; w_flip and dw_r (K C O each) in backward.
 *
 * Determinism: every sum runs in a fixed order, on one thread or in gemm, whose results do not
 * depend on the thread count (gemm.c). */
#include <limits.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "util.h"

typedef struct ConvNlcSaved {
    int pad_left;
} ConvNlcSaved;

/* Rows r of dst in [*lo, *hi) take a whole window of src: r - lead >= 0 and
 * r - lead + K <= src_rows. The rest of dst's rows are edge rows. */
static void interior_rows(int src_rows, int dst_rows, int K, int lead, int *lo, int *hi) {
    *lo = lead > 0 ? lead : 0;
    *hi = lead + src_rows - K + 1;
    if (*hi > dst_rows) *hi = dst_rows;
    if (*lo > dst_rows) *lo = dst_rows;
    if (*hi < *lo) *hi = *lo;
}

/* dst (dst_rows, n) += windows of src (src_rows, m) @ matrix (K m, n), where row r's window is
 * the src rows r - lead + q, q < K, and a row outside [0, src_rows) is zero (the padding):
 *
 *   dst[r, j] += sum_{q, i} src[r - lead + q, i] matrix[q m + i, j]
 *
 * One gemm for the interior rows (src read in place, row stride m), a direct sum for the edge
 * rows over their taps inside src. */
static void windowed_product(const real *src, int src_rows, int m, const real *matrix, int K,
                             int lead, real *dst, int dst_rows, int n) {
    int lo, hi;
    interior_rows(src_rows, dst_rows, K, lead, &lo, &hi);
    if (hi > lo)
        gemm(0, 0, hi - lo, n, K * m, src + (long)(lo - lead) * m, m, matrix, n, dst + (long)lo * n,
             n, 1);
    for (int r = 0; r < dst_rows; r++) {
        if (r == lo) r = hi; /* skip the interior */
        if (r >= dst_rows) break;
        real *dst_row = dst + (long)r * n;
        for (int q = 0; q < K; q++) {
            int s = r - lead + q;
            if (s < 0 || s >= src_rows) continue;
            for (int i = 0; i < m; i++) {
                const real v = src[(long)s * m + i], *matrix_row = matrix + ((long)q * m + i) * n;
                for (int j = 0; j < n; j++) dst_row[j] += v * matrix_row[j];
            }
        }
    }
}

/* dw_r (O, K C) += dy^T @ windows(x): the forward's windowed_product differentiated with respect
 * to its matrix, in the same two parts (interior rows by gemm, edge rows directly):
 *
 *   dw_r[o, q C + c] += sum_l dy[l, o] x[l - pad_left + q, c]   over l with that row inside x */
static void windowed_weight_grad(const real *x, int L, int C, const real *dy, int L_out, int O,
                                 int K, int pad_left, real *dw_r) {
    int lo, hi;
    interior_rows(L, L_out, K, pad_left, &lo, &hi);
    if (hi > lo)
        gemm(1, 0, O, K * C, hi - lo, dy + (long)lo * O, O, x + (long)(lo - pad_left) * C, C, dw_r,
             K * C, 1);
    for (int l = 0; l < L_out; l++) {
        if (l == lo) l = hi;
        if (l >= L_out) break;
        for (int q = 0; q < K; q++) {
            int s = l - pad_left + q;
            if (s < 0 || s >= L) continue;
            const real *x_row = x + (long)s * C;
            for (int o = 0; o < O; o++) {
                const real v = dy[(long)l * O + o];
                real *dw_row = dw_r + (long)o * K * C + (long)q * C;
                for (int c = 0; c < C; c++) dw_row[c] += v * x_row[c];
            }
        }
    }
}

/* w_t[(p, c), o] = w[o, c, p]: the forward's (K C, O) matrix. */
static void weights_by_tap(const real *w, int O, int C, int K, real *w_t) {
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < K; p++)
                w_t[((long)p * C + c) * O + o] = w[((long)o * C + c) * K + p];
}

/* w_flip[(q, o), c] = w[o, c, K - 1 - q]: dx's (K O, C) matrix. */
static void weights_flipped(const real *w, int O, int C, int K, real *w_flip) {
    for (int o = 0; o < O; o++)
        for (int c = 0; c < C; c++)
            for (int p = 0; p < K; p++)
                w_flip[((long)(K - 1 - p) * O + o) * C + c] = w[((long)o * C + c) * K + p];
}

/* dbias[o] += sum over all rows of dy (rows, O), each channel summed in double (rows in order;
 * the loop over o vectorizes). */
static void bias_grad(Tape *tape, const real *dy, long rows, int O, real *dbias) {
    double *sum = arena_alloc(&tape->arena, (size_t)O * sizeof(double));
    memset(sum, 0, (size_t)O * sizeof(double));
    for (long r = 0; r < rows; r++)
        for (int o = 0; o < O; o++) sum[o] += dy[r * O + o];
    for (int o = 0; o < O; o++) dbias[o] += (real)sum[o];
}

/* The products run one sequence at a time, so that no window spans two batch elements. A 1x1
 * kernel without padding has no window to span: the batch is then one sequence of B L rows and
 * each product one gemm instead of B (the predictor's 1x1 conv, 32 -> 2 channels on the
 * char-LM's (8, 256): forward and backward ~8% faster, one thread). */
typedef struct Sequences {
    int count, length, length_out; /* rows of x and of y per sequence */
} Sequences;

static Sequences sequences_of(int B, int L, int L_out, int K, int pad_left) {
    if (K == 1 && pad_left == 0 && L_out == L && (long)B * L <= INT_MAX)
        return (Sequences){.count = 1, .length = B * L, .length_out = B * L};
    return (Sequences){.count = B, .length = L, .length_out = L_out};
}

static void conv1d_nlc_backward(Tape *tape, TapeRecord *record) {
    const ConvNlcSaved *saved = record->saved;
    Tensor *x = record->inputs[0], *w = record->inputs[1], *y = record->output;
    real *dx = tape_grad(tape, x), *dw = tape_grad(tape, w);
    real *dbias = record->n_inputs == 3 ? tape_grad(tape, record->inputs[2]) : NULL;
    const int B = x->shape[0], L = x->shape[1], C = x->shape[2];
    const int O = w->shape[0], K = w->shape[2], L_out = y->shape[1];
    const size_t matrix_bytes = (size_t)K * C * O * sizeof(real);
    real *dw_r = NULL, *w_flip = NULL;
    if (dw) {
        dw_r = arena_alloc(&tape->arena, matrix_bytes);
        memset(dw_r, 0, matrix_bytes);
    }
    if (dx) {
        w_flip = arena_alloc(&tape->arena, matrix_bytes);
        weights_flipped(w->data, O, C, K, w_flip);
    }
    const Sequences s = sequences_of(B, L, L_out, K, saved->pad_left);
    for (int b = 0; b < s.count; b++) { /* dw and dx of one sequence, while its dy is in cache */
        const real *x_b = x->data + (long)b * s.length * C;
        const real *dy_b = y->grad + (long)b * s.length_out * O;
        if (dw)
            windowed_weight_grad(x_b, s.length, C, dy_b, s.length_out, O, K, saved->pad_left, dw_r);
        if (dx)
            windowed_product(dy_b, s.length_out, O, w_flip, K, K - 1 - saved->pad_left,
                             dx + (long)b * s.length * C, s.length, C);
    }
    if (dw) /* dw[o, c, p] += dw_r[o, (p, c)] */
        for (int o = 0; o < O; o++)
            for (int c = 0; c < C; c++)
                for (int p = 0; p < K; p++)
                    dw[((long)o * C + c) * K + p] += dw_r[((long)o * K + p) * C + c];
    if (dbias) bias_grad(tape, y->grad, (long)B * L_out, O, dbias);
}

/* x (B, L, C), w (O, C, K) with every size >= 1, bias (O) or NULL, padding >= 0, window fits. */
static void check_conv1d_nlc_args(const Tensor *x, const Tensor *w, const Tensor *bias,
                                  int pad_left, int pad_right) {
    char xs[64], ws[64], bs[64];
    if (x->ndim != 3)
        cpool_fail("op_conv1d_nlc: x must be (B, L, C), got shape %s", TENSOR_SHAPE_STR(x, xs));
    int w_ok = w->ndim == 3;
    for (int d = 0; d < w->ndim && w_ok; d++) w_ok = w->shape[d] >= 1;
    if (!w_ok)
        cpool_fail("op_conv1d_nlc: w must be (O, C, K) with every size >= 1, got shape %s",
                   TENSOR_SHAPE_STR(w, ws));
    if (w->shape[1] != x->shape[2])
        cpool_fail("op_conv1d_nlc: w %s has %d input channels, x %s has %d (its last axis; one "
                   "group only)",
                   TENSOR_SHAPE_STR(w, ws), w->shape[1], TENSOR_SHAPE_STR(x, xs), x->shape[2]);
    if (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))
        cpool_fail("op_conv1d_nlc: bias must be (%d) for w %s, got shape %s", w->shape[0],
                   TENSOR_SHAPE_STR(w, ws), TENSOR_SHAPE_STR(bias, bs));
    if (pad_left < 0 || pad_right < 0)
        cpool_fail("op_conv1d_nlc: padding must be >= 0, got pad_left = %d, pad_right = %d",
                   pad_left, pad_right);
    long padded = (long)x->shape[1] + pad_left + pad_right;
    if (w->shape[2] > padded)
        cpool_fail("op_conv1d_nlc: kernel %d of w %s is larger than the padded input %ld (x %s, "
                   "padding %d + %d)",
                   w->shape[2], TENSOR_SHAPE_STR(w, ws), padded, TENSOR_SHAPE_STR(x, xs), pad_left,
                   pad_right);
}

Tensor *op_conv1d_nlc(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int pad_left, int pad_right) {
    check_conv1d_nlc_args(x, w, bias, pad_left, pad_right);
    const int B = x->shape[0], L = x->shape[1], C = x->shape[2];
    const int O = w->shape[0], K = w->shape[2], L_out = L + pad_left + pad_right - K + 1;
    Tensor *y = tape_tensor(tape, 3, (int[]){B, L_out, O});
    real *w_t = arena_alloc(&tape->arena, (size_t)K * C * O * sizeof(real));
    weights_by_tap(w->data, O, C, K, w_t);
    for (long r = 0; r < (long)B * L_out; r++) /* each row starts at the bias; products add */
        for (int o = 0; o < O; o++) y->data[r * O + o] = bias ? bias->data[o] : 0;
    const Sequences s = sequences_of(B, L, L_out, K, pad_left);
    for (int b = 0; b < s.count; b++)
        windowed_product(x->data + (long)b * s.length * C, s.length, C, w_t, K, pad_left,
                         y->data + (long)b * s.length_out * O, s.length_out, O);
    Tensor *inputs[3] = {x, w, bias};
    TapeRecord *record =
        tape_record(tape, "conv1d_nlc", conv1d_nlc_backward, y, bias ? 3 : 2, inputs);
    if (record) {
        ConvNlcSaved *saved = tape_save(tape, sizeof *saved);
        saved->pad_left = pad_left;
        record->saved = saved;
    }
    return y;
}
