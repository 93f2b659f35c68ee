/* check_contextpool.c - gradient checks for the fused ContextPool ops (ops_contextpool.c).
 *
 * Each check perturbs x, w AND s, drawn as the layer produces them: x in [-1, 1), pooling weights
 * w in [0.05, 1) (a sigmoid's range, kept off 0), and support sizes log-uniform (they are scales)
 * in one of three regimes of the Gaussian g = exp(-d^2 / (2 s^2)):
 *   - PEAKED, s in [0.5, 0.7) near s_min: g = 0.14 at distance 1 and 3e-4 at 2;
 *   - FLAT, s in [7, 9) near s_max: g > 0.4 across the window, cut by the radius or the ends;
 *   - ANY, s in [0.5, 8): both kinds, side by side.
 * The shapes cover a radius smaller and larger than the sequence (N < R), tokens at both ends
 * whose window is cut, causal and not, N = 1, radius 0, B > 1 with different contents; in 2-D
 * H or W = 1, a single pixel, odd sizes with stride 2, stride 1 and 2. eps is the layer's 1e-6,
 * or 0.5 so that a gradient that forgot eps would show.
 *
 * A window holding a single token (N = 1, radius 0, a 1x1 image) always gets eps = 0.5: there
 * y = x w / (w + eps), so dy/dw = x eps / (w + eps)^2 ~ 1e-6 at eps = 1e-6, and the checker's
 * rounding (below) would be 1e-5 of it however right the gradient is.
 *
 * Steps. A central difference errs by truncation, (h^2 / 6) |f'''|, plus rounding,
 * ~1e-16 |L| / h (L = sum r * y is the checker's projection). Which one rules depends on the
 * regime, so each regime has its step:
 *   - PEAKED and ANY: 5e-6. Truncation matters: d/ds of exp(-d^2 / (2 s^2)) brings a factor
 *     d^2 / s^3 = 32 (d = 2, s = 0.5) per derivative, and a weight of 0.05 nearly alone in its
 *     window makes Z ~ 0.06, the curvature in w ~ 1 / Z^2.
 *   - FLAT: rounding matters more, since a flat window hardly responds to s (dg/ds =
 *     g d^2 / s^3 ~ 0.1): 3e-5 in 2-D; 1e-5 in 1-D, where the first causal token pools only
 *     itself (Z = w_0, so the curvature in w_0 is large again).
 * Over seeds 1..500 the worst relative error is then 6.1e-9 (FLAT, causal, s); most checks stay
 * between 1e-10 and 1e-9. With h = 1e-5 everywhere the worst is 2.5e-8 (PEAKED, w). The op is
 * smooth in every input (s > 0, w > 0): there are no kinks to avoid. */
#include <math.h>

#include "gradcheck.h"
#include "ops.h"

typedef struct Range {
    double lo, hi;
} Range;

static const Range PEAKED = {0.5, 0.7}, FLAT = {7, 9}, ANY = {0.5, 8};
static const double STEP = 5e-6, FLAT_STEP_1D = 1e-5, FLAT_STEP_2D = 3e-5;

/* Positions (the leading dimensions of x) get w uniform in [0.05, 1) and s log-uniform. */
static Tensor *weights_input(Rng *rng, int ndim, const int *shape) {
    return gradcheck_input(rng, ndim, shape, 0.05, 1);
}

static Tensor *support_input(Rng *rng, int ndim, const int *shape, Range s) {
    Tensor *support = gradcheck_input(rng, ndim, shape, log(s.lo), log(s.hi));
    for (long e = 0; e < support->size; e++) support->data[e] = (real)exp(support->data[e]);
    return support;
}

/* --- 1-D ----------------------------------------------------------------------------------- */
typedef struct Call1d {
    int B, N, D, radius, causal;
    Range s;
    double eps, step;
} Call1d;

static Tensor *contextpool1d_fn(Tape *tape, Tensor *const *in, void *context) {
    const Call1d *call = context;
    return op_contextpool1d(tape, in[0], in[1], in[2], call->radius, call->causal, (real)call->eps);
}

static void check_1d_once(Rng *rng, GradcheckStats *stats, Call1d call) {
    int positions[2] = {call.B, call.N};
    Tensor *in[3] = {
        gradcheck_input(rng, 3, (int[]){call.B, call.N, call.D}, -1, 1),
        weights_input(rng, 2, positions),
        support_input(rng, 2, positions, call.s),
    };
    GradcheckOptions options = {.step = call.step, .seed = rng_u64(rng)};
    gradcheck(contextpool1d_fn, &call, in, 3, &options, stats, NULL);
    gradcheck_free(in, 3);
}

