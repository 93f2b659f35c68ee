/* ops_contextpool.c - ContextPool's pooling as one fused, banded op, in 1-D and 2-D.
 *
 * 1-D. x (B, N, D) features, w (B, N) pooling weights, s (B, N) support sizes -> y (B, N, D).
 * Every token i of every sequence b pools the tokens of its band:
 *     band(i) = { j : |i - j| <= R, 0 <= j < N, and j <= i when causal }
 *     g_ij    = exp(-(i - j)^2 / (2 s_i^2))        a Gaussian of the distance, width s_i
 *     A_ij    = g_ij w_j                           the unnormalised pooling weight
 *     Z_i     = sum_{j in band(i)} A_ij
 *     y_i     = sum_{j in band(i)} A_ij x_j / (Z_i + eps)
 * Backward, with r_i = 1 / (Z_i + eps) (docs/contextpool-backward.md derives every line):
 *     dx_j += sum_{i : j in band(i)} A_ij r_i dy_i
 *     dA_ij = r_i dy_i . (x_j - y_i)                exact, eps included
 *     dw_j += sum_{i : j in band(i)} dA_ij g_ij
 *     ds_i += sum_{j in band(i)} dA_ij w_j g_ij (i - j)^2 / s_i^3
 * 2-D is the same with i a centre p = (stride u, stride v), j an input pixel q of the
 * (2R+1) x (2R+1) square around p, (i - j)^2 = |p - q|^2 and the dot products over channels.
 *
 * Cost. Only the band is touched: O(B N (2R+1) D) time in 1-D, O(B Ho Wo (2R+1)^2 C) in 2-D, and
 * no N x N matrix is ever formed. A radius beyond the sequence (R >= N) is clipped to N - 1, which
 * pools the same tokens, so a short sequence costs what its length says.
 *
 * Threads. Every loop is split over rows whose outputs no other row writes, and each row sums in
 * a fixed order, so results are the same bits for any thread count:
 *   - 1-D forward: one row (b, i) per iteration;
 *   - 1-D backward: a row pass (b, i) computes ds_i (and dy_i . y_i), then a column pass (b, j)
 *     GATHERS dx_j and dw_j over the rows i whose band holds j - no two iterations write the
 *     same dx_j, and each adds its rows in increasing i;
 *   - 2-D, forward and backward: one image b per iteration; within an image the backward
 *     scatters from its centres in row-major order. (A gather as in 1-D would work too, keeping
 *     each centre's two Gaussian factors; one image per thread is simpler, and enough whenever
 *     B is at least the number of threads.)
 */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "ops.h"
#include "simd.h"
#include "util.h"
#include "vmath.h"

/* exp at the working precision: libm in float64, vmath_expf (vmath.h, 1 ulp) in float32. */
#ifdef CPOOL_DOUBLE
#define real_exp exp
#else
#define real_exp vmath_expf
#endif

/* Below this many multiply-adds a single thread is faster than waking the others. */
#define PARALLEL_MIN_WORK (1L << 16)

static int min_int(int a, int b) {
    return a < b ? a : b;
}
static int max_int(int a, int b) {
    return a > b ? a : b;
}

/* out[0 .. D) = sum over t < n of coef[t] rows[t stride + 0 .. D): every 1-D pass (y_i, M_i,
 * G_j) is such a weighted sum of a band's rows. It is the plain loop
 *     out[d] = 0;  for t: for d: out[d] += coef[t] * rows[t stride + d]
 * with the same additions in the same order (t = 0, 1, ... for each d), so the same bits, but
 * with CHUNK outputs held in vector registers across all n rows: the plain loop loads and
 * stores out[d] once per row, two memory operations per multiply-add, which bound its speed. */
enum { CHUNK_VECTORS = 4, CHUNK = CHUNK_VECTORS * VL }; /* 64 floats with AVX-512 */

static void weighted_rows(int n, const real *coef, const real *rows, long stride, long D,
                          real *out) {
    long d0 = 0;
    for (; d0 + CHUNK <= D; d0 += CHUNK) {
        vreal sum[CHUNK_VECTORS] = {0};
        for (int t = 0; t < n; t++) {
            const real *row = rows + t * stride + d0;
            for (int v = 0; v < CHUNK_VECTORS; v++) sum[v] += coef[t] * vreal_load(row + v * VL);
        }
        for (int v = 0; v < CHUNK_VECTORS; v++) vreal_store(out + d0 + v * VL, sum[v]);
    }
    for (; d0 < D; d0++) { /* the last D mod CHUNK outputs, one at a time */
        real sum = 0;
        for (int t = 0; t < n; t++) sum += coef[t] * rows[t * stride + d0];
        out[d0] = sum;
    }
}

