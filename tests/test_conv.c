/* test_conv.c - conv1d, conv2d, conv1d_nlc, avgpool2d, maxpool2d: hand-computed values and
 * gradients, output sizes, causality, a direct-loop reference, conv1d_nlc against conv1d between
 * transposes, and every bad-input path. */
#include "test_util.h"

#include <float.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops.h"
#include "rng.h"

/* Float32 sums of a few dozen O(1) products agree with double to ~1e-6 relative. */
#define TOLERANCE (sizeof(real) == sizeof(float) ? 1e-5 : 1e-12)

/* An owned tensor holding n values (n must be its size). VALUES(1, 2, 3) gives the pair
 * `values, n` for a literal list. */
static Tensor *tensor_of(int ndim, const int *shape, const double *values, long n,
                         int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    assert_int_equal(t->size, n);
    for (long i = 0; i < n; i++) t->data[i] = (real)values[i];
    return t;
}
#define VALUES(...)                                                                                \
    (const double[]){__VA_ARGS__}, (long)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double))

static Tensor *random_tensor(Rng *rng, int ndim, const int *shape, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, -1, 1);
    return t;
}

static real *ones(Tape *tape, long n) {
    real *seed = tape_save(tape, (size_t)n * sizeof(real));
    for (long i = 0; i < n; i++) seed[i] = 1;
    return seed;
}

static void assert_shape(const Tensor *t, int ndim, const int *shape) {
    char got[64], want[64];
    if (!(t->ndim == ndim && memcmp(t->shape, shape, (size_t)ndim * sizeof(int)) == 0))
        fail_msg("shape %s, expected %s", TENSOR_SHAPE_STR(t, got),
                 shape_string(ndim, shape, want, sizeof want));
}

/* ---- conv1d by hand ---- */

/* x = [1 2 4 7 11], w = [1 0 -1]: y[i] = x[i] - x[i + 2]. */
static const double X5[5] = {1, 2, 4, 7, 11}, DIFF[3] = {1, 0, -1};

static void conv1d_is_cross_correlation(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(3, (int[]){1, 1, 5}, X5, 5, 1),
           *w = tensor_of(3, (int[]){1, 1, 3}, DIFF, 3, 1);
    Tensor *bias = tensor_of(1, (int[]){1}, VALUES(0.5), 1);
    Tensor *y = op_conv1d(tape, x, w, bias, 1, 0, 0, 1);
    assert_shape(y, 3, (int[]){1, 1, 3});
    double expected[3] = {-3 + 0.5, -5 + 0.5, -7 + 0.5};
    assert_close(expected, y->data, 3, TOLERANCE, "y = x[i] - x[i+2] + 0.5");

    /* dy = 1: dw[k] = sum_i x[i + k]; dx[j] = sum of the taps w[k] that read x[j];
     * dbias = number of outputs. */
    tape_backward_from(tape, y, ones(tape, 3));
    double dw[3] = {1 + 2 + 4, 2 + 4 + 7, 4 + 7 + 11}, dx[5] = {1, 1, 0, -1, -1}, db = 3;
    assert_close(dw, w->grad, 3, TOLERANCE, "dw");
    assert_close(dx, x->grad, 5, TOLERANCE, "dx");
    assert_close(&db, bias->grad, 1, TOLERANCE, "dbias");
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(bias);
}

static void conv1d_padding_and_stride(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(3, (int[]){1, 1, 5}, X5, 5, 0),
           *w = tensor_of(3, (int[]){1, 1, 3}, DIFF, 3, 0);
    /* Zero padding 1 on both sides: y[i] = x[i - 1] - x[i + 1]. */
    double padded[5] = {0 - 2, 1 - 4, 2 - 7, 4 - 11, 7 - 0};
    assert_close(padded, op_conv1d(tape, x, w, NULL, 1, 1, 1, 1)->data, 5, TOLERANCE, "pad 1");
    /* Stride 2 keeps outputs 0 and 2 of the unpadded result. */
    double strided[2] = {-3, -7};
    assert_close(strided, op_conv1d(tape, x, w, NULL, 2, 0, 0, 1)->data, 2, TOLERANCE, "stride 2");
    /* Causal (pad_left = K - 1): y[i] = x[i - 2] - x[i]. */
    double causal[5] = {0 - 1, 0 - 2, 1 - 4, 2 - 7, 4 - 11};
    assert_close(causal, op_conv1d(tape, x, w, NULL, 1, 2, 0, 1)->data, 5, TOLERANCE, "causal");
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
}

/* Causality through the gradient: output i seeded alone reaches only inputs j <= i, and changing
 * an input j changes no output before j. */
static void causal_conv1d_output_i_depends_only_on_inputs_up_to_i(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 7);
    enum { L = 9, K = 4 };
    Tensor *x = random_tensor(&rng, 3, (int[]){1, 2, L}, 1);
    Tensor *w = random_tensor(&rng, 3, (int[]){3, 2, K}, 0);
    for (int i = 0; i < L; i++) {
        Tape *tape = tape_create();
        tensor_zero_grad(x);
        Tensor *y = op_conv1d(tape, x, w, NULL, 1, K - 1, 0, 1);
        assert_shape(y, 3, (int[]){1, 3, L});
        real *seed = tape_save(tape, (size_t)y->size * sizeof(real));
        for (int o = 0; o < 3; o++) seed[o * L + i] = 1; /* every channel's output i */
        tape_backward_from(tape, y, seed);
        for (int c = 0; c < 2; c++)
            for (int j = i + 1; j < L; j++)
                if (x->grad[c * L + j] != 0) fail_msg("output %d reads input %d", i, j);
        tape_free(tape);
    }
    Tape *tape = tape_create();
    Tensor *before = op_conv1d(tape, x, w, NULL, 1, K - 1, 0, 1);
    x->data[5] += 1; /* channel 0, position 5 */
    Tensor *after = op_conv1d(tape, x, w, NULL, 1, K - 1, 0, 1);
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < L; i++)
            if ((before->data[o * L + i] != after->data[o * L + i]) != (i >= 5))
                fail_msg("output (%d, %d) %s when input 5 changed", o, i,
                         i < 5 ? "changed" : "did not change");
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
}

/* ---- conv2d by hand ---- */

