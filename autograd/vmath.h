/* vmath.h - float32 e^x, erfc and the normal CDF/PDF in plain C that the compiler vectorises.
 *
 *     for (long i = 0; i < n; i++) y[i] = vmath_expf(x[i]);            // 8 or 16 lanes at once
 *     for (long i = 0; i < n; i++) y[i] = x[i] * vmath_normal_cdf(x[i]); // GELU
 *
 * libm's expf and erfcf are calls the compiler cannot vectorise, and erfcf branches on five
 * intervals. These functions have no branch and no call (every limit is a select), so a loop of
 * them becomes SIMD code. Each is a few float ulps from the exact value (tests/test_vmath.c
 * measures it against libm in double over the whole float range):
 *
 *   vmath_expf        e^x                        measured 0.98 ulp
 *   vmath_erfcf       erfc(x)                    measured 3.0 ulp relative (absolute in units
 *                                                of 2^-149 where erfc(x) is subnormal, x > 9.2)
 *   vmath_normal_cdf  Phi(x) = erfc(-x/sqrt2)/2   measured 2.9 ulp
 *   vmath_normal_pdf  phi(x) = e^(-x^2/2)/sqrt(2 pi)  measured 1.2 ulp
 * (with FMA, i.e. -march=native; without it each fused step rounds twice: erfc 3.8, Phi 4.2 ulp).
 *
 * Only the float32 build uses them (ops_unary.c, ops_nn.c, ops_attention.c, ops_contextpool.c);
 * the float64 build keeps libm, which the gradient checker's 1e-6 central differences need.
 *
 * How e^x is computed (Cody-Waite reduction, as Cephes expf):
 *   n = round(x / ln 2),  r = x - n ln 2 in [-ln2/2, ln2/2]   (ln 2 = C1 + C2, n C1 exact)
 *   e^r = 1 + r + r^2 P(r), P the degree-5 minimax polynomial of Cephes (error ~ 1e-8 relative)
 *   e^x = 2^n e^r, the 2^n applied as two factors 2^(n/2) 2^(n - n/2), so that a result that is
 *   subnormal (x < -87.3) or overflows (x > 88.72) is rounded once, by the last multiply.
 * x is clamped to [-104, 89] first (e^-104 rounds to 0, e^89 to +inf), NaN passes through;
 * erfc, Phi and phi skip the clamp (vmath_exp_parts_in_range): their own clamps keep the
 * exponent in [-103.7, 0].
 * n comes from the bits of x / ln2 + 1.5 2^23 (the float addition rounds to an integer), so no
 * float-to-int conversion is needed (that would be undefined for NaN).
 *
 * How erfc is computed (for z = |x|; x < 0 uses erfc(x) = 2 - erfc(|x|)):
 *   erfc(z) = e^(-z^2) t P(t),  t = 2 / (2 + z) in (0, 1]
 * P(t) = erfc(z) e^(z^2) / t is smooth, from 1 (z = 0) to 1/(2 sqrt pi) (z -> inf); P is a
 * degree-10 polynomial in u = A t + B (t in [t(10.1), 1] mapped to [-1, 1]), fitted by
 * iteratively reweighted least squares in mpmath to relative error 1.7e-8 with the float
 * coefficients below (0.2 ulp). e^(-z^2) needs z^2 to more than float precision (its rounding
 * error, relative 2^-24, becomes an error of z^2 2^-24 in e^(-z^2): 100 ulp at z = 10), so z^2 is
 * split as zh^2 + (z - zh)(z + zh) with zh = z cut to 12 significant bits: zh^2 is exact and
 * the small remainder goes into the reduced argument r (with FMA: RN(z^2) and its exact error).
 * Beyond z = 10.1 erfc(z) < 2^-150 is 0. The two roundings of t are corrected to first order
 * (vmath_erfc_times_exp_square). Near 0 (|x| < 0.47) erfc = 1 - erf(x) from an odd series
 * (vmath_erf_small), which rounds less. Phi needs no such series (see vmath_normal_cdf).
 *
 * Cost: these loops are bound by the number of vector instructions, so every select and step
 * counts: Phi lost the near-0 series, the exp clamps and (with FMA) the 12-bit split of z^2
 * (op_gelu's vector loop: 98 -> 75 instructions for 16 elements, 1.25 -> 0.9 ns an element,
 * gcc 12 on AMD Zen 4 with AVX-512) at the same measured maximum error. Replacing the division by a
 * Newton reciprocal was tried: slower, and less accurate without FMA.
 */
