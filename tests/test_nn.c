/* test_nn.c - softmax, log_softmax, cross_entropy, layernorm and embedding: hand values,
 * numerical stability, gradients, and every bad argument. */
#include "test_util.h"

#include <omp.h>
#include <stdlib.h>

#include "ops.h"

/* Hand values are exact or computed in double; float32 keeps ~7 digits. */
static const double tolerance = sizeof(real) == sizeof(double) ? 1e-12 : 1e-6;

/* An owned tensor holding `values` (shape->size of them). */
static Tensor *tensor_of(int ndim, const int *shape, const double *values, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)values[i];
    return t;
}

static void assert_shape(const Tensor *t, int ndim, const int *shape) {
    char got[64], want[64];
    if (t->ndim != ndim || memcmp(t->shape, shape, (size_t)ndim * sizeof(int)) != 0)
        fail_msg("shape %s, expected %s", TENSOR_SHAPE_STR(t, got),
                 shape_string(ndim, shape, want, sizeof want));
}

static void assert_all_finite(const Tensor *t) {
    for (long i = 0; i < t->size; i++)
        if (!isfinite(t->data[i])) fail_msg("element %ld is %g", i, (double)t->data[i]);
}

/* softmax of (1, 2, 3), in double: e^j / (e + e^2 + e^3). */
static void softmax_123(double *p) {
    double total = exp(1) + exp(2) + exp(3);
    for (int j = 0; j < 3; j++) p[j] = exp(j + 1) / total;
}

static const double logits_2x3[] = {1, 2, 3, 0, 0, 0};

/* --- softmax ------------------------------------------------------------------------------ */
static void softmax_matches_hand_values_row_by_row(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, logits_2x3, 0);
    Tensor *y = op_softmax(tape, x);
    assert_shape(y, 2, (int[]){2, 3});
    double expected[6];
    softmax_123(expected);
    for (int j = 3; j < 6; j++) expected[j] = 1.0 / 3;
    assert_close(expected, y->data, 6, tolerance, "softmax");
    tape_free(tape);
    tensor_free(x);
}

static void softmax_rows_sum_to_one_and_stay_finite_for_huge_logits(void **state) {
    (void)state;
    static const double huge[] = {1000, -1000, 0, -1000, -1000, -1000};
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, huge, 0);
    Tensor *y = op_softmax(tape, x);
    assert_all_finite(y);
    const double third = 1.0 / 3;
    assert_close(((double[]){1, 0, 0, third, third, third}), y->data, 6, tolerance,
                 "softmax of +-1000");
    tape_free(tape);
    tensor_free(x);
}

/* dy = (1, 0, 0): dx_j = y_j (dy_j - y_0), i.e. (y0 (1 - y0), -y1 y0, -y2 y0). */
static void softmax_backward_is_y_times_dy_minus_its_weighted_mean(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(1, (int[]){3}, logits_2x3, 1);
    tape_backward_from(tape, op_softmax(tape, x), (real[]){1, 0, 0});
    double p[3];
    softmax_123(p);
    assert_close(((double[]){p[0] * (1 - p[0]), -p[1] * p[0], -p[2] * p[0]}), x->grad, 3, tolerance,
                 "d softmax");
    /* A constant dy changes nothing: softmax is invariant to shifting its input. */
    tensor_zero_grad(x);
    tape_reset(tape);
    tape_backward_from(tape, op_softmax(tape, x), (real[]){5, 5, 5});
    assert_close(((double[]){0, 0, 0}), x->grad, 3, tolerance, "d softmax, constant dy");
    tape_free(tape);
    tensor_free(x);
}

/* --- log_softmax -------------------------------------------------------------------------- */
static void log_softmax_matches_hand_values(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, logits_2x3, 0);
    Tensor *y = op_log_softmax(tape, x);
    double lse = log(exp(1) + exp(2) + exp(3)), log3 = log(3);
    assert_close(((double[]){1 - lse, 2 - lse, 3 - lse, -log3, -log3, -log3}), y->data, 6,
                 tolerance, "log_softmax");
    tape_free(tape);
    tensor_free(x);
}