static const double X9[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, W4[4] = {1, 2, 3, 4};

static void conv2d_by_hand(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(4, (int[]){1, 1, 3, 3}, X9, 9, 1);
    Tensor *w = tensor_of(4, (int[]){1, 1, 2, 2}, W4, 4, 1);
    /* y[i, j] = 1 x[i, j] + 2 x[i, j+1] + 3 x[i+1, j] + 4 x[i+1, j+1]. */
    Tensor *y = op_conv2d(tape, x, w, NULL, 1, 0, 1);
    assert_shape(y, 4, (int[]){1, 1, 2, 2});
    double expected[4] = {1 + 4 + 12 + 20, 2 + 6 + 15 + 24, 4 + 10 + 21 + 32, 5 + 12 + 24 + 36};
    assert_close(expected, y->data, 4, TOLERANCE, "y");
    /* dy = 1: dw[p, q] = sum of the 2x2 block of x starting at (p, q); dx[r, c] = sum of the
     * w taps that read it (the centre is read by all four). */
    tape_backward_from(tape, y, ones(tape, 4));
    double dw[4] = {1 + 2 + 4 + 5, 2 + 3 + 5 + 6, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9};
    double dx[9] = {1, 1 + 2, 2, 1 + 3, 10, 2 + 4, 3, 3 + 4, 4};
    assert_close(dw, w->grad, 4, TOLERANCE, "dw");
    assert_close(dx, x->grad, 9, TOLERANCE, "dx");
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
}

static void conv2d_zero_padding_reaches_the_corners(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(4, (int[]){1, 1, 3, 3}, X9, 9, 0);
    Tensor *w = tensor_of(4, (int[]){1, 1, 2, 2}, W4, 4, 0);
    Tensor *y = op_conv2d(tape, x, w, NULL, 1, 1, 1);
    assert_shape(y, 4, (int[]){1, 1, 4, 4});
    /* Corner (0, 0) sees only x[0, 0] under w[1, 1]; corner (3, 3) only x[2, 2] under w[0, 0]. */
    double corners[4] = {4 * 1, 3 * 3, 2 * 7, 1 * 9};
    double got[4] = {y->data[0], y->data[3], y->data[12], y->data[15]};
    for (int k = 0; k < 4; k++) assert_true(fabs(got[k] - corners[k]) <= TOLERANCE * corners[k]);
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
}

static void grouped_conv_sees_only_its_own_channels(void **state) {
    (void)state;
    Tape *tape = tape_create();
    double xv[8] = {1, 2, 3, 4, 10, 20, 30, 40};
    Tensor *x = tensor_of(4, (int[]){1, 2, 2, 2}, xv, 8, 0);
    /* groups = 2, 1x1 kernels: output 0 = 2 * channel 0, output 1 = 3 * channel 1 + bias. */
    Tensor *w = tensor_of(4, (int[]){2, 1, 1, 1}, VALUES(2, 3), 0);
    Tensor *bias = tensor_of(1, (int[]){2}, VALUES(0, 1), 0);
    Tensor *y = op_conv2d(tape, x, w, bias, 1, 0, 2);
    double expected[8] = {2, 4, 6, 8, 31, 61, 91, 121};
    assert_close(expected, y->data, 8, TOLERANCE, "depthwise 1x1");
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(bias);
}

static void output_sizes_follow_the_formula(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(4, (int[]){2, 3, 7, 8}, 0),
           *w = tensor_create(4, (int[]){4, 3, 3, 3}, 0);
    /* H_out = (H + 2 padding - K) / stride + 1, floored. */
    assert_shape(op_conv2d(tape, x, w, NULL, 1, 0, 1), 4, (int[]){2, 4, 5, 6});
    assert_shape(op_conv2d(tape, x, w, NULL, 2, 1, 1), 4, (int[]){2, 4, 4, 4});
    assert_shape(op_conv2d(tape, x, w, NULL, 3, 0, 1), 4, (int[]){2, 4, 2, 2});
    assert_shape(op_conv2d(tape, x, w, NULL, 2, 2, 1), 4, (int[]){2, 4, 5, 5});
    Tensor *x1 = tensor_create(3, (int[]){2, 3, 10}, 0),
           *w1 = tensor_create(3, (int[]){4, 3, 4}, 0);
    /* L_out = (L + pad_left + pad_right - K) / stride + 1. */
    assert_shape(op_conv1d(tape, x1, w1, NULL, 3, 2, 1, 1), 3, (int[]){2, 4, 4});
    assert_shape(op_conv1d(tape, x1, w1, NULL, 1, 3, 0, 1), 3, (int[]){2, 4, 10});
    assert_shape(op_conv1d(tape, x1, w1, NULL, 2, 0, 0, 1), 3, (int[]){2, 4, 4});
    /* An empty batch gives an empty output. */
    Tensor *x_empty = tensor_create(4, (int[]){0, 3, 7, 8}, 0);
    assert_shape(op_conv2d(tape, x_empty, w, NULL, 1, 0, 1), 4, (int[]){0, 4, 5, 6});
    tensor_free(x_empty);
    /* The kernel exactly fills the padded input: one output. */
    Tensor *w_full = tensor_create(3, (int[]){4, 3, 13}, 0);
    assert_shape(op_conv1d(tape, x1, w_full, NULL, 5, 2, 1, 1), 3, (int[]){2, 4, 1});
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(x1);
    tensor_free(w1);
    tensor_free(w_full);
}

/* y[b, o, i, j] by the definition, in double: the reference for the im2col path. */
static double direct_conv2d(const Tensor *x, const Tensor *w, const Tensor *bias, int stride,
                            int padding, int groups, int b, int o, int i, int j) {
    int C = x->shape[1], H = x->shape[2], W = x->shape[3], Cg = C / groups;
    int KH = w->shape[2], KW = w->shape[3], group = o / (w->shape[0] / groups);
    double sum = bias ? bias->data[o] : 0;
    for (int c = 0; c < Cg; c++)
        for (int p = 0; p < KH; p++)
            for (int q = 0; q < KW; q++) {
                int r = i * stride + p - padding, s = j * stride + q - padding;
                if (r < 0 || r >= H || s < 0 || s >= W) continue;
                double xv = x->data[(((long)b * C + group * Cg + c) * H + r) * W + s];
                sum += xv * w->data[(((long)o * Cg + c) * KH + p) * KW + q];
            }
    return sum;
}

static void conv2d_matches_the_direct_definition(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 11);
    /* (groups, stride, padding, KH, KW) over one x (2, 4, 7, 6). */
    const int cases[][5] = {
        {1, 1, 0, 3, 3}, {2, 2, 1, 3, 2}, {4, 1, 1, 3, 3}, {2, 3, 2, 1, 1}, {1, 1, 0, 1, 1}};
    Tensor *x = random_tensor(&rng, 4, (int[]){2, 4, 7, 6}, 0);
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int groups = cases[k][0], stride = cases[k][1], padding = cases[k][2];
        int w_shape[4] = {8, 4 / groups, cases[k][3], cases[k][4]}; /* O = 8: divisible by groups */
        Tensor *w = random_tensor(&rng, 4, w_shape, 0);
        Tensor *bias = random_tensor(&rng, 1, w->shape, 0);
        Tape *tape = tape_create();
        Tensor *y = op_conv2d(tape, x, w, k % 2 ? bias : NULL, stride, padding, groups);
        for (int b = 0; b < 2; b++)
            for (int o = 0; o < y->shape[1]; o++)
                for (int i = 0; i < y->shape[2]; i++)
                    for (int j = 0; j < y->shape[3]; j++) {
                        double expected = direct_conv2d(x, w, k % 2 ? bias : NULL, stride, padding,
                                                        groups, b, o, i, j);
                        long n = ((b * y->shape[1] + o) * y->shape[2] + i) * y->shape[3] + j;
                        assert_close(&expected, &y->data[n], 1, TOLERANCE, "conv2d vs direct");
                    }
        tape_free(tape);
        tensor_free(w);
        tensor_free(bias);
    }
    tensor_free(x);
}

