/* gemm.c - see gemm.h. A cache-blocked matrix multiply with packed panels and a register-blocked
 * micro-kernel, in the style of GotoBLAS / BLIS, written to be read.
 *
 * Why not the triple loop? C = A B does 2 M N K flops on only M K + K N + M N numbers, so each
 * number can be reused many times - but only if it is still close to the core when it is needed
 * again. The triple loop (gemm_reference below) streams a whole row of A and column of B from
 * memory for every single C element and runs at ~1 GFLOP/s. The blocked version keeps:
 *
 *   - a KC x NC block of B ("B panel")                  in the L3 cache (shared by all threads),
 *   - an MC x KC block of A ("A block")                 in the L2 cache (one per thread),
 *   - a KC x NR sliver of the B panel ("B micro-panel") in L2 and L1, reused by every row of
 *                                                       the A block before moving on,
 *   - an MR x NR tile of C (the accumulators)           in registers,
 *
 * and walks them with five loops around a micro-kernel:
 *
 *   for jc over N in steps of NC:                          C[:, jc:jc+NC]
 *     for pc over K in steps of KC:                        one k-block, in order
 *       pack B[pc:pc+KC, jc:jc+NC] -> B panel              (all threads share it)
 *       for ic over M in steps of MC:                      (threads split these blocks)
 *         pack A[ic:ic+MC, pc:pc+KC] -> A block            (or read A in place, see below)
 *         for jr over the panel in steps of NR:            one B micro-panel
 *           for ir over the block in steps of MR:          one A micro-panel
 *             tile = A micro-panel x B micro-panel         (MR x NR, KC products each)
 *             C[ic+ir.., jc+jr..] (+)= tile
 *
 *                          B panel: KC x NC, packed as micro-panels B0, B1, ... of KC x NR
 *                           <-NR->
 *                          +------+------+------+---
 *                          |      |      |      |       micro-panel Bj is stored k by k:
 *                       KC |  B0  |  B1  |  B2  | ...   b[p][0..NR-1] for p = 0 .. KC-1
 *                          |      |      |      |
 *                          +------+------+------+---
 *      <------ KC ----->
 *     +-----------------+  +------+------+------+---
 *  MR |       A0        |  | tile |      |      |       C block (MC x NC): the tile (i, j) is
 *     +-----------------+  +------+------+------+---    A micro-panel i times B micro-panel j,
 *  MR |       A1        |  |      |      |      |       sum over p of a[p][i] * b[p][j]
 *     +-----------------+  +------+------+------+---
 *     |       ...       |  |      |      |      |
 *
 *     A block: MC x KC, packed as micro-panels A0, A1, ... of MR x KC, stored k by k:
 *     a[p][0..MR-1] for p = 0 .. KC-1
 *
 * Packing copies each block once into exactly the order the micro-kernel reads it, so the kernel
 * streams two contiguous arrays whatever the transposes and leading dimensions were; it also pads
 * ragged edges with zeros, so the kernel always computes a full MR x NR tile and only the final
 * store looks at the true tile size. The transposes therefore live entirely in the packing
 * (the transposing kind, with AVX-512 floats, 16 x 16 blocks at a time in registers).
 *
 * One exception: a row-major A (not transposed) is read in place. Its MR rows are contiguous
 * along k, so the kernel can broadcast a(i, p) from A itself (row stride lda) as easily as from
 * a packed panel, and the packing it saves is the costly kind (a transpose, a scalar load and
 * store per element). That matters for the skinny products of the models, where N is small and
 * each packed A element is used only N / NR times: packing A was ~7% of a training step. Only
 * the ragged last micro-panel of an A block is still packed (reading past its end could leave A).
 *
 * The kernel writes a full tile straight from its registers into C; only ragged edge tiles go
 * through a small buffer. Packing buffers come from a per-thread workspace that lives as long as
 * the thread (see "Packing buffers"), and one thread runs no OpenMP region at all: at ~1 us per
 * call, the fresh buffers and the team start-up were a large share of the small products that
 * attention makes by the thousand. With these three changes the attention-sized products
 * (64 x 256 x 32 and the like) ran 10-50% faster on one thread and the 2048-row products of a
 * linear layer -5% to +15% (111 GFLOP/s at 512^3, 95% of a measured FMA-only loop).
 *
 * The micro-kernel holds the MR x NR tile in MR * NR / VL vector registers (VL = lanes per SIMD
 * register: 16 floats with AVX-512) and, for each p, does MR broadcasts of a[p][i], NR / VL loads
 * of b[p][..] and MR * NR / VL fused multiply-adds: with MR = 8 and NR = 2 VL that is 16 FMAs for
 * 10 loads, which keeps the FMA units busy, and the tile takes 16 of AVX-512's 32 registers. (MR
 * was 6, the classic height for 16 registers: with AVX-512, 8 made the attention-sized products
 * 6-10% and the 2048-row ones 2-5% faster, and 64-row blocks are whole tiles; 12 was slower
 * than both. With 16 registers (AVX2 and narrower) 8 x 16 would need every register for the
 * tile alone: it spilled, and the linear layers' products took 1.7x as long, so there MR stays 6,
 * 12 FMAs for 8 loads.) It is
 * written with GCC/Clang vector extensions (a `vreal` is VL reals that + and * act on lane by
 * lane), so both compilers keep the tile in registers; the plain-C loop it stands for is in the
 * comment above it. (That plain loop, with float tile[8][32], runs as fast under GCC -O3
 * -march=native, but Clang 14 keeps half the tile in memory and runs at half the speed.)
 *
 * Two tiles. The wide one above, MR x NR = 8 x 32 (AVX-512 floats), suits every product but the
 * narrowest: when N <= VL (16 floats), half its columns would be zero padding and half its FMAs
 * wasted. Four of the six products of fused attention are that shape (N = head dim = 16). gemm()
 * picks by N alone: N <= VL takes the narrow tile, MR_NARROW x NR_NARROW = 12 x 16 (one vector
 * wide), in 12 accumulator registers, with 12 broadcasts, 1 load and 12 FMAs per p. Everything else
 * - the five loops, packing (whose panel width is the tile's), reading A in place - is shared; the
 * Gemm struct carries the tile's mr x nr. attention_fwd_bwd_1024 (cpool bench) ran 18% faster on
 * one thread with it (13.9 -> 11.4 ms CPU).
 *
 * Determinism: every C element is summed in a fixed order - within a k-block the kernel adds the
 * KC products p = 0, 1, ... into its register, then the k-blocks are added into C in order - and
 * each tile is computed by exactly one thread. The blocking along K (KC) and the choice of tile
 * (by N) never depend on the thread count, so the result is bit-identical whatever
 * OMP_NUM_THREADS is. (Both tiles sum in that same order, so they even agree with each other.)
 *
 * Precision: as in BLAS, float products are summed in float (with FMA); the error bound is the
 * usual |error| <= ~K * eps * sum_k |a_ik| |b_kj| (tests/test_matmul.c checks exactly that). */
