/* check_contextpool.c - gradient checks of the ContextPool layers: the input AND every parameter
 * (pred.0.weight, pred.0.bias, pred.2.weight, pred.2.bias), for both implementations.
 *
 *   contextpool1d, contextpool1d_composed      sequences, causal and not
 *   contextpool2d, contextpool2d_composed      images, stride 1
 *   contextpool2d_stride2(_composed)           images, stride 2
 *   contextpool1d_uniform, contextpool1d_fixed the ablations weights=uniform and size=fixed, each
 *                                              with both implementations, in 1-d and 2-d
 *
 * The cases cover N = 1 and H = W = 1 (the window is the position itself); N, H, W below the
 * radius (every window cut by the ends); radius 1 or 2, cutting the Gaussian well inside its
 * tails; causal with an even predictor kernel; B > 1; odd sizes (odd H, W with stride 2); hidden
 * and kernel off their defaults; support sizes pushed to the ends of [s_min, s_max] = [0.5, 8] by
 * setting pred.2.bias[1] to -4 (s ~ 0.63: the sharpest Gaussian, the largest curvature in s) or +4
 * (s ~ 7.9: nearly flat over the window); and one realistic layer per entry (dim 16, the default
 * hidden 8 and radius 24, N = 40 > R or a 9 x 8 image), checked on 40 random elements per input.
 *
 * Smoothness. The layer is smooth in every input: convolutions, GELU, sigmoid, exp, products,
 * sums and a division by a normaliser >= w_i > 0. The window and the causal mask depend on
 * positions only, never on values, so there is no kink to avoid.
 *
 * What is compared. gradcheck measures each input's error relative to that input's largest
 * gradient. In three situations that scale is near 0 by the structure of the layer, so the ratio
 * measures the noise of central differences, not the gradient; each is handled by construction:
 *   - With one position (N = 1, H = W = 1), y = x w / (w + eps): the parameters' true gradient
 *     is ~eps = 1e-6 times the input's, below the noise of central differences. Those cases check
 *     x alone; every other case checks all parameters.
 *   - A bias is a weight whose input is the constant 1, so each bias is measured against the
 *     scale of its convolution (weight and bias together). On its own, pred.2.bias has only two
 *     elements, and under an ablation only one is live (the other's gradient is exactly 0). That
 *     one sums signed terms over all tokens, and for the weight logit a, moving every a_j nearly
 *     rescales every w_j, to which the normalised pooling is invariant: it can land near 0 (down
 *     to 1e-5 of the weight's gradient), where its own relative error measured noise (1.6e-6).
 *   - Under weights=uniform the predictor acts only through s; at s ~ s_max both sigmoid'(4) =
 *     0.018 and the nearly flat Gaussian's sensitivity to s (d^2 / s^3) are small, so every
 *     parameter's gradient is ~1e-4 of the input's and measured the noise (up to 2e-6). The
 *     uniform entry skips the cases near s_max; the other entries cover them with learned w.
 *
 * The step. Central differences err by ~h^2 |f'''| / 6 (truncation) plus ~eps_machine |L| / h
 * (rounding). The worst relative error of the entries below, over seeds 1..30, was 1.0e-8 at
 * h = 1e-5 (rounding: it falls as h grows), 2.9e-9 at h = 3e-5 and 1.7e-8 at h = 1e-4
 * (truncation: it grows as h^2), so the checks use h = 3e-5, where the two balance.
 *
 * Tolerances, from seeds 1..130 (`cpool gradcheck NAME --seed S`), worst max_rel_err:
 *   - every entry but the uniform ablation: <= 4.2e-9, tolerance 1e-8.
 *   - contextpool1d_uniform: <= 5.6e-8, tolerance 1e-7. The worst case is the 1 x 6 image with
 *     radius 1: s ~ 4 is far wider than the 3 x 3 window, so the Gaussian is nearly flat there
 *     and, w being fixed, the predictor's gradient is ~1e-3 of the input's; the absolute errors
 *     (~3e-11) are the same noise as everywhere else. */
#include <math.h>

#include "contextpool.h"
#include "gradcheck.h"
#include "ops.h"
#include "util.h"

enum { MAX_INPUTS = 5 };         /* x, pred.0.weight, pred.0.bias, pred.2.weight, pred.2.bias */
static const double STEP = 3e-5; /* h; see the top of the file */
static const long REALISTIC_ELEMENTS = 40;

/* One layer under test and whether it is 2-d. */
typedef struct PoolCase {
    ContextPool layer;
    int two_d;
} PoolCase;

static Tensor *pool_fn(Tape *tape, Tensor *const *in, void *context) {
    const PoolCase *c = context;
    if (c->two_d) return contextpool2d_forward(tape, &c->layer, in[0], NULL);
    return contextpool_forward(tape, &c->layer, in[0], NULL);
}

/* Sets pred.2.bias[1], the support logit's bias, to bias_b unless it is 0: s then starts near
 * s_min + (s_max - s_min) sigmoid(bias_b). */
