/* ops_attention.c - scaled dot-product attention as one fused op, forward and backward.
 *
 * Shapes. q, k, v (B, H, N, dh) -> o (B, H, N, dh); P (B, H, N, N) is saved. For one item
 * (b, h), with c = 1 / sqrt(dh) and the keys row i may see
 *     seen(i) = { j : j <= i if causal, |i - j| <= window if window > 0 }    (i itself always)
 * the forward is
 *     S_ij = c q_i . k_j                      for j in seen(i); no other score is formed
 *     P_ij = e^(S_ij - m_i) / sum_{l in seen(i)} e^(S_il - m_i),  m_i = max_{l in seen(i)} S_il
 *     P_ij = 0                                for j outside seen(i) (exactly: never exp'd)
 *     o_i  = sum_j P_ij v_j                   O = P V
 * the same numbers as the chain scale -> matmul -> masked_fill -> softmax -> matmul, whose
 * masked scores (-1e30) underflow to the same exact 0.
 *
 * Backward, given dO. O = P V is a matrix product, so (ops_matmul.c)
 *     dV += P^T dO                            (N, N)^T x (N, dh)
 *     dP  = dO V^T                            (N, dh) x (N, dh)^T
 * P is a row softmax of S (ops_nn.c): dS_ij = P_ij (dP_ij - sum_l dP_il P_il), written
 *     dS  = P * (dP - rowsum(dP * P))         (* elementwise; 0 wherever P is 0)
 * and S = c Q K^T is a product again:
 *     dQ += c dS K                            (N, N) x (N, dh)
 *     dK += c dS^T Q                          (N, N)^T x (N, dh)
 * Nothing but P is kept between forward and backward: the scores, their exponentials and dP
 * exist only one block of rows at a time.
 *
 * Blocks of rows. Rows are taken ROW_BLOCK at a time; a block [r0, r1) reads only the columns
 * [c0, c1) that some of its rows see (c0 from its first row, c1 from its last), so a causal layer
 * skips most of the masked triangle and a window layer works on a band: each product above is
 * one gemm on the block's rows and columns. Every entry of a block outside a row's seen(i) has
 * P = 0, so the products need no mask; only the softmax does.
 *
 * Threads. One item (b, h) per iteration when there are enough items (each writes only its own
 * slices of o, P, dq, dk, dv, in a fixed order), so the bits do not depend on the thread count.
 * With few items the loop stays on one thread and gemm splits each product itself.
 */
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "util.h"
#include "vmath.h"

#ifdef _OPENMP
#include <omp.h>
#endif

/* float32: vmath_expf (vmath.h: 1 ulp, branch-free, so the exp loop vectorises); float64: libm. */
#ifdef CPOOL_DOUBLE
#define real_exp exp
#else
#define real_exp vmath_expf
#endif

enum { ROW_BLOCK = 64 };

/* What backward needs besides the inputs and the output. */
typedef struct AttentionSaved {
    int causal, window;
    Tensor *probs; /* P (B, H, N, N) */
} AttentionSaved;

/* The item geometry: N tokens of dh features, the mask, the score scale c. */
typedef struct AttentionPlan {
    int N, dh, causal, window;
    long items;
    real scale;
} AttentionPlan;

/* seen(i) = [first_key(i), last_key(i)]. */
static int first_key(const AttentionPlan *p, int i) {
    return p->window > 0 && i - p->window > 0 ? i - p->window : 0;
}
static int last_key(const AttentionPlan *p, int i) {
    int last = p->causal ? i : p->N - 1;
    return p->window > 0 && i + p->window < last ? i + p->window : last;
}

static int block_end(const AttentionPlan *p, int r0) {
    return r0 + ROW_BLOCK < p->N ? r0 + ROW_BLOCK : p->N;
}

/* Items in parallel when there are at least as many as threads and enough work to wake them
 * (about 4 N^2 dh flops per item forward). */
static int items_in_parallel(const AttentionPlan *p) {
#ifdef _OPENMP
    double flops = 4.0 * p->items * p->N * p->N * p->dh;
    return p->items >= omp_get_max_threads() && omp_get_max_threads() > 1 && flops >= 1e6;
#else
    (void)p;
    return 0;
#endif
}

/* Row i of P from its scores, in place: row holds S_ij / c for j in [c0, c1) on entry (the
 * gemm's q_i . k_j). Entries outside seen(i) are set to 0 without being exp'd. */
static void softmax_row(const AttentionPlan *p, int i, int c0, int c1, real *row) {
    int lo = first_key(p, i), hi = last_key(p, i);
    for (int j = c0; j < lo; j++) row[j] = 0;
    for (int j = hi + 1; j < c1; j++) row[j] = 0;
    real m = -INFINITY;
    for (int j = lo; j <= hi; j++) {
        row[j] *= p->scale; /* S_ij */
        m = row[j] > m ? row[j] : m;
    }
    for (int j = lo; j <= hi; j++) row[j] = real_exp(row[j] - m);
    double total = 0; /* in double, a vector of partial sums (a fixed order for a given build) */
#pragma omp simd reduction(+ : total)
    for (int j = lo; j <= hi; j++) total += row[j];
    real inverse = (real)(1.0 / total);
    for (int j = lo; j <= hi; j++) row[j] *= inverse;
}