/* --- Validation, shared by both ops ------------------------------------------------------- */

/* s must be positive and finite everywhere: a support size of 0 divides by zero, a NaN poisons
 * every output of its row. The message names the element by its indices, "s[1, 3] = -0.5". */
static void check_support_sizes(const char *op, const Tensor *s) {
    for (long e = 0; e < s->size; e++) {
        real value = s->data[e];
        if (value > 0 && isfinite(value)) continue;
        char where[96] = "";
        long stride = s->size;
        for (int d = 0; d < s->ndim; d++) {
            stride /= s->shape[d];
            size_t used = strlen(where);
            snprintf(where + used, sizeof where - used, "%s%ld", d ? ", " : "",
                     e / stride % s->shape[d]);
        }
        cpool_fail("%s: support sizes s must be positive and finite, got s[%s] = %g", op, where,
                   (double)value);
    }
}

static void check_eps_and_radius(const char *op, real eps, int radius) {
    if (!(eps >= 0) || !isfinite(eps))
        cpool_fail("%s: eps must be finite and >= 0, got %g", op, (double)eps);
    if (radius < 0) cpool_fail("%s: radius must be >= 0, got %d", op, radius);
}

/* t must have the `ndim` dimensions in `shape` (x's leading ones, named `names`). */
static void check_shape_matches(const char *op, const char *what, const char *names,
                                const Tensor *t, int ndim, const int *shape, const Tensor *x) {
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (same) return;
    char got[64], want[64], x_shape[64];
    cpool_fail("%s: %s must be %s = %s to match x %s, got %s", op, what, names,
               shape_string(ndim, shape, want, sizeof want), TENSOR_SHAPE_STR(x, x_shape),
               TENSOR_SHAPE_STR(t, got));
}

/* Whether tape_record will record (the same test it makes), so the forward knows whether to keep
 * anything for a backward. */
static int will_record(const Tape *tape, const Tensor *x, const Tensor *w, const Tensor *s) {
    return !tape->no_grad && (x->requires_grad || w->requires_grad || s->requires_grad);
}

/* ===========================================================================================
 * 1-D
 * =========================================================================================== */

/* What the 1-D backward needs besides x, w, s and y.
 *
 * Saving g or recomputing it: the band's g_ij is saved, (B, N, K) reals with K = 2R + 1
 * (R + 1 causal), i.e. K / D of x's size (38% at D = 128, R = 24; 0.8 MB in float32 for 4096
 * tokens). Recomputing it would cost 3R + 2 more exp per token in backward (the row pass
 * needs g_ij over its band, R + 1 exp by symmetry; the column pass needs g_ij with each row's own
 * s_i, 2R + 1 exp), some 1.5 ms for 4096 tokens: half as long as a pass over D = 128. The
 * memory is small next to the activations around the op, so time wins. r_i = 1 / (Z_i + eps) is
 * saved too (B N reals). */
typedef struct Pool1d {
    int B, N, D;
    int radius; /* clipped to N - 1 */
    int causal;
    int K;   /* band slots per row: 2 radius + 1, or radius + 1 when causal */
    real *g; /* (B, N, K): g_ij at [(b N + i) K + j - i + radius]; slots outside 0..N-1 unused */
    real *r; /* (B, N): 1 / (Z_i + eps) */
} Pool1d;

/* The band of row i: j from band_first to band_last. */
static int band_first(const Pool1d *p, int i) {
    return max_int(0, i - p->radius);
}
static int band_last(const Pool1d *p, int i) {
    return min_int(p->N - 1, p->causal ? i : i + p->radius);
}
/* The rows whose band holds column j: j in band(i) <=> |i - j| <= R, and i >= j when causal. */
static int column_first(const Pool1d *p, int j) {
    return p->causal ? j : max_int(0, j - p->radius);
}
static int column_last(const Pool1d *p, int j) {
    return min_int(p->N - 1, j + p->radius);
}

