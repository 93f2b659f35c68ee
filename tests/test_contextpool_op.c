/* test_contextpool_op.c - the fused, banded ContextPool ops: op_contextpool1d, op_contextpool2d.
 *
 *   - hand values on three tokens (and one 2x2 image), worked out in the comments;
 *   - agreement with a dense O(N^2) reference written here straight from the formula, forward
 *     and every gradient, and (1-D) with the same formula composed from ordinary tape ops;
 *   - properties: causal outputs and gradients never see the future; uniform weights and a huge
 *     support give the window mean, a tiny support gives each token itself; with eps = 0 the
 *     weights' gradient is orthogonal to the weights; a radius past the sequence, a batch of
 *     several sequences, the thread count, no-grad mode and stride 2 change nothing they should
 *     not;
 *   - every bad argument.
 *
 * Tolerances, with the error measured as |got - expected| / max(1, |expected|). In float64 the op
 * and the references differ only in rounding: the bar is 1e-12 (measured: 5e-15). In float32
 * the op rounds every product and sum to 24 bits (6e-8) while the references work in double on
 * the same inputs; windows of up to 49 tokens (121 pixels) and the cancellation inside dw and ds
 * (dy_i . (x_j - y_i) is small when x_j is close to y_i) make that 1e-6 for y (measured:
 * 1.9e-7) and 5e-6 for the gradients (measured: 1.1e-6). */
#include "test_util.h"

#include <omp.h>
#include <stdlib.h>

#include "ops.h"
#include "rng.h"

static const int is_double = sizeof(real) == sizeof(double);
#define TOL_Y    (is_double ? 1e-12 : 1e-6)
#define TOL_GRAD (is_double ? 1e-12 : 5e-6)

/* --- Helpers -------------------------------------------------------------------------------- */

static Tensor *tensor_of(int ndim, const int *shape, const double *values, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)values[i];
    return t;
}

static Tensor *uniform_tensor(Rng *rng, int ndim, const int *shape, double lo, double hi,
                              int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, lo, hi);
    return t;
}

/* Support sizes log-uniform in [0.5, 8): the layer's range, peaked and flat windows alike. */
static Tensor *support_tensor(Rng *rng, int ndim, const int *shape, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)exp(rng_range(rng, log(0.5), log(8)));
    return t;
}

static double *doubles(long n) {
    double *values = calloc((size_t)(n > 0 ? n : 1), sizeof(double));
    assert_non_null(values);
    return values;
}

static real *random_seed(Rng *rng, long n) {
    real *seed = malloc((size_t)(n > 0 ? n : 1) * sizeof(real));
    assert_non_null(seed);
    for (long i = 0; i < n; i++) seed[i] = (real)rng_range(rng, -1, 1);
    return seed;
}

/* The op's inputs and the upstream gradient dy of one random case. */
typedef struct Inputs {
    Tensor *x, *w, *s;
    real *dy;
} Inputs;

static void free_inputs(Inputs *in) {
    tensor_free(in->x);
    tensor_free(in->w);
    tensor_free(in->s);
    free(in->dy);
}

static void zero_grads(Inputs *in) {
    tensor_zero_grad(in->x);
    tensor_zero_grad(in->w);
    tensor_zero_grad(in->s);
}

/* A copy of y and the three gradients after a run, for bit-for-bit comparisons. */
typedef struct Snapshot {
    real *y, *dx, *dw, *ds;
    long y_size, x_size, positions;
} Snapshot;

static real *copy_of(const real *values, long n) {
    real *copy = malloc((size_t)(n > 0 ? n : 1) * sizeof(real));
    assert_non_null(copy);
    memcpy(copy, values, (size_t)n * sizeof(real));
    return copy;
}

static Snapshot snapshot(const Tensor *y, const Inputs *in) {
    long positions = in->w->size;
    return (Snapshot){copy_of(y->data, y->size),
                      copy_of(in->x->grad, in->x->size),
                      copy_of(in->w->grad, positions),
                      copy_of(in->s->grad, positions),
                      y->size,
                      in->x->size,
                      positions};
}

/* y and the gradients are the same bits as in the snapshot. */
static void assert_same_bits(const Snapshot *before, const Tensor *y, const Inputs *in) {
    assert_memory_equal(before->y, y->data, (size_t)before->y_size * sizeof(real));
    assert_memory_equal(before->dx, in->x->grad, (size_t)before->x_size * sizeof(real));
    assert_memory_equal(before->dw, in->w->grad, (size_t)before->positions * sizeof(real));
    assert_memory_equal(before->ds, in->s->grad, (size_t)before->positions * sizeof(real));
}

static void snapshot_free(Snapshot *snap) {
    free(snap->y);
    free(snap->dx);
    free(snap->dw);
    free(snap->ds);
}

/* Expected y and gradients, in double. */
typedef struct Expected {
    double *y, *dx, *dw, *ds;
} Expected;

static Expected expected_alloc(long y_size, long x_size, long positions) {
    return (Expected){doubles(y_size), doubles(x_size), doubles(positions), doubles(positions)};
}

static void expected_free(Expected *e) {
    free(e->y);
    free(e->dx);
    free(e->dw);
    free(e->ds);
}

/* --- The dense 1-D reference: O(N^2) loops straight from the formula ----------------------
 *   A_ij = exp(-(i - j)^2 / (2 s_i^2)) w_j  if j in band(i), else 0
 *   y_i  = sum_j A_ij x_j / (Z_i + eps),  Z_i = sum_j A_ij
 *   dx_j = sum_i A_ij dy_i / (Z_i + eps)
 *   dA_ij = (dy_i . x_j - dy_i . y_i) / (Z_i + eps)
 *   dw_j = sum_i dA_ij g_ij,  ds_i = sum_j dA_ij w_j g_ij (i - j)^2 / s_i^3 */
typedef struct Case1d {
    int B, N, D, radius, causal;
    double eps;
} Case1d;

static int in_band(int i, int j, int radius, int causal) {
    return abs(i - j) <= radius && (!causal || j <= i);
}

static double gaussian(int distance_squared, double s) {
    return exp(-distance_squared / (2 * s * s));
}

static double dot(const real *a, const double *b, int D) {
    double total = 0;
    for (int d = 0; d < D; d++) total += a[d] * b[d];
    return total;
}

static double dot_reals(const real *a, const real *b, int D) {
    double total = 0;
    for (int d = 0; d < D; d++) total += (double)a[d] * b[d];
    return total;
}

