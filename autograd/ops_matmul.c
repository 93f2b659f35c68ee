/* ops_matmul.c - the (batched) matrix product C = op(A) op(B), forward and backward.
 *
 * Shapes. op(A) is (M, K): A is stored (..., M, K), or (..., K, M) when trans_a. op(B) is (K, N):
 * B is stored (..., K, N), or (..., N, K) when trans_b. The leading "batch" dimensions of A and B
 * are equal, or one side is 2-d and is shared by every batch item. C is (..., M, N):
 *     C[n] = op(A[n]) op(B[n])          for each batch item n
 *
 * Backward. For one item, C_ij = sum_k op(A)_ik op(B)_kj, so dC_ij reaches op(A)_ik through
 * op(B)_kj and op(B)_kj through op(A)_ik:
 *     d op(A) += dC op(B)^T        (M, N) x (N, K)
 *     d op(B) += op(A)^T dC        (K, M) x (M, N)
 * and a transposed operand gets the transpose of that: with trans_a, dA = (d op(A))^T = op(B) dC^T
 * (K, M); with trans_b, dB = dC^T op(A) (N, K). A shared 2-d operand sums its gradient over the
 * batch. Every product, forward and backward, is one call to gemm() with the right transposes,
 * so no operand is ever copied into a transposed layout.
 *
 * op_linear (at the end) is the linear layer's x W^T + b as one op of its own.
 *
 * Two shortcuts, both exact:
 *   - B shared and A not transposed: the batch of A is just more rows, so (..., M, K) is treated
 *     as one (batch * M, K) matrix and the whole op is a single gemm (a linear layer's case);
 *     dB = A^T dC is then one gemm summing over every row of every item.
 *   - Many small items: the items are spread over the OpenMP threads, one item per thread at a
 *     time, when each item writes its own output; a shared gradient is summed item by item in
 *     order. Either way each number is computed by one thread in a fixed order (deterministic).
 */
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "util.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* What backward needs to know, saved on the tape. Strides are in elements between consecutive
 * batch items; 0 means the operand is shared by all items. */
typedef struct MatmulPlan {
    int trans_a, trans_b;
    int M, N, K;
    int batch;
    long a_stride, b_stride, c_stride;
} MatmulPlan;

/* Row lengths of A and B as stored: what gemm calls lda and ldb. */
static int lda_of(const MatmulPlan *p) {
    return p->trans_a ? p->M : p->K;
}
static int ldb_of(const MatmulPlan *p) {
    return p->trans_b ? p->K : p->N;
}

/* Spread batch items over threads when there are enough of them to keep every thread busy, or
 * when each item is too small for gemm to split among threads itself (gemm.c stays on one
 * thread below 4e6 flops). */
static int batch_in_parallel(const MatmulPlan *p) {
#ifdef _OPENMP
    /* Below ~1 MFLOP in total, waking a second thread costs more than the work itself (seen in
     * the gradient checks: 3-20x slower with two threads on tiny attention products). */
    double item_flops = 2.0 * p->M * p->N * p->K;
    if (p->batch * item_flops < 1e6) return 0;
    return p->batch > 1 && (p->batch >= omp_get_max_threads() || item_flops < 4e6);
#else
    (void)p;
    return 0;
#endif
}

/* Fail with "op_matmul: <what>: a (2, 3) x b (4, 5)"; a transposed operand reads
 * "a (3, 2) transposed". */
_Noreturn static void fail_shapes(const char *what, const Tensor *a, const Tensor *b, int trans_a,
                                  int trans_b) {
    char a_shape[64], b_shape[64];
    cpool_fail("op_matmul: %s: a %s%s x b %s%s", what, TENSOR_SHAPE_STR(a, a_shape),
               trans_a ? " transposed" : "", TENSOR_SHAPE_STR(b, b_shape),
               trans_b ? " transposed" : "");
}

/* Check the shapes and work out M, N, K, the batch and the strides. */
static MatmulPlan plan_matmul(const Tensor *a, const Tensor *b, int trans_a, int trans_b) {
    if (a->ndim < 2 || b->ndim < 2)
        fail_shapes("both operands need at least 2 dimensions", a, b, trans_a, trans_b);
    const int *as = a->shape + a->ndim - 2, *bs = b->shape + b->ndim - 2; /* the matrix dims */
    MatmulPlan p = {.trans_a = trans_a != 0, .trans_b = trans_b != 0};
    p.M = trans_a ? as[1] : as[0];
    p.K = trans_a ? as[0] : as[1];
    p.N = trans_b ? bs[0] : bs[1];
    int b_inner = trans_b ? bs[1] : bs[0];
    if (p.K != b_inner) fail_shapes("inner dimensions differ", a, b, trans_a, trans_b);
    if (a->ndim > 2 && b->ndim > 2) {
        int same = a->ndim == b->ndim;
        for (int d = 0; same && d < a->ndim - 2; d++) same = a->shape[d] == b->shape[d];
        if (!same) fail_shapes("batch dimensions differ", a, b, trans_a, trans_b);
    }
    const Tensor *batched = a->ndim > 2 ? a : b;
    p.batch = (int)shape_size(batched->ndim - 2, batched->shape);
    p.a_stride = a->ndim > 2 ? (long)p.M * p.K : 0;
    p.b_stride = b->ndim > 2 ? (long)p.K * p.N : 0;
    p.c_stride = (long)p.M * p.N;
    if (p.b_stride == 0 && !p.trans_a) { /* B shared: A's batch is just more rows */
        p.M *= p.batch;
        p.batch = 1;
        p.a_stride = p.c_stride = 0;
    }
    return p;
}