/* g_row[j - i + radius] = exp(-(i - j)^2 / (2 s_i^2)) for j in band(i): one pass over the
 * band, which vectorises (vmath_expf). The Gaussian depends on |i - j| only, so a non-causal band
 * computes each value twice; a loop computing each distance once and writing it to j = i - d and
 * i + d stayed scalar, and took more time than the rest of the row. The squared distance d^2 is
 * an exact integer. */
static void gaussian_row(const Pool1d *p, int i, real s_i, real *g_row) {
    int first = band_first(p, i), last = band_last(p, i);
    double inverse_two_variance = 0.5 / ((double)s_i * s_i);
    real *g_first = g_row + first - i + p->radius;
#pragma omp simd
    for (int j = first; j <= last; j++) {
        double d = j - i;
        g_first[j - first] = real_exp((real)(-d * d * inverse_two_variance));
    }
}

/* Row (b, i) of the forward: y_i = r_i sum_j A_ij x_j, A_ij = g_ij w_j, r_i = 1 / (Z_i + eps).
 * The rows x_j of the band are contiguous, so the sum is one weighted_rows; Z_i sums in double.
 * g_row receives the row's Gaussian (K slots), A the band's A_ij (K slots of scratch). */
static void pool1d_row(const Pool1d *p, const Tensor *x, const Tensor *w, const Tensor *s, real eps,
                       real *g_row, real *A, real *y, long row) {
    int i = (int)(row % p->N), first = band_first(p, i), n = band_last(p, i) - first + 1;
    long D = p->D, sequence = row - i; /* row index of token 0 of this sequence */
    const real *w_seq = w->data + sequence;
    real *y_i = y + row * D;
    gaussian_row(p, i, s->data[row], g_row);
    double Z = 0;
    for (int t = 0; t < n; t++) { /* j = first + t */
        A[t] = g_row[first + t - i + p->radius] * w_seq[first + t];
        Z += A[t];
    }
    weighted_rows(n, A, x->data + (sequence + first) * D, D, D, y_i);
    real r = (real)(1.0 / (Z + eps));
    for (long d = 0; d < D; d++) y_i[d] *= r;
    p->r[row] = r;
}

/* --- 1-D backward ----------------------------------------------------------------------------
 * Forward did y_i (Z_i + eps) = sum_j A_ij x_j with Z_i = sum_j A_ij, so d y_i / d A_ij =
 * r_i (x_j - y_i) and
 *     dA_ij = r_i dy_i . (x_j - y_i)
 * (docs/contextpool-backward.md). Taken literally, each (i, j) pair would need that dot product
 * over D, a reduction across the vector lanes per pair. Instead the sums over pairs are regrouped
 * so that a pair costs only an axpy, and each token one dot product:
 *   - ds_i = sum_j dA_ij w_j g_ij (i-j)^2 / s_i^3 = (r_i / s_i^3) dy_i . (M_i - m_i y_i)
 *     with M_i = sum_j A_ij (i-j)^2 x_j and m_i = sum_j A_ij (i-j)^2   (row pass, per row i);
 *   - dx_j = sum_i r_i A_ij dy_i = w_j G_j  with G_j = sum_i r_i g_ij dy_i, and
 *     dw_j = sum_i dA_ij g_ij = x_j . G_j - sum_i r_i g_ij (dy_i . y_i)  (column pass, per j).
 * Rounding is no worse than in the literal form: there y_i, rounded to the working precision,
 * enters every x_j - y_i; here it enters dy_i . y_i and M_i - m_i y_i the same way. */

/* Row pass, row (b, i): ds_i (if wanted) and dy_i . y_i (for the column pass's dw).
 * M is one thread's D-long scratch, followed by K more for the band's coefficients. */
static void pool1d_row_backward(const Pool1d *p, const Tensor *x, const Tensor *w, const Tensor *s,
                                const Tensor *y, real *M, double *dy_dot_y, real *ds, long row) {
    int i = (int)(row % p->N);
    long D = p->D, sequence = row - i;
    const real *y_i = y->data + row * D, *dy_i = y->grad + row * D;
    double e = 0;
#pragma omp simd reduction(+ : e)
    for (long d = 0; d < D; d++) e += (double)dy_i[d] * y_i[d];
    dy_dot_y[row] = e;
    if (!ds) return;
    const real *w_seq = w->data + sequence, *g_row = p->g + row * p->K;
    real *coef = M + D; /* A_ij (i - j)^2 for j = first + t */
    int first = band_first(p, i), n = band_last(p, i) - first + 1;
    double m = 0;
    for (int t = 0; t < n; t++) {
        int j = first + t;
        coef[t] = g_row[j - i + p->radius] * w_seq[j] * (real)((i - j) * (i - j));
        m += coef[t];
    }
    weighted_rows(n, coef, x->data + (sequence + first) * D, D, D, M);
    double dot = 0; /* dy_i . (M_i - m_i y_i) */
#pragma omp simd reduction(+ : dot)
    for (long d = 0; d < D; d++) dot += (double)dy_i[d] * (M[d] - m * y_i[d]);
    double s_i = s->data[row];
    ds[row] += (real)(p->r[row] * dot / (s_i * s_i * s_i));
}