#include "gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "simd.h" /* vreal, VL lanes */
#include "util.h"

/* --- The block sizes (the vector type, vreal of VL lanes, is in simd.h) ------------------ */

enum {
#if defined(__AVX512F__)
    MR = 8, /* wide tile rows: 8 broadcasts of a per step; 16 accumulators of 32 registers */
#else
    MR = 6, /* 16 vector registers (AVX2, SSE, NEON): 12 accumulators, 2 of b, 1 broadcast */
#endif
    NV = 2,         /* wide tile width in vectors */
    NR = NV * VL,   /* wide tile columns: 32 floats with AVX-512 */
    MR_NARROW = 12, /* narrow tile rows, for N <= VL */
    NR_NARROW = VL, /* narrow tile columns: one vector */
    KC = 512,       /* k-block: products summed in registers */
    MC = 96,        /* rows per A block: MC x KC (192 KB) in L2 */
    NC = 2048,      /* columns per B panel: KC x NC (4 MB) in L3 */
};
/* The block sizes were measured on the machine this was written on (AMD Zen 4: 32 KB L1 and
 * 1 MB L2 per core, 32 MB L3), and are not critical: KC = 256 to 512 and MC = 48 to 144 all
 * stay within 10% of each other. KC = 512 beat 256 because C is read and written once per
 * k-block; the B micro-panel (KC x NR = 64 KB) then outgrows L1, but the kernel needs only
 * ~13 bytes per cycle from it and the A micro-panel, well within what L2 delivers. MC must be
 * a multiple of both tile heights (MR and MR_NARROW), so that A blocks hold whole tiles. */

/* acc += a * b must compile to one fused multiply-add. Clang fuses within an expression by
 * default; GCC in ISO C mode (-std=c11) does not fuse at all unless told to, for this function. */
#if defined(__GNUC__) && !defined(__clang__)
#define KERNEL_FP_CONTRACT __attribute__((optimize("fp-contract=fast")))
#else
#define KERNEL_FP_CONTRACT
#endif

/* Below this many flops (about 40 microseconds of work on one core, a 126^3 product) waking
 * the other threads and meeting them at barriers costs about what it saves: stay on one. */
#define PARALLEL_MIN_FLOPS 4e6

/* --- The micro-kernel -------------------------------------------------------------------- */

