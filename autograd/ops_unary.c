/* ops_unary.c - elementwise functions of one tensor: y_i = f(x_i), so dx_i += dy_i * f'(x_i).
 *
 * Every op here has the same shape (x and y are the same shape) and the same backward loop; what
 * differs is f and f'. So the file is a table of derivatives: for each op, a comment with f and
 * f', the backward loop and the forward loop. Where f' is cheaper from the output (exp: f' = y;
 * tanh: 1 - y^2) the backward reads y instead of recomputing.
 *
 * The libm functions are evaluated in double and rounded to `real`, except in the float32 build's
 * exp, sigmoid and gelu, which use vmath.h's vectorisable float functions (a few ulps; see there
 * and docs/autograd.md, "Fast float32 exp and erfc"). Where PyTorch (1.13) picks a
 * value at a kink or a convention at the edges, we pick the same: relu'(0) = 0, |x|'(0) = 0,
 * clamp passes the gradient for lo <= x <= hi inclusive, softplus is x itself above 20, and
 * pow with exponent 0 has gradient 0 everywhere. */
#include <math.h>
#include <string.h>

#include "ops.h"
#include "util.h"
#include "vmath.h"

/* The libm-heavy loops (pow, exp, log, tanh, sigmoid, softplus, gelu: 10-40 ns an element) are
 * split across threads above this size. Each element is computed alone, so the result does not
 * depend on the thread count. */
#define PARALLEL_MIN_ELEMENTS 32768

/* A new arena tensor of x's shape. */
static Tensor *like(Tape *tape, const Tensor *x) {
    return tape_tensor(tape, x->ndim, x->shape);
}

/* What a backward reads and writes: x, y, dy = dL/dy and dx = dL/dx (n elements each). */
typedef struct Unary {
    long n;
    const real *x, *y, *dy;
    real *dx;
} Unary;

/* The arrays of a unary record; 0 when x needs no gradient (the backward has nothing to do). */
static int unpack(Tape *tape, TapeRecord *record, Unary *u) {
    Tensor *x = record->inputs[0], *y = record->output;
    *u = (Unary){.n = y->size, .x = x->data, .y = y->data, .dy = y->grad, .dx = tape_grad(tape, x)};
    return u->dx != NULL;
}

/* An op's parameters, kept for its backward: the constant (scale's c, pow's p, dropout's
 * 1 / (1 - p)), the bounds (clamp) and a byte per element (dropout and masked_fill: 1 = the
 * gradient passes). */
typedef struct Saved {
    real constant;
    real lo, hi;
    unsigned char *pass;
} Saved;

static const Saved *saved_of(const TapeRecord *record) {
    return record->saved;
}

/* Records y = f(x) and returns a zeroed Saved to fill in, or NULL when nothing is recorded. */
static Saved *record_with_saved(Tape *tape, const char *op, BackwardFn backward, Tensor *x,
                                Tensor *y) {
    TapeRecord *record = tape_record(tape, op, backward, y, 1, &x);
    if (!record) return NULL;
    record->saved = tape_save(tape, sizeof(Saved));
    return record->saved;
}

/* --- neg: y = -x;  dy/dx = -1,  so dx -= dy ------------------------------------------------ */
static void neg_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] -= u.dy[i];
}

Tensor *op_neg(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) y->data[i] = -x->data[i];
    tape_record(tape, "neg", neg_backward, y, 1, &x);
    return y;
}

/* --- scale: y = c x;  dy/dx = c,  so dx += c dy -------------------------------------------- */
static void scale_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    real c = saved_of(record)->constant;
    for (long i = 0; i < u.n; i++) u.dx[i] += c * u.dy[i];
}

Tensor *op_scale(Tape *tape, Tensor *x, real c) {
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) y->data[i] = c * x->data[i];
    Saved *saved = record_with_saved(tape, "scale", scale_backward, x, y);
    if (saved) saved->constant = c;
    return y;
}

/* --- pow: y = x^p;  dy/dx = p x^(p-1),  so dx += dy p x^(p-1) ------------------------------
 * A negative x with a non-integer p gives NaN, as in PyTorch. For p = 0 (y = 1) the gradient is
 * 0 everywhere, also at x = 0 where p x^(p-1) would be 0 * Inf. */