/* One batch item n of each product; x, y and out are whole tensors' data. A gradient item adds
 * into out, or stores into it when `overwrite` (a fresh buffer, see tape_grad_write) and it is
 * the first item to reach that memory: every item of a per-item gradient, item 0 of a shared one.
 */
typedef void (*ItemFn)(const MatmulPlan *p, int n, const real *x, const real *y, real *out,
                       int overwrite);

/* Forward: C[n] = op(A[n]) op(B[n]). */
static void forward_item(const MatmulPlan *p, int n, const real *A, const real *B, real *C,
                         int overwrite) {
    (void)overwrite; /* C is always written */
    gemm(p->trans_a, p->trans_b, p->M, p->N, p->K, A + n * p->a_stride, lda_of(p),
         B + n * p->b_stride, ldb_of(p), C + n * p->c_stride, p->N, 0);
}

/* dA[n] += dC[n] op(B[n])^T (M, K), or with trans_a dA[n] += op(B[n]) dC[n]^T (K, M). */
static void grad_a_item(const MatmulPlan *p, int n, const real *dC, const real *B, real *dA,
                        int overwrite) {
    int accumulate = !overwrite || (p->a_stride == 0 && n > 0);
    dC += n * p->c_stride;
    B += n * p->b_stride;
    dA += n * p->a_stride;
    if (!p->trans_a)
        gemm(0, !p->trans_b, p->M, p->K, p->N, dC, p->N, B, ldb_of(p), dA, p->K, accumulate);
    else
        gemm(p->trans_b, 1, p->K, p->M, p->N, B, ldb_of(p), dC, p->N, dA, p->M, accumulate);
}

/* dB[n] += op(A[n])^T dC[n] (K, N), or with trans_b dB[n] += dC[n]^T op(A[n]) (N, K). */
static void grad_b_item(const MatmulPlan *p, int n, const real *A, const real *dC, real *dB,
                        int overwrite) {
    int accumulate = !overwrite || (p->b_stride == 0 && n > 0);
    A += n * p->a_stride;
    dC += n * p->c_stride;
    dB += n * p->b_stride;
    if (!p->trans_b)
        gemm(!p->trans_a, 0, p->K, p->N, p->M, A, lda_of(p), dC, p->N, dB, p->N, accumulate);
    else
        gemm(1, p->trans_a, p->N, p->K, p->M, dC, p->N, A, lda_of(p), dB, p->K, accumulate);
}

/* Every item in order on this thread, or the items spread over the threads (each item's output
 * must then be its own). The parallel region is opened only when it is used: inside an inactive
 * one (`if (0)`), gemm's own parallel region would be a nested one, for which libgomp creates a
 * new thread on every call instead of reusing its pool. Inside an active one, gemm runs on the
 * calling thread alone. */
static void for_each_item(const MatmulPlan *p, int parallel, ItemFn item, const real *x,
                          const real *y, real *out, int overwrite) {
    if (parallel) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < p->batch; n++) item(p, n, x, y, out, overwrite);
    } else {
        for (int n = 0; n < p->batch; n++) item(p, n, x, y, out, overwrite);
    }
}

static void matmul_backward(Tape *tape, TapeRecord *record) {
    const MatmulPlan *p = record->saved;
    Tensor *a = record->inputs[0], *b = record->inputs[1];
    const real *dC = record->output->grad;
    /* (With a == b, as in X X^T, dB finds dA's contribution there: it adds.) */
    int overwrite_a, overwrite_b;
    real *dA = tape_grad_write(tape, a, &overwrite_a), *dB = tape_grad_write(tape, b, &overwrite_b);
    /* A gradient shared by all items (stride 0) is summed item by item, in order, on one
     * thread; a per-item gradient may be computed for several items at once. */
    if (dA)
        for_each_item(p, p->a_stride != 0 && batch_in_parallel(p), grad_a_item, dC, b->data, dA,
                      overwrite_a);
    if (dB)
        for_each_item(p, p->b_stride != 0 && batch_in_parallel(p), grad_b_item, a->data, dC, dB,
                      overwrite_b);
}