/* How a tile goes into C: C = tile (overwrite) or C += tile, then + bias[j] on every row when
 * bias is not NULL (gemm_bias: only on the last k-block, so each element is its whole sum, then
 * the bias, the order of a product followed by a separate bias pass). */
typedef struct TileStore {
    int overwrite;
    const real *bias; /* the bias of the tile's first column, or NULL */
} TileStore;

/* One vector of a full tile into C at c: its sum, plus C's old value unless overwrite, plus the
 * bias vector when there is one (both kernels' full tiles go through here). */
static inline void store_vector(real *c, vreal sum, int overwrite, const real *bias) {
    if (!overwrite) sum += vreal_load(c);
    if (bias) sum += vreal_load(bias);
    vreal_store(c, sum);
}

/* C[0..rows-1][0..cols-1] = tile (overwrite) or += tile, where tile(i, j) = tile[i * width + j].
 * Only the ragged tiles at the bottom and right edges of C come here; the kernels store full
 * tiles themselves. */
static void store_tile(const real *tile, int width, int rows, int cols, real *C, long ldc,
                       TileStore store) {
    for (int i = 0; i < rows; i++) {
        real *restrict c = C + i * ldc;
        const real *restrict t = tile + i * width;
        if (store.overwrite)
            for (int j = 0; j < cols; j++) c[j] = t[j];
        else
            for (int j = 0; j < cols; j++) c[j] += t[j];
        for (int j = 0; store.bias && j < cols; j++) c[j] += store.bias[j];
    }
}

/* One tile of C: C[i][j] (+)= sum over p < kc of a(i, p) b[p][j], for i < rows <= MR and
 * j < cols <= NR, where
 *     a(i, p) = a[i * a_row_step + p * a_k_step]   an A micro-panel: packed (steps 1, MR), or
 *                                                   A's own rows read in place (steps lda, 1)
 *     b[p][j] = b[p * NR + j]                       a packed B micro-panel, kc x NR.
 * The plain-C loop it computes:
 *     for (p = 0; p < kc; p++)
 *         for (i = 0; i < MR; i++)
 *             for (j = 0; j < NR; j++) tile[i][j] += a(i, p) * b[p][j];
 * with the j loop done VL lanes at a time, then the tile goes into C. A full tile (by far the
 * most common) goes straight from the registers to C; a ragged edge tile through store_tile.
 * Always inlined into the two kernels below, whose constant steps let it compile to one tight
 * loop each. */
KERNEL_FP_CONTRACT
static inline __attribute__((always_inline)) void
tile_kernel(int kc, const real *restrict a, long a_row_step, long a_k_step, const real *restrict b,
            real *restrict C, long ldc, int rows, int cols, TileStore store) {
    vreal acc[MR][NV]; /* the MR x NR tile, in MR NV registers */
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) acc[i][v] = (vreal){0};
    for (int p = 0; p < kc; p++, a += a_k_step, b += NR) {
        vreal b_row[NV]; /* b[p][0..NR-1] */
        for (int v = 0; v < NV; v++) memcpy(&b_row[v], b + v * VL, sizeof(vreal));
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++) acc[i][v] += a[i * a_row_step] * b_row[v]; /* broadcast */
    }
    if (rows == MR && cols == NR) {
        for (int i = 0; i < MR; i++)
            for (int v = 0; v < NV; v++)
                store_vector(C + i * ldc + v * VL, acc[i][v], store.overwrite,
                             store.bias ? store.bias + v * VL : NULL);
        return;
    }
    real tile[MR][NR];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) memcpy(&tile[i][v * VL], &acc[i][v], sizeof(vreal));
    store_tile(&tile[0][0], NR, rows, cols, C, ldc, store);
}

/* A packed A micro-panel: a(i, p) = a[p * MR + i]. */
KERNEL_FP_CONTRACT
static void micro_kernel(int kc, const real *a, const real *b, real *C, long ldc, int rows,
                         int cols, TileStore store) {
    tile_kernel(kc, a, 1, MR, b, C, ldc, rows, cols, store);
}

/* MR rows of a row-major A read where they are: a(i, p) = a[i * lda + p]. */
KERNEL_FP_CONTRACT
static void micro_kernel_rows(int kc, const real *a, long lda, const real *b, real *C, long ldc,
                              int rows, int cols, TileStore store) {
    tile_kernel(kc, a, lda, 1, b, C, ldc, rows, cols, store);
}

/* The narrow tile, MR_NARROW x NR_NARROW (12 x 16 floats with AVX-512), for products with
 * N <= VL columns: the wide tile would be half zero padding there, and half its FMAs wasted.
 * That is the shape of four of the six products of attention (N = head dim = 16). Its 12
 * accumulator registers hold 12 rows; per p it does 12 broadcasts, 1 load and 12 FMAs.
 * a(i, p) as in tile_kernel; b[p][j] = b[p * NR_NARROW + j]. The plain-C loop it computes:
 *     for (p = 0; p < kc; p++)
 *         for (i = 0; i < MR_NARROW; i++)
 *             for (j = 0; j < NR_NARROW; j++) tile[i][j] += a(i, p) * b[p][j];
 * with the j loop one vector. The order of every sum is the wide kernel's: p = 0, 1, ... */
