/* test_vmath.c - the vectorisable float32 e^x, erfc, Phi and phi of vmath.h against libm in
 * double, over the whole float range: a strided sweep through all 2^32 bit patterns (every
 * binade, both signs, subnormals, inf and NaN included), every float near the points where the
 * result changes regime (0, 1, overflow, underflow), and the special values one by one.
 *
 * The error is measured in ulps of the exact result, the spacing of floats at |exact|:
 * 2^(e - 23) for exact in [2^e, 2^(e+1)), and 2^-149 (the subnormal spacing) below 2^-126, so a
 * subnormal result is held to an absolute error, a normal one to a relative error. A correctly
 * rounded function has error <= 0.5 ulp; libm double is exact enough (1e-16 relative, 1e-9 ulp
 * of float) to be the reference. The functions are evaluated in a plain loop over an array,
 * the loop the compiler vectorises, so the SIMD code of this build is what is measured.
 *
 * The tests run the same in the float64 build: vmath.h is float32 whatever `real` is. */
#include "test_util.h"

#include <float.h>
#include <stdlib.h>

#include "vmath.h"

/* The bounds. Each rounding on a function's path costs at most 2^-24 relative, which is 0.5 to
 * 1 ulp of the result depending on where its significand lies; the fitted polynomials add
 * their own (small) error. With FMA (this project's -march=native builds) the paths are:
 *   e^x:  the reduction, the Horner steps (dominated by the last, 1 + r + ...) and the final
 *         rounding: 1.5 ulp (measured 0.98).
 *   erfc: the tail polynomial (fit 0.3 ulp + its last step), u = A t + B, the t correction,
 *         the product with t, the product with e^r (one FMA): 3.5 ulp (measured 3.0). Near 0,
 *         1 - erf(x): the series (1e-9) and two roundings, 1 ulp.
 *   Phi:  erfc's path on x / sqrt 2 (whose own rounding is corrected): the same.
 *   phi:  e^r and one product: 2 ulp (measured 1.2).
 * Without FMA (the sanitizer build has no -march) every VMATH_FMA rounds twice, adding up to
 * 1 ulp on erfc's and Phi's longer paths (measured 4.05): their bound is 4.5 ulp. */
#define EXP_MAX_ULPS  1.5
#define ERFC_MAX_ULPS 4.5
#define CDF_MAX_ULPS  4.5
#define PDF_MAX_ULPS  2.0

typedef struct Function {
    const char *name;
    void (*fast)(const float *x, float *y, long n); /* the vmath function over an array */
    double (*exact)(double x);
    double max_ulps;
} Function;

static void expf_array(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = vmath_expf(x[i]);
}
static void erfcf_array(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = vmath_erfcf(x[i]);
}
static void cdf_array(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = vmath_normal_cdf(x[i]);
}
static void pdf_array(const float *x, float *y, long n) {
    for (long i = 0; i < n; i++) y[i] = vmath_normal_pdf(x[i]);
}
static double exact_cdf(double x) {
    return 0.5 * erfc(-x * M_SQRT1_2);
}
static double exact_pdf(double x) {
    return exp(-0.5 * x * x) * (0.5 * M_2_SQRTPI * M_SQRT1_2);
}

static const Function FUNCTIONS[] = {
    {"vmath_expf", expf_array, exp, EXP_MAX_ULPS},
    {"vmath_erfcf", erfcf_array, erfc, ERFC_MAX_ULPS},
    {"vmath_normal_cdf", cdf_array, exact_cdf, CDF_MAX_ULPS},
    {"vmath_normal_pdf", pdf_array, exact_pdf, PDF_MAX_ULPS},
};
enum { N_FUNCTIONS = sizeof FUNCTIONS / sizeof FUNCTIONS[0] };

/* The spacing of floats at |v| (see the top). */
static double float_ulp(double v) {
    int exponent;
    frexp(v, &exponent); /* |v| = m 2^exponent, m in [0.5, 1) */
    return fmax(ldexp(1, exponent - 24), ldexp(1, -149));
}

/* |got - exact| in ulps of exact; 0 when both are the same infinity or both NaN, infinite when
 * only one is. exact beyond FLT_MAX must give inf (it rounds there), and below it a finite
 * value. */
static double error_ulps(double exact, float got) {
    if (isnan(exact) || isnan(got)) return isnan(exact) && isnan(got) ? 0 : INFINITY;
    if ((float)exact == (double)got) return 0; /* correctly rounded, also the infinities */
    if (isinf((float)exact) || isinf(got)) return INFINITY;
    return fabs((double)got - exact) / float_ulp(exact);
}

