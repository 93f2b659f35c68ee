/* gemm.c - see gemm.h. (Placeholder: the blocked kernel replaces the body of gemm().) */
#include "gemm.h"

void gemm_reference(int trans_a, int trans_b, int M, int N, int K, const real *A, int lda,
                    const real *B, int ldb, real *C, int ldc, int accumulate) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double sum = 0;
            for (int k = 0; k < K; k++) {
                real a = trans_a ? A[(long)k * lda + i] : A[(long)i * lda + k];
                real b = trans_b ? B[(long)j * ldb + k] : B[(long)k * ldb + j];
                sum += (double)a * b;
            }
            C[(long)i * ldc + j] = (real)(accumulate ? C[(long)i * ldc + j] + sum : sum);
        }
}

void gemm(int trans_a, int trans_b, int M, int N, int K, const real *A, int lda, const real *B,
          int ldb, real *C, int ldc, int accumulate) {
    gemm_reference(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}
