/* test_reduce.c - sum, mean and max over one axis or over all elements: values, shapes,
 * gradients, edge cases and bad arguments. */
#include "test_util.h"

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

static const double matrix_2x3[] = {1, 2, 3, 4, 5, 6};

static void sum_over_each_axis_of_a_matrix(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, matrix_2x3, 0);
    Tensor *columns = op_sum(tape, x, 0, 0), *rows = op_sum(tape, x, 1, 0);
    assert_shape(columns, 1, (int[]){3});
    assert_close(((double[]){5, 7, 9}), columns->data, 3, tolerance, "sum axis 0");
    assert_shape(rows, 1, (int[]){2});
    assert_close(((double[]){6, 15}), rows->data, 2, tolerance, "sum axis 1");
    Tensor *last = op_sum(tape, x, -1, 0), *first_kept = op_sum(tape, x, -2, 1);
    assert_close(((double[]){6, 15}), last->data, 2, tolerance, "sum axis -1");
    assert_shape(first_kept, 2, (int[]){1, 3});
    assert_close(((double[]){5, 7, 9}), first_kept->data, 3, tolerance, "sum axis -2 keepdim");
    tape_free(tape);
    tensor_free(x);
}

static void keepdim_keeps_the_axis_as_size_one(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(3, (int[]){2, 3, 4}, 0);
    assert_shape(op_sum(tape, x, 1, 1), 3, (int[]){2, 1, 4});
    assert_shape(op_mean(tape, x, -1, 1), 3, (int[]){2, 3, 1});
    assert_shape(op_max(tape, x, 0, 1), 3, (int[]){1, 3, 4});
    assert_shape(op_sum(tape, x, 1, 0), 2, (int[]){2, 4});
    assert_shape(op_max(tape, x, -3, 0), 2, (int[]){3, 4});
    tape_free(tape);
    tensor_free(x);
}

/* y[o, i] for the reduction of x (2, 3, 4, 5) over `axis`, by explicit index arithmetic. */
static double naive_reduce(const Tensor *x, int axis, long out_index, char kind) {
    long strides[4] = {60, 20, 5, 1}, index[4];
    long rest = out_index;
    for (int d = 3; d >= 0; d--) { /* unravel out_index over the dims other than axis */
        if (d == axis) continue;
        index[d] = rest % x->shape[d];
        rest /= x->shape[d];
    }
    double sum = 0, max = -INFINITY;
    for (int k = 0; k < x->shape[axis]; k++) {
        index[axis] = k;
        double value = x->data[index[0] * strides[0] + index[1] * strides[1] +
                               index[2] * strides[2] + index[3] * strides[3]];
        sum += value;
        max = fmax(max, value);
    }
    return kind == 's' ? sum : kind == 'm' ? sum / x->shape[axis] : max;
}

static void every_axis_of_a_4d_tensor_matches_index_arithmetic(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(4, (int[]){2, 3, 4, 5}, 0);
    for (long i = 0; i < x->size; i++) x->data[i] = (real)((i * 37 % 120) * 0.25 - 7);
    for (int axis = -4; axis < 4; axis++) {
        int positive = axis < 0 ? axis + 4 : axis;
        Tensor *got[3] = {op_sum(tape, x, axis, 0), op_mean(tape, x, axis, 1),
                          op_max(tape, x, axis, 0)};
        const char kinds[3] = {'s', 'm', 'x'};
        for (int r = 0; r < 3; r++) {
            assert_int_equal(got[r]->size, 120 / x->shape[positive]);
            for (long i = 0; i < got[r]->size; i++) {
                double expected = naive_reduce(x, positive, i, kinds[r]);
                assert_close(&expected, &got[r]->data[i], 1, tolerance, "4-d reduction");
            }
        }
    }
    tape_free(tape);
    tensor_free(x);
}

static void sum_backward_broadcasts_dy_along_the_axis(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, matrix_2x3, 1);
    tape_backward_from(tape, op_sum(tape, x, 0, 0), (real[]){1, 2, 3});
    assert_close(((double[]){1, 2, 3, 1, 2, 3}), x->grad, 6, tolerance, "d sum axis 0");
    tensor_zero_grad(x);
    tape_reset(tape);
    tape_backward_from(tape, op_sum(tape, x, -1, 1), (real[]){10, 20});
    assert_close(((double[]){10, 10, 10, 20, 20, 20}), x->grad, 6, tolerance, "d sum axis -1");
    tape_free(tape);
    tensor_free(x);
}