#ifndef CPOOL_VMATH_H
#define CPOOL_VMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* a b + c: one rounding where the machine has FMA (compiled with -mfma or -march=native), two
 * otherwise. Either way the same in every lane and on every call of one build. */
#ifdef __FMA__
#define VMATH_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define VMATH_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Every function here must be inlined into the caller's loop for that loop to vectorise; Clang
 * otherwise keeps the larger ones (Phi) as calls. */
#if defined(__GNUC__) || defined(__clang__)
#define VMATH_INLINE static inline __attribute__((always_inline))
#else
#define VMATH_INLINE static inline
#endif

static inline uint32_t vmath_bits(float x) {
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits;
}
static inline float vmath_float(uint32_t bits) {
    float x;
    memcpy(&x, &bits, sizeof x);
    return x;
}

/* condition ? if_true : if_false, as a blend of bits. GCC 12 (with its default -ftrapping-math)
 * does not vectorise a float ?: whose operands are computed in the loop unless the target has
 * AVX-512 masks: it will not speculate the float compare. An integer blend it always
 * vectorises. Both operands are computed anyway (they are in a vector loop). */
VMATH_INLINE float vmath_select(int condition, float if_true, float if_false) {
    uint32_t mask = 0u - (uint32_t)(condition != 0);
    return vmath_float((vmath_bits(if_true) & mask) | (vmath_bits(if_false) & ~mask));
}

/* e^(hi + lo) = (1 + r_exp_minus_1) * scale_low * scale_high, 1 + r_exp_minus_1 = e^r in
 * [0.70, 1.42], the scales powers of 2 (normal floats). lo is a small correction (|lo| <= 1)
 * carried below hi's precision. vmath_exp_times multiplies by a factor first, then by the
 * scales: only the last multiply can round into the subnormal range or overflow. */
typedef struct VmathExp {
    float r_exp_minus_1, scale_low, scale_high;
} VmathExp;

VMATH_INLINE VmathExp vmath_exp_parts_in_range(float hi, float lo) {
    const float log2e = 1.44269504088896341f;
    const float ln2_c1 = 0.693359375f;       /* 9 significant bits: n ln2_c1 is exact */
    const float ln2_c2 = -2.12194440e-4f;    /* ln 2 - ln2_c1 */
    const float round_shift = 12582912.0f;   /* 1.5 2^23: adding it rounds to an integer */
    const uint32_t shift_bits = 0x4B400000u; /* its bits: bits(round_shift + n) = this + n */
    float shifted = VMATH_FMA(hi + lo, log2e, round_shift);
    float n = shifted - round_shift; /* round((hi + lo) / ln 2), in [-151, 129] */
    float r = VMATH_FMA(-n, ln2_c1, hi);
    r = VMATH_FMA(-n, ln2_c2, r) + lo;
    /* e^r = 1 + r + r^2 P(r) (Cephes expf) */
    float p = VMATH_FMA(1.9875691500e-4f, r, 1.3981999507e-3f);
    p = VMATH_FMA(p, r, 8.3334519073e-3f);
    p = VMATH_FMA(p, r, 4.1665795894e-2f);
    p = VMATH_FMA(p, r, 1.6666665459e-1f);
    p = VMATH_FMA(p, r, 5.0000001201e-1f);
    float r_exp_minus_1 = VMATH_FMA(p, r * r, r);
    /* 2^n = 2^n_low 2^(n - n_low): biased = n + 151 in [0, 280], n_low = biased / 2 - 75 in
     * [-75, 65] and n - n_low in [-76, 65], both normal; biased exponents n_low + 127 and
     * n - n_low + 127. Unsigned, so that a NaN's garbage bits wrap instead of overflowing. */
    uint32_t biased = vmath_bits(shifted) - shift_bits + 151u;
    uint32_t biased_low = biased >> 1;
    VmathExp parts = {r_exp_minus_1, vmath_float((biased_low + 52u) << 23),
                      vmath_float((biased - biased_low + 51u) << 23)};
    return parts;
}

/* The same for any hi: clamped to [-104, 89] first. */
VMATH_INLINE VmathExp vmath_exp_parts(float hi, float lo) {
    hi = vmath_select(hi < -104.0f, -104.0f, hi); /* e^-104 < 2^-150: rounds to 0 */
    hi = vmath_select(hi > 89.0f, 89.0f, hi);     /* e^89 > FLT_MAX: rounds to inf; NaN stays */
    return vmath_exp_parts_in_range(hi, lo);
}

/* factor e^(hi + lo): factor + factor (e^r - 1), one rounding, then the exact (or final,
 * subnormal or overflowing) scaling. */
