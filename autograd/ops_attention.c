/* ops_attention.c - scaled dot-product attention as one fused op, forward and backward.
 *
 * Shapes. q, k, v (B, H, N, dh) -> o (B, H, N, dh); P (B, H, N, N) is saved. For one item
 * (b, h), with c = 1 / sqrt(dh) and the keys row i may see
 *     seen(i) = { j : j <= i if causal, |i - j| <= window if window > 0 }    (i itself always)
 * the forward is
 *     S_ij = c q_i . k_j                      for j in seen(i); no other score is formed
 *     P_ij = e^(S_ij - m_i) / sum_{l in seen(i)} e^(S_il - m_i),  m_i = max_{l in seen(i)} S_il
 *     P_ij = 0                                for j outside seen(i) (exactly: e^-inf or unformed)
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
 * P = 0, so the products need no mask; only the softmax does. Backward reads P only inside the
 * blocks: the columns outside them are written (as 0) only when the caller asks for P.
 * Backward walks the blocks last to first, so that (without a window) its first block, which
 * sees every key, stores dk and dv whole into fresh gradient buffers instead of zeroing them
 * (3 MB a layer for the benchmark model) and adding.
 *
 * Threads. One item (b, h) per iteration when there are enough items (each writes only its own
 * slices of o, P, dq, dk, dv, in a fixed order), so the bits do not depend on the thread count.
 * With few items the loop stays on one thread and gemm splits each product itself.
 */
#include <math.h>
#include <string.h>

#include "gemm.h"
#include "ops.h"
#include "simd.h"
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

/* Where item (b, h)'s rows lie in a tensor's data: row i of the item starts at
 *     data + b batch_stride + h head_stride + i row_stride.
 * (B, H, N, dh) contiguous: batch_stride H N dh, head_stride N dh, row_stride dh.
 * (B, N, H dh) with heads side by side (op_attention_qkv): N H dh, dh, H dh; inside wider rows
 * (q, k, v packed as (B, N, 3 H dh)) the row_stride is the row's width. gemm reads and writes
 * rows at any stride, so the head split and merge need no copy. */
typedef struct ItemLayout {
    long batch_stride, head_stride;
    int row_stride;
} ItemLayout;

/* The item geometry: N tokens of dh features, the mask, the score scale c, and where the items
 * of q (and dq), of k and v (and dk, dv) and of o (and dO) lie. */
typedef struct AttentionPlan {
    int N, dh, causal, window, heads;
    int whole_P; /* 1: P outside the blocks' columns is written (0) too, for a caller that reads P
                  */
    long items;
    real scale;
    ItemLayout q_in, kv_in, out;
} AttentionPlan;

/* The offset of item n = b H + h in a tensor of the given layout. */
static long item_offset(const AttentionPlan *p, const ItemLayout *layout, long n) {
    return n / p->heads * layout->batch_stride + n % p->heads * layout->head_stride;
}

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
 * gemm's q_i . k_j); on return P_ij, 0 outside seen(i).
 * The passes run over [c0, end): seen(i) = [lo, hi] widened to whole vectors (SOFTMAX_LANES
 * from c0) but not past c1, with the hidden entries in it set to -inf first. A pass over seen(i)
 * alone ended in a scalar remainder of up to 15 exps per row, as long as its vector part; a pass
 * over all of [c0, c1) spent a fifth of its exps on the masked half of a causal diagonal block.
 * e^-inf is exactly 0 (vmath_expf clamps it to e^-104, which rounds to 0), so the hidden entries
 * come out 0 and add nothing to the sum; [end, c1) is zeroed.
 * The maximum is taken over the raw dot products, m = max q_i . k_j: c > 0 and rounding is
 * monotonic, so fl(c m) is the maximum of the rounded scores fl(c q_i . k_j), bit for bit, and
 * the max needs no multiply (max_of, simd.h, vectorises; scaling in place first made it a
 * scalar loop). */
enum { SOFTMAX_LANES = 16 };