/* Column pass, column (b, j): gathers over the rows i whose band holds j, so only this
 * iteration writes dx_j and dw_j. G is one thread's D-long scratch, followed by K more for the
 * coefficients r_i g_ij. */
static void pool1d_column_backward(const Pool1d *p, const Tensor *x, const Tensor *w,
                                   const Tensor *y, const double *dy_dot_y, real *G, real *dx,
                                   real *dw, long column) {
    int j = (int)(column % p->N), first = column_first(p, j), n = column_last(p, j) - first + 1;
    long D = p->D, sequence = column - j;
    real *coef = G + D; /* r_i g_ij for i = first + t */
    double h = 0;       /* sum_i r_i g_ij (dy_i . y_i) */
    for (int t = 0; t < n; t++) {
        long row = sequence + first + t;
        coef[t] = p->r[row] * p->g[row * p->K + (j - first - t + p->radius)];
        if (dw) h += coef[t] * dy_dot_y[row];
    }
    weighted_rows(n, coef, y->grad + (sequence + first) * D, D, D, G);
    if (dx) {
        real w_j = w->data[column], *dx_j = dx + column * D;
        for (long d = 0; d < D; d++) dx_j[d] += w_j * G[d];
    }
    if (dw) {
        const real *x_j = x->data + column * D;
        double x_dot_G = 0;
#pragma omp simd reduction(+ : x_dot_G)
        for (long d = 0; d < D; d++) x_dot_G += (double)x_j[d] * G[d];
        dw[column] += (real)(x_dot_G - h);
    }
}

static void contextpool1d_backward(Tape *tape, TapeRecord *record) {
    const Pool1d *p = record->saved;
    Tensor *x = record->inputs[0], *w = record->inputs[1], *s = record->inputs[2];
    Tensor *y = record->output;
    real *dx = tape_grad(tape, x), *dw = tape_grad(tape, w), *ds = tape_grad(tape, s);
    long rows = (long)p->B * p->N;
    int parallel = rows * p->K * p->D >= PARALLEL_MIN_WORK;
    /* dy_i . y_i per row, and per thread a D-long vector (M in the row pass, G in the column
     * pass) and K coefficients. */
    double *dy_dot_y = tape_save(tape, (size_t)rows * sizeof(double));
    long per_thread = p->D + p->K;
    real *scratch = tape_save(tape, (size_t)omp_get_max_threads() * per_thread * sizeof(real));
    if (dw || ds) {
#pragma omp parallel for schedule(static) if (parallel)
        for (long row = 0; row < rows; row++)
            pool1d_row_backward(p, x, w, s, y, scratch + omp_get_thread_num() * per_thread,
                                dy_dot_y, ds, row);
    }
    if (!dx && !dw) return;
#pragma omp parallel for schedule(static) if (parallel)
    for (long column = 0; column < rows; column++)
        pool1d_column_backward(p, x, w, y, dy_dot_y, scratch + omp_get_thread_num() * per_thread,
                               dx, dw, column);
}

static void check_contextpool1d(const Tensor *x, const Tensor *w, const Tensor *s, int radius,
                                int causal, real eps) {
    const char *op = "op_contextpool1d";
    char shape[64];
    if (x->ndim != 3) cpool_fail("%s: x must be (B, N, D), got %s", op, TENSOR_SHAPE_STR(x, shape));
    check_shape_matches(op, "w", "(B, N)", w, 2, x->shape, x);
    check_shape_matches(op, "s", "(B, N)", s, 2, x->shape, x);
    check_eps_and_radius(op, eps, radius);
    if (causal != 0 && causal != 1) cpool_fail("%s: causal must be 0 or 1, got %d", op, causal);
    check_support_sizes(op, s);
}