static void log_softmax_of_huge_logits_is_finite(void **state) {
    (void)state;
    static const double huge[] = {1000, 0, -1000, -1000};
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 2}, huge, 0);
    Tensor *y = op_log_softmax(tape, x);
    assert_all_finite(y);
    assert_close(((double[]){0, -1000, -log(2), -log(2)}), y->data, 4, tolerance,
                 "log_softmax of +-1000");
    tape_free(tape);
    tensor_free(x);
}

/* dy = (1, 0, 0): dx_j = dy_j - softmax_j sum(dy) = (1 - p0, -p1, -p2). */
static void log_softmax_backward_subtracts_softmax_times_sum_of_dy(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(1, (int[]){3}, logits_2x3, 1);
    tape_backward_from(tape, op_log_softmax(tape, x), (real[]){1, 0, 0});
    double p[3];
    softmax_123(p);
    assert_close(((double[]){1 - p[0], -p[1], -p[2]}), x->grad, 3, tolerance, "d log_softmax");
    tape_free(tape);
    tensor_free(x);
}

/* --- cross_entropy ------------------------------------------------------------------------ */
/* Rows (1, 2, 3) with target 2 and (0, 0, 0) with target 0:
 * loss = ((lse - 3) + log 3) / 2 (PyTorch 1.13 gives 0.7531091265562451);
 * dlogits = (softmax - onehot) / 2. */
static void cross_entropy_is_the_mean_negative_log_probability(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *logits = tensor_of(2, (int[]){2, 3}, logits_2x3, 1);
    Tensor *loss = op_cross_entropy(tape, logits, (int[]){2, 0}, -100);
    assert_int_equal(loss->ndim, 0);
    double lse = log(exp(1) + exp(2) + exp(3));
    assert_close(((double[]){((lse - 3) + log(3)) / 2}), loss->data, 1, tolerance, "loss");
    assert_close(((double[]){0.7531091265562451}), loss->data, 1, tolerance, "loss vs PyTorch");
    tape_backward(tape, loss);
    double p[3];
    softmax_123(p);
    const double third = 1.0 / 3;
    assert_close(
        ((double[]){p[0] / 2, p[1] / 2, (p[2] - 1) / 2, (third - 1) / 2, third / 2, third / 2}),
        logits->grad, 6, tolerance, "dlogits");
    tape_free(tape);
    tensor_free(logits);
}

static void cross_entropy_skips_ignored_rows(void **state) {
    (void)state;
    Tape *tape = tape_create();
    /* (2, 1, 3): rows are every leading index; the second row is ignored. */
    Tensor *logits = tensor_of(3, (int[]){2, 1, 3}, logits_2x3, 1);
    Tensor *loss = op_cross_entropy(tape, logits, (int[]){2, -100}, -100);
    double lse = log(exp(1) + exp(2) + exp(3));
    assert_close(((double[]){lse - 3}), loss->data, 1, tolerance, "loss of the counted row");
    tape_backward(tape, loss);
    double p[3];
    softmax_123(p);
    assert_close(((double[]){p[0], p[1], p[2] - 1, 0, 0, 0}), logits->grad, 6, tolerance,
                 "dlogits (ignored row is 0)");

    /* ignore_index may be a real class id (padding = 0). */
    tape_reset(tape);
    Tensor *padded = op_cross_entropy(tape, logits, (int[]){2, 0}, 0);
    assert_close(((double[]){lse - 3}), padded->data, 1, tolerance, "class 0 ignored");
    tape_free(tape);
    tensor_free(logits);
}

/* PyTorch returns NaN (0 / 0) here; a loss of 0 with a zero gradient is what a training loop
 * over a fully padded batch wants. */
static void cross_entropy_with_every_row_ignored_is_zero(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *logits = tensor_of(2, (int[]){2, 3}, logits_2x3, 1);
    Tensor *loss = op_cross_entropy(tape, logits, (int[]){-1, -1}, -1);
    assert_close(((double[]){0}), loss->data, 1, tolerance, "loss");
    tape_backward(tape, loss);
    assert_close(((double[]){0, 0, 0, 0, 0, 0}), logits->grad, 6, tolerance, "dlogits");
    tape_free(tape);
    tensor_free(logits);
}

