/* attention.h - multi-head attention: self-attention, or queries and keys from different inputs.
 *
 * Parameters: "qkv.weight" (3*dim, dim), "qkv.bias" (3*dim), "proj.weight" (dim, dim),
 * "proj.bias" (dim); PyTorch nn.Linear initialisation U(-1/sqrt(dim), 1/sqrt(dim)), drawn from
 * rng in that order. For input x (B, N, dim):
 *   [q | k | v] = x qkv.weight^T + qkv.bias      q, k, v: the three consecutive dim-column blocks
 *   head h uses columns [h*dh, (h+1)*dh) of each, dh = dim / heads
 *   P_h = softmax(q_h k_h^T / sqrt(dh))          (B, heads, N, N); causal: j > i masked out
 *   o_h = P_h v_h; heads concatenated along the feature axis; y = o proj.weight^T + proj.bias
 * Masked scores are set to -1e30, not -inf (anomaly mode rejects Inf); their probability is
 * exactly 0 either way. Errors: heads not dividing dim, x not (B, N, dim), x_kv's shape not
 * x_q's.
 *
 * Two baselines for the ContextPool experiments restrict where a query looks (AttentionReach,
 * given to attention_init_reach):
 *   window = K > 0   local attention: i attends only to j with |i - j| <= K (and j <= i when
 *                    causal), a structural mask like the causal one. K = 0: full attention.
 *   span = 1         the adaptive attention span of Sukhbaatar et al. (2019): one learned
 *                    z_h in [0, 1] per head, parameter "span.z" (heads), created after proj and
 *                    initialised to 0.5 (see below). With L = span_max, R = span_ramp and the
 *                    distance d = |i - j| (for a causal layer j <= i, so d = i - j):
 *                      m_h(d)  = clamp((R + clamp(z_h, 0, 1) L - d) / R, 0, 1)
 *                      P'_hij = P_hij m_h(|i-j|) / (sum_j P_hij m_h(|i-j|) + 1e-8)
 *                    a soft window of about z_h L + R tokens whose edge the gradient moves. m(0) =
 *                    1, so no row is emptied. attention_span_loss() is the paper's penalty
 *                    span_coef L mean_h(clamp(z_h, 0, 1)), to add to the training loss.
 * The defaults follow the paper's code (github.com/facebookresearch/adaptive-span, enwik8): R = 32,
 * span loss coefficient 2e-6, renormalisation + 1e-8. Its z starts at 0 and is clamped in place
 * after every step; ours starts at 0.5 (half the maximal span, so training can move it either way)
 * and is clamped inside the forward, where clamp's gradient (1 on [0, 1], 0 outside, as PyTorch)
 * leaves a z the optimiser pushed outside [0, 1] without a gradient: attention_span_clamp()
 * puts it back, to be called after each update as the paper's code does. L defaults to 256.
 *
 *     Attention attn;
 *     attention_init(&attn, (AttentionConfig){.dim = 64, .heads = 4, .causal = 1}, &params,
 *                    "attn", &rng);
 *     Tensor *probs;                                          // optional: (B, heads, N, N)
 *     Tensor *y = attention_forward(tape, &attn, x, x, &probs);   // (B, N, 64)
 */
#ifndef CPOOL_ATTENTION_H
#define CPOOL_ATTENTION_H

#include "linear.h"

typedef struct AttentionConfig {
    int dim, heads;
    int causal; /* 1: token i attends only to j <= i */
} AttentionConfig;

/* How far a query may reach: the two baselines. Zeroed (the default): every key. */
typedef struct AttentionReach {
    int window;       /* K > 0: only keys with |i - j| <= K; 0: every key */
    int span;         /* 1: the adaptive span mask, parameter "span.z" */
    int span_max;     /* L, in tokens; 0 means 256 */
    int span_ramp;    /* R, in tokens; 0 means 32 */
    double span_coef; /* the span loss's coefficient; 0 means 2e-6 */
    int composed;     /* 1: the chain of ops (matmul, softmax, matmul) instead of the fused
                         op_attention: the same numbers. The span always takes it. */
} AttentionReach;

typedef struct Attention {
    AttentionConfig config;
    AttentionReach reach; /* with the span defaults filled in by init */
    Linear qkv, proj;
    Tensor *span_z; /* (heads) when reach.span, else NULL */
} Attention;

void attention_init(Attention *layer, AttentionConfig config, ParamSet *params, const char *prefix,
                    Rng *rng);
/* The same with a window or an adaptive span (attention_init is this with a zeroed reach). */
void attention_init_reach(Attention *layer, AttentionConfig config, AttentionReach reach,
                          ParamSet *params, const char *prefix, Rng *rng);
/* The reach's checks and defaults alone, as attention_init_reach applies them (for layers that
 * check their whole config before creating anything). */
AttentionReach attention_resolve_reach(AttentionReach reach);
/* Queries from x_q, keys and values from x_kv (pass the same tensor for self-attention; the
 * ContextPool block feeds pooled features as x_kv). Both (B, N, dim). The same qkv parameters
 * serve both: rows [0, dim) of qkv.weight act on x_q, rows [dim, 3 dim) on x_kv; when
 * x_q == x_kv the projection is one matrix product. If probs is not NULL it receives the
 * attention probabilities (B, heads, N, N), after any window or span mask (an arena tensor,
 * valid until reset). Without a span they come from the fused op_attention and are values
 * only: no gradient flows back through them (reach.composed = 1 makes them a tape node). */
Tensor *attention_forward(Tape *tape, const Attention *layer, Tensor *x_q, Tensor *x_kv,
                          Tensor **probs);

/* The adaptive span's penalty span_coef L mean_h(clamp(z_h, 0, 1)), 0-d, to add to the training
 * loss (its gradient reaches span.z). A constant 0 when the layer has no span, so a model can
 * sum it over all its layers. */
Tensor *attention_span_loss(Tape *tape, const Attention *layer);
/* z := clamp(z, 0, 1) in place, for after an optimiser step (no-op without a span). */
void attention_span_clamp(Attention *layer);

#endif
