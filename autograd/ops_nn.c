/* ops_nn.c - softmax, log-softmax, cross-entropy, layer normalisation and embedding lookup.
 *
 * All but the embedding work on rows: x (..., D) is seen as (rows, D), rows being the product of
 * the leading dimensions, and each row is transformed on its own. Rows are independent, so large
 * inputs split them across OpenMP threads without changing a single bit of the result; anything
 * summed ACROSS rows is summed in an order fixed by the shape alone: the cross-entropy mean in
 * one thread, in row order; layernorm's weight and bias gradients in chunks of 64 rows (each
 * chunk in row order, possibly on different threads), then the chunks in order. Per-row sums
 * accumulate in double, under `omp simd reduction`: the compiler may keep a vector of partial sums
 * instead of one running sum (a fixed order for a given build, so every run gives the same bits),
 * which makes them several times faster. In float32 the exp loops vectorise too: they call
 * vmath_expf (vmath.h, 1 ulp, no branch, no call).
 */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "simd.h"
#include "util.h"
#include "vmath.h"

/* exp at the working precision: libm in float64; in float32 vmath_expf, which the compiler
 * vectorises and which returns 0 for far-negative d (attention's masked scores, -1e30) without
 * a slow path. */
#ifdef CPOOL_DOUBLE
#define real_exp       exp
#define EXP_ZERO_BELOW (-746.0) /* exp(d) rounds to exactly 0 for every d below this */

/* e^d for d <= 0, with the exact 0 of far-negative d returned at once: masked scores would
 * otherwise take libm's slow underflow path, once per masked entry. */
static inline real exp_nonpositive(real d) {
    return d < EXP_ZERO_BELOW ? 0 : real_exp(d);
}
#else
#define real_exp vmath_expf
VMATH_INLINE real exp_nonpositive(real d) {
    return vmath_expf(d);
}
#endif

/* Below this many elements a single thread is faster than waking the others. */
enum { PARALLEL_MIN_ELEMENTS = 1 << 15 };

/* x (..., D) as (rows, D): D is the last dimension (x must have one), rows the product of the
 * others (computed without dividing, so D = 0 works). */
static long last_axis(const Tensor *x, const char *who, long *rows) {
    int axis = tensor_axis(x, -1, who);
    *rows = shape_size(axis, x->shape);
    return x->shape[axis];
}

/* log sum_k e^(x_k) = m + log_total with log_total = log sum_k e^(x_k - m): every exponent is
 * <= 0, so nothing overflows, and the largest term is exactly 1, so log_total is in [0, log D].
 * The two parts are kept apart: x_j - lse computed as (x_j - m) - log_total never subtracts two
 * large, nearly equal numbers (x = -1000 and lse = -999.31 would leave float32 with 4 digits). */
typedef struct LogSumExp {
    real max;
    double log_total;
} LogSumExp;

static LogSumExp row_log_sum_exp(const real *x, long D) {
    if (D == 0) return (LogSumExp){-INFINITY, -INFINITY}; /* log of an empty sum */
    real m = max_of(x, D);
    double total = 0;
#ifndef CPOOL_DOUBLE /* float32: vmath_expf vectorises (libm's exp in float64 would not) */
#pragma omp simd reduction(+ : total)
#endif
    for (long j = 0; j < D; j++) total += exp_nonpositive(x[j] - m);
    /* total >= 1 (the maximum contributes e^0), or NaN; never the 0 cppcheck fears. */
    // cppcheck-suppress invalidFunctionArg
    return (LogSumExp){m, log(total)};
}

/* --- softmax ------------------------------------------------------------------------------
 * Shapes:   x (..., D) -> y (..., D)
 * Forward:  y_j = e^(x_j - m) / sum_k e^(x_k - m),  m = max_k x_k (m cancels; it only prevents
 *           overflow: 1000 and -1000 give y = (1, 0), not Inf / Inf)
 * Local:    dy_i / dx_j = y_i (delta_ij - y_j)
 * Backward: dx_j += sum_i dy_i y_i (delta_ij - y_j) = y_j (dy_j - sum_i dy_i y_i)             */
