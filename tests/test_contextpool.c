/* test_contextpool.c - the ContextPool layers (layers/contextpool.h): parameter names and shapes,
 * defaults, the predictor and the pooling against plain loops written here, hand-checkable limits
 * (a tiny support copies the centre, a huge one averages the window), the fused op against the
 * composed implementation in the forward pass and in every gradient, the channels-last predictor
 * against the convolutions on x transposed, causality bit for bit, the ablations, and every bad
 * config and bad input. */
#include <stdlib.h>

#include "test_util.h"
#include "test_layer_fixture.h"

#include "contextpool.h"
#include "ops.h"

/* Limits and loops written here are exact up to rounding: ~1e-15 in double; float32 rounds each
 * op of a chain (conv, GELU, sigmoid, exp, sums) at ~6e-8 relative, so 1e-5 leaves room. */
#ifdef CPOOL_DOUBLE
static const double TOL = 1e-12;
#else
static const double TOL = 1e-5;
#endif

static int setup(void **state) {
    return layer_fixture_setup(state, 2022);
}

static void fill_random(Tensor *t, Rng *rng) {
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, -1, 1);
}

static Tensor *random_tensor(int ndim, const int *shape, Rng *rng, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    fill_random(t, rng);
    return t;
}

static void assert_param(const ParamSet *params, int index, const char *name, int ndim,
                         const int *shape) {
    assert_true(index < params->count);
    assert_string_equal(params->items[index].name, name);
    const Tensor *t = params->items[index].tensor;
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
}

static void assert_shape(const Tensor *t, int ndim, const int *shape) {
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
}

static double sigmoid(double v) {
    return 1 / (1 + exp(-v));
}

static double gelu(double v) {
    return 0.5 * v * (1 + erf(v / sqrt(2.0)));
}

/* ---- Reference loops: the predictor and the pooling as the header states them ------------ */

/* [a, b] of a 1-d layer at token n of sequence b: conv_k (zero padding k/2 both sides, or k-1
 * on the left when causal), GELU, then the 1x1 conv. x (B, N, dim). */
static void reference_logits1d(const ContextPool *layer, const Tensor *x, int b, int n,
                               double ab[2]) {
    const ContextPoolConfig *c = &layer->config;
    int N = x->shape[1], k = c->kernel, pad = c->causal ? k - 1 : k / 2;
    const real *w0 = layer->pred0.weight->data, *w2 = layer->pred2.weight->data;
    ab[0] = layer->pred2.bias->data[0];
    ab[1] = layer->pred2.bias->data[1];
    for (int h = 0; h < c->hidden; h++) {
        double pre = layer->pred0.bias->data[h];
        for (int d = 0; d < c->dim; d++)
            for (int t = 0; t < k; t++) {
                int source = n + t - pad;
                if (source < 0 || source >= N) continue;
                pre += w0[((long)h * c->dim + d) * k + t] *
                       (double)x->data[((long)b * N + source) * c->dim + d];
            }
        for (int o = 0; o < 2; o++) ab[o] += w2[o * c->hidden + h] * gelu(pre);
    }
}

/* The same for a 2-d layer at pixel (py, px): 3x3 conv with padding 1, GELU, 1x1 conv. */
static void reference_logits2d(const ContextPool *layer, const Tensor *x, int b, int py, int px,
                               double ab[2]) {
    const ContextPoolConfig *c = &layer->config;
    int C = c->dim, H = x->shape[2], W = x->shape[3];
    const real *w0 = layer->pred0.weight->data, *w2 = layer->pred2.weight->data;
    ab[0] = layer->pred2.bias->data[0];
    ab[1] = layer->pred2.bias->data[1];
    for (int h = 0; h < c->hidden; h++) {
        double pre = layer->pred0.bias->data[h];
        for (int ch = 0; ch < C; ch++)
            for (int dy = 0; dy < 3; dy++)
                for (int dx = 0; dx < 3; dx++) {
                    int y = py + dy - 1, xx = px + dx - 1;
                    if (y < 0 || y >= H || xx < 0 || xx >= W) continue;
                    pre += w0[(((long)h * C + ch) * 3 + dy) * 3 + dx] *
                           (double)x->data[(((long)b * C + ch) * H + y) * W + xx];
                }
        for (int o = 0; o < 2; o++) ab[o] += w2[o * c->hidden + h] * gelu(pre);
    }
}

/* y (B, N, D) from x, w (B, N), s (B, N) by the formula, in double. */
static void reference_pool1d(const Tensor *x, const Tensor *w, const Tensor *s, int radius,
                             int causal, double *y) {
    int B = x->shape[0], N = x->shape[1], D = x->shape[2];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < N; i++) {
            double s_i = s->data[b * N + i], total = 0, *y_i = y + ((long)b * N + i) * D;
            for (int d = 0; d < D; d++) y_i[d] = 0;
            for (int j = 0; j < N; j++) {
                if (abs(i - j) > radius || (causal && j > i)) continue;
                double a = exp(-(double)(i - j) * (i - j) / (2 * s_i * s_i)) * w->data[b * N + j];
                total += a;
                for (int d = 0; d < D; d++) y_i[d] += a * x->data[((long)b * N + j) * D + d];
            }
            for (int d = 0; d < D; d++) y_i[d] /= total + 1e-6;
        }
}