static void softmax_row(const AttentionPlan *p, int i, int c0, int c1, real *row) {
    int lo = first_key(p, i), hi = last_key(p, i);
    int end = c0 + (hi + 1 - c0 + SOFTMAX_LANES - 1) / SOFTMAX_LANES * SOFTMAX_LANES;
    if (end > c1) end = c1;
    for (int j = c0; j < lo; j++) row[j] = -INFINITY;
    for (int j = hi + 1; j < end; j++) row[j] = -INFINITY;
    for (int j = end; j < c1; j++) row[j] = 0;
    real m = max_of(row + lo, hi + 1 - lo);
    const real scale = p->scale, shift = scale * m; /* m_i = max_l S_il */
    /* A vector of partial sums (a fixed order for a given build), in the working precision: each
     * of the L lanes adds about c1 / L terms in (0, 1], then the lanes are added, a relative
     * error below (c1 / L + log2 L) u (1.2e-6 at c1 = 256, L = 16 in float32), as a float32
     * softmax's own sum has. In double, the float-to-double conversions chained two dependent
     * adds per vector and made this loop about twice as slow. */
    real total = 0;
#pragma omp simd reduction(+ : total)
    for (int j = c0; j < end; j++) {
        real score = scale * row[j]; /* S_ij, rounded as the max was */
        real e = real_exp(score - shift);
        row[j] = e;
        total += e;
    }
    real inverse = 1 / total;
#pragma omp simd
    for (int j = c0; j < end; j++) row[j] *= inverse;
}

/* --- The keys' side of the products, packed once per item ---------------------------------
 * Every row block multiplies by a part of the same k (or v): k^T's columns [c0, c1) in
 * S = q k^T, v's rows [c0, c1) in o = P v. gemm would pack that part again for each block - the
 * causal blocks [0, 64), [0, 128), ... pack 2.5 times the item at N = 256 - so an item with
 * several blocks packs k^T and v once (gemm_pack_b) and each block multiplies by its part
 * (gemm_packed), the same bits. A packed part must start on a panel boundary; with no window
 * every block starts at c0 = 0. With a window, or one block, the products pack per call. */
typedef struct KeyOperand {
    int packed;      /* 1: `data` below is packed, else k or v itself */
    GemmPackedB b;   /* when packed */
    const real *raw; /* when not: op(B) = raw, or raw^T with trans */
    int ld, trans;
} KeyOperand;

/* op(B) = B (K x N) or B^T, stored with rows ld apart; packed into `buffer` (gemm_packed_b_size
 * reals) when pack. */
static KeyOperand key_operand(int pack, int trans, int N, int K, const real *B, int ld,
                              real *buffer) {
    KeyOperand key = {.packed = pack, .raw = B, .ld = ld, .trans = trans};
    if (pack) key.b = gemm_pack_b(trans, N, K, B, ld, buffer);
    return key;
}

/* C (M x n) (+)= op(A) times rows [k0, k0 + k) and columns [j0, j0 + n) of the key operand. */
static void times_key(int trans_a, int M, int n, int k, const real *A, int lda,
                      const KeyOperand *key, int j0, int k0, real *C, int ldc, int accumulate) {
    if (key->packed) {
        gemm_packed(trans_a, M, n, k, A, lda, &key->b, j0, k0, C, ldc, accumulate);
        return;
    }
    const real *part =
        key->trans ? key->raw + (long)j0 * key->ld + k0 : key->raw + (long)k0 * key->ld + j0;
    gemm(trans_a, key->trans, M, n, k, A, lda, part, key->ld, C, ldc, accumulate);
}

/* Whether an item's keys are packed once (see above). */
static int pack_keys(const AttentionPlan *p) {
    return p->window == 0 && p->N > ROW_BLOCK;
}
/* Reals of packing buffer per thread: two operands, (N keys x dh) and (dh x N keys). */
static long key_buffer_size(const AttentionPlan *p) {
    return gemm_packed_b_size(p->N, p->dh) + gemm_packed_b_size(p->dh, p->N);
}

