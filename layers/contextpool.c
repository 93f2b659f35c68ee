/* contextpool.c - see contextpool.h; the method, every choice that is ours and a walk-through of
 * this file are in docs/contextpool.md.
 *
 * The forward pass in three steps:
 *   predict   x -> [a, b] at every position: conv, GELU, 1x1 conv (the "pred.*" parameters)
 *   heads     w = sigmoid(a) (or 1: weights=uniform)
 *             s = s_min + (s_max - s_min) sigmoid(b) (or s_fixed: size=fixed)
 *   pool      y from (x, w, s): the fused op, or the composed version below, which spells the
 *             same formula out with ordinary tape ops and an explicit (P_out, P_in) matrix:
 *
 *       dist2[i, j]   = |p_i - q_j|^2         constant: squared distance, centre i to input j
 *       outside[i, j] = 1 off the window      constant: |dy| or |dx| > R, or j > i when causal
 *       g = exp(-dist2 / (2 s_i^2)), 0 where outside                 (B, P_out, P_in)
 *       A = g * w_j                           w broadcast over the rows i   (B, P_out, P_in)
 *       y_i = (A x)_i / (sum_j A_ij + eps)
 *
 * In 1-D the centres are the tokens themselves (P_out = P_in = N); in 2-D they are the pixels
 * (stride u, stride v) of the flattened (H W) grid. Backward comes from the tape in both cases
 * (the fused op has its own, derived in docs/contextpool-backward.md). */
#include "contextpool.h"

#include <math.h>
#include <stdlib.h>

#include "ops.h"
#include "util.h"

/* Added to the normaliser sum_j g_ij w_j: the diagonal term g_ii w_i = w_i > 0 is always in the
 * window, so this only guards against w underflowing to 0, not against empty windows. */
static const real POOL_EPS = (real)1e-6;

/* ---- Config ------------------------------------------------------------------------------ */

/* hidden, kernel, radius and stride are left 0 ("derived at init"), so that a caller who changes
 * dim or s_max afterwards gets the matching hidden width and radius. */
ContextPoolConfig contextpool_default_config(int dim, int causal) {
    return (ContextPoolConfig){
        .dim = dim, .causal = causal, .s_min = 0.5, .s_max = 8, .s_fixed = 2};
}

/* The checks and defaults both variants share. `name` is "contextpool" or "contextpool2d". */
static ContextPoolConfig resolve_common(ContextPoolConfig c, const char *name) {
    if (c.dim < 1) cpool_fail("%s: dim=%d must be positive", name, c.dim);
    if (c.hidden < 0) cpool_fail("%s: hidden=%d must be >= 0 (0: max(8, dim/4))", name, c.hidden);
    if (c.kernel < 0) cpool_fail("%s: kernel=%d must be >= 0 (0: 3)", name, c.kernel);
    if (!(c.s_min > 0)) cpool_fail("%s: s_min=%g must be positive", name, c.s_min);
    if (!(c.s_max >= c.s_min && c.s_max <= 1e6))
        cpool_fail("%s: s_max=%g must be in [s_min, 1e6], s_min=%g", name, c.s_max, c.s_min);
    if (c.radius < 0) cpool_fail("%s: radius=%d must be >= 0 (0: ceil(3 s_max))", name, c.radius);
    /* s^2 must stay finite in float32; at s = 1e9 every window is flat long before that. */
    if (c.size_fixed && !(c.s_fixed >= 0 && c.s_fixed <= 1e9))
        cpool_fail("%s: s_fixed=%g must be in (0, 1e9] (0: 2)", name, c.s_fixed);
    if (c.hidden == 0) c.hidden = c.dim / 4 > 8 ? c.dim / 4 : 8;
    if (c.kernel == 0) c.kernel = 3;
    if (c.radius == 0) c.radius = (int)ceil(3 * c.s_max);
    if (c.s_fixed == 0) c.s_fixed = 2;
    if (c.stride == 0) c.stride = 1;
    c.causal = c.causal != 0;
    c.weights_uniform = c.weights_uniform != 0;
    c.size_fixed = c.size_fixed != 0;
    c.composed = c.composed != 0;
    return c;
}