static void softmax_row(const real *x, real *y, long D) {
    real m = max_of(x, D);
    for (long j = 0; j < D; j++) y[j] = exp_nonpositive(x[j] - m);
    double total = 0;
#pragma omp simd reduction(+ : total)
    for (long j = 0; j < D; j++) total += y[j];
    real inverse = (real)(1.0 / total);
    for (long j = 0; j < D; j++) y[j] *= inverse;
}

static void softmax_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    long rows, D = last_axis(x, "op_softmax", &rows);
#pragma omp parallel for if (y->size >= PARALLEL_MIN_ELEMENTS)
    for (long r = 0; r < rows; r++) {
        const real *y_row = y->data + r * D, *dy_row = y->grad + r * D;
        double dot = 0; /* sum_i dy_i y_i */
#pragma omp simd reduction(+ : dot)
        for (long j = 0; j < D; j++) dot += (double)dy_row[j] * y_row[j];
        real *dx_row = dx + r * D;
        for (long j = 0; j < D; j++) dx_row[j] += y_row[j] * (dy_row[j] - (real)dot);
    }
}

Tensor *op_softmax(Tape *tape, Tensor *x) {
    long rows, D = last_axis(x, "op_softmax", &rows);
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
#pragma omp parallel for if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long r = 0; r < rows; r++) softmax_row(x->data + r * D, y->data + r * D, D);
    tape_record(tape, "softmax", softmax_backward, y, 1, &x);
    return y;
}

/* --- log_softmax --------------------------------------------------------------------------
 * Shapes:   x (..., D) -> y (..., D)
 * Forward:  y_j = x_j - lse,  lse = log sum_k e^(x_k), computed as (x_j - m) - log_total
 * Local:    dy_i / dx_j = delta_ij - softmax_j,  softmax_j = e^(y_j)
 * Backward: dx_j += dy_j - e^(y_j) sum_i dy_i                                                 */
static void log_softmax_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    long rows, D = last_axis(x, "op_log_softmax", &rows);
#pragma omp parallel for if (y->size >= PARALLEL_MIN_ELEMENTS)
    for (long r = 0; r < rows; r++) {
        const real *y_row = y->data + r * D, *dy_row = y->grad + r * D;
        double dy_sum = 0;
#pragma omp simd reduction(+ : dy_sum)
        for (long j = 0; j < D; j++) dy_sum += dy_row[j];
        real *dx_row = dx + r * D;
        for (long j = 0; j < D; j++) dx_row[j] += dy_row[j] - real_exp(y_row[j]) * (real)dy_sum;
    }
}

Tensor *op_log_softmax(Tape *tape, Tensor *x) {
    long rows, D = last_axis(x, "op_log_softmax", &rows);
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
#pragma omp parallel for if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long r = 0; r < rows; r++) {
        const real *x_row = x->data + r * D;
        LogSumExp lse = row_log_sum_exp(x_row, D);
        real log_total = (real)lse.log_total;
        for (long j = 0; j < D; j++) y->data[r * D + j] = (x_row[j] - lse.max) - log_total;
    }
    tape_record(tape, "log_softmax", log_softmax_backward, y, 1, &x);
    return y;
}

/* --- cross_entropy ------------------------------------------------------------------------
 * Shapes:   logits (..., C) as (rows, C), targets (rows) -> loss ()
 * Forward:  loss = (1/N) sum_{r counted} (lse_r - x[r, t_r]),  lse_r = log sum_j e^(x[r, j]),
 *           counted = the N rows whose target t_r is not ignore_index (loss = 0 if N = 0)
 * Local:    d loss / d x[r, j] = (softmax[r, j] - [j == t_r]) / N for counted rows, else 0
 * Backward: dx[r, j] += dloss * (e^(x[r, j] - lse_r) - [j == t_r]) / N                        */
typedef struct CrossEntropySaved {
    long rows, classes;
    int *targets; /* a copy: the caller may reuse its buffer before backward */
    int ignore_index;
    long counted;
    LogSumExp *lse; /* per row; unused for ignored rows */
} CrossEntropySaved;

