/* attention.c - see attention.h.
 *
 * The whole layer as a chain of ops (B batches, N tokens, H heads of dh = dim / H features):
 *   q, k, v   (B, N, dim)      the three row blocks of qkv applied to x_q, x_kv, x_kv
 *   split     (B, H, N, dh)    reshape to (B, N, H, dh), swap axes 1 and 2 (one copy)
 *   scores    (B, H, N, N)     (q / sqrt(dh)) k^T, one batched matmul over (B, H)
 *   probs     (B, H, N, N)     softmax over the keys j; scores a causal or windowed layer hides
 *                              are set to MASKED first; span: times the soft mask, renormalised
 *   o         (B, H, N, dh)    probs v, the same batched matmul
 *   merge     (B, N, dim)      swap back: head h fills features [h dh, (h+1) dh)
 *   y         (B, N, dim)      proj(o)
 * Scaling q (N dh values) instead of the scores (N^2) is the same product, as PyTorch's
 * scaled_dot_product does it. Backward comes from the tape, op by op.
 *
 * That chain is the composed path, kept for the adaptive span (whose soft mask multiplies P
 * and renormalises it) and for reach.composed = 1. Otherwise scores, probs and o are one
 * fused op, op_attention (autograd/ops_attention.c): the same numbers, but only P is stored
 * for backward, and a causal or windowed layer skips the keys it hides. Self-attention
 * (x_q == x_kv) uses op_attention_qkv, which reads q, k, v and their heads in place from the
 * one (B, N, 3 dim) product and writes o as (B, N, dim): no slice, split or merge copies.
 */
#include "attention.h"

#include <math.h>
#include <stdlib.h>

#include "ops.h"
#include "util.h"

/* A masked score. Finite, so anomaly mode (which rejects Inf) can watch attention too; any
 * unmasked score in the row is far above it, so after the softmax's max-subtraction its exp
 * underflows to exactly 0 - the same probabilities as -inf. Every row keeps its diagonal
 * (j = i), so no row is fully masked. */
static const real MASKED = (real)-1e30;

/* The adaptive span's defaults (the paper's code, except L: see attention.h). */
enum { SPAN_MAX_DEFAULT = 256, SPAN_RAMP_DEFAULT = 32 };
static const double SPAN_COEF_DEFAULT = 2e-6, SPAN_Z_INIT = 0.5;
/* Added to the masked probabilities' row sum before renormalising, as in the paper's code. */
static const real SPAN_TINY = (real)1e-8;

AttentionReach attention_resolve_reach(AttentionReach reach) {
    if (reach.window < 0)
        cpool_fail("attention: window=%d must be >= 0 (0 means full attention)", reach.window);
    if (reach.span != 0 && reach.span != 1)
        cpool_fail("attention: span=%d must be 0 or 1 (adaptive)", reach.span);
    if (reach.composed != 0 && reach.composed != 1)
        cpool_fail("attention: composed=%d must be 0 or 1 (the chain of ops)", reach.composed);
    if (reach.span_max < 0)
        cpool_fail("attention: span_max=%d must be >= 0 (0 means %d)", reach.span_max,
                   SPAN_MAX_DEFAULT);
    if (reach.span_ramp < 0)
        cpool_fail("attention: span_ramp=%d must be >= 0 (0 means %d)", reach.span_ramp,
                   SPAN_RAMP_DEFAULT);
    if (!(reach.span_coef >= 0) || !isfinite(reach.span_coef))
        cpool_fail("attention: span_coef=%g must be a finite number >= 0", reach.span_coef);
    if (reach.span_max == 0) reach.span_max = SPAN_MAX_DEFAULT;
    if (reach.span_ramp == 0) reach.span_ramp = SPAN_RAMP_DEFAULT;
    if (reach.span_coef == 0) reach.span_coef = SPAN_COEF_DEFAULT;
    return reach;
}