/* y (B, C, Ho, Wo) from x (B, C, H, W), w (B, H, W) and s (B, Ho, Wo) at the centres. */
static void reference_pool2d(const Tensor *x, const Tensor *w, const Tensor *s, int radius,
                             int stride, double *y) {
    int B = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int Ho = s->shape[1], Wo = s->shape[2];
    for (int b = 0; b < B; b++)
        for (int u = 0; u < Ho; u++)
            for (int v = 0; v < Wo; v++) {
                double s_c = s->data[((long)b * Ho + u) * Wo + v], total = 0;
                double sums[16] = {0};
                for (int py = 0; py < H; py++)
                    for (int px = 0; px < W; px++) {
                        int dy = py - stride * u, dx = px - stride * v;
                        if (abs(dy) > radius || abs(dx) > radius) continue;
                        double a = exp(-(double)(dy * dy + dx * dx) / (2 * s_c * s_c)) *
                                   w->data[((long)b * H + py) * W + px];
                        total += a;
                        for (int ch = 0; ch < C; ch++)
                            sums[ch] += a * x->data[(((long)b * C + ch) * H + py) * W + px];
                    }
                for (int ch = 0; ch < C; ch++)
                    y[(((long)b * C + ch) * Ho + u) * Wo + v] = sums[ch] / (total + 1e-6);
            }
}

/* Asserts got (n reals) == expected (n doubles) within tolerance * max(1, |expected|). */
static void assert_matches(const double *expected, const Tensor *got, double tolerance,
                           const char *what) {
    assert_close(expected, got->data, got->size, tolerance, what);
}

/* ---- Parameters and defaults -------------------------------------------------------------- */

static void parameters_are_pred0_and_pred2_as_in_pytorch(void **state) {
    Fixture *f = *state;
    ContextPool seq, img;
    contextpool_init(&seq, contextpool_default_config(64, 0), &f->params, "pool", &f->rng);
    contextpool2d_init(&img, contextpool_default_config(12, 0), &f->params, "", &f->rng);
    assert_int_equal(f->params.count, 8);
    /* hidden = max(8, 64/4) = 16 */
    assert_param(&f->params, 0, "pool.pred.0.weight", 3, (int[]){16, 64, 3});
    assert_param(&f->params, 1, "pool.pred.0.bias", 1, (int[]){16});
    assert_param(&f->params, 2, "pool.pred.2.weight", 3, (int[]){2, 16, 1});
    assert_param(&f->params, 3, "pool.pred.2.bias", 1, (int[]){2});
    /* hidden = max(8, 12/4) = 8 */
    assert_param(&f->params, 4, "pred.0.weight", 4, (int[]){8, 12, 3, 3});
    assert_param(&f->params, 5, "pred.0.bias", 1, (int[]){8});
    assert_param(&f->params, 6, "pred.2.weight", 4, (int[]){2, 8, 1, 1});
    assert_param(&f->params, 7, "pred.2.bias", 1, (int[]){2});
    assert_ptr_equal(seq.pred2.bias, params_find(&f->params, "pool.pred.2.bias"));
}

static void init_fills_hidden_kernel_radius_and_stride(void **state) {
    Fixture *f = *state;
    ContextPoolConfig config = contextpool_default_config(16, 1);
    assert_true(config.s_min == 0.5 && config.s_max == 8 && config.s_fixed == 2);
    assert_int_equal(config.causal, 1);
    ContextPool a, b, c;
    contextpool_init(&a, config, &f->params, "a", &f->rng);
    assert_int_equal(a.config.hidden, 8);  /* max(8, 16/4) */
    assert_int_equal(a.config.kernel, 3);  /* the predictor's first kernel */
    assert_int_equal(a.config.radius, 24); /* ceil(3 * 8) */
    assert_int_equal(a.config.stride, 1);
    config = contextpool_default_config(100, 0);
    config.s_max = 2.5;
    contextpool_init(&b, config, &f->params, "b", &f->rng);
    assert_int_equal(b.config.hidden, 25); /* 100/4 */
    assert_int_equal(b.config.radius, 8);  /* ceil(7.5) */
    config = contextpool_default_config(3, 0);
    config.hidden = 5, config.kernel = 7, config.radius = 2;
    contextpool_init(&c, config, &f->params, "c", &f->rng);
    assert_int_equal(c.config.hidden, 5); /* given values are kept */
    assert_int_equal(c.config.kernel, 7);
    assert_int_equal(c.config.radius, 2);
}

/* PyTorch's Conv default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in * kernel elements. */
static void init_is_pytorch_conv_default_and_s_starts_mid_range(void **state) {
    Fixture *f = *state;
    ContextPool layer;
    contextpool_init(&layer, contextpool_default_config(32, 0), &f->params, "", &f->rng);
    double bound0 = 1 / sqrt(32.0 * 3), bound2 = 1 / sqrt(8.0);
    for (long i = 0; i < layer.pred0.weight->size; i++)
        assert_true(fabs(layer.pred0.weight->data[i]) <= bound0);
    for (long i = 0; i < layer.pred2.weight->size; i++)
        assert_true(fabs(layer.pred2.weight->data[i]) <= bound2);
    Tensor *x = random_tensor(3, (int[]){2, 50, 32}, &f->rng, 0);
    ContextPoolAux aux;
    contextpool_forward(f->tape, &layer, x, &aux);
    double mean_unit = 0; /* sigmoid(b), averaged over tokens: near 0.5 at init */
    for (long i = 0; i < aux.support->size; i++)
        mean_unit += (aux.support->data[i] - 0.5) / 7.5 / (double)aux.support->size;
    assert_true(fabs(mean_unit - 0.5) < 0.2);
    tensor_free(x);
}