static void pow_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    double p = saved_of(record)->constant;
    if (p == 0) return;
#pragma omp parallel for schedule(static) if (u.n >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] * (real)(p * pow(u.x[i], p - 1));
}

Tensor *op_pow(Tape *tape, Tensor *x, real p) {
    Tensor *y = like(tape, x);
#pragma omp parallel for schedule(static) if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < x->size; i++) y->data[i] = (real)pow(x->data[i], p);
    Saved *saved = record_with_saved(tape, "pow", pow_backward, x, y);
    if (saved) saved->constant = p;
    return y;
}

/* --- exp: y = e^x;  dy/dx = e^x = y,  so dx += dy y ---------------------------------------- */
static void exp_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] * u.y[i];
}

/* float32: vmath_expf (vmath.h, 1 ulp), which the compiler vectorises; float64: libm. */
#ifdef CPOOL_DOUBLE
#define real_exp exp
#else
#define real_exp vmath_expf
#endif

Tensor *op_exp(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
#pragma omp parallel for schedule(static) if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < x->size; i++) y->data[i] = (real)real_exp(x->data[i]);
    tape_record(tape, "exp", exp_backward, y, 1, &x);
    return y;
}

/* --- log: y = ln x;  dy/dx = 1 / x,  so dx += dy / x  (x < 0: NaN, x = 0: -Inf) ------------ */
static void log_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] / u.x[i];
}

Tensor *op_log(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
#pragma omp parallel for schedule(static) if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < x->size; i++) y->data[i] = (real)log(x->data[i]);
    tape_record(tape, "log", log_backward, y, 1, &x);
    return y;
}

/* --- sqrt: y = x^(1/2);  dy/dx = 1 / (2 y),  so dx += dy / (2 y)  (Inf at x = 0) ---------- */
static void sqrt_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] / (2 * u.y[i]);
}

Tensor *op_sqrt(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) y->data[i] = (real)sqrt(x->data[i]);
    tape_record(tape, "sqrt", sqrt_backward, y, 1, &x);
    return y;
}

/* --- abs: y = |x|;  dy/dx = sign(x) (0 at 0),  so dx += dy sign(x) ------------------------- */
static void abs_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] * (real)((u.x[i] > 0) - (u.x[i] < 0));
}

Tensor *op_abs(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) y->data[i] = (real)fabs(x->data[i]);
    tape_record(tape, "abs", abs_backward, y, 1, &x);
    return y;
}

/* --- clamp: y = min(max(x, lo), hi);  dy/dx = 1 for lo <= x <= hi, else 0 -----------------
 * The bounds themselves pass the gradient, as PyTorch 1.13's clamp_backward does
 * (grad * ((x >= lo) & (x <= hi))). lo > hi is refused (PyTorch would return hi everywhere). */
static void clamp_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    real lo = saved_of(record)->lo, hi = saved_of(record)->hi;
    for (long i = 0; i < u.n; i++)
        if (u.x[i] >= lo && u.x[i] <= hi) u.dx[i] += u.dy[i];
}

Tensor *op_clamp(Tape *tape, Tensor *x, real lo, real hi) {
    if (!(lo <= hi)) cpool_fail("op_clamp: lo %g must not exceed hi %g", (double)lo, (double)hi);
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) { /* NaN stays NaN: both comparisons are false */
        real v = x->data[i];
        y->data[i] = v < lo ? lo : v > hi ? hi : v;
    }
    Saved *saved = record_with_saved(tape, "clamp", clamp_backward, x, y);
    if (saved) saved->lo = lo, saved->hi = hi;
    return y;
}

/* --- tanh: y = tanh x;  dy/dx = 1 - y^2,  so dx += dy (1 - y^2) ---------------------------- */
static void tanh_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] * (1 - u.y[i] * u.y[i]);
}

Tensor *op_tanh(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
#pragma omp parallel for schedule(static) if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < x->size; i++) y->data[i] = (real)tanh(x->data[i]);
    tape_record(tape, "tanh", tanh_backward, y, 1, &x);
    return y;
}