void attention_init(Attention *layer, AttentionConfig config, ParamSet *params, const char *prefix,
                    Rng *rng) {
    attention_init_reach(layer, config, (AttentionReach){0}, params, prefix, rng);
}

void attention_init_reach(Attention *layer, AttentionConfig config, AttentionReach reach,
                          ParamSet *params, const char *prefix, Rng *rng) {
    if (config.dim < 1) cpool_fail("attention: dim=%d must be positive", config.dim);
    if (config.heads < 1) cpool_fail("attention: heads=%d must be positive", config.heads);
    if (config.dim % config.heads != 0)
        cpool_fail("attention: heads=%d does not divide dim=%d", config.heads, config.dim);
    layer->config = config;
    layer->reach = attention_resolve_reach(reach);
    char name[PARAM_NAME_MAX];
    params_join(name, prefix, "qkv");
    linear_init(&layer->qkv, (LinearConfig){config.dim, 3 * config.dim, 1}, params, name, rng);
    params_join(name, prefix, "proj");
    linear_init(&layer->proj, (LinearConfig){config.dim, config.dim, 1}, params, name, rng);
    layer->span_z = NULL;
    if (reach.span) {
        params_join(name, prefix, "span");
        layer->span_z = params_new(params, name, "z", 1, (int[]){config.heads});
        tensor_fill(layer->span_z, (real)SPAN_Z_INIT);
    }
}

static void check_inputs(const Attention *layer, const Tensor *x_q, const Tensor *x_kv) {
    char shape[64], other[64];
    if (x_q->ndim != 3 || x_q->shape[2] != layer->config.dim)
        cpool_fail("attention: x_q must be (B, N, %d), got shape %s", layer->config.dim,
                   TENSOR_SHAPE_STR(x_q, shape));
    if (!tensor_same_shape(x_q, x_kv))
        cpool_fail("attention: x_kv shape %s differs from x_q shape %s",
                   TENSOR_SHAPE_STR(x_kv, other), TENSOR_SHAPE_STR(x_q, shape));
}

/* The Linear made of output rows [start, end) of `full` (slices of its parameters, so the
 * gradients flow back into them). */
static Linear row_block(Tape *tape, const Linear *full, int start, int end) {
    Linear part = {.config = {full->config.in, end - start, 1}};
    part.weight = op_slice(tape, full->weight, 0, start, end); /* (end - start, in) */
    part.bias = op_slice(tape, full->bias, 0, start, end);     /* (end - start) */
    return part;
}

/* q, k, v, each (B, N, dim). Self-attention (x_q == x_kv) runs ONE matmul with all of qkv and
 * cuts its columns; otherwise rows [0, dim) of qkv act on x_q and rows [dim, 3 dim) on x_kv. */
static void project_qkv(Tape *tape, const Attention *layer, Tensor *x_q, Tensor *x_kv,
                        Tensor *qkv[3]) {
    int dim = layer->config.dim;
    if (x_q == x_kv) {
        Tensor *all = linear_forward(tape, &layer->qkv, x_q); /* (B, N, 3 dim) */
        for (int i = 0; i < 3; i++) qkv[i] = op_slice(tape, all, 2, i * dim, (i + 1) * dim);
        return;
    }
    Linear q_rows = row_block(tape, &layer->qkv, 0, dim);
    Linear kv_rows = row_block(tape, &layer->qkv, dim, 3 * dim);
    qkv[0] = linear_forward(tape, &q_rows, x_q);       /* (B, N, dim) */
    Tensor *kv = linear_forward(tape, &kv_rows, x_kv); /* (B, N, 2 dim) */
    qkv[1] = op_slice(tape, kv, 2, 0, dim);
    qkv[2] = op_slice(tape, kv, 2, dim, 2 * dim);
}