Tensor *op_contextpool1d(Tape *tape, Tensor *x, Tensor *w, Tensor *s, int radius, int causal,
                         real eps) {
    check_contextpool1d(x, w, s, radius, causal, eps);
    Pool1d p = {.B = x->shape[0], .N = x->shape[1], .D = x->shape[2], .causal = causal};
    p.radius = min_int(radius, max_int(p.N - 1, 0));
    p.K = causal ? p.radius + 1 : 2 * p.radius + 1;
    long rows = (long)p.B * p.N;
    /* The band's g is kept for the backward only if there will be one; otherwise each thread
     * reuses one row of scratch. */
    int keep = will_record(tape, x, w, s);
    /* Per thread: K slots for the band's A_ij, and K more for its Gaussian when g is not kept. */
    real *scratch = tape_save(tape, (size_t)omp_get_max_threads() * 2 * p.K * sizeof(real));
    p.g = keep ? tape_save(tape, (size_t)rows * p.K * sizeof(real)) : NULL;
    p.r = tape_save(tape, (size_t)rows * sizeof(real));
    Tensor *y = tape_tensor(tape, 3, x->shape);
#pragma omp parallel for schedule(static) if (rows * p.K * p.D >= PARALLEL_MIN_WORK)
    for (long row = 0; row < rows; row++) {
        real *own = scratch + omp_get_thread_num() * 2 * p.K;
        pool1d_row(&p, x, w, s, eps, keep ? p.g + row * p.K : own + p.K, own, y->data, row);
    }
    Tensor *inputs[3] = {x, w, s};
    TapeRecord *record = tape_record(tape, "contextpool1d", contextpool1d_backward, y, 3, inputs);
    if (record) {
        record->saved = tape_save(tape, sizeof(Pool1d));
        *(Pool1d *)record->saved = p;
    }
    return y;
}

/* ===========================================================================================
 * 2-D
 * =========================================================================================== */

/* What the 2-D backward needs besides x, w, s and y: the sizes and r_p = 1 / (Z_p + eps) per
 * centre, (B, Ho, Wo). The window weights are NOT saved: (2R+1)^2 of them per centre would
 * outweigh x itself (2401 per centre at R = 24, against C = 64 channels). The backward rebuilds
 * them from s_p and w, cheaply because the Gaussian factorises,
 *     g_pq = exp(-|p - q|^2 / (2 s_p^2)) = exp(-oy^2 / (2 s_p^2)) exp(-ox^2 / (2 s_p^2)),
 * with (oy, ox) = q - p, the offsets: 2 (2R+1) exp per centre, next to C (2R+1)^2 multiply-adds. */
typedef struct Pool2d {
    int B, C, H, W, Ho, Wo, stride;
    int radius_y, radius_x; /* the radius clipped to H - 1 and to W - 1 */
    real *r;                /* (B, Ho, Wo) */
} Pool2d;

/* Channels first (C, H, W) puts a pixel's channels H W apart, but every sum here runs over the
 * channels of one pixel. So each image is copied channels last, (H, W, C), where they are
 * contiguous and the inner loops run over C exactly as the 1-D loops run over D. A copy costs
 * one pass over the image; the pooling costs (2R+1)^2 / stride^2 passes. This is one thread's
 * scratch for one image at a time. */
typedef struct ImageScratch {
    real *x_last;           /* (H, W, C): this image's x */
    real *y_last, *dy_last; /* (Ho, Wo, C): its y and dy (backward) */
    real *G_last;           /* (H, W, C): G_q (backward, see below) */
    double *h_image;        /* (H, W): h_q (backward) */
    real *M;                /* (C): M_p (backward) */
    real *gy, *gx, *A;      /* one window: 2 Ry + 1, 2 Rx + 1 and their product */
} ImageScratch;

/* planes (C, n) -> pixels (n, C). */
static void to_channels_last(const real *planes, long n, int C, real *pixels) {
    for (int c = 0; c < C; c++)
        for (long q = 0; q < n; q++) pixels[q * C + c] = planes[c * n + q];
}

/* One centre p's window: input rows y0 .. y0 + ny - 1 and columns x0 .. x0 + nx - 1, with
 * A[a nx + k] = gy[a] gx[k] w[y0 + a, x0 + k], the A_pq = g_pq w_q of each q in it. */
typedef struct Window {
    int py, px, y0, x0, ny, nx;
} Window;