/* --- sigmoid: y = 1 / (1 + e^-x);  dy/dx = y (1 - y),  so dx += dy (1 - y) y ---------------
 * Stable: e^-x is only taken for x >= 0 and e^x only for x < 0, so nothing overflows; the tails
 * go smoothly to 0 and 1. */
static void sigmoid_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] * (1 - u.y[i]) * u.y[i];
}

static double sigmoid(double x) {
    if (x >= 0) return 1 / (1 + exp(-x));
    double e = exp(x);
    return e / (1 + e);
}

#ifndef CPOOL_DOUBLE
/* The same stable form in float32 without branches: e = e^-|x| <= 1, and sigmoid is 1 / (1 + e)
 * for x >= 0, e / (1 + e) for x < 0. vmath_expf's 1 ulp and two roundings: 2 ulp. */
VMATH_INLINE float sigmoid_float(float x) {
    float e = vmath_expf(-fabsf(x));
    float inverse = 1.0f / (1.0f + e);
    return vmath_select(x >= 0, inverse, e * inverse);
}
#endif

Tensor *op_sigmoid(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
#pragma omp parallel for schedule(static) if (x->size >= PARALLEL_MIN_ELEMENTS)
#ifdef CPOOL_DOUBLE
    for (long i = 0; i < x->size; i++) y->data[i] = sigmoid(x->data[i]);
#else
    for (long i = 0; i < x->size; i++) y->data[i] = sigmoid_float(x->data[i]);
#endif
    tape_record(tape, "sigmoid", sigmoid_backward, y, 1, &x);
    return y;
}

/* --- softplus: y = ln(1 + e^x);  dy/dx = e^x / (1 + e^x) = sigmoid(x) ----------------------
 * PyTorch's defaults (beta 1, threshold 20): above x = 20 the result is x itself (ln(1 + e^x)
 * differs from x by e^-x < 2e-9 there) with gradient 1; elsewhere log1p(e^x), which cannot
 * overflow for x <= 20 and is accurate for very negative x. */
enum { SOFTPLUS_THRESHOLD = 20 };

static void softplus_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
#pragma omp parallel for schedule(static) if (u.n >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < u.n; i++)
        u.dx[i] += u.x[i] > SOFTPLUS_THRESHOLD ? u.dy[i] : u.dy[i] * (real)sigmoid(u.x[i]);
}

Tensor *op_softplus(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
#pragma omp parallel for schedule(static) if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < x->size; i++) {
        real v = x->data[i];
        y->data[i] = v > SOFTPLUS_THRESHOLD ? v : (real)log1p(exp(v));
    }
    tape_record(tape, "softplus", softplus_backward, y, 1, &x);
    return y;
}

/* --- relu: y = max(x, 0);  dy/dx = 1 for x > 0, else 0 (also at 0, as PyTorch) ------------ */
static void relu_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    for (long i = 0; i < u.n; i++) u.dx[i] += u.y[i] > 0 ? u.dy[i] : 0;
}

Tensor *op_relu(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) y->data[i] = x->data[i] < 0 ? 0 : x->data[i]; /* NaN stays */
    tape_record(tape, "relu", relu_backward, y, 1, &x);
    return y;
}

/* --- gelu: y = x Phi(x), Phi the standard normal CDF;  dy/dx = Phi(x) + x phi(x) -----------
 * Phi(x) = (1 + erf(x / sqrt 2)) / 2 = erfc(-x / sqrt 2) / 2: the same function, but erfc keeps
 * its relative accuracy in the far left tail where 1 + erf cancels to 0.
 * phi(x) = e^(-x^2 / 2) / sqrt(2 pi). At x = -1000 both terms are (-)0, at +1000 y = x. */
