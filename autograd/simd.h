/* simd.h - the SIMD vector type the hand-blocked loops share (gemm.c, ops_contextpool.c).
 *
 * A `vreal` is VL reals that + and * act on lane by lane (GCC/Clang vector extensions): 16 floats
 * or 8 doubles with AVX-512, for the target the file is compiled for (-march=native). A loop that
 * keeps a few vreal accumulators in local variables keeps them in registers under both
 * compilers, where an array of reals the same size may live in memory (Clang 14 kept half of
 * gemm's tile there). Loads and stores go through memcpy: any alignment, no aliasing questions.
 */
#ifndef CPOOL_SIMD_H
#define CPOOL_SIMD_H

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

#endif
