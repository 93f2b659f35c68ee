/* attention.h - multi-head self-attention.
 *
 * Parameters: "qkv.weight" (3*dim, dim), "qkv.bias" (3*dim), "proj.weight" (dim, dim),
 * "proj.bias" (dim); PyTorch nn.Linear initialisation. For input x (B, N, dim):
 *   [q | k | v] = x qkv.weight^T + qkv.bias      q, k, v: the three consecutive dim-column blocks
 *   head h uses columns [h*dh, (h+1)*dh) of each, dh = dim / heads
 *   P_h = softmax(q_h k_h^T / sqrt(dh))          (B, heads, N, N); causal: j > i masked out
 *   o_h = P_h v_h; heads concatenated along the feature axis; y = o proj.weight^T + proj.bias
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
 * ContextPool block feeds pooled features as x_kv). Both (B, N, dim). If probs is not NULL it
 * receives the attention probabilities (B, heads, N, N) (an arena tensor, valid until reset). */
Tensor *attention_forward(Tape *tape, const Attention *layer, Tensor *x_q, Tensor *x_kv,
                          Tensor **probs);

#endif
