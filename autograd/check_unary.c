/* check_unary.c - gradient checks for the ops in ops_unary.c.
 *
 * Every op runs on four random shapes: 0-d, (n), (a, b) and (a, 1, c), sizes 1 to 5 (odd ones
 * and size-1 dimensions included), with inputs from a Domain chosen for the op:
 *   - inside the op's domain (positive for log, sqrt and fractional powers);
 *   - a margin of 0.01 away from kinks (abs and relu at 0, clamp at its bounds, softplus at its
 *     threshold 20), where finite differences mean nothing;
 *   - away from flat tails and stationary points. Relative to f', a central difference errs by
 *     about h^2 |f'''| / (6 |f'|) + eps |f| / (h |f'|); where f' -> 0 (sigmoid at +-6, gelu at
 *     -0.752, x^3 at 0) the rounding term grows without bound for a 0-d input, however right
 *     the gradient is. Those tails are tested by value in tests/test_elementwise.c. */
#include "gradcheck.h"
#include "ops.h"

enum { N_SHAPES = 4 };
static const double KINK_MARGIN = 0.01; /* far above the step h */

/* The step for ops that are linear in x on the piece each input lies on (neg, scale, abs,
 * relu, clamp, masked_fill, dropout). There a central difference is exact for any h that stays
 * on the piece, and only its rounding error, about eps |L| / h, remains: h = 1e-3 (below
 * KINK_MARGIN) makes that a thousand times smaller than the default 1e-6 would. */
static const double LINEAR_STEP = 1e-3;

typedef struct Domain {
    double lo, hi;       /* inputs uniform in [lo, hi) */
    const double *kinks; /* ... and at least `margin` away from each of these */
    int n_kinks;
    double margin; /* 0 for KINK_MARGIN */
    double step;   /* h; 0 for gradcheck's default 1e-6 */
} Domain;

/* Shape number `trial` (0 .. N_SHAPES - 1) with random sizes; returns its ndim. */
static int random_shape(Rng *rng, int trial, int *shape) {
    shape[0] = 1 + rng_int(rng, 5);
    shape[1] = trial == 3 ? 1 : 1 + rng_int(rng, 5);
    shape[2] = 1 + rng_int(rng, 5);
    return trial;
}

/* Checks fn(context) on every shape with inputs drawn from the domain. */
static void check_shapes(Rng *rng, GradcheckStats *stats, GradcheckFn fn, void *context,
                         Domain domain) {
    for (int trial = 0; trial < N_SHAPES; trial++) {
        int shape[3];
        int ndim = random_shape(rng, trial, shape);
        double margin = domain.margin > 0 ? domain.margin : KINK_MARGIN;
        Tensor *x = gradcheck_input_away(rng, ndim, shape, domain.lo, domain.hi, domain.kinks,
                                         domain.n_kinks, margin);
        GradcheckOptions options = {.step = domain.step, .seed = rng_u64(rng)};
        gradcheck(fn, context, &x, 1, &options, stats, NULL);
        gradcheck_free(&x, 1);
    }
}

/* --- Ops without parameters: the context is the op itself --------------------------------- */
typedef Tensor *(*UnaryFn)(Tape *tape, Tensor *x);

static Tensor *unary_fn(Tape *tape, Tensor *const *in, void *context) {
    return (*(UnaryFn *)context)(tape, in[0]);
}

static void check_op(Rng *rng, GradcheckStats *stats, UnaryFn op, Domain domain) {
    check_shapes(rng, stats, unary_fn, &op, domain);
}

static const double ZERO[] = {0};

static void check_neg(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_neg, (Domain){.lo = -2, .hi = 2, .step = LINEAR_STEP});
}
static void check_exp(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_exp, (Domain){.lo = -2, .hi = 2});
}
static void check_log(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_log, (Domain){.lo = 0.2, .hi = 3});
}
static void check_sqrt(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_sqrt, (Domain){.lo = 0.2, .hi = 3});
}
static void check_abs(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_abs,
             (Domain){.lo = -2, .hi = 2, .kinks = ZERO, .n_kinks = 1, .step = LINEAR_STEP});
}
static void check_relu(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_relu,
             (Domain){.lo = -2, .hi = 2, .kinks = ZERO, .n_kinks = 1, .step = LINEAR_STEP});
}