static ContextPoolConfig resolve_config1d(ContextPoolConfig c) {
    c = resolve_common(c, "contextpool");
    if (c.stride != 1)
        cpool_fail("contextpool: stride=%d is for contextpool2d only, expected 0 or 1", c.stride);
    if (!c.causal && c.kernel % 2 == 0)
        cpool_fail("contextpool: kernel=%d must be odd (padded by kernel/2 on both sides) "
                   "unless causal",
                   c.kernel);
    return c;
}

static ContextPoolConfig resolve_config2d(ContextPoolConfig c) {
    c = resolve_common(c, "contextpool2d");
    if (c.stride != 1 && c.stride != 2)
        cpool_fail("contextpool2d: stride=%d must be 1 or 2", c.stride);
    if (c.causal) cpool_fail("contextpool2d: causal=1 is for sequences only, expected causal=0");
    if (c.kernel != 3)
        cpool_fail("contextpool2d: kernel=%d, the 2-d predictor is always 3x3 (use 0 or 3)",
                   c.kernel);
    return c;
}

/* ---- Init: the predictor's two convolutions, PyTorch's default initialisation ------------- */

/* pred.0: dim -> hidden, kernel k (1-d) or 3x3 (2-d); pred.2: hidden -> 2, 1 (x 1). The names
 * skip "pred.1": that is the GELU in PyTorch's nn.Sequential(conv, GELU, conv). */
static void init_predictor(ContextPool *layer, ParamSet *params, const char *prefix, Rng *rng,
                           int two_d) {
    const ContextPoolConfig c = layer->config;
    ConvConfig first = {.in = c.dim, .out = c.hidden, .kernel = c.kernel, .bias = 1};
    if (c.causal)
        first.causal = 1; /* k-1 zeros on the left: token i sees i-k+1 .. i */
    else
        first.padding = c.kernel / 2;
    ConvConfig second = {.in = c.hidden, .out = 2, .kernel = 1, .bias = 1};
    char name[PARAM_NAME_MAX];
    params_join(name, prefix, "pred.0");
    (two_d ? conv2d_init : conv1d_init)(&layer->pred0, first, params, name, rng);
    params_join(name, prefix, "pred.2");
    (two_d ? conv2d_init : conv1d_init)(&layer->pred2, second, params, name, rng);
}

void contextpool_init(ContextPool *layer, ContextPoolConfig config, ParamSet *params,
                      const char *prefix, Rng *rng) {
    layer->config = resolve_config1d(config);
    init_predictor(layer, params, prefix, rng, 0);
}

void contextpool2d_init(ContextPool *layer, ContextPoolConfig config, ParamSet *params,
                        const char *prefix, Rng *rng) {
    layer->config = resolve_config2d(config);
    init_predictor(layer, params, prefix, rng, 1);
}

/* ---- Small tensors the forward pass needs ------------------------------------------------- */

/* A constant (no gradient) arena tensor filled with value. */
static Tensor *constant(Tape *tape, int ndim, const int *shape, real value) {
    Tensor *t = tape_tensor(tape, ndim, shape);
    tensor_fill(t, value);
    return t;
}

/* Channel c of ab without its channel axis `axis`: ab (B, 2, H, W) with axis 1 (2-d), or
 * (B, N, 2) with axis 2 (1-d, channels last) -> (B, H, W) or (B, N). */
static Tensor *channel(Tape *tape, Tensor *ab, int axis, int c) {
    int shape[TENSOR_MAX_DIMS], n = 0;
    for (int d = 0; d < ab->ndim; d++)
        if (d != axis) shape[n++] = ab->shape[d];
    return op_reshape(tape, op_slice(tape, ab, axis, c, c + 1), n, shape);
}

/* The axis of [a, b] in the predictor's output: last in 1-d (B, N, 2), second in 2-d. */
enum { AB_AXIS_1D = 2, AB_AXIS_2D = 1 };

/* Pooling weights w = sigmoid(a) in (0, 1), one per input position; all 1 under weights=uniform.
 * ab holds [a, b] along `axis` (see channel) -> (B, ...). */
