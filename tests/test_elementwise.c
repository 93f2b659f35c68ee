/* test_elementwise.c - the elementwise ops: binary ops with broadcasting (ops_binary.c) and the
 * unary ops (ops_unary.c). Hand-computed values and derivatives (the reference numbers are
 * PyTorch 1.13's in float64), broadcast shapes and the reductions their backward performs, the
 * extreme inputs of the saturating functions, masked_fill and dropout, and every bad input. */
#include "test_util.h"

#include <stdlib.h>

#include "ops.h"

#ifdef CPOOL_DOUBLE
static const double TOL = 1e-13; /* libm in double: a few ulps */
#else
static const double TOL = 1e-6; /* computed in double, rounded to float */
#endif

/* An owned tensor holding n_values values, which must fill it (or none: zeros). Written
 * make(2, (int[]){2, 2}, VALUES(1, 2, 3, 4), requires_grad) or make(..., ZEROS, ...). */
#define VALUES(...)                                                                                \
    (const double[]){__VA_ARGS__}, (long)(sizeof((double[]){__VA_ARGS__}) / sizeof(double))
#define ZEROS NULL, 0

static Tensor *make(int ndim, const int *shape, const double *values, long n_values,
                    int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    if (n_values > 0 && n_values != t->size)
        fail_msg("test data: %ld values for %ld elements", n_values, t->size);
    for (long i = 0; i < n_values; i++) t->data[i] = (real)values[i];
    return t;
}

static void expect_shape(const Tensor *t, int ndim, const int *shape) {
    char got[64], want[64];
    if (t->ndim != ndim || (ndim > 0 && memcmp(t->shape, shape, (size_t)ndim * sizeof(int)) != 0))
        fail_msg("shape %s, expected %s", TENSOR_SHAPE_STR(t, got),
                 shape_string(ndim, shape, want, sizeof want));
}

/* Backward from y with upstream gradient 1 in every element: dx = the sum of dy/dx over y. */
static void backward_ones(Tape *tape, Tensor *y) {
    real *seed = tape_save(tape, (size_t)y->size * sizeof(real));
    for (long i = 0; i < y->size; i++) seed[i] = 1;
    tape_backward_from(tape, y, seed);
}

/* |got - expected| <= rel |expected| for each element: for values far below 1. */
static void expect_relative(const double *expected, const real *got, long n, double rel,
                            const char *what) {
    for (long i = 0; i < n; i++)
        if (!(fabs((double)got[i] - expected[i]) <= rel * fabs(expected[i])))
            fail_msg("%s: element %ld: expected %.17g, got %.17g", what, i, expected[i],
                     (double)got[i]);
}

/* --- Binary ops --------------------------------------------------------------------------- */

static void binary_ops_on_equal_shapes(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = make(2, (int[]){2, 2}, VALUES(1, -2, 3.5, 4), 1);
    Tensor *b = make(2, (int[]){2, 2}, VALUES(2, 0.5, -1, 8), 1);
    assert_close(((double[]){3, -1.5, 2.5, 12}), op_add(tape, a, b)->data, 4, TOL, "add");
    assert_close(((double[]){-1, -2.5, 4.5, -4}), op_sub(tape, a, b)->data, 4, TOL, "sub");
    assert_close(((double[]){2, -1, -3.5, 32}), op_mul(tape, a, b)->data, 4, TOL, "mul");
    Tensor *y = op_div(tape, a, b);
    assert_close(((double[]){0.5, -4, -3.5, 0.5}), y->data, 4, TOL, "div");
    /* d(a/b)/da = 1/b, d(a/b)/db = -a/b^2. */
    backward_ones(tape, y);
    assert_close(((double[]){0.5, 2, -1, 0.125}), a->grad, 4, TOL, "div da");
    assert_close(((double[]){-0.25, 8, -3.5, -0.0625}), b->grad, 4, TOL, "div db");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
}

static void bias_broadcasts_along_leading_dims_and_its_gradient_sums_over_them(void **state) {
    (void)state;
    Tape *tape = tape_create();
    double x_values[12];
    for (int i = 0; i < 12; i++) x_values[i] = i;
    Tensor *x = make(3, (int[]){2, 2, 3}, x_values, 12, 1);
    Tensor *bias = make(1, (int[]){3}, VALUES(10, 20, 30), 1);
    Tensor *y = op_add(tape, x, bias);
    expect_shape(y, 3, (int[]){2, 2, 3});
    assert_close(((double[]){10, 21, 32, 13, 24, 35, 16, 27, 38, 19, 30, 41}), y->data, 12, TOL,
                 "x + bias");
    /* dy_i = i: dbias_d = sum over the 4 rows of dy[row, d] = (0+3+6+9, 1+4+7+10, ...). */
    real seed[12];
    for (int i = 0; i < 12; i++) seed[i] = (real)i;
    tape_backward_from(tape, y, seed);
    assert_close(((double[]){18, 22, 26}), bias->grad, 3, TOL, "dbias");
    assert_close(x_values, x->grad, 12, TOL, "dx = dy");
    tape_free(tape);
    tensor_free(x);
    tensor_free(bias);
}