static void reference1d(Case1d c, const Inputs *in, Expected *e) {
    int N = c.N, D = c.D;
    for (int b = 0; b < c.B; b++) {
        const real *x = in->x->data + (long)b * N * D, *w = in->w->data + (long)b * N;
        const real *s = in->s->data + (long)b * N, *dy = in->dy + (long)b * N * D;
        double *y = e->y + (long)b * N * D, *dx = e->dx + (long)b * N * D;
        double *dw = e->dw + (long)b * N, *ds = e->ds + (long)b * N;
        for (int i = 0; i < N; i++) {
            double Z = 0;
            for (int j = 0; j < N; j++)
                if (in_band(i, j, c.radius, c.causal))
                    Z += gaussian((i - j) * (i - j), s[i]) * w[j];
            for (int j = 0; j < N; j++) {
                if (!in_band(i, j, c.radius, c.causal)) continue;
                double A = gaussian((i - j) * (i - j), s[i]) * w[j];
                for (int d = 0; d < D; d++) y[i * D + d] += A * x[j * D + d] / (Z + c.eps);
            }
            for (int j = 0; j < N; j++) {
                if (!in_band(i, j, c.radius, c.causal)) continue;
                double g = gaussian((i - j) * (i - j), s[i]), A = g * w[j];
                for (int d = 0; d < D; d++) dx[j * D + d] += A * dy[i * D + d] / (Z + c.eps);
                double dA = (dot_reals(dy + i * D, x + j * D, D) - dot(dy + i * D, y + i * D, D)) /
                            (Z + c.eps);
                dw[j] += dA * g;
                ds[i] += dA * w[j] * g * (i - j) * (i - j) / ((double)s[i] * s[i] * s[i]);
            }
        }
    }
}

static Inputs random_inputs1d(Rng *rng, Case1d c) {
    int positions[2] = {c.B, c.N};
    return (Inputs){uniform_tensor(rng, 3, (int[]){c.B, c.N, c.D}, -1, 1, 1),
                    uniform_tensor(rng, 2, positions, 0.05, 1, 1),
                    support_tensor(rng, 2, positions, 1), random_seed(rng, (long)c.B * c.N * c.D)};
}

/* Runs the op on the tape with upstream gradient dy; returns y (valid until the tape resets). */
static Tensor *run1d(Tape *tape, Case1d c, Inputs *in) {
    zero_grads(in);
    Tensor *y = op_contextpool1d(tape, in->x, in->w, in->s, c.radius, c.causal, (real)c.eps);
    tape_backward_from(tape, y, in->dy);
    return y;
}

static void assert_agrees(const Expected *e, const Tensor *y, const Inputs *in, const char *what) {
    char label[160];
    snprintf(label, sizeof label, "%s: y", what);
    assert_close(e->y, y->data, y->size, TOL_Y, label);
    snprintf(label, sizeof label, "%s: dx", what);
    assert_close(e->dx, in->x->grad, in->x->size, TOL_GRAD, label);
    snprintf(label, sizeof label, "%s: dw", what);
    assert_close(e->dw, in->w->grad, in->w->size, TOL_GRAD, label);
    snprintf(label, sizeof label, "%s: ds", what);
    assert_close(e->ds, in->s->grad, in->s->size, TOL_GRAD, label);
}

/* N = 1, N < R, windows cut at both ends, radius 0, B > 1, causal and not, a large eps, and
 * sizes past the op's threshold for threads (the last two). */
static const Case1d CASES_1D[] = {
    {1, 1, 1, 3, 0, 1e-6},   {3, 1, 4, 0, 1, 1e-6},   {2, 5, 3, 2, 0, 1e-6},
    {2, 5, 3, 2, 1, 1e-6},   {3, 7, 4, 10, 0, 1e-6},  {3, 7, 4, 10, 1, 1e-6},
    {2, 16, 8, 3, 0, 0.3},   {2, 16, 8, 3, 1, 0.3},   {2, 9, 2, 0, 0, 1e-6},
    {1, 40, 5, 24, 0, 1e-6}, {1, 40, 5, 24, 1, 1e-6}, {2, 64, 16, 24, 0, 1e-6},
    {2, 64, 16, 24, 1, 1e-6}};
enum { N_CASES_1D = sizeof CASES_1D / sizeof CASES_1D[0] };

static void contextpool1d_matches_the_dense_formula_forward_and_backward(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 11);
    Tape *tape = tape_create();
    for (int k = 0; k < N_CASES_1D; k++) {
        Case1d c = CASES_1D[k];
        Inputs in = random_inputs1d(&rng, c);
        Expected e = expected_alloc(in.x->size, in.x->size, in.w->size);
        reference1d(c, &in, &e);
        Tensor *y = run1d(tape, c, &in);
        char what[96];
        snprintf(what, sizeof what, "1-D B=%d N=%d D=%d R=%d causal=%d", c.B, c.N, c.D, c.radius,
                 c.causal);
        assert_agrees(&e, y, &in, what);
        expected_free(&e);
        free_inputs(&in);
        tape_reset(tape);
    }
    tape_free(tape);
}

/* --- The same formula composed from tape ops, with an explicit (N, N) matrix ----------------
 *   G = exp(-(i - j)^2 / (2 s_i^2)) * band_mask,  A = G * w_j,  Z = sum_j A,
 *   y = (sum_j A_ij x_j) / (Z + eps)   - the sum over j as a broadcast product and op_sum.
 * Its gradients come from the tape through ops tested elsewhere: an independent backward. */
static Tensor *composed1d(Tape *tape, Case1d c, Tensor *x, Tensor *w, Tensor *s,
                          Tensor *distance_squared, Tensor *band_mask, Tensor *eps) {
    int B = c.B, N = c.N, D = c.D;
    Tensor *s_column = op_reshape(tape, s, 3, (int[]){B, N, 1});
    Tensor *two_variance = op_scale(tape, op_mul(tape, s_column, s_column), 2);
    Tensor *G = op_exp(tape, op_neg(tape, op_div(tape, distance_squared, two_variance)));
    Tensor *A = op_mul(tape, op_mul(tape, G, band_mask), op_reshape(tape, w, 3, (int[]){B, 1, N}));
    Tensor *Z = op_add(tape, op_sum(tape, A, -1, 1), eps); /* (B, N, 1) */
    Tensor *products = op_mul(tape, op_reshape(tape, A, 4, (int[]){B, N, N, 1}),
                              op_reshape(tape, x, 4, (int[]){B, 1, N, D}));
    return op_div(tape, op_sum(tape, products, 2, 0), Z);
}