/* Builds the window of centre (u, v) of image b into the scratch; returns Z_p = sum_q A_pq. */
static double build_window(const Pool2d *p, const Tensor *w, const Tensor *s, int b, int u, int v,
                           Window *win, ImageScratch *scratch) {
    long image = (long)b * p->H * p->W;
    win->py = p->stride * u;
    win->px = p->stride * v;
    win->y0 = max_int(0, win->py - p->radius_y);
    win->x0 = max_int(0, win->px - p->radius_x);
    win->ny = min_int(p->H - 1, win->py + p->radius_y) - win->y0 + 1;
    win->nx = min_int(p->W - 1, win->px + p->radius_x) - win->x0 + 1;
    double s_p = s->data[image + (long)win->py * p->W + win->px];
    double inverse_two_variance = 0.5 / (s_p * s_p);
    for (int a = 0; a < win->ny; a++) {
        int oy = win->y0 + a - win->py;
        scratch->gy[a] = real_exp((real)(-(double)oy * oy * inverse_two_variance));
    }
    for (int k = 0; k < win->nx; k++) {
        int ox = win->x0 + k - win->px;
        scratch->gx[k] = real_exp((real)(-(double)ox * ox * inverse_two_variance));
    }
    double Z = 0;
    for (int a = 0; a < win->ny; a++) {
        const real *w_row = w->data + image + (long)(win->y0 + a) * p->W + win->x0;
        real *A_row = scratch->A + (long)a * win->nx;
        for (int k = 0; k < win->nx; k++) {
            A_row[k] = scratch->gy[a] * scratch->gx[k] * w_row[k];
            Z += A_row[k];
        }
    }
    return Z;
}

/* Forward of image b: for each centre p, y_p = r_p sum_q A_pq x_q (C-long axpys, channels
 * last), r_p = 1 / (Z_p + eps); then y_p goes back to the channel planes of y. */
static void pool2d_image(const Pool2d *p, const Tensor *x, const Tensor *w, const Tensor *s,
                         real eps, ImageScratch *scratch, real *y, int b) {
    int C = p->C;
    long plane = (long)p->H * p->W, out_plane = (long)p->Ho * p->Wo;
    to_channels_last(x->data + (long)b * C * plane, plane, C, scratch->x_last);
    for (long centre = 0; centre < out_plane; centre++) {
        Window win;
        double Z =
            build_window(p, w, s, b, (int)(centre / p->Wo), (int)(centre % p->Wo), &win, scratch);
        real r = (real)(1.0 / (Z + eps)), *y_p = scratch->y_last + centre * C;
        p->r[(long)b * out_plane + centre] = r;
        for (int c = 0; c < C; c++) y_p[c] = 0;
        for (int a = 0; a < win.ny; a++)
            for (int k = 0; k < win.nx; k++) {
                real A = scratch->A[(long)a * win.nx + k];
                const real *x_q = scratch->x_last + ((long)(win.y0 + a) * p->W + win.x0 + k) * C;
#pragma omp simd
                for (int c = 0; c < C; c++) y_p[c] += A * x_q[c];
            }
        for (int c = 0; c < C; c++) y_p[c] *= r;
    }
    real *y_image = y + (long)b * C * out_plane;
    for (long centre = 0; centre < out_plane; centre++)
        for (int c = 0; c < C; c++)
            y_image[c * out_plane + centre] = scratch->y_last[centre * C + c];
}

/* --- 2-D backward ----------------------------------------------------------------------------
 * The 1-D regrouping (above), with centres p for rows i and window pixels q for columns j, the
 * dot products over channels:
 *   ds_p = (r_p / s_p^3) dy_p . (M_p - m_p y_p),  M_p = sum_q A_pq |p-q|^2 x_q,
 *                                                 m_p = sum_q A_pq |p-q|^2;
 *   G_q  = sum_p r_p g_pq dy_p,  dx_q = w_q G_q,  dw_q = x_q . G_q - sum_p r_p g_pq (dy_p . y_p).
 * A pixel q is in the windows of up to (2R+1)^2 / stride^2 centres; within an image the centres
 * add into G_q and h_q = sum_p r_p g_pq (dy_p . y_p) one after the other (one image, one thread).
 */

/* sum_d a[d] b[d] in double. */
static double dot_double(const real *a, const real *b, int n) {
    double total = 0;
#pragma omp simd reduction(+ : total)
    for (int d = 0; d < n; d++) total += (double)a[d] * b[d];
    return total;
}