KERNEL_FP_CONTRACT
static inline __attribute__((always_inline)) void
narrow_tile_kernel(int kc, const real *restrict a, long a_row_step, long a_k_step,
                   const real *restrict b, real *restrict C, long ldc, int rows, int cols,
                   TileStore store) {
    vreal acc[MR_NARROW]; /* the MR_NARROW x NR_NARROW tile, in 12 registers */
    for (int i = 0; i < MR_NARROW; i++) acc[i] = (vreal){0};
    for (int p = 0; p < kc; p++, a += a_k_step, b += NR_NARROW) {
        vreal b_row; /* b[p][0..NR_NARROW-1] */
        memcpy(&b_row, b, sizeof b_row);
        for (int i = 0; i < MR_NARROW; i++) acc[i] += a[i * a_row_step] * b_row; /* broadcast */
    }
    if (rows == MR_NARROW && cols == NR_NARROW) {
        for (int i = 0; i < MR_NARROW; i++)
            store_vector(C + i * ldc, acc[i], store.overwrite, store.bias);
        return;
    }
    real tile[MR_NARROW][NR_NARROW];
    for (int i = 0; i < MR_NARROW; i++) memcpy(&tile[i][0], &acc[i], sizeof(vreal));
    store_tile(&tile[0][0], NR_NARROW, rows, cols, C, ldc, store);
}

/* The narrow kernel on a packed A micro-panel: a(i, p) = a[p * MR_NARROW + i]. */
KERNEL_FP_CONTRACT
static void narrow_micro_kernel(int kc, const real *a, const real *b, real *C, long ldc, int rows,
                                int cols, TileStore store) {
    narrow_tile_kernel(kc, a, 1, MR_NARROW, b, C, ldc, rows, cols, store);
}

/* The narrow kernel on MR_NARROW rows of a row-major A read in place: a(i, p) = a[i * lda + p]. */
KERNEL_FP_CONTRACT
static void narrow_micro_kernel_rows(int kc, const real *a, long lda, const real *b, real *C,
                                     long ldc, int rows, int cols, TileStore store) {
    narrow_tile_kernel(kc, a, lda, 1, b, C, ldc, rows, cols, store);
}

/* Ask for the C tile's cache lines before the kernel runs, so they have arrived (from L2 or L3)
 * when the kernel reads and writes them: the kernel takes thousands of cycles, a miss hundreds. */
static void prefetch_tile(const real *C, long ldc, int rows, int cols) {
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j += 64 / (int)sizeof(real))
            __builtin_prefetch(C + i * ldc + j, 1, 3);
}

/* --- Packing -------------------------------------------------------------------------------- */

/* A strided view of a matrix: element (r, p) is at data[r * row_stride + p * k_stride].
 * op(A) as (i, k) and op(B) read as (j, k) are both such views, whatever the transposes. */
typedef struct Strided {
    const real *data;
    long row_stride, k_stride;
} Strided;

/* The transposing pack moves 16 x 16 blocks through registers with simd.h's transpose_16x16
 * where it has one (AVX-512 floats): the plain loop moved one real per load and store, and
 * packing W in y = x W^T and k in attention's q k^T took ~2% of charlm_step_cp (4.4 ms a step);
 * the register transpose halved that. */

/* Pack rows [r0, r0 + rows) x k in [k0, k0 + kc) of x into micro-panels of `width` rows (the
 * tile's rows for A, its columns for B): panel q holds rows r0 + q * width ..., stored k by k, so
 *     dst[q * width * kc + p * width + r] = x(r0 + q * width + r, k0 + p),
 * with rows past the end filled with 0. Inlined into pack_a and pack_b, where width is a
 * constant, so the copy loops compile to a few vector moves. */