static Tensor *pooling_weights(Tape *tape, const ContextPoolConfig *c, Tensor *ab, int axis) {
    Tensor *a = channel(tape, ab, axis, 0);
    if (c->weights_uniform) return constant(tape, a->ndim, a->shape, 1);
    return op_sigmoid(tape, a);
}

/* Support sizes s = s_min + (s_max - s_min) sigmoid(b) in (s_min, s_max), one per position of
 * ab; all s_fixed under size=fixed. ab holds [a, b] along `axis` (see channel) -> (B, ...). */
static Tensor *support_sizes(Tape *tape, const ContextPoolConfig *c, Tensor *ab, int axis) {
    Tensor *b = channel(tape, ab, axis, 1);
    if (c->size_fixed) return constant(tape, b->ndim, b->shape, (real)c->s_fixed);
    Tensor *unit = op_sigmoid(tape, b); /* (0, 1) */
    Tensor *spread = op_scale(tape, unit, (real)(c->s_max - c->s_min));
    return op_add(tape, spread, constant(tape, 0, NULL, (real)c->s_min));
}

/* ---- The composed pooling: an explicit (P_out, P_in) matrix of tape ops ------------------- */

/* A (B, P_out, P_in), A_ij = g_ij w_j with g_ij = exp(-D2_ij / (2 s_i^2)) inside the window and
 * 0 outside. D2 and outside are constants (P_out, P_in); s (B, P_out); w (B, P_in). */
static Tensor *pooling_matrix(Tape *tape, Tensor *dist2, Tensor *outside, Tensor *s, Tensor *w) {
    int B = s->shape[0], P_out = dist2->shape[0], P_in = dist2->shape[1];
    Tensor *two_s2 = op_scale(tape, op_mul(tape, s, s), 2);               /* (B, P_out) */
    two_s2 = op_reshape(tape, two_s2, 3, (int[]){B, P_out, 1});           /* one per row i */
    Tensor *exponent = op_neg(tape, op_div(tape, dist2, two_s2));         /* (B, P_out, P_in) */
    Tensor *g = op_masked_fill(tape, op_exp(tape, exponent), outside, 0); /* 0 off the window */
    Tensor *w_row = op_reshape(tape, w, 3, (int[]){B, 1, P_in});          /* one per column j */
    return op_mul(tape, g, w_row);                                        /* (B, P_out, P_in) */
}

/* 1-d windows: D2_ij = (i - j)^2, outside_ij = |i - j| > R, or j > i when causal. (N, N) each. */
static void window1d(Tape *tape, int N, int radius, int causal, Tensor **dist2, Tensor **outside) {
    *dist2 = tape_tensor(tape, 2, (int[]){N, N});
    *outside = tape_tensor(tape, 2, (int[]){N, N});
    for (int i = 0; i < N; i++)
        for (int j = 0; j < N; j++) {
            (*dist2)->data[(long)i * N + j] = (real)(i - j) * (real)(i - j);
            (*outside)->data[(long)i * N + j] = abs(i - j) > radius || (causal && j > i);
        }
}

/* x (B, N, D), w (B, N), s (B, N) -> y (B, N, D):  y_i = sum_j A_ij x_j / (sum_j A_ij + eps). */
static Tensor *pool1d_composed(Tape *tape, Tensor *x, Tensor *w, Tensor *s, int radius,
                               int causal) {
    Tensor *dist2, *outside;
    window1d(tape, x->shape[1], radius, causal, &dist2, &outside);
    Tensor *A = pooling_matrix(tape, dist2, outside, s, w); /* (B, N, N) */
    Tensor *numerator = op_matmul(tape, A, x, 0, 0);        /* (B, N, D) */
    Tensor *total = op_sum(tape, A, -1, 1);                 /* (B, N, 1) */
    Tensor *denominator = op_add(tape, total, constant(tape, 0, NULL, POOL_EPS));
    return op_div(tape, numerator, denominator); /* (B, N, D), row i divided by its total */
}