static void column_times_row_is_the_outer_product(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = make(2, (int[]){3, 1}, VALUES(1, 2, 3), 1);
    Tensor *b = make(2, (int[]){1, 4}, VALUES(10, 20, 30, 40), 1);
    Tensor *y = op_mul(tape, a, b);
    expect_shape(y, 2, (int[]){3, 4});
    assert_close(((double[]){10, 20, 30, 40, 20, 40, 60, 80, 30, 60, 90, 120}), y->data, 12, TOL,
                 "outer product");
    /* da_i = sum_j b_j = 100, db_j = sum_i a_i = 6. */
    backward_ones(tape, y);
    assert_close(((double[]){100, 100, 100}), a->grad, 3, TOL, "da");
    assert_close(((double[]){6, 6, 6, 6}), b->grad, 4, TOL, "db");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
}

static void scalar_broadcasts_against_anything(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *s = make(0, NULL, VALUES(2), 1);
    Tensor *x = make(2, (int[]){2, 2}, VALUES(1, -4, 0.5, 8), 1);
    Tensor *y = op_div(tape, x, s);
    expect_shape(y, 2, (int[]){2, 2});
    assert_close(((double[]){0.5, -2, 0.25, 4}), y->data, 4, TOL, "x / s");
    /* d(x/s)/ds = -x/s^2 summed: -(1 - 4 + 0.5 + 8) / 4 = -1.375. */
    backward_ones(tape, y);
    assert_close(((double[]){-1.375}), s->grad, 1, TOL, "ds of x / s");
    assert_close(((double[]){0.5, 0.5, 0.5, 0.5}), x->grad, 4, TOL, "dx of x / s");

    tensor_zero_grad(s);
    tensor_zero_grad(x);
    tape_reset(tape);
    y = op_sub(tape, s, x); /* s - x */
    assert_close(((double[]){1, 6, 1.5, -6}), y->data, 4, TOL, "s - x");
    backward_ones(tape, y);
    assert_close(((double[]){4}), s->grad, 1, TOL, "ds of s - x");
    assert_close(((double[]){-1, -1, -1, -1}), x->grad, 4, TOL, "dx of s - x");

    tape_reset(tape);
    y = op_mul(tape, s, s); /* 0-d with 0-d */
    expect_shape(y, 0, NULL);
    assert_close(((double[]){4}), y->data, 1, TOL, "s * s");
    tape_free(tape);
    tensor_free(s);
    tensor_free(x);
}

static void size_one_dims_broadcast_on_both_sides(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = make(3, (int[]){2, 1, 3}, VALUES(1, 2, 3, 4, 5, 6), 1);
    Tensor *b = make(2, (int[]){4, 1}, VALUES(100, 200, 300, 400), 1);
    Tensor *y = op_sub(tape, a, b);
    expect_shape(y, 3, (int[]){2, 4, 3});
    /* y[i, j, k] = a[i, 0, k] - b[j, 0]. */
    assert_close(((double[]){-99, -98, -97}), y->data, 3, TOL, "y[0, 0, :]");
    assert_close(((double[]){-396, -395, -394}), y->data + 21, 3, TOL, "y[1, 3, :]");
    /* Each a element is read by 4 outputs, each b element by 2 * 3, with sign -1. */
    backward_ones(tape, y);
    assert_close(((double[]){4, 4, 4, 4, 4, 4}), a->grad, 6, TOL, "da");
    assert_close(((double[]){-6, -6, -6, -6}), b->grad, 4, TOL, "db");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
}

static void leading_size_one_dims_stay_in_the_result(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = make(3, (int[]){1, 1, 3}, VALUES(1, 2, 3), 0);
    Tensor *b = make(1, (int[]){3}, VALUES(1, 1, 1), 0);
    expect_shape(op_add(tape, a, b), 3, (int[]){1, 1, 3});
    expect_shape(op_add(tape, b, a), 3, (int[]){1, 1, 3});
    Tensor *empty = make(2, (int[]){0, 3}, ZEROS, 0);
    expect_shape(op_mul(tape, empty, b), 2, (int[]){0, 3});
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
    tensor_free(empty);
}

/* x (2, 2, 2) against b (2, 1): the general walk, where b's broadcast dims are not leading. */
static void reductions_in_the_backward_of_mul_and_div(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(3, (int[]){2, 2, 2}, VALUES(1, 2, 3, 4, 5, 6, 7, 8), 1);
    Tensor *b = make(2, (int[]){2, 1}, VALUES(2, -4), 1);
    backward_ones(tape, op_mul(tape, x, b));
    /* db[j] = sum of x[i, j, k] over i, k: (1+2+5+6, 3+4+7+8). */
    assert_close(((double[]){14, 22}), b->grad, 2, TOL, "mul db");
    assert_close(((double[]){2, 2, -4, -4, 2, 2, -4, -4}), x->grad, 8, TOL, "mul dx");

    tensor_zero_grad(x);
    tensor_zero_grad(b);
    tape_reset(tape);
    backward_ones(tape, op_div(tape, x, b));
    /* db[j] = -sum x / b[j]^2: -14 / 4 and -22 / 16. */
    assert_close(((double[]){-3.5, -1.375}), b->grad, 2, TOL, "div db");
    assert_close(((double[]){0.5, 0.5, -0.25, -0.25, 0.5, 0.5, -0.25, -0.25}), x->grad, 8, TOL,
                 "div dx");
    tape_free(tape);
    tensor_free(x);
    tensor_free(b);
}

static void input_on_both_sides_gets_both_contributions(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(1, (int[]){3}, VALUES(1, -2, 3), 1);
    backward_ones(tape, op_mul(tape, x, x)); /* d(x^2)/dx = 2x */
    assert_close(((double[]){2, -4, 6}), x->grad, 3, TOL, "d(x*x)/dx");
    tape_free(tape);
    tensor_free(x);
}

