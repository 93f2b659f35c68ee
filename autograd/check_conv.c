/* check_conv.c - gradient checks for the ops in ops_conv.c and ops_conv_nlc.c.
 *
 * Step and tolerance. Convolution is bilinear in (x, w) and linear in bias: perturbing ONE
 * element leaves L = sum(r * y) linear in that element, so central differences have no
 * truncation error at any step h, only rounding ~ eps_machine |L| / h. The default h = 1e-6 gives
 * ~1e-9 absolute, uncomfortably close to 1e-8 relative when an input's gradient happens to be
 * small (a one-element bias). So these checks use h = 1e-3: rounding ~1e-12 absolute and 1e-8
 * relative holds with two orders of margin; a wrong backward is off by O(1) relative whatever h.
 * conv1d_nlc is the same bilinear map. Average pooling is linear (same argument). Max pooling is
 * piecewise linear; its inputs are distinct values 0.05 apart (a shuffled grid), so a step of 1e-3
 * < 0.025 never changes which element is a window's maximum, L stays linear on the stencil and the
 * same h and 1e-8 apply. */
#include "gradcheck.h"
#include "ops.h"

/* h = 1e-3: exact for maps linear in each element (see the top of the file). */
static GradcheckOptions options(Rng *rng) {
    return (GradcheckOptions){.step = 1e-3, .seed = rng_u64(rng)};
}

/* ---- conv1d, conv2d ---- */

typedef struct ConvCase {
    int batch, channels_per_group, out_per_group, groups; /* C = cpg groups, O = opg groups */
    int kernel_h, kernel_w;                               /* conv1d uses kernel_w only */
    int stride, pad_left, pad_right;                      /* conv2d: padding = pad_left */
    int bias;
} ConvCase;

static Tensor *conv1d_fn(Tape *tape, Tensor *const *in, void *context) {
    const ConvCase *c = context;
    return op_conv1d(tape, in[0], in[1], c->bias ? in[2] : NULL, c->stride, c->pad_left,
                     c->pad_right, c->groups);
}

static Tensor *conv2d_fn(Tape *tape, Tensor *const *in, void *context) {
    const ConvCase *c = context;
    return op_conv2d(tape, in[0], in[1], c->bias ? in[2] : NULL, c->stride, c->pad_left, c->groups);
}

/* Inputs x (B, C, spatial...), w (O, C/groups, kernel...), bias (O); checks all three. */
static void run_conv_case(Rng *rng, GradcheckStats *stats, const ConvCase *c, int spatial,
                          const int *in_size) {
    int C = c->channels_per_group * c->groups, O = c->out_per_group * c->groups;
    int x_shape[4] = {c->batch, C, in_size[0], in_size[1]};
    int w_shape[4] = {O, c->channels_per_group, c->kernel_h, c->kernel_w};
    if (spatial == 1) {
        x_shape[2] = in_size[1];
        w_shape[2] = c->kernel_w;
    }
    Tensor *in[3] = {gradcheck_input(rng, 2 + spatial, x_shape, -1, 1),
                     gradcheck_input(rng, 2 + spatial, w_shape, -1, 1),
                     gradcheck_input(rng, 1, &O, -1, 1)};
    GradcheckOptions opt = options(rng);
    gradcheck(spatial == 1 ? conv1d_fn : conv2d_fn, (void *)c, in, c->bias ? 3 : 2, &opt, stats,
              NULL);
    gradcheck_free(in, 3);
}

/* An odd length in [lo, lo + 4] (odd sizes catch off-by-one errors in the output size). */
static int odd_size(Rng *rng, int lo) {
    return lo + 2 * rng_int(rng, 3) + (lo % 2 == 0);
}

/* Strides 1 and 2; padding none, symmetric, causal (K-1, 0) and other asymmetric; groups 1, 2
 * and depthwise (groups = C); with and without bias; B = 1 and 2; a 1x1 kernel (the pointwise
 * path without im2col). */