static inline void pack(Strided x, int r0, int rows, int k0, int kc, const int width,
                        real *restrict dst) {
    enum { K_STEP = 16 }; /* transpose 16 k's at a time: their destination stays in L1 */
    for (int q0 = 0; q0 < rows; q0 += width, dst += (long)width * kc) {
        int valid = rows - q0 < width ? rows - q0 : width;
        const real *src = x.data + (r0 + q0) * x.row_stride + k0 * x.k_stride;
        if (x.row_stride == 1) { /* the rows at one k are contiguous: copy them */
            for (int p = 0; p < kc; p++) {
                const real *restrict from = src + p * x.k_stride;
                real *restrict to = dst + (long)p * width;
                if (valid == width)
                    memcpy(to, from, (size_t)width * sizeof(real)); /* a constant size */
                else
                    for (int r = 0; r < width; r++) to[r] = r < valid ? from[r] : 0;
            }
        } else { /* each row is contiguous along k (k_stride == 1): transpose */
            int p0 = 0;
#if SIMD_TRANSPOSE_16
            /* a full panel, VL x VL blocks in registers; the k's left over below */
            if (valid == width && width % VL == 0)
                for (; p0 + VL <= kc; p0 += VL)
                    for (int r = 0; r < width; r += VL)
                        transpose_16x16(src + r * x.row_stride + p0, x.row_stride,
                                        dst + (long)p0 * width + r, width, 0);
#endif
            for (; p0 < kc; p0 += K_STEP) {
                int p_end = kc - p0 < K_STEP ? kc : p0 + K_STEP;
                for (int r = 0; r < valid; r++) {
                    const real *row = src + r * x.row_stride;
                    for (int p = p0; p < p_end; p++) dst[(long)p * width + r] = row[p];
                }
                for (int p = p0; p < p_end; p++)
                    for (int r = valid; r < width; r++) dst[(long)p * width + r] = 0;
            }
        }
    }
}

/* Panels for the wide tile (narrow = 0) or the narrow one (narrow = 1). */
static void pack_a(int narrow, Strided a, int i0, int rows, int k0, int kc, real *restrict dst) {
    if (narrow)
        pack(a, i0, rows, k0, kc, MR_NARROW, dst);
    else
        pack(a, i0, rows, k0, kc, MR, dst);
}
static void pack_b(int narrow, Strided b, int j0, int cols, int k0, int kc, real *restrict dst) {
    if (narrow)
        pack(b, j0, cols, k0, kc, NR_NARROW, dst);
    else
        pack(b, j0, cols, k0, kc, NR, dst);
}

/* --- Packing buffers: one workspace per thread, kept for the thread's lifetime ------------ */

/* A call needs one B panel plus one A block per thread of its team, in one buffer. A fresh
 * buffer per call costs little beside a large product but much beside the small ones that
 * attention makes by the thousand (a 64 x 256 x 32 product takes ~15 us), so each thread that
 * calls gemm keeps its buffer and grows it when a call needs more: one allocation per thread
 * per size ever needed. It is freed when the thread exits (the key's destructor), for the main
 * thread at exit (atexit), or earlier by gemm_free_workspace(). Threads never share one: an
 * OpenMP loop whose items each call gemm gives every item its calling thread's buffer. */
typedef struct Workspace {
    real *data;
    size_t capacity; /* reals */
} Workspace;

static _Thread_local Workspace thread_workspace;
static pthread_key_t workspace_key; /* only for its destructor: frees a thread's on exit */
static pthread_once_t workspace_once = PTHREAD_ONCE_INIT;

static void free_workspace(Workspace *w) {
    free(w->data);
    *w = (Workspace){0};
}
static void workspace_destructor(void *w) {
    free_workspace(w);
}
static void workspace_setup(void) {
    if (pthread_key_create(&workspace_key, workspace_destructor) != 0)
        cpool_fail("gemm: cannot create the thread key for packing buffers");
    atexit(gemm_free_workspace);
}

void gemm_free_workspace(void) {
    free_workspace(&thread_workspace);
}

/* The calling thread's buffer, at least `reals` long and 64-byte aligned (a cache line, and
 * one AVX-512 register), or cpool_fail. Its contents are not kept when it grows. */
static real *workspace(size_t reals) {
    Workspace *w = &thread_workspace;
    if (w->capacity >= reals) return w->data;
    pthread_once(&workspace_once, workspace_setup);
    free_workspace(w);
    size_t bytes = (reals * sizeof(real) + 63) / 64 * 64;
    w->data = aligned_alloc(64, bytes);
    if (!w->data) cpool_fail("gemm: out of memory for %zu bytes of packing buffers", bytes);
    w->capacity = reals;
    pthread_setspecific(workspace_key, w);
    return w->data;
}

/* --- The five loops ---------------------------------------------------------------------- */

