/* test_matmul.c - the blocked gemm against the textbook triple loop, op_matmul (shapes, hand
 * values, batching, the backward pass, bad inputs) and op_linear against matmul plus bias.
 *
 * How close must gemm be to gemm_reference? Both compute sum_k a_ik b_kj (+ c_ij), in a different
 * order and precision. The standard worst-case bound for a sum of K products in floating point
 * with unit roundoff u (2^-24 in float32, 2^-53 in float64) is
 *     |computed - exact| <= gamma_(K+1) (|c_ij| + sum_k |a_ik| |b_kj|),  gamma_n = n u / (1 - n u),
 * whatever the order of the additions (blocking over K only changes the order). The reference sums
 * in double and rounds once, so it is within the same bound of the exact value. Their difference is
 * therefore at most twice that; since (K + 2) u >= gamma_(K+1) for every K used here, we assert
 *     |gemm - reference| <= 2 (K + 2) u (|c_ij| + sum_k |a_ik| |b_kj|)
 * element by element. It is a bound relative to the magnitude of the terms, not to the result:
 * cancellation can make the result tiny while the rounding errors of the terms remain. */
#include "test_util.h"

#include <float.h>
#include <stdlib.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.h"
#include "ops.h"
#include "rng.h"

#ifdef CPOOL_DOUBLE
#define UNIT_ROUNDOFF (DBL_EPSILON / 2)
#else
#define UNIT_ROUNDOFF (FLT_EPSILON / 2)
#endif

/* --- gemm against gemm_reference ---------------------------------------------------------- */

/* One gemm call's operands, stored with padded rows (ld > row length). Padding holds NaN in A and
 * B (it must never be read) and a sentinel in C (it must never be written). */
typedef struct GemmCase {
    int trans_a, trans_b, M, N, K, accumulate;
    int lda, ldb, ldc;
    real *A, *B, *C, *C_reference;
    long c_size;
} GemmCase;

static const real SENTINEL = 12345;

static real *padded_matrix(Rng *rng, int rows, int cols, int ld, real padding) {
    real *m = malloc((size_t)(rows ? (long)rows * ld : 1) * sizeof(real));
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < ld; c++)
            m[(long)r * ld + c] = c < cols ? (real)rng_range(rng, -1, 1) : padding;
    return m;
}

static GemmCase make_case(Rng *rng, int trans_a, int trans_b, int M, int N, int K, int accumulate,
                          int pad) {
    GemmCase g = {
        .trans_a = trans_a, .trans_b = trans_b, .M = M, .N = N, .K = K, .accumulate = accumulate};
    int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    g.lda = a_cols + pad, g.ldb = b_cols + pad, g.ldc = N + pad;
    g.A = padded_matrix(rng, a_rows, a_cols, g.lda, (real)NAN);
    g.B = padded_matrix(rng, b_rows, b_cols, g.ldb, (real)NAN);
    g.C = padded_matrix(rng, M, N, g.ldc, SENTINEL);
    if (!accumulate) /* C is write-only: NaN there must not leak into the result */
        for (long i = 0; i < (long)M * g.ldc; i++)
            if (i % g.ldc < N) g.C[i] = (real)NAN;
    g.c_size = (long)M * g.ldc;
    g.C_reference = malloc((size_t)(g.c_size ? g.c_size : 1) * sizeof(real));
    memcpy(g.C_reference, g.C, (size_t)g.c_size * sizeof(real));
    return g;
}

static void free_case(GemmCase *g) {
    free(g->A);
    free(g->B);
    free(g->C);
    free(g->C_reference);
}

/* Runs gemm and gemm_reference on the case and checks every element against the bound above,
 * and that the padding of C is untouched. */
static void check_case(GemmCase *g) {
    real *C_before = malloc((size_t)(g->c_size ? g->c_size : 1) * sizeof(real));
    memcpy(C_before, g->C, (size_t)g->c_size * sizeof(real));
    gemm(g->trans_a, g->trans_b, g->M, g->N, g->K, g->A, g->lda, g->B, g->ldb, g->C, g->ldc,
         g->accumulate);
    gemm_reference(g->trans_a, g->trans_b, g->M, g->N, g->K, g->A, g->lda, g->B, g->ldb,
                   g->C_reference, g->ldc, g->accumulate);
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < g->ldc; j++) {
            long at = (long)i * g->ldc + j;
            if (j >= g->N) {
                if (g->C[at] != SENTINEL)
                    fail_msg("gemm %dx%dx%d: wrote into the padding of C at (%d, %d)", g->M, g->N,
                             g->K, i, j);
                continue;
            }
            double magnitude = g->accumulate ? fabs((double)C_before[at]) : 0;
            for (int k = 0; k < g->K; k++) {
                real a = g->trans_a ? g->A[(long)k * g->lda + i] : g->A[(long)i * g->lda + k];
                real b = g->trans_b ? g->B[(long)j * g->ldb + k] : g->B[(long)k * g->ldb + j];
                magnitude += fabs((double)a * b);
            }
            double bound = 2.0 * (g->K + 2) * UNIT_ROUNDOFF * magnitude;
            double err = fabs((double)g->C[at] - g->C_reference[at]);
            if (!(err <= bound))
                fail_msg("gemm trans_a=%d trans_b=%d %dx%dx%d accumulate=%d: C(%d, %d) = %.9g, "
                         "reference %.9g, error %.3g > bound %.3g",
                         g->trans_a, g->trans_b, g->M, g->N, g->K, g->accumulate, i, j,
                         (double)g->C[at], (double)g->C_reference[at], err, bound);
        }
    free(C_before);
}