/* tanh' = 1 - y^2 >= 0.07 on [-2, 2];  sigmoid' = y (1 - y) >= 0.045 on [-3, 3]. */
static void check_tanh(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_tanh, (Domain){.lo = -2, .hi = 2});
}
static void check_sigmoid(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_sigmoid, (Domain){.lo = -3, .hi = 3});
}

/* gelu' = Phi(x) + x phi(x) is 0 at x = -0.75179 (gelu's minimum): stay KINK_MARGIN away. */
static void check_gelu(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_gelu,
             (Domain){.lo = -4, .hi = 4, .kinks = (const double[]){-0.75179}, .n_kinks = 1});
}

/* Ordinary values, then [-30, 30) across the threshold at 20. Above it y = x, and at |x| ~ 25
 * the rounding of x +- h itself (ulp(25) / h ~ 4e-9 at h = 1e-6) dominates the error; h = 1e-5
 * cuts that tenfold while truncation stays below 1e-10 (|f''' / f'| <= 0.5 everywhere). */
static void check_softplus(Rng *rng, GradcheckStats *s) {
    check_op(rng, s, op_softplus, (Domain){.lo = -5, .hi = 5});
    check_op(
        rng, s, op_softplus,
        (Domain){.lo = -30, .hi = 30, .kinks = (const double[]){20}, .n_kinks = 1, .step = 1e-5});
}

/* --- Ops with parameters ------------------------------------------------------------------ */
typedef struct Params {
    real a, b;     /* scale: c = a; pow: p = a; clamp: lo = a, hi = b; dropout: p = a */
    uint64_t seed; /* dropout: the mask's seed, the same in every evaluation */
    Tensor *mask;  /* masked_fill */
} Params;

static Tensor *scale_fn(Tape *tape, Tensor *const *in, void *context) {
    return op_scale(tape, in[0], ((Params *)context)->a);
}

static void check_scale(Rng *rng, GradcheckStats *stats) {
    Params params = {.a = (real)rng_range(rng, -3, 3)};
    check_shapes(rng, stats, scale_fn, &params, (Domain){.lo = -2, .hi = 2, .step = LINEAR_STEP});
}

static Tensor *pow_fn(Tape *tape, Tensor *const *in, void *context) {
    return op_pow(tape, in[0], ((Params *)context)->a);
}

/* Fractional and negative exponents on positive x; an integer exponent on x of either sign,
 * with |x| >= 0.3 (x^3 is flat at 0: see the top of the file). */
static void check_pow(Rng *rng, GradcheckStats *stats) {
    const double fractional_exponents[] = {2.5, 0.5, -1.5};
    for (int k = 0; k < 3; k++) {
        Params params = {.a = (real)fractional_exponents[k]};
        check_shapes(rng, stats, pow_fn, &params, (Domain){.lo = 0.3, .hi = 2});
    }
    Params cube = {.a = 3};
    check_shapes(rng, stats, pow_fn, &cube,
                 (Domain){.lo = -2, .hi = 2, .kinks = ZERO, .n_kinks = 1, .margin = 0.3});
}

static Tensor *clamp_fn(Tape *tape, Tensor *const *in, void *context) {
    Params *params = context;
    return op_clamp(tape, in[0], params->a, params->b);
}

/* Below, inside and above [lo, hi] = [-0.5, 0.7], away from both bounds. */
static void check_clamp(Rng *rng, GradcheckStats *stats) {
    Params params = {.a = (real)-0.5, .b = (real)0.7};
    check_shapes(rng, stats, clamp_fn, &params,
                 (Domain){.lo = -2,
                          .hi = 2,
                          .kinks = (const double[]){-0.5, 0.7},
                          .n_kinks = 2,
                          .step = LINEAR_STEP});
}