static void mean_divides_value_and_gradient_by_the_axis_length(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, matrix_2x3, 1);
    Tensor *y = op_mean(tape, x, 1, 0);
    assert_close(((double[]){2, 5}), y->data, 2, tolerance, "mean axis 1");
    tape_backward_from(tape, y, (real[]){1, 2});
    const double third = 1.0 / 3;
    assert_close(((double[]){third, third, third, 2 * third, 2 * third, 2 * third}), x->grad, 6,
                 tolerance, "d mean axis 1");
    tape_free(tape);
    tensor_free(x);
}

/* torch.max(x, dim) (PyTorch 1.13) returns the index of the first maximum and sends the whole
 * gradient there; op_max does the same. */
static void max_routes_the_gradient_to_the_first_maximum(void **state) {
    (void)state;
    Tape *tape = tape_create();
    static const double x_values[] = {1, 3, 3, 2, 5, 5, 5, 0};
    Tensor *x = tensor_of(2, (int[]){2, 4}, x_values, 1);
    Tensor *y = op_max(tape, x, 1, 0);
    assert_close(((double[]){3, 5}), y->data, 2, tolerance, "max axis 1");
    tape_backward_from(tape, y, (real[]){1, 1});
    assert_close(((double[]){0, 1, 0, 0, 1, 0, 0, 0}), x->grad, 8, tolerance, "d max axis 1");

    /* Along axis 0 (stride 2 in memory): column 1 ties, row 0 comes first. */
    static const double columns_values[] = {1, 4, 3, 4};
    Tensor *columns = tensor_of(2, (int[]){2, 2}, columns_values, 1);
    y = op_max(tape, columns, 0, 1);
    assert_shape(y, 2, (int[]){1, 2});
    assert_close(((double[]){3, 4}), y->data, 2, tolerance, "max axis 0");
    tape_backward_from(tape, y, (real[]){1, 2});
    assert_close(((double[]){0, 2, 1, 0}), columns->grad, 4, tolerance, "d max axis 0");
    tape_free(tape);
    tensor_free(x);
    tensor_free(columns);
}

/* torch.max(x) over all elements splits the gradient among ties (0.5, 0.5 here); op_max_all
 * deliberately keeps the first-maximum rule of op_max. */
static void max_all_sends_the_gradient_to_the_first_maximum_only(void **state) {
    (void)state;
    Tape *tape = tape_create();
    static const double x_values[] = {2, 7, 7, -1};
    Tensor *x = tensor_of(2, (int[]){2, 2}, x_values, 1);
    Tensor *y = op_max_all(tape, x);
    assert_int_equal(y->ndim, 0);
    assert_close(((double[]){7}), y->data, 1, tolerance, "max_all");
    tape_backward(tape, y);
    assert_close(((double[]){0, 1, 0, 0}), x->grad, 4, tolerance, "d max_all");
    tape_free(tape);
    tensor_free(x);
}

static void max_propagates_nan_like_pytorch(void **state) {
    (void)state;
    Tape *tape = tape_create();
    static const double x_values[] = {1, NAN, 3, NAN};
    Tensor *x = tensor_of(1, (int[]){4}, x_values, 1);
    Tensor *y = op_max(tape, x, 0, 0);
    assert_true(isnan(y->data[0]));
    tape_backward(tape, y);
    assert_close(((double[]){0, 1, 0, 0}), x->grad, 4, tolerance, "gradient to the first NaN");
    tape_free(tape);
    tensor_free(x);
}

static void sum_all_and_mean_all_give_0d_results(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, matrix_2x3, 1);
    Tensor *sum = op_sum_all(tape, x), *mean = op_mean_all(tape, x);
    assert_int_equal(sum->ndim, 0);
    assert_int_equal(mean->ndim, 0);
    assert_close(((double[]){21}), sum->data, 1, tolerance, "sum_all");
    assert_close(((double[]){3.5}), mean->data, 1, tolerance, "mean_all");
    tape_backward(tape, mean);
    const double sixth = 1.0 / 6;
    assert_close(((double[]){sixth, sixth, sixth, sixth, sixth, sixth}), x->grad, 6, tolerance,
                 "d mean_all");
    tape_free(tape);
    tensor_free(x);
}

/* A float32 running sum of a million 0.1f values drifts by ~1%; accumulated in double the
 * result is the exact sum rounded once. */