/* ds_p s_p^3 / r_p = dy_p . (M_p - m_p y_p) for the centre's window; M is C-long scratch. */
static double centre_support_dot(const Pool2d *p, const Window *win, const real *y_p,
                                 const real *dy_p, ImageScratch *scratch) {
    int C = p->C;
    real *M = scratch->M;
    for (int c = 0; c < C; c++) M[c] = 0;
    double m = 0;
    for (int a = 0; a < win->ny; a++) {
        int oy = win->y0 + a - win->py;
        for (int k = 0; k < win->nx; k++) {
            int ox = win->x0 + k - win->px;
            real coefficient = scratch->A[(long)a * win->nx + k] * (real)(oy * oy + ox * ox);
            const real *x_q = scratch->x_last + ((long)(win->y0 + a) * p->W + win->x0 + k) * C;
            m += coefficient;
#pragma omp simd
            for (int c = 0; c < C; c++) M[c] += coefficient * x_q[c];
        }
    }
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < C; c++) dot += (double)dy_p[c] * (M[c] - m * y_p[c]);
    return dot;
}

/* G_q += r_p g_pq dy_p and h_q += r_p g_pq (dy_p . y_p) for every q of the centre's window. */
static void centre_scatter(const Pool2d *p, const Window *win, real r, const real *dy_p,
                           double dy_dot_y, ImageScratch *scratch) {
    int C = p->C;
    for (int a = 0; a < win->ny; a++)
        for (int k = 0; k < win->nx; k++) {
            long q = (long)(win->y0 + a) * p->W + win->x0 + k;
            real coefficient = r * scratch->gy[a] * scratch->gx[k], *G_q = scratch->G_last + q * C;
            scratch->h_image[q] += coefficient * dy_dot_y;
#pragma omp simd
            for (int c = 0; c < C; c++) G_q[c] += coefficient * dy_p[c];
        }
}

/* The whole backward of image b: the centres in row-major order, then dx and dw from G and h. */
static void pool2d_image_backward(const Pool2d *p, const Tensor *x, const Tensor *w,
                                  const Tensor *s, const Tensor *y, ImageScratch *scratch, real *dx,
                                  real *dw, real *ds, int b) {
    int C = p->C;
    long plane = (long)p->H * p->W, out_plane = (long)p->Ho * p->Wo, image = (long)b * plane;
    to_channels_last(x->data + (long)b * C * plane, plane, C, scratch->x_last);
    to_channels_last(y->data + (long)b * C * out_plane, out_plane, C, scratch->y_last);
    to_channels_last(y->grad + (long)b * C * out_plane, out_plane, C, scratch->dy_last);
    for (long e = 0; e < plane * C; e++) scratch->G_last[e] = 0;
    for (long q = 0; q < plane; q++) scratch->h_image[q] = 0;
    for (long centre = 0; centre < out_plane; centre++) {
        Window win;
        build_window(p, w, s, b, (int)(centre / p->Wo), (int)(centre % p->Wo), &win, scratch);
        real r = p->r[(long)b * out_plane + centre];
        const real *y_p = scratch->y_last + centre * C, *dy_p = scratch->dy_last + centre * C;
        if (ds) {
            long at = image + (long)win.py * p->W + win.px;
            double s_p = s->data[at], dot = centre_support_dot(p, &win, y_p, dy_p, scratch);
            ds[at] += (real)(r * dot / (s_p * s_p * s_p));
        }
        if (dx || dw) centre_scatter(p, &win, r, dy_p, dot_double(dy_p, y_p, C), scratch);
    }
    for (int c = 0; dx && c < C; c++) {
        real *dx_plane = dx + ((long)b * C + c) * plane;
        const real *w_image = w->data + image;
        for (long q = 0; q < plane; q++) dx_plane[q] += w_image[q] * scratch->G_last[q * C + c];
    }
    for (long q = 0; dw && q < plane; q++) {
        double x_dot_G = dot_double(scratch->x_last + q * C, scratch->G_last + q * C, C);
        dw[image + q] += (real)(x_dot_G - scratch->h_image[q]);
    }
}

