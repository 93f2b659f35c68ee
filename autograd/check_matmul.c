/* check_matmul.c - gradient checks for the ops in ops_matmul.c: matmul and linear. */
#include "gradcheck.h"
#include "ops.h"

typedef struct Transposes {
    int trans_a, trans_b;
} Transposes;

static Tensor *matmul_fn(Tape *tape, Tensor *const *in, void *context) {
    const Transposes *t = context;
    return op_matmul(tape, in[0], in[1], t->trans_a, t->trans_b);
}

/* How the operands are batched. */
typedef struct Layout {
    int n_batch_dims;         /* 0: plain 2-d matmul */
    int batch[2];             /* the leading dims */
    int a_batched, b_batched; /* 0: that side is 2-d and shared by the batch */
} Layout;

static const Layout layouts[] = {
    {0, {0, 0}, 0, 0}, /* (M, K) x (K, N) */
    {1, {3, 0}, 1, 1}, /* (3, M, K) x (3, K, N) */
    {2, {2, 3}, 1, 1}, /* 4-d */
    {2, {3, 1}, 1, 1}, /* 4-d with a batch dim of 1 */
    {1, {3, 0}, 1, 0}, /* B shared: (3, M, K) x (K, N) */
    {2, {2, 3}, 1, 0}, /* B shared, 4-d */
    {1, {3, 0}, 0, 1}, /* A shared: (M, K) x (3, K, N) */
};
enum { N_LAYOUTS = sizeof layouts / sizeof layouts[0] };

/* (M, K, N) triples: all ones, ones in each place, odd sizes. */
static const int sizes[][3] = {{1, 1, 1}, {1, 3, 2}, {4, 1, 3}, {3, 5, 1}, {5, 4, 3}, {2, 7, 5}};
enum { N_SIZES = sizeof sizes / sizeof sizes[0] };

/* An operand's shape: the batch dims (if batched), then (rows, cols) or (cols, rows). */
static int operand_shape(const Layout *layout, int batched, int rows, int cols, int trans,
                         int *shape) {
    int ndim = 0;
    for (int d = 0; batched && d < layout->n_batch_dims; d++) shape[ndim++] = layout->batch[d];
    shape[ndim++] = trans ? cols : rows;
    shape[ndim++] = trans ? rows : cols;
    return ndim;
}

/* Every transpose combination on every layout, with the sizes cycling through the table. */
static void check_matmul(Rng *rng, GradcheckStats *stats) {
    int case_index = 0;
    for (int l = 0; l < N_LAYOUTS; l++)
        for (int trans = 0; trans < 4; trans++, case_index++) {
            const Layout *layout = &layouts[l];
            Transposes t = {trans & 1, trans >> 1};
            const int *mkn = sizes[case_index % N_SIZES];
            int a_shape[4], b_shape[4];
            int a_ndim =
                operand_shape(layout, layout->a_batched, mkn[0], mkn[1], t.trans_a, a_shape);
            int b_ndim =
                operand_shape(layout, layout->b_batched, mkn[1], mkn[2], t.trans_b, b_shape);
            Tensor *in[2] = {gradcheck_input(rng, a_ndim, a_shape, -1, 1),
                             gradcheck_input(rng, b_ndim, b_shape, -1, 1)};
            gradcheck(matmul_fn, &t, in, 2, &(GradcheckOptions){.seed = rng_u64(rng)}, stats, NULL);
            gradcheck_free(in, 2);
        }
}

static Tensor *linear_fn(Tape *tape, Tensor *const *in, void *context) {
    int has_bias = *(const int *)context;
    return op_linear(tape, in[0], in[1], has_bias ? in[2] : NULL);
}

/* x of 1, 2 and 3 dims (one row, rows, a batch of rows), each with and without a bias. */
static void check_linear(Rng *rng, GradcheckStats *stats) {
    const int x_shapes[][3] = {{4, 0, 0}, {3, 4, 0}, {2, 3, 4}};
    for (int s = 0; s < 3; s++)
        for (int has_bias = 0; has_bias <= 1; has_bias++) {
            int ndim = s + 1, in = x_shapes[s][s], out = 3 + s;
            Tensor *inputs[3] = {gradcheck_input(rng, ndim, x_shapes[s], -1, 1),
                                 gradcheck_input(rng, 2, (int[]){out, in}, -1, 1),
                                 gradcheck_input(rng, 1, &out, -1, 1)};
            gradcheck(linear_fn, &has_bias, inputs, 2 + has_bias,
                      &(GradcheckOptions){.seed = rng_u64(rng)}, stats, NULL);
            gradcheck_free(inputs, 3);
        }
}

const OpCheck check_table_matmul[] = {
    /* matmul is bilinear: L = sum(r * A B) is linear in each single element, so the central
     * difference has no truncation error at all and only rounding remains, about
     * eps * |L| / h = 1e-16 * O(10) / 1e-6 ~ 1e-9 relative at these sizes. 1e-8 keeps a margin
     * of ten while any wrong transpose or missed batch term gives an O(1) error. */
    {"matmul", check_matmul, 1e-8},
    /* linear: L = sum(r * (x W^T + b)) is bilinear in (x, W) and linear in b: the same holds. */
    {"linear_op", check_linear, 1e-8}, /* "linear" is the layer (check_layers.c) */
    {0},
};