static void constant_input_gets_no_gradient(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(1, (int[]){2}, VALUES(1, 2), 1);
    Tensor *c = make(1, (int[]){2}, VALUES(3, 4), 0);
    backward_ones(tape, op_mul(tape, c, x));
    assert_close(((double[]){3, 4}), x->grad, 2, TOL, "dx");
    assert_null(c->grad);
    tape_reset(tape);
    op_add(tape, c, c);
    assert_int_equal(tape->n_records, 0);
    tape_free(tape);
    tensor_free(x);
    tensor_free(c);
}

/* add (and sub's first input) hands its output's gradient buffer to an input that has none yet
 * instead of copying it (ops_binary.c). The input then adds its other contributions into that
 * buffer, and the other input gets a copy of its own. Intermediates u = 2x and v = 3x, each also
 * read by an op recorded BEFORE the add (so its backward runs after and adds into the handed
 * buffer), seed s:
 *     z = (u + v) + u v:   dz/du = 1 + v, dz/dv = 1 + u,  dx = s (2 (1 + 3x) + 3 (1 + 2x))
 *                                                         = s (5 + 12 x)
 *     z = (u - v) + u v:   dx = s (2 (1 + 3x) + 3 (-1 + 2x)) = s (-1 + 12 x)
 *     z = u + u, z = u - u:  dx = 2 (2 s) and 0 (the second side adds into the handed buffer) */
static void add_hands_its_gradient_on_and_each_input_still_gets_its_own(void **state) {
    (void)state;
    Tensor *x = make(1, (int[]){4}, VALUES(1, -2, 0.5, 3), 1);
    const double seed[4] = {1, -0.5, 2, 0.25};
    real seed_real[4];
    for (int i = 0; i < 4; i++) seed_real[i] = (real)seed[i];
    Tape *tape = tape_create();
    Tensor *filler = tensor_create(1, (int[]){4096}, 0);
    tensor_fill(filler, 1);
    for (int op = 0; op < 4; op++) {
        tensor_zero_grad(x);
        tape_reset(tape);
        op_scale(tape, filler, 7); /* the arena holds 7s, not zeros, before the run */
        tape_reset(tape);
        Tensor *u = op_scale(tape, x, 2), *v = op_scale(tape, x, 3), *z;
        if (op < 2) {
            Tensor *product = op_mul(tape, u, v);
            Tensor *sum = op == 0 ? op_add(tape, u, v) : op_sub(tape, u, v);
            z = op_add(tape, sum, product);
        } else {
            z = op == 2 ? op_add(tape, u, u) : op_sub(tape, u, u);
        }
        tape_backward_from(tape, z, seed_real);
        double expected[4];
        for (int i = 0; i < 4; i++) {
            double xi = x->data[i];
            expected[i] = op == 0   ? seed[i] * (5 + 12 * xi)
                          : op == 1 ? seed[i] * (-1 + 12 * xi)
                          : op == 2 ? 4 * seed[i]
                                    : 0;
        }
        const char *what[] = {"(u + v) + u v", "(u - v) + u v", "u + u", "u - u"};
        assert_close(expected, x->grad, 4, TOL, what[op]);
    }
    tape_free(tape);
    tensor_free(x);
    tensor_free(filler);
}

/* The flat index into t of the output element at multi-index `index` (ndim entries), reading
 * t right-aligned and its size-1 dims at 0: broadcasting by its definition. */
static long naive_index(const Tensor *t, int ndim, const int *index) {
    long flat = 0;
    for (int k = 0; k < t->ndim; k++) {
        int d = k + ndim - t->ndim;
        flat = flat * t->shape[k] + (t->shape[k] == 1 ? 0 : index[d]);
    }
    return flat;
}

/* Two random tensors whose shapes broadcast to an ndim-dimensional shape of sizes 2 or 3: each
 * keeps some of its trailing dims and sets each kept dim to 1 or not. b is in [1, 2) (a divisor).
 */
static void random_broadcast_pair(Rng *rng, int ndim, Tensor **a, Tensor **b) {
    int shape[TENSOR_MAX_DIMS], shape_a[TENSOR_MAX_DIMS], shape_b[TENSOR_MAX_DIMS];
    int ndim_a = rng_int(rng, ndim + 1), ndim_b = rng_int(rng, ndim + 1);
    for (int d = 0; d < ndim; d++) shape[d] = 2 + rng_int(rng, 2);
    for (int k = 0; k < ndim_a; k++) shape_a[k] = rng_int(rng, 2) ? shape[k + ndim - ndim_a] : 1;
    for (int k = 0; k < ndim_b; k++) shape_b[k] = rng_int(rng, 2) ? shape[k + ndim - ndim_b] : 1;
    *a = make(ndim_a, shape_a, ZEROS, 1);
    *b = make(ndim_b, shape_b, ZEROS, 1);
    for (long i = 0; i < (*a)->size; i++) (*a)->data[i] = (real)rng_range(rng, -2, 2);
    for (long i = 0; i < (*b)->size; i++) (*b)->data[i] = (real)rng_range(rng, 1, 2);
}