static void contextpool1d_matches_the_formula_composed_from_tape_ops(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 12);
    Tape *tape = tape_create();
    for (int k = 0; k < N_CASES_1D; k++) {
        Case1d c = CASES_1D[k];
        Tensor *distance_squared = tensor_create(2, (int[]){c.N, c.N}, 0);
        Tensor *band_mask = tensor_create(2, (int[]){c.N, c.N}, 0);
        for (int i = 0; i < c.N; i++)
            for (int j = 0; j < c.N; j++) {
                distance_squared->data[i * c.N + j] = (real)((i - j) * (i - j));
                band_mask->data[i * c.N + j] = (real)in_band(i, j, c.radius, c.causal);
            }
        Tensor *eps = tensor_create(0, NULL, 0);
        eps->data[0] = (real)c.eps;
        Inputs in = random_inputs1d(&rng, c);
        /* The composed version's results, as the expected values. */
        Expected e = expected_alloc(in.x->size, in.x->size, in.w->size);
        zero_grads(&in);
        Tensor *composed = composed1d(tape, c, in.x, in.w, in.s, distance_squared, band_mask, eps);
        tape_backward_from(tape, composed, in.dy);
        for (long i = 0; i < composed->size; i++) e.y[i] = composed->data[i];
        for (long i = 0; i < in.x->size; i++) e.dx[i] = in.x->grad[i];
        for (long i = 0; i < in.w->size; i++) {
            e.dw[i] = in.w->grad[i];
            e.ds[i] = in.s->grad[i];
        }
        tape_reset(tape);
        Tensor *y = run1d(tape, c, &in);
        char what[96];
        snprintf(what, sizeof what, "composed 1-D B=%d N=%d R=%d causal=%d", c.B, c.N, c.radius,
                 c.causal);
        assert_agrees(&e, y, &in, what);
        expected_free(&e);
        free_inputs(&in);
        tensor_free(distance_squared);
        tensor_free(band_mask);
        tensor_free(eps);
        tape_reset(tape);
    }
    tape_free(tape);
}

/* --- The dense 2-D reference ----------------------------------------------------------------
 * Output (u, v) is centred on p = (stride u, stride v) and pools every q with |q_y - p_y| <= R,
 * |q_x - p_x| <= R: A_pq = exp(-|p - q|^2 / (2 s_p^2)) w_q; gradients as in 1-D, the dot
 * products over channels, ds only at the centres. */
typedef struct Case2d {
    int B, C, H, W, radius, stride;
    double eps;
} Case2d;

typedef struct Grid {
    int B, C, H, W, Ho, Wo;
} Grid;

static Grid grid_of(Case2d c) {
    return (Grid){
        c.B, c.C, c.H, c.W, (c.H + c.stride - 1) / c.stride, (c.W + c.stride - 1) / c.stride};
}

/* One centre p of image b: y[c, p] for every channel, then the gradients from dy[c, p]. */
static void reference2d_centre(Case2d c, Grid g, const Inputs *in, Expected *e, int b, int u,
                               int v) {
    long plane = (long)g.H * g.W, out_plane = (long)g.Ho * g.Wo, image = (long)b * plane;
    int py = c.stride * u, px = c.stride * v;
    double s_p = in->s->data[image + (long)py * g.W + px], Z = 0;
    for (int qy = 0; qy < g.H; qy++)
        for (int qx = 0; qx < g.W; qx++)
            if (abs(qy - py) <= c.radius && abs(qx - px) <= c.radius)
                Z += gaussian((qy - py) * (qy - py) + (qx - px) * (qx - px), s_p) *
                     in->w->data[image + (long)qy * g.W + qx];
    double *y_p = doubles(g.C), *dy_p = doubles(g.C);
    for (int ch = 0; ch < g.C; ch++) {
        long out = ((long)b * g.C + ch) * out_plane + (long)u * g.Wo + v;
        dy_p[ch] = in->dy[out];
        for (int qy = 0; qy < g.H; qy++)
            for (int qx = 0; qx < g.W; qx++) {
                if (abs(qy - py) > c.radius || abs(qx - px) > c.radius) continue;
                int d2 = (qy - py) * (qy - py) + (qx - px) * (qx - px);
                double A = gaussian(d2, s_p) * in->w->data[image + (long)qy * g.W + qx];
                y_p[ch] += A * in->x->data[((long)b * g.C + ch) * plane + (long)qy * g.W + qx];
            }
        y_p[ch] /= Z + c.eps;
        e->y[out] = y_p[ch];
    }
    for (int qy = 0; qy < g.H; qy++)
        for (int qx = 0; qx < g.W; qx++) {
            if (abs(qy - py) > c.radius || abs(qx - px) > c.radius) continue;
            int d2 = (qy - py) * (qy - py) + (qx - px) * (qx - px);
            long q = image + (long)qy * g.W + qx;
            double gq = gaussian(d2, s_p), A = gq * in->w->data[q], dA = 0;
            for (int ch = 0; ch < g.C; ch++) {
                long xq = ((long)b * g.C + ch) * plane + (long)qy * g.W + qx;
                e->dx[xq] += A * dy_p[ch] / (Z + c.eps);
                dA += dy_p[ch] * (in->x->data[xq] - y_p[ch]) / (Z + c.eps);
            }
            e->dw[q] += dA * gq;
            e->ds[image + (long)py * g.W + px] += dA * in->w->data[q] * gq * d2 / (s_p * s_p * s_p);
        }
    free(y_p);
    free(dy_p);
}

static void reference2d(Case2d c, const Inputs *in, Expected *e) {
    Grid g = grid_of(c);
    for (int b = 0; b < g.B; b++)
        for (int u = 0; u < g.Ho; u++)
            for (int v = 0; v < g.Wo; v++) reference2d_centre(c, g, in, e, b, u, v);
}

static Inputs random_inputs2d(Rng *rng, Case2d c) {
    Grid g = grid_of(c);
    int positions[3] = {c.B, c.H, c.W};
    return (Inputs){uniform_tensor(rng, 4, (int[]){c.B, c.C, c.H, c.W}, -1, 1, 1),
                    uniform_tensor(rng, 3, positions, 0.05, 1, 1),
                    support_tensor(rng, 3, positions, 1),
                    random_seed(rng, (long)g.B * g.C * g.Ho * g.Wo)};
}