/* 2-d windows over flattened positions: centre i = (stride u, stride v) for output (u, v),
 * input j = (y, x); D2_ij = dy^2 + dx^2, outside_ij = |dy| > R or |dx| > R. (Ho Wo, H W) each. */
static void window2d(Tape *tape, int H, int W, int stride, int radius, Tensor **dist2,
                     Tensor **outside) {
    int Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
    long P_in = (long)H * W;
    *dist2 = tape_tensor(tape, 2, (int[]){Ho * Wo, H * W});
    *outside = tape_tensor(tape, 2, (int[]){Ho * Wo, H * W});
    for (int u = 0; u < Ho; u++)
        for (int v = 0; v < Wo; v++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    int dy = y - stride * u, dx = x - stride * v;
                    long at = ((long)u * Wo + v) * P_in + (long)y * W + x;
                    (*dist2)->data[at] = (real)dy * (real)dy + (real)dx * (real)dx;
                    (*outside)->data[at] = abs(dy) > radius || abs(dx) > radius;
                }
}

/* x (B, C, H, W), w (B, H, W), s (B, Ho, Wo) at the centres -> y (B, C, Ho, Wo). The channels
 * stay first, so the product is x (B, C, P_in) times A^T: no transpose of x needed. */
static Tensor *pool2d_composed(Tape *tape, Tensor *x, Tensor *w, Tensor *s, int radius,
                               int stride) {
    int B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int Ho = s->shape[1], Wo = s->shape[2], P_in = H * W, P_out = Ho * Wo;
    Tensor *dist2, *outside;
    window2d(tape, H, W, stride, radius, &dist2, &outside);
    Tensor *s_flat = op_reshape(tape, s, 2, (int[]){B, P_out});
    Tensor *w_flat = op_reshape(tape, w, 2, (int[]){B, P_in});
    Tensor *A = pooling_matrix(tape, dist2, outside, s_flat, w_flat); /* (B, P_out, P_in) */
    Tensor *x_flat = op_reshape(tape, x, 3, (int[]){B, C, P_in});
    Tensor *numerator = op_matmul(tape, x_flat, A, 0, 1); /* (B, C, P_out) */
    Tensor *total = op_reshape(tape, op_sum(tape, A, -1, 0), 3, (int[]){B, 1, P_out});
    Tensor *denominator = op_add(tape, total, constant(tape, 0, NULL, POOL_EPS));
    Tensor *y = op_div(tape, numerator, denominator); /* (B, C, P_out) */
    return op_reshape(tape, y, 4, (int[]){B, C, Ho, Wo});
}

/* ---- Forward ------------------------------------------------------------------------------ */

static void check_input1d(const ContextPool *layer, const Tensor *x) {
    char shape[64];
    if (layer->pred0.weight->ndim != 3)
        cpool_fail("contextpool: the layer was built by contextpool2d_init; use "
                   "contextpool2d_forward");
    if (x->ndim != 3 || x->shape[2] != layer->config.dim)
        cpool_fail("contextpool: x must be (B, N, %d), got shape %s", layer->config.dim,
                   TENSOR_SHAPE_STR(x, shape));
    if (x->shape[0] < 1 || x->shape[1] < 1)
        cpool_fail("contextpool: x of shape %s is empty", TENSOR_SHAPE_STR(x, shape));
}

/* The 1-d conv layer on channels-last x (B, N, in) -> (B, N', out): its weights and padding
 * (stride 1 and one group, as both of the predictor's) through op_conv1d_nlc, the convolution
 * conv1d_forward computes on (B, in, N), without transposing x. */
static Tensor *conv1d_channels_last(Tape *tape, const Conv *conv, Tensor *x) {
    const ConvConfig *c = &conv->config;
    int pad_left = c->causal ? c->kernel - 1 : c->padding, pad_right = c->causal ? 0 : c->padding;
    return op_conv1d_nlc(tape, x, conv->weight, conv->bias, pad_left, pad_right);
}

/* x (B, N, dim) -> [a, b] (B, N, 2): GELU(conv_k) then a 1x1 conv, along the sequence, with the
 * channels last throughout (no transpose of x). */
