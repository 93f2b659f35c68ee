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

/* C (M x N) = A op(B) + 1 bias^T: bias (N) added to every row, each element after its whole
 * sum (as gemm followed by a pass adding the bias would, bit for bit), but while the tile is
 * still in registers instead of in a second pass over C. A is not transposed. The linear
 * layer's forward. */
void gemm_bias(int trans_b, int M, int N, int K, const real *A, int lda, const real *B, int ldb,
               const real *bias, real *C, int ldc);

/* A B shared by several products - attention's keys, used by every row block of a causal layer
 * - can be packed once instead of once per product:
 *
 *     real *buffer = ...;                                 // gemm_packed_b_size(N, K) reals
 *     GemmPackedB b = gemm_pack_b(trans_b, N, K, B, ldb, buffer);
 *     gemm_packed(trans_a, M, n, k, A, lda, &b, j0, k0, C, ldc, accumulate);
 *
 * gemm_packed computes C (M x n) (+)= op(A) (M x k) times rows [k0, k0 + k) and columns
 * [j0, j0 + n) of op(B) (K x N): what gemm() computes on that part of B, bit for bit. j0 must be
 * a multiple of b.nr, the packed tile's width (32 floats with AVX-512; 16 when N <= 16); a part
 * outside B, or j0 not such a multiple, fails (cpool_fail). The buffer must outlive b. */
typedef struct GemmPackedB {
    const real *data;
    int N, K; /* op(B) is K x N */
    int nr;   /* columns per micro-panel: j0 of gemm_packed must be a multiple of it */
} GemmPackedB;

long gemm_packed_b_size(int N, int K); /* reals */
GemmPackedB gemm_pack_b(int trans_b, int N, int K, const real *B, int ldb, real *buffer);
void gemm_packed(int trans_a, int M, int N, int K, const real *A, int lda, const GemmPackedB *B,
                 int j0, int k0, real *C, int ldc, int accumulate);

/* gemm keeps its packing buffers (one per calling thread, up to ~5 MB) for the thread's lifetime;
 * they are freed when the thread exits, the main thread's at exit. This frees the calling
 * thread's now (the next gemm call on it allocates again). */
void gemm_free_workspace(void);

/* The same product by the textbook triple loop: the reference the fast kernel is tested against. */
void gemm_reference(int trans_a, int trans_b, int M, int N, int K, const real *A, int lda,
                    const real *B, int ldb, real *C, int ldc, int accumulate);

#endif