static Tensor *run2d(Tape *tape, Case2d c, Inputs *in) {
    zero_grads(in);
    Tensor *y = op_contextpool2d(tape, in->x, in->w, in->s, c.radius, c.stride, (real)c.eps);
    tape_backward_from(tape, y, in->dy);
    return y;
}

/* A pixel, a row, a column, odd sizes with stride 2, R beyond the image, B > 1, radius 0, a
 * large eps, and (the last two) sizes past the op's threshold for threads. */
static const Case2d CASES_2D[] = {
    {1, 1, 1, 1, 2, 1, 1e-6}, {2, 2, 1, 1, 2, 2, 1e-6},   {2, 3, 5, 4, 2, 1, 1e-6},
    {2, 3, 5, 7, 1, 2, 1e-6}, {1, 2, 1, 9, 3, 1, 1e-6},   {1, 2, 1, 9, 3, 2, 1e-6},
    {2, 2, 8, 1, 2, 2, 0.3},  {1, 3, 6, 6, 9, 1, 1e-6},   {2, 2, 7, 9, 24, 2, 1e-6},
    {2, 2, 5, 5, 0, 1, 0.3},  {2, 8, 16, 16, 4, 1, 1e-6}, {3, 4, 15, 13, 5, 2, 1e-6}};
enum { N_CASES_2D = sizeof CASES_2D / sizeof CASES_2D[0] };

static void contextpool2d_matches_the_dense_formula_forward_and_backward(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 21);
    Tape *tape = tape_create();
    for (int k = 0; k < N_CASES_2D; k++) {
        Case2d c = CASES_2D[k];
        Grid g = grid_of(c);
        Inputs in = random_inputs2d(&rng, c);
        Expected e = expected_alloc((long)g.B * g.C * g.Ho * g.Wo, in.x->size, in.w->size);
        reference2d(c, &in, &e);
        Tensor *y = run2d(tape, c, &in);
        assert_int_equal(y->ndim, 4);
        assert_int_equal(y->shape[2], g.Ho);
        assert_int_equal(y->shape[3], g.Wo);
        char what[96];
        snprintf(what, sizeof what, "2-D B=%d C=%d H=%d W=%d R=%d stride=%d", c.B, c.C, c.H, c.W,
                 c.radius, c.stride);
        assert_agrees(&e, y, &in, what);
        expected_free(&e);
        free_inputs(&in);
        tape_reset(tape);
    }
    tape_free(tape);
}

/* --- Hand values ---------------------------------------------------------------------------- */

/* s = 1 / sqrt(2 ln 2) makes g = exp(-d^2 ln 2) = 2^(-d^2): 1, 1/2, 1/16 at d = 0, 1, 2.
 * x = (1, 2, 4), w = (1, 1/2, 1), R = 2, eps = 0:
 *   token 0: A = (1, 1/2 * 1/2, 1/16) = (1, 1/4, 1/16), Z = 21/16,
 *            sum A x = 1 + 1/2 + 1/4 = 28/16, y_0 = 28/21 = 4/3
 *   token 1: A = (1/2, 1/2, 1/2), Z = 3/2, sum A x = 7/2, y_1 = 7/3
 *   token 2: A = (1/16, 1/4, 1), Z = 21/16, sum A x = 1/16 + 1/2 + 4 = 73/16, y_2 = 73/21
 * Causal: token 0 pools only itself, y_0 = 1; token 1: A = (1/2, 1/2), Z = 1, y_1 = 3/2;
 * token 2 as above (its window is already j <= 2).
 * Backward with dy = (1, 0, 0), not causal (only token 0 sends gradient):
 *   dx_j = A_0j / Z_0 = (16/21, 4/21, 1/21)
 *   dA_0j = (x_j - y_0) / Z_0 = (-1/3, 2/3, 8/3) * 16/21 = (-16, 32, 128) / 63
 *   dw_j = dA_0j g_0j = (-16, 32 / 2, 128 / 16) / 63 = (-16, 16, 8) / 63
 *   ds_0 = sum_j dA_0j w_j g_0j (0 - j)^2 / s^3 = (32/63 * 1/2 * 1/2 * 1 + 128/63 * 1/16 * 4) / s^3
 *        = (40/63) (2 ln 2)^(3/2);   ds_1 = ds_2 = 0. */
static void contextpool1d_matches_hand_values_on_three_tokens(void **state) {
    (void)state;
    double s_value = 1 / sqrt(2 * log(2));
    Tape *tape = tape_create();
    int shape3[3] = {1, 3, 1}, shape2[2] = {1, 3};
    static const double x_values[] = {1, 2, 4}, w_values[] = {1, 0.5, 1};
    Tensor *x = tensor_of(3, shape3, x_values, 1);
    Tensor *w = tensor_of(2, shape2, w_values, 1);
    Tensor *s = tensor_create(2, shape2, 1);
    tensor_fill(s, (real)s_value);
    const double tol = is_double ? 1e-14 : 1e-6;

    Tensor *y = op_contextpool1d(tape, x, w, s, 2, 0, 0);
    assert_close(((double[]){4.0 / 3, 7.0 / 3, 73.0 / 21}), y->data, 3, tol, "y, not causal");
    tape_backward_from(tape, y, (real[]){1, 0, 0});
    assert_close(((double[]){16.0 / 21, 4.0 / 21, 1.0 / 21}), x->grad, 3, tol, "dx");
    assert_close(((double[]){-16.0 / 63, 16.0 / 63, 8.0 / 63}), w->grad, 3, tol, "dw");
    double ds0 = 40.0 / 63 * pow(2 * log(2), 1.5);
    assert_close(((double[]){ds0, 0, 0}), s->grad, 3, tol, "ds");

    tape_reset(tape);
    y = op_contextpool1d(tape, x, w, s, 2, 1, 0);
    assert_close(((double[]){1, 1.5, 73.0 / 21}), y->data, 3, tol, "y, causal");
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(s);
}

/* A 2x2 image, one channel, radius 1, stride 2: one output, centred on (0, 0), pooling all four
 * pixels. With the s above, g = 2^-(dy^2 + dx^2) = (1, 1/2; 1/2, 1/4); w = 1 and
 * x = (1, 2; 3, 4): y = (1 + 2/2 + 3/2 + 4/4) / (1 + 1/2 + 1/2 + 1/4) = 4.5 / 2.25 = 2. */
