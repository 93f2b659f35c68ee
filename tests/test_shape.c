/* test_shape.c - reshape, transpose, permute, slice, concat: values, gradients, round trips and
 * every bad-input path. */
#include "test_util.h"

#include "ops.h"

/* An owned tensor holding 0, 1, 2, ... in row-major order (so a value names its position). */
static Tensor *iota(int ndim, const int *shape, int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)i;
    return t;
}

/* Seed values 1, 2, 3, ... for tape_backward_from (arena memory, freed with the tape). */
static real *seed_values(Tape *tape, long n) {
    real *seed = tape_save(tape, (size_t)n * sizeof(real));
    for (long i = 0; i < n; i++) seed[i] = (real)(i + 1);
    return seed;
}

static void assert_shape(const Tensor *t, int ndim, const int *shape) {
    char got[64], want[64];
    if (!(t->ndim == ndim && memcmp(t->shape, shape, (size_t)ndim * sizeof(int)) == 0))
        fail_msg("shape %s, expected %s", TENSOR_SHAPE_STR(t, got),
                 shape_string(ndim, shape, want, sizeof want));
}

/* ---- reshape ---- */

static void reshape_infers_the_minus_one_and_keeps_row_major_order(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(3, (int[]){2, 3, 4}, 1);
    Tensor *y = op_reshape(tape, x, 2, (int[]){-1, 4});
    assert_shape(y, 2, (int[]){6, 4});
    for (long i = 0; i < x->size; i++) assert_true(y->data[i] == x->data[i]);
    assert_shape(op_reshape(tape, x, 3, (int[]){4, -1, 2}), 3, (int[]){4, 3, 2});
    assert_shape(op_reshape(tape, x, 1, (int[]){-1}), 1, (int[]){24});
    tape_free(tape);
    tensor_free(x);
}

static void reshape_to_and_from_a_scalar(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){1, 1}, 1);
    x->data[0] = 7;
    Tensor *scalar = op_reshape(tape, x, 0, NULL);
    assert_int_equal(scalar->ndim, 0);
    assert_true(scalar->data[0] == 7);
    assert_shape(op_reshape(tape, scalar, 3, (int[]){1, -1, 1}), 3, (int[]){1, 1, 1});
    tape_free(tape);
    tensor_free(x);
}

static void reshape_shares_data_and_its_backward_adds_dy(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){2, 3}, 1);
    Tensor *y = op_reshape(tape, x, 1, (int[]){6});
    assert_ptr_equal(y->data, x->data); /* documented: a new header over x's buffer */
    x->grad[0] = 100;                   /* backward adds, never overwrites */
    tape_backward_from(tape, y, seed_values(tape, 6));
    double expected[6] = {101, 2, 3, 4, 5, 6};
    assert_close(expected, x->grad, 6, 0, "dx");
    assert_ptr_not_equal(y->grad, x->grad);
    tape_free(tape);
    tensor_free(x);
}

static void reshape_rejects_bad_shapes(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){2, 3}, 0);
    EXPECT_FAIL(op_reshape(tape, x, 2, (int[]){4, 2}),
                "op_reshape: shape (4, 2) holds 8 elements, the tensor of shape (2, 3) has 6");
    EXPECT_FAIL(op_reshape(tape, x, 2, (int[]){-1, -1}), "only one -1 allowed");
    EXPECT_FAIL(op_reshape(tape, x, 2, (int[]){-2, 3}), "op_reshape: bad shape (-2, 3)");
    EXPECT_FAIL(op_reshape(tape, x, 2, (int[]){-1, 4}),
                "op_reshape: cannot infer the -1 in (-1, 4) for a tensor of shape (2, 3)");
    EXPECT_FAIL(op_reshape(tape, x, 2, (int[]){-1, 0}), "cannot infer the -1 in (-1, 0)");
    EXPECT_FAIL(op_reshape(tape, x, 7, (int[]){1, 1, 1, 1, 1, 2, 3}),
                "op_reshape: 7 dimensions requested");
    tape_free(tape);
    tensor_free(x);
}

/* ---- transpose and permute ---- */

static void transpose_swaps_two_axes(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){2, 3}, 1); /* [[0 1 2] [3 4 5]] */
    Tensor *y = op_transpose(tape, x, 0, 1);
    assert_shape(y, 2, (int[]){3, 2});
    double expected[6] = {0, 3, 1, 4, 2, 5};
    assert_close(expected, y->data, 6, 0, "y = x^T");
    /* Backward: dx = dy^T. dy = [[1 2] [3 4] [5 6]] -> dx = [[1 3 5] [2 4 6]]. */
    tape_backward_from(tape, y, seed_values(tape, 6));
    double dx[6] = {1, 3, 5, 2, 4, 6};
    assert_close(dx, x->grad, 6, 0, "dx");
    tape_free(tape);
    tensor_free(x);
}