/* Right-aligned, the larger size of each pair. */
static void expect_broadcast_shape(const Tensor *y, const Tensor *a, const Tensor *b) {
    int ndim = a->ndim > b->ndim ? a->ndim : b->ndim;
    assert_int_equal(y->ndim, ndim);
    for (int d = 0; d < ndim; d++) {
        int from_end = ndim - 1 - d;
        int size_a = from_end < a->ndim ? a->shape[a->ndim - 1 - from_end] : 1;
        int size_b = from_end < b->ndim ? b->shape[b->ndim - 1 - from_end] : 1;
        assert_int_equal(y->shape[d], size_a > size_b ? size_a : size_b);
    }
}

/* y = a (op) b and the gradients after backward from seed, against a loop over y's
 * multi-index that applies the definition: y[index] = a[index_a] op b[index_b], and each
 * gradient element sums the contributions of every output that read it. */
static void expect_definition(int op, const Tensor *a, const Tensor *b, const Tensor *y,
                              const real *seed) {
    double *expected_da = calloc((size_t)a->size, sizeof(double));
    double *expected_db = calloc((size_t)b->size, sizeof(double));
    int index[TENSOR_MAX_DIMS] = {0};
    for (long i = 0; i < y->size; i++) {
        long ia = naive_index(a, y->ndim, index), ib = naive_index(b, y->ndim, index);
        double va = a->data[ia], vb = b->data[ib], dy = seed[i];
        double value[4] = {va + vb, va - vb, va * vb, va / vb};
        double da[4] = {dy, dy, dy * vb, dy / vb}, db[4] = {dy, -dy, dy * va, -dy * va / vb / vb};
        if (fabs(y->data[i] - value[op]) > TOL * fmax(1, fabs(value[op])))
            fail_msg("op %d: y[%ld] = %.9g, expected %.9g", op, i, (double)y->data[i], value[op]);
        expected_da[ia] += da[op];
        expected_db[ib] += db[op];
        for (int d = y->ndim - 1; d >= 0 && ++index[d] == y->shape[d]; d--) index[d] = 0;
    }
    assert_close(expected_da, a->grad, a->size, 10 * TOL, "da against the definition");
    assert_close(expected_db, b->grad, b->size, 10 * TOL, "db against the definition");
    free(expected_da);
    free(expected_db);
}

/* 2000 random pairs, cycling through the four ops and 0 to 6 output dims (4 and 7 are coprime,
 * so every op meets every ndim): the fast paths and the general walk against the definition. */
static void broadcast_matches_the_definition_on_random_shapes(void **state) {
    (void)state;
    Tensor *(*const ops[4])(Tape *, Tensor *, Tensor *) = {op_add, op_sub, op_mul, op_div};
    Rng rng;
    rng_seed(&rng, 3);
    for (int trial = 0; trial < 2000; trial++) {
        int op = trial % 4;
        Tensor *a, *b;
        random_broadcast_pair(&rng, trial % (TENSOR_MAX_DIMS + 1), &a, &b);
        Tape *tape = tape_create();
        Tensor *y = ops[op](tape, a, b);
        expect_broadcast_shape(y, a, b);
        real *seed = tape_save(tape, (size_t)y->size * sizeof(real));
        for (long i = 0; i < y->size; i++) seed[i] = (real)rng_range(&rng, -1, 1);
        tape_backward_from(tape, y, seed);
        expect_definition(op, a, b, y, seed);
        tape_free(tape);
        tensor_free(a);
        tensor_free(b);
    }
}

static void shapes_that_do_not_broadcast_fail(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = make(2, (int[]){2, 3}, ZEROS, 0);
    Tensor *b = make(1, (int[]){4}, ZEROS, 0);
    Tensor *c = make(2, (int[]){3, 2}, ZEROS, 0);
    Tensor *d = make(3, (int[]){3, 1, 2}, ZEROS, 0); /* (3, 1, 3) would fit */
    EXPECT_FAIL(op_add(tape, a, b), "op_add: shapes (2, 3) and (4) do not broadcast");
    EXPECT_FAIL(op_sub(tape, a, c), "op_sub: shapes (2, 3) and (3, 2) do not broadcast");
    EXPECT_FAIL(op_mul(tape, c, a), "op_mul: shapes (3, 2) and (2, 3) do not broadcast");
    EXPECT_FAIL(op_div(tape, d, a), "op_div: shapes (3, 1, 2) and (2, 3) do not broadcast");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
    tensor_free(c);
    tensor_free(d);
}

/* --- Unary ops: a table of values and derivatives ---------------------------------------- */

static Tensor *scale_minus_3(Tape *tape, Tensor *x) {
    return op_scale(tape, x, -3);
}
static Tensor *pow_2_5(Tape *tape, Tensor *x) {
    return op_pow(tape, x, (real)2.5);
}
static Tensor *pow_3(Tape *tape, Tensor *x) {
    return op_pow(tape, x, 3);
}
static Tensor *pow_0(Tape *tape, Tensor *x) {
    return op_pow(tape, x, 0);
}
static Tensor *pow_minus_1(Tape *tape, Tensor *x) {
    return op_pow(tape, x, -1);
}
static Tensor *clamp_minus_1_2(Tape *tape, Tensor *x) {
    return op_clamp(tape, x, -1, 2);
}

typedef struct UnaryCase {
    const char *name;
    Tensor *(*op)(Tape *tape, Tensor *x);
    int n;
    double x[5], y[5], dx[5]; /* dx: the derivative at x (backward with dy = 1) */
} UnaryCase;

