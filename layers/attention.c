/* attention.c - see attention.h.
 *
 * The whole layer as a chain of ops (B batches, N tokens, H heads of dh = dim / H features):
 *   q, k, v   (B, N, dim)      the three row blocks of qkv applied to x_q, x_kv, x_kv
 *   split     (B, H, N, dh)    reshape to (B, N, H, dh), swap axes 1 and 2 (one copy)
 *   scores    (B, H, N, N)     (q / sqrt(dh)) k^T, one batched matmul over (B, H)
 *   probs     (B, H, N, N)     softmax over the keys j; causal: scores with j > i set to MASKED
 *   o         (B, H, N, dh)    probs v, the same batched matmul
 *   merge     (B, N, dim)      swap back: head h fills features [h dh, (h+1) dh)
 *   y         (B, N, dim)      proj(o)
 * Scaling q (N dh values) instead of the scores (N^2) is the same product, as PyTorch's
 * scaled_dot_product does it. Backward comes from the tape, op by op.
 */
#include "attention.h"

#include <math.h>

#include "ops.h"
#include "util.h"

/* A masked score. Finite, so anomaly mode (which rejects Inf) can watch attention too; any
 * unmasked score in the row is far above it, so after the softmax's max-subtraction its exp
 * underflows to exactly 0 - the same probabilities as -inf. Every row keeps its diagonal
 * (j = i), so no row is fully masked. */
static const real MASKED = (real)-1e30;

void attention_init(Attention *layer, AttentionConfig config, ParamSet *params, const char *prefix,
                    Rng *rng) {
    if (config.dim < 1) cpool_fail("attention: dim=%d must be positive", config.dim);
    if (config.heads < 1) cpool_fail("attention: heads=%d must be positive", config.heads);
    if (config.dim % config.heads != 0)
        cpool_fail("attention: heads=%d does not divide dim=%d", config.heads, config.dim);
    layer->config = config;
    char name[PARAM_NAME_MAX];
    params_join(name, prefix, "qkv");
    linear_init(&layer->qkv, (LinearConfig){config.dim, 3 * config.dim, 1}, params, name, rng);
    params_join(name, prefix, "proj");
    linear_init(&layer->proj, (LinearConfig){config.dim, config.dim, 1}, params, name, rng);
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

/* (N, N) with 1 where key j is after query i (j > i): the entries a causal layer hides. */
static Tensor *causal_mask(Tape *tape, int N) {
    Tensor *mask = tape_tensor(tape, 2, (int[]){N, N});
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) mask->data[(long)i * N + j] = j > i;
    return mask;
}

Tensor *attention_forward(Tape *tape, const Attention *layer, Tensor *x_q, Tensor *x_kv,
                          Tensor **probs) {
    check_inputs(layer, x_q, x_kv);
    int heads = layer->config.heads, N = x_q->shape[1];
    double dh = (double)(layer->config.dim / heads);
    Tensor *qkv[3];
    project_qkv(tape, layer, x_q, x_kv, qkv); /* 3 x (B, N, dim) */
    Tensor *q_scaled = op_scale(tape, qkv[0], (real)(1 / sqrt(dh)));
    Tensor *q = split_heads(tape, q_scaled, heads); /* (B, H, N, dh) */
    Tensor *k = split_heads(tape, qkv[1], heads);   /* (B, H, N, dh) */
    Tensor *v = split_heads(tape, qkv[2], heads);   /* (B, H, N, dh) */
    Tensor *scores = op_matmul(tape, q, k, 0, 1);   /* (B, H, N, N) */
    if (layer->config.causal) scores = op_masked_fill(tape, scores, causal_mask(tape, N), MASKED);
    Tensor *p = op_softmax(tape, scores); /* (B, H, N, N), rows sum to 1 */
    if (probs) *probs = p;
    Tensor *o = merge_heads(tape, op_matmul(tape, p, v, 0, 0)); /* (B, N, dim) */
    return linear_forward(tape, &layer->proj, o);               /* (B, N, dim) */
}