/* The logits are usually the head's output, read by nothing else, so dx is new: tape_grad_write
 * lets every element be stored (0 in ignored rows) instead of zeroing the buffer first and
 * adding (a memset and a read of 2 MB for the benchmark char-LM's (2048, 256)). */
static void cross_entropy_backward(Tape *tape, TapeRecord *record) {
    int overwrite;
    real *dx = tape_grad_write(tape, record->inputs[0], &overwrite);
    const CrossEntropySaved *saved = record->saved;
    if (!dx) return;
    const real *x = record->inputs[0]->data;
    long C = saved->classes;
    if (saved->counted == 0) { /* no row counted: the loss is the constant 0 */
        if (overwrite) memset(dx, 0, (size_t)(saved->rows * C) * sizeof(real));
        return;
    }
    real scale = (real)(record->output->grad[0] / (double)saved->counted);
#pragma omp parallel for if (saved->rows * C >= PARALLEL_MIN_ELEMENTS)
    for (long r = 0; r < saved->rows; r++) {
        int target = saved->targets[r];
        real *dx_row = dx + r * C;
        const real *x_row = x + r * C;
        if (target == saved->ignore_index) {
            if (overwrite) memset(dx_row, 0, (size_t)C * sizeof(real));
            continue;
        }
        real m = saved->lse[r].max, log_total = (real)saved->lse[r].log_total;
        if (overwrite)
            for (long j = 0; j < C; j++) dx_row[j] = scale * real_exp((x_row[j] - m) - log_total);
        else
            for (long j = 0; j < C; j++) dx_row[j] += scale * real_exp((x_row[j] - m) - log_total);
        dx_row[target] -= scale;
    }
}

static void check_targets(const int *targets, long rows, long classes, int ignore_index) {
    for (long r = 0; r < rows; r++) {
        int t = targets[r];
        if (t != ignore_index && (t < 0 || t >= classes))
            cpool_fail("op_cross_entropy: target %d at row %ld is out of range [0, %ld) and is "
                       "not ignore_index (%d)",
                       t, r, classes, ignore_index);
    }
}

/* lse[r] for every counted row: rows are independent, so they run in parallel; the sum over rows
 * that follows runs in row order. */
static void counted_log_sum_exp(const Tensor *logits, long rows, long C, const int *targets,
                                int ignore_index, LogSumExp *lse) {
#pragma omp parallel for if (logits->size >= PARALLEL_MIN_ELEMENTS)
    for (long r = 0; r < rows; r++)
        if (targets[r] != ignore_index) lse[r] = row_log_sum_exp(logits->data + r * C, C);
}

Tensor *op_cross_entropy(Tape *tape, Tensor *logits, const int *targets, int ignore_index) {
    long rows, C = last_axis(logits, "op_cross_entropy", &rows);
    check_targets(targets, rows, C, ignore_index);
    CrossEntropySaved *saved = tape_save(tape, sizeof *saved);
    *saved = (CrossEntropySaved){
        .rows = rows,
        .classes = C,
        .targets = tape_save(tape, (size_t)rows * sizeof(int)),
        .ignore_index = ignore_index,
        .lse = tape_save(tape, (size_t)rows * sizeof(LogSumExp)),
    };
    if (rows > 0) memcpy(saved->targets, targets, (size_t)rows * sizeof(int));
    counted_log_sum_exp(logits, rows, C, targets, ignore_index, saved->lse);
    double total = 0; /* sum of lse_r - x[r, t_r] = -log softmax[r, t_r] over counted rows */
    for (long r = 0; r < rows; r++) {
        if (targets[r] == ignore_index) continue;
        LogSumExp lse = saved->lse[r];
        total += (lse.max - (double)logits->data[r * C + targets[r]]) + lse.log_total;
        saved->counted++;
    }
    Tensor *loss = tape_tensor(tape, 0, NULL);
    loss->data[0] = saved->counted ? (real)(total / (double)saved->counted) : 0;
    TapeRecord *record =
        tape_record(tape, "cross_entropy", cross_entropy_backward, loss, 1, &logits);
    if (record) record->saved = saved;
    return loss;
}