/* ---- Forward against the reference loops and hand-checkable limits ------------------------ */

/* aux.weights = sigmoid(a), aux.support = s_min + (s_max - s_min) sigmoid(b), y = the formula. */
static void forward_matches_reference_loops_1d(void **state) {
    Fixture *f = *state;
    for (int variant = 0; variant < 4; variant++) {
        ContextPoolConfig config = contextpool_default_config(5, variant & 1);
        config.composed = variant >> 1;
        config.radius = 3, config.s_min = 0.7, config.s_max = 5, config.hidden = 6;
        ContextPool layer;
        char prefix[16];
        snprintf(prefix, sizeof prefix, "v%d", variant);
        contextpool_init(&layer, config, &f->params, prefix, &f->rng);
        if (variant == 3) layer.pred2.bias->data[1] = 3; /* s near s_max */
        int B = 2, N = 9;
        Tensor *x = random_tensor(3, (int[]){B, N, 5}, &f->rng, 0);
        ContextPoolAux aux;
        Tensor *y = contextpool_forward(f->tape, &layer, x, &aux);
        assert_shape(y, 3, (int[]){B, N, 5});
        assert_shape(aux.weights, 2, (int[]){B, N});
        assert_shape(aux.support, 2, (int[]){B, N});
        double w[18], s[18], expected[90];
        for (int b = 0; b < B; b++)
            for (int n = 0; n < N; n++) {
                double ab[2];
                reference_logits1d(&layer, x, b, n, ab);
                w[b * N + n] = sigmoid(ab[0]);
                s[b * N + n] = 0.7 + 4.3 * sigmoid(ab[1]);
            }
        assert_close(w, aux.weights->data, B * N, TOL, "w = sigmoid(a)");
        assert_close(s, aux.support->data, B * N, TOL, "s = s_min + (s_max - s_min) sigmoid(b)");
        reference_pool1d(x, aux.weights, aux.support, 3, config.causal, expected);
        assert_matches(expected, y, TOL, "y");
        tensor_free(x);
    }
}

static void forward_matches_reference_loops_2d(void **state) {
    Fixture *f = *state;
    for (int variant = 0; variant < 4; variant++) {
        ContextPoolConfig config = contextpool_default_config(3, 0);
        config.stride = 1 + (variant & 1), config.composed = variant >> 1, config.radius = 2;
        ContextPool layer;
        char prefix[16];
        snprintf(prefix, sizeof prefix, "v%d", variant);
        contextpool2d_init(&layer, config, &f->params, prefix, &f->rng);
        int B = 2, H = 5, W = 4, Ho = variant & 1 ? 3 : 5, Wo = variant & 1 ? 2 : 4;
        Tensor *x = random_tensor(4, (int[]){B, 3, H, W}, &f->rng, 0);
        ContextPoolAux aux;
        Tensor *y = contextpool2d_forward(f->tape, &layer, x, &aux);
        assert_shape(y, 4, (int[]){B, 3, Ho, Wo});
        assert_shape(aux.weights, 3, (int[]){B, H, W});
        assert_shape(aux.support, 3, (int[]){B, Ho, Wo});
        double w[40], s[40], expected[120], ab[2];
        for (int b = 0; b < B; b++)
            for (int py = 0; py < H; py++)
                for (int px = 0; px < W; px++) {
                    reference_logits2d(&layer, x, b, py, px, ab);
                    w[(b * H + py) * W + px] = sigmoid(ab[0]);
                }
        int stride = config.stride;
        for (int b = 0; b < B; b++) /* s at the centres (stride u, stride v) */
            for (int u = 0; u < Ho; u++)
                for (int v = 0; v < Wo; v++) {
                    reference_logits2d(&layer, x, b, stride * u, stride * v, ab);
                    s[(b * Ho + u) * Wo + v] = 0.5 + 7.5 * sigmoid(ab[1]);
                }
        assert_close(w, aux.weights->data, B * H * W, TOL, "w = sigmoid(a) at every pixel");
        assert_close(s, aux.support->data, B * Ho * Wo, TOL, "s at the centres");
        reference_pool2d(x, aux.weights, aux.support, 2, stride, expected);
        assert_matches(expected, y, TOL, "y");
        tensor_free(x);
    }
}

/* Two tokens, dim 1, a silent predictor (zero weights and biases): w = 1/2, s = (0.5 + 8) / 2,
 * g_01 = exp(-1 / (2 s^2)); y_0 = (x_0 + g x_1) / (1 + g + 2e-6) and symmetrically y_1. */
static void two_tokens_by_hand(void **state) {
    Fixture *f = *state;
    for (int composed = 0; composed <= 1; composed++) {
        ContextPoolConfig config = contextpool_default_config(1, 0);
        config.composed = composed;
        ContextPool layer;
        contextpool_init(&layer, config, &f->params, composed ? "b" : "a", &f->rng);
        tensor_fill(layer.pred2.weight, 0);
        tensor_fill(layer.pred2.bias, 0);
        Tensor *x = tensor_create(3, (int[]){1, 2, 1}, 0);
        x->data[0] = 2, x->data[1] = -1;
        Tensor *y = contextpool_forward(f->tape, &layer, x, NULL);
        double g = exp(-1 / (2 * 4.25 * 4.25)), den = 0.5 + 0.5 * g + 1e-6;
        double expected[2] = {(0.5 * 2 + 0.5 * g * -1) / den, (0.5 * g * 2 + 0.5 * -1) / den};
        assert_matches(expected, y, TOL, "two tokens");
        tensor_free(x);
    }
}