typedef struct Gemm {
    int M, N, K;
    Strided a;      /* op(A) as (i, k) */
    Strided b;      /* op(B) as (j, k) */
    int a_in_place; /* 1: full A micro-panels are read from A itself, not packed (see plan) */
    int narrow;     /* 1: the narrow tile (N <= VL), 0: the wide one */
    int mr, nr;     /* the tile: MR x NR or MR_NARROW x NR_NARROW */
    real *C;
    long ldc;
    int accumulate;
    const real *bias; /* gemm_bias: (N), added to every row of C after the last k-block */
    int m_tiles;      /* ceil(M / mr): tile rows of C */
    int m_blocks;     /* A blocks: the tile rows shared out evenly (see a_block_rows) */
    int mc;           /* rows of the largest A block (<= MC, a multiple of mr) */
    int n_chunks;     /* each B panel is split into this many column chunks of whole nr */
    real *b_panel;    /* KC x NC, shared */
    /* A B packed beforehand (gemm_packed): micro-panel q of columns j0 + q nr starts at
     * b_packed + q b_packed_stride, and its row k0 + p at p nr within it; NULL: pack per call. */
    const real *b_packed;
    long b_packed_stride;
    int b_packed_k0;
    real *a_blocks;    /* one MC x KC block per thread */
    long a_block_size; /* reals per thread's A block */
} Gemm;

static int min_int(int x, int y) {
    return x < y ? x : y;
}
static int round_up(int x, int multiple) {
    return (x + multiple - 1) / multiple * multiple;
}

