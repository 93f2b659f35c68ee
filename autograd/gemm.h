/* gemm.h - the one dense matrix-multiply kernel everything else calls.
 *
 * C (M x N) = op(A) (M x K) * op(B) (K x N)   (accumulate = 0)
 * C        += op(A) * op(B)                    (accumulate = 1)
 * Row-major. op(A) = A, stored M x K with row stride lda, or A^T when trans_a (A stored K x M).
 * op(B) = B, stored K x N with row stride ldb, or B^T when trans_b (B stored N x K).
 * ldc is C's row stride. matmul, linear layers and convolutions (through im2col) all land here,
 * so this is the function the benchmark measures.
 */
#ifndef CPOOL_GEMM_H
#define CPOOL_GEMM_H

#include "tensor.h"

void gemm(int trans_a, int trans_b, int M, int N, int K, const real *A, int lda, const real *B,
          int ldb, real *C, int ldc, int accumulate);

/* gemm keeps its packing buffers (one per calling thread, up to ~5 MB) for the thread's lifetime;
 * they are freed when the thread exits, the main thread's at exit. This frees the calling
 * thread's now (the next gemm call on it allocates again). */
void gemm_free_workspace(void);

/* The same product by the textbook triple loop: the reference the fast kernel is tested against. */
void gemm_reference(int trans_a, int trans_b, int M, int N, int K, const real *A, int lda,
                    const real *B, int ldb, real *C, int ldc, int accumulate);

#endif