/* One ImageScratch per thread, carved out of the arena. */
static ImageScratch *image_scratch(Tape *tape, const Pool2d *p, int with_backward) {
    int threads = omp_get_max_threads();
    size_t C = (size_t)p->C, plane = (size_t)p->H * p->W, out_plane = (size_t)p->Ho * p->Wo;
    size_t ky = 2 * (size_t)p->radius_y + 1, kx = 2 * (size_t)p->radius_x + 1;
    ImageScratch *scratch = tape_save(tape, (size_t)threads * sizeof(ImageScratch));
    for (int t = 0; t < threads; t++) {
        ImageScratch *mine = &scratch[t];
        mine->x_last = tape_save(tape, plane * C * sizeof(real));
        mine->y_last = tape_save(tape, out_plane * C * sizeof(real));
        mine->gy = tape_save(tape, ky * sizeof(real));
        mine->gx = tape_save(tape, kx * sizeof(real));
        mine->A = tape_save(tape, ky * kx * sizeof(real));
        if (!with_backward) continue;
        mine->dy_last = tape_save(tape, out_plane * C * sizeof(real));
        mine->G_last = tape_save(tape, plane * C * sizeof(real));
        mine->h_image = tape_save(tape, plane * sizeof(double));
        mine->M = tape_save(tape, C * sizeof(real));
    }
    return scratch;
}

/* Whether to split the images over threads: several images, and enough work to pay for it. */
static int pool2d_parallel(const Pool2d *p) {
    long work = (long)p->B * p->Ho * p->Wo * (2L * p->radius_y + 1) * (2L * p->radius_x + 1) * p->C;
    return p->B > 1 && work >= PARALLEL_MIN_WORK;
}

static void contextpool2d_backward(Tape *tape, TapeRecord *record) {
    const Pool2d *p = record->saved;
    Tensor *x = record->inputs[0], *w = record->inputs[1], *s = record->inputs[2];
    Tensor *y = record->output;
    real *dx = tape_grad(tape, x), *dw = tape_grad(tape, w), *ds = tape_grad(tape, s);
    ImageScratch *scratch = image_scratch(tape, p, 1);
#pragma omp parallel for schedule(static) if (pool2d_parallel(p))
    for (int b = 0; b < p->B; b++)
        pool2d_image_backward(p, x, w, s, y, &scratch[omp_get_thread_num()], dx, dw, ds, b);
}

static void check_contextpool2d(const Tensor *x, const Tensor *w, const Tensor *s, int radius,
                                int stride, real eps) {
    const char *op = "op_contextpool2d";
    char shape[64];
    if (x->ndim != 4)
        cpool_fail("%s: x must be (B, C, H, W), got %s", op, TENSOR_SHAPE_STR(x, shape));
    int image_shape[3] = {x->shape[0], x->shape[2], x->shape[3]};
    check_shape_matches(op, "w", "(B, H, W)", w, 3, image_shape, x);
    check_shape_matches(op, "s", "(B, H, W)", s, 3, image_shape, x);
    check_eps_and_radius(op, eps, radius);
    if (stride != 1 && stride != 2) cpool_fail("%s: stride must be 1 or 2, got %d", op, stride);
    check_support_sizes(op, s);
}

Tensor *op_contextpool2d(Tape *tape, Tensor *x, Tensor *w, Tensor *s, int radius, int stride,
                         real eps) {
    check_contextpool2d(x, w, s, radius, stride, eps);
    Pool2d p = {.B = x->shape[0], .C = x->shape[1], .H = x->shape[2], .W = x->shape[3]};
    p.stride = stride;
    p.Ho = (p.H + stride - 1) / stride;
    p.Wo = (p.W + stride - 1) / stride;
    p.radius_y = min_int(radius, max_int(p.H - 1, 0));
    p.radius_x = min_int(radius, max_int(p.W - 1, 0));
    p.r = tape_save(tape, (size_t)p.B * p.Ho * p.Wo * sizeof(real));
    ImageScratch *scratch = image_scratch(tape, &p, 0);
    Tensor *y = tape_tensor(tape, 4, (int[]){p.B, p.C, p.Ho, p.Wo});
#pragma omp parallel for schedule(static) if (pool2d_parallel(&p))
    for (int b = 0; b < p.B; b++)
        pool2d_image(&p, x, w, s, eps, &scratch[omp_get_thread_num()], y->data, b);

    Tensor *inputs[3] = {x, w, s};
    TapeRecord *record = tape_record(tape, "contextpool2d", contextpool2d_backward, y, 3, inputs);
    if (record) {
        record->saved = tape_save(tape, sizeof(Pool2d));
        *(Pool2d *)record->saved = p;
    }
    return y;
}