static void conv_backward_accumulates_and_no_grad_records_nothing(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(3, (int[]){1, 1, 5}, X5, 5, 0),
           *w = tensor_of(3, (int[]){1, 1, 3}, DIFF, 3, 1);
    for (int pass = 0; pass < 2; pass++) {
        tape_backward_from(tape, op_conv1d(tape, x, w, NULL, 1, 0, 0, 1), ones(tape, 3));
        tape_reset(tape);
    }
    double dw[3] = {2 * 7, 2 * 13, 2 * 22}; /* twice the single-pass gradient */
    assert_close(dw, w->grad, 3, TOLERANCE, "dw after two passes");
    tape->no_grad = 1;
    Tensor *y = op_conv1d(tape, x, w, NULL, 1, 0, 0, 1);
    assert_int_equal(tape->n_records, 0);
    assert_false(y->requires_grad);
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
}

/* ---- the batched path (one group, >= 8 output channels, C KH KW >= 64) ----
 * These shapes take the batched channels-last path (conv_batched.c says when), which the
 * small shapes above do not reach. Each case is checked against the definition in double:
 * y, and for L = sum(y * seed) the gradients dx, dw, dbias. */

typedef struct ConvCase {
    int conv1d;                 /* 1: op_conv1d on x (B, C, W), w (O, C, KW) */
    int x_shape[4], w_shape[4]; /* conv2d shapes; a conv1d's are (B, C, 1, W), (O, C, 1, KW) */
    int stride, pad_top, pad_left, pad_right; /* conv2d: pad_top = pad_left = pad_right */
} ConvCase;

static Tensor *run_case(Tape *tape, const ConvCase *k, Tensor *x, Tensor *w, Tensor *bias) {
    if (k->conv1d) return op_conv1d(tape, x, w, bias, k->stride, k->pad_left, k->pad_right, 1);
    return op_conv2d(tape, x, w, bias, k->stride, k->pad_left, 1);
}

/* The case's tensors: x and w of rank 3 (conv1d) or 4, uniform in [-1, 1], all needing grad. */
static Tensor *case_tensor(Rng *rng, const ConvCase *k, const int *shape4) {
    int shape[4] = {shape4[0], shape4[1], shape4[2], shape4[3]};
    if (k->conv1d) shape[2] = shape4[3];
    return random_tensor(rng, k->conv1d ? 3 : 4, shape, 1);
}

/* |got - expected| <= bound for each element, with a message naming the case and element. */
static void assert_within(const char *what, int case_index, const double *expected,
                          const double *bound, const real *got, long n) {
    for (long i = 0; i < n; i++)
        if (!(fabs((double)got[i] - expected[i]) <= bound[i]))
            fail_msg("case %d: %s[%ld]: expected %.17g, got %.17g (bound %.3g)", case_index, what,
                     i, expected[i], (double)got[i], bound[i]);
}

/* Sums by the definition: value[n] and the sum of the absolute values of its terms. */
typedef struct Sums {
    double *value, *abs;
} Sums;
static Sums sums_create(long n) {
    return (Sums){calloc((size_t)n, sizeof(double)), calloc((size_t)n, sizeof(double))};
}
static void sums_add(Sums *s, long n, double term) {
    s->value[n] += term;
    s->abs[n] += fabs(term);
}
static void sums_free(Sums *s) {
    free(s->value);
    free(s->abs);
}

/* The rounding bound of a sum of `terms` products: a float sum of n terms is within
 * n eps sum|terms| of the exact sum (each of the n - 1 adds and the product's own rounding
 * contribute at most eps times a partial sum, the classic gamma_n bound that
 * tests/test_matmul.c uses for gemm). The reference in double has its own such error, at most
 * as large in the float64 build: 2 n eps covers both. The gradients add once more into a zero
 * gradient (exact) and the batched path adds partial sums exactly as a longer sum would, so n
 * is the number of terms plus 1 for the final add (bias, or dx's col2im into a gradient). */
static void set_bounds(const Sums *s, long n, long terms, double *bound) {
    const double eps = sizeof(real) == sizeof(float) ? FLT_EPSILON : DBL_EPSILON;
    for (long i = 0; i < n; i++) bound[i] = 2.0 * (double)(terms + 1) * eps * s->abs[i] + 1e-300;
}