/* One item: P (N, N) and o (N, dh) from q, k, v (N, dh); rows are ld_q (q), ld_kv (k, v) and
 * ld_out (o) apart. buffer: key_buffer_size reals. */
static void forward_item(const AttentionPlan *p, const real *q, const real *k, const real *v,
                         real *P, real *o, real *buffer) {
    int N = p->N, dh = p->dh, ld_q = p->q_in.row_stride, ld_kv = p->kv_in.row_stride;
    int ld_out = p->out.row_stride, pack = pack_keys(p);
    KeyOperand k_T = key_operand(pack, 1, N, dh, k, ld_kv, buffer); /* (dh, N) */
    KeyOperand v_op = key_operand(pack, 0, dh, N, v, ld_kv, buffer + gemm_packed_b_size(N, dh));
    for (int r0 = 0; r0 < N; r0 += ROW_BLOCK) {
        int r1 = block_end(p, r0), c0 = first_key(p, r0), c1 = last_key(p, r1 - 1) + 1;
        real *P_block = P + (long)r0 * N;
        /* Columns outside [c0, c1) are hidden from every row of the block: P = 0 there. Backward
         * never reads them, so they are written only when the caller asked for P. */
        for (int i = r0; i < r1 && p->whole_P; i++) {
            memset(P_block + (long)(i - r0) * N, 0, (size_t)c0 * sizeof(real));
            memset(P_block + (long)(i - r0) * N + c1, 0, (size_t)(N - c1) * sizeof(real));
        }
        /* P[r0:r1, c0:c1] = q[r0:r1] k[c0:c1]^T, then each row's softmax */
        times_key(0, r1 - r0, c1 - c0, dh, q + (long)r0 * ld_q, ld_q, &k_T, c0, 0, P_block + c0, N,
                  0);
        for (int i = r0; i < r1; i++) softmax_row(p, i, c0, c1, P + (long)i * N);
        /* o[r0:r1] = P[r0:r1, c0:c1] v[c0:c1] */
        times_key(0, r1 - r0, dh, c1 - c0, P_block + c0, N, &v_op, 0, c0, o + (long)r0 * ld_out,
                  ld_out, 0);
    }
}

/* Item n of whole tensors: q laid out as p->q_in, k and v as p->kv_in (each its own base), o as
 * p->out. */
static void forward_one(const AttentionPlan *p, const real *q, const real *k, const real *v,
                        real *P, real *o, real *buffers, long n) {
    long at_q = item_offset(p, &p->q_in, n), at_kv = item_offset(p, &p->kv_in, n), N = p->N;
    int thread = 0;
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    forward_item(p, q + at_q, k + at_kv, v + at_kv, P + n * N * N, o + item_offset(p, &p->out, n),
                 buffers + thread * key_buffer_size(p));
}

/* The gradients of one item; dq, dk, dv may be NULL. scratch holds ROW_BLOCK x N reals, then
 * key_buffer_size more. */
typedef struct ItemGrads {
    real *dq, *dk, *dv;
    /* 1: the buffer is fresh (tape_grad_write) and this op is its first contributor: store, do
     * not add. Only ever set without a window (see backward_item). */
    int overwrite_q, overwrite_kv;
} ItemGrads;

/* dS = P * (dP - rowsum(dP * P)), times c, in place over dP's rows [r0, r1), columns [c0, c1). */
static void softmax_backward_rows(const AttentionPlan *p, const real *P, int r0, int r1, int c0,
                                  int c1, real *dP) {
    int N = p->N, width = c1 - c0;
    const real scale = p->scale; /* a local: read through p, every store to dP could change it */
    for (int i = r0; i < r1; i++) {
        const real *P_row = P + (long)i * N + c0;
        real *dP_row = dP + (long)(i - r0) * width;
        /* sum_l dP_il P_il, in float lanes as the forward's sum: the P_il are weights in [0, 1]
         * summing to 1, so the error is below (width / L + log2 L) u times max |dP_il|; in
         * double, the conversions chained the lanes' adds and made the pass twice as long. */
        real dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < width; j++) dot += dP_row[j] * P_row[j];
#pragma omp simd
        for (int j = 0; j < width; j++) dP_row[j] = scale * P_row[j] * (dP_row[j] - dot);
    }
}