/* (M, N, K): ones, primes, sizes around and beyond the block sizes (MR 8, or 6 without AVX-512,
 * NR 32 or 16, MC 96, KC 512, NC 2048), so every edge-tile and multi-block path runs; then the
 * shape classes of the models, cut down: attention's head products (64 x 256 x 32, 64 x 32 x 256),
 * a linear layer's forward and backward (rows x 128 x 128, and K = 1100 rows for dW = dy^T x, three
 * k-blocks). A row-major A is read in place except for the ragged last micro-panel of each A block
 * (M = 97, 129, 300 leave 1, 1 and 4 rows there; 64 none), a transposed A is packed: both kinds run
 * in each of the four transpose combinations. */
static const int gemm_shapes[][3] = {
    {1, 1, 1},    {1, 7, 1},    {7, 1, 5},     {1, 1, 9},      {7, 13, 5},      {8, 32, 3},
    {5, 31, 17},  {13, 33, 2},  {97, 65, 31},  {129, 65, 257}, {300, 200, 100}, {13, 40, 600},
    {7, 2100, 3}, {2, 3, 1100}, {64, 256, 32}, {64, 32, 256},  {131, 128, 64},  {40, 24, 1100},
};
enum { N_GEMM_SHAPES = sizeof gemm_shapes / sizeof gemm_shapes[0] };

static void gemm_matches_reference_for_every_shape_and_transpose(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 1);
    for (int s = 0; s < N_GEMM_SHAPES; s++)
        for (int trans = 0; trans < 4; trans++) {
            const int *mnk = gemm_shapes[s];
            GemmCase g = make_case(&rng, trans & 1, trans >> 1, mnk[0], mnk[1], mnk[2], 0, 0);
            check_case(&g);
            free_case(&g);
        }
}

static void gemm_accumulates_into_c_with_padded_leading_dimensions(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 2);
    for (int s = 0; s < N_GEMM_SHAPES; s++)
        for (int trans = 0; trans < 4; trans++)
            for (int accumulate = 0; accumulate <= 1; accumulate++) {
                const int *mnk = gemm_shapes[s];
                if ((long)mnk[0] * mnk[1] * mnk[2] > 300000) continue; /* keep valgrind quick */
                GemmCase g =
                    make_case(&rng, trans & 1, trans >> 1, mnk[0], mnk[1], mnk[2], accumulate, 3);
                check_case(&g);
                free_case(&g);
            }
}

/* Products at most one vector wide (N <= 16 floats with AVX-512, 8 doubles) take gemm's narrow
 * 12-row tile, wider ones the 8 x 32 (6 x 32 without AVX-512) tile: N = 1, 8, 15, 16, 17 lies on
 * both sides of the switch in float32 and float64 and makes ragged and full narrow tiles. M = 1,
 * 13, 37, 131 are not multiples of 12 or 8 (a ragged last micro-panel, in place or packed); 131
 * rows make two A blocks; K = 600 takes two k-blocks, so accumulation into C happens inside gemm
 * too. Every transpose form, overwrite and accumulate, padded leading dimensions; the bound is the
 * one at the top of the file. */
static void gemm_narrow_products_match_reference(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 6);
    const int ns[] = {1, 8, 15, 16, 17}, ms[] = {1, 13, 37, 131}, ks[] = {1, 16, 600};
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 4; m++)
            for (int k = 0; k < 3; k++)
                for (int trans = 0; trans < 4; trans++)
                    for (int accumulate = 0; accumulate <= 1; accumulate++) {
                        GemmCase g = make_case(&rng, trans & 1, trans >> 1, ms[m], ns[n], ks[k],
                                               accumulate, accumulate ? 3 : 0);
                        check_case(&g);
                        free_case(&g);
                    }
}

/* B stored as B (K x N) or as B^T (N x K) must give the same bits: packing only copies, and the
 * two layouts take different packing code (a row-by-row copy, a transpose - with AVX-512 floats
 * in 16 x 16 register blocks, the k's past the last whole block and ragged panels by the plain
 * loop) into the same panels for the same kernel. So this compares exactly, no tolerance; the
 * reference check of the other tests says the common result is right. K = 15, 16, 17, 31, 33
 * and 600 (a second k-block at k0 = 512) put the block boundaries everywhere; N = 16 is one
 * narrow panel, 48 and 65 end on a ragged wide panel; padded leading dimensions hold NaN, which
 * must not be read. Both transposes of A, overwrite and accumulate. */
static void gemm_gives_the_same_bits_whichever_way_b_is_stored(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 7);
    const int ns[] = {16, 32, 48, 65, 200}, ks[] = {1, 15, 16, 17, 31, 33, 600};
    for (int n = 0; n < 5; n++)
        for (int k = 0; k < 7; k++)
            for (int case_index = 0; case_index < 4; case_index++) {
                int trans_a = case_index & 1, accumulate = case_index >> 1, M = 19;
                int N = ns[n], K = ks[k];
                GemmCase g = make_case(&rng, trans_a, 1, M, N, K, accumulate, 3); /* B^T */
                real *B = malloc((size_t)K * N * sizeof(real));                   /* B, K x N */
                for (int j = 0; j < N; j++)
                    for (int p = 0; p < K; p++) B[(long)p * N + j] = g.B[(long)j * g.ldb + p];
                memcpy(g.C_reference, g.C, (size_t)g.c_size * sizeof(real));
                gemm(trans_a, 1, M, N, K, g.A, g.lda, g.B, g.ldb, g.C, g.ldc, accumulate);
                gemm(trans_a, 0, M, N, K, g.A, g.lda, B, N, g.C_reference, g.ldc, accumulate);
                if (memcmp(g.C, g.C_reference, (size_t)g.c_size * sizeof(real)) != 0)
                    fail_msg("gemm trans_a=%d %dx%dx%d accumulate=%d: B^T and B differ", trans_a, M,
                             N, K, accumulate);
                free(B);
                free_case(&g);
            }
}

