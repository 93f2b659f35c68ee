/* contextpool.h - ContextPool (Huang et al., ICML 2022): adaptive, per-token context pooling.
 *
 * The paper publishes no code; this is our reconstruction (docs/contextpool.md lists every choice
 * that is ours). For a sequence X (B, N, dim) a small predictor network reads X:
 *   H      = GELU(conv1d_k(X))     "pred.0.weight" (hidden, dim, k), "pred.0.bias" (hidden)
 *   [a, b] = conv1d_1(H)           "pred.2.weight" (2, hidden, 1),   "pred.2.bias" (2)
 * (convolution along the sequence axis; zero padding k//2 on both sides, or k-1 on the left only
 * when causal), then per token
 *   w_j  = sigmoid(a_j)                                pooling weight in (0, 1)
 *   s_i  = s_min + (s_max - s_min) * sigmoid(b_i)      support size: the Gaussian's std, in tokens
 *   g_ij = exp(-(i-j)^2 / (2 s_i^2))  if |i-j| <= radius (and j <= i when causal), else 0
 *   y_i  = sum_j g_ij w_j x_j / (sum_j g_ij w_j + 1e-6)
 * N tokens in, N out. Defaults: kernel 3, hidden max(8, dim/4), s_min 0.5, s_max 8,
 * radius ceil(3 s_max).
 *
 * Ablations: weights = uniform sets w_j = 1 (pred still predicts s); size = fixed sets
 * s_i = s_fixed for every token (default 2).
 *
 * 2-D (contextpool2d): X (B, C, H, W); the predictor is conv2d 3x3 (padding 1) then 1x1, same
 * names with 4-d weights; g_ij = exp(-|p_i - p_j|^2 / (2 s_i^2)) for |dy|, |dx| <= radius. With
 * stride 2 the output is (B, C, ceil(H/2), ceil(W/2)): output (u, v) is centred on input
 * (2u, 2v), takes s from the predictor there and w from every input position - the drop-in
 * replacement for a ConvNet's 2x2 pooling.
 *
 * Two implementations compute the same numbers (agreeing to ~1e-12 in float64):
 *   - fused (default): op_contextpool1d / op_contextpool2d, banded, O(B N radius dim) time and
 *     no N x N buffer, with a hand-written backward (autograd/ops_contextpool.c);
 *   - composed: the formula written with ordinary tape ops and an explicit (N x N) Gaussian
 *     matrix - slower, but every step is an op the reader already knows.
 *
 *     ContextPool pool;
 *     contextpool_init(&pool, contextpool_default_config(64, 0), &params, "pool", &rng);
 *     ContextPoolAux aux;
 *     Tensor *y = contextpool_forward(tape, &pool, x, &aux);  // x, y (B, N, 64)
 *     // aux.weights (B, N): w of every token;  aux.support (B, N): s of every token
 *
 * Errors (cpool_fail, one line naming the key): dim < 1, s_min <= 0, s_max < s_min, radius < 0,
 * an even kernel without causal, stride not 1 or 2 (2-d) or not 1 (1-d), causal in 2-d, a 2-d
 * kernel other than 3; x not (B, N, dim) / (B, dim, H, W), or empty.
 */
#ifndef CPOOL_CONTEXTPOOL_H
#define CPOOL_CONTEXTPOOL_H

#include "conv.h"

typedef struct ContextPoolConfig {
    int dim;      /* feature channels (dim for sequences, C for images) */
    int hidden;   /* predictor width; 0 means max(8, dim/4) */
    int kernel;   /* predictor's first kernel; 0 means 3 (1-D; 2-D always uses 3x3) */
    double s_min; /* support size range, in tokens (pixels) */
    double s_max;
    int radius;          /* truncation radius R; 0 means ceil(3 s_max) */
    int causal;          /* 1-D only: pool only j <= i, causal predictor */
    int weights_uniform; /* ablation: w_j = 1 */
    int size_fixed;      /* ablation: s_i = s_fixed */
    double s_fixed;
    int stride;   /* 2-D only: 1 or 2 (0 means 1) */
    int composed; /* 1: use the composed (tape-ops) implementation instead of the fused op */
} ContextPoolConfig;

/* The defaults above for a given dim (causal as given): s_min 0.5, s_max 8, s_fixed 2. hidden,
 * kernel, radius and stride stay 0, "derive at init", so that changing dim or s_max afterwards
 * still gives the matching hidden width and radius. */
ContextPoolConfig contextpool_default_config(int dim, int causal);

typedef struct ContextPool {
    ContextPoolConfig config; /* with every 0 default filled in by init */
    Conv pred0, pred2;        /* "pred.0", "pred.2" */
} ContextPool;

/* What a forward pass predicted, for plotting and the lab (arena tensors, valid until reset). */
typedef struct ContextPoolAux {
    Tensor *weights; /* w: (B, N), or (B, H, W): one per input position */
    Tensor *support; /* s: (B, N), or (B, Ho, Wo): one per output position */
} ContextPoolAux;

void contextpool_init(ContextPool *layer, ContextPoolConfig config, ParamSet *params,
                      const char *prefix, Rng *rng);
void contextpool2d_init(ContextPool *layer, ContextPoolConfig config, ParamSet *params,
                        const char *prefix, Rng *rng);
/* x (B, N, dim) -> (B, N, dim). aux may be NULL. */
Tensor *contextpool_forward(Tape *tape, const ContextPool *layer, Tensor *x, ContextPoolAux *aux);
/* x (B, C, H, W) -> (B, C, Ho, Wo). aux may be NULL. */
Tensor *contextpool2d_forward(Tape *tape, const ContextPool *layer, Tensor *x, ContextPoolAux *aux);

#endif