/* The calling thread's number in its team, and the team's size (0 and 1 without OpenMP). */
static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
static int team_size(void) {
#ifdef _OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

/* The A block rows [ic, ic + mc) x k-block [pc, pc + kc), made ready for the kernels: packed
 * whole, or when A is read in place, only its ragged last micro-panel (rows past M are zeros
 * there; reading them in place would run off the end of A). */
static void prepare_a_block(const Gemm *g, int ic, int mc, int pc, int kc, real *a_block) {
    if (!g->a_in_place) {
        pack_a(g->narrow, g->a, ic, mc, pc, kc, a_block);
        return;
    }
    int full = mc / g->mr * g->mr;
    if (full < mc) pack_a(g->narrow, g->a, ic + full, mc - full, pc, kc, a_block);
}

/* A block `m_block` is rows [*ic, *ic + *mc) of C: tile rows m_tiles * m_block / m_blocks up to
 * the next block's first, so blocks differ by at most one tile row and every thread's
 * contiguous range of blocks holds its share of the rows to within one tile. (Blocks of equal
 * size rounded up to whole tiles left the last one short: at 512 rows, 2 threads did 270 and
 * 242 rows.) Tiles start at multiples of mr either way, so no sum changes. */
static void a_block_rows(const Gemm *g, int m_block, int *ic, int *mc) {
    int first_tile = (int)((long)g->m_tiles * m_block / g->m_blocks);
    int end_tile = (int)((long)g->m_tiles * (m_block + 1) / g->m_blocks);
    *ic = first_tile * g->mr;
    *mc = min_int(end_tile * g->mr, g->M) - *ic;
}

/* One work item of one k-block: A block `m_block` times column chunk `chunk` of the B panel
 * (columns jc .. jc + nc of C), whose micro-panels are b_stride reals apart. Prepares the A
 * block unless this thread did so last time. */
static void multiply_block(const Gemm *g, real *a_block, const real *b_panel, long b_stride,
                           int m_block, int chunk, int jc, int nc, int pc, int kc,
                           int *prepared_m_block) {
    int ic, mc;
    a_block_rows(g, m_block, &ic, &mc);
    if (*prepared_m_block != m_block) {
        prepare_a_block(g, ic, mc, pc, kc, a_block);
        *prepared_m_block = m_block;
    }
    const int mr = g->mr, nr = g->nr;
    int chunk_width = round_up((nc + g->n_chunks - 1) / g->n_chunks, nr);
    int j_begin = chunk * chunk_width, j_end = min_int(nc, j_begin + chunk_width);
    int overwrite = pc == 0 && !g->accumulate, last_k_block = pc + kc == g->K;
    for (int jr = j_begin; jr < j_end; jr += nr) {
        const real *b_micro = b_panel + jr / nr * b_stride;
        int cols = min_int(nr, nc - jr);
        TileStore store = {overwrite, g->bias && last_k_block ? g->bias + jc + jr : NULL};
        for (int ir = 0; ir < mc; ir += mr) {
            real *c = g->C + (ic + ir) * g->ldc + jc + jr;
            int rows = min_int(mr, mc - ir);
            prefetch_tile(c, g->ldc, rows, cols);
            if (g->a_in_place && rows == mr) {
                const real *a = g->a.data + (ic + ir) * g->a.row_stride + pc;
                if (g->narrow)
                    narrow_micro_kernel_rows(kc, a, g->a.row_stride, b_micro, c, g->ldc, rows, cols,
                                             store);
                else
                    micro_kernel_rows(kc, a, g->a.row_stride, b_micro, c, g->ldc, rows, cols,
                                      store);
            } else {
                const real *a = a_block + (g->a_in_place ? 0 : (long)ir * kc);
                if (g->narrow)
                    narrow_micro_kernel(kc, a, b_micro, c, g->ldc, rows, cols, store);
                else
                    micro_kernel(kc, a, b_micro, c, g->ldc, rows, cols, store);
            }
        }
    }
}

/* Meet the other threads of the team. Only ever reached with threads > 1, i.e. inside gemm's
 * own parallel region: a barrier outside one would bind to the caller's team. */
static void team_barrier(int threads) {
    if (threads > 1) {
#pragma omp barrier
    }
}

/* The jc and pc loops, run by thread `tid` of `threads`: the B panel is packed by all threads
 * together (micro-panel q by thread q mod threads), then the (A block, column chunk) items are
 * shared out in contiguous ranges. */
static void gemm_blocked(const Gemm *g, int tid, int threads) {
    real *a_block = g->a_blocks + tid * g->a_block_size;
    int prepared_m_block = -1;
    const int nr = g->nr;
    for (int jc = 0; jc < g->N; jc += NC) {
        int nc = min_int(NC, g->N - jc);
        for (int pc = 0; pc < g->K; pc += KC) {
            int kc = min_int(KC, g->K - pc);
            const real *b_panel = g->b_panel;
            long b_stride = (long)nr * kc;
            if (g->b_packed) { /* packed beforehand: point into it */
                b_stride = g->b_packed_stride;
                b_panel = g->b_packed + jc / nr * b_stride + (long)(g->b_packed_k0 + pc) * nr;
            } else {
                int b_micro_panels = (nc + nr - 1) / nr;
                for (int q = tid; q < b_micro_panels; q += threads)
                    pack_b(g->narrow, g->b, jc + q * nr, min_int(nr, nc - q * nr), pc, kc,
                           g->b_panel + (long)q * nr * kc);
                team_barrier(threads); /* the panel is complete */
            }
            prepared_m_block = -1; /* a new k-block: every A block must be prepared again */
            int items = g->m_blocks * g->n_chunks;
            int first = (int)((long)items * tid / threads);
            int end = (int)((long)items * (tid + 1) / threads);
            for (int item = first; item < end; item++)
                multiply_block(g, a_block, b_panel, b_stride, item / g->n_chunks,
                               item % g->n_chunks, jc, nc, pc, kc, &prepared_m_block);
            team_barrier(threads); /* nobody still reads the panel when the next one is packed */
        }
    }
}

/* Split the work for `threads` threads: A blocks of at most MC rows (whole tiles), a multiple
 * of the thread count of them when there are several; if there are fewer A blocks than threads
 * (small M), the columns are split into chunks instead. None of this changes the order of any
 * sum. */
static void plan(Gemm *g, int threads) {
    const int tiles_per_block = MC / g->mr;
    g->m_tiles = (g->M + g->mr - 1) / g->mr;
    int m_blocks = (g->m_tiles + tiles_per_block - 1) / tiles_per_block;
    if (threads > 1 && m_blocks >= threads) m_blocks = round_up(m_blocks, threads);
    g->m_blocks = min_int(m_blocks, g->m_tiles);
    g->mc = (g->m_tiles + g->m_blocks - 1) / g->m_blocks * g->mr;
    int n_micro_panels = (min_int(g->N, NC) + g->nr - 1) / g->nr;
    g->n_chunks = g->m_blocks >= threads ? 1 : (threads + g->m_blocks - 1) / g->m_blocks;
    g->n_chunks = min_int(g->n_chunks, n_micro_panels);
}

/* C = 0 (or unchanged when accumulating) for an empty sum, K = 0; 1 when that was the case. */
static int empty_sum(int M, int N, int K, real *C, int ldc, int accumulate) {
    if (K > 0) return 0;
    if (!accumulate)
        for (int i = 0; i < M; i++) memset(C + (long)i * ldc, 0, (size_t)N * sizeof(real));
    return 1;
}

/* A product of M rows of op(A), with the given tile. */
static Gemm gemm_setup(int trans_a, int M, int N, int K, const real *A, int lda, int narrow,
                       real *C, int ldc, int accumulate) {
    Gemm g = {.M = M, .N = N, .K = K, .C = C, .ldc = ldc, .accumulate = accumulate};
    /* op(A)(i, k) = A[i][k] or, transposed, A[k][i]. */
    g.a = trans_a ? (Strided){A, 1, lda} : (Strided){A, lda, 1};
    /* A row-major A is read in place: each of the MR rows the kernel reads is contiguous along
     * k, so the kernel streams MR rows instead of one packed panel, and the packing (a
     * transpose, the costly kind) is saved. A transposed A is packed: its rows at one k are
     * contiguous, but reading them in place would jump lda elements per k, which for the
     * power-of-two lda of the models maps every line to the same few cache sets. */
    g.a_in_place = !trans_a;
    g.narrow = narrow;
    g.mr = narrow ? MR_NARROW : MR;
    g.nr = narrow ? NR_NARROW : NR;
    return g;
}

/* Plans g for the threads it is worth, takes the packing buffers and runs the five loops. */
static void gemm_run(Gemm *g) {
    int threads = 1;
#ifdef _OPENMP
    if (2.0 * g->M * g->N * g->K >= PARALLEL_MIN_FLOPS && !omp_in_parallel())
        threads = omp_get_max_threads();
#endif
    plan(g, threads);

    /* The calling thread's buffer holds one B panel (unless B came packed) and one A block per
     * thread, each rounded to whole cache lines so every block starts 64-byte aligned. */
    const int line = 64 / (int)sizeof(real); /* reals per cache line */
    int kc_max = min_int(KC, g->K);
    long b_size = g->b_packed ? 0 : round_up(round_up(min_int(g->N, NC), g->nr) * kc_max, line);
    g->a_block_size = round_up(g->mc * kc_max, line); /* <= MC x KC */
    g->b_panel = workspace((size_t)(b_size + threads * g->a_block_size));
    g->a_blocks = g->b_panel + b_size;

    if (threads == 1) {
        gemm_blocked(g, 0, 1);
        return;
    }
    /* The team may be smaller than asked for (a thread limit): the work is split among the
     * threads that came, each using the A block of its number. */
#pragma omp parallel num_threads(threads)
    gemm_blocked(g, thread_id(), team_size());
}

void gemm(int trans_a, int trans_b, int M, int N, int K, const real *A, int lda, const real *B,
          int ldb, real *C, int ldc, int accumulate) {
    if (M <= 0 || N <= 0 || empty_sum(M, N, K, C, ldc, accumulate)) return;
    /* A product at most one vector wide takes the narrow tile: with the wide one, half of
     * every tile would be zero padding. */
    Gemm g = gemm_setup(trans_a, M, N, K, A, lda, N <= NR_NARROW, C, ldc, accumulate);
    /* op(B) read as (j, k) = B[k][j] or, transposed, B[j][k]. */
    g.b = trans_b ? (Strided){B, ldb, 1} : (Strided){B, 1, ldb};
    gemm_run(&g);
}

void gemm_bias(int trans_b, int M, int N, int K, const real *A, int lda, const real *B, int ldb,
               const real *bias, real *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (empty_sum(M, N, K, C, ldc, 0)) {
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) C[(long)i * ldc + j] = bias[j];
        return;
    }
    Gemm g = gemm_setup(0, M, N, K, A, lda, N <= NR_NARROW, C, ldc, 0);
    g.b = trans_b ? (Strided){B, ldb, 1} : (Strided){B, 1, ldb};
    g.bias = bias;
    gemm_run(&g);
}