static const UnaryCase UNARY_CASES[] = {
    {"neg", op_neg, 3, {-1.5, 0, 2}, {1.5, 0, -2}, {-1, -1, -1}},
    {"scale by -3", scale_minus_3, 2, {-1.5, 2}, {4.5, -6}, {-3, -3}},
    {"pow 2.5", pow_2_5, 3, {0.25, 1, 4}, {0.03125, 1, 32}, {0.3125, 2.5, 20}},
    {"pow 3 (negative base)", pow_3, 3, {-2, 0, 1.5}, {-8, 0, 3.375}, {12, 0, 6.75}},
    {"pow 0 (gradient 0, also at 0)", pow_0, 3, {-2, 0, 1.5}, {1, 1, 1}, {0, 0, 0}},
    {"pow -1", pow_minus_1, 2, {-2, 0.5}, {-0.5, 2}, {-0.25, -4}},
    {"exp",
     op_exp,
     3,
     {-1, 0, 2},
     {0.36787944117144233, 1, 7.38905609893065},
     {0.36787944117144233, 1, 7.38905609893065}},
    {"log", op_log, 3, {0.5, 1, 10}, {-0.6931471805599453, 0, 2.302585092994046}, {2, 1, 0.1}},
    {"sqrt",
     op_sqrt,
     3,
     {0.25, 2, 9},
     {0.5, 1.4142135623730951, 3},
     {1, 0.35355339059327373, 0.16666666666666666}},
    {"abs (gradient 0 at 0)", op_abs, 3, {-1.5, 0, 2}, {1.5, 0, 2}, {-1, 0, 1}},
    {"clamp to [-1, 2] (bounds inclusive)",
     clamp_minus_1_2,
     5,
     {-3, -1, 0.5, 2, 5},
     {-1, -1, 0.5, 2, 2},
     {0, 1, 1, 1, 0}},
    {"tanh",
     op_tanh,
     4,
     {-1, 0, 0.5, 3},
     {-0.7615941559557649, 0, 0.46211715726000974, 0.9950547536867305},
     {0.41997434161402614, 1, 0.7864477329659274, 0.009866037165440166}},
    {"sigmoid",
     op_sigmoid,
     3,
     {-2, 0, 1},
     {0.11920292202211755, 0.5, 0.7310585786300049},
     {0.1049935854035065, 0.25, 0.19661193324148185}},
    {"softplus (x itself above 20)",
     op_softplus,
     5,
     {-2, 0, 1, 20, 20.5},
     {0.1269280110429725, 0.6931471805599453, 1.3132616875182228, 20.000000002061153, 20.5},
     {0.11920292202211755, 0.5, 0.7310585786300049, 0.9999999979388464, 1}},
    {"relu (gradient 0 at 0)", op_relu, 3, {-1, 0, 2.5}, {0, 0, 2.5}, {0, 0, 1}},
    {"gelu",
     op_gelu,
     5,
     {-2, -0.5, 0, 1, 3},
     {-0.04550026389635842, -0.15426876936299344, 0, 0.841344746068543, 2.99595030590511},
     {-0.08523180107819692, 0.13250487534383712, 0.5, 1.0833154705876864, 1.011945647204184}},
};
enum { N_UNARY_CASES = sizeof UNARY_CASES / sizeof UNARY_CASES[0] };

static void unary_ops_match_hand_computed_values_and_derivatives(void **state) {
    (void)state;
    for (int k = 0; k < N_UNARY_CASES; k++) {
        const UnaryCase *c = &UNARY_CASES[k];
        char what[96];
        Tape *tape = tape_create();
        Tensor *x = make(1, &c->n, c->x, c->n, 1);
        Tensor *y = c->op(tape, x);
        expect_shape(y, 1, &c->n);
        snprintf(what, sizeof what, "%s: value", c->name);
        assert_close(c->y, y->data, c->n, TOL, what);
        backward_ones(tape, y);
        snprintf(what, sizeof what, "%s: derivative", c->name);
        assert_close(c->dx, x->grad, c->n, TOL, what);
        tape_free(tape);
        tensor_free(x);
    }
}

static void unary_ops_keep_the_shape_and_accumulate(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(3, (int[]){2, 1, 2}, VALUES(0.5, 1, 2, 4), 1);
    Tensor *y = op_add(tape, op_log(tape, x), op_sqrt(tape, x)); /* x feeds two ops */
    expect_shape(y, 3, (int[]){2, 1, 2});
    backward_ones(tape, y);
    /* 1/x + 1/(2 sqrt x). */
    assert_close(((double[]){2 + 0.70710678118654752, 1.5, 0.5 + 0.35355339059327376, 0.25 + 0.25}),
                 x->grad, 4, TOL, "d(log x + sqrt x)/dx");
    Tensor *scalar = make(0, NULL, VALUES(-3), 1);
    expect_shape(op_relu(tape, scalar), 0, NULL);
    tape_free(tape);
    tensor_free(x);
    tensor_free(scalar);
}

static void outside_the_domain_gives_nan_and_infinity_as_pytorch(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(1, (int[]){2}, VALUES(-4, 0), 1);
    Tensor *y = op_pow(tape, x, (real)0.5);
    assert_true(isnan(y->data[0]));
    assert_true(y->data[1] == 0);
    backward_ones(tape, y);
    assert_true(isnan(x->grad[0]) && isinf(x->grad[1]) && x->grad[1] > 0);

    tape_reset(tape);
    tensor_zero_grad(x);
    y = op_sqrt(tape, x);
    assert_true(isnan(y->data[0]));
    backward_ones(tape, y);
    assert_true(isinf(x->grad[1]) && x->grad[1] > 0); /* 1 / (2 sqrt 0) */

    tape_reset(tape);
    y = op_log(tape, x);
    assert_true(isnan(y->data[0]) && isinf(y->data[1]) && y->data[1] < 0);
    tape_free(tape);
    tensor_free(x);
}