/* Logits that are an intermediate (the usual head output) get a new gradient buffer, which the
 * backward stores into in full rather than zeroing and adding (ops_nn.c): ignored rows, and
 * every row when none is counted, must come out 0, not as whatever the arena held. The tape's
 * memory is first filled with other values (an op on the same tape, then a reset). */
static void cross_entropy_stores_every_element_of_a_new_gradient(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *logits = tensor_of(3, (int[]){2, 1, 3}, logits_2x3, 1);
    Tensor *filler = tensor_create(1, (int[]){16384}, 0);
    tensor_fill(filler, 1);
    double p[3];
    softmax_123(p);
    for (int every_row_ignored = 0; every_row_ignored <= 1; every_row_ignored++) {
        op_scale(tape, filler, 7); /* 64 KB of 7s where the arena starts */
        tape_reset(tape);
        tensor_zero_grad(logits);
        Tensor *head = op_scale(tape, logits, 1); /* an intermediate */
        int targets[2] = {every_row_ignored ? -100 : 2, -100};
        tape_backward(tape, op_cross_entropy(tape, head, targets, -100));
        if (every_row_ignored)
            assert_close(((double[]){0, 0, 0, 0, 0, 0}), logits->grad, 6, 0, "no row counted");
        else
            assert_close(((double[]){p[0], p[1], p[2] - 1, 0, 0, 0}), logits->grad, 6, tolerance,
                         "dlogits through an intermediate (ignored row is 0)");
        tape_reset(tape);
    }
    tape_free(tape);
    tensor_free(logits);
    tensor_free(filler);
}

static void cross_entropy_of_huge_logits_is_finite(void **state) {
    (void)state;
    static const double huge[] = {1000, -1000};
    Tape *tape = tape_create();
    Tensor *logits = tensor_of(2, (int[]){1, 2}, huge, 1);
    Tensor *loss = op_cross_entropy(tape, logits, (int[]){1}, -100);
    assert_close(((double[]){2000}), loss->data, 1, tolerance, "-log softmax = 2000");
    tape_backward(tape, loss);
    assert_close(((double[]){1, -1}), logits->grad, 2, tolerance, "dlogits");
    tape_free(tape);
    tensor_free(logits);
}

static void cross_entropy_target_out_of_range_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *logits = tensor_of(2, (int[]){2, 3}, logits_2x3, 1);
    EXPECT_FAIL(op_cross_entropy(tape, logits, (int[]){0, 3}, -100),
                "op_cross_entropy: target 3 at row 1 is out of range [0, 3)");
    EXPECT_FAIL(op_cross_entropy(tape, logits, (int[]){-1, 0}, -100),
                "target -1 at row 0 is out of range [0, 3) and is not ignore_index (-100)");
    Tensor *scalar = tensor_create(0, NULL, 0);
    EXPECT_FAIL(op_cross_entropy(tape, scalar, (int[]){0}, -100),
                "op_cross_entropy: axis -1 out of range for a tensor of shape ()");
    tape_free(tape);
    tensor_free(logits);
    tensor_free(scalar);
}

/* --- layernorm ---------------------------------------------------------------------------- */
static void layernorm_rows_have_mean_zero_and_variance_one(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){2, 3, 5}, 0);
    for (long i = 0; i < x->size; i++) x->data[i] = (real)(100 + (i * 7 % 11) * 0.3 + i);
    Tensor *y = op_layernorm(tape, x, NULL, NULL, 0);
    /* Inputs near 100 with a spread of ~3: float32 loses a digit to x - mean. */
    double moment_tolerance = sizeof(real) == sizeof(double) ? 1e-12 : 1e-5;
    for (long r = 0; r < 6; r++) {
        double mean = 0, var = 0;
        for (int j = 0; j < 5; j++) mean += y->data[r * 5 + j] / 5.0;
        for (int j = 0; j < 5; j++) var += pow(y->data[r * 5 + j] - mean, 2) / 5.0;
        real moments[2] = {(real)mean, (real)var};
        assert_close(((double[]){0, 1}), moments, 2, moment_tolerance,
                     "row mean and biased variance");
    }
    tape_free(tape);
    tensor_free(x);
}