/* --- A B packed once for several products ------------------------------------------------ */

long gemm_packed_b_size(int N, int K) {
    int nr = N <= NR_NARROW ? NR_NARROW : NR;
    return (long)round_up(N, nr) * K;
}

GemmPackedB gemm_pack_b(int trans_b, int N, int K, const real *B, int ldb, real *buffer) {
    int narrow = N <= NR_NARROW;
    Strided b = trans_b ? (Strided){B, ldb, 1} : (Strided){B, 1, ldb};
    /* The whole of op(B) as micro-panels of nr columns, each K deep: panel q at q nr K. */
    pack_b(narrow, b, 0, N, 0, K, buffer);
    return (GemmPackedB){.data = buffer, .N = N, .K = K, .nr = narrow ? NR_NARROW : NR};
}

void gemm_packed(int trans_a, int M, int N, int K, const real *A, int lda, const GemmPackedB *B,
                 int j0, int k0, real *C, int ldc, int accumulate) {
    if (j0 % B->nr != 0 || j0 < 0 || k0 < 0 || j0 + N > B->N || k0 + K > B->K)
        cpool_fail("gemm_packed: columns [%d, %d) and rows [%d, %d) are not a part of the "
                   "packed (%d x %d) B starting at a multiple of %d columns",
                   j0, j0 + N, k0, k0 + K, B->K, B->N, B->nr);
    if (M <= 0 || N <= 0 || empty_sum(M, N, K, C, ldc, accumulate)) return;
    Gemm g = gemm_setup(trans_a, M, N, K, A, lda, B->nr == NR_NARROW, C, ldc, accumulate);
    g.b_packed_stride = (long)B->nr * B->K;
    g.b_packed = B->data + j0 / B->nr * g.b_packed_stride;
    g.b_packed_k0 = k0;
    gemm_run(&g);
}

/* --- The reference -------------------------------------------------------------------------- */

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