static void check_batched_case(int index, const ConvCase *k, Rng *rng) {
    const int B = k->x_shape[0], C = k->x_shape[1], H = k->x_shape[2], W = k->x_shape[3];
    const int O = k->w_shape[0], KH = k->w_shape[2], KW = k->w_shape[3], s = k->stride;
    Tensor *x = case_tensor(rng, k, k->x_shape), *w = case_tensor(rng, k, k->w_shape);
    Tensor *bias = random_tensor(rng, 1, (int[]){O}, 1);
    Tape *tape = tape_create();
    Tensor *y = run_case(tape, k, x, w, bias);
    const int Ho = k->conv1d ? 1 : y->shape[2], Wo = y->shape[k->conv1d ? 2 : 3];
    real *seed = tape_save(tape, (size_t)y->size * sizeof(real));
    for (long n = 0; n < y->size; n++) seed[n] = (real)rng_range(rng, -1, 1);
    tape_backward_from(tape, y, seed);

    Sums ys = sums_create(y->size), dxs = sums_create(x->size), dws = sums_create(w->size);
    Sums dbs = sums_create(O);
    for (int b = 0; b < B; b++)
        for (int o = 0; o < O; o++)
            for (int i = 0; i < Ho; i++)
                for (int j = 0; j < Wo; j++) {
                    long yn = (((long)b * O + o) * Ho + i) * Wo + j;
                    sums_add(&ys, yn, bias->data[o]);
                    sums_add(&dbs, o, seed[yn]);
                    for (int c = 0; c < C; c++)
                        for (int p = 0; p < KH; p++)
                            for (int q = 0; q < KW; q++) {
                                int r = i * s + p - k->pad_top, t = j * s + q - k->pad_left;
                                if (r < 0 || r >= H || t < 0 || t >= W) continue;
                                long xn = (((long)b * C + c) * H + r) * W + t;
                                long wn = (((long)o * C + c) * KH + p) * KW + q;
                                sums_add(&ys, yn, (double)w->data[wn] * x->data[xn]);
                                sums_add(&dxs, xn, (double)w->data[wn] * seed[yn]);
                                sums_add(&dws, wn, (double)x->data[xn] * seed[yn]);
                            }
                }
    long longest = y->size > x->size ? y->size : x->size;
    double *bound = malloc((size_t)(longest > w->size ? longest : w->size) * sizeof(double));
    set_bounds(&ys, y->size, (long)C * KH * KW + 1, bound);
    assert_within("batched y", index, ys.value, bound, y->data, y->size);
    set_bounds(&dxs, x->size, (long)O * KH * KW, bound);
    assert_within("batched dx", index, dxs.value, bound, x->grad, x->size);
    set_bounds(&dws, w->size, (long)B * Ho * Wo, bound);
    assert_within("batched dw", index, dws.value, bound, w->grad, w->size);
    set_bounds(&dbs, O, (long)B * Ho * Wo, bound);
    assert_within("batched dbias", index, dbs.value, bound, bias->grad, O);
    free(bound);
    sums_free(&ys);
    sums_free(&dxs);
    sums_free(&dws);
    sums_free(&dbs);
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(bias);
}

/* Both plans of the batched path and their edges: the flat plan (stride 1, KH = 1: the
 * char-LM's causal conv1d, a 1x1 conv2d with padding), whose rows straddling two batch
 * elements are dropped; the gathered plan (2-d windows, strides), in several chunks of images
 * when B Ho Wo > 512 rows; input lines and columns past the windows' extent; a left padding
 * longer than the extent, so that no x element is read and y = bias, dx = 0. */
static void batched_conv_matches_the_definition(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 21);
    const ConvCase cases[] = {
        {1, {3, 32, 1, 20}, {8, 32, 1, 3}, 1, 0, 2, 0}, /* causal conv1d, flat */
        {1, {2, 64, 1, 9}, {8, 64, 1, 1}, 1, 0, 0, 0},  /* conv1d k = 1, flat, nothing dropped */
        {1, {2, 32, 1, 11}, {9, 32, 1, 3}, 2, 0, 1, 1}, /* conv1d stride 2, gathered */
        {1, {2, 64, 1, 1}, {8, 64, 1, 1}, 5, 0, 3, 0},  /* padding beyond the extent */
        {0, {3, 16, 5, 4}, {10, 16, 3, 3}, 1, 1, 1, 1}, /* 3x3 pad 1, one chunk */
        {0, {6, 8, 12, 10}, {8, 8, 3, 3}, 1, 1, 1, 1},  /* 3x3 pad 1, chunks of 5 images + 1 */
        {0, {2, 64, 3, 4}, {8, 64, 1, 1}, 1, 1, 1, 1},  /* 1x1 with padding, flat */
        {0, {2, 16, 7, 6}, {8, 16, 2, 2}, 2, 0, 0, 0},  /* stride 2: line 6 of x is never read */
    };
    for (int k = 0; k < (int)(sizeof cases / sizeof cases[0]); k++)
        check_batched_case(k, &cases[k], &rng);
}

/* y, dx, dw and dbias of one run, copied out (owned). */
static real *run_and_copy(const ConvCase *k, Tensor *x, Tensor *w, Tensor *bias) {
    Tape *tape = tape_create();
    Tensor *y = run_case(tape, k, x, w, bias);
    tape_backward_from(tape, y, ones(tape, y->size));
    long n = y->size + x->size + w->size + bias->size;
    real *all = malloc((size_t)n * sizeof(real)), *at = all;
    const Tensor *parts[4] = {y, x, w, bias};
    for (int i = 0; i < 4; i++) {
        const real *from = i == 0 ? parts[i]->data : parts[i]->grad;
        memcpy(at, from, (size_t)parts[i]->size * sizeof(real));
        at += parts[i]->size;
    }
    tensor_zero_grad(x);
    tensor_zero_grad(w);
    tensor_zero_grad(bias);
    tape_free(tape);
    return all;
}

/* The batched path's results do not depend on the thread count (gemm sums in a fixed order and
 * everything else runs on one thread): 1 and 2 threads agree bit for bit, on shapes whose
 * products are large enough for gemm to use both threads. */
static void batched_conv_is_bit_identical_across_thread_counts(void **state) {
    (void)state;
#ifdef _OPENMP
    Rng rng;
    rng_seed(&rng, 22);
    const ConvCase cases[] = {
        {1, {4, 64, 1, 256}, {32, 64, 1, 3}, 1, 0, 2, 0}, /* flat: 12.6 MFLOP forward */
        {0, {8, 32, 16, 16}, {16, 32, 3, 3}, 1, 1, 1, 1}, /* gathered: 18.9 MFLOP forward */
    };
    const int saved_threads = omp_get_max_threads();
    for (int k = 0; k < 2; k++) {
        Tensor *x = case_tensor(&rng, &cases[k], cases[k].x_shape);
        Tensor *w = case_tensor(&rng, &cases[k], cases[k].w_shape);
        Tensor *bias = random_tensor(&rng, 1, (int[]){cases[k].w_shape[0]}, 1);
        omp_set_num_threads(1);
        real *one = run_and_copy(&cases[k], x, w, bias);
        omp_set_num_threads(2);
        real *two = run_and_copy(&cases[k], x, w, bias);
        Tape *tape = tape_create();
        long n = run_case(tape, &cases[k], x, w, bias)->size + x->size + w->size + bias->size;
        tape_free(tape);
        for (long i = 0; i < n; i++)
            if (memcmp(&one[i], &two[i], sizeof(real)) != 0)
                fail_msg("case %d: value %ld differs: %.9g with 1 thread, %.9g with 2", k, i,
                         (double)one[i], (double)two[i]);
        free(one);
        free(two);
        tensor_free(x);
        tensor_free(w);
        tensor_free(bias);
    }
    omp_set_num_threads(saved_threads);
#else
    skip();
#endif
}