static void transpose_accepts_negative_axes(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(3, (int[]){2, 3, 4}, 0);
    Tensor *a = op_transpose(tape, x, -1, -2), *b = op_transpose(tape, x, 2, 1);
    assert_shape(a, 3, (int[]){2, 4, 3});
    for (long i = 0; i < a->size; i++) assert_true(a->data[i] == b->data[i]);
    /* y[i, k, j] = x[i, j, k]: y[1, 3, 2] = x[1, 2, 3] = 23. */
    assert_true(a->data[(1 * 4 + 3) * 3 + 2] == 23);
    tape_free(tape);
    tensor_free(x);
}

static void permute_moves_axis_perm_d_to_d(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(3, (int[]){2, 3, 4}, 0);
    Tensor *y = op_permute(tape, x, (int[]){2, 0, 1}); /* y[k, i, j] = x[i, j, k] */
    assert_shape(y, 3, (int[]){4, 2, 3});
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                assert_true(y->data[(k * 2 + i) * 3 + j] == x->data[(i * 3 + j) * 4 + k]);
    tape_free(tape);
    tensor_free(x);
}

static void permute_then_inverse_permute_is_the_identity(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(4, (int[]){2, 3, 4, 5}, 1);
    const int perm[4] = {2, 0, 3, 1}, inverse[4] = {1, 3, 0, 2}; /* inverse[perm[d]] = d */
    Tensor *y = op_permute(tape, op_permute(tape, x, perm), inverse);
    assert_shape(y, 4, x->shape);
    for (long i = 0; i < x->size; i++) assert_true(y->data[i] == x->data[i]);
    /* The gradient of the identity is the seed itself. */
    real *seed = seed_values(tape, x->size);
    tape_backward_from(tape, y, seed);
    for (long i = 0; i < x->size; i++) assert_true(x->grad[i] == seed[i]);
    tape_free(tape);
    tensor_free(x);
}

static void permute_of_a_scalar_and_negative_entries(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *scalar = iota(0, NULL, 0);
    assert_int_equal(op_permute(tape, scalar, NULL)->ndim, 0);
    Tensor *x = iota(2, (int[]){2, 3}, 0);
    assert_shape(op_permute(tape, x, (int[]){-1, 0}), 2, (int[]){3, 2});
    tape_free(tape);
    tensor_free(scalar);
    tensor_free(x);
}

static void permute_and_transpose_reject_bad_axes(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(3, (int[]){2, 3, 4}, 0);
    EXPECT_FAIL(op_permute(tape, x, (int[]){0, 0, 1}),
                "op_permute: (0, 0, 1) is not a permutation of the axes of a tensor of shape "
                "(2, 3, 4)");
    EXPECT_FAIL(op_permute(tape, x, (int[]){0, 1, 3}), "(0, 1, 3) is not a permutation");
    EXPECT_FAIL(op_permute(tape, x, (int[]){0, 1, -4}), "(0, 1, -4) is not a permutation");
    EXPECT_FAIL(op_transpose(tape, x, 0, 3),
                "op_transpose: axis 3 out of range for a tensor of shape (2, 3, 4)");
    EXPECT_FAIL(op_transpose(tape, x, -4, 0), "op_transpose: axis -4 out of range");
    tape_free(tape);
    tensor_free(x);
}

/* ---- slice and concat ---- */

static void slice_takes_a_window_of_one_axis(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){3, 4}, 1); /* [[0 1 2 3] [4 5 6 7] [8 9 10 11]] */
    Tensor *y = op_slice(tape, x, 1, 1, 3);
    assert_shape(y, 2, (int[]){3, 2});
    double expected[6] = {1, 2, 5, 6, 9, 10};
    assert_close(expected, y->data, 6, 0, "x[:, 1:3]");
    tape_backward_from(tape, y, seed_values(tape, 6));
    double dx[12] = {0, 1, 2, 0, 0, 3, 4, 0, 0, 5, 6, 0}; /* zero outside the window */
    assert_close(dx, x->grad, 12, 0, "dx");
    Tensor *rows = op_slice(tape, x, -2, 2, 3); /* negative axis: x[2:3, :] */
    double last_row[4] = {8, 9, 10, 11};
    assert_close(last_row, rows->data, 4, 0, "x[2:3]");
    tape_free(tape);
    tensor_free(x);
}