static Tensor *masked_fill_fn(Tape *tape, Tensor *const *in, void *context) {
    return op_masked_fill(tape, in[0], ((Params *)context)->mask, (real)-7);
}

/* x of every shape with a random 0/1 mask of a broadcastable shape: some of x's trailing
 * dimensions, each kept or set to 1. */
static void check_masked_fill(Rng *rng, GradcheckStats *stats) {
    for (int trial = 0; trial < N_SHAPES; trial++) {
        int shape[3], mask_shape[3];
        int ndim = random_shape(rng, trial, shape);
        int mask_ndim = rng_int(rng, ndim + 1);
        for (int k = 0; k < mask_ndim; k++)
            mask_shape[k] = rng_int(rng, 2) ? shape[ndim - mask_ndim + k] : 1;
        Params params = {.mask = tensor_create(mask_ndim, mask_shape, 0)};
        for (long i = 0; i < params.mask->size; i++) params.mask->data[i] = (real)rng_int(rng, 2);
        Tensor *x = gradcheck_input(rng, ndim, shape, -2, 2);
        GradcheckOptions options = {.step = LINEAR_STEP, .seed = rng_u64(rng)};
        gradcheck(masked_fill_fn, &params, &x, 1, &options, stats, NULL);
        gradcheck_free(&x, 1);
        tensor_free(params.mask);
    }
}

/* A fresh Rng seeded from the context in every call: each evaluation draws the same mask, so
 * the function is a fixed linear map that finite differences can check. */
static Tensor *dropout_fn(Tape *tape, Tensor *const *in, void *context) {
    Params *params = context;
    Rng rng;
    rng_seed(&rng, params->seed);
    return op_dropout(tape, in[0], params->a, &rng);
}

static void check_dropout(Rng *rng, GradcheckStats *stats) {
    const double rates[] = {0, 0.3, 0.7};
    for (int k = 0; k < 3; k++) {
        Params params = {.a = (real)rates[k], .seed = rng_u64(rng)};
        check_shapes(rng, stats, dropout_fn, &params,
                     (Domain){.lo = -2, .hi = 2, .step = LINEAR_STEP});
    }
}

/* Smooth ops: central differences with h = 1e-6 in double err by ~1e-10 relative (h^2 f'''
 * truncation, 1e-16 / h rounding) on the domains above, at worst 3e-9 over 200 seeds; 1e-8
 * leaves a margin. The piecewise-linear ops have no truncation error at all and, at
 * LINEAR_STEP, a rounding error near 1e-12 (at worst 6e-12 over 200 seeds): 1e-10. */
const OpCheck check_table_unary[] = {
    {"neg", check_neg, 1e-10},                 /* linear */
    {"scale", check_scale, 1e-10},             /* linear */
    {"pow", check_pow, 1e-8},                  /* smooth on x > 0, and for p = 3 */
    {"exp", check_exp, 1e-8},                  /* smooth */
    {"log", check_log, 1e-8},                  /* smooth on x > 0 */
    {"sqrt", check_sqrt, 1e-8},                /* smooth on x > 0 */
    {"abs", check_abs, 1e-10},                 /* linear on each side of 0 */
    {"clamp", check_clamp, 1e-10},             /* linear between the bounds, constant outside */
    {"tanh", check_tanh, 1e-8},                /* smooth */
    {"sigmoid", check_sigmoid, 1e-8},          /* smooth */
    {"softplus", check_softplus, 1e-8},        /* smooth on each side of 20 */
    {"relu", check_relu, 1e-10},               /* linear on each side of 0 */
    {"gelu", check_gelu, 1e-8},                /* smooth */
    {"masked_fill", check_masked_fill, 1e-10}, /* linear for a fixed mask */
    {"dropout", check_dropout, 1e-10},         /* linear for a fixed mask */
    {0},
};