static void contextpool2d_matches_hand_values_on_a_2x2_image(void **state) {
    (void)state;
    double s_value = 1 / sqrt(2 * log(2));
    Tape *tape = tape_create();
    static const double x_values[] = {1, 2, 3, 4};
    Tensor *x = tensor_of(4, (int[]){1, 1, 2, 2}, x_values, 0);
    Tensor *w = tensor_create(3, (int[]){1, 2, 2}, 0), *s = tensor_create(3, (int[]){1, 2, 2}, 0);
    tensor_fill(w, 1);
    tensor_fill(s, 9); /* only the centre's s counts */
    s->data[0] = (real)s_value;
    Tensor *y = op_contextpool2d(tape, x, w, s, 1, 2, 0);
    assert_int_equal(y->size, 1);
    assert_close(((double[]){2}), y->data, 1, is_double ? 1e-14 : 1e-6, "y");
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(s);
}

/* --- Causality ------------------------------------------------------------------------------ */

/* Token t and everything before it, bit for bit, whatever comes after t: y_0..y_t, and the
 * gradients of x, w, s at 0..t when dy is zero after t. No gradient reaches tokens after t. */
static void causal_outputs_and_gradients_ignore_the_future(void **state) {
    (void)state;
    enum { N = 12, D = 5, T = 5 };
    Rng rng;
    rng_seed(&rng, 31);
    Tape *tape = tape_create();
    for (int radius = 4; radius <= 24; radius += 20) {
        Case1d c = {2, N, D, radius, 1, 1e-6};
        Inputs in = random_inputs1d(&rng, c);
        for (int b = 0; b < c.B; b++) /* dy only on tokens 0..T */
            for (int i = T + 1; i < N; i++)
                for (int d = 0; d < D; d++) in.dy[((long)b * N + i) * D + d] = 0;
        Snapshot before = snapshot(run1d(tape, c, &in), &in);
        tape_reset(tape);
        for (int b = 0; b < c.B; b++) /* a different future: new x, w and s after token T */
            for (int i = T + 1; i < N; i++) {
                long at = (long)b * N + i;
                for (int d = 0; d < D; d++) in.x->data[at * D + d] = (real)rng_range(&rng, -5, 5);
                in.w->data[at] = (real)rng_range(&rng, 0.05, 1);
                in.s->data[at] = (real)rng_range(&rng, 0.5, 8);
            }
        Tensor *y = run1d(tape, c, &in);
        for (int b = 0; b < c.B; b++) {
            long first = (long)b * N;
            size_t past = T + 1;
            assert_memory_equal(y->data + first * D, before.y + first * D, past * D * sizeof(real));
            assert_memory_equal(in.x->grad + first * D, before.dx + first * D,
                                past * D * sizeof(real));
            assert_memory_equal(in.w->grad + first, before.dw + first, past * sizeof(real));
            assert_memory_equal(in.s->grad + first, before.ds + first, past * sizeof(real));
            for (int i = T + 1; i < N; i++) {
                assert_true(in.w->grad[first + i] == 0 && in.s->grad[first + i] == 0);
                for (int d = 0; d < D; d++) assert_true(in.x->grad[(first + i) * D + d] == 0);
            }
        }
        tape_reset(tape);
        snapshot_free(&before);
        free_inputs(&in);
    }
    tape_free(tape);
}

/* --- Limits of the support size ------------------------------------------------------------- */

/* w = 1 and s = 1e6: g = exp(-d^2 / 2e12) = 1 to 1e-11, so y_i is the plain mean of the tokens
 * in its window (cut at the ends, and at i when causal). eps = 0. */
static void uniform_weights_and_huge_support_give_the_window_mean(void **state) {
    (void)state;
    enum { N = 9, D = 2, R = 3 };
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){1, N, D}, 0);
    Tensor *w = tensor_create(2, (int[]){1, N}, 0), *s = tensor_create(2, (int[]){1, N}, 0);
    for (long e = 0; e < x->size; e++) x->data[e] = (real)sin(1.7 * (double)e);
    tensor_fill(w, 1);
    tensor_fill(s, (real)1e6);
    for (int causal = 0; causal <= 1; causal++) {
        Tensor *y = op_contextpool1d(tape, x, w, s, R, causal, 0);
        double mean[N * D] = {0};
        for (int i = 0; i < N; i++) {
            int count = 0;
            for (int j = 0; j < N; j++) {
                if (!in_band(i, j, R, causal)) continue;
                count++;
                for (int d = 0; d < D; d++) mean[i * D + d] += x->data[j * D + d];
            }
            for (int d = 0; d < D; d++) mean[i * D + d] /= count;
        }
        assert_close(mean, y->data, N * D, is_double ? 1e-10 : 1e-6, "window mean");
    }
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(s);
}

/* s = 0.05: g = exp(-200) ~ 1e-87 at distance 1 (0 in float32), so each token keeps itself:
 * y_i = x_i (eps = 0), in 1-D and in 2-D (stride 1). */
static void tiny_support_gives_each_token_itself(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 41);
    Tape *tape = tape_create();
    Tensor *x = uniform_tensor(&rng, 3, (int[]){2, 7, 3}, -1, 1, 0);
    Tensor *w = uniform_tensor(&rng, 2, (int[]){2, 7}, 0.05, 1, 0);
    Tensor *s = tensor_create(2, (int[]){2, 7}, 0);
    tensor_fill(s, (real)0.05);
    double *expected = doubles(x->size);
    for (long e = 0; e < x->size; e++) expected[e] = x->data[e];
    assert_close(expected, op_contextpool1d(tape, x, w, s, 3, 0, 0)->data, x->size, TOL_Y, "1-D");
    free(expected);

    Tensor *image = uniform_tensor(&rng, 4, (int[]){2, 3, 4, 5}, -1, 1, 0);
    Tensor *w2 = uniform_tensor(&rng, 3, (int[]){2, 4, 5}, 0.05, 1, 0);
    Tensor *s2 = tensor_create(3, (int[]){2, 4, 5}, 0);
    tensor_fill(s2, (real)0.05);
    expected = doubles(image->size);
    for (long e = 0; e < image->size; e++) expected[e] = image->data[e];
    assert_close(expected, op_contextpool2d(tape, image, w2, s2, 2, 1, 0)->data, image->size, TOL_Y,
                 "2-D");
    free(expected);
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(s);
    tensor_free(image);
    tensor_free(w2);
    tensor_free(s2);
}

