/* test_tape.c - the tape: recording, the backward walk, no-grad mode, anomaly mode, arena reuse. */
#include "test_util.h"

#include "ops.h"

/* A test-only op y = 3x whose backward is written here, so these tests do not depend on any
 * other op file. */
static void triple_backward(Tape *tape, TapeRecord *record) {
    real *dx = tape_grad(tape, record->inputs[0]);
    if (!dx) return;
    for (long i = 0; i < record->output->size; i++) dx[i] += 3 * record->output->grad[i];
}

static Tensor *triple(Tape *tape, Tensor *x) {
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
    for (long i = 0; i < x->size; i++) y->data[i] = 3 * x->data[i];
    tape_record(tape, "triple", triple_backward, y, 1, &x);
    return y;
}

static void records_only_what_needs_grad(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *constant = tensor_create(1, (int[]){2}, 0);
    Tensor *parameter = tensor_create(1, (int[]){2}, 1);
    Tensor *a = triple(tape, constant);
    assert_int_equal(tape->n_records, 0);
    assert_false(a->requires_grad);
    Tensor *b = triple(tape, parameter);
    assert_int_equal(tape->n_records, 1);
    assert_true(b->requires_grad);
    assert_string_equal(tape->records[0].op, "triple");
    tape_free(tape);
    tensor_free(constant);
    tensor_free(parameter);
}

static void backward_walks_in_reverse_and_accumulates(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(1, (int[]){1}, 1);
    x->data[0] = 0.5;
    /* y = exp(3 exp(x)): dy/dx = y * 3 exp(x). */
    Tensor *y = op_exp(tape, triple(tape, op_exp(tape, x)));
    assert_int_equal(tape->n_records, 3);
    tape_backward(tape, y);
    double expected = exp(3 * exp(0.5)) * 3 * exp(0.5);
    assert_close(&expected, x->grad, 1, 1e-6, "d exp(3 exp(x)) / dx");

    /* A second backward (after reset) adds into the same parameter gradient. */
    tape_reset(tape);
    tape_backward(tape, op_exp(tape, triple(tape, op_exp(tape, x))));
    double twice = 2 * expected;
    assert_close(&twice, x->grad, 1, 1e-6, "accumulated gradient");
    tape_free(tape);
    tensor_free(x);
}

/* A test-only op z = a + b (same shapes): dz/da = dz/db = 1. */
static void plus_backward(Tape *tape, TapeRecord *record) {
    for (int k = 0; k < 2; k++) {
        real *d_input = tape_grad(tape, record->inputs[k]);
        if (!d_input) continue;
        for (long i = 0; i < record->output->size; i++) d_input[i] += record->output->grad[i];
    }
}

static Tensor *plus(Tape *tape, Tensor *a, Tensor *b) {
    Tensor *z = tape_tensor(tape, a->ndim, a->shape);
    for (long i = 0; i < a->size; i++) z->data[i] = a->data[i] + b->data[i];
    tape_record(tape, "plus", plus_backward, z, 2, (Tensor *[]){a, b});
    return z;
}

static void input_used_twice_gets_both_contributions(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(1, (int[]){1}, 1);
    x->data[0] = 2;
    /* y = 3x is used by two branches: z = 3y + y = 12x, so dz/dx = 3 * (3 + 1) = 12. The
     * record for y must receive the sum of both branches before it runs. */
    Tensor *y = triple(tape, x);
    Tensor *z = plus(tape, triple(tape, y), y);
    tape_backward(tape, z);
    double expected = 12;
    assert_close(&expected, x->grad, 1, 1e-12, "dz/dx");
    /* The same tensor as both inputs of one op: z = x + x, dz/dx = 2. */
    tape_reset(tape);
    tensor_zero_grad(x);
    tape_backward(tape, plus(tape, x, x));
    expected = 2;
    assert_close(&expected, x->grad, 1, 1e-12, "d(x + x)/dx");
    tape_free(tape);
    tensor_free(x);
}

static void no_grad_records_nothing(void **state) {
    (void)state;
    Tape *tape = tape_create();
    tape->no_grad = 1;
    Tensor *x = tensor_create(1, (int[]){3}, 1);
    Tensor *y = triple(tape, x);
    assert_int_equal(tape->n_records, 0);
    assert_false(y->requires_grad);
    tape_free(tape);
    tensor_free(x);
}

static void anomaly_mode_names_op_and_position(void **state) {
    (void)state;
    Tape *tape = tape_create();
    tape->anomaly = 1;
    Tensor *x = tensor_create(1, (int[]){2}, 1);
    x->data[1] = 1000; /* exp(3000) overflows to Inf in any precision */
    Tensor *y = triple(tape, x);
    EXPECT_FAIL(op_exp(tape, y), "op 'exp' at tape position 1 produced Inf in its forward output");
    tape_free(tape);
    tensor_free(x);
}

static void backward_of_non_scalar_fails(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(1, (int[]){3}, 1);
    Tensor *y = triple(tape, x);
    EXPECT_FAIL(tape_backward(tape, y), "the loss must have one element, got shape (3)");
    tape_free(tape);
    tensor_free(x);
}

static void arena_is_reused_after_reset(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(1, (int[]){100000}, 1);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 30; i++) triple(tape, x); /* 12 MB per step in float32 */
        tape_reset(tape);
    }
    /* After the first step the chain was merged into one block holding the peak. */
    assert_true(tape->arena.peak_bytes >= 30 * 100000 * sizeof(real));
    assert_int_equal(tape->arena.used_bytes, 0);
    tape_free(tape);
    tensor_free(x);
}

static void tensor_shapes_are_validated(void **state) {
    (void)state;
    EXPECT_FAIL(tensor_create(7, (int[]){1, 1, 1, 1, 1, 1, 1}, 0), "between 0 and 6 supported");
    EXPECT_FAIL(tensor_create(2, (int[]){2, -1}, 0), "dimension 1 is negative");
    Tensor *x = tensor_create(2, (int[]){2, 3}, 0);
    assert_int_equal(tensor_axis(x, -1, "test"), 1);
    EXPECT_FAIL(tensor_axis(x, 2, "sum"), "sum: axis 2 out of range for a tensor of shape (2, 3)");
    tensor_free(x);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_only_what_needs_grad),
        cmocka_unit_test(backward_walks_in_reverse_and_accumulates),
        cmocka_unit_test(input_used_twice_gets_both_contributions),
        cmocka_unit_test(no_grad_records_nothing),
        cmocka_unit_test(anomaly_mode_names_op_and_position),
        cmocka_unit_test(backward_of_non_scalar_fails),
        cmocka_unit_test(arena_is_reused_after_reset),
        cmocka_unit_test(tensor_shapes_are_validated),
    };
    return cmocka_run_group_tests_name("tape (" REAL_NAME ")", tests, NULL, NULL);
}