VMATH_INLINE float vmath_exp_times(VmathExp parts, float factor) {
    return VMATH_FMA(factor, parts.r_exp_minus_1, factor) * parts.scale_low * parts.scale_high;
}

/* e^x for float x: 1 ulp; 0 below -103.97, +inf above 88.72, NaN for NaN. */
VMATH_INLINE float vmath_expf(float x) {
    return vmath_exp_times(vmath_exp_parts(x, 0.0f), 1.0f);
}

/* The parts of e^(-scale z^2) for 0 <= z <= 14.4 (or NaN), scale 1 or 1/2 (a power of 2, so
 * scaling is exact), with z^2 carried in two parts hi + lo. The callers' clamps (z <= 10.1 at
 * scale 1, z <= 14.4 at scale 1/2) keep -scale z^2 >= -103.7, inside vmath_exp_parts_in_range's
 * range. With FMA the split is z^2 = RN(z^2) + fma(z, z, -RN(z^2)), the second term the exact
 * rounding error (3 instructions fewer). hi is then a full 24-bit float, and the reduction's
 * hi - n ln2_c1 stays exact: n ln2_c1 is a multiple of 2^-9, so of hi's ulp (|hi| < 2^15), and
 * the difference is no larger than hi. Without FMA, zh^2 + (z - zh)(z + zh). */
VMATH_INLINE VmathExp vmath_exp_minus_square(float z, float scale) {
#ifdef __FMA__
    float square = z * z;
    float hi = -scale * square;
    float lo = -scale * VMATH_FMA(z, z, -square); /* z^2 - RN(z^2), exact */
#else
    float zh = vmath_float(vmath_bits(z) & 0xFFFFF000u); /* 12 significant bits */
    float hi = -scale * (zh * zh);                       /* exact */
    float lo = -scale * ((z - zh) * (z + zh));           /* z^2 - zh^2, exactly that product */
#endif
    return vmath_exp_parts_in_range(hi, lo);
}

/* P(t) = erfc(z) e^(z^2) / t, t = 2 / (2 + z) in [2 / 12.1, 1], relative error 1.7e-8. */
VMATH_INLINE float vmath_erfc_tail(float t) {
    float u = VMATH_FMA(t, 2.3960394859313965f, -1.396039605140686f); /* [-1, 1] */
    float p = VMATH_FMA(5.704339401e-06f, u, 6.678255431e-06f);
    p = VMATH_FMA(p, u, -6.798507820e-05f);
    p = VMATH_FMA(p, u, 5.646439149e-06f);
    p = VMATH_FMA(p, u, 6.029203651e-04f);
    p = VMATH_FMA(p, u, -6.307717413e-04f);
    p = VMATH_FMA(p, u, -6.190086715e-03f);
    p = VMATH_FMA(p, u, 6.033311132e-03f);
    p = VMATH_FMA(p, u, 1.023376361e-01f);
    p = VMATH_FMA(p, u, 3.264239430e-01f);
    return VMATH_FMA(p, u, 5.714730620e-01f);
}

/* erfc(z) e^(z^2) = t P(t), t = 2 / (2 + z), for 0 <= z <= 10.1 (or NaN), where the true
 * argument is z + z_err (z_err: a rounding the caller knows, or 0).
 * t carries two roundings (of 2 + z and of the division), and erfc(z) e^(z^2) is sensitive to
 * them (d ln / d ln t = 1.9 at z = 1): it is the value at z_t = 2 / t - 2, not at z. Both
 * roundings are known exactly (2 + z = d + d_err by TwoSum, t d = 2 - e by an FMA), so
 * dz = z + z_err - z_t = z_err + d_err - d e / 2 to first order, and the result is corrected by
 * the factor 1 + g dz, g = d ln(erfc(z) e^(z^2)) / dz = 2z - 2 / (sqrt(pi) erfc e^(z^2)),
 * approximated within 10% by -0.544 t - 0.584 t^2 (dz is ~1e-7 z, so that is plenty). */
VMATH_INLINE float vmath_erfc_times_exp_square(float z, float z_err) {
    float d = 2.0f + z;
    /* d + d_err = 2 + z exactly. d - 2 is exact (d in [2, 12.3] is a multiple of its own ulp,
     * which 2 is too, and d - 2 < d needs no finer one), so d - d_from_z = 2 exactly and TwoSum's
     * (2 - (d - d_from_z)) + (z - d_from_z) is z - d_from_z: the rounding error of 2 + z, which
     * is representable, so the subtraction gives it exactly. */
    float d_from_z = d - 2.0f;
    float d_err = z - d_from_z;
    float t = 2.0f / d;
    float e = VMATH_FMA(-t, d, 2.0f); /* t d = 2 - e */
    float dz = VMATH_FMA(-0.5f * d, e, z_err + d_err);
    float g = t * VMATH_FMA(-0.584f, t, -0.544f);
    float p = vmath_erfc_tail(t);
    return t * VMATH_FMA(p, g * dz, p);
}