typedef struct Worst {
    double ulps;
    float x, got;
    double exact;
} Worst;

/* Evaluates f on x[0..n) and keeps the worst error in worst. */
static void measure(const Function *f, const float *x, long n, Worst *worst) {
    float *y = malloc((size_t)n * sizeof(float));
    assert_non_null(y);
    f->fast(x, y, n);
    for (long i = 0; i < n; i++) {
        double exact = f->exact((double)x[i]), ulps = error_ulps(exact, y[i]);
        if (!(ulps <= worst->ulps)) *worst = (Worst){ulps, x[i], y[i], exact};
    }
    free(y);
}

static void expect_within(const Function *f, const Worst *worst, const char *sweep) {
    print_message("  %-17s %-28s max error %.3f ulp (at x = %.9g)\n", f->name, sweep, worst->ulps,
                  (double)worst->x);
    if (!(worst->ulps <= f->max_ulps))
        fail_msg("%s, %s: %.3f ulp > %.1f at x = %.9g (bits 0x%08x): got %.9g, exact %.17g",
                 f->name, sweep, worst->ulps, f->max_ulps, (double)worst->x, vmath_bits(worst->x),
                 (double)worst->got, worst->exact);
}

/* Every stride-th bit pattern of the 2^32, starting at offset: all signs, binades, subnormals,
 * infinities and NaNs, about 4.3 million floats for stride 997 (prime, so that the low mantissa
 * bits take every value). */
enum { STRIDE = 997, CHUNK = 1 << 16 };

static void sweep_all_bit_patterns(void **state) {
    (void)state;
    float *x = malloc(CHUNK * sizeof(float));
    assert_non_null(x);
    for (int k = 0; k < N_FUNCTIONS; k++) {
        Worst worst = {0, 0, 0, 0};
        uint64_t bits = 12345;
        while (bits < ((uint64_t)1 << 32)) {
            long n = 0;
            for (; n < CHUNK && bits < ((uint64_t)1 << 32); n++, bits += STRIDE)
                x[n] = vmath_float((uint32_t)bits);
            measure(&FUNCTIONS[k], x, n, &worst);
        }
        expect_within(&FUNCTIONS[k], &worst, "all bit patterns / 997");
    }
    free(x);
}

/* Every float within 2^15 representable steps either side of each point: where a result
 * changes regime, the polynomial's interval ends, or a cancellation could hide. */
static void sweep_around(const Function *f, const float *points, int n_points) {
    enum { HALF_WIDTH = 1 << 15 };
    float *x = malloc(2 * HALF_WIDTH * sizeof(float));
    assert_non_null(x);
    Worst worst = {0, 0, 0, 0};
    for (int p = 0; p < n_points; p++) {
        float v = points[p];
        for (int i = 0; i < HALF_WIDTH; i++) {
            x[2 * i] = v;
            v = nextafterf(v, INFINITY);
        }
        v = points[p];
        for (int i = 0; i < HALF_WIDTH; i++) {
            v = nextafterf(v, -INFINITY);
            x[2 * i + 1] = v;
        }
        measure(f, x, 2 * HALF_WIDTH, &worst);
    }
    free(x);
    expect_within(f, &worst, "around the regime changes");
}

static void sweep_the_regime_changes(void **state) {
    (void)state;
    /* e^x: 0; the ends of r's interval (+-ln2/2); the start of subnormal results (-87.34), the
     * last nonzero one (-103.97), the last finite one (88.72) and the clamps (-104, 89). */
    sweep_around(&FUNCTIONS[0],
                 (const float[]){0, 0.34657f, -0.34657f, -87.336f, -103.972f, 88.7228f, -104, 89},
                 8);
    /* erfc: 0, where 2 - erfc rounds to 2 (-3.9), subnormal results (9.2), 0 (10.06), the
     * clamp (10.1). */
    sweep_around(&FUNCTIONS[1],
                 (const float[]){0, 0.47f, -0.47f, 1, -1, -3.9f, 9.2f, 10.06f, 10.1f}, 9);
    /* Phi: 0, where it rounds to 1 (5.5), subnormal (-13), 0 (-14.2), the clamp (-14.5). */
    sweep_around(&FUNCTIONS[2], (const float[]){0, 0.67f, -0.67f, 5.5f, -13, -14.2f, -14.5f}, 7);
    sweep_around(&FUNCTIONS[3], (const float[]){0, 13.2f, -14.33f, 14.5f}, 4);
}