static void check_conv1d(Rng *rng, GradcheckStats *stats) {
    const ConvCase cases[] = {
        /* B cpg opg groups  -  K  stride pad_l pad_r bias */
        {1, 2, 3, 1, 1, 3, 1, 0, 0, 1}, {2, 3, 2, 1, 1, 3, 2, 1, 1, 0},
        {2, 2, 2, 2, 1, 3, 1, 2, 0, 1}, /* causal: pad_left = K - 1 */
        {1, 1, 2, 1, 1, 4, 1, 3, 0, 0}, /* causal, even kernel */
        {2, 2, 1, 1, 1, 2, 2, 0, 2, 1}, /* asymmetric, right only */
        {2, 1, 1, 3, 1, 3, 1, 1, 1, 1}, /* depthwise: groups = C = 3 */
        {2, 1, 2, 4, 1, 2, 2, 1, 0, 0}, /* depthwise with channel multiplier 2 */
        {2, 3, 2, 1, 1, 1, 1, 0, 0, 1}, /* 1x1: pointwise path */
        {1, 2, 2, 1, 1, 1, 2, 1, 1, 1}, /* 1x1 with stride and padding: im2col path */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int size[2] = {1, odd_size(rng, 5)};
        run_conv_case(rng, stats, &cases[k], 1, size);
    }
}

static void check_conv2d(Rng *rng, GradcheckStats *stats) {
    const ConvCase cases[] = {
        /* B cpg opg groups KH KW stride pad - bias */
        {1, 2, 3, 1, 3, 3, 1, 0, 0, 1},
        {2, 2, 2, 1, 3, 3, 2, 1, 0, 0},
        {2, 2, 2, 2, 3, 2, 1, 1, 0, 1}, /* groups 2, non-square kernel */
        {1, 3, 1, 2, 2, 3, 2, 0, 0, 0},
        {2, 1, 1, 3, 3, 3, 1, 1, 0, 1}, /* depthwise: groups = C = 3 */
        {2, 1, 2, 2, 3, 3, 2, 1, 0, 0}, /* depthwise, multiplier 2, stride 2 */
        {2, 3, 2, 1, 1, 1, 1, 0, 0, 1}, /* 1x1: pointwise path */
        {1, 2, 2, 1, 1, 1, 2, 1, 0, 0}, /* 1x1 with stride and padding: im2col path */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int size[2] = {odd_size(rng, 3), odd_size(rng, 5)};
        run_conv_case(rng, stats, &cases[k], 2, size);
    }
}

/* ---- conv1d_nlc: channels last, stride 1, one group ---- */

typedef struct NlcCase {
    int batch, in_channels, out_channels, kernel, pad_left, pad_right, bias;
} NlcCase;

static Tensor *conv1d_nlc_fn(Tape *tape, Tensor *const *in, void *context) {
    const NlcCase *c = context;
    return op_conv1d_nlc(tape, in[0], in[1], c->bias ? in[2] : NULL, c->pad_left, c->pad_right);
}

/* x (B, L, C) with odd L in 5..9, w (O, C, K), bias (O). Padding none, symmetric, causal
 * (K - 1, 0), right only, longer than K - 1 on the left (dx's windows then start past the
 * row), a kernel longer than x (every row is an edge row), and 1x1; with and without bias. */
