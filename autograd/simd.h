/* simd.h - the SIMD vector type the hand-blocked loops share (gemm.c, ops_contextpool.c), and a
 * maximum that vectorises (ops_nn.c, ops_attention.c).
 *
 * A `vreal` is VL reals that + and * act on lane by lane (GCC/Clang vector extensions): 16 floats
 * or 8 doubles with AVX-512, for the target the file is compiled for (-march=native). A loop that
 * keeps a few vreal accumulators in local variables keeps them in registers under both
 * compilers, where an array of reals the same size may live in memory (Clang 14 kept half of
 * gemm's tile there). Loads and stores go through memcpy: any alignment, no aliasing questions.
 */
#ifndef CPOOL_SIMD_H
#define CPOOL_SIMD_H

#include <math.h>
#include <string.h>

#include "tensor.h"

/* Bytes per SIMD register. */
#if defined(__AVX512F__)
#define VECTOR_BYTES 64
#elif defined(__AVX__)
#define VECTOR_BYTES 32
#else
#define VECTOR_BYTES 16 /* SSE2, NEON */
#endif

typedef real vreal __attribute__((vector_size(VECTOR_BYTES)));
enum { VL = VECTOR_BYTES / (int)sizeof(real) }; /* lanes: 16 floats / 8 doubles with AVX-512 */

static inline vreal vreal_load(const real *from) {
    vreal v;
    memcpy(&v, from, sizeof v);
    return v;
}
static inline void vreal_store(real *to, vreal v) {
    memcpy(to, &v, sizeof v);
}

/* max_k x[k] over n values, -inf for n = 0. NaNs are skipped (a softmax turns its row into NaN
 * anyway, as in PyTorch). One running maximum would be a chain of dependent scalar maxima (3
 * cycles each: 0.3 ms of the benchmark char-LM's (2048, 256) cross-entropy), which compilers do
 * not vectorise as a reduction without -ffast-math (GCC only with `omp simd reduction(max)`,
 * Clang 14 not at all, and -Werror turns its "loop not vectorized" into an error). So 16
 * running maxima, one per lane, are kept over blocks of 16 (an elementwise compare-and-select,
 * which both vectorise) and combined at the end. A maximum is one of the x[k] whatever the
 * order, so the result is the same (up to the sign of a zero maximum). */
enum { MAX_LANES = 16 };

static inline real max_of(const real *x, long n) {
    real lane[MAX_LANES];
    for (int k = 0; k < MAX_LANES; k++) lane[k] = -INFINITY;
    long j = 0;
    for (; j + MAX_LANES <= n; j += MAX_LANES)
#pragma omp simd /* GCC would otherwise unroll it into 16 scalar maxima */
        for (int k = 0; k < MAX_LANES; k++) lane[k] = x[j + k] > lane[k] ? x[j + k] : lane[k];
    real m = -INFINITY;
    for (; j < n; j++) m = x[j] > m ? x[j] : m;
    for (int k = 0; k < MAX_LANES; k++) m = lane[k] > m ? lane[k] : m;
    return m;
}

#endif