/* Uniform weights with a tiny fixed support make every Gaussian a spike: y_i = x_i / (1 + eps);
 * with a huge one (s = 1e9: g = exp(-d^2 / 2e18) = 1 exactly) it is flat and y_i is the plain
 * mean of the window, i-R .. i+R cut at the ends (causal: i-R .. i). */
static void support_limits_copy_the_token_or_average_the_window(void **state) {
    Fixture *f = *state;
    int N = 10, D = 3, R = 2;
    Tensor *x = random_tensor(3, (int[]){1, N, D}, &f->rng, 0);
    for (int variant = 0; variant < 8; variant++) {
        int composed = variant & 1, causal = (variant >> 1) & 1, flat = variant >> 2;
        ContextPoolConfig config = contextpool_default_config(D, causal);
        config.composed = composed, config.radius = R, config.size_fixed = 1;
        config.s_fixed = flat ? 1e9 : 0.02, config.weights_uniform = 1;
        ContextPool layer;
        char prefix[16];
        snprintf(prefix, sizeof prefix, "v%d", variant);
        contextpool_init(&layer, config, &f->params, prefix, &f->rng);
        Tensor *y = contextpool_forward(f->tape, &layer, x, NULL);
        double expected[30];
        for (int i = 0; i < N; i++) {
            int first = i - R < 0 ? 0 : i - R, last = causal ? i : (i + R < N ? i + R : N - 1);
            if (!flat) first = last = i;
            for (int d = 0; d < D; d++) {
                double sum = 0;
                for (int j = first; j <= last; j++) sum += x->data[j * D + d];
                expected[i * D + d] = sum / (last - first + 1 + 1e-6);
            }
        }
        assert_matches(expected, y, TOL, flat ? "flat: window mean" : "spike: the token");
    }
    tensor_free(x);
}

/* Stride 2 with a spike support: output (u, v) is input (2u, 2v), odd sizes included. */
static void stride2_output_is_centred_on_even_pixels(void **state) {
    Fixture *f = *state;
    int H = 5, W = 3;
    Tensor *x = random_tensor(4, (int[]){2, 2, H, W}, &f->rng, 0);
    for (int composed = 0; composed <= 1; composed++) {
        ContextPoolConfig config = contextpool_default_config(2, 0);
        config.stride = 2, config.composed = composed, config.weights_uniform = 1;
        config.size_fixed = 1, config.s_fixed = 0.02;
        ContextPool layer;
        contextpool2d_init(&layer, config, &f->params, composed ? "b" : "a", &f->rng);
        Tensor *y = contextpool2d_forward(f->tape, &layer, x, NULL);
        assert_shape(y, 4, (int[]){2, 2, 3, 2});
        double expected[24];
        for (int bc = 0; bc < 4; bc++)
            for (int u = 0; u < 3; u++)
                for (int v = 0; v < 2; v++)
                    expected[(bc * 3 + u) * 2 + v] =
                        x->data[(bc * H + 2 * u) * W + 2 * v] / (1 + 1e-6);
        assert_matches(expected, y, TOL, "y(u, v) = x(2u, 2v)");
    }
    tensor_free(x);
}

/* Stride 2 takes w from every pixel and s from the predictor at (2u, 2v): the same numbers as
 * the stride-1 layer with the same parameters, read at the centres. */
static void stride2_support_is_stride1_support_at_centres(void **state) {
    Fixture *f = *state;
    for (int composed = 0; composed <= 1; composed++) {
        ContextPoolConfig config = contextpool_default_config(3, 0);
        config.composed = composed;
        ContextPool one, two;
        Rng replay = f->rng;
        contextpool2d_init(&one, config, &f->params, composed ? "c" : "a", &f->rng);
        config.stride = 2;
        contextpool2d_init(&two, config, &f->params, composed ? "d" : "b", &replay);
        Tensor *x = random_tensor(4, (int[]){2, 3, 7, 6}, &f->rng, 0);
        ContextPoolAux aux1, aux2;
        contextpool2d_forward(f->tape, &one, x, &aux1);
        contextpool2d_forward(f->tape, &two, x, &aux2);
        assert_shape(aux2.support, 3, (int[]){2, 4, 3});
        double centres[24];
        for (int b = 0; b < 2; b++)
            for (int u = 0; u < 4; u++)
                for (int v = 0; v < 3; v++)
                    centres[(b * 4 + u) * 3 + v] = aux1.support->data[(b * 7 + 2 * u) * 6 + 2 * v];
        assert_close(centres, aux2.support->data, 24, TOL, "stride-2 s");
        double weights[84];
        for (int i = 0; i < 84; i++) weights[i] = aux1.weights->data[i];
        assert_close(weights, aux2.weights->data, 84, TOL, "stride-2 w");
        tensor_free(x);
    }
}

/* ---- Fused against composed: forward and every gradient ----------------------------------- */

/* y and the gradients of x and the four parameters, in double. */
typedef struct Result {
    long size[6];
    double *values[6];
} Result;

static void keep(Result *r, int k, const real *data, long n) {
    r->size[k] = n;
    r->values[k] = malloc((size_t)n * sizeof(double));
    for (long i = 0; i < n; i++) r->values[k][i] = data[i];
}

static void result_free(Result *r) {
    for (int k = 0; k < 6; k++) free(r->values[k]);
}