static void push_support(PoolCase *c, double bias_b) {
    if (bias_b != 0) c->layer.pred2.bias->data[1] = (real)bias_b;
}

/* The gradient scale gradcheck measured an input's errors against (0 if it had no error). */
static double scale_of(const GradcheckStats *s) {
    return s->max_abs_err > 0 ? s->max_abs_err / s->max_rel_err : 0;
}

/* Folds per-input results into stats, measuring inputs [first, first + n) against their
 * common scale: the largest gradient among them. */
static void fold_group(const GradcheckStats *per, int first, int n, GradcheckStats *stats) {
    GradcheckStats group = {.checks = first == 0};
    double scale = 0;
    for (int i = first; i < first + n; i++) {
        group.elements += per[i].elements;
        group.max_abs_err = fmax(group.max_abs_err, per[i].max_abs_err);
        scale = fmax(scale, scale_of(&per[i]));
        if (isnan(per[i].max_rel_err)) group.max_rel_err = NAN; /* a NaN gradient fails */
    }
    if (!isnan(group.max_rel_err) && group.max_abs_err > 0)
        group.max_rel_err = scale > 0 ? group.max_abs_err / scale : INFINITY;
    gradcheck_stats_merge(stats, &group);
}

/* Checks x and every parameter (see the top of the file), then frees x and the ParamSet. */
static void check_and_free(PoolCase *c, Tensor *x, ParamSet *params, long max_elements, Rng *rng,
                           GradcheckStats *stats) {
    Tensor *inputs[MAX_INPUTS] = {x};
    int single_position = x->size / x->shape[0] == c->layer.config.dim;
    int n = single_position ? 1 : 1 + params->count;
    for (int p = 0; p + 1 < n; p++) inputs[p + 1] = params->items[p].tensor;
    GradcheckStats per[MAX_INPUTS] = {0}, ignored = {0};
    GradcheckOptions options = {.step = STEP, .seed = rng_u64(rng), .max_elements = max_elements};
    gradcheck(pool_fn, c, inputs, n, &options, &ignored, per);
    fold_group(per, 0, 1, stats); /* x */
    if (n > 1) {
        fold_group(per, 1, 2, stats); /* pred.0.weight, pred.0.bias */
        fold_group(per, 3, 2, stats); /* pred.2.weight, pred.2.bias */
    }
    gradcheck_free(&x, 1);
    params_free(params);
}

/* ---- 1-d ---------------------------------------------------------------------------------- */

typedef struct Case1d {
    int dim, hidden, kernel, causal, radius; /* 0: the defaults (8, 3, 24) */
    int batch, length;
    double bias_b; /* pred.2.bias[1], or 0 to keep the initialised value */
} Case1d;

static const Case1d CASES_1D[] = {
    /* dim hidden kernel causal radius  B  N  bias_b */
    {4, 0, 0, 0, 0, 2, 5, 0},  /* N < R: every window is the whole sequence */
    {3, 0, 0, 1, 2, 1, 7, 0},  /* causal, radius 2: windows of 3 */
    {5, 0, 0, 0, 0, 2, 1, 0},  /* N = 1 */
    {4, 0, 0, 1, 0, 1, 1, 0},  /* causal, N = 1 */
    {6, 3, 5, 0, 2, 2, 9, -4}, /* s near s_min, kernel 5, hidden 3 */
    {3, 0, 0, 1, 0, 1, 11, 4}, /* causal, s near s_max */
    {2, 5, 4, 1, 1, 3, 6, 0},  /* causal with an even kernel, radius 1, B 3 */
    {3, 4, 0, 0, 1, 2, 4, 4},  /* s near s_max cut at radius 1 */
};

/* flags: composed and the ablations. Every case of CASES_1D, then the realistic layer, causal
 * and not. */
static void run_1d(ContextPoolConfig flags, Rng *rng, GradcheckStats *stats) {
    const int n_cases = sizeof CASES_1D / sizeof CASES_1D[0];
    for (int k = 0; k < n_cases + 2; k++) {
        int realistic = k >= n_cases;
        const Case1d t = realistic ? (Case1d){16, 0, 0, k - n_cases, 0, 2, 40, 0} : CASES_1D[k];
        if (flags.weights_uniform && t.bias_b > 0) continue; /* see the top of the file */
        ContextPoolConfig config = contextpool_default_config(t.dim, t.causal);
        config.hidden = t.hidden, config.kernel = t.kernel, config.radius = t.radius;
        config.composed = flags.composed;
        config.weights_uniform = flags.weights_uniform, config.size_fixed = flags.size_fixed;
        ParamSet params = {0};
        PoolCase c = {.two_d = 0};
        contextpool_init(&c.layer, config, &params, "pool", rng);
        push_support(&c, t.bias_b);
        Tensor *x = gradcheck_input(rng, 3, (int[]){t.batch, t.length, t.dim}, -1, 1);
        check_and_free(&c, x, &params, realistic ? REALISTIC_ELEMENTS : 0, rng, stats);
    }
}