/* An empty batch on the batched path: an empty output, and backward runs. */
static void batched_conv_of_an_empty_batch_is_empty(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){0, 64, 10}, 1),
           *w = tensor_create(3, (int[]){8, 64, 3}, 1);
    Tensor *y = op_conv1d(tape, x, w, NULL, 1, 2, 0, 1);
    assert_shape(y, 3, (int[]){0, 8, 10});
    const real no_seed[1] = {0}; /* y has no elements: nothing is read */
    tape_backward_from(tape, y, no_seed);
    for (long i = 0; i < w->size; i++) assert_true(w->grad[i] == 0);
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
}

/* ---- conv1d_nlc: channels-last x (B, L, C) -> (B, L_out, O) ---- */

/* X5 and DIFF again, as one channel last: x (1, 5, 1), y (1, 3, 1), the same numbers as
 * conv1d_is_cross_correlation. Then two channels: with w (2, 2, 1) the identity, y = x; with
 * w = [[1, 0.5]] each output row is x[l, 0] + 0.5 x[l, 1]: rows are positions, columns channels. */
static void conv1d_nlc_by_hand(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(3, (int[]){1, 5, 1}, X5, 5, 1),
           *w = tensor_of(3, (int[]){1, 1, 3}, DIFF, 3, 1);
    Tensor *bias = tensor_of(1, (int[]){1}, VALUES(0.5), 1);
    Tensor *y = op_conv1d_nlc(tape, x, w, bias, 0, 0);
    assert_shape(y, 3, (int[]){1, 3, 1});
    double expected[3] = {-3 + 0.5, -5 + 0.5, -7 + 0.5};
    assert_close(expected, y->data, 3, TOLERANCE, "y = x[i] - x[i+2] + 0.5");
    tape_backward_from(tape, y, ones(tape, 3));
    double dw[3] = {1 + 2 + 4, 2 + 4 + 7, 4 + 7 + 11}, dx[5] = {1, 1, 0, -1, -1}, db = 3;
    assert_close(dw, w->grad, 3, TOLERANCE, "dw");
    assert_close(dx, x->grad, 5, TOLERANCE, "dx");
    assert_close(&db, bias->grad, 1, TOLERANCE, "dbias");

    /* causal (pad_left = 2): y[i] = x[i - 2] - x[i], x = 0 before the start */
    Tensor *causal = op_conv1d_nlc(tape, x, w, NULL, 2, 0);
    double shifted[5] = {-1, -2, 1 - 4, 2 - 7, 4 - 11};
    assert_close(shifted, causal->data, 5, TOLERANCE, "causal y");

    Tensor *x2 = tensor_of(3, (int[]){1, 2, 2}, VALUES(1, 10, 2, 20), 0);
    Tensor *identity = tensor_of(3, (int[]){2, 2, 1}, VALUES(1, 0, 0, 1), 0);
    Tensor *mix = tensor_of(3, (int[]){1, 2, 1}, VALUES(1, 0.5), 0);
    double same[4] = {1, 10, 2, 20}, mixed[2] = {1 + 5, 2 + 10};
    assert_close(same, op_conv1d_nlc(tape, x2, identity, NULL, 0, 0)->data, 4, TOLERANCE, "y = x");
    assert_close(mixed, op_conv1d_nlc(tape, x2, mix, NULL, 0, 0)->data, 2, TOLERANCE, "mixed");
    tape_free(tape);
    Tensor *owned[] = {x, w, bias, x2, identity, mix};
    for (size_t k = 0; k < sizeof owned / sizeof owned[0]; k++) tensor_free(owned[k]);
}

typedef struct NlcCase {
    int batch, length, channels, out_channels, kernel, pad_left, pad_right, bias;
} NlcCase;

/* y, dx, dw, dbias (in that order; dbias 0 in a case without bias) for the seed, through `run`
 * and copied out (owned); the gradients are zeroed again. */
typedef Tensor *(*NlcRun)(Tape *tape, const NlcCase *k, Tensor *x, Tensor *w, Tensor *bias);
static real *nlc_results(NlcRun run, const NlcCase *k, Tensor *x, Tensor *w, Tensor *bias,
                         const real *seed, long *y_size) {
    Tape *tape = tape_create();
    Tensor *y = run(tape, k, x, w, bias);
    tape_backward_from(tape, y, seed);
    *y_size = y->size;
    real *all = malloc((size_t)(y->size + x->size + w->size + bias->size) * sizeof(real)),
         *at = all;
    memcpy(at, y->data, (size_t)y->size * sizeof(real));
    at += y->size;
    Tensor *inputs[3] = {x, w, bias};
    for (int i = 0; i < 3; i++) {
        if (inputs[i] == bias && !k->bias)
            memset(at, 0, (size_t)bias->size * sizeof(real));
        else
            memcpy(at, inputs[i]->grad, (size_t)inputs[i]->size * sizeof(real));
        at += inputs[i]->size;
        tensor_zero_grad(inputs[i]);
    }
    tape_free(tape);
    return all;
}

static Tensor *run_nlc(Tape *tape, const NlcCase *k, Tensor *x, Tensor *w, Tensor *bias) {
    return op_conv1d_nlc(tape, x, w, k->bias ? bias : NULL, k->pad_left, k->pad_right);
}

/* What predict1d did before op_conv1d_nlc: transpose, op_conv1d, transpose back. */
static Tensor *run_transposed(Tape *tape, const NlcCase *k, Tensor *x, Tensor *w, Tensor *bias) {
    Tensor *channels_first = op_transpose(tape, x, 1, 2);
    Tensor *y =
        op_conv1d(tape, channels_first, w, k->bias ? bias : NULL, 1, k->pad_left, k->pad_right, 1);
    return op_transpose(tape, y, 1, 2);
}

/* Bounds on |got - want| for y, dx, dw and dbias laid out as nlc_results. Each result of a sum
 * of n terms t_i is within n eps sum|t_i| of the exact sum (the bound of set_bounds, n counting
 * the bias or the add into a zero gradient), so two results of the same sum computed in
 * different orders are within 2 n eps sum|t_i| of each other: set_bounds's bound, with
 * sum|t_i| from the definition in double. Owned. */