/* --- layernorm ----------------------------------------------------------------------------
 * Shapes:   x (..., D) as (rows, D); weight, bias (D) or NULL -> y (..., D)
 * Forward:  mu = (1/D) sum_j x_j,  var = (1/D) sum_j (x_j - mu)^2 (biased, as PyTorch),
 *           rstd = 1 / sqrt(var + eps),  xhat_j = (x_j - mu) rstd,  y_j = xhat_j w_j + b_j
 * Backward: dbias_j += sum_rows dy_j;  dweight_j += sum_rows dy_j xhat_j;  with g_j = dy_j w_j
 *           (the gradient reaching xhat),
 *               dx_k += rstd (g_k - mean_j(g_j) - xhat_k mean_j(g_j xhat_j)).
 * Derivation: dvar/dx_k = (2/D)(x_k - mu) (the mu-dependence sums to zero), so
 *   drstd/dx_k = -(1/2) rstd^3 dvar/dx_k = -rstd^2 xhat_k / D, and
 *   dxhat_j/dx_k = rstd (delta_jk - 1/D) + (x_j - mu) drstd/dx_k
 *                = rstd (delta_jk - 1/D - xhat_j xhat_k / D).
 *   Then dx_k = sum_j g_j dxhat_j/dx_k gives the line above; it is exact, eps included.
 * mean and rstd of each row are saved, so backward gets xhat back without the row statistics. */
typedef struct LayerNormSaved {
    long rows, D;
    real *mean, *rstd; /* per row */
    int has_weight, has_bias;
} LayerNormSaved;

/* n copies of value in the arena: a missing weight is all ones, a missing bias all zeros, so the
 * row loops need no branch. */
static const real *filled(Tape *tape, long n, real value) {
    real *values = tape_save(tape, (size_t)n * sizeof(real));
    for (long i = 0; i < n; i++) values[i] = value;
    return values;
}

static void layernorm_row(const real *x, real *y, long D, const real *weight, const real *bias,
                          real eps, real *mean_out, real *rstd_out) {
    double sum = 0, squares = 0;
#pragma omp simd reduction(+ : sum)
    for (long j = 0; j < D; j++) sum += x[j];
    double mean = sum / (double)D;
#pragma omp simd reduction(+ : squares)
    for (long j = 0; j < D; j++) squares += (x[j] - mean) * (x[j] - mean);
    real mu = (real)mean, rstd = (real)(1.0 / sqrt(squares / (double)D + eps));
    for (long j = 0; j < D; j++) {
        real xhat = (x[j] - mu) * rstd;
        y[j] = xhat * weight[j] + bias[j];
    }
    *mean_out = mu;
    *rstd_out = rstd;
}

/* dweight and dbias are sums over rows. Rows are taken in fixed chunks of this many, each
 * chunk summing into its own partial sums (in double), and the partial sums are added in chunk
 * order afterwards: the same order whatever the number of threads, so the same bits. */
enum { LAYERNORM_CHUNK_ROWS = 64 };

/* One row of the backward (see the derivation above): dx += rstd (g - mean(g) - xhat
 * mean(g xhat)) when dx is not NULL, and this row's share of dweight and dbias,
 * weight_sum_j += dy_j xhat_j and bias_sum_j += dy_j, when weight_sum is not NULL (in the same
 * pass as dx, which has xhat at hand). The arrays do not overlap (restrict: the loops need no
 * run-time overlap checks to vectorise). */
static void layernorm_row_backward(const real *restrict x, const real *restrict dy,
                                   const real *restrict weight, long D, real mu, real rstd,
                                   real *restrict dx, double *restrict weight_sum,
                                   double *restrict bias_sum) {
    if (!dx) {
        for (long j = 0; j < D; j++) {
            weight_sum[j] += dy[j] * ((x[j] - mu) * rstd);
            bias_sum[j] += dy[j];
        }
        return;
    }
    double g_sum = 0, g_xhat_sum = 0;
#pragma omp simd reduction(+ : g_sum, g_xhat_sum)
    for (long j = 0; j < D; j++) {
        real g = dy[j] * weight[j];
        g_sum += g;
        g_xhat_sum += g * ((x[j] - mu) * rstd);
    }
    real g_mean = (real)(g_sum / (double)D), g_xhat_mean = (real)(g_xhat_sum / (double)D);
    if (!weight_sum) {
        for (long j = 0; j < D; j++) {
            real g = dy[j] * weight[j], xhat = (x[j] - mu) * rstd;
            dx[j] += rstd * (g - g_mean - xhat * g_xhat_mean);
        }
        return;
    }
    for (long j = 0; j < D; j++) {
        real g = dy[j] * weight[j], xhat = (x[j] - mu) * rstd;
        dx[j] += rstd * (g - g_mean - xhat * g_xhat_mean);
        weight_sum[j] += dy[j] * xhat;
        bias_sum[j] += dy[j];
    }
}