/* (B, N, H dh) -> (B, H, N, dh): head h's features become a contiguous (N, dh) matrix. */
static Tensor *split_heads(Tape *tape, Tensor *t, int heads) {
    int B = t->shape[0], N = t->shape[1], dh = t->shape[2] / heads;
    Tensor *t4 = op_reshape(tape, t, 4, (int[]){B, N, heads, dh}); /* (B, N, H, dh) */
    return op_permute(tape, t4, (int[]){0, 2, 1, 3});              /* (B, H, N, dh) */
}

/* (B, H, N, dh) -> (B, N, H dh): the inverse of split_heads. */
static Tensor *merge_heads(Tape *tape, Tensor *t) {
    int B = t->shape[0], heads = t->shape[1], N = t->shape[2], dh = t->shape[3];
    Tensor *t4 = op_permute(tape, t, (int[]){0, 2, 1, 3});     /* (B, N, H, dh) */
    return op_reshape(tape, t4, 3, (int[]){B, N, heads * dh}); /* (B, N, dim) */
}

/* (N, N) with 1 where query i may not see key j: after it (j > i) in a causal layer, farther
 * than the window (|i - j| > K); NULL when nothing is hidden. */
static Tensor *hidden_keys(Tape *tape, const Attention *layer, int N) {
    int causal = layer->config.causal, window = layer->reach.window;
    if (!causal && (window == 0 || window >= N - 1)) return NULL;
    Tensor *mask = tape_tensor(tape, 2, (int[]){N, N});
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++)
            mask->data[(long)i * N + j] = (causal && j > i) || (window > 0 && abs(i - j) > window);
    return mask;
}

/* The adaptive span's soft mask, (H, N, N):
 *   m_h(i, j) = clamp(z_h L / R + (R - |i - j|) / R, 0, 1),   z_h = clamp(span.z_h, 0, 1)
 * written with tape ops, so the gradient reaches span.z: through the outer clamp where
 * 0 < m < 1 (the ramp), through the inner one while z_h is in [0, 1]. For a causal layer the
 * entries j > i do not matter: their probabilities are exactly 0. */
static Tensor *span_mask(Tape *tape, const Attention *layer, int N) {
    int heads = layer->config.heads;
    double L = layer->reach.span_max, R = layer->reach.span_ramp;
    Tensor *z = op_clamp(tape, layer->span_z, 0, 1);            /* (H) */
    Tensor *extent = op_scale(tape, z, (real)(L / R));          /* z L / R, (H) */
    extent = op_reshape(tape, extent, 3, (int[]){heads, 1, 1}); /* (H, 1, 1) */
    Tensor *ramp = tape_tensor(tape, 2, (int[]){N, N});         /* (R - d) / R, (N, N) */
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) ramp->data[(long)i * N + j] = (real)((R - abs(i - j)) / R);
    return op_clamp(tape, op_add(tape, extent, ramp), 0, 1); /* (H, N, N) by broadcasting */
}

/* P' = P m / (sum_j P m + 1e-8): the probabilities (B, H, N, N) under the span mask, each row
 * renormalised. */
static Tensor *apply_span(Tape *tape, const Attention *layer, Tensor *p) {
    Tensor *masked = op_mul(tape, p, span_mask(tape, layer, p->shape[2])); /* (B, H, N, N) */
    Tensor *tiny = tape_tensor(tape, 0, NULL);
    tiny->data[0] = SPAN_TINY;
    Tensor *total = op_add(tape, op_sum(tape, masked, -1, 1), tiny); /* (B, H, N, 1) */
    return op_div(tape, masked, total);
}

/* The composed path: softmax((q / sqrt(dh)) k^T + mask) v op by op, then the span if any.
 * q, k, v (B, N, dim) -> o (B, H, N, dh). */