/* gemm_packed on a part of a B packed once gives what gemm gives on that part, bit for bit: the
 * same packed values, kernels and order of sums. Parts: columns from 0 and from one and two panel
 * widths in (j0 a multiple of b.nr), rows from 0 and from inside (k0 = 0, 5, 300), narrow and
 * wide packings (B's N = 16 and 8 pack narrow in float32), ragged last panels, K past one k-block
 * (KC = 512), A transposed or not, overwrite and accumulate. B's padding is NaN: never read. */
static void gemm_packed_matches_gemm_on_each_part(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 12);
    const int b_shapes[][2] = {{8, 40}, {16, 300}, {100, 37}, {70, 700}, {256, 32}}; /* N, K */
    for (int s = 0; s < 5; s++)
        for (int trans_b = 0; trans_b < 2; trans_b++) {
            int BN = b_shapes[s][0], BK = b_shapes[s][1];
            int ldb = (trans_b ? BK : BN) + 3;
            real *B = padded_matrix(&rng, trans_b ? BN : BK, trans_b ? BK : BN, ldb, (real)NAN);
            real *buffer = malloc((size_t)gemm_packed_b_size(BN, BK) * sizeof(real));
            GemmPackedB packed = gemm_pack_b(trans_b, BN, BK, B, ldb, buffer);
            assert_int_equal(packed.N, BN), assert_int_equal(packed.K, BK);
            for (int part = 0; part < 3; part++)
                for (int k_part = 0; k_part < 3; k_part++) {
                    int j0 = part * packed.nr, k0 = (int[]){0, 5, 300}[k_part];
                    if (j0 >= BN || k0 >= BK) continue;
                    int N = BN - j0 - (part == 1), K = BK - k0 - (k_part == 1);
                    if (N < 1 || K < 1) continue;
                    for (int mode = 0; mode < 4; mode++) { /* trans_a, accumulate */
                        int trans_a = mode & 1, accumulate = mode >> 1, M = 37,
                            lda = (trans_a ? M : K) + 2;
                        real *A =
                            padded_matrix(&rng, trans_a ? K : M, trans_a ? M : K, lda, (real)NAN);
                        real *C = padded_matrix(&rng, M, N, N + 1, SENTINEL);
                        real *C_gemm = malloc((size_t)M * (N + 1) * sizeof(real));
                        memcpy(C_gemm, C, (size_t)M * (N + 1) * sizeof(real));
                        const real *B_part =
                            trans_b ? B + (long)j0 * ldb + k0 : B + (long)k0 * ldb + j0;
                        gemm(trans_a, trans_b, M, N, K, A, lda, B_part, ldb, C_gemm, N + 1,
                             accumulate);
                        gemm_packed(trans_a, M, N, K, A, lda, &packed, j0, k0, C, N + 1,
                                    accumulate);
                        assert_memory_equal(C, C_gemm, (size_t)M * (N + 1) * sizeof(real));
                        free(A), free(C), free(C_gemm);
                    }
                }
            free(B), free(buffer);
        }
}

/* gemm_bias adds the bias as it stores each tile, after the element's whole sum: the same bits
 * as gemm followed by a pass adding the bias, on every shape class (one and several k-blocks,
 * narrow and wide tiles, ragged edges, both layouts of B, K = 0: C = the bias). */
static void gemm_bias_matches_gemm_then_bias_bit_for_bit(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 13);
    const int shapes[][3] = {{1, 1, 1},  {37, 8, 5},      {131, 17, 600}, {64, 256, 32},
                             {9, 40, 0}, {200, 70, 1100}, {16, 16, 16}};
    for (int s = 0; s < 7; s++)
        for (int trans_b = 0; trans_b < 2; trans_b++) {
            int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
            int lda = K + 1, ldb = (trans_b ? K : N) + 2, ldc = N + 3;
            real *A = padded_matrix(&rng, M, K, lda, (real)NAN);
            real *B = padded_matrix(&rng, trans_b ? N : K, trans_b ? K : N, ldb, (real)NAN);
            real *bias = padded_matrix(&rng, 1, N, N, 0);
            real *C = padded_matrix(&rng, M, N, ldc, SENTINEL);
            real *C_then = malloc((size_t)M * ldc * sizeof(real));
            memcpy(C_then, C, (size_t)M * ldc * sizeof(real));
            gemm_bias(trans_b, M, N, K, A, lda, B, ldb, bias, C, ldc);
            gemm(0, trans_b, M, N, K, A, lda, B, ldb, C_then, ldc, 0);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) C_then[(long)i * ldc + j] += bias[j];
            assert_memory_equal(C, C_then, (size_t)M * ldc * sizeof(real));
            free(A), free(B), free(bias), free(C), free(C_then);
        }
}