/* Builds the layer from `config` with parameters drawn from seed 99 (pred.2.bias[1] then set to
 * bias_b unless 0), runs it on a copy of x, backpropagates an upstream gradient drawn from seed
 * 5, and keeps y and every gradient. */
/* Backward from `out` with a fixed random upstream gradient (seed 5), then keep out, dx and the
 * four predictor parameters' gradients; frees the tape, x and the parameters. */
static Result backward_and_keep(Tape *tape, Tensor *out, Tensor *x, ParamSet *params) {
    Rng rng;
    rng_seed(&rng, 5);
    real *upstream = malloc((size_t)out->size * sizeof(real));
    for (long i = 0; i < out->size; i++) upstream[i] = (real)rng_range(&rng, -1, 1);
    tape_backward_from(tape, out, upstream);
    Result r = {.size = {0}};
    keep(&r, 0, out->data, out->size);
    keep(&r, 1, x->grad, x->size);
    for (int p = 0; p < 4; p++)
        keep(&r, 2 + p, params->items[p].tensor->grad, params->items[p].tensor->size);
    free(upstream);
    tape_free(tape);
    tensor_free(x);
    params_free(params);
    return r;
}

static Result run_layer(ContextPoolConfig config, int two_d, const Tensor *x_in, double bias_b) {
    ParamSet params = {0};
    Rng rng;
    rng_seed(&rng, 99);
    ContextPool layer;
    (two_d ? contextpool2d_init : contextpool_init)(&layer, config, &params, "pool", &rng);
    if (bias_b != 0) layer.pred2.bias->data[1] = (real)bias_b;
    Tensor *x = tensor_create(x_in->ndim, x_in->shape, 1);
    memcpy(x->data, x_in->data, (size_t)x->size * sizeof(real));
    Tape *tape = tape_create();
    Tensor *y = two_d ? contextpool2d_forward(tape, &layer, x, NULL)
                      : contextpool_forward(tape, &layer, x, NULL);
    return backward_and_keep(tape, y, x, &params);
}

/* Fused and composed agree to 1e-12 in double (relative to max(1, |value|)); float32 sums in
 * different orders (the fused op in double, the composed one through gemm in float), ~1e-6. */
#ifdef CPOOL_DOUBLE
static const double AGREE = 1e-12;
#else
static const double AGREE = 2e-5;
#endif

static void assert_fused_matches_composed(ContextPoolConfig config, int two_d, const Tensor *x,
                                          double bias_b, const char *what) {
    static const char *const names[6] = {
        "y", "dx", "d pred.0.weight", "d pred.0.bias", "d pred.2.weight", "d pred.2.bias"};
    config.composed = 0;
    Result fused = run_layer(config, two_d, x, bias_b);
    config.composed = 1;
    Result composed = run_layer(config, two_d, x, bias_b);
    for (int k = 0; k < 6; k++) {
        assert_int_equal(fused.size[k], composed.size[k]);
        for (long i = 0; i < fused.size[k]; i++) {
            double a = composed.values[k][i], b = fused.values[k][i];
            if (!(fabs(a - b) <= AGREE * fmax(1, fabs(a))))
                fail_msg("%s: %s element %ld: composed %.17g, fused %.17g", what, names[k], i, a,
                         b);
        }
    }
    result_free(&fused);
    result_free(&composed);
}

/* ---- The 1-d predictor reads x channels last ---------------------------------------------- */

/* [w, s] (B, 2N) of a 1-d layer built from seed 99 (as run_layer) on a copy of x, and the
 * gradients of x and the four parameters for an upstream gradient from seed 5. channels_first:
 * computed as predict1d did before op_conv1d_nlc, with x transposed to (B, dim, N) and the conv
 * layers' own forward (op_conv1d), [a, b] (B, 2, N) sliced along axis 1. */
static Result run_predictor(ContextPoolConfig config, const Tensor *x_in, int channels_first) {
    ParamSet params = {0};
    Rng rng;
    rng_seed(&rng, 99);
    ContextPool layer;
    contextpool_init(&layer, config, &params, "pool", &rng);
    const ContextPoolConfig *c = &layer.config;
    Tensor *x = tensor_create(x_in->ndim, x_in->shape, 1);
    memcpy(x->data, x_in->data, (size_t)x->size * sizeof(real));
    Tape *tape = tape_create();
    Tensor *ws[2];
    if (channels_first) {
        int B = x->shape[0], N = x->shape[1];
        Tensor *h = op_gelu(tape, conv1d_forward(tape, &layer.pred0, op_transpose(tape, x, 1, 2)));
        Tensor *ab = conv1d_forward(tape, &layer.pred2, h); /* (B, 2, N) */
        Tensor *a = op_reshape(tape, op_slice(tape, ab, 1, 0, 1), 2, (int[]){B, N});
        Tensor *b = op_reshape(tape, op_slice(tape, ab, 1, 1, 2), 2, (int[]){B, N});
        Tensor *s_min = tape_tensor(tape, 0, NULL);
        tensor_fill(s_min, (real)c->s_min);
        ws[0] = op_sigmoid(tape, a);
        ws[1] =
            op_add(tape, op_scale(tape, op_sigmoid(tape, b), (real)(c->s_max - c->s_min)), s_min);
    } else {
        ContextPoolAux aux;
        contextpool_forward(tape, &layer, x, &aux); /* y is not used: no gradient flows from it */
        ws[0] = aux.weights, ws[1] = aux.support;
    }
    Tensor *out = op_concat(tape, ws, 2, 1);
    return backward_and_keep(tape, out, x, &params);
}