static Tensor *attend_composed(Tape *tape, const Attention *layer, Tensor *qkv[3], Tensor **probs) {
    int heads = layer->config.heads, N = qkv[0]->shape[1];
    double dh = (double)(layer->config.dim / heads);
    Tensor *q_scaled = op_scale(tape, qkv[0], (real)(1 / sqrt(dh)));
    Tensor *q = split_heads(tape, q_scaled, heads); /* (B, H, N, dh) */
    Tensor *k = split_heads(tape, qkv[1], heads);   /* (B, H, N, dh) */
    Tensor *v = split_heads(tape, qkv[2], heads);   /* (B, H, N, dh) */
    Tensor *scores = op_matmul(tape, q, k, 0, 1);   /* (B, H, N, N) */
    Tensor *hidden = hidden_keys(tape, layer, N);
    if (hidden) scores = op_masked_fill(tape, scores, hidden, MASKED);
    Tensor *p = op_softmax(tape, scores); /* (B, H, N, N), rows sum to 1 */
    if (layer->reach.span) p = apply_span(tape, layer, p);
    if (probs) *probs = p;
    return op_matmul(tape, p, v, 0, 0); /* (B, H, N, dh) */
}

/* The fused path: o (B, N, dim), the heads side by side, from the projections as they come out
 * of the matmuls: self-attention's one (B, N, 3 dim) = [q | k | v], or cross-attention's
 * q (B, N, dim) and kv (B, N, 2 dim) = [k | v]. No slice, split or merge copies. */
static Tensor *attend_in_place(Tape *tape, const Attention *layer, Tensor *x_q, Tensor *x_kv,
                               Tensor **probs) {
    int dim = layer->config.dim, heads = layer->config.heads, causal = layer->config.causal;
    int window = layer->reach.window;
    if (x_q == x_kv) {
        Tensor *all = linear_forward(tape, &layer->qkv, x_q); /* (B, N, 3 dim) */
        return op_attention_qkv(tape, all, heads, causal, window, probs);
    }
    Linear q_rows = row_block(tape, &layer->qkv, 0, dim);
    Linear kv_rows = row_block(tape, &layer->qkv, dim, 3 * dim);
    Tensor *q = linear_forward(tape, &q_rows, x_q);    /* (B, N, dim) */
    Tensor *kv = linear_forward(tape, &kv_rows, x_kv); /* (B, N, 2 dim) */
    return op_attention_q_kv(tape, q, kv, heads, causal, window, probs);
}

Tensor *attention_forward(Tape *tape, const Attention *layer, Tensor *x_q, Tensor *x_kv,
                          Tensor **probs) {
    check_inputs(layer, x_q, x_kv);
    int fused = !layer->reach.composed && !layer->reach.span;
    if (fused) { /* one fused op reading the heads in place: only P (B, H, N, N) is kept */
        Tensor *o = attend_in_place(tape, layer, x_q, x_kv, probs); /* (B, N, dim) */
        return linear_forward(tape, &layer->proj, o);               /* (B, N, dim) */
    }
    Tensor *qkv[3];
    project_qkv(tape, layer, x_q, x_kv, qkv);                        /* 3 x (B, N, dim) */
    Tensor *o = attend_composed(tape, layer, qkv, probs);            /* (B, H, N, dh) */
    return linear_forward(tape, &layer->proj, merge_heads(tape, o)); /* (B, N, dim) */
}

Tensor *attention_span_loss(Tape *tape, const Attention *layer) {
    if (!layer->reach.span) return tape_tensor_zeros(tape, 0, NULL);
    double scale = layer->reach.span_coef * layer->reach.span_max;
    Tensor *z = op_clamp(tape, layer->span_z, 0, 1);          /* (H) */
    return op_scale(tape, op_mean_all(tape, z), (real)scale); /* coef L mean(z), 0-d */
}

void attention_span_clamp(Attention *layer) {
    if (!layer->span_z) return;
    for (long h = 0; h < layer->span_z->size; h++) {
        real *z = &layer->span_z->data[h];
        *z = *z < 0 ? 0 : *z > 1 ? 1 : *z;
    }
}