/* Every float in [-16, 16] that is a multiple of 2^-12 (about 131 thousand): the range GELU and
 * softmax see, evenly covered rather than log-spaced. */
static void sweep_the_working_range_evenly(void **state) {
    (void)state;
    enum { N = 32 * 4096 + 1 };
    float *x = malloc(N * sizeof(float));
    assert_non_null(x);
    for (long i = 0; i < N; i++) x[i] = (float)ldexp((double)(i - N / 2), -12);
    for (int k = 0; k < N_FUNCTIONS; k++) {
        Worst worst = {0, 0, 0, 0};
        measure(&FUNCTIONS[k], x, N, &worst);
        expect_within(&FUNCTIONS[k], &worst, "[-16, 16] in steps of 2^-12");
    }
    free(x);
}

/* Phi near 0 (|x| < 0.67, Phi in (0.25, 0.75)) densely: every 61st float from 2^-30 up, both
 * signs, about 8 million. Phi has no series there (vmath.h): the tail form alone must meet the
 * same bound, where Phi sits just below 1/2 and its ulp is half that of the intermediates. */
static void sweep_phi_near_zero_densely(void **state) {
    (void)state;
    const uint32_t first = 0x30800000u, last = 0x3F2B851Fu; /* 2^-30 and 0.67 */
    float *x = malloc(CHUNK * sizeof(float));
    assert_non_null(x);
    Worst worst = {0, 0, 0, 0};
    for (uint32_t sign = 0; sign <= 1; sign++) {
        uint32_t bits = first;
        while (bits < last) {
            long n = 0;
            for (; n < CHUNK && bits < last; n++, bits += 61) x[n] = vmath_float(bits | sign << 31);
            measure(&FUNCTIONS[2], x, n, &worst);
        }
    }
    free(x);
    expect_within(&FUNCTIONS[2], &worst, "|x| < 0.67, every 61st");
}

/* The limits, exactly: no NaN from a finite or infinite input, NaN in gives NaN out. */
static void limits_are_exact(void **state) {
    (void)state;
    assert_true(vmath_expf(0) == 1);
    assert_true(vmath_expf(-INFINITY) == 0 && vmath_expf(-1e30f) == 0 && vmath_expf(-104) == 0);
    assert_true(isinf(vmath_expf(INFINITY)) && isinf(vmath_expf(1e30f)) && isinf(vmath_expf(89)));
    assert_true(vmath_expf(FLT_MIN) == 1 && vmath_expf(-FLT_TRUE_MIN) == 1);
    assert_true(vmath_expf(-103.9f) > 0); /* e^-103.9 = 8.1e-46: the smallest subnormal */

    assert_true(vmath_erfcf(0) == 1 && vmath_erfcf(-0.0f) == 1);
    assert_true(vmath_erfcf(INFINITY) == 0 && vmath_erfcf(FLT_MAX) == 0 && vmath_erfcf(11) == 0);
    assert_true(vmath_erfcf(-INFINITY) == 2 && vmath_erfcf(-FLT_MAX) == 2 && vmath_erfcf(-4) == 2);

    assert_true(vmath_normal_cdf(0) == 0.5f);
    assert_true(vmath_normal_cdf(INFINITY) == 1 && vmath_normal_cdf(6) == 1);
    assert_true(vmath_normal_cdf(-INFINITY) == 0 && vmath_normal_cdf(-15) == 0);
    assert_true(vmath_normal_cdf(-13) > 0); /* 6.1e-39: subnormal, not flushed */
    assert_true(vmath_normal_pdf(INFINITY) == 0 && vmath_normal_pdf(-INFINITY) == 0);
    assert_true(vmath_normal_pdf(-14.5f) == 0 && vmath_normal_pdf(FLT_MAX) == 0);

    const float nans[] = {NAN, -NAN};
    for (int i = 0; i < 2; i++) {
        assert_true(isnan(vmath_expf(nans[i])));
        assert_true(isnan(vmath_erfcf(nans[i])));
        assert_true(isnan(vmath_normal_cdf(nans[i])));
        assert_true(isnan(vmath_normal_pdf(nans[i])));
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sweep_all_bit_patterns),
        cmocka_unit_test(sweep_the_regime_changes),
        cmocka_unit_test(sweep_the_working_range_evenly),
        cmocka_unit_test(sweep_phi_near_zero_densely),
        cmocka_unit_test(limits_are_exact),
    };
    return cmocka_run_group_tests_name("vmath (" REAL_NAME ")", tests, NULL, NULL);
}