/* A part outside the packed B, or starting between panels, fails with one line. */
static void gemm_packed_refuses_a_part_it_does_not_hold(void **state) {
    (void)state;
    real B[16 * 40] = {0}, C[64] = {0}, A[64] = {0};
    real *buffer = malloc((size_t)gemm_packed_b_size(40, 16) * sizeof(real));
    GemmPackedB packed = gemm_pack_b(0, 40, 16, B, 40, buffer);
    const int bad[][4] = {
        {1, 4, 0, 4}, {0, 41, 0, 4}, {0, 4, 13, 4}, {-packed.nr, 4, 0, 4}}; /* j0 N k0 K */
    for (int c = 0; c < 4; c++) {
        EXPECT_FAIL(
            gemm_packed(0, 2, bad[c][1], bad[c][3], A, 4, &packed, bad[c][0], bad[c][2], C, 64, 0),
            "gemm_packed: columns");
        assert_null(strchr(cpool_last_error(), '\n'));
    }
    free(buffer);
}

static void gemm_with_an_empty_dimension(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 3);
    /* K = 0: C = 0 (the empty sum), or C unchanged when accumulating. M or N = 0: nothing. */
    int shapes[][3] = {{0, 5, 3}, {4, 0, 3}, {4, 5, 0}, {0, 0, 0}};
    for (int s = 0; s < 4; s++)
        for (int accumulate = 0; accumulate <= 1; accumulate++) {
            GemmCase g =
                make_case(&rng, 0, 0, shapes[s][0], shapes[s][1], shapes[s][2], accumulate, 2);
            check_case(&g);
            free_case(&g);
        }
    real C[2] = {7, 8};
    gemm(0, 0, 1, 2, 0, NULL, 1, NULL, 2, C, 2, 0);
    assert_true(C[0] == 0 && C[1] == 0);
}

/* One product at 1, 2 and 3 threads, for every transpose combination: bit-identical results.
 * 151 and 601 rows make A blocks with a ragged last micro-panel, 1030 = 2 KC + 6 three
 * k-blocks, N = 100 takes the wide tile and N = 16 the narrow one (in float32; N = 16 is two
 * wide-tile panels of doubles), and 2 x 151 x 100 x 1030 = 31 MFLOP, 2 x 601 x 16 x 1030 = 20
 * MFLOP are far above the size at which gemm starts threads. */
static void gemm_result_does_not_depend_on_the_thread_count(void **state) {
    (void)state;
#ifdef _OPENMP
    Rng rng;
    rng_seed(&rng, 4);
    const int shapes[][3] = {{151, 100, 1030}, {601, 16, 1030}};
    int threads = omp_get_max_threads();
    for (int case_index = 0; case_index < 8; case_index++) {
        int trans = case_index % 4;
        int M = shapes[case_index / 4][0], N = shapes[case_index / 4][1],
            K = shapes[case_index / 4][2];
        GemmCase g = make_case(&rng, trans & 1, trans >> 1, M, N, K, 0, 0);
        real *C[3];
        for (int t = 0; t < 3; t++) {
            C[t] = malloc((size_t)g.c_size * sizeof(real));
            omp_set_num_threads(t + 1);
            gemm(g.trans_a, g.trans_b, M, N, K, g.A, g.lda, g.B, g.ldb, C[t], g.ldc, 0);
        }
        omp_set_num_threads(threads);
        for (int t = 1; t < 3; t++)
            if (memcmp(C[0], C[t], (size_t)g.c_size * sizeof(real)) != 0)
                fail_msg("gemm trans_a=%d trans_b=%d %dx%dx%d: %d threads differ from 1", g.trans_a,
                         g.trans_b, M, N, K, t + 1);
        omp_set_num_threads(2);
        check_case(&g); /* and the 2-thread result is right */
        omp_set_num_threads(threads);
        for (int t = 0; t < 3; t++) free(C[t]);
        free_case(&g);
    }
#endif
}

/* gemm keeps its packing buffer between calls and grows it: a small call, a large one, a small
 * one again, then after gemm_free_workspace() (the next call allocates afresh) are all right. */
static void gemm_is_right_as_its_workspace_grows_and_is_freed(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 6);
    const int shapes[][3] = {{5, 7, 3}, {70, 300, 600}, {9, 33, 17}, {0, 0, 0}, {31, 40, 50}};
    for (int s = 0; s < 5; s++) {
        if (shapes[s][0] == 0) {
            gemm_free_workspace();
            gemm_free_workspace(); /* twice is harmless */
            continue;
        }
        GemmCase g = make_case(&rng, s & 1, 0, shapes[s][0], shapes[s][1], shapes[s][2], 0, 1);
        check_case(&g);
        free_case(&g);
    }
}

/* Each thread of a caller's parallel region runs its own gemm: every product must still be
 * complete (gemm's loops must not be shared out among the caller's threads) and bit-identical to
 * the same call made alone, which check_case then compares with the reference. */
static void gemm_called_from_parallel_threads_computes_each_whole_product(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 5);
    enum { CALLS = 4 };
    GemmCase cases[CALLS];
    real *from_threads[CALLS];
    for (int c = 0; c < CALLS; c++) {
        cases[c] = make_case(&rng, c & 1, c >> 1, 150, 70, 300, 0, 1);
        from_threads[c] = malloc((size_t)cases[c].c_size * sizeof(real));
        memcpy(from_threads[c], cases[c].C, (size_t)cases[c].c_size * sizeof(real));
    }