/* With eps = 0, scaling every weight by c leaves y unchanged (c cancels between sum A x and Z),
 * so the derivative along w itself vanishes: sum_j w_j dw_j = 0 in each sequence and image.
 * (With eps > 0 it is sum_i eps r_i dy_i . y_i instead; see docs/contextpool-backward.md.) */
static void weights_gradient_is_orthogonal_to_the_weights_when_eps_is_zero(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 42);
    Tape *tape = tape_create();
    Case1d c1 = {3, 11, 4, 3, 1, 0};
    Case2d c2 = {2, 3, 7, 6, 2, 2, 0};
    Inputs in1 = random_inputs1d(&rng, c1), in2 = random_inputs2d(&rng, c2);
    run1d(tape, c1, &in1);
    run2d(tape, c2, &in2);
    const Inputs *inputs[2] = {&in1, &in2};
    for (int k = 0; k < 2; k++) {
        const Tensor *w = inputs[k]->w;
        long per_batch = w->size / w->shape[0];
        for (int b = 0; b < w->shape[0]; b++) {
            double along = 0, scale = 0;
            for (long j = b * per_batch; j < (b + 1) * per_batch; j++) {
                along += (double)w->data[j] * w->grad[j];
                scale += fabs((double)w->data[j] * w->grad[j]);
            }
            assert_true(scale > 0);
            assert_true(fabs(along) <= (is_double ? 1e-13 : 1e-6) * scale);
        }
    }
    free_inputs(&in1);
    free_inputs(&in2);
    tape_free(tape);
}

/* --- What must not change the result -------------------------------------------------------- */

/* A radius past the sequence pools the same tokens as radius N - 1: the same bits. */
static void radius_beyond_the_sequence_equals_radius_n_minus_1(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 51);
    Tape *tape = tape_create();
    for (int causal = 0; causal <= 1; causal++) {
        Case1d c = {2, 6, 3, 5, causal, 1e-6};
        Inputs in = random_inputs1d(&rng, c);
        Snapshot radius_5 = snapshot(run1d(tape, c, &in), &in);
        tape_reset(tape);
        c.radius = 1000;
        assert_same_bits(&radius_5, run1d(tape, c, &in), &in);
        tape_reset(tape);
        snapshot_free(&radius_5);
        free_inputs(&in);
    }
    tape_free(tape);
}

/* Sequence b of a batch gives exactly what it gives alone: the batch never mixes. */
static void each_sequence_of_a_batch_pools_as_if_alone(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 52);
    Case1d c = {3, 10, 4, 3, 0, 1e-6}, alone = {1, 10, 4, 3, 0, 1e-6};
    Inputs in = random_inputs1d(&rng, c);
    Tape *tape = tape_create();
    Tensor *y = run1d(tape, c, &in);
    for (int b = 0; b < c.B; b++) {
        long n = (long)c.N * c.D;
        Inputs one = {tensor_create(3, (int[]){1, c.N, c.D}, 1),
                      tensor_create(2, (int[]){1, c.N}, 1), tensor_create(2, (int[]){1, c.N}, 1),
                      malloc((size_t)n * sizeof(real))};
        memcpy(one.x->data, in.x->data + b * n, (size_t)n * sizeof(real));
        memcpy(one.w->data, in.w->data + b * c.N, (size_t)c.N * sizeof(real));
        memcpy(one.s->data, in.s->data + b * c.N, (size_t)c.N * sizeof(real));
        memcpy(one.dy, in.dy + b * n, (size_t)n * sizeof(real));
        Tape *single = tape_create();
        Tensor *y_one = run1d(single, alone, &one);
        assert_memory_equal(y_one->data, y->data + b * n, (size_t)n * sizeof(real));
        assert_memory_equal(one.x->grad, in.x->grad + b * n, (size_t)n * sizeof(real));
        assert_memory_equal(one.w->grad, in.w->grad + b * c.N, (size_t)c.N * sizeof(real));
        assert_memory_equal(one.s->grad, in.s->grad + b * c.N, (size_t)c.N * sizeof(real));
        tape_free(single);
        free_inputs(&one);
    }
    free_inputs(&in);
    tape_free(tape);
}

/* Results and gradients are the same bits on one thread and on the default number (sizes past
 * the op's threshold for threads). The default follows OMP_NUM_THREADS, so `make valgrind`, which
 * sets it to 1 to keep thread stacks out of the leak report, runs a one-thread check here. */
static void results_do_not_depend_on_the_thread_count(void **state) {
    (void)state;
#ifdef _OPENMP
    Rng rng;
    rng_seed(&rng, 53);
    int saved_threads = omp_get_max_threads();
    Case1d c1 = {2, 64, 16, 24, 1, 1e-6};
    Case2d c2 = {3, 8, 16, 16, 4, 2, 1e-6};
    Inputs in1 = random_inputs1d(&rng, c1), in2 = random_inputs2d(&rng, c2);
    Tape *tape = tape_create();
    omp_set_num_threads(1);
    Snapshot one_thread_1d = snapshot(run1d(tape, c1, &in1), &in1);
    Snapshot one_thread_2d = snapshot(run2d(tape, c2, &in2), &in2);
    tape_reset(tape);
    omp_set_num_threads(saved_threads);
    assert_same_bits(&one_thread_1d, run1d(tape, c1, &in1), &in1);
    tape_reset(tape);
    assert_same_bits(&one_thread_2d, run2d(tape, c2, &in2), &in2);
    snapshot_free(&one_thread_1d);
    snapshot_free(&one_thread_2d);
    tape_free(tape);
    free_inputs(&in1);
    free_inputs(&in2);
#endif
}

/* Evaluation: no record and the same output; inputs that need no gradient get none, and the
 * others get exactly what they get when all three need one. */