static void sum_all_accumulates_in_double(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(1, (int[]){1000000}, 0);
    tensor_fill(x, (real)0.1);
    double expected = 1e6 * (double)(real)0.1;
    Tensor *sum = op_sum_all(tape, x);
    assert_close(&expected, sum->data, 1, 1e-7, "sum of a million 0.1");
    Tensor *mean = op_mean_all(tape, x);
    double expected_mean = (double)(real)0.1;
    assert_close(&expected_mean, mean->data, 1, 1e-7, "mean of a million 0.1");
    tape_free(tape);
    tensor_free(x);
}

static void gradients_accumulate_through_chained_reductions(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, matrix_2x3, 1);
    for (int step = 0; step < 2; step++) { /* no zero_grad between: the second step adds */
        tape_backward(tape, op_sum_all(tape, op_mean(tape, x, 0, 0)));
        tape_reset(tape);
    }
    assert_close(((double[]){1, 1, 1, 1, 1, 1}), x->grad, 6, tolerance, "2 x d sum(mean axis 0)");
    tape_free(tape);
    tensor_free(x);
}

static void empty_axis_sums_to_zero_and_averages_to_nan(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(2, (int[]){2, 0}, 0);
    Tensor *sum = op_sum(tape, x, 1, 0), *mean = op_mean(tape, x, 1, 0);
    assert_shape(sum, 1, (int[]){2});
    assert_close(((double[]){0, 0}), sum->data, 2, tolerance, "sum over an empty axis");
    assert_true(isnan(mean->data[0]) && isnan(mean->data[1])); /* 0 / 0, as torch.mean */
    tape_free(tape);
    tensor_free(x);
}

static void nothing_is_recorded_without_a_gradient(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_of(2, (int[]){2, 3}, matrix_2x3, 0);
    op_sum(tape, x, 0, 0);
    op_max_all(tape, x);
    assert_int_equal(tape->n_records, 0);
    tape_free(tape);
    tensor_free(x);
}

static void axis_out_of_range_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(2, (int[]){2, 3}, 0);
    EXPECT_FAIL(op_sum(tape, x, 2, 0), "op_sum: axis 2 out of range for a tensor of shape (2, 3)");
    EXPECT_FAIL(op_mean(tape, x, -3, 1), "op_mean: axis -3 out of range");
    EXPECT_FAIL(op_max(tape, x, 7, 0), "op_max: axis 7 out of range");
    Tensor *scalar = tensor_create(0, NULL, 0);
    EXPECT_FAIL(op_sum(tape, scalar, 0, 0), "op_sum: axis 0 out of range for a tensor of shape ()");
    tape_free(tape);
    tensor_free(x);
    tensor_free(scalar);
}

static void max_over_an_empty_axis_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(2, (int[]){2, 0}, 0);
    EXPECT_FAIL(op_max(tape, x, 1, 0),
                "op_max: cannot take the max over an empty axis (input shape (2, 0))");
    EXPECT_FAIL(op_max_all(tape, x), "op_max_all: cannot take the max over an empty axis");
    tape_free(tape);
    tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sum_over_each_axis_of_a_matrix),
        cmocka_unit_test(keepdim_keeps_the_axis_as_size_one),
        cmocka_unit_test(every_axis_of_a_4d_tensor_matches_index_arithmetic),
        cmocka_unit_test(sum_backward_broadcasts_dy_along_the_axis),
        cmocka_unit_test(mean_divides_value_and_gradient_by_the_axis_length),
        cmocka_unit_test(max_routes_the_gradient_to_the_first_maximum),
        cmocka_unit_test(max_all_sends_the_gradient_to_the_first_maximum_only),
        cmocka_unit_test(max_propagates_nan_like_pytorch),
        cmocka_unit_test(sum_all_and_mean_all_give_0d_results),
        cmocka_unit_test(sum_all_accumulates_in_double),
        cmocka_unit_test(gradients_accumulate_through_chained_reductions),
        cmocka_unit_test(empty_axis_sums_to_zero_and_averages_to_nan),
        cmocka_unit_test(nothing_is_recorded_without_a_gradient),
        cmocka_unit_test(axis_out_of_range_fails),
        cmocka_unit_test(max_over_an_empty_axis_fails),
    };
    return cmocka_run_group_tests_name("reduce (" REAL_NAME ")", tests, NULL, NULL);
}