/* The gradients of one item; rows are ld_q (q, dq), ld_kv (k, v, dk, dv) and ld_out (dO)
 * apart. The row blocks are walked last to first: without a window the last block sees every
 * key, [0, N), so with fresh buffers its products store dk and dv whole and the blocks after it
 * add (the buffers need no zeroing first); each row of dq comes from its own block alone. */
static void backward_item(const AttentionPlan *p, const real *q, const real *k, const real *v,
                          const real *P, const real *dO, ItemGrads g, real *scratch) {
    int N = p->N, dh = p->dh, ld_q = p->q_in.row_stride, ld_kv = p->kv_in.row_stride;
    int ld_out = p->out.row_stride, pack = pack_keys(p) && (g.dq || g.dk);
    real *buffer = scratch + (long)(ROW_BLOCK < N ? ROW_BLOCK : N) * N;
    KeyOperand v_T = key_operand(pack, 1, N, dh, v, ld_kv, buffer); /* (dh, N) */
    KeyOperand k_op = key_operand(pack, 0, dh, N, k, ld_kv, buffer + gemm_packed_b_size(N, dh));
    int add_q = !g.overwrite_q, add_kv = !g.overwrite_kv; /* gemm's accumulate */
    for (int r0 = (N - 1) / ROW_BLOCK * ROW_BLOCK; r0 >= 0; r0 -= ROW_BLOCK, add_kv = 1) {
        int r1 = block_end(p, r0), c0 = first_key(p, r0), c1 = last_key(p, r1 - 1) + 1;
        int rows = r1 - r0, width = c1 - c0;
        const real *P_block = P + (long)r0 * N + c0, *dO_block = dO + (long)r0 * ld_out;
        /* dv[c0:c1] += P[r0:r1, c0:c1]^T dO[r0:r1] */
        if (g.dv)
            gemm(1, 0, width, dh, rows, P_block, N, dO_block, ld_out, g.dv + (long)c0 * ld_kv,
                 ld_kv, add_kv);
        if (!g.dq && !g.dk) continue;
        /* dP (rows, width) = dO[r0:r1] v[c0:c1]^T, then dS c in place */
        times_key(0, rows, width, dh, dO_block, ld_out, &v_T, c0, 0, scratch, width, 0);
        softmax_backward_rows(p, P, r0, r1, c0, c1, scratch);
        /* dq[r0:r1] += (c dS) k[c0:c1];  dk[c0:c1] += (c dS)^T q[r0:r1] */
        if (g.dq)
            times_key(0, rows, dh, width, scratch, width, &k_op, 0, c0, g.dq + (long)r0 * ld_q,
                      ld_q, add_q);
        if (g.dk)
            gemm(1, 0, width, dh, rows, scratch, width, q + (long)r0 * ld_q, ld_q,
                 g.dk + (long)c0 * ld_kv, ld_kv, add_kv);
    }
}

/* B items of H heads, N tokens of dh features; the layouts are the caller's to set. */
static AttentionPlan plan_of(int B, int H, int N, int dh, int causal, int window) {
    AttentionPlan p = {.N = N, .dh = dh, .causal = causal != 0, .heads = H};
    p.items = (long)B * H;
    /* A window reaching every key hides nothing: treat it as none (the same blocks, bits). */
    p.window = window >= p.N - 1 ? 0 : window;
    p.scale = (real)(1 / sqrt((double)p.dh));
    return p;
}

/* (B, H, N, dh), contiguous. */
static ItemLayout heads_first(const AttentionPlan *p) {
    return (ItemLayout){(long)p->heads * p->N * p->dh, (long)p->N * p->dh, p->dh};
}
/* (B, N, H dh) inside rows of `row_stride` reals: head h is columns [h dh, (h + 1) dh). */
static ItemLayout heads_side_by_side(const AttentionPlan *p, int row_stride) {
    return (ItemLayout){(long)p->N * row_stride, p->dh, row_stride};
}