/* w, s and every gradient of the predictor (op_conv1d_nlc on x (B, N, dim), [a, b] last) equal
 * those of the convolutions on x transposed: causal, centred k = 3 and k = 5. Both sides are
 * float32 chains of the same ops whose sums run in different orders, as fused and composed: the
 * same tolerance AGREE. */
static void predictor_matches_the_channels_first_convolutions(void **state) {
    Fixture *f = *state;
    static const char *const names[6] = {
        "[w, s]", "dx", "d pred.0.weight", "d pred.0.bias", "d pred.2.weight", "d pred.2.bias"};
    Tensor *x = random_tensor(3, (int[]){2, 12, 8}, &f->rng, 0);
    for (int variant = 0; variant < 3; variant++) {
        ContextPoolConfig config = contextpool_default_config(8, variant == 0);
        config.kernel = variant == 2 ? 5 : 3;
        Result last = run_predictor(config, x, 0), first = run_predictor(config, x, 1);
        for (int k = 0; k < 6; k++) {
            assert_int_equal(last.size[k], first.size[k]);
            for (long i = 0; i < last.size[k]; i++) {
                double a = first.values[k][i], b = last.values[k][i];
                if (!(fabs(a - b) <= AGREE * fmax(1, fabs(a))))
                    fail_msg("variant %d: %s element %ld: channels first %.17g, last %.17g",
                             variant, names[k], i, a, b);
            }
        }
        result_free(&last);
        result_free(&first);
    }
    tensor_free(x);
}