/* erf(z) for |z| <= 0.55: z + z S(z^2), S(s) = erf(z) / z - 1 the degree-5 minimax polynomial
 * (fitted as the tail's), relative error 1e-9 with these float coefficients. Adding the
 * correction z S to z keeps the leading 2 / sqrt(pi) exact, which no float coefficient is. */
VMATH_INLINE float vmath_erf_small(float z) {
    float s = z * z;
    float p = VMATH_FMA(-7.525021210e-04f, s, 5.189838819e-03f);
    p = VMATH_FMA(p, s, -2.686085366e-02f);
    p = VMATH_FMA(p, s, 1.128375381e-01f);
    p = VMATH_FMA(p, s, -3.761263788e-01f);
    p = VMATH_FMA(p, s, 1.283791661e-01f);
    return VMATH_FMA(z, p, z);
}

/* Where erfc(z) is below half the smallest subnormal (2^-150): z > 10.06. */
#define VMATH_ERFC_ZERO_ABOVE 10.1f

/* erfc(x): 2 for x <= -3.84 (also -inf), 0 from 10.055 (also +inf), NaN for NaN. Near 0
 * (|x| < 0.47, erfc in (0.5, 1.5)) 1 - erf(x) is more accurate: its subtraction is exact or
 * rounds once into a binade no finer than erf's, where the tail form rounds some six times. */
VMATH_INLINE float vmath_erfcf(float x) {
    float z = fabsf(x);
    z = vmath_select(z > VMATH_ERFC_ZERO_ABOVE, VMATH_ERFC_ZERO_ABOVE, z); /* NaN stays */
    float tail =
        vmath_exp_times(vmath_exp_minus_square(z, 1.0f), vmath_erfc_times_exp_square(z, 0));
    float near_zero = 1.0f - vmath_erf_small(x);
    return vmath_select(fabsf(x) < 0.47f, near_zero, vmath_select(x < 0, 2.0f - tail, tail));
}

/* Where Phi(-|x|) and phi(x) are below 2^-150 (|x| > 14.33, e^(-x^2/2) < 2^-148): both 0.
 * Below 14.42, so that -x^2/2 >= -103.7 needs no further clamp in the exp. */
#define VMATH_NORMAL_ZERO_ABOVE 14.4f

/* Phi(x) = erfc(-x / sqrt 2) / 2, the standard normal CDF: 0 from -14.17, 1 from 5.42. The
 * exponent -x^2/2 is formed from x itself (not from the rounded x / sqrt 2), and only t sees
 * the rounded z = |x| / sqrt 2, where P(t) is insensitive to it.
 * Near 0 the tail form serves too (a series there, as erfc has, cost 10 of ~90 instructions):
 * Phi is in (0.25, 0.75), nothing cancels, and only the tail form's roundings remain. Measured
 * on every 7th float of |x| < 0.67: 2.5 ulp with FMA (2.9 is the maximum over all x), 4.2
 * without (4.05 elsewhere; tests/test_vmath.c bounds both at 4.5). erfcf keeps its series. */
VMATH_INLINE float vmath_normal_cdf(float x) {
    float a = fabsf(x);
    a = vmath_select(a > VMATH_NORMAL_ZERO_ABOVE, VMATH_NORMAL_ZERO_ABOVE, a); /* NaN stays */
    float z = a * 0.70710678118654752f;
    float z_err = VMATH_FMA(a, 0.70710678118654752f, -z); /* a / sqrt 2 = z + z_err */
    float half_tail = vmath_exp_times(vmath_exp_minus_square(a, 0.5f),
                                      0.5f * vmath_erfc_times_exp_square(z, z_err));
    return vmath_select(x < 0, half_tail, 1.0f - half_tail);
}

/* phi(x) = e^(-x^2 / 2) / sqrt(2 pi), the standard normal density: 0 beyond |x| = 14.1. Its
 * e^(-x^2/2) is the same computation as in vmath_normal_cdf, so a loop calling both on the same
 * x computes it once. */
VMATH_INLINE float vmath_normal_pdf(float x) {
    float a = fabsf(x);
    a = vmath_select(a > VMATH_NORMAL_ZERO_ABOVE, VMATH_NORMAL_ZERO_ABOVE, a);
    return vmath_exp_times(vmath_exp_minus_square(a, 0.5f), 0.398942280401432678f);
}

#endif