static double *nlc_bounds(const NlcCase *k, const Tensor *x, const Tensor *w, const Tensor *bias,
                          const real *seed) {
    const int B = k->batch, L = k->length, C = k->channels, O = k->out_channels, K = k->kernel;
    const int L_out = L + k->pad_left + k->pad_right - K + 1;
    const long y_size = (long)B * L_out * O;
    Sums ys = sums_create(y_size), dxs = sums_create(x->size), dws = sums_create(w->size);
    Sums dbs = sums_create(O);
    for (int b = 0; b < B; b++)
        for (int l = 0; l < L_out; l++)
            for (int o = 0; o < O; o++) {
                long yn = ((long)b * L_out + l) * O + o;
                if (k->bias) sums_add(&ys, yn, bias->data[o]);
                sums_add(&dbs, o, seed[yn]);
                for (int p = 0; p < K; p++) {
                    int t = l + p - k->pad_left;
                    if (t < 0 || t >= L) continue;
                    for (int c = 0; c < C; c++) {
                        long xn = ((long)b * L + t) * C + c, wn = ((long)o * C + c) * K + p;
                        sums_add(&ys, yn, (double)w->data[wn] * x->data[xn]);
                        sums_add(&dxs, xn, (double)w->data[wn] * seed[yn]);
                        sums_add(&dws, wn, (double)x->data[xn] * seed[yn]);
                    }
                }
            }
    double *bound = malloc((size_t)(y_size + x->size + w->size + O) * sizeof(double));
    set_bounds(&ys, y_size, (long)C * K + 1, bound);
    set_bounds(&dxs, x->size, (long)O * K, bound + y_size);
    set_bounds(&dws, w->size, (long)B * L_out, bound + y_size + x->size);
    set_bounds(&dbs, O, (long)B * L_out, bound + y_size + x->size + w->size);
    sums_free(&ys);
    sums_free(&dxs);
    sums_free(&dws);
    sums_free(&dbs);
    return bound;
}

/* op_conv1d_nlc against op_conv1d between transposes (what predict1d did before): y, dx, dw and
 * dbias, within nlc_bounds (op_conv1d takes its batched path on the larger cases). The cases:
 * the char-LM's causal k = 3 (scaled down to B 2, L 64: gemm-sized interior rows), symmetric,
 * none, right-only padding, a left padding longer than K - 1 (dx's windows then start past the
 * row), L < K (every row an edge row), and a 1x1 kernel without bias. */
static void conv1d_nlc_matches_transposed_conv1d(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 23);
    const NlcCase cases[] = {
        /* B  L   C   O  K  pl pr bias */
        {2, 64, 128, 32, 3, 2, 0, 1}, {2, 20, 32, 8, 3, 2, 0, 1}, {2, 11, 5, 3, 3, 1, 1, 1},
        {1, 9, 4, 2, 3, 0, 0, 1},     {2, 7, 3, 4, 2, 0, 2, 1},   {2, 6, 3, 2, 3, 4, 1, 1},
        {2, 2, 3, 2, 4, 3, 1, 1},     {3, 10, 16, 2, 1, 0, 0, 0},
    };
    static const char *const names[4] = {"conv1d_nlc y", "conv1d_nlc dx", "conv1d_nlc dw",
                                         "conv1d_nlc dbias"};
    for (int index = 0; index < (int)(sizeof cases / sizeof cases[0]); index++) {
        const NlcCase *k = &cases[index];
        const int B = k->batch, L = k->length, C = k->channels, O = k->out_channels;
        const long y_size = (long)B * (L + k->pad_left + k->pad_right - k->kernel + 1) * O;
        Tensor *x = random_tensor(&rng, 3, (int[]){B, L, C}, 1);
        Tensor *w = random_tensor(&rng, 3, (int[]){O, C, k->kernel}, 1);
        Tensor *bias = random_tensor(&rng, 1, (int[]){O}, 1);
        real *seed = malloc((size_t)y_size * sizeof(real));
        for (long n = 0; n < y_size; n++) seed[n] = (real)rng_range(&rng, -1, 1);
        long got_size, want_size;
        real *got = nlc_results(run_nlc, k, x, w, bias, seed, &got_size);
        real *want = nlc_results(run_transposed, k, x, w, bias, seed, &want_size);
        assert_int_equal(got_size, y_size);
        assert_int_equal(want_size, y_size);
        double *bound = nlc_bounds(k, x, w, bias, seed);
        const long sizes[4] = {y_size, x->size, w->size, O};
        long n_all = y_size + x->size + w->size + O;
        double *expected = malloc((size_t)n_all * sizeof(double));
        for (long i = 0; i < n_all; i++) expected[i] = want[i];
        for (long part = 0, at = 0; part < 4; at += sizes[part++])
            assert_within(names[part], index, expected + at, bound + at, got + at, sizes[part]);
        free(expected);
        free(bound);
        free(got);
        free(want);
        free(seed);
        tensor_free(x);
        tensor_free(w);
        tensor_free(bias);
    }
}

/* An empty batch: an empty output, and backward runs and adds nothing. */
static void conv1d_nlc_of_an_empty_batch_is_empty(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){0, 10, 64}, 1),
           *w = tensor_create(3, (int[]){8, 64, 3}, 1);
    Tensor *y = op_conv1d_nlc(tape, x, w, NULL, 2, 0);
    assert_shape(y, 3, (int[]){0, 10, 8});
    const real no_seed[1] = {0}; /* y has no elements: nothing is read */
    tape_backward_from(tape, y, no_seed);
    for (long i = 0; i < w->size; i++) assert_true(w->grad[i] == 0);
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
}

/* ---- pooling ---- */

