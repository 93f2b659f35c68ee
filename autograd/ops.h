/* ops.h - every differentiable op, forward and backward.
 *
 * Each op takes the tape first, computes its output as a new arena tensor, and (when an input
 * requires grad and the tape is recording) appends a record whose backward adds the op's
 * vector-Jacobian product into its inputs' gradients. The forward and backward of an op sit next
 * to each other in one ops_*.c file, with the derivation in a comment; docs/autograd.md collects
 * the math.
 *
 *     Tape *tape = tape_create();
 *     Tensor *x = tensor_create(2, (int[]){2, 3}, 1);
 *     Tensor *y = op_tanh(tape, op_scale(tape, x, 2));      // y = tanh(2x), shape (2, 3)
 *     Tensor *loss = op_sum_all(tape, y);                   // 0-d
 *     tape_backward(tape, loss);                            // x->grad = 2 (1 - y^2)
 *
 * Shapes are given as (d0, d1, ...). "Broadcasting" follows NumPy: shapes are aligned at the
 * right; each pair of dimensions must be equal or one of them 1. Bad shapes or arguments call
 * cpool_fail() with a one-line message naming the op and the shapes.
 */
#ifndef CPOOL_OPS_H
#define CPOOL_OPS_H

#include "rng.h"
#include "tape.h"

/* --- Elementwise binary, with broadcasting (ops_binary.c) ------------------------------- */
Tensor *op_add(Tape *tape, Tensor *a, Tensor *b); /* a + b */
Tensor *op_sub(Tape *tape, Tensor *a, Tensor *b); /* a - b */
Tensor *op_mul(Tape *tape, Tensor *a, Tensor *b); /* a * b */
Tensor *op_div(Tape *tape, Tensor *a, Tensor *b); /* a / b */

/* --- Elementwise unary (ops_unary.c) ----------------------------------------------------- */
Tensor *op_neg(Tape *tape, Tensor *x);
Tensor *op_scale(Tape *tape, Tensor *x, real c); /* c * x */
Tensor *op_pow(Tape *tape, Tensor *x, real p);   /* x^p (x > 0 unless p is an integer) */
Tensor *op_exp(Tape *tape, Tensor *x);
Tensor *op_log(Tape *tape, Tensor *x);
Tensor *op_sqrt(Tape *tape, Tensor *x);
Tensor *op_abs(Tape *tape, Tensor *x);                     /* d|x|/dx = sign(x), 0 at 0 */
Tensor *op_clamp(Tape *tape, Tensor *x, real lo, real hi); /* gradient 1 on [lo, hi] (torch) */
Tensor *op_tanh(Tape *tape, Tensor *x);
Tensor *op_sigmoid(Tape *tape, Tensor *x);
Tensor *op_softplus(Tape *tape, Tensor *x); /* log(1 + e^x); x > 20 gives x, as torch */
Tensor *op_relu(Tape *tape, Tensor *x);     /* gradient 0 at 0, as PyTorch */
Tensor *op_gelu(Tape *tape, Tensor *x);     /* x * Phi(x), the exact erf form */

/* y = x where mask == 0, value where mask != 0; mask (no gradient) broadcasts to x's shape. */
Tensor *op_masked_fill(Tape *tape, Tensor *x, const Tensor *mask, real value);
/* Inverted dropout: y = x * m / (1 - p), m ~ Bernoulli(1 - p) drawn from rng, p in [0, 1).
 * p = 0 copies x. */
Tensor *op_dropout(Tape *tape, Tensor *x, real p, Rng *rng);

/* --- Matrix product (ops_matmul.c) ------------------------------------------------------- */
/* a: (..., M, K) or (..., K, M) if trans_a;  b: (..., K, N) or (..., N, K) if trans_b.
 * Leading (batch) dimensions must be equal, or one side is 2-d and is shared by every batch.
 * Result (..., M, N). */
Tensor *op_matmul(Tape *tape, Tensor *a, Tensor *b, int trans_a, int trans_b);
/* A linear layer as one op: y = x W^T + b. x (..., in), weight (out, in), bias (out) or NULL
 * -> y (..., out). What op_add(op_matmul(x, weight, 0, 1), bias) computes, in one record. */
Tensor *op_linear(Tape *tape, Tensor *x, Tensor *weight, Tensor *bias);

/* --- Attention, fused (ops_attention.c) -------------------------------------------------- */
/* q, k, v (B, H, N, dh) -> o (B, H, N, dh): o = softmax(q k^T / sqrt(dh) + mask) v, with the
 * causal and/or local-window mask (window 0: none; else key j is seen by query i only when
 * |i - j| <= window). Masked probabilities are exactly 0. probs, if not NULL, receives P
 * (B, H, N, N), an arena tensor of values: gradients reach q, k and v, never through P. */
Tensor *op_attention(Tape *tape, Tensor *q, Tensor *k, Tensor *v, int causal, int window,
                     Tensor **probs);
/* The same with the H heads side by side, as the projections make them (no copies):
 * qkv (B, N, 3 H dh) = [q | k | v], or q (B, N, H dh) and kv (B, N, 2 H dh) = [k | v], head h in
 * columns [h dh, (h + 1) dh) of each -> o (B, N, H dh), heads side by side. What slicing,
 * splitting the heads, op_attention and merging them computes. */
Tensor *op_attention_qkv(Tape *tape, Tensor *qkv, int heads, int causal, int window,
                         Tensor **probs);
Tensor *op_attention_q_kv(Tape *tape, Tensor *q, Tensor *kv, int heads, int causal, int window,
                          Tensor **probs);