/* dweight_j += sum_rows dy_j xhat_j and dbias_j += sum_rows dy_j, from the chunks' partial sums
 * (weight_sums[c D + j] for chunk c), added in chunk order in double. */
static void layernorm_affine_total(long chunks, long D, const double *weight_sums,
                                   const double *bias_sums, real *dweight, real *dbias) {
    for (long j = 0; j < D; j++) {
        double weight_total = 0, bias_total = 0;
        for (long c = 0; c < chunks; c++) {
            weight_total += weight_sums[c * D + j];
            bias_total += bias_sums[c * D + j];
        }
        if (dweight) dweight[j] += (real)weight_total;
        if (dbias) dbias[j] += (real)bias_total;
    }
}

/* dx row by row, and each row's share of dweight and dbias in the same pass (one read of x and
 * dy from memory, not two). */
static void layernorm_backward(Tape *tape, TapeRecord *record) {
    const LayerNormSaved *saved = record->saved;
    Tensor *x = record->inputs[0];
    Tensor *weight = saved->has_weight ? record->inputs[1] : NULL;
    Tensor *bias = saved->has_bias ? record->inputs[1 + saved->has_weight] : NULL;
    const real *dy = record->output->grad;
    long D = saved->D, rows = saved->rows;
    real *dx = tape_grad(tape, x);
    real *dweight = weight ? tape_grad(tape, weight) : NULL;
    real *dbias = bias ? tape_grad(tape, bias) : NULL;
    if (!dx && !dweight && !dbias) return;
    long chunks = (rows + LAYERNORM_CHUNK_ROWS - 1) / LAYERNORM_CHUNK_ROWS;
    int affine = dweight || dbias;
    double *weight_sums = affine ? tape_save(tape, (size_t)(chunks * D) * sizeof(double)) : NULL;
    double *bias_sums = affine ? tape_save(tape, (size_t)(chunks * D) * sizeof(double)) : NULL;
    const real *w = weight ? weight->data : filled(tape, D, 1);
#pragma omp parallel for if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long c = 0; c < chunks; c++) {
        long end = (c + 1) * LAYERNORM_CHUNK_ROWS < rows ? (c + 1) * LAYERNORM_CHUNK_ROWS : rows;
        for (long r = c * LAYERNORM_CHUNK_ROWS; r < end; r++)
            layernorm_row_backward(x->data + r * D, dy + r * D, w, D, saved->mean[r],
                                   saved->rstd[r], dx ? dx + r * D : NULL,
                                   affine ? weight_sums + c * D : NULL,
                                   affine ? bias_sums + c * D : NULL);
    }
    if (affine) layernorm_affine_total(chunks, D, weight_sums, bias_sums, dweight, dbias);
}

static void check_affine(const Tensor *t, const char *what, const Tensor *x, long D) {
    if (t && (t->ndim != 1 || t->shape[0] != D)) {
        char got[64], x_shape[64];
        cpool_fail("op_layernorm: %s must have shape (%ld) for x of shape %s, got %s", what, D,
                   TENSOR_SHAPE_STR(x, x_shape), TENSOR_SHAPE_STR(t, got));
    }
}