Tensor *op_matmul(Tape *tape, Tensor *a, Tensor *b, int trans_a, int trans_b) {
    MatmulPlan plan = plan_matmul(a, b, trans_a, trans_b);
    /* C's shape: the batch dims of the batched operand (a if both are), then (M, N). */
    const Tensor *batched = a->ndim >= b->ndim ? a : b;
    int shape[TENSOR_MAX_DIMS];
    for (int d = 0; d < batched->ndim - 2; d++) shape[d] = batched->shape[d];
    shape[batched->ndim - 2] = trans_a ? a->shape[a->ndim - 1] : a->shape[a->ndim - 2];
    shape[batched->ndim - 1] = plan.N;
    Tensor *c = tape_tensor(tape, batched->ndim, shape);
    for_each_item(&plan, batch_in_parallel(&plan), forward_item, a->data, b->data, c->data, 1);

    Tensor *inputs[2] = {a, b};
    TapeRecord *record = tape_record(tape, "matmul", matmul_backward, c, 2, inputs);
    if (record) {
        MatmulPlan *saved = tape_save(tape, sizeof *saved);
        *saved = plan;
        record->saved = saved;
    }
    return c;
}

/* ---- linear: y = x W^T + b as one op ----------------------------------------------------
 * x (..., in) is R = x->size / in rows; weight W (out, in); bias b (out) or NULL; y (..., out):
 *     y_rj = b_j + sum_k x_rk W_jk
 * Forward: ONE gemm, (R, in) x (in, out), adding b to each row as it stores (gemm_bias).
 * Backward, from dy (R, out):
 *     dx += dy W        (R, out) x (out, in)    dy_rj reaches x_rk through W_jk,
 *     dW += dy^T x      (out, R) x (R, in)      and W_jk through x_rk, summed over the rows;
 *     db += sum_r dy_r  (out)                   b_j is in every row (summed in double).
 * This is op_add(op_matmul(x2, W, 0, 1), b) on x reshaped to (R, in), bit for bit, with one
 * record instead of up to four (reshape, matmul, add, reshape), no intermediate tensor and no
 * zeroed gradient buffers for intermediates. */
static void linear_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *weight = record->inputs[1];
    Tensor *bias = record->n_inputs > 2 ? record->inputs[2] : NULL;
    int out = weight->shape[0], in = weight->shape[1];
    int rows = (int)shape_size(x->ndim - 1, x->shape);
    const real *dy = record->output->grad;
    int overwrite_x;
    real *dx = tape_grad_write(tape, x, &overwrite_x), *dw = tape_grad(tape, weight);
    if (dx) gemm(0, 0, rows, in, out, dy, out, weight->data, in, dx, in, !overwrite_x);
    if (dw) gemm(1, 0, out, in, rows, dy, out, x->data, in, dw, in, 1);
    real *db = bias ? tape_grad(tape, bias) : NULL;
    if (!db) return;
    double *sums = tape_save(tape, (size_t)out * sizeof(double)); /* zeroed */
    for (long r = 0; r < rows; r++)
        for (int j = 0; j < out; j++) sums[j] += dy[r * out + j];
    for (int j = 0; j < out; j++) db[j] += (real)sums[j];
}

/* Fail with "op_linear: <what>: x (2, 3), weight (4, 5), bias (4)". */
_Noreturn static void fail_linear(const char *what, const Tensor *x, const Tensor *weight,
                                  const Tensor *bias) {
    char x_shape[64], w_shape[64], b_shape[64] = "none";
    if (bias) TENSOR_SHAPE_STR(bias, b_shape);
    cpool_fail("op_linear: %s: x %s, weight %s, bias %s", what, TENSOR_SHAPE_STR(x, x_shape),
               TENSOR_SHAPE_STR(weight, w_shape), b_shape);
}

Tensor *op_linear(Tape *tape, Tensor *x, Tensor *weight, Tensor *bias) {
    if (weight->ndim != 2) fail_linear("weight must be (out, in)", x, weight, bias);
    int out = weight->shape[0], in = weight->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in)
        fail_linear("x must be (..., in) with weight's in", x, weight, bias);
    if (bias && (bias->ndim != 1 || bias->shape[0] != out))
        fail_linear("bias must be (out)", x, weight, bias);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    Tensor *y = tape_tensor(tape, x->ndim, shape);     /* (..., out) */
    int rows = (int)shape_size(x->ndim - 1, x->shape); /* x's leading dims */
    if (bias) /* y = x W^T + b, the bias added as each tile is stored */
        gemm_bias(1, rows, out, in, x->data, in, weight->data, in, bias->data, y->data, out);
    else
        gemm(0, 1, rows, out, in, x->data, in, weight->data, in, y->data, out, 0);
    Tensor *inputs[3] = {x, weight, bias};
    tape_record(tape, "linear", linear_backward, y, bias ? 3 : 2, inputs);
    return y;
}