#ifdef CPOOL_DOUBLE
static real normal_cdf(real x) {
    return 0.5 * erfc(-x * M_SQRT1_2);
}
static real normal_pdf(real x) {
    return exp(-0.5 * x * x) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
}
/* dy/dx at x (y = x Phi(x) unused: libm's Phi is exact to double, the gradient checker's need). */
static real gelu_derivative(real x, real y) {
    (void)y;
    return normal_cdf(x) + x * normal_pdf(x);
}
#else
/* float32: vmath.h's branch-free Phi and phi (3 and 1.2 ulp measured, tests/test_vmath.c), so
 * the loops below vectorise; libm's erfcf and expf are calls, 9% of a training step. */
VMATH_INLINE real normal_cdf(real x) {
    return vmath_normal_cdf(x);
}
/* dy/dx at x, with y = x Phi(x) the forward's output. Phi costs three times phi (erfc's tail
 * polynomial, a division, its correction and the series near 0), and the forward already has
 * it: Phi = y / x, two more roundings of Phi (y's and the quotient's, 1 ulp) on top of its
 * 3, where y is a normal float. Near 0 (|x| < 2^-20, where a subnormal or zero y would lose
 * that) Phi = 1/2 + x / sqrt(2 pi), exact to x^3 / 15 < 2^-60. At x = -1000, y = -0 and
 * Phi = 0; at +1000, Phi = 1; at +-inf, NaN (inf 0, as computing Phi again gives). Measured
 * over [-16, 16] and tiny x against double: |error| / max(1, |dy/dx|) 1.8e-7 (1.3e-7 with
 * Phi computed again); the backward takes half the time (0.65 against 1.3 ns an element). */
VMATH_INLINE real gelu_derivative(real x, real y) {
    real cdf = vmath_select(fabsf(x) < 0x1p-20f, VMATH_FMA(x, 0.398942280401432678f, 0.5f), y / x);
    return cdf + x * vmath_normal_pdf(x);
}
#endif

/* x is usually a linear layer's output that only GELU reads, so dx is new: tape_grad_write
 * lets the loop store into it instead of zeroing it first and adding (a memset and a read of
 * 4 MB for the FFN's (8, 256, 512)). */
static void gelu_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    int overwrite;
    real *dx = tape_grad_write(tape, x, &overwrite);
    if (!dx) return;
    const real *xs = x->data, *ys = y->data, *dy = y->grad;
    long n = y->size;
    if (overwrite) {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS)
        for (long i = 0; i < n; i++) dx[i] = dy[i] * gelu_derivative(xs[i], ys[i]);
    } else {
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN_ELEMENTS)
        for (long i = 0; i < n; i++) dx[i] += dy[i] * gelu_derivative(xs[i], ys[i]);
    }
}

Tensor *op_gelu(Tape *tape, Tensor *x) {
    Tensor *y = like(tape, x);
#pragma omp parallel for schedule(static) if (x->size >= PARALLEL_MIN_ELEMENTS)
    for (long i = 0; i < x->size; i++) y->data[i] = x->data[i] * normal_cdf(x->data[i]);
    tape_record(tape, "gelu", gelu_backward, y, 1, &x);
    return y;
}

/* --- masked_fill: y = value where mask != 0, else x;  dx += dy where mask == 0 -------------
 * The mask is a constant (no gradient) that broadcasts to x's shape: right-aligned, each of its
 * dimensions 1 or equal to x's. It is expanded once into one byte per element of x (1 = keep
 * x), which the forward uses and the backward keeps. */
static void masked_fill_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    const unsigned char *keep = saved_of(record)->pass;
    for (long i = 0; i < u.n; i++) u.dx[i] += keep[i] ? u.dy[i] : 0;
}

/* The mask's stride along each of x's dimensions, 0 where it broadcasts; 0 if it does not fit. */
static int mask_strides(const Tensor *x, const Tensor *mask, long *stride) {
    int skip = x->ndim - mask->ndim; /* x's leading dimensions the mask does not have */
    if (skip < 0) return 0;
    long step = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        int size = d >= skip ? mask->shape[d - skip] : 1;
        if (size != 1 && size != x->shape[d]) return 0;
        stride[d] = size == 1 ? 0 : step;
        step *= size;
    }
    return 1;
}

/* Whether the mask is x's trailing dimensions exactly, repeated over the leading ones: then
 * x's element i reads mask element i % mask->size. */