static void fused_equals_composed_1d(void **state) {
    Fixture *f = *state;
    const struct {
        int dim, causal, radius, B, N;
        double bias_b;
        const char *what;
    } cases[] = {
        {6, 0, 0, 2, 13, 0, "N < R"},         {6, 1, 0, 2, 13, 0, "causal, N < R"},
        {4, 0, 3, 3, 20, 0, "radius 3"},      {4, 1, 3, 3, 20, 0, "causal, radius 3"},
        {5, 0, 0, 2, 1, 0, "N = 1"},          {5, 1, 0, 1, 1, 0, "causal, N = 1"},
        {8, 0, 0, 2, 60, -4, "s near s_min"}, {8, 1, 0, 2, 60, 4, "causal, s near s_max"},
        {3, 0, 1, 1, 7, 4, "radius 1, flat"}, {16, 1, 0, 2, 50, 0, "causal, N > R"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ContextPoolConfig config = contextpool_default_config(cases[k].dim, cases[k].causal);
        config.radius = cases[k].radius;
        /* B > 1 with different contents: each sequence its own random values. */
        Tensor *x = random_tensor(3, (int[]){cases[k].B, cases[k].N, cases[k].dim}, &f->rng, 0);
        assert_fused_matches_composed(config, 0, x, cases[k].bias_b, cases[k].what);
        tensor_free(x);
    }
}

static void fused_equals_composed_2d(void **state) {
    Fixture *f = *state;
    const struct {
        int C, stride, radius, B, H, W;
        double bias_b;
        const char *what;
    } cases[] = {
        {3, 1, 0, 2, 6, 5, 0, "stride 1"},        {3, 2, 0, 2, 6, 5, 0, "stride 2"},
        {2, 2, 2, 2, 7, 9, 0, "stride 2, odd"},   {2, 1, 1, 1, 1, 7, 0, "H = 1"},
        {2, 2, 1, 1, 7, 1, 0, "stride 2, W = 1"}, {4, 2, 0, 2, 1, 1, 0, "1 x 1"},
        {3, 1, 2, 2, 8, 8, -4, "s near s_min"},   {3, 2, 0, 1, 9, 7, 4, "stride 2, s near s_max"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ContextPoolConfig config = contextpool_default_config(cases[k].C, 0);
        config.stride = cases[k].stride, config.radius = cases[k].radius;
        int shape[4] = {cases[k].B, cases[k].C, cases[k].H, cases[k].W};
        Tensor *x = random_tensor(4, shape, &f->rng, 0);
        assert_fused_matches_composed(config, 1, x, cases[k].bias_b, cases[k].what);
        tensor_free(x);
    }
}

static void fused_equals_composed_under_ablations(void **state) {
    Fixture *f = *state;
    Tensor *x1 = random_tensor(3, (int[]){2, 11, 4}, &f->rng, 0);
    Tensor *x2 = random_tensor(4, (int[]){2, 3, 5, 6}, &f->rng, 0);
    for (int ablation = 0; ablation < 3; ablation++) {
        ContextPoolConfig config = contextpool_default_config(4, ablation == 2);
        config.weights_uniform = ablation != 1;
        config.size_fixed = ablation != 0;
        config.radius = 3;
        assert_fused_matches_composed(config, 0, x1, 0, "1-d ablation");
        config = contextpool_default_config(3, 0);
        config.weights_uniform = ablation != 1, config.size_fixed = ablation != 0;
        config.stride = 2;
        assert_fused_matches_composed(config, 1, x2, 0, "2-d ablation");
    }
    tensor_free(x1);
    tensor_free(x2);
}

/* ---- Causality: no peeking, bit for bit --------------------------------------------------- */

/* For every i: replace every token after i with new random values; y_0 .. y_i (predictor
 * included) keep every bit. And the check has teeth: a later row does change. */
static void causal_layer_output_ignores_later_tokens_bit_for_bit(void **state) {
    Fixture *f = *state;
    int B = 2, N = 12, D = 5;
    for (int variant = 0; variant < 4; variant++) {
        ContextPoolConfig config = contextpool_default_config(D, 1);
        config.composed = variant & 1;
        config.radius = variant >> 1 ? 3 : 0; /* windows cut, or the default 24 > N */
        ContextPool layer;
        char prefix[16];
        snprintf(prefix, sizeof prefix, "v%d", variant);
        contextpool_init(&layer, config, &f->params, prefix, &f->rng);
        Tensor *x = random_tensor(3, (int[]){B, N, D}, &f->rng, 1);
        Tensor *y = contextpool_forward(f->tape, &layer, x, NULL);
        Tensor *changed = tensor_create(3, x->shape, 1);
        for (int i = 0; i + 1 < N; i++) {
            memcpy(changed->data, x->data, (size_t)x->size * sizeof(real));
            for (int b = 0; b < B; b++)
                for (long e = (long)(b * N + i + 1) * D; e < (long)(b + 1) * N * D; e++)
                    changed->data[e] = (real)rng_range(&f->rng, -3, 3);
            Tensor *y2 = contextpool_forward(f->tape, &layer, changed, NULL);
            for (int b = 0; b < B; b++) {
                const real *kept = y->data + (long)b * N * D, *now = y2->data + (long)b * N * D;
                assert_memory_equal(kept, now, (size_t)(i + 1) * D * sizeof(real));
                assert_memory_not_equal(kept + (long)(i + 1) * D, now + (long)(i + 1) * D,
                                        (size_t)D * sizeof(real));
            }
        }
        tensor_free(x);
        tensor_free(changed);
        tape_reset(f->tape);
    }
}

/* ---- Ablations and ranges ----------------------------------------------------------------- */

static void assert_all_equal(const Tensor *t, real value, const char *what) {
    for (long i = 0; i < t->size; i++)
        if (t->data[i] != value)
            fail_msg("%s: element %ld is %.17g, expected %.17g", what, i, (double)t->data[i],
                     (double)value);
}

static void uniform_weights_are_all_one_and_fixed_support_all_s_fixed(void **state) {
    Fixture *f = *state;
    Tensor *x1 = random_tensor(3, (int[]){2, 7, 4}, &f->rng, 0);
    Tensor *x2 = random_tensor(4, (int[]){2, 4, 5, 3}, &f->rng, 0);
    for (int variant = 0; variant < 4; variant++) {
        ContextPoolConfig config = contextpool_default_config(4, 0);
        config.composed = variant & 1;
        config.weights_uniform = 1, config.size_fixed = 1, config.s_fixed = 1.75;
        ContextPool seq, img;
        char prefix[16];
        snprintf(prefix, sizeof prefix, "s%d", variant);
        contextpool_init(&seq, config, &f->params, prefix, &f->rng);
        config.stride = 1 + (variant >> 1);
        snprintf(prefix, sizeof prefix, "i%d", variant);
        contextpool2d_init(&img, config, &f->params, prefix, &f->rng);
        ContextPoolAux a1, a2;
        contextpool_forward(f->tape, &seq, x1, &a1);
        contextpool2d_forward(f->tape, &img, x2, &a2);
        assert_all_equal(a1.weights, 1, "1-d w");
        assert_all_equal(a1.support, (real)1.75, "1-d s");
        assert_all_equal(a2.weights, 1, "2-d w");
        assert_all_equal(a2.support, (real)1.75, "2-d s");
        int Ho = config.stride == 2 ? 3 : 5, Wo = config.stride == 2 ? 2 : 3;
        assert_shape(a2.support, 3, (int[]){2, Ho, Wo});
    }
    /* Only the ablated head is constant: the other is still predicted. */
    ContextPoolConfig config = contextpool_default_config(4, 0);
    config.weights_uniform = 1;
    ContextPool learned_s;
    contextpool_init(&learned_s, config, &f->params, "learned_s", &f->rng);
    ContextPoolAux aux;
    contextpool_forward(f->tape, &learned_s, x1, &aux);
    assert_all_equal(aux.weights, 1, "uniform w");
    assert_true(aux.support->data[0] != aux.support->data[1]);
    tensor_free(x1);
    tensor_free(x2);
}

/* Even with logits driven to +-30 (sigmoid saturates), s stays in [s_min, s_max] and w in
 * [0, 1]. */
static void support_stays_within_s_min_s_max(void **state) {
    Fixture *f = *state;
    for (int variant = 0; variant < 3; variant++) {
        ContextPoolConfig config = contextpool_default_config(3, 0);
        config.s_min = 1.5, config.s_max = 3;
        ContextPool layer;
        char prefix[16];
        snprintf(prefix, sizeof prefix, "v%d", variant);
        contextpool_init(&layer, config, &f->params, prefix, &f->rng);
        if (variant > 0) {
            double push = variant == 1 ? 30 : -30;
            layer.pred2.bias->data[0] = (real)push;
            layer.pred2.bias->data[1] = (real)push;
        }
        Tensor *x = random_tensor(3, (int[]){2, 20, 3}, &f->rng, 0);
        ContextPoolAux aux;
        contextpool_forward(f->tape, &layer, x, &aux);
        for (long i = 0; i < aux.support->size; i++) {
            assert_true(aux.support->data[i] >= (real)1.5 && aux.support->data[i] <= (real)3);
            assert_true(aux.weights->data[i] >= 0 && aux.weights->data[i] <= 1);
        }
        tensor_free(x);
    }
}

/* ---- Bad configs and inputs --------------------------------------------------------------- */

static void bad_configs_fail_naming_the_key(void **state) {
    Fixture *f = *state;
    ContextPool layer;
    ContextPoolConfig c = contextpool_default_config(8, 0);
    ContextPoolConfig bad = c;
    bad.s_min = 0;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng),
                "s_min=0 must be positive");
    bad.s_min = -1;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng), "s_min=-1");
    bad = c, bad.s_max = 0.25;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng), "s_max=0.25 must be in");
    bad = c, bad.radius = -1;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng), "radius=-1");
    bad = c, bad.dim = 0;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng), "dim=0 must be positive");
    bad = c, bad.hidden = -2;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng), "hidden=-2");
    bad = c, bad.kernel = 4;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng), "kernel=4 must be odd");
    bad = c, bad.size_fixed = 1, bad.s_fixed = -1;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng), "s_fixed=-1");
    bad = c, bad.stride = 2;
    EXPECT_FAIL(contextpool_init(&layer, bad, &f->params, "p", &f->rng),
                "stride=2 is for contextpool2d only");
    bad = c, bad.stride = 3;
    EXPECT_FAIL(contextpool2d_init(&layer, bad, &f->params, "p", &f->rng),
                "contextpool2d: stride=3 must be 1 or 2");
    bad = c, bad.stride = -1;
    EXPECT_FAIL(contextpool2d_init(&layer, bad, &f->params, "p", &f->rng), "stride=-1");
    bad = c, bad.causal = 1;
    EXPECT_FAIL(contextpool2d_init(&layer, bad, &f->params, "p", &f->rng),
                "contextpool2d: causal=1 is for sequences only");
    bad = c, bad.kernel = 5;
    EXPECT_FAIL(contextpool2d_init(&layer, bad, &f->params, "p", &f->rng), "always 3x3");
    assert_int_equal(f->params.count, 0); /* a failed init creates nothing */
    /* An even kernel is fine when causal (k-1 zeros on the left). */
    bad = contextpool_default_config(8, 1), bad.kernel = 4;
    contextpool_init(&layer, bad, &f->params, "p", &f->rng);
}

