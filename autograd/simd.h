/* simd.h - the SIMD vector type the hand-blocked loops share (gemm.c, ops_contextpool.c), a
 * 16 x 16 transpose in registers (gemm.c's packing, conv_batched.c's layouts) and a maximum that
 * vectorises (ops_nn.c, ops_attention.c).
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

/* transpose_16x16: to[p to_stride + r] (+)= from[r from_stride + p] for r, p < 16, a 16 x 16
 * block of floats through 16 AVX-512 registers (SIMD_TRANSPOSE_16 is 1 where it exists: floats
 * with AVX-512; elsewhere the callers keep their plain loops). The plain loop moves one real per
 * load and store (GCC makes it one scalar insert per element); this does 16 loads, 16 stores and
 * 64 two-vector shuffles. Transposing [[A, B], [C, D]] (h x h blocks) gives [[A', C'], [B', D']]:
 * swap the off-diagonal blocks, then transpose each block the same way. Stage h swaps the h x h
 * blocks of every 2h x 2h block at once; for rows i and i + h (i & h clear), lane j of the new
 * rows is
 *     row i:      j & h clear: lane j of row i        j & h set: lane j - h of row i + h
 *     row i + h:  j & h clear: lane j + h of row i    j & h set: lane j of row i + h
 * (SWAP_LOW_h and SWAP_HIGH_h list these; in __builtin_shufflevector index 16 + j is lane j of
 * the second vector). After the stages h = 8, 4, 2, 1, row p holds column p. With add, the block
 * is added to what `to` holds. */
#if VECTOR_BYTES == 64 && !defined(CPOOL_DOUBLE) /* VL == 16 floats */
#define SIMD_TRANSPOSE_16 1
#define SWAP_LOW_8        0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23
#define SWAP_HIGH_8       8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31
#define SWAP_LOW_4        0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27
#define SWAP_HIGH_4       4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31
#define SWAP_LOW_2        0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29
#define SWAP_HIGH_2       2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31
#define SWAP_LOW_1        0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30
#define SWAP_HIGH_1       1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31
#define SWAP_BLOCKS(v, h)                                                                          \
    for (int i = 0; i < 16; i++)                                                                   \
        if (!(i & (h))) {                                                                          \
            vreal lo = v[i], hi = v[i + (h)];                                                      \
            v[i] = __builtin_shufflevector(lo, hi, SWAP_LOW_##h);                                  \
            v[i + (h)] = __builtin_shufflevector(lo, hi, SWAP_HIGH_##h);                           \
        }
static inline void transpose_16x16(const real *from, long from_stride, real *to, long to_stride,
                                   int add) {
    vreal v[16]; /* v[r] = from row r, at the end to row p */
    for (int r = 0; r < 16; r++) v[r] = vreal_load(from + r * from_stride);
    SWAP_BLOCKS(v, 8)
    SWAP_BLOCKS(v, 4)
    SWAP_BLOCKS(v, 2)
    SWAP_BLOCKS(v, 1)
    for (int p = 0; p < 16; p++)
        vreal_store(to + p * to_stride, add ? v[p] + vreal_load(to + p * to_stride) : v[p]);
}
#else
#define SIMD_TRANSPOSE_16 0
#endif

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