/* Item n's part of a gradient of the given layout; NULL stays NULL. */
static real *item_of(const AttentionPlan *p, const ItemLayout *layout, real *data, long n) {
    return data ? data + item_offset(p, layout, n) : NULL;
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
    const AttentionPlan *p = job->plan;
    int thread = 0;
#ifdef _OPENMP
    thread = omp_get_thread_num();
#endif
    long at_q = item_offset(p, &p->q_in, n), at_kv = item_offset(p, &p->kv_in, n), N = p->N;
    ItemGrads g = job->grads;
    g.dq = item_of(p, &p->q_in, g.dq, n);
    g.dk = item_of(p, &p->kv_in, g.dk, n);
    g.dv = item_of(p, &p->kv_in, g.dv, n);
    backward_item(p, job->q + at_q, job->k + at_kv, job->v + at_kv, job->P + n * N * N,
                  job->dO + item_offset(p, &p->out, n), g,
                  job->scratch + thread * job->scratch_size);
}

/* Every item's gradients: q and dq laid out as p->q_in, k, v, dk and dv as p->kv_in (each
 * gradient NULL or the base of its items), dO as p->out. */
static void backward_items(Tape *tape, const AttentionPlan *p, const real *q, const real *k,
                           const real *v, const real *P, const real *dO, ItemGrads grads) {
    int N = p->N, parallel = items_in_parallel(p);
    int threads = 1;
#ifdef _OPENMP
    if (parallel) threads = omp_get_max_threads();
#endif
    /* dP's block, one per thread (the arena is not thread-safe: taken here, before the loop). */
    /* dP's block and the packed keys, per thread (the arena is not thread-safe: taken here,
     * before the loop). */
    long per_thread = (long)(ROW_BLOCK < N ? ROW_BLOCK : N) * N + key_buffer_size(p);
    real *scratch = arena_alloc(&tape->arena, (size_t)(threads * per_thread) * sizeof(real));
    BackwardJob job = {p, q, k, v, P, dO, grads, scratch, per_thread};
    /* The parallel region is opened only when used: gemm inside an inactive one would be a
     * nested region, for which libgomp creates new threads on every call (ops_matmul.c). */
    if (parallel) {
#pragma omp parallel for schedule(static)
        for (long n = 0; n < p->items; n++) backward_job(&job, n);
    } else {
        for (long n = 0; n < p->items; n++) backward_job(&job, n);
    }
}

/* Every item's P and o (the forward's loop over items, the same split as backward's). */
static void forward_items(Tape *tape, const AttentionPlan *p, const real *q, const real *k,
                          const real *v, real *P, real *o) {
    int parallel = items_in_parallel(p), threads = 1;
#ifdef _OPENMP
    if (parallel) threads = omp_get_max_threads();
#endif
    real *buffers =
        arena_alloc(&tape->arena, (size_t)(threads * key_buffer_size(p)) * sizeof(real));
    if (parallel) {
#pragma omp parallel for schedule(static)
        for (long n = 0; n < p->items; n++) forward_one(p, q, k, v, P, o, buffers, n);
    } else {
        for (long n = 0; n < p->items; n++) forward_one(p, q, k, v, P, o, buffers, n);
    }
}

/* op_attention's plan: q, k, v and o all (B, H, N, dh). */
static AttentionPlan heads_first_plan(const Tensor *q, int causal, int window) {
    AttentionPlan p = plan_of(q->shape[0], q->shape[1], q->shape[2], q->shape[3], causal, window);
    p.q_in = p.kv_in = p.out = heads_first(&p);
    return p;
}

/* The gradient buffer of t for a backward that may store into it (tape_grad_write), but only
 * when `store_ok`: otherwise a fresh buffer is zeroed, to be added to. */
