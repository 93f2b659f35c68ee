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

typedef struct Attention {
    AttentionConfig config;
    Linear qkv, proj;
} Attention;

void attention_init(Attention *layer, AttentionConfig config, ParamSet *params, const char *prefix,
                    Rng *rng);
/* Queries from x_q, keys and values from x_kv (pass the same tensor for self-attention; the
 * ContextPool block feeds pooled features as x_kv). Both (B, N, dim). The same qkv parameters
 * serve both: rows [0, dim) of qkv.weight act on x_q, rows [dim, 3 dim) on x_kv; when
 * x_q == x_kv the projection is one matrix product. If probs is not NULL it receives the
 * attention probabilities (B, heads, N, N) (an arena tensor, valid until reset). */
Tensor *attention_forward(Tape *tape, const Attention *layer, Tensor *x_q, Tensor *x_kv,
                          Tensor **probs);

#endif