static void clamp_with_lo_above_hi_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(1, (int[]){2}, ZEROS, 1);
    EXPECT_FAIL(op_clamp(tape, x, 2, 1), "op_clamp: lo 2 must not exceed hi 1");
    EXPECT_FAIL(op_clamp(tape, x, NAN, 1), "op_clamp: lo nan must not exceed hi 1");
    tape_free(tape);
    tensor_free(x);
}

/* --- Extreme inputs: finite values and the right limits ---------------------------------- */

static const double EXTREMES[] = {-1000, -50, 50, 1000};
enum { N_EXTREMES = 4 };

/* y = op(x) and dy/dx at the extremes; every value finite. */
static void at_extremes(Tensor *(*op)(Tape *, Tensor *), Tape *tape, Tensor **x, Tensor **y) {
    *x = make(1, (int[]){N_EXTREMES}, EXTREMES, N_EXTREMES, 1);
    *y = op(tape, *x);
    backward_ones(tape, *y);
    for (int i = 0; i < N_EXTREMES; i++) {
        if (!isfinite((*y)->data[i])) fail_msg("value at %g is not finite", EXTREMES[i]);
        if (!isfinite((*x)->grad[i])) fail_msg("derivative at %g is not finite", EXTREMES[i]);
    }
}

static void sigmoid_saturates_to_0_and_1(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x, *y;
    at_extremes(op_sigmoid, tape, &x, &y);
    /* sigmoid(-50) = e^-50 / (1 + e^-50) = 1.9287498479639178e-22, not 0: the stable form. */
    expect_relative(((double[]){1.9287498479639178e-22}), y->data + 1, 1, 1e-6, "sigmoid(-50)");
    expect_relative(((double[]){1.9287498479639178e-22}), x->grad + 1, 1, 1e-6, "sigmoid'(-50)");
    assert_close(((double[]){0, 1, 1}), ((real[]){y->data[0], y->data[2], y->data[3]}), 3, 0,
                 "sigmoid(-1000), (50), (1000)");
    assert_close(((double[]){0, 0, 0}), ((real[]){x->grad[0], x->grad[2], x->grad[3]}), 3, 0,
                 "sigmoid' at -1000, 50, 1000");
    tape_free(tape);
    tensor_free(x);
}

static void softplus_is_zero_on_the_left_and_x_on_the_right(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x, *y;
    at_extremes(op_softplus, tape, &x, &y);
    /* log1p(e^-50) = 1.9287498479639178e-22: log(1 + e^x) would round it to 0. */
    expect_relative(((double[]){1.9287498479639178e-22}), y->data + 1, 1, 1e-6, "softplus(-50)");
    expect_relative(((double[]){1.9287498479639178e-22}), x->grad + 1, 1, 1e-6, "softplus'(-50)");
    assert_close(((double[]){0, 50, 1000}), ((real[]){y->data[0], y->data[2], y->data[3]}), 3, 0,
                 "softplus(-1000), (50), (1000)");
    assert_close(((double[]){0, 1, 1}), ((real[]){x->grad[0], x->grad[2], x->grad[3]}), 3, 0,
                 "softplus' at -1000, 50, 1000");
    tape_free(tape);
    tensor_free(x);
}

/* gelu' = Phi(x) + x phi(x) against double, on a grid over [-16, 16] (through the zero of gelu'
 * at -0.75, the left tail where y is subnormal (x < -13.2) and 0) and at tiny x down to
 * subnormals, where the float32 backward does not divide y by x. Each side's Phi and phi are
 * a few float ulps from exact (tests/test_vmath.c), and Phi = y / x adds two roundings: TOL. */
static void gelu_derivative_matches_double_from_tails_to_zero(void **state) {
    (void)state;
    enum { GRID = 3201, TINY = 8 };
    const double tiny[TINY] = {0x1p-19, -0x1p-19, 0x1p-21, -0x1p-30, 1e-40, -1e-45, 0, -0.0};
    Tensor *x = tensor_create(1, (int[]){GRID + TINY}, 1);
    for (int i = 0; i < GRID; i++) x->data[i] = (real)(-16 + 0.01 * i);
    for (int i = 0; i < TINY; i++) x->data[GRID + i] = (real)tiny[i];
    double expected[GRID + TINY];
    for (int i = 0; i < GRID + TINY; i++) {
        double v = x->data[i];
        expected[i] = 0.5 * erfc(-v * M_SQRT1_2) + v * exp(-0.5 * v * v) / sqrt(2 * M_PI);
    }
    Tape *tape = tape_create();
    backward_ones(tape, op_gelu(tape, x));
    assert_close(expected, x->grad, GRID + TINY, TOL, "gelu' on [-16, 16] and near 0");
    tape_free(tape);
    tensor_free(x);
}

/* gelu's backward stores into a fresh gradient buffer (an intermediate's) and adds into one
 * that exists (a leaf's): both give the same bits. The tape's memory is first filled with
 * other values, so that a store that should have been made shows. */