/* Every case causal and not. */
static void check_contextpool1d(Rng *rng, GradcheckStats *stats) {
    for (int causal = 0; causal <= 1; causal++) {
        /* radius 2 inside 6..9 tokens: windows cut at both ends, whole in the middle */
        int N = 6 + rng_int(rng, 4), D = 1 + rng_int(rng, 3);
        check_1d_once(rng, stats, (Call1d){2, N, D, 2, causal, PEAKED, 1e-6, STEP});
        /* the layer's radius 24 beyond 16..22 tokens: every window cut by the sequence */
        N = 16 + rng_int(rng, 7);
        check_1d_once(rng, stats, (Call1d){2, N, 2, 24, causal, FLAT, 1e-6, FLAT_STEP_1D});
        /* a single token, and radius 0: every token alone */
        check_1d_once(rng, stats, (Call1d){3, 1, 3, 4, causal, ANY, 0.5, STEP});
        check_1d_once(rng, stats, (Call1d){2, 4, 2, 0, causal, ANY, 0.5, STEP});
        /* radius 3 in 8..11 tokens, every support size */
        N = 8 + rng_int(rng, 4), D = 1 + rng_int(rng, 4);
        check_1d_once(rng, stats, (Call1d){1 + rng_int(rng, 2), N, D, 3, causal, ANY, 0.5, STEP});
    }
}

/* --- 2-D ----------------------------------------------------------------------------------- */
typedef struct Call2d {
    int B, C, H, W, radius, stride;
    Range s;
    double eps, step;
} Call2d;

static Tensor *contextpool2d_fn(Tape *tape, Tensor *const *in, void *context) {
    const Call2d *call = context;
    return op_contextpool2d(tape, in[0], in[1], in[2], call->radius, call->stride, (real)call->eps);
}

static void check_2d_once(Rng *rng, GradcheckStats *stats, Call2d call) {
    int positions[3] = {call.B, call.H, call.W};
    Tensor *in[3] = {
        gradcheck_input(rng, 4, (int[]){call.B, call.C, call.H, call.W}, -1, 1),
        weights_input(rng, 3, positions),
        support_input(rng, 3, positions, call.s),
    };
    GradcheckOptions options = {.step = call.step, .seed = rng_u64(rng)};
    gradcheck(contextpool2d_fn, &call, in, 3, &options, stats, NULL);
    gradcheck_free(in, 3);
}

/* Every case with stride 1 and 2; odd sizes, so that with stride 2 the last centre's window is
 * cut on one side only. */
static void check_contextpool2d(Rng *rng, GradcheckStats *stats) {
    for (int stride = 1; stride <= 2; stride++) {
        /* radius 1 in a 5x5 .. 7x7 image */
        int C = 1 + rng_int(rng, 3), H = 5 + 2 * rng_int(rng, 2), W = 5 + 2 * rng_int(rng, 2);
        check_2d_once(rng, stats, (Call2d){2, C, H, W, 1, stride, PEAKED, 1e-6, STEP});
        /* radius 12 beyond a 9x7 image */
        check_2d_once(rng, stats, (Call2d){2, 2, 9, 7, 12, stride, FLAT, 1e-6, FLAT_STEP_2D});
        /* one row, then one column: 2-D degenerates to 1-D */
        check_2d_once(rng, stats, (Call2d){2, 2, 1, 7, 2, stride, ANY, 1e-6, STEP});
        check_2d_once(rng, stats, (Call2d){2, 3, 9, 1, 2, stride, ANY, 0.5, STEP});
        /* a single pixel, and radius 0 */
        check_2d_once(rng, stats, (Call2d){2, 2, 1, 1, 3, stride, ANY, 0.5, STEP});
        check_2d_once(rng, stats, (Call2d){1, 2, 3, 5, 0, stride, ANY, 0.5, STEP});
        /* radius 2 in a 6x5 image, every support size */
        check_2d_once(rng, stats, (Call2d){1, 2, 6, 5, 2, stride, ANY, 0.5, STEP});
    }
}

/* Smooth ops: the usual bar of 1e-8, above the worst of 6.1e-9 over 500 seeds (see Steps). */
const OpCheck check_table_contextpool_op[] = {
    {"contextpool1d_op", check_contextpool1d, 1e-8},
    {"contextpool2d_op", check_contextpool2d, 1e-8},
    {0},
};