static void slice_with_start_equal_to_end_is_empty(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){3, 4}, 0);
    Tensor *y = op_slice(tape, x, 0, 3, 3);
    assert_shape(y, 2, (int[]){0, 4});
    assert_int_equal(y->size, 0);
    tape_free(tape);
    tensor_free(x);
}

static void slice_rejects_ranges_outside_the_axis(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){3, 4}, 0);
    EXPECT_FAIL(op_slice(tape, x, 1, -1, 2),
                "op_slice: [-1, 2) is not a range within axis 1 of size 4 (shape (3, 4))");
    EXPECT_FAIL(op_slice(tape, x, 1, 0, 5), "op_slice: [0, 5) is not a range within axis 1");
    EXPECT_FAIL(op_slice(tape, x, 0, 2, 1), "op_slice: [2, 1) is not a range within axis 0");
    EXPECT_FAIL(op_slice(tape, x, 2, 0, 1), "op_slice: axis 2 out of range");
    tape_free(tape);
    tensor_free(x);
}

static void concat_joins_along_an_axis_and_splits_the_gradient(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = iota(2, (int[]){2, 1}, 1), *b = iota(2, (int[]){2, 2}, 1);
    for (long i = 0; i < b->size; i++) b->data[i] += 10; /* a = [[0] [1]], b = [[10 11] [12 13]] */
    Tensor *pieces[2] = {a, b};
    Tensor *y = op_concat(tape, pieces, 2, -1);
    assert_shape(y, 2, (int[]){2, 3});
    double expected[6] = {0, 10, 11, 1, 12, 13};
    assert_close(expected, y->data, 6, 0, "concat");
    tape_backward_from(tape, y, seed_values(tape, 6)); /* dy = [[1 2 3] [4 5 6]] */
    double da[2] = {1, 4}, db[4] = {2, 3, 5, 6};
    assert_close(da, a->grad, 2, 0, "da");
    assert_close(db, b->grad, 4, 0, "db");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
}

static void slices_of_a_concat_give_back_the_pieces(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *pieces[3] = {iota(3, (int[]){2, 1, 3}, 0), iota(3, (int[]){2, 4, 3}, 0),
                         iota(3, (int[]){2, 2, 3}, 0)};
    Tensor *joined = op_concat(tape, pieces, 3, 1);
    assert_shape(joined, 3, (int[]){2, 7, 3});
    int start = 0;
    for (int k = 0; k < 3; k++) {
        Tensor *piece = op_slice(tape, joined, 1, start, start + pieces[k]->shape[1]);
        assert_true(tensor_same_shape(piece, pieces[k]));
        for (long i = 0; i < piece->size; i++) assert_true(piece->data[i] == pieces[k]->data[i]);
        start += pieces[k]->shape[1];
    }
    /* And the other way round: concat of the slices of x is x. */
    Tensor *parts[2] = {op_slice(tape, joined, 2, 0, 1), op_slice(tape, joined, 2, 1, 3)};
    Tensor *again = op_concat(tape, parts, 2, 2);
    for (long i = 0; i < joined->size; i++) assert_true(again->data[i] == joined->data[i]);
    tape_free(tape);
    for (int k = 0; k < 3; k++) tensor_free(pieces[k]);
}

static void concat_of_one_tensor_used_twice_gets_both_gradients(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(1, (int[]){2}, 1);
    Tensor *pieces[2] = {x, x};
    Tensor *y = op_concat(tape, pieces, 2, 0);
    tape_backward_from(tape, y, seed_values(tape, 4)); /* dy = [1 2 3 4] */
    double dx[2] = {1 + 3, 2 + 4};
    assert_close(dx, x->grad, 2, 0, "dx");
    tape_free(tape);
    tensor_free(x);
}

static void concat_rejects_mismatched_pieces(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *a = iota(2, (int[]){2, 3}, 0), *b = iota(2, (int[]){3, 3}, 0);
    Tensor *c = iota(3, (int[]){2, 3, 1}, 0);
    Tensor *ab[2] = {a, b}, *ac[2] = {a, c};
    EXPECT_FAIL(op_concat(tape, ab, 2, 1),
                "op_concat: input 1 of shape (3, 3) does not match input 0 of shape (2, 3) "
                "outside axis 1");
    EXPECT_FAIL(op_concat(tape, ac, 2, 0), "op_concat: input 1 of shape (2, 3, 1) does not match");
    EXPECT_FAIL(op_concat(tape, ab, 0, 0), "op_concat: need at least one tensor, got 0");
    EXPECT_FAIL(op_concat(tape, ab, 2, 2), "op_concat: axis 2 out of range");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
    tensor_free(c);
}