static Tensor *predict1d(Tape *tape, const ContextPool *layer, Tensor *x) {
    Tensor *h = op_gelu(tape, conv1d_channels_last(tape, &layer->pred0, x)); /* (B, N, hidden) */
    return conv1d_channels_last(tape, &layer->pred2, h);                     /* (B, N, 2) */
}

Tensor *contextpool_forward(Tape *tape, const ContextPool *layer, Tensor *x, ContextPoolAux *aux) {
    check_input1d(layer, x);
    const ContextPoolConfig *c = &layer->config;
    Tensor *ab = predict1d(tape, layer, x);
    Tensor *w = pooling_weights(tape, c, ab, AB_AXIS_1D); /* (B, N) */
    Tensor *s = support_sizes(tape, c, ab, AB_AXIS_1D);   /* (B, N) */
    if (aux) *aux = (ContextPoolAux){.weights = w, .support = s};
    if (c->composed) return pool1d_composed(tape, x, w, s, c->radius, c->causal);
    return op_contextpool1d(tape, x, w, s, c->radius, c->causal, POOL_EPS);
}

static void check_input2d(const ContextPool *layer, const Tensor *x) {
    char shape[64];
    if (layer->pred0.weight->ndim != 4)
        cpool_fail("contextpool2d: the layer was built by contextpool_init; use "
                   "contextpool_forward");
    if (x->ndim != 4 || x->shape[1] != layer->config.dim)
        cpool_fail("contextpool2d: x must be (B, %d, H, W), got shape %s", layer->config.dim,
                   TENSOR_SHAPE_STR(x, shape));
    if (x->shape[0] < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        cpool_fail("contextpool2d: x of shape %s is empty", TENSOR_SHAPE_STR(x, shape));
}

/* s_full (B, H, W) at the centres (stride u, stride v): (B, Ho, Wo). A plain copy for aux (the
 * fused op reads the centres itself). */
static Tensor *at_centres(Tape *tape, const Tensor *s_full, int stride) {
    int B = s_full->shape[0], H = s_full->shape[1], W = s_full->shape[2];
    int Ho = (H + stride - 1) / stride, Wo = (W + stride - 1) / stride;
    Tensor *s = tape_tensor(tape, 3, (int[]){B, Ho, Wo});
    for (int b = 0; b < B; b++)
        for (int u = 0; u < Ho; u++)
            for (int v = 0; v < Wo; v++)
                s->data[((long)b * Ho + u) * Wo + v] =
                    s_full->data[((long)b * H + stride * u) * W + stride * v];
    return s;
}

Tensor *contextpool2d_forward(Tape *tape, const ContextPool *layer, Tensor *x,
                              ContextPoolAux *aux) {
    check_input2d(layer, x);
    const ContextPoolConfig *c = &layer->config;
    Tensor *h = op_gelu(tape, conv2d_forward(tape, &layer->pred0, x)); /* (B, hidden, H, W) */
    Tensor *ab = conv2d_forward(tape, &layer->pred2, h);               /* (B, 2, H, W) */
    Tensor *w = pooling_weights(tape, c, ab, AB_AXIS_2D);              /* (B, H, W) */
    if (c->composed) {
        /* s only at the centres: the 1x1 conv evaluated with the pooling's stride. */
        Tensor *ab_centres = c->stride == 1 ? ab
                                            : op_conv2d(tape, h, layer->pred2.weight,
                                                        layer->pred2.bias, c->stride, 0, 1);
        Tensor *s = support_sizes(tape, c, ab_centres, AB_AXIS_2D); /* (B, Ho, Wo) */
        if (aux) *aux = (ContextPoolAux){.weights = w, .support = s};
        return pool2d_composed(tape, x, w, s, c->radius, c->stride);
    }
    /* (B, H, W): the op reads the centres */
    Tensor *s_full = support_sizes(tape, c, ab, AB_AXIS_2D);
    if (aux)
        *aux = (ContextPoolAux){
            .weights = w, .support = c->stride == 1 ? s_full : at_centres(tape, s_full, c->stride)};
    return op_contextpool2d(tape, x, w, s_full, c->radius, c->stride, POOL_EPS);
}