static void gelu_backward_stores_or_adds_alike(void **state) {
    (void)state;
    enum { N = 1000 };
    Tensor *x = tensor_create(1, (int[]){N}, 1);
    for (int i = 0; i < N; i++) x->data[i] = (real)(8 * sin(0.7 * i));
    real *seed = malloc(N * sizeof(real)), *added = malloc(N * sizeof(real));
    for (int i = 0; i < N; i++) seed[i] = (real)cos(0.3 * i);
    Tape *tape = tape_create();
    tape_backward_from(tape, op_gelu(tape, x), seed); /* x->grad exists: adds */
    memcpy(added, x->grad, N * sizeof(real));
    tensor_zero_grad(x);
    tape_reset(tape);
    Tensor *filler = tensor_create(1, (int[]){1 << 16}, 0);
    tensor_fill(filler, 1);
    op_scale(tape, filler, 7); /* 256 KB of 7s where the arena starts: the new buffer's garbage */
    tape_reset(tape);
    Tensor *copy = op_scale(tape, x, 1); /* an intermediate: its gradient is new, stored */
    Tensor *y = op_gelu(tape, copy);
    tape_backward_from(tape, y, seed);
    for (int i = 0; i < N; i++)
        if (x->grad[i] != added[i])
            fail_msg("gelu' at x = %.9g: stored %.9g, added %.9g", (double)x->data[i],
                     (double)x->grad[i], (double)added[i]);
    tape_free(tape);
    free(seed);
    free(added);
    tensor_free(x);
    tensor_free(filler);
}

static void gelu_is_zero_on_the_left_and_x_on_the_right(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x, *y;
    at_extremes(op_gelu, tape, &x, &y);
    assert_close(((double[]){0, 0, 50, 1000}), y->data, N_EXTREMES, 0, "gelu at the extremes");
    assert_close(((double[]){0, 0, 1, 1}), x->grad, N_EXTREMES, 0, "gelu' at the extremes");
    tape_free(tape);
    tensor_free(x);
}

static void tanh_saturates_to_minus_1_and_1(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x, *y;
    at_extremes(op_tanh, tape, &x, &y);
    assert_close(((double[]){-1, -1, 1, 1}), y->data, N_EXTREMES, 0, "tanh at the extremes");
    assert_close(((double[]){0, 0, 0, 0}), x->grad, N_EXTREMES, 0, "tanh' at the extremes");
    tape_free(tape);
    tensor_free(x);
}

/* --- masked_fill -------------------------------------------------------------------------- */

static void masked_fill_replaces_where_the_mask_is_set(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(2, (int[]){2, 3}, VALUES(1, 2, 3, 4, 5, 6), 1);
    Tensor *columns = make(1, (int[]){3}, VALUES(0, 1, 0), 0);          /* broadcast over rows */
    Tensor *rows = make(2, (int[]){2, 1}, VALUES(0, -0.5), 0);          /* any nonzero is set */
    Tensor *full = make(2, (int[]){2, 3}, VALUES(1, 0, 0, 0, 0, 1), 0); /* same shape */
    Tensor *y = op_masked_fill(tape, x, columns, -100);
    assert_close(((double[]){1, -100, 3, 4, -100, 6}), y->data, 6, TOL, "column mask");
    backward_ones(tape, y);
    assert_close(((double[]){1, 0, 1, 1, 0, 1}), x->grad, 6, TOL, "dx: 0 where filled");
    assert_close(((double[]){1, 2, 3, -7, -7, -7}), op_masked_fill(tape, x, rows, -7)->data, 6, TOL,
                 "row mask");
    assert_close(((double[]){0, 2, 3, 4, 5, 0}), op_masked_fill(tape, x, full, 0)->data, 6, TOL,
                 "full mask");
    y = op_masked_fill(tape, x, columns, -INFINITY); /* the attention use */
    assert_true(isinf(y->data[1]) && y->data[1] < 0 && y->data[0] == 1);
    tape_free(tape);
    tensor_free(x);
    tensor_free(columns);
    tensor_free(rows);
    tensor_free(full);
}

static void masked_fill_with_a_mask_that_does_not_broadcast_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(2, (int[]){2, 3}, ZEROS, 1);
    Tensor *short_mask = make(1, (int[]){2}, ZEROS, 0);
    Tensor *long_mask = make(3, (int[]){1, 2, 3}, ZEROS, 0);
    EXPECT_FAIL(op_masked_fill(tape, x, short_mask, 0),
                "op_masked_fill: mask of shape (2) does not broadcast to x of shape (2, 3)");
    EXPECT_FAIL(op_masked_fill(tape, x, long_mask, 0),
                "op_masked_fill: mask of shape (1, 2, 3) does not broadcast to x of shape (2, 3)");
    tape_free(tape);
    tensor_free(x);
    tensor_free(short_mask);
    tensor_free(long_mask);
}

/* --- dropout ------------------------------------------------------------------------------ */

static void dropout_with_p_0_is_the_identity_and_draws_nothing(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Rng rng, untouched;
    rng_seed(&rng, 5);
    untouched = rng;
    Tensor *x = make(1, (int[]){3}, VALUES(1, -2, 3), 1);
    Tensor *y = op_dropout(tape, x, 0, &rng);
    assert_close(((double[]){1, -2, 3}), y->data, 3, 0, "y = x");
    assert_memory_equal(&rng, &untouched, sizeof rng);
    backward_ones(tape, y);
    assert_close(((double[]){1, 1, 1}), x->grad, 3, 0, "dx = dy");
    tape_free(tape);
    tensor_free(x);
}