/* Row 0: x = (1, 2, 3): mean 2, var 2/3, rstd = sqrt(1.5), xhat = (-s, 0, s), s = sqrt(1.5).
 * Row 1: x = (0.5, -1, 2): mean 0.5, var 1.5, xhat = (0, -s, s).
 * y = xhat * (1, 2, 3) + (0, 1, 0). With dy = ((1, 0, 0), (0, 1, 0)), g = dy * w:
 *   row 0: g = (1, 0, 0), mean g = 1/3, mean g xhat = -s/3,
 *          dx = s ((1, 0, 0) - 1/3 - xhat (-s/3)) = s (1/6, -1/3, 1/6);
 *   row 1: g = (0, 2, 0), mean g = 2/3, mean g xhat = -2s/3,
 *          dx = (1/s) ((0, 2, 0) - 2/3 + xhat 2s/3) = (1/s) (-2/3, 1/3, 1/3);
 *   dweight = sum dy xhat = (-s, -s, 0), dbias = sum dy = (1, 1, 0).
 * PyTorch 1.13 (float64) agrees to the last digit. */
static void layernorm_with_weight_and_bias_matches_hand_values(void **state) {
    (void)state;
    static const double x_values[] = {1, 2, 3, 0.5, -1, 2};
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, x_values, 1);
    static const double weight_values[] = {1, 2, 3};
    Tensor *weight = tensor_of(1, (int[]){3}, weight_values, 1);
    static const double bias_values[] = {0, 1, 0};
    Tensor *bias = tensor_of(1, (int[]){3}, bias_values, 1);
    Tensor *y = op_layernorm(tape, x, weight, bias, 0);
    double s = sqrt(1.5);
    assert_close(((double[]){-s, 1, 3 * s, 0, 1 - 2 * s, 3 * s}), y->data, 6, tolerance, "y");
    tape_backward_from(tape, y, (real[]){1, 0, 0, 0, 1, 0});
    assert_close(((double[]){s / 6, -s / 3, s / 6, -2 / (3 * s), 1 / (3 * s), 1 / (3 * s)}),
                 x->grad, 6, tolerance, "dx");
    assert_close(((double[]){-s, -s, 0}), weight->grad, 3, tolerance, "dweight");
    assert_close(((double[]){1, 1, 0}), bias->grad, 3, tolerance, "dbias");
    tape_free(tape);
    tensor_free(x);
    tensor_free(weight);
    tensor_free(bias);
}

/* D = 1: x - mean = 0, so y = bias whatever x is, and dx = 0. */
static void layernorm_of_width_one_returns_the_bias(void **state) {
    (void)state;
    Tape *tape = tape_create();
    static const double x_values[] = {5, -7};
    Tensor *x = tensor_of(2, (int[]){2, 1}, x_values, 1);
    static const double bias_values[] = {0.25};
    Tensor *bias = tensor_of(1, (int[]){1}, bias_values, 1);
    Tensor *y = op_layernorm(tape, x, NULL, bias, (real)1e-5);
    assert_close(((double[]){0.25, 0.25}), y->data, 2, tolerance, "y");
    tape_backward_from(tape, y, (real[]){1, 2});
    assert_close(((double[]){0, 0}), x->grad, 2, tolerance, "dx");
    assert_close(((double[]){3}), bias->grad, 1, tolerance, "dbias");
    tape_free(tape);
    tensor_free(x);
    tensor_free(bias);
}