static void bad_inputs_fail_naming_the_shapes(void **state) {
    Fixture *f = *state;
    ContextPool seq, img;
    contextpool_init(&seq, contextpool_default_config(4, 0), &f->params, "seq", &f->rng);
    contextpool2d_init(&img, contextpool_default_config(3, 0), &f->params, "img", &f->rng);
    Tensor *wrong_dim = tensor_create(3, (int[]){2, 5, 3}, 0);
    Tensor *flat = tensor_create(2, (int[]){5, 4}, 0);
    Tensor *empty = tensor_create(3, (int[]){1, 0, 4}, 0);
    Tensor *image = tensor_create(4, (int[]){1, 3, 4, 4}, 0);
    Tensor *wrong_channels = tensor_create(4, (int[]){1, 2, 4, 4}, 0);
    EXPECT_FAIL(contextpool_forward(f->tape, &seq, wrong_dim, NULL),
                "contextpool: x must be (B, N, 4), got shape (2, 5, 3)");
    EXPECT_FAIL(contextpool_forward(f->tape, &seq, flat, NULL), "got shape (5, 4)");
    EXPECT_FAIL(contextpool_forward(f->tape, &seq, empty, NULL), "(1, 0, 4) is empty");
    EXPECT_FAIL(contextpool2d_forward(f->tape, &img, wrong_channels, NULL),
                "contextpool2d: x must be (B, 3, H, W), got shape (1, 2, 4, 4)");
    EXPECT_FAIL(contextpool2d_forward(f->tape, &img, wrong_dim, NULL), "got shape (2, 5, 3)");
    EXPECT_FAIL(contextpool_forward(f->tape, &img, wrong_dim, NULL), "built by contextpool2d_init");
    EXPECT_FAIL(contextpool2d_forward(f->tape, &seq, image, NULL), "built by contextpool_init");
    tensor_free(wrong_dim);
    tensor_free(flat);
    tensor_free(empty);
    tensor_free(image);
    tensor_free(wrong_channels);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(parameters_are_pred0_and_pred2_as_in_pytorch),
        TEST(init_fills_hidden_kernel_radius_and_stride),
        TEST(init_is_pytorch_conv_default_and_s_starts_mid_range),
        TEST(forward_matches_reference_loops_1d),
        TEST(forward_matches_reference_loops_2d),
        TEST(two_tokens_by_hand),
        TEST(support_limits_copy_the_token_or_average_the_window),
        TEST(stride2_output_is_centred_on_even_pixels),
        TEST(stride2_support_is_stride1_support_at_centres),
        TEST(fused_equals_composed_1d),
        TEST(fused_equals_composed_2d),
        TEST(fused_equals_composed_under_ablations),
        TEST(predictor_matches_the_channels_first_convolutions),
        TEST(causal_layer_output_ignores_later_tokens_bit_for_bit),
        TEST(uniform_weights_are_all_one_and_fixed_support_all_s_fixed),
        TEST(support_stays_within_s_min_s_max),
        TEST(bad_configs_fail_naming_the_key),
        TEST(bad_inputs_fail_naming_the_shapes),
    };
    return cmocka_run_group_tests_name("contextpool (" REAL_NAME ")", tests, NULL, NULL);
}