#pragma omp parallel for num_threads(2) schedule(static)
    for (int c = 0; c < CALLS; c++) {
        const GemmCase *g = &cases[c];
        gemm(g->trans_a, g->trans_b, g->M, g->N, g->K, g->A, g->lda, g->B, g->ldb, from_threads[c],
             g->ldc, 0);
    }
    for (int c = 0; c < CALLS; c++) {
        check_case(&cases[c]);
        assert_memory_equal(from_threads[c], cases[c].C, (size_t)cases[c].c_size * sizeof(real));
        free(from_threads[c]);
        free_case(&cases[c]);
    }
}

/* --- op_matmul ------------------------------------------------------------------------------- */

static Tensor *tensor_of(int ndim, const int *shape, const real *values, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    memcpy(t->data, values, (size_t)t->size * sizeof(real));
    return t;
}

/* A = [[1, 2, 3], [4, 5, 6]], B = [[7, 8], [9, 10], [11, 12]]: A B = [[58, 64], [139, 154]]. */
static const real A23[] = {1, 2, 3, 4, 5, 6}, A23_T[] = {1, 4, 2, 5, 3, 6};
static const real B32[] = {7, 8, 9, 10, 11, 12}, B32_T[] = {7, 9, 11, 8, 10, 12};
static const double AB[] = {58, 64, 139, 154};

static void matmul_of_hand_values_in_all_four_transpose_combinations(void **state) {
    (void)state;
    for (int trans = 0; trans < 4; trans++) {
        int ta = trans & 1, tb = trans >> 1;
        Tape *tape = tape_create();
        Tensor *a = tensor_of(2, ta ? (int[]){3, 2} : (int[]){2, 3}, ta ? A23_T : A23, 0);
        Tensor *b = tensor_of(2, tb ? (int[]){2, 3} : (int[]){3, 2}, tb ? B32_T : B32, 0);
        Tensor *c = op_matmul(tape, a, b, ta, tb);
        assert_int_equal(c->ndim, 2);
        assert_int_equal(c->shape[0], 2);
        assert_int_equal(c->shape[1], 2);
        assert_close(AB, c->data, 4, 0, ta ? (tb ? "A^T B^T" : "A^T B") : (tb ? "A B^T" : "A B"));
        tape_free(tape);
        tensor_free(a);
        tensor_free(b);
    }
}

static void batched_matmul_multiplies_each_item(void **state) {
    (void)state;
    Tape *tape = tape_create();
    /* Item 0 is A23, item 1 is -A23; B is batched too: item 0 is B32, item 1 is 2 B32. */
    real a_values[12], b_values[12];
    for (int i = 0; i < 6; i++) a_values[i] = A23[i], a_values[6 + i] = -A23[i];
    for (int i = 0; i < 6; i++) b_values[i] = B32[i], b_values[6 + i] = 2 * B32[i];
    Tensor *a = tensor_of(3, (int[]){2, 2, 3}, a_values, 0);
    Tensor *b = tensor_of(3, (int[]){2, 3, 2}, b_values, 0);
    Tensor *c = op_matmul(tape, a, b, 0, 0);
    assert_int_equal(c->ndim, 3);
    assert_int_equal(c->shape[0], 2);
    double expected[8] = {58, 64, 139, 154, -116, -128, -278, -308};
    assert_close(expected, c->data, 8, 0, "batched A B");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
}

static void a_2d_operand_is_shared_by_every_batch_item(void **state) {
    (void)state;
    Tape *tape = tape_create();
    real a_values[12], b_values[12];
    for (int i = 0; i < 6; i++) a_values[i] = A23[i], a_values[6 + i] = -A23[i];
    for (int i = 0; i < 6; i++) b_values[i] = B32[i], b_values[6 + i] = 2 * B32[i];
    /* B shared: (2, 2, 3) x (3, 2) -> (2, 2, 2); also with A transposed (the non-flattened path).
     */
    Tensor *a = tensor_of(3, (int[]){2, 2, 3}, a_values, 0),
           *b = tensor_of(2, (int[]){3, 2}, B32, 0);
    double b_shared[8] = {58, 64, 139, 154, -58, -64, -139, -154};
    assert_close(b_shared, op_matmul(tape, a, b, 0, 0)->data, 8, 0, "(2, 2, 3) x (3, 2)");
    real a_t_values[12];
    for (int i = 0; i < 6; i++) a_t_values[i] = A23_T[i], a_t_values[6 + i] = -A23_T[i];
    Tensor *a_t = tensor_of(3, (int[]){2, 3, 2}, a_t_values, 0);
    Tensor *c = op_matmul(tape, a_t, b, 1, 0);
    assert_int_equal(c->ndim, 3);
    assert_int_equal(c->shape[1], 2);
    assert_close(b_shared, c->data, 8, 0, "(2, 3, 2)^T x (3, 2)");
    /* A shared: (2, 3) x (2, 3, 2) -> (2, 2, 2). */
    Tensor *a2 = tensor_of(2, (int[]){2, 3}, A23, 0),
           *b3 = tensor_of(3, (int[]){2, 3, 2}, b_values, 0);
    double a_shared[8] = {58, 64, 139, 154, 116, 128, 278, 308};
    c = op_matmul(tape, a2, b3, 0, 0);
    assert_int_equal(c->ndim, 3);
    assert_close(a_shared, c->data, 8, 0, "(2, 3) x (2, 3, 2)");
    tape_free(tape);
    tensor_free(a), tensor_free(b), tensor_free(a_t), tensor_free(a2), tensor_free(b3);
}