static const double X16[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static void avgpool_averages_each_window(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(4, (int[]){1, 1, 4, 4}, X16, 16, 1);
    Tensor *y = op_avgpool2d(tape, x, 2, 2);
    assert_shape(y, 4, (int[]){1, 1, 2, 2});
    double expected[4] = {3.5, 5.5, 11.5, 13.5};
    assert_close(expected, y->data, 4, TOLERANCE, "avgpool 2/2");
    /* Overlapping windows (k 3, s 1) add their shares: corners 1/9, edges 2/9, centre 4/9. */
    tape_reset(tape);
    Tensor *z = op_avgpool2d(tape, x, 3, 1);
    double means[4] = {6, 7, 10, 11};
    assert_close(means, z->data, 4, TOLERANCE, "avgpool 3/1");
    tape_backward_from(tape, z, ones(tape, 4));
    double dx[16] = {1, 2, 2, 1, 2, 4, 4, 2, 2, 4, 4, 2, 1, 2, 2, 1};
    for (int i = 0; i < 16; i++) dx[i] /= 9;
    assert_close(dx, x->grad, 16, TOLERANCE, "avgpool dx");
    tape_free(tape);
    tensor_free(x);
}

static void maxpool_takes_each_window_maximum(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(4, (int[]){1, 1, 4, 4}, X16, 16, 1);
    double tiled[4] = {6, 8, 14, 16}, overlapping[4] = {11, 12, 15, 16};
    assert_close(tiled, op_maxpool2d(tape, x, 2, 2)->data, 4, 0, "maxpool 2/2");
    Tensor *y = op_maxpool2d(tape, x, 3, 1);
    assert_close(overlapping, y->data, 4, 0, "maxpool 3/1");
    tape_backward_from(tape, y, (real[]){1, 2, 3, 4});
    double dx[16] = {0};
    dx[10] = 1, dx[11] = 2, dx[14] = 3, dx[15] = 4; /* each max gets its output's gradient */
    assert_close(dx, x->grad, 16, 0, "maxpool dx");
    tape_free(tape);
    tensor_free(x);
}

static void pooling_output_size_is_floored(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(4, (int[]){2, 3, 5, 7}, 0);
    assert_shape(op_avgpool2d(tape, x, 2, 2), 4, (int[]){2, 3, 2, 3});
    assert_shape(op_maxpool2d(tape, x, 3, 2), 4, (int[]){2, 3, 2, 3});
    assert_shape(op_maxpool2d(tape, x, 2, 3), 4, (int[]){2, 3, 2, 2});
    assert_shape(op_avgpool2d(tape, x, 5, 1), 4, (int[]){2, 3, 1, 3});
    tape_free(tape);
    tensor_free(x);
}

static void maxpool_ties_send_the_gradient_to_the_first_maximum(void **state) {
    (void)state;
    Tape *tape = tape_create();
    /* Two equal maxima (5) in the window, at (0, 1) and (1, 0): row-major order finds (0, 1). */
    Tensor *x = tensor_of(4, (int[]){1, 1, 2, 2}, VALUES(1, 5, 5, 2), 1);
    tape_backward_from(tape, op_maxpool2d(tape, x, 2, 2), ones(tape, 1));
    double dx[4] = {0, 1, 0, 0};
    assert_close(dx, x->grad, 4, 0, "dx");
    /* A value shared by overlapping windows collects every window's gradient. */
    Tensor *peak = tensor_of(4, (int[]){1, 1, 3, 3}, VALUES(0, 0, 0, 0, 9, 0, 0, 0, 0), 1);
    tape_backward_from(tape, op_maxpool2d(tape, peak, 2, 1), ones(tape, 4));
    assert_true(peak->grad[4] == 4);
    tape_free(tape);
    tensor_free(x);
    tensor_free(peak);
}

static void maxpool_propagates_nan_as_torch(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(4, (int[]){1, 1, 2, 4}, VALUES(1, NAN, 3, 4, 5, 6, 7, 8), 0);
    Tensor *y = op_maxpool2d(tape, x, 2, 2);
    assert_true(isnan(y->data[0]));
    assert_true(y->data[1] == 8);
    tape_free(tape);
    tensor_free(x);
}

/* ---- bad inputs ---- */

static void conv_rejects_bad_arguments(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(4, (int[]){2, 4, 5, 5}, 0),
           *w = tensor_create(4, (int[]){6, 2, 3, 3}, 0);
    Tensor *x1 = tensor_create(3, (int[]){2, 4, 5}, 0), *w1 = tensor_create(3, (int[]){6, 4, 3}, 0);
    Tensor *bias = tensor_create(1, (int[]){5}, 0),
           *w_odd = tensor_create(4, (int[]){3, 2, 3, 3}, 0);
    Tensor *w_big = tensor_create(4, (int[]){6, 2, 6, 3}, 0),
           *w_empty = tensor_create(3, (int[]){6, 4, 0}, 0);
    Tensor *w3 = tensor_create(4, (int[]){6, 3, 3, 3}, 0),
           *x3 = tensor_create(4, (int[]){2, 3, 5, 5}, 0);
    Tensor *w1_big = tensor_create(3, (int[]){6, 4, 8}, 0);
    Tensor *w_no_out = tensor_create(3, (int[]){0, 4, 3}, 0);
    EXPECT_FAIL(op_conv2d(tape, x1, w, NULL, 1, 0, 2),
                "op_conv2d: x must be (B, C, H, W), got shape (2, 4, 5)");
    EXPECT_FAIL(op_conv2d(tape, x, w1, NULL, 1, 0, 2),
                "op_conv2d: w must be (O, C/groups, KH, KW) with every size >= 1, got shape "
                "(6, 4, 3)");
    EXPECT_FAIL(op_conv1d(tape, x, w1, NULL, 1, 0, 0, 1),
                "op_conv1d: x must be (B, C, L), got shape (2, 4, 5, 5)");
    EXPECT_FAIL(op_conv1d(tape, x1, w_empty, NULL, 1, 0, 0, 1),
                "op_conv1d: w must be (O, C/groups, K) with every size >= 1, got shape (6, 4, 0)");
    EXPECT_FAIL(op_conv1d(tape, x1, w_no_out, NULL, 1, 0, 0, 1),
                "op_conv1d: w must be (O, C/groups, K) with every size >= 1, got shape (0, 4, 3)");
    EXPECT_FAIL(op_conv2d(tape, x, w, NULL, 0, 0, 2), "op_conv2d: stride must be >= 1, got 0");
    EXPECT_FAIL(op_conv1d(tape, x1, w1, NULL, -1, 0, 0, 1), "op_conv1d: stride must be >= 1");
    EXPECT_FAIL(op_conv2d(tape, x, w, NULL, 1, 0, 0), "op_conv2d: groups must be >= 1, got 0");
    EXPECT_FAIL(op_conv2d(tape, x3, w3, NULL, 1, 0, 2),
                "op_conv2d: 3 input channels of x (2, 3, 5, 5) are not divisible by groups = 2");
    EXPECT_FAIL(op_conv2d(tape, x, w_odd, NULL, 1, 0, 2),
                "op_conv2d: 3 output channels of w (3, 2, 3, 3) are not divisible by groups = 2");
    EXPECT_FAIL(op_conv2d(tape, x, w, NULL, 1, 0, 1),
                "op_conv2d: w (6, 2, 3, 3) has 2 input channels per group, x (2, 4, 5, 5) with "
                "groups = 1 needs 4");
    EXPECT_FAIL(op_conv2d(tape, x, w_big, NULL, 1, 0, 2),
                "op_conv2d: kernel 6x3 of w (6, 2, 6, 3) is larger than the padded input 5x5 "
                "(x (2, 4, 5, 5), padding 0)");
    assert_int_equal(op_conv2d(tape, x, w_big, NULL, 1, 1, 2)->shape[2], 2); /* fits padded */
    EXPECT_FAIL(op_conv1d(tape, x1, w1_big, NULL, 1, 1, 1, 1),
                "op_conv1d: kernel 8 of w (6, 4, 8) is larger than the padded input 7 (x (2, 4, "
                "5), padding 1 + 1)");
    EXPECT_FAIL(op_conv2d(tape, x, w, NULL, 1, -1, 2), "op_conv2d: padding must be >= 0, got -1");
    EXPECT_FAIL(op_conv1d(tape, x1, w1, NULL, 1, 0, -2, 1),
                "op_conv1d: padding must be >= 0, got pad_left = 0, pad_right = -2");
    EXPECT_FAIL(op_conv2d(tape, x, w, bias, 1, 0, 2),
                "op_conv2d: bias must be (6) for w (6, 2, 3, 3), got shape (5)");
    EXPECT_FAIL(op_conv1d(tape, x1, w1, x1, 1, 0, 0, 1), "op_conv1d: bias must be (6)");
    tape_free(tape);
    Tensor *owned[] = {x, w, x1, w1, bias, w_odd, w_big, w_empty, w3, x3, w1_big, w_no_out};
    for (size_t k = 0; k < sizeof owned / sizeof owned[0]; k++) tensor_free(owned[k]);
}

static void conv1d_nlc_rejects_bad_arguments(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){2, 5, 4}, 0), *w = tensor_create(3, (int[]){6, 4, 3}, 0);
    Tensor *x4 = tensor_create(4, (int[]){2, 4, 5, 5}, 0),
           *w4 = tensor_create(4, (int[]){6, 4, 3, 3}, 0);
    Tensor *w_empty = tensor_create(3, (int[]){6, 4, 0}, 0),
           *w_grouped = tensor_create(3, (int[]){6, 2, 3}, 0);
    Tensor *bias = tensor_create(1, (int[]){5}, 0), *w_big = tensor_create(3, (int[]){6, 4, 8}, 0);
    EXPECT_FAIL(op_conv1d_nlc(tape, x4, w, NULL, 0, 0),
                "op_conv1d_nlc: x must be (B, L, C), got shape (2, 4, 5, 5)");
    EXPECT_FAIL(op_conv1d_nlc(tape, x, w4, NULL, 0, 0),
                "op_conv1d_nlc: w must be (O, C, K) with every size >= 1, got shape (6, 4, 3, 3)");
    EXPECT_FAIL(op_conv1d_nlc(tape, x, w_empty, NULL, 0, 0),
                "op_conv1d_nlc: w must be (O, C, K) with every size >= 1, got shape (6, 4, 0)");
    EXPECT_FAIL(op_conv1d_nlc(tape, x, w_grouped, NULL, 0, 0),
                "op_conv1d_nlc: w (6, 2, 3) has 2 input channels, x (2, 5, 4) has 4 (its last "
                "axis; one group only)");
    EXPECT_FAIL(op_conv1d_nlc(tape, x, w, bias, 0, 0),
                "op_conv1d_nlc: bias must be (6) for w (6, 4, 3), got shape (5)");
    EXPECT_FAIL(op_conv1d_nlc(tape, x, w, NULL, -1, 0),
                "op_conv1d_nlc: padding must be >= 0, got pad_left = -1, pad_right = 0");
    EXPECT_FAIL(op_conv1d_nlc(tape, x, w_big, NULL, 1, 1),
                "op_conv1d_nlc: kernel 8 of w (6, 4, 8) is larger than the padded input 7 (x (2, "
                "5, 4), padding 1 + 1)");
    assert_int_equal(op_conv1d_nlc(tape, x, w_big, NULL, 2, 1)->shape[1], 1); /* fits padded */
    tape_free(tape);
    Tensor *owned[] = {x, w, x4, w4, w_empty, w_grouped, bias, w_big};
    for (size_t k = 0; k < sizeof owned / sizeof owned[0]; k++) tensor_free(owned[k]);
}