static void no_grad_and_partial_gradients_change_nothing_else(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 54);
    Case1d c = {2, 9, 3, 3, 0, 1e-6};
    Inputs in = random_inputs1d(&rng, c);
    Tape *tape = tape_create();
    Tensor *y = run1d(tape, c, &in);
    real dx[54], dw[18];
    memcpy(dx, in.x->grad, sizeof dx);
    memcpy(dw, in.w->grad, sizeof dw);

    Tape *eval = tape_create();
    eval->no_grad = 1;
    Tensor *y_eval = op_contextpool1d(eval, in.x, in.w, in.s, c.radius, c.causal, (real)c.eps);
    assert_int_equal(eval->n_records, 0);
    assert_false(y_eval->requires_grad);
    assert_memory_equal(y->data, y_eval->data, sizeof dx);
    tape_free(eval);

    in.s->requires_grad = 0; /* only x and w */
    tape_reset(tape);
    run1d(tape, c, &in);
    assert_memory_equal(dx, in.x->grad, sizeof dx);
    assert_memory_equal(dw, in.w->grad, sizeof dw);
    in.s->requires_grad = 1;
    free_inputs(&in);
    tape_free(tape);
}

/* 2-D on a single row of pixels is 1-D (not causal) along that row: x (B, C, 1, W) holds the
 * sequence (B, W, C) transposed. */
static void contextpool2d_on_one_row_equals_contextpool1d(void **state) {
    (void)state;
    enum { B = 2, C = 3, W = 11, R = 4 };
    Rng rng;
    rng_seed(&rng, 61);
    Inputs image = random_inputs2d(&rng, (Case2d){B, C, 1, W, R, 1, 1e-6});
    Tensor *sequence = tensor_create(3, (int[]){B, W, C}, 0);
    Tensor *w = tensor_create(2, (int[]){B, W}, 0), *s = tensor_create(2, (int[]){B, W}, 0);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < W; i++)
            for (int ch = 0; ch < C; ch++)
                sequence->data[((long)b * W + i) * C + ch] =
                    image.x->data[((long)b * C + ch) * W + i];
    memcpy(w->data, image.w->data, sizeof(real) * B * W);
    memcpy(s->data, image.s->data, sizeof(real) * B * W);
    Tape *tape = tape_create();
    Tensor *y2 = op_contextpool2d(tape, image.x, image.w, image.s, R, 1, (real)1e-6);
    Tensor *y1 = op_contextpool1d(tape, sequence, w, s, R, 0, (real)1e-6);
    double expected[B * C * W];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < W; i++)
            for (int ch = 0; ch < C; ch++)
                expected[((long)b * C + ch) * W + i] = y1->data[((long)b * W + i) * C + ch];
    assert_close(expected, y2->data, B * C * W, is_double ? 1e-14 : 1e-6, "one row");
    tape_free(tape);
    free_inputs(&image);
    tensor_free(sequence);
    tensor_free(w);
    tensor_free(s);
}

/* Stride 2 computes exactly the stride-1 outputs at the even centres, and s gets a gradient
 * only there. */
static void stride_2_keeps_the_even_centres_of_stride_1(void **state) {
    (void)state;
    Case2d c1 = {2, 3, 7, 6, 2, 1, 1e-6}, c2 = {2, 3, 7, 6, 2, 2, 1e-6};
    Rng rng;
    rng_seed(&rng, 62);
    Inputs in = random_inputs2d(&rng, c1);
    Tape *tape = tape_create();
    Tensor *y1 = op_contextpool2d(tape, in.x, in.w, in.s, c1.radius, 1, (real)c1.eps);
    Tensor *y2 = run2d(tape, c2, &in); /* dy was drawn for stride 1: large enough */
    Grid g1 = grid_of(c1), g2 = grid_of(c2);
    for (int bc = 0; bc < c1.B * c1.C; bc++)
        for (int u = 0; u < g2.Ho; u++)
            for (int v = 0; v < g2.Wo; v++)
                assert_true(y2->data[((long)bc * g2.Ho + u) * g2.Wo + v] ==
                            y1->data[((long)bc * g1.Ho + 2 * u) * g1.Wo + 2 * v]);
    for (int b = 0; b < c1.B; b++)
        for (int py = 0; py < c1.H; py++)
            for (int px = 0; px < c1.W; px++) {
                real ds = in.s->grad[((long)b * c1.H + py) * c1.W + px];
                if (py % 2 || px % 2)
                    assert_true(ds == 0);
                else
                    assert_true(ds != 0);
            }
    free_inputs(&in);
    tape_free(tape);
}

/* Empty batches, sequences and images give empty outputs. */
static void empty_inputs_give_empty_outputs(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){2, 0, 4}, 1);
    Tensor *w = tensor_create(2, (int[]){2, 0}, 1), *s = tensor_create(2, (int[]){2, 0}, 1);
    Tensor *y = op_contextpool1d(tape, x, w, s, 3, 1, (real)1e-6);
    assert_int_equal(y->size, 0);
    Tensor *image = tensor_create(4, (int[]){2, 3, 0, 5}, 1);
    Tensor *w2 = tensor_create(3, (int[]){2, 0, 5}, 1), *s2 = tensor_create(3, (int[]){2, 0, 5}, 1);
    Tensor *y2 = op_contextpool2d(tape, image, w2, s2, 3, 2, (real)1e-6);
    assert_int_equal(y2->ndim, 4);
    assert_int_equal(y2->size, 0);
    tape_free(tape);
    tensor_free(x);
    tensor_free(w);
    tensor_free(s);
    tensor_free(image);
    tensor_free(w2);
    tensor_free(s2);
}

/* --- Bad arguments -------------------------------------------------------------------------- */

/* s[1, 3] set to a bad value must fail, naming the op, the element and the value. */
static void expect_bad_support(Tape *tape, Tensor *x, Tensor *w, Tensor *s, double value,
                               const char *where) {
    s->data[1 * 5 + 3] = (real)value;
    EXPECT_FAIL(op_contextpool1d(tape, x, w, s, 2, 0, 0),
                "op_contextpool1d: support sizes s must be positive and finite");
    EXPECT_FAIL(op_contextpool1d(tape, x, w, s, 2, 0, 0), where);
}