static void matmul_output_shapes_follow_the_batched_operand(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = tensor_create(4, (int[]){2, 3, 4, 5}, 0),
           *b = tensor_create(4, (int[]){2, 3, 6, 5}, 0);
    Tensor *c = op_matmul(tape, a, b, 0, 1); /* (2, 3, 4, 5) x (2, 3, 6, 5)^T */
    char shape[64];
    assert_string_equal(TENSOR_SHAPE_STR(c, shape), "(2, 3, 4, 6)");
    Tensor *w = tensor_create(2, (int[]){7, 5}, 0);
    c = op_matmul(tape, a, w, 0, 1); /* a linear layer: x W^T */
    assert_string_equal(TENSOR_SHAPE_STR(c, shape), "(2, 3, 4, 7)");
    c = op_matmul(tape, w, a, 0, 1); /* (7, 5) x (2, 3, 4, 5)^T */
    assert_string_equal(TENSOR_SHAPE_STR(c, shape), "(2, 3, 7, 4)");
    Tensor *empty = tensor_create(3, (int[]){0, 4, 5}, 0);
    c = op_matmul(tape, empty, w, 0, 1);
    assert_string_equal(TENSOR_SHAPE_STR(c, shape), "(0, 4, 7)");
    tape_free(tape);
    tensor_free(a), tensor_free(b), tensor_free(w), tensor_free(empty);
}

/* With upstream gradient R = 1 everywhere: dA = R B^T has every row equal to B's row sums
 * (15, 19, 23), dB = A^T R has every column equal to A's column sums (5, 7, 9). */
static void matmul_backward_gives_hand_computed_gradients(void **state) {
    (void)state;
    const real ones[4] = {1, 1, 1, 1};
    for (int trans = 0; trans < 4; trans++) {
        int ta = trans & 1, tb = trans >> 1;
        Tape *tape = tape_create();
        Tensor *a = tensor_of(2, ta ? (int[]){3, 2} : (int[]){2, 3}, ta ? A23_T : A23, 1);
        Tensor *b = tensor_of(2, tb ? (int[]){2, 3} : (int[]){3, 2}, tb ? B32_T : B32, 1);
        tape_backward_from(tape, op_matmul(tape, a, b, ta, tb), ones);
        double da[6] = {15, 19, 23, 15, 19, 23}, da_t[6] = {15, 15, 19, 19, 23, 23};
        double db[6] = {5, 5, 7, 7, 9, 9}, db_t[6] = {5, 7, 9, 5, 7, 9};
        assert_close(ta ? da_t : da, a->grad, 6, 0, "dA");
        assert_close(tb ? db_t : db, b->grad, 6, 0, "dB");
        tape_free(tape);
        tensor_free(a);
        tensor_free(b);
    }
}

/* C = A B with a shared B and R = C's own layout of ones: dB sums A^T R over both items. */
static void shared_operand_gradient_is_summed_over_the_batch(void **state) {
    (void)state;
    const real ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    real a_values[12];
    for (int i = 0; i < 6; i++) a_values[i] = A23[i], a_values[6 + i] = 2 * A23[i];
    for (int ta = 0; ta <= 1; ta++) { /* flattened (ta 0) and per-item (ta 1) paths */
        Tape *tape = tape_create();
        real stored[12];
        for (int n = 0; n < 2; n++)
            for (int i = 0; i < 2; i++)
                for (int k = 0; k < 3; k++)
                    stored[n * 6 + (ta ? k * 2 + i : i * 3 + k)] = a_values[n * 6 + i * 3 + k];
        Tensor *a = tensor_of(3, ta ? (int[]){2, 3, 2} : (int[]){2, 2, 3}, stored, 1);
        Tensor *b = tensor_of(2, (int[]){3, 2}, B32, 1);
        tape_backward_from(tape, op_matmul(tape, a, b, ta, 0), ones);
        /* dB[k][j] = sum over items and rows of A = 3 x A23's column sums (5, 7, 9). */
        double db[6] = {15, 15, 21, 21, 27, 27};
        assert_close(db, b->grad, 6, 0, "shared dB");
        double da[12] = {15, 19, 23, 15, 19, 23, 15, 19, 23, 15, 19, 23};
        double da_t[12] = {15, 15, 19, 19, 23, 23, 15, 15, 19, 19, 23, 23};
        assert_close(ta ? da_t : da, a->grad, 12, 0, "batched dA");
        tape_free(tape);
        tensor_free(a);
        tensor_free(b);
    }
}

/* C = X X^T: X is both operands, so it receives both gradients, dX = R X + R^T X. */
static void operand_used_twice_gets_both_gradients(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, A23, 1);
    const real r[4] = {1, 2, 3, 4}; /* R = [[1, 2], [3, 4]] */
    tape_backward_from(tape, op_matmul(tape, x, x, 0, 1), r);
    /* R + R^T = [[2, 5], [5, 8]]; (R + R^T) X = [[22, 29, 36], [37, 50, 63]]. */
    double expected[6] = {22, 29, 36, 37, 50, 63};
    assert_close(expected, x->grad, 6, 0, "d(X X^T)/dX");
    tape_free(tape);
    tensor_free(x);
}