/* One item: P (N, N) and o (N, dh) from q, k, v (N, dh). */
static void forward_item(const AttentionPlan *p, const real *q, const real *k, const real *v,
                         real *P, real *o) {
    int N = p->N, dh = p->dh;
    for (int r0 = 0; r0 < N; r0 += ROW_BLOCK) {
        int r1 = block_end(p, r0), c0 = first_key(p, r0), c1 = last_key(p, r1 - 1) + 1;
        real *P_block = P + (long)r0 * N;
        /* Columns outside [c0, c1) are hidden from every row of the block: P = 0 there. */
        for (int i = r0; i < r1; i++) {
            memset(P_block + (long)(i - r0) * N, 0, (size_t)c0 * sizeof(real));
            memset(P_block + (long)(i - r0) * N + c1, 0, (size_t)(N - c1) * sizeof(real));
        }
        /* P[r0:r1, c0:c1] = q[r0:r1] k[c0:c1]^T, then each row's softmax */
        gemm(0, 1, r1 - r0, c1 - c0, dh, q + (long)r0 * dh, dh, k + (long)c0 * dh, dh, P_block + c0,
             N, 0);
        for (int i = r0; i < r1; i++) softmax_row(p, i, c0, c1, P + (long)i * N);
        /* o[r0:r1] = P[r0:r1, c0:c1] v[c0:c1] */
        gemm(0, 0, r1 - r0, dh, c1 - c0, P_block + c0, N, v + (long)c0 * dh, dh, o + (long)r0 * dh,
             dh, 0);
    }
}

/* Item n of whole (B, H, ., .) tensors. */
static void forward_one(const AttentionPlan *p, const Tensor *q, const Tensor *k, const Tensor *v,
                        Tensor *P, Tensor *o, long n) {
    long N = p->N, dh = p->dh;
    forward_item(p, q->data + n * N * dh, k->data + n * N * dh, v->data + n * N * dh,
                 P->data + n * N * N, o->data + n * N * dh);
}

/* The gradients of one item; dq, dk, dv may be NULL. scratch holds ROW_BLOCK x N reals. */
typedef struct ItemGrads {
    real *dq, *dk, *dv;
} ItemGrads;

/* dS = P * (dP - rowsum(dP * P)), times c, in place over dP's rows [r0, r1), columns [c0, c1). */
static void softmax_backward_rows(const AttentionPlan *p, const real *P, int r0, int r1, int c0,
                                  int c1, real *dP) {
    int N = p->N, width = c1 - c0;
    for (int i = r0; i < r1; i++) {
        const real *P_row = P + (long)i * N + c0;
        real *dP_row = dP + (long)(i - r0) * width;
        double dot = 0; /* sum_l dP_il P_il */
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < width; j++) dot += (double)dP_row[j] * P_row[j];
        for (int j = 0; j < width; j++) dP_row[j] = p->scale * P_row[j] * (dP_row[j] - (real)dot);
    }
}

static void backward_item(const AttentionPlan *p, const real *q, const real *k, const real *v,
                          const real *P, const real *dO, ItemGrads g, real *scratch) {
    int N = p->N, dh = p->dh;
    for (int r0 = 0; r0 < N; r0 += ROW_BLOCK) {
        int r1 = block_end(p, r0), c0 = first_key(p, r0), c1 = last_key(p, r1 - 1) + 1;
        int rows = r1 - r0, width = c1 - c0;
        const real *P_block = P + (long)r0 * N + c0, *dO_block = dO + (long)r0 * dh;
        /* dv[c0:c1] += P[r0:r1, c0:c1]^T dO[r0:r1] */
        if (g.dv)
            gemm(1, 0, width, dh, rows, P_block, N, dO_block, dh, g.dv + (long)c0 * dh, dh, 1);
        if (!g.dq && !g.dk) continue;
        /* dP (rows, width) = dO[r0:r1] v[c0:c1]^T, then dS c in place */
        gemm(0, 1, rows, width, dh, dO_block, dh, v + (long)c0 * dh, dh, scratch, width, 0);
        softmax_backward_rows(p, P, r0, r1, c0, c1, scratch);
        /* dq[r0:r1] += (c dS) k[c0:c1];  dk[c0:c1] += (c dS)^T q[r0:r1] */
        if (g.dq)
            gemm(0, 0, rows, dh, width, scratch, width, k + (long)c0 * dh, dh, g.dq + (long)r0 * dh,
                 dh, 1);
        if (g.dk)
            gemm(1, 0, width, dh, rows, scratch, width, q + (long)r0 * dh, dh, g.dk + (long)c0 * dh,
                 dh, 1);
    }
}