static void dropout_keeps_about_1_minus_p_and_scales_kept_values(void **state) {
    (void)state;
    enum { N = 10000 };
    const real p = (real)0.3; /* compared as stored: in float32 that is 0.30000001 */
    Tape *tape = tape_create();
    Rng rng, replay;
    rng_seed(&rng, 17);
    replay = rng;
    Tensor *x = make(1, (int[]){N}, ZEROS, 1);
    for (long i = 0; i < N; i++) x->data[i] = (real)(1 + i % 7);
    Tensor *y = op_dropout(tape, x, p, &rng);
    backward_ones(tape, y);
    long kept = 0;
    double scale = 1 / (1 - (double)p);
    for (long i = 0; i < N; i++) {
        /* The documented draw: one rng_uniform per element, in order; u < p drops. */
        int keep = rng_uniform(&replay) >= (double)p;
        double expected = keep ? x->data[i] * scale : 0;
        if (fabs(y->data[i] - expected) > TOL * fabs(expected))
            fail_msg("element %ld: expected %g, got %g", i, expected, (double)y->data[i]);
        if (fabs(x->grad[i] - (keep ? scale : 0)) > TOL * scale)
            fail_msg("gradient %ld: expected %g, got %g", i, keep ? scale : 0, (double)x->grad[i]);
        kept += keep;
    }
    assert_memory_equal(&rng, &replay, sizeof rng); /* exactly N draws */
    /* Binomial(N, 0.7): standard deviation sqrt(N 0.21) = 46; allow 5 of them. */
    assert_in_range(kept, 7000 - 230, 7000 + 230);
    tape_free(tape);
    tensor_free(x);
}

static void dropout_is_deterministic_given_the_seed(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(1, (int[]){64}, ZEROS, 0);
    tensor_fill(x, 1);
    Rng first, second;
    rng_seed(&first, 99);
    rng_seed(&second, 99);
    Tensor *a = op_dropout(tape, x, (real)0.5, &first);
    Tensor *b = op_dropout(tape, x, (real)0.5, &second);
    assert_memory_equal(a->data, b->data, 64 * sizeof(real));
    Tensor *c = op_dropout(tape, x, (real)0.5, &first); /* the stream moved on: another mask */
    assert_memory_not_equal(a->data, c->data, 64 * sizeof(real));
    tape_free(tape);
    tensor_free(x);
}

static void dropout_rate_outside_0_1_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = make(1, (int[]){4}, ZEROS, 1);
    Rng rng;
    rng_seed(&rng, 1);
    EXPECT_FAIL(op_dropout(tape, x, 1, &rng), "op_dropout: p must be in [0, 1), got 1");
    EXPECT_FAIL(op_dropout(tape, x, (real)-0.1, &rng), "op_dropout: p must be in [0, 1), got -0.1");
    EXPECT_FAIL(op_dropout(tape, x, NAN, &rng), "op_dropout: p must be in [0, 1), got nan");
    tape_free(tape);
    tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(binary_ops_on_equal_shapes),
        cmocka_unit_test(bias_broadcasts_along_leading_dims_and_its_gradient_sums_over_them),
        cmocka_unit_test(column_times_row_is_the_outer_product),
        cmocka_unit_test(scalar_broadcasts_against_anything),
        cmocka_unit_test(size_one_dims_broadcast_on_both_sides),
        cmocka_unit_test(leading_size_one_dims_stay_in_the_result),
        cmocka_unit_test(reductions_in_the_backward_of_mul_and_div),
        cmocka_unit_test(input_on_both_sides_gets_both_contributions),
        cmocka_unit_test(constant_input_gets_no_gradient),
        cmocka_unit_test(add_hands_its_gradient_on_and_each_input_still_gets_its_own),
        cmocka_unit_test(broadcast_matches_the_definition_on_random_shapes),
        cmocka_unit_test(shapes_that_do_not_broadcast_fail),
        cmocka_unit_test(unary_ops_match_hand_computed_values_and_derivatives),
        cmocka_unit_test(unary_ops_keep_the_shape_and_accumulate),
        cmocka_unit_test(outside_the_domain_gives_nan_and_infinity_as_pytorch),
        cmocka_unit_test(clamp_with_lo_above_hi_fails),
        cmocka_unit_test(sigmoid_saturates_to_0_and_1),
        cmocka_unit_test(softplus_is_zero_on_the_left_and_x_on_the_right),
        cmocka_unit_test(gelu_derivative_matches_double_from_tails_to_zero),
        cmocka_unit_test(gelu_is_zero_on_the_left_and_x_on_the_right),
        cmocka_unit_test(gelu_backward_stores_or_adds_alike),
        cmocka_unit_test(tanh_saturates_to_minus_1_and_1),
        cmocka_unit_test(masked_fill_replaces_where_the_mask_is_set),
        cmocka_unit_test(masked_fill_with_a_mask_that_does_not_broadcast_fails),
        cmocka_unit_test(dropout_with_p_0_is_the_identity_and_draws_nothing),
        cmocka_unit_test(dropout_keeps_about_1_minus_p_and_scales_kept_values),
        cmocka_unit_test(dropout_is_deterministic_given_the_seed),
        cmocka_unit_test(dropout_rate_outside_0_1_fails),
    };
    return cmocka_run_group_tests_name("elementwise (" REAL_NAME ")", tests, NULL, NULL);
}