static void layernorm_weight_or_bias_of_the_wrong_shape_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(2, (int[]){2, 3}, 1);
    Tensor *long_weight = tensor_create(1, (int[]){4}, 1);
    Tensor *matrix_weight = tensor_create(2, (int[]){1, 3}, 1);
    Tensor *short_bias = tensor_create(1, (int[]){2}, 1);
    EXPECT_FAIL(op_layernorm(tape, x, long_weight, NULL, 0),
                "op_layernorm: weight must have shape (3) for x of shape (2, 3), got (4)");
    EXPECT_FAIL(op_layernorm(tape, x, matrix_weight, NULL, 0), "weight must have shape (3)");
    EXPECT_FAIL(op_layernorm(tape, x, NULL, short_bias, 0),
                "op_layernorm: bias must have shape (3) for x of shape (2, 3), got (2)");
    tape_free(tape);
    tensor_free(x);
    tensor_free(long_weight);
    tensor_free(matrix_weight);
    tensor_free(short_bias);
}

/* --- embedding ---------------------------------------------------------------------------- */
/* weight row v is (10 v, 10 v + 1). */
static Tensor *embedding_table(int vocabulary) {
    Tensor *weight = tensor_create(2, (int[]){vocabulary, 2}, 1);
    for (int v = 0; v < vocabulary; v++) {
        weight->data[2 * v] = (real)(10 * v);
        weight->data[2 * v + 1] = (real)(10 * v + 1);
    }
    return weight;
}

static void embedding_looks_up_one_row_per_id(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *weight = embedding_table(4);
    Tensor *y = op_embedding(tape, weight, (int[]){1, 3, 1, 0, 2, 1}, 2, (int[]){2, 3});
    assert_shape(y, 3, (int[]){2, 3, 2});
    assert_close(((double[]){10, 11, 30, 31, 10, 11, 0, 1, 20, 21, 10, 11}), y->data, 12, tolerance,
                 "rows");
    Tensor *single = op_embedding(tape, weight, (int[]){3}, 0, NULL); /* 0-d ids: (D) */
    assert_shape(single, 1, (int[]){2});
    assert_close(((double[]){30, 31}), single->data, 2, tolerance, "one id");
    tape_free(tape);
    tensor_free(weight);
}

static void embedding_gradient_sums_the_rows_of_repeated_ids(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *weight = embedding_table(4);
    int ids[4] = {1, 3, 1, 1};
    Tensor *y = op_embedding(tape, weight, ids, 1, (int[]){4});
    ids[0] = 0; /* the op keeps its own copy of the ids */
    tape_backward_from(tape, y, (real[]){1, 2, 3, 4, 5, 6, 7, 8});
    /* id 1 at positions 0, 2, 3: (1 + 5 + 7, 2 + 6 + 8); id 3 at position 1; 0 and 2 unused. */
    assert_close(((double[]){0, 0, 13, 16, 0, 0, 3, 4}), weight->grad, 8, tolerance, "dweight");
    tape_free(tape);
    tensor_free(weight);
}

static void embedding_id_out_of_range_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *weight = embedding_table(4);
    EXPECT_FAIL(op_embedding(tape, weight, (int[]){0, 1, 4}, 1, (int[]){3}),
                "op_embedding: id 4 at position 2 is out of range [0, 4)");
    EXPECT_FAIL(op_embedding(tape, weight, (int[]){-1}, 1, (int[]){1}),
                "id -1 at position 0 is out of range [0, 4)");
    tape_free(tape);
    tensor_free(weight);
}

static void embedding_weight_must_be_2d_and_result_fit(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *vector = tensor_create(1, (int[]){4}, 1);
    Tensor *cube = tensor_create(3, (int[]){4, 2, 2}, 1);
    EXPECT_FAIL(op_embedding(tape, vector, (int[]){0}, 1, (int[]){1}),
                "op_embedding: weight must be 2-d (V, D), got shape (4)");
    EXPECT_FAIL(op_embedding(tape, cube, (int[]){0}, 1, (int[]){1}), "got shape (4, 2, 2)");
    Tensor *weight = embedding_table(2);
    EXPECT_FAIL(op_embedding(tape, weight, (int[]){0}, 6, (int[]){1, 1, 1, 1, 1, 1}),
                "the result would have 7, at most 6 supported");
    tape_free(tape);
    tensor_free(vector);
    tensor_free(cube);
    tensor_free(weight);
}

/* Inputs past the OpenMP threshold are split across threads by rows; each row must come out
 * bit-for-bit as when it is computed alone (forward and backward). */