static AttentionPlan plan_of(const Tensor *q, int causal, int window) {
    AttentionPlan p = {.N = q->shape[2], .dh = q->shape[3], .causal = causal != 0};
    p.items = (long)q->shape[0] * q->shape[1];
    /* A window reaching every key hides nothing: treat it as none (the same blocks, bits). */
    p.window = window >= p.N - 1 ? 0 : window;
    p.scale = (real)(1 / sqrt((double)p.dh));
    return p;
}

/* The item's slice of a (B, H, rows, cols) tensor's data. */
static real *item_of(real *data, long n, long rows, long cols) {
    return data ? data + n * rows * cols : NULL;
}

/* Everything backward_item needs for item n, the whole tensors' data. */
typedef struct BackwardJob {
    const AttentionPlan *plan;
    const real *q, *k, *v, *P, *dO;
    ItemGrads grads; /* whole tensors, NULL where not needed */
    real *scratch;
    long scratch_size; /* per thread */
} BackwardJob;

static void backward_job(const BackwardJob *job, long n) {
    long N = job->plan->N, dh = job->plan->dh;
    int thread = 0;
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    ItemGrads g = {item_of(job->grads.dq, n, N, dh), item_of(job->grads.dk, n, N, dh),
                   item_of(job->grads.dv, n, N, dh)};
    backward_item(job->plan, job->q + n * N * dh, job->k + n * N * dh, job->v + n * N * dh,
                  job->P + n * N * N, job->dO + n * N * dh, g,
                  job->scratch + thread * job->scratch_size);
}

static void attention_backward(Tape *tape, TapeRecord *record) {
    const AttentionSaved *saved = record->saved;
    Tensor *q = record->inputs[0], *k = record->inputs[1], *v = record->inputs[2];
    AttentionPlan p = plan_of(q, saved->causal, saved->window);
    real *dq = tape_grad(tape, q), *dk = tape_grad(tape, k), *dv = tape_grad(tape, v);
    const real *dO = record->output->grad, *P = saved->probs->data;
    int N = p.N, parallel = items_in_parallel(&p);
    int threads = 1;
#ifdef _OPENMP
    if (parallel) threads = omp_get_max_threads();
#endif
    /* dP's block, one per thread (the arena is not thread-safe: taken here, before the loop). */
    Tensor *scratch = tape_tensor(tape, 3, (int[]){threads, ROW_BLOCK < N ? ROW_BLOCK : N, N});
    BackwardJob job = {
        &p, q->data, k->data, v->data, P, dO, {dq, dk, dv}, scratch->data, scratch->size / threads};
    /* The parallel region is opened only when used: gemm inside an inactive one would be a
     * nested region, for which libgomp creates new threads on every call (ops_matmul.c). */
    if (parallel) {
#pragma omp parallel for schedule(static)
        for (long n = 0; n < p.items; n++) backward_job(&job, n);
    } else {
        for (long n = 0; n < p.items; n++) backward_job(&job, n);
    }
}

/* Fail unless q, k, v are 4-d of one shape (B, H, N, dh) with N, dh >= 1. */
static void check_inputs(const Tensor *q, const Tensor *k, const Tensor *v, int window) {
    char q_shape[64], k_shape[64], v_shape[64];
    if (q->ndim != 4 || !tensor_same_shape(q, k) || !tensor_same_shape(q, v) || q->shape[2] < 1 ||
        q->shape[3] < 1)
        cpool_fail("op_attention: q, k, v must be (B, H, N, dh) of one shape with N, dh >= 1, got "
                   "q %s, k %s, v %s",
                   TENSOR_SHAPE_STR(q, q_shape), TENSOR_SHAPE_STR(k, k_shape),
                   TENSOR_SHAPE_STR(v, v_shape));
    if (window < 0) cpool_fail("op_attention: window=%d must be >= 0 (0 means no window)", window);
}

Tensor *op_attention(Tape *tape, Tensor *q, Tensor *k, Tensor *v, int causal, int window,
                     Tensor **probs) {
    check_inputs(q, k, v, window);
    AttentionPlan p = plan_of(q, causal, window);
    Tensor *P = tape_tensor(tape, 4, (int[]){q->shape[0], q->shape[1], p.N, p.N});
    Tensor *o = tape_tensor(tape, 4, q->shape);
    if (items_in_parallel(&p)) {
#pragma omp parallel for schedule(static)
        for (long n = 0; n < p.items; n++) forward_one(&p, q, k, v, P, o, n);
    } else {
        for (long n = 0; n < p.items; n++) forward_one(&p, q, k, v, P, o, n);
    }
    if (probs) *probs = P;

    Tensor *inputs[3] = {q, k, v};
    TapeRecord *record = tape_record(tape, "attention", attention_backward, o, 3, inputs);
    if (record) {
        AttentionSaved *saved = tape_save(tape, sizeof *saved);
        *saved = (AttentionSaved){.causal = p.causal, .window = window, .probs = P};
        record->saved = saved;
    }
    return o;
}