static void check_conv1d_nlc(Rng *rng, GradcheckStats *stats) {
    const NlcCase cases[] = {
        /* B  C  O  K  pl pr bias */
        {1, 2, 3, 3, 0, 0, 1}, {2, 3, 2, 3, 1, 1, 0}, {2, 2, 2, 3, 2, 0, 1}, /* causal */
        {1, 1, 2, 4, 3, 0, 0}, {2, 2, 1, 2, 0, 2, 1}, {2, 2, 3, 3, 4, 1, 1},
        {1, 2, 2, 9, 4, 4, 1}, /* K = 9 > L: no interior row */
        {2, 3, 2, 1, 0, 0, 1}, /* 1x1 */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const NlcCase *c = &cases[k];
        int x_shape[3] = {c->batch, odd_size(rng, 5), c->in_channels};
        int w_shape[3] = {c->out_channels, c->in_channels, c->kernel};
        Tensor *in[3] = {gradcheck_input(rng, 3, x_shape, -1, 1),
                         gradcheck_input(rng, 3, w_shape, -1, 1),
                         gradcheck_input(rng, 1, &c->out_channels, -1, 1)};
        GradcheckOptions opt = options(rng);
        gradcheck(conv1d_nlc_fn, (void *)c, in, c->bias ? 3 : 2, &opt, stats, NULL);
        gradcheck_free(in, 3);
    }
}

/* ---- pooling ---- */

static Tensor *avgpool_fn(Tape *tape, Tensor *const *in, void *context) {
    const int *args = context; /* kernel, stride */
    return op_avgpool2d(tape, in[0], args[0], args[1]);
}

static Tensor *maxpool_fn(Tape *tape, Tensor *const *in, void *context) {
    const int *args = context;
    return op_maxpool2d(tape, in[0], args[0], args[1]);
}

/* (kernel, stride) pairs: overlapping windows (s < k), tiling (s = k), gaps (s > k), k = 1. */
static const int pool_cases[][2] = {{2, 1}, {2, 2}, {3, 2}, {2, 3}, {1, 1}, {3, 3}};
enum { N_POOL_CASES = sizeof pool_cases / sizeof pool_cases[0] };

/* x (B, C, H, W) with B, C in 1..2 and odd H, W in 3..9. */
static void pool_shape(Rng *rng, int *shape) {
    shape[0] = 1 + rng_int(rng, 2);
    shape[1] = 1 + rng_int(rng, 2);
    shape[2] = odd_size(rng, 3);
    shape[3] = odd_size(rng, 5);
}

static void check_avgpool2d(Rng *rng, GradcheckStats *stats) {
    for (int k = 0; k < N_POOL_CASES; k++) {
        int shape[4];
        pool_shape(rng, shape);
        Tensor *x = gradcheck_input(rng, 4, shape, -1, 1);
        GradcheckOptions opt = options(rng);
        gradcheck(avgpool_fn, (void *)pool_cases[k], &x, 1, &opt, stats, NULL);
        gradcheck_free(&x, 1);
    }
}

/* x holds the values 0.05 (i - size / 2) for i = 0..size-1 in a random order: all distinct and
 * 0.05 apart, so no window has a tie and a step of 1e-3 never changes its maximum. */
static void fill_distinct(Rng *rng, Tensor *x) {
    for (long i = 0; i < x->size; i++) x->data[i] = (real)(0.05 * (double)(i - x->size / 2));
    for (long i = x->size - 1; i > 0; i--) {
        long other = (long)(rng_uniform(rng) * (double)(i + 1));
        real keep = x->data[i];
        x->data[i] = x->data[other];
        x->data[other] = keep;
    }
}

static void check_maxpool2d(Rng *rng, GradcheckStats *stats) {
    for (int k = 0; k < N_POOL_CASES; k++) {
        int shape[4];
        pool_shape(rng, shape);
        Tensor *x = gradcheck_input(rng, 4, shape, -1, 1);
        fill_distinct(rng, x);
        GradcheckOptions opt = options(rng);
        gradcheck(maxpool_fn, (void *)pool_cases[k], &x, 1, &opt, stats, NULL);
        gradcheck_free(&x, 1);
    }
}

const OpCheck check_table_conv[] = {
    /* All four are (bi)linear, or linear on every stencil by construction: 1e-8 (see top). */
    {"conv1d", check_conv1d, 1e-8},         {"conv2d", check_conv2d, 1e-8},
    {"conv1d_nlc", check_conv1d_nlc, 1e-8}, {"avgpool2d", check_avgpool2d, 1e-8},
    {"maxpool2d", check_maxpool2d, 1e-8},   {0},
};