static void backward_adds_into_existing_gradients_and_skips_constants(void **state) {
    (void)state;
    const real ones[4] = {1, 1, 1, 1};
    Tape *tape = tape_create();
    Tensor *a = tensor_of(2, (int[]){2, 3}, A23, 1), *b = tensor_of(2, (int[]){3, 2}, B32, 0);
    tape_backward_from(tape, op_matmul(tape, a, b, 0, 0), ones);
    tape_reset(tape);
    tape_backward_from(tape, op_matmul(tape, a, b, 0, 0), ones);
    double twice[6] = {30, 38, 46, 30, 38, 46};
    assert_close(twice, a->grad, 6, 0, "dA after two backward passes");
    assert_null(b->grad);
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
}

static void bad_shapes_fail_with_both_shapes(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *v = tensor_create(1, (int[]){3}, 0), *m23 = tensor_create(2, (int[]){2, 3}, 0);
    Tensor *m45 = tensor_create(2, (int[]){4, 5}, 0), *m34 = tensor_create(2, (int[]){3, 4}, 0);
    Tensor *t234 = tensor_create(3, (int[]){2, 3, 4}, 0),
           *t345 = tensor_create(3, (int[]){3, 4, 5}, 0);
    Tensor *q2345 = tensor_create(4, (int[]){2, 3, 4, 5}, 0);
    EXPECT_FAIL(op_matmul(tape, v, m34, 0, 0),
                "op_matmul: both operands need at least 2 dimensions: a (3) x b (3, 4)");
    EXPECT_FAIL(op_matmul(tape, m23, v, 0, 0), "at least 2 dimensions: a (2, 3) x b (3)");
    EXPECT_FAIL(op_matmul(tape, m23, m45, 0, 0),
                "op_matmul: inner dimensions differ: a (2, 3) x b (4, 5)");
    EXPECT_FAIL(op_matmul(tape, m23, m34, 1, 0),
                "op_matmul: inner dimensions differ: a (2, 3) transposed x b (3, 4)");
    EXPECT_FAIL(op_matmul(tape, m23, m34, 0, 1),
                "op_matmul: inner dimensions differ: a (2, 3) x b (3, 4) transposed");
    EXPECT_FAIL(op_matmul(tape, t234, t345, 0, 0),
                "op_matmul: batch dimensions differ: a (2, 3, 4) x b (3, 4, 5)");
    EXPECT_FAIL(op_matmul(tape, t234, q2345, 0, 0),
                "op_matmul: batch dimensions differ: a (2, 3, 4) x b (2, 3, 4, 5)");
    tape_free(tape);
    tensor_free(v), tensor_free(m23), tensor_free(m45), tensor_free(m34);
    tensor_free(t234), tensor_free(t345), tensor_free(q2345);
}

/* --- op_linear ------------------------------------------------------------------------------- */

/* What op_linear replaces: x reshaped to (rows, in), times W^T, plus b, reshaped to (..., out). */
static Tensor *linear_by_parts(Tape *tape, Tensor *x, Tensor *w, Tensor *b) {
    int in = w->shape[1], out = w->shape[0], rows = (int)(x->size / in);
    Tensor *y = op_matmul(tape, op_reshape(tape, x, 2, (int[]){rows, in}), w, 0, 1);
    if (b) y = op_add(tape, y, b);
    int shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = out;
    return op_reshape(tape, y, x->ndim, shape);
}

static Tensor *random_tensor(Rng *rng, int ndim, const int *shape, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, -1, 1);
    return t;
}

/* y, dx, dW and db of one backward from the upstream gradient dy, copied out. */
typedef struct LinearResult {
    real *y, *dx, *dw, *db;
} LinearResult;

static real *copy_of(const real *values, long n) {
    real *copy = malloc((size_t)(n ? n : 1) * sizeof(real));
    if (n) memcpy(copy, values, (size_t)n * sizeof(real));
    return copy;
}

static LinearResult run_linear(int by_parts, Tensor *x, Tensor *w, Tensor *b, const real *dy) {
    Tape *tape = tape_create();
    Tensor *y = by_parts ? linear_by_parts(tape, x, w, b) : op_linear(tape, x, w, b);
    tape_backward_from(tape, y, dy);
    LinearResult r = {copy_of(y->data, y->size), copy_of(x->grad, x->size),
                      copy_of(w->grad, w->size), b ? copy_of(b->grad, b->size) : NULL};
    tensor_zero_grad(x), tensor_zero_grad(w);
    if (b) tensor_zero_grad(b);
    tape_free(tape);
    return r;
}

static void free_linear_result(LinearResult *r) {
    free(r->y), free(r->dx), free(r->dw), free(r->db);
}

/* op_linear makes the same gemm calls as matmul (forward and both backward products), adds b to
 * the product as op_add does and sums db in double in the same row order: y and all three
 * gradients must match bit for bit. in = 1100 takes three k-blocks in gemm. */