Tensor *op_layernorm(Tape *tape, Tensor *x, Tensor *weight, Tensor *bias, real eps) {
    long rows, D = last_axis(x, "op_layernorm", &rows);
    check_affine(weight, "weight", x, D);
    check_affine(bias, "bias", x, D);
    LayerNormSaved *saved = tape_save(tape, sizeof *saved);
    *saved = (LayerNormSaved){
        .rows = rows,
        .D = D,
        .mean = tape_save(tape, (size_t)rows * sizeof(real)),
        .rstd = tape_save(tape, (size_t)rows * sizeof(real)),
        .has_weight = weight != NULL,
        .has_bias = bias != NULL,
    };
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
    const real *w = weight ? weight->data : filled(tape, D, 1);
    const real *b = bias ? bias->data : filled(tape, D, 0);
#pragma omp parallel for if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long r = 0; r < rows; r++)
        layernorm_row(x->data + r * D, y->data + r * D, D, w, b, eps, &saved->mean[r],
                      &saved->rstd[r]);

    Tensor *inputs[3] = {x};
    int n_inputs = 1;
    if (weight) inputs[n_inputs++] = weight;
    if (bias) inputs[n_inputs++] = bias;
    TapeRecord *record = tape_record(tape, "layernorm", layernorm_backward, y, n_inputs, inputs);
    if (record) record->saved = saved;
    return y;
}

/* --- embedding ----------------------------------------------------------------------------
 * Shapes:   weight (V, D), ids `shape` with values in [0, V) -> y shape + (D)
 * Forward:  y[p, :] = weight[ids[p], :] for each position p of ids (in row-major order)
 * Local:    dy[p, d] / dweight[v, d] = [ids[p] == v]
 * Backward: dweight[ids[p], :] += dy[p, :]  (an id at several positions receives every row)   */
typedef struct EmbeddingSaved {
    long positions;
    int *ids; /* a copy: the caller may reuse its buffer before backward */
} EmbeddingSaved;

static void embedding_backward(Tape *tape, TapeRecord *record) {
    Tensor *weight = record->inputs[0];
    real *dweight = tape_grad(tape, weight);
    if (!dweight) return;
    const EmbeddingSaved *saved = record->saved;
    long D = weight->shape[1];
    const real *dy = record->output->grad;
    for (long p = 0; p < saved->positions; p++) {
        real *row = dweight + (long)saved->ids[p] * D;
        for (long d = 0; d < D; d++) row[d] += dy[p * D + d];
    }
}

static void check_embedding_args(const Tensor *weight, const int *ids, int ndim, long positions) {
    char shape[64];
    if (weight->ndim != 2)
        cpool_fail("op_embedding: weight must be 2-d (V, D), got shape %s",
                   TENSOR_SHAPE_STR(weight, shape));
    if (ndim + 1 > TENSOR_MAX_DIMS)
        cpool_fail("op_embedding: ids have %d dimensions; the result would have %d, at most %d "
                   "supported",
                   ndim, ndim + 1, TENSOR_MAX_DIMS);
    for (long p = 0; p < positions; p++)
        if (ids[p] < 0 || ids[p] >= weight->shape[0])
            cpool_fail("op_embedding: id %d at position %ld is out of range [0, %d)", ids[p], p,
                       weight->shape[0]);
}

Tensor *op_embedding(Tape *tape, Tensor *weight, const int *ids, int ndim, const int *shape) {
    long positions = shape_size(ndim, shape);
    check_embedding_args(weight, ids, ndim, positions);
    long D = weight->shape[1];
    int out_shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < ndim; d++) out_shape[d] = shape[d];
    out_shape[ndim] = (int)D;
    Tensor *y = tape_tensor(tape, ndim + 1, out_shape);
    for (long p = 0; p < positions; p++)
        memcpy(y->data + p * D, weight->data + (long)ids[p] * D, (size_t)D * sizeof(real));

    TapeRecord *record = tape_record(tape, "embedding", embedding_backward, y, 1, &weight);
    if (record) {
        EmbeddingSaved *saved = tape_save(tape, sizeof *saved);
        *saved = (EmbeddingSaved){.positions = positions,
                                  .ids = tape_save(tape, (size_t)positions * sizeof(int))};
        if (positions > 0) memcpy(saved->ids, ids, (size_t)positions * sizeof(int));
        record->saved = saved;
    }
    return y;
}