static int tiles(const Tensor *x, const Tensor *mask, const long *stride) {
    int skip = x->ndim - mask->ndim;
    for (int d = 0; d < x->ndim; d++)
        if ((d < skip) != (stride[d] == 0)) return 0;
    return 1;
}

/* keep[i] = (mask == 0) at x's element i: an odometer over x's index moves the mask offset. */
static unsigned char *expand_mask(Tape *tape, const Tensor *x, const Tensor *mask) {
    long stride[TENSOR_MAX_DIMS], index[TENSOR_MAX_DIMS] = {0}, offset = 0;
    if (!mask_strides(x, mask, stride)) {
        char x_shape[64], mask_shape[64];
        cpool_fail("op_masked_fill: mask of shape %s does not broadcast to x of shape %s",
                   TENSOR_SHAPE_STR(mask, mask_shape), TENSOR_SHAPE_STR(x, x_shape));
    }
    unsigned char *keep = tape_save(tape, (size_t)x->size);
    if (mask->size > 0 && tiles(x, mask, stride)) { /* the usual (N, N) mask under (B, H, N, N) */
        for (long j = 0; j < mask->size; j++) keep[j] = mask->data[j] == 0;
        for (long base = mask->size; base < x->size; base += mask->size)
            memcpy(keep + base, keep, (size_t)mask->size);
        return keep;
    }
    for (long i = 0; i < x->size; i++) {
        keep[i] = mask->data[offset] == 0;
        for (int d = x->ndim - 1; d >= 0; d--) { /* next index of x, row-major */
            offset += stride[d];
            if (++index[d] < x->shape[d]) break;
            offset -= stride[d] * x->shape[d];
            index[d] = 0;
        }
    }
    return keep;
}

Tensor *op_masked_fill(Tape *tape, Tensor *x, const Tensor *mask, real value) {
    unsigned char *keep = expand_mask(tape, x, mask);
    Tensor *y = like(tape, x);
    for (long i = 0; i < x->size; i++) y->data[i] = keep[i] ? x->data[i] : value;
    Saved *saved = record_with_saved(tape, "masked_fill", masked_fill_backward, x, y);
    if (saved) saved->pass = keep;
    return y;
}

/* --- dropout: y = x m / (1 - p);  dx += dy m / (1 - p),  m ~ Bernoulli(1 - p) --------------
 * Inverted dropout: kept values are scaled by 1 / (1 - p) during training so that E[y] = x and
 * nothing changes at evaluation (where dropout is simply not applied). The mask draws exactly
 * one rng_uniform per element of x in row-major order; u < p drops the element. A dropped
 * element is x * 0 (NaN for an infinite x, as in PyTorch). p = 0 copies x and draws nothing.
 * p must be in [0, 1). */
static void dropout_backward(Tape *tape, TapeRecord *record) {
    Unary u;
    if (!unpack(tape, record, &u)) return;
    const Saved *saved = saved_of(record);
    if (!saved->pass) { /* p = 0 */
        for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i];
        return;
    }
    for (long i = 0; i < u.n; i++) u.dx[i] += u.dy[i] * (saved->pass[i] ? saved->constant : 0);
}

Tensor *op_dropout(Tape *tape, Tensor *x, real p, Rng *rng) {
    if (!(p >= 0 && p < 1)) cpool_fail("op_dropout: p must be in [0, 1), got %g", (double)p);
    Tensor *y = like(tape, x);
    unsigned char *keep = NULL;
    real scale = (real)(1.0 / (1.0 - (double)p));
    if (p == 0) {
        for (long i = 0; i < x->size; i++) y->data[i] = x->data[i];
    } else {
        keep = tape_save(tape, (size_t)x->size);
        for (long i = 0; i < x->size; i++) keep[i] = rng_uniform(rng) >= p;
        for (long i = 0; i < x->size; i++) y->data[i] = x->data[i] * (keep[i] ? scale : 0);
    }
    Saved *saved = record_with_saved(tape, "dropout", dropout_backward, x, y);
    if (saved) saved->constant = scale, saved->pass = keep;
    return y;
}