static Tensor *rowwise(Tape *tape, int which, Tensor *x) {
    if (which == 0) return op_softmax(tape, x);
    if (which == 1) return op_log_softmax(tape, x);
    return op_layernorm(tape, x, NULL, NULL, (real)1e-5);
}

static void large_inputs_give_each_row_exactly_as_alone(void **state) {
    (void)state;
    enum { ROWS = 40, D = 1000 }; /* 40000 elements: parallel; one row of 1000: serial */
    Tensor *x = tensor_create(2, (int[]){ROWS, D}, 1), *row = tensor_create(2, (int[]){1, D}, 1);
    real *seed = malloc((size_t)x->size * sizeof(real));
    for (long i = 0; i < x->size; i++) {
        x->data[i] = (real)(4 * sin(0.37 * (double)i));
        seed[i] = (real)cos(0.11 * (double)i);
    }
    Tape *whole = tape_create(), *single = tape_create();
    for (int which = 0; which < 3; which++) {
        tensor_zero_grad(x);
        tape_reset(whole);
        Tensor *y = rowwise(whole, which, x);
        tape_backward_from(whole, y, seed);
        for (int r = 0; r < ROWS; r += 13) {
            memcpy(row->data, x->data + r * D, D * sizeof(real));
            tensor_zero_grad(row);
            tape_reset(single);
            Tensor *alone = rowwise(single, which, row);
            tape_backward_from(single, alone, seed + r * D);
            assert_memory_equal(alone->data, y->data + r * D, D * sizeof(real));
            assert_memory_equal(row->grad, x->grad + r * D, D * sizeof(real));
        }
    }
    tape_free(whole);
    tape_free(single);
    free(seed);
    tensor_free(x);
    tensor_free(row);
}

/* layernorm's dweight_j = sum_rows dy_j xhat_j and dbias_j = sum_rows dy_j are summed in chunks
 * of 64 rows (ops_nn.c): over 600 rows (9 full chunks and a partial one, and parallel: 38400
 * elements) they match the sums in double, and 1 and 2 threads give the same bits for dx,
 * dweight and dbias. Each float32 term dy xhat carries a few roundings of 2^-24 (xhat from the
 * float mean and rstd, the product) and the total one more: relative 1e-6 of sum |term| covers
 * them with room (1e-13 in float64). */
static void layernorm_weight_and_bias_gradients_sum_over_chunks_of_rows(void **state) {
    (void)state;
    enum { ROWS = 600, D = 64 };
    const double bound = sizeof(real) == sizeof(double) ? 1e-13 : 1e-6;
    Tensor *x = tensor_create(2, (int[]){ROWS, D}, 1);
    Tensor *weight = tensor_create(1, (int[]){D}, 1), *bias = tensor_create(1, (int[]){D}, 1);
    real *seed = malloc((size_t)x->size * sizeof(real));
    for (long i = 0; i < x->size; i++) {
        x->data[i] = (real)(3 * sin(0.37 * (double)i) + 0.5 * (double)(i / D % 7));
        seed[i] = (real)cos(0.11 * (double)i);
    }
    for (int j = 0; j < D; j++) weight->data[j] = (real)(1 + 0.01 * j);
    double weight_sum[D] = {0}, bias_sum[D] = {0}, weight_abs[D] = {0}, bias_abs[D] = {0};
    for (int r = 0; r < ROWS; r++) {
        const real *row = x->data + r * D;
        double mean = 0, var = 0;
        for (int j = 0; j < D; j++) mean += row[j] / (double)D;
        for (int j = 0; j < D; j++) var += (row[j] - mean) * (row[j] - mean) / D;
        for (int j = 0; j < D; j++) {
            double xhat = (row[j] - mean) / sqrt(var + 1e-5), dy = seed[r * D + j];
            weight_sum[j] += dy * xhat, weight_abs[j] += fabs(dy * xhat);
            bias_sum[j] += dy, bias_abs[j] += fabs(dy);
        }
    }
    real *grads[2][3];
    Tape *tape = tape_create();
    int saved_threads = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        tensor_zero_grad(x), tensor_zero_grad(weight), tensor_zero_grad(bias);
        tape_reset(tape);
        tape_backward_from(tape, op_layernorm(tape, x, weight, bias, (real)1e-5), seed);
        Tensor *with_grads[3] = {x, weight, bias};
        for (int k = 0; k < 3; k++) {
            grads[threads - 1][k] = malloc((size_t)with_grads[k]->size * sizeof(real));
            memcpy(grads[threads - 1][k], with_grads[k]->grad,
                   (size_t)with_grads[k]->size * sizeof(real));
        }
    }
    omp_set_num_threads(saved_threads);
    for (int j = 0; j < D; j++) {
        if (!(fabs(weight->grad[j] - weight_sum[j]) <= bound * weight_abs[j]))
            fail_msg("layernorm dweight[%d]: expected %.17g, got %.17g", j, weight_sum[j],
                     (double)weight->grad[j]);
        if (!(fabs(bias->grad[j] - bias_sum[j]) <= bound * bias_abs[j]))
            fail_msg("layernorm dbias[%d]: expected %.17g, got %.17g", j, bias_sum[j],
                     (double)bias->grad[j]);
    }
    assert_memory_equal(grads[0][0], grads[1][0], (size_t)x->size * sizeof(real));
    assert_memory_equal(grads[0][1], grads[1][1], D * sizeof(real));
    assert_memory_equal(grads[0][2], grads[1][2], D * sizeof(real));
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) free(grads[t][k]);
    tape_free(tape);
    free(seed);
    tensor_free(x);
    tensor_free(weight);
    tensor_free(bias);
}