static void nothing_is_recorded_without_gradients(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = iota(2, (int[]){2, 3}, 0);
    Tensor *pieces[2] = {x, x};
    op_reshape(tape, x, 1, (int[]){6});
    op_transpose(tape, x, 0, 1);
    op_slice(tape, x, 0, 0, 1);
    op_concat(tape, pieces, 2, 0);
    assert_int_equal(tape->n_records, 0);
    tape_free(tape);
    tensor_free(x);
}

/* ---- gradients of intermediates: stored by the first contribution, added by the rest ---- */

/* h = x * 1 is an intermediate (its gradient lives in the arena) with four consumers: a reshape,
 * a transpose, a concat of h with itself and h + h. Backward reaches them in reverse order, so
 * the one recorded last meets a fresh, unzeroed gradient buffer and STORES into it
 * (tape_grad_write); the others add. Each consumer takes the last place in turn. With every
 * upstream gradient s = 1 + step, dh = s (reshape) + s (transpose) + 2 s (concat, both halves)
 * + 2 s (h + h) = 6 s. Each order runs twice on one tape: the second time the arena still holds
 * the first run's numbers, so an element a first contribution failed to store would show. */
static Tensor *consume(Tape *tape, Tensor *h, int which) {
    switch (which) {
    case 0:
        return op_reshape(tape, h, 1, (int[]){6});
    case 1:
        return op_transpose(tape, h, 0, 1);
    case 2:
        return op_concat(tape, (Tensor *[]){h, h}, 2, 1);
    default:
        return op_add(tape, h, h);
    }
}

static void intermediate_gradients_are_stored_once_then_added(void **state) {
    (void)state;
    Tensor *one = tensor_create(0, NULL, 0);
    one->data[0] = 1;
    for (int last = 0; last < 4; last++) {
        Tape *tape = tape_create();
        Tensor *x = iota(2, (int[]){2, 3}, 1);
        for (int step = 0; step < 2; step++) {
            Tensor *s = tensor_create(0, NULL, 0);
            s->data[0] = (real)(1 + step);
            Tensor *h = op_mul(tape, x, one); /* (2, 3) */
            Tensor *loss = NULL;
            for (int k = 1; k <= 4; k++) { /* consumer `last` comes last */
                Tensor *part = op_sum_all(tape, op_mul(tape, consume(tape, h, (last + k) % 4), s));
                loss = loss ? op_add(tape, loss, part) : part;
            }
            tape_backward(tape, loss);
            double dh[6], dx[6];
            for (int i = 0; i < 6; i++) dh[i] = 6.0 * (1 + step), dx[i] = step == 0 ? 6 : 18;
            assert_close(dh, h->grad, 6, 0, "dh");
            assert_close(dx, x->grad, 6, 0, "dx, summed over both steps");
            tensor_free(s);
            tape_reset(tape);
        }
        tape_free(tape);
        tensor_free(x);
    }
    tensor_free(one);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reshape_infers_the_minus_one_and_keeps_row_major_order),
        cmocka_unit_test(reshape_to_and_from_a_scalar),
        cmocka_unit_test(reshape_shares_data_and_its_backward_adds_dy),
        cmocka_unit_test(reshape_rejects_bad_shapes),
        cmocka_unit_test(transpose_swaps_two_axes),
        cmocka_unit_test(transpose_accepts_negative_axes),
        cmocka_unit_test(permute_moves_axis_perm_d_to_d),
        cmocka_unit_test(permute_then_inverse_permute_is_the_identity),
        cmocka_unit_test(permute_of_a_scalar_and_negative_entries),
        cmocka_unit_test(permute_and_transpose_reject_bad_axes),
        cmocka_unit_test(slice_takes_a_window_of_one_axis),
        cmocka_unit_test(slice_with_start_equal_to_end_is_empty),
        cmocka_unit_test(slice_rejects_ranges_outside_the_axis),
        cmocka_unit_test(concat_joins_along_an_axis_and_splits_the_gradient),
        cmocka_unit_test(slices_of_a_concat_give_back_the_pieces),
        cmocka_unit_test(concat_of_one_tensor_used_twice_gets_both_gradients),
        cmocka_unit_test(concat_rejects_mismatched_pieces),
        cmocka_unit_test(nothing_is_recorded_without_gradients),
        cmocka_unit_test(intermediate_gradients_are_stored_once_then_added),
    };
    return cmocka_run_group_tests_name("shape (" REAL_NAME ")", tests, NULL, NULL);
}