/* ---- 2-d ---------------------------------------------------------------------------------- */

typedef struct Case2d {
    int channels, hidden, radius; /* 0: the defaults (8, 24) */
    int batch, height, width;
    double bias_b;
} Case2d;

static const Case2d CASES_2D[] = {
    /* C hidden radius  B  H  W  bias_b */
    {3, 0, 0, 1, 4, 5, 0},  /* H, W < R */
    {2, 3, 2, 2, 5, 6, 0},  /* radius 2, B 2 */
    {4, 0, 1, 1, 1, 6, 0},  /* H = 1 */
    {1, 2, 0, 2, 1, 1, 0},  /* H = W = 1, one channel */
    {2, 0, 2, 1, 6, 3, -4}, /* s near s_min */
    {3, 4, 0, 1, 5, 5, 4},  /* s near s_max */
    {2, 0, 1, 1, 7, 7, 4},  /* s near s_max cut at radius 1, odd sizes */
};

/* flags: stride, composed and the ablations. Every case of CASES_2D, then the realistic layer
 * (16 channels, 9 x 8 pixels, B 2). */
static void run_2d(ContextPoolConfig flags, Rng *rng, GradcheckStats *stats) {
    const int n_cases = sizeof CASES_2D / sizeof CASES_2D[0];
    for (int k = 0; k <= n_cases; k++) {
        int realistic = k == n_cases;
        const Case2d t = realistic ? (Case2d){16, 0, 0, 2, 9, 8, 0} : CASES_2D[k];
        if (flags.weights_uniform && t.bias_b > 0) continue; /* see the top of the file */
        ContextPoolConfig config = contextpool_default_config(t.channels, 0);
        config.hidden = t.hidden, config.radius = t.radius, config.stride = flags.stride;
        config.composed = flags.composed;
        config.weights_uniform = flags.weights_uniform, config.size_fixed = flags.size_fixed;
        ParamSet params = {0};
        PoolCase c = {.two_d = 1};
        contextpool2d_init(&c.layer, config, &params, "pool", rng);
        push_support(&c, t.bias_b);
        int shape[4] = {t.batch, t.channels, t.height, t.width};
        Tensor *x = gradcheck_input(rng, 4, shape, -1, 1);
        check_and_free(&c, x, &params, realistic ? REALISTIC_ELEMENTS : 0, rng, stats);
    }
}

/* ---- The entries -------------------------------------------------------------------------- */

static void check_contextpool1d(Rng *rng, GradcheckStats *stats) {
    run_1d((ContextPoolConfig){0}, rng, stats);
}

static void check_contextpool1d_composed(Rng *rng, GradcheckStats *stats) {
    run_1d((ContextPoolConfig){.composed = 1}, rng, stats);
}

static void check_contextpool2d(Rng *rng, GradcheckStats *stats) {
    run_2d((ContextPoolConfig){.stride = 1}, rng, stats);
}

static void check_contextpool2d_composed(Rng *rng, GradcheckStats *stats) {
    run_2d((ContextPoolConfig){.stride = 1, .composed = 1}, rng, stats);
}

static void check_contextpool2d_stride2(Rng *rng, GradcheckStats *stats) {
    run_2d((ContextPoolConfig){.stride = 2}, rng, stats);
}

static void check_contextpool2d_stride2_composed(Rng *rng, GradcheckStats *stats) {
    run_2d((ContextPoolConfig){.stride = 2, .composed = 1}, rng, stats);
}

/* An ablation with both implementations, in 1-d and in 2-d with stride 2. */
static void run_ablation(ContextPoolConfig flags, Rng *rng, GradcheckStats *stats) {
    for (int composed = 0; composed <= 1; composed++) {
        flags.composed = composed;
        flags.stride = 0;
        run_1d(flags, rng, stats);
        flags.stride = 2;
        run_2d(flags, rng, stats);
    }
}

static void check_contextpool1d_uniform(Rng *rng, GradcheckStats *stats) {
    run_ablation((ContextPoolConfig){.weights_uniform = 1}, rng, stats);
}

static void check_contextpool1d_fixed(Rng *rng, GradcheckStats *stats) {
    run_ablation((ContextPoolConfig){.size_fixed = 1}, rng, stats);
}

const OpCheck check_table_contextpool[] = {
    /* Tolerances and the measured worst errors: see the top of the file. */
    {"contextpool1d", check_contextpool1d, 1e-8},
    {"contextpool1d_composed", check_contextpool1d_composed, 1e-8},
    {"contextpool2d", check_contextpool2d, 1e-8},
    {"contextpool2d_composed", check_contextpool2d_composed, 1e-8},
    {"contextpool2d_stride2", check_contextpool2d_stride2, 1e-8},
    {"contextpool2d_stride2_composed", check_contextpool2d_stride2_composed, 1e-8},
    {"contextpool1d_uniform", check_contextpool1d_uniform, 1e-7}, /* flat Gaussians */
    {"contextpool1d_fixed", check_contextpool1d_fixed, 1e-8},
    {0},
};