static real *gradient_for(Tape *tape, Tensor *t, int store_ok, int *overwrite) {
    real *grad = tape_grad_write(tape, t, overwrite);
    if (*overwrite && !store_ok) {
        memset(grad, 0, (size_t)t->size * sizeof(real));
        *overwrite = 0;
    }
    return grad;
}

static void attention_backward(Tape *tape, TapeRecord *record) {
    const AttentionSaved *saved = record->saved;
    Tensor *q = record->inputs[0], *k = record->inputs[1], *v = record->inputs[2];
    AttentionPlan p = heads_first_plan(q, saved->causal, saved->window);
    /* dk and dv share one flag: both are stored, or both added to; a tensor passed twice (k = v,
     * say) gets two contributions, so it is added to */
    int distinct = q != k && q != v && k != v;
    int store_kv =
        distinct && !p.window && k->requires_grad && v->requires_grad && !k->grad && !v->grad;
    ItemGrads grads;
    grads.dq = gradient_for(tape, q, distinct, &grads.overwrite_q);
    grads.dk = gradient_for(tape, k, store_kv, &grads.overwrite_kv);
    grads.dv = gradient_for(tape, v, store_kv, &grads.overwrite_kv);
    backward_items(tape, &p, q->data, k->data, v->data, saved->probs->data, record->output->grad,
                   grads);
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
    AttentionPlan p = heads_first_plan(q, causal, window);
    p.whole_P = probs != NULL;
    Tensor *P = tape_tensor(tape, 4, (int[]){q->shape[0], q->shape[1], p.N, p.N});
    Tensor *o = tape_tensor(tape, 4, q->shape);
    forward_items(tape, &p, q->data, k->data, v->data, P->data, o->data);
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

/* --- op_attention_qkv, op_attention_q_kv: the same attention, heads side by side ----------
 * op_attention_qkv: qkv (B, N, 3 H dh) holds q in columns [0, H dh), k in [H dh, 2 H dh), v in
 * [2 H dh, 3 H dh) (self-attention's one product). op_attention_q_kv: q (B, N, H dh) and
 * kv (B, N, 2 H dh), k in columns [0, H dh), v in [H dh, 2 H dh) (cross-attention's two).
 * Head h of each is its own dh columns; o (B, N, H dh) is written the same way. This is what
 * slicing q, k, v, reshape + permute (split the heads), op_attention and permute + reshape
 * (merge them) compute, with no copy: the gemms read and write the heads' columns in place, and
 * backward adds dq, dk, dv into their columns of the inputs' gradients. */
typedef struct AttentionHeadsSaved {
    int causal, window, heads;
    Tensor *probs; /* P (B, H, N, N) */
} AttentionHeadsSaved;

/* The plan of q (B, N, q_width) and k, v (B, N, kv_width), H dh of those columns each, to
 * o (B, N, H dh). */
static AttentionPlan side_by_side_plan(const Tensor *q, int q_width, int kv_width, int dim,
                                       const AttentionHeadsSaved *how) {
    AttentionPlan p =
        plan_of(q->shape[0], how->heads, q->shape[1], dim / how->heads, how->causal, how->window);
    p.q_in = heads_side_by_side(&p, q_width);
    p.kv_in = heads_side_by_side(&p, kv_width);
    p.out = heads_side_by_side(&p, dim);
    return p;
}

/* One input: qkv; two: q and kv (see above). */
static void attention_heads_backward(Tape *tape, TapeRecord *record) {
    const AttentionHeadsSaved *saved = record->saved;
    Tensor *q = record->inputs[0], *kv = record->inputs[record->n_inputs - 1];
    int dim = record->output->shape[2];
    AttentionPlan p = side_by_side_plan(q, q->shape[2], kv->shape[2], dim, saved);
    /* qkv: one buffer, stored whole or added to; q, kv: dq can always be stored (each row from
     * one block), dk and dv only without a window */
    ItemGrads grads;
    real *dq = gradient_for(tape, q, q == kv ? !p.window : 1, &grads.overwrite_q), *dkv = dq;
    grads.overwrite_kv = grads.overwrite_q;
    if (q != kv) dkv = gradient_for(tape, kv, !p.window, &grads.overwrite_kv);
    long k_column = q == kv ? dim : 0; /* k's first column in kv */
    grads.dq = dq;
    grads.dk = dkv ? dkv + k_column : NULL;
    grads.dv = dkv ? dkv + k_column + dim : NULL;
    backward_items(tape, &p, q->data, kv->data + k_column, kv->data + k_column + dim,
                   saved->probs->data, record->output->grad, grads);
}

/* o from q (its first dim columns) and k, v (columns [k_column, k_column + 2 dim) of kv). */
static Tensor *attend_side_by_side(Tape *tape, Tensor *q, Tensor *kv, long k_column, int dim,
                                   const AttentionHeadsSaved *how, Tensor **probs) {
    AttentionPlan p = side_by_side_plan(q, q->shape[2], kv->shape[2], dim, how);
    p.whole_P = probs != NULL;
    Tensor *P = tape_tensor(tape, 4, (int[]){q->shape[0], how->heads, p.N, p.N});
    Tensor *o = tape_tensor(tape, 3, (int[]){q->shape[0], p.N, dim});
    forward_items(tape, &p, q->data, kv->data + k_column, kv->data + k_column + dim, P->data,
                  o->data);
    if (probs) *probs = P;

    Tensor *inputs[2] = {q, kv};
    TapeRecord *record =
        tape_record(tape, "attention_heads", attention_heads_backward, o, q == kv ? 1 : 2, inputs);
    if (record) {
        AttentionHeadsSaved *saved = tape_save(tape, sizeof *saved);
        *saved = *how;
        saved->probs = P;
        record->saved = saved;
    }
    return o;
}

/* Fail unless t is (B, N, parts H dh) with N, dh >= 1 (B of `like`, if given) and heads >= 1 and
 * window >= 0. */
static void check_side_by_side(const char *op, const char *name, const Tensor *t, int parts,
                               const Tensor *like, int heads, int window) {
    char shape[64];
    if (heads < 1) cpool_fail("%s: heads=%d must be >= 1", op, heads);
    if (t->ndim != 3 || t->shape[1] < 1 || t->shape[2] < parts * heads ||
        t->shape[2] % (parts * heads) != 0 ||
        (like && (t->shape[0] != like->shape[0] || t->shape[1] != like->shape[1])))
        cpool_fail("%s: %s must be (B, N, %d heads dh) with N, dh >= 1 and heads=%d, got %s", op,
                   name, parts, heads, TENSOR_SHAPE_STR(t, shape));
    if (window < 0) cpool_fail("%s: window=%d must be >= 0 (0 means no window)", op, window);
}

Tensor *op_attention_qkv(Tape *tape, Tensor *qkv, int heads, int causal, int window,
                         Tensor **probs) {
    check_side_by_side("op_attention_qkv", "qkv", qkv, 3, NULL, heads, window);
    int dim = qkv->shape[2] / 3;
    AttentionHeadsSaved how = {.causal = causal != 0, .window = window, .heads = heads};
    return attend_side_by_side(tape, qkv, qkv, dim, dim, &how, probs);
}

Tensor *op_attention_q_kv(Tape *tape, Tensor *q, Tensor *kv, int heads, int causal, int window,
                          Tensor **probs) {
    check_side_by_side("op_attention_q_kv", "q", q, 1, NULL, heads, window);
    check_side_by_side("op_attention_q_kv", "kv", kv, 2, q, heads, window);
    if (kv->shape[2] != 2 * q->shape[2]) {
        char q_shape[64], kv_shape[64];
        cpool_fail("op_attention_q_kv: kv must have twice q's features, got q %s, kv %s",
                   TENSOR_SHAPE_STR(q, q_shape), TENSOR_SHAPE_STR(kv, kv_shape));
    }
    AttentionHeadsSaved how = {.causal = causal != 0, .window = window, .heads = heads};
    return attend_side_by_side(tape, q, kv, 0, q->shape[2], &how, probs);
}