static void rowwise_ops_need_an_axis(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *scalar = tensor_create(0, NULL, 1);
    EXPECT_FAIL(op_softmax(tape, scalar), "op_softmax: axis -1 out of range");
    EXPECT_FAIL(op_log_softmax(tape, scalar), "op_log_softmax: axis -1 out of range");
    EXPECT_FAIL(op_layernorm(tape, scalar, NULL, NULL, 0), "op_layernorm: axis -1 out of range");
    tape_free(tape);
    tensor_free(scalar);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(softmax_matches_hand_values_row_by_row),
        cmocka_unit_test(softmax_rows_sum_to_one_and_stay_finite_for_huge_logits),
        cmocka_unit_test(softmax_backward_is_y_times_dy_minus_its_weighted_mean),
        cmocka_unit_test(log_softmax_matches_hand_values),
        cmocka_unit_test(log_softmax_of_huge_logits_is_finite),
        cmocka_unit_test(log_softmax_backward_subtracts_softmax_times_sum_of_dy),
        cmocka_unit_test(cross_entropy_is_the_mean_negative_log_probability),
        cmocka_unit_test(cross_entropy_skips_ignored_rows),
        cmocka_unit_test(cross_entropy_with_every_row_ignored_is_zero),
        cmocka_unit_test(cross_entropy_stores_every_element_of_a_new_gradient),
        cmocka_unit_test(cross_entropy_of_huge_logits_is_finite),
        cmocka_unit_test(cross_entropy_target_out_of_range_fails),
        cmocka_unit_test(layernorm_rows_have_mean_zero_and_variance_one),
        cmocka_unit_test(layernorm_with_weight_and_bias_matches_hand_values),
        cmocka_unit_test(layernorm_of_width_one_returns_the_bias),
        cmocka_unit_test(layernorm_weight_or_bias_of_the_wrong_shape_fails),
        cmocka_unit_test(embedding_looks_up_one_row_per_id),
        cmocka_unit_test(embedding_gradient_sums_the_rows_of_repeated_ids),
        cmocka_unit_test(embedding_id_out_of_range_fails),
        cmocka_unit_test(embedding_weight_must_be_2d_and_result_fit),
        cmocka_unit_test(large_inputs_give_each_row_exactly_as_alone),
        cmocka_unit_test(layernorm_weight_and_bias_gradients_sum_over_chunks_of_rows),
        cmocka_unit_test(rowwise_ops_need_an_axis),
    };
    return cmocka_run_group_tests_name("nn (" REAL_NAME ")", tests, NULL, NULL);
}