/* --- Reductions (ops_reduce.c) ----------------------------------------------------------- */
/* Over one axis (negative counts from the end); keepdim keeps it as size 1. Over all: 0-d. */
Tensor *op_sum(Tape *tape, Tensor *x, int axis, int keepdim);
Tensor *op_mean(Tape *tape, Tensor *x, int axis, int keepdim);
/* max: the gradient goes to the first maximum (torch.max(dim) does the same; torch.max(x) over
 * all elements splits it among ties, so tests keep values distinct). */
Tensor *op_max(Tape *tape, Tensor *x, int axis, int keepdim);
Tensor *op_sum_all(Tape *tape, Tensor *x);
Tensor *op_mean_all(Tape *tape, Tensor *x);
Tensor *op_max_all(Tape *tape, Tensor *x);

/* --- Normalisation, losses, lookup (ops_nn.c) -------------------------------------------- */
Tensor *op_softmax(Tape *tape, Tensor *x);     /* over the last axis, max-subtracted */
Tensor *op_log_softmax(Tape *tape, Tensor *x); /* over the last axis, log-sum-exp */
/* logits (..., C); targets: one class id per row (logits->size / C of them). Mean over the rows
 * whose target is not ignore_index; 0-d. Returns 0 (not NaN as PyTorch) if every row is ignored. */
Tensor *op_cross_entropy(Tape *tape, Tensor *logits, const int *targets, int ignore_index);
/* Over the last axis D: y = (x - mean) / sqrt(var + eps) * weight + bias; var is biased (1/D).
 * weight and bias are (D) or NULL. Fused: one record, hand-written backward. */
Tensor *op_layernorm(Tape *tape, Tensor *x, Tensor *weight, Tensor *bias, real eps);
/* weight (V, D), ids of shape `shape` with values in [0, V): result shape + (D). */
Tensor *op_embedding(Tape *tape, Tensor *weight, const int *ids, int ndim, const int *shape);

/* --- Shape (ops_shape.c) ----------------------------------------------------------------- */
/* reshape: one entry may be -1; the output shares x's data (never written in place). */
Tensor *op_reshape(Tape *tape, Tensor *x, int ndim, const int *shape);
Tensor *op_transpose(Tape *tape, Tensor *x, int dim0, int dim1);
/* permute: perm has x->ndim entries (negative allowed); output dim d is x's dim perm[d]. */
Tensor *op_permute(Tape *tape, Tensor *x, const int *perm);
Tensor *op_slice(Tape *tape, Tensor *x, int axis, int start, int end); /* [start, end), step 1 */
Tensor *op_concat(Tape *tape, Tensor *const *xs, int n, int axis);

/* --- Convolution and pooling (ops_conv.c) ------------------------------------------------ */
/* x (B, C, L), w (O, C/groups, K), bias (O) or NULL -> (B, O, L_out),
 * L_out = (L + pad_left + pad_right - K) / stride + 1. Zero padding; causal is pad_left = K-1. */
Tensor *op_conv1d(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int stride, int pad_left,
                  int pad_right, int groups);
/* The same on channels-last sequences, stride 1, one group (ops_conv_nlc.c): x (B, L, C),
 * w (O, C, K) in op_conv1d's (PyTorch's) layout, bias (O) or NULL -> (B, L_out, O), L_out as
 * above: op_conv1d of x transposed to (B, C, L), transposed back, without the transposes. */
Tensor *op_conv1d_nlc(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int pad_left, int pad_right);
/* x (B, C, H, W), w (O, C/groups, KH, KW), bias (O) or NULL -> (B, O, H_out, W_out),
 * H_out = (H + 2 padding - KH) / stride + 1, likewise W. */
Tensor *op_conv2d(Tape *tape, Tensor *x, Tensor *w, Tensor *bias, int stride, int padding,
                  int groups);
/* x (B, C, H, W) -> (B, C, (H - kernel) / stride + 1, (W - kernel) / stride + 1), no padding. */
Tensor *op_avgpool2d(Tape *tape, Tensor *x, int kernel, int stride);
Tensor *op_maxpool2d(Tape *tape, Tensor *x, int kernel, int stride); /* gradient to first max */

/* --- ContextPool pooling, fused and banded (ops_contextpool.c) ---------------------------- */
/* x (B, N, D) features, w (B, N) pooling weights, s (B, N) support sizes (> 0):
 *   y_i = sum_j g_ij w_j x_j / (sum_j g_ij w_j + eps),  g_ij = exp(-(i-j)^2 / (2 s_i^2))
 * over the band |i - j| <= radius (and j <= i when causal). -> (B, N, D). Gradients reach x, w
 * and s; cost O(B N radius D), no N x N buffer. */
Tensor *op_contextpool1d(Tape *tape, Tensor *x, Tensor *w, Tensor *s, int radius, int causal,
                         real eps);
/* x (B, C, H, W), w (B, H, W), s (B, H, W) -> (B, C, Ho, Wo), Ho = ceil(H / stride), likewise Wo.
 * Output (u, v) is centred on input p = (stride u, stride v) and pools every input q with
 * |q_y - p_y|, |q_x - p_x| <= radius, weight g = exp(-|p - q|^2 / (2 s_p^2)) w_q, normalised as
 * in 1-D. Only s at the centres is used (its gradient elsewhere is 0). */
Tensor *op_contextpool2d(Tape *tape, Tensor *x, Tensor *w, Tensor *s, int radius, int stride,
                         real eps);

#endif