static void contextpool1d_rejects_bad_arguments(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){2, 5, 3}, 0), *flat = tensor_create(2, (int[]){2, 5}, 0);
    Tensor *w = tensor_create(2, (int[]){2, 5}, 0), *s = tensor_create(2, (int[]){2, 5}, 0);
    Tensor *short_w = tensor_create(2, (int[]){2, 4}, 0),
           *w3 = tensor_create(3, (int[]){2, 5, 1}, 0);
    tensor_fill(w, 1);
    tensor_fill(s, 2);
    EXPECT_FAIL(op_contextpool1d(tape, flat, w, s, 2, 0, 0),
                "op_contextpool1d: x must be (B, N, D), got (2, 5)");
    EXPECT_FAIL(op_contextpool1d(tape, x, short_w, s, 2, 0, 0),
                "op_contextpool1d: w must be (B, N) = (2, 5) to match x (2, 5, 3), got (2, 4)");
    EXPECT_FAIL(op_contextpool1d(tape, x, w3, s, 2, 0, 0), "w must be (B, N) = (2, 5)");
    EXPECT_FAIL(op_contextpool1d(tape, x, w, short_w, 2, 0, 0),
                "op_contextpool1d: s must be (B, N) = (2, 5) to match x (2, 5, 3), got (2, 4)");
    EXPECT_FAIL(op_contextpool1d(tape, x, w, s, -1, 0, 0),
                "op_contextpool1d: radius must be >= 0, got -1");
    EXPECT_FAIL(op_contextpool1d(tape, x, w, s, 2, 2, 0),
                "op_contextpool1d: causal must be 0 or 1, got 2");
    EXPECT_FAIL(op_contextpool1d(tape, x, w, s, 2, 0, (real)-1e-6),
                "op_contextpool1d: eps must be finite and >= 0, got -1e-06");
    EXPECT_FAIL(op_contextpool1d(tape, x, w, s, 2, 0, (real)NAN), "eps must be finite and >= 0");
    EXPECT_FAIL(op_contextpool1d(tape, x, w, s, 2, 0, (real)INFINITY),
                "eps must be finite and >= 0");
    expect_bad_support(tape, x, w, s, 0, "s[1, 3] = 0");
    expect_bad_support(tape, x, w, s, -0.5, "s[1, 3] = -0.5");
    expect_bad_support(tape, x, w, s, NAN, "s[1, 3] = nan");
    expect_bad_support(tape, x, w, s, INFINITY, "s[1, 3] = inf");
    assert_int_equal(tape->n_records, 0);
    tape_free(tape);
    tensor_free(x);
    tensor_free(flat);
    tensor_free(w);
    tensor_free(s);
    tensor_free(short_w);
    tensor_free(w3);
}

static void contextpool2d_rejects_bad_arguments(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(4, (int[]){2, 3, 4, 5}, 0),
           *x3 = tensor_create(3, (int[]){2, 4, 5}, 0);
    Tensor *w = tensor_create(3, (int[]){2, 4, 5}, 0), *s = tensor_create(3, (int[]){2, 4, 5}, 0);
    Tensor *wrong = tensor_create(3, (int[]){2, 5, 4}, 0),
           *w2 = tensor_create(2, (int[]){2, 20}, 0);
    tensor_fill(w, 1);
    tensor_fill(s, 2);
    EXPECT_FAIL(op_contextpool2d(tape, x3, w, s, 2, 1, 0),
                "op_contextpool2d: x must be (B, C, H, W), got (2, 4, 5)");
    EXPECT_FAIL(op_contextpool2d(tape, x, wrong, s, 2, 1, 0),
                "op_contextpool2d: w must be (B, H, W) = (2, 4, 5) to match x (2, 3, 4, 5), got "
                "(2, 5, 4)");
    EXPECT_FAIL(op_contextpool2d(tape, x, w2, s, 2, 1, 0), "w must be (B, H, W) = (2, 4, 5)");
    EXPECT_FAIL(op_contextpool2d(tape, x, w, wrong, 2, 1, 0),
                "op_contextpool2d: s must be (B, H, W) = (2, 4, 5)");
    EXPECT_FAIL(op_contextpool2d(tape, x, w, s, -3, 1, 0),
                "op_contextpool2d: radius must be >= 0, got -3");
    EXPECT_FAIL(op_contextpool2d(tape, x, w, s, 2, 0, 0),
                "op_contextpool2d: stride must be 1 or 2, got 0");
    EXPECT_FAIL(op_contextpool2d(tape, x, w, s, 2, 3, 0),
                "op_contextpool2d: stride must be 1 or 2, got 3");
    EXPECT_FAIL(op_contextpool2d(tape, x, w, s, 2, 1, (real)-1),
                "op_contextpool2d: eps must be finite and >= 0, got -1");
    s->data[(1 * 4 + 2) * 5 + 3] = (real)-2;
    EXPECT_FAIL(
        op_contextpool2d(tape, x, w, s, 2, 1, 0),
        "op_contextpool2d: support sizes s must be positive and finite, got s[1, 2, 3] = -2");
    assert_int_equal(tape->n_records, 0);
    tape_free(tape);
    tensor_free(x);
    tensor_free(x3);
    tensor_free(w);
    tensor_free(s);
    tensor_free(wrong);
    tensor_free(w2);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(contextpool1d_matches_hand_values_on_three_tokens),
        cmocka_unit_test(contextpool2d_matches_hand_values_on_a_2x2_image),
        cmocka_unit_test(contextpool1d_matches_the_dense_formula_forward_and_backward),
        cmocka_unit_test(contextpool1d_matches_the_formula_composed_from_tape_ops),
        cmocka_unit_test(contextpool2d_matches_the_dense_formula_forward_and_backward),
        cmocka_unit_test(causal_outputs_and_gradients_ignore_the_future),
        cmocka_unit_test(uniform_weights_and_huge_support_give_the_window_mean),
        cmocka_unit_test(tiny_support_gives_each_token_itself),
        cmocka_unit_test(weights_gradient_is_orthogonal_to_the_weights_when_eps_is_zero),
        cmocka_unit_test(radius_beyond_the_sequence_equals_radius_n_minus_1),
        cmocka_unit_test(each_sequence_of_a_batch_pools_as_if_alone),
        cmocka_unit_test(results_do_not_depend_on_the_thread_count),
        cmocka_unit_test(no_grad_and_partial_gradients_change_nothing_else),
        cmocka_unit_test(contextpool2d_on_one_row_equals_contextpool1d),
        cmocka_unit_test(stride_2_keeps_the_even_centres_of_stride_1),
        cmocka_unit_test(empty_inputs_give_empty_outputs),
        cmocka_unit_test(contextpool1d_rejects_bad_arguments),
        cmocka_unit_test(contextpool2d_rejects_bad_arguments),
    };
    return cmocka_run_group_tests_name("contextpool_op (" REAL_NAME ")", tests, NULL, NULL);
}