static void linear_matches_matmul_plus_bias_bit_for_bit(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 7);
    /* x's shape (in last), out, with a bias or not */
    const struct {
        int ndim, shape[3], out, bias;
    } cases[] = {{1, {5}, 3, 1},         {2, {3, 7}, 33, 1},   {3, {2, 3, 40}, 70, 1},
                 {3, {2, 3, 40}, 70, 0}, {2, {13, 512}, 9, 1}, {2, {7, 1100}, 5, 1}};
    for (int c = 0; c < 6; c++) {
        int in = cases[c].shape[cases[c].ndim - 1], out = cases[c].out;
        Tensor *x = random_tensor(&rng, cases[c].ndim, cases[c].shape, 1);
        Tensor *w = random_tensor(&rng, 2, (int[]){out, in}, 1);
        Tensor *b = cases[c].bias ? random_tensor(&rng, 1, (int[]){out}, 1) : NULL;
        long y_size = x->size / in * out;
        real *dy = malloc((size_t)y_size * sizeof(real));
        for (long i = 0; i < y_size; i++) dy[i] = (real)rng_range(&rng, -1, 1);
        LinearResult fused = run_linear(0, x, w, b, dy), parts = run_linear(1, x, w, b, dy);
        assert_memory_equal(fused.y, parts.y, (size_t)y_size * sizeof(real));
        assert_memory_equal(fused.dx, parts.dx, (size_t)x->size * sizeof(real));
        assert_memory_equal(fused.dw, parts.dw, (size_t)w->size * sizeof(real));
        if (b) assert_memory_equal(fused.db, parts.db, (size_t)out * sizeof(real));
        free_linear_result(&fused), free_linear_result(&parts);
        free(dy);
        tensor_free(x), tensor_free(w), tensor_free(b);
    }
}

/* No rows: y (0, out). No inputs (in = 0): every row of y is b, and db sums dy over the rows. */
static void linear_with_an_empty_dimension(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *w = tensor_create(2, (int[]){3, 4}, 1), *x = tensor_create(2, (int[]){0, 4}, 1);
    char shape[64];
    assert_string_equal(TENSOR_SHAPE_STR(op_linear(tape, x, w, NULL), shape), "(0, 3)");
    Tensor *w0 = tensor_create(2, (int[]){3, 0}, 1), *x0 = tensor_create(2, (int[]){2, 0}, 1);
    Tensor *b = tensor_of(1, (int[]){3}, (real[]){1, 2, 3}, 1);
    Tensor *y = op_linear(tape, x0, w0, b);
    double expected[6] = {1, 2, 3, 1, 2, 3};
    assert_close(expected, y->data, 6, 0, "y = b in every row");
    tape_backward_from(tape, y, (real[]){1, 2, 3, 10, 20, 30});
    double db[3] = {11, 22, 33};
    assert_close(db, b->grad, 3, 0, "db = column sums of dy");
    tape_free(tape);
    tensor_free(w), tensor_free(x), tensor_free(w0), tensor_free(x0), tensor_free(b);
}

static void linear_bad_shapes_fail_naming_all_three(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(2, (int[]){2, 3}, 0), *w = tensor_create(2, (int[]){5, 3}, 0);
    Tensor *w1 = tensor_create(1, (int[]){3}, 0), *w4 = tensor_create(2, (int[]){5, 4}, 0);
    Tensor *b = tensor_create(1, (int[]){5}, 0), *b4 = tensor_create(1, (int[]){4}, 0);
    EXPECT_FAIL(op_linear(tape, x, w1, NULL),
                "op_linear: weight must be (out, in): x (2, 3), weight (3), bias none");
    EXPECT_FAIL(
        op_linear(tape, x, w4, b),
        "op_linear: x must be (..., in) with weight's in: x (2, 3), weight (5, 4), bias (5)");
    EXPECT_FAIL(op_linear(tape, x, w, b4),
                "op_linear: bias must be (out): x (2, 3), weight (5, 3), bias (4)");
    tape_free(tape);
    tensor_free(x), tensor_free(w), tensor_free(w1), tensor_free(w4), tensor_free(b);
    tensor_free(b4);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gemm_matches_reference_for_every_shape_and_transpose),
        cmocka_unit_test(gemm_accumulates_into_c_with_padded_leading_dimensions),
        cmocka_unit_test(gemm_narrow_products_match_reference),
        cmocka_unit_test(gemm_gives_the_same_bits_whichever_way_b_is_stored),
        cmocka_unit_test(gemm_packed_matches_gemm_on_each_part),
        cmocka_unit_test(gemm_packed_refuses_a_part_it_does_not_hold),
        cmocka_unit_test(gemm_bias_matches_gemm_then_bias_bit_for_bit),
        cmocka_unit_test(gemm_with_an_empty_dimension),
        cmocka_unit_test(gemm_result_does_not_depend_on_the_thread_count),
        cmocka_unit_test(gemm_is_right_as_its_workspace_grows_and_is_freed),
        cmocka_unit_test(gemm_called_from_parallel_threads_computes_each_whole_product),
        cmocka_unit_test(matmul_of_hand_values_in_all_four_transpose_combinations),
        cmocka_unit_test(batched_matmul_multiplies_each_item),
        cmocka_unit_test(a_2d_operand_is_shared_by_every_batch_item),
        cmocka_unit_test(matmul_output_shapes_follow_the_batched_operand),
        cmocka_unit_test(matmul_backward_gives_hand_computed_gradients),
        cmocka_unit_test(shared_operand_gradient_is_summed_over_the_batch),
        cmocka_unit_test(operand_used_twice_gets_both_gradients),
        cmocka_unit_test(backward_adds_into_existing_gradients_and_skips_constants),
        cmocka_unit_test(bad_shapes_fail_with_both_shapes),
        cmocka_unit_test(linear_matches_matmul_plus_bias_bit_for_bit),
        cmocka_unit_test(linear_with_an_empty_dimension),
        cmocka_unit_test(linear_bad_shapes_fail_naming_all_three),
    };
    return cmocka_run_group_tests_name("matmul (" REAL_NAME ")", tests, NULL, NULL);
}