static void pooling_rejects_bad_arguments(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(4, (int[]){1, 2, 3, 5}, 0),
           *x3 = tensor_create(3, (int[]){2, 3, 5}, 0);
    EXPECT_FAIL(op_avgpool2d(tape, x3, 2, 2),
                "op_avgpool2d: x must be (B, C, H, W), got shape (2, 3, 5)");
    EXPECT_FAIL(op_maxpool2d(tape, x3, 2, 2), "op_maxpool2d: x must be (B, C, H, W)");
    EXPECT_FAIL(op_maxpool2d(tape, x, 0, 1),
                "op_maxpool2d: kernel and stride must be >= 1, got kernel 0, stride 1");
    EXPECT_FAIL(op_avgpool2d(tape, x, 2, 0),
                "op_avgpool2d: kernel and stride must be >= 1, got kernel 2, stride 0");
    EXPECT_FAIL(op_maxpool2d(tape, x, 4, 1),
                "op_maxpool2d: kernel 4 is larger than the input 3x5 of x (1, 2, 3, 5)");
    EXPECT_FAIL(op_avgpool2d(tape, x, 4, 1), "op_avgpool2d: kernel 4 is larger than the input");
    tape_free(tape);
    tensor_free(x);
    tensor_free(x3);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(conv1d_is_cross_correlation),
        cmocka_unit_test(conv1d_padding_and_stride),
        cmocka_unit_test(causal_conv1d_output_i_depends_only_on_inputs_up_to_i),
        cmocka_unit_test(conv2d_by_hand),
        cmocka_unit_test(conv2d_zero_padding_reaches_the_corners),
        cmocka_unit_test(grouped_conv_sees_only_its_own_channels),
        cmocka_unit_test(output_sizes_follow_the_formula),
        cmocka_unit_test(conv2d_matches_the_direct_definition),
        cmocka_unit_test(conv_backward_accumulates_and_no_grad_records_nothing),
        cmocka_unit_test(batched_conv_matches_the_definition),
        cmocka_unit_test(batched_conv_is_bit_identical_across_thread_counts),
        cmocka_unit_test(batched_conv_of_an_empty_batch_is_empty),
        cmocka_unit_test(conv1d_nlc_by_hand),
        cmocka_unit_test(conv1d_nlc_matches_transposed_conv1d),
        cmocka_unit_test(conv1d_nlc_of_an_empty_batch_is_empty),
        cmocka_unit_test(avgpool_averages_each_window),
        cmocka_unit_test(maxpool_takes_each_window_maximum),
        cmocka_unit_test(pooling_output_size_is_floored),
        cmocka_unit_test(maxpool_ties_send_the_gradient_to_the_first_maximum),
        cmocka_unit_test(maxpool_propagates_nan_as_torch),
        cmocka_unit_test(conv_rejects_bad_arguments),
        cmocka_unit_test(conv1d_nlc_rejects_bad_arguments),
        cmocka_unit_test(pooling_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("conv (" REAL_NAME ")", tests, NULL, NULL);
}
