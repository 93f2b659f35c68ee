/* test_tape.c - the tape: recording, the backward walk, no-grad mode, anomaly mode, arena reuse,
 * released gradients. */
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

/* ---- Anomaly mode ---------------------------------------------------------------------------
 * Every message is one line: "anomaly: op 'NAME' at tape position P (input(s) SHAPES; output
 * SHAPE) produced NaN|Inf|-Inf in its forward output | in backward, in the gradient of its
 * input I, at element E (index [..])". EXPECT_FAIL checks the substring, so each test spells out
 * the part that proves the right op, position, shapes and element were found. */

/* A tape in anomaly mode that names the tensor `named` as 'w' (as a trainer names parameters). */
static const Tensor *named_tensor;

static const char *name_w(const Tensor *t, void *user) {
    (void)user;
    return t == named_tensor ? "w" : NULL;
}

static Tape *anomaly_tape(const Tensor *named) {
    Tape *tape = tape_create();
    tape->anomaly = 1;
    named_tensor = named;
    tape->tensor_name = name_w;
    return tape;
}

/* exp(3 * 1000) = e^3000 overflows to Inf in float32 (max e^88.7) and float64 (max e^709.8). */
static void anomaly_forward_inf_from_exp_overflow(void **state) {
    (void)state;
    Tensor *x = tensor_create(1, (int[]){2}, 1);
    x->data[1] = 1000;
    Tape *tape = anomaly_tape(x);
    Tensor *y = triple(tape, x); /* position 0: 0, 3000, finite */
    EXPECT_FAIL(op_exp(tape, y), "anomaly: op 'exp' at tape position 1 (input (2); output (2)) "
                                 "produced Inf in its forward output at element 1");
    assert_int_equal(tape->anomaly_found, 1);
    assert_int_equal(tape->n_records, 1); /* the failing op was not recorded */
    tape_reset(tape);
    assert_int_equal(tape->anomaly_found, 0);
    tape_free(tape);
    tensor_free(x);
}

/* log of a negative number is NaN, of 0 it is -Inf. The first bad element of the first bad op
 * is named: element 4 of (2, 3) is index [1, 1]; element 5 is bad too, and exp after the log
 * would be, but the check stops at the first. */
static void anomaly_forward_nan_from_log_of_a_negative(void **state) {
    (void)state;
    Tensor *x = tensor_create(2, (int[]){2, 3}, 1);
    for (long i = 0; i < x->size; i++) x->data[i] = 1 + (real)i;
    x->data[4] = -1, x->data[5] = -2;
    Tape *tape = anomaly_tape(x);
    EXPECT_FAIL(op_exp(tape, op_log(tape, x)),
                "anomaly: op 'log' at tape position 0 (input 'w' (2, 3); output (2, 3)) produced "
                "NaN in its forward output at element 4 (index [1, 1])");
    assert_int_equal(tape->n_records, 0); /* exp never ran */
    tape_reset(tape);
    x->data[4] = 0, x->data[5] = 1;
    EXPECT_FAIL(op_log(tape, triple(tape, x)),
                "op 'log' at tape position 1 (input (2, 3); output (2, 3)) produced -Inf in its "
                "forward output at element 4 (index [1, 1])");
    tape_free(tape);
    tensor_free(x);
}

/* Outside anomaly mode nothing is checked: log(-1) is NaN and the ops go on. */
static void without_anomaly_mode_nothing_is_checked(void **state) {
    (void)state;
    Tape *tape = tape_create();
    Tensor *x = tensor_create(1, (int[]){1}, 1);
    x->data[0] = -1;
    Tensor *y = op_exp(tape, op_log(tape, x));
    assert_true(isnan(y->data[0]));
    assert_int_equal(tape->n_records, 2);
    assert_int_equal(tape->anomaly_found, 0);
    tape_free(tape);
    tensor_free(x);
}

/* sqrt at 0: finite forward (0), but dy/dx = 1 / (2 sqrt x) = Inf. Here loss = sum(3 sqrt(w)):
 * the sum's and triple's backwards are finite (1, then 3), sqrt's gives dw[0] = 3 / 0 = Inf. */
static void anomaly_backward_inf_from_sqrt_at_zero(void **state) {
    (void)state;
    Tensor *w = tensor_create(1, (int[]){2}, 1);
    w->data[1] = 4;
    Tape *tape = anomaly_tape(w);
    Tensor *loss = op_sum_all(tape, triple(tape, op_sqrt(tape, w))); /* positions 0, 1, 2 */
    EXPECT_FAIL(tape_backward(tape, loss),
                "anomaly: op 'sqrt' at tape position 0 (input 'w' (2); output (2)) produced Inf "
                "in backward, in the gradient of its input 0 'w', at element 0");
    tape_free(tape);
    tensor_free(w);
}

/* sqrt(sqrt(w)) at w = 0: both sqrt backwards would give Inf; backward runs from the last record,
 * so the outer sqrt (position 1) is the first to produce it and is the one named. */
static void anomaly_backward_names_the_first_in_backward_order(void **state) {
    (void)state;
    Tensor *w = tensor_create(1, (int[]){1}, 1);
    Tape *tape = anomaly_tape(w);
    Tensor *loss = op_sum_all(tape, op_sqrt(tape, op_sqrt(tape, w))); /* positions 0, 1, 2 */
    EXPECT_FAIL(tape_backward(tape, loss),
                "anomaly: op 'sqrt' at tape position 1 (input (1); output (1)) produced Inf in "
                "backward, in the gradient of its input 0, at element 0");
    assert_true(w->grad[0] == 0); /* position 0 never ran its backward (it would add Inf) */
    tape_free(tape);
    tensor_free(w);
}

/* A test-only op y = a + b whose backward writes 0 / 0 = NaN into b's gradient at element 1:
 * the check names the input (1) whose gradient went bad, not the one that stayed finite. */
static void nan_grad_backward(Tape *tape, TapeRecord *record) {
    plus_backward(tape, record);
    real *db = tape_grad(tape, record->inputs[1]);
    volatile real zero = 0; /* not folded: a real 0 / 0 at run time */
    db[1] = zero / zero;
}

static void anomaly_backward_nan_names_the_input(void **state) {
    (void)state;
    Tensor *a = tensor_create(1, (int[]){2}, 1), *b = tensor_create(1, (int[]){2}, 1);
    Tape *tape = anomaly_tape(b);
    Tensor *y = tape_tensor(tape, 1, (int[]){2});
    for (long i = 0; i < 2; i++) y->data[i] = a->data[i] + b->data[i];
    tape_record(tape, "nan_grad", nan_grad_backward, y, 2, (Tensor *[]){a, b});
    EXPECT_FAIL(tape_backward(tape, op_sum_all(tape, y)),
                "anomaly: op 'nan_grad' at tape position 0 (inputs (2), 'w' (2); output (2)) "
                "produced NaN in backward, in the gradient of its input 1 'w', at element 1");
    tape_free(tape);
    tensor_free(a);
    tensor_free(b);
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

/* y = x, whose backward hands dy's buffer itself to x when x has no gradient yet (as op_add
 * does): x owns it then, and the tape must not release it after this record. */
static void pass_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    if (!x->requires_grad) return;
    if (!x->grad) {
        x->grad = y->grad;
        return;
    }
    for (long i = 0; i < y->size; i++) x->grad[i] += y->grad[i];
    (void)tape;
}

static Tensor *pass(Tape *tape, Tensor *x) {
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
    memcpy(y->data, x->data, (size_t)x->size * sizeof(real));
    tape_record(tape, "pass", pass_backward, y, 1, &x);
    return y;
}

/* w -> triple -> triple -> pass -> triple x 3 -> out, backward from a seed of ones:
 * dw = 3^5 = 243. Kept (release_grads = 0): every intermediate has its own gradient buffer, 5 new
 * ones (pass hands its own on). Released: each is handed back after its record's backward and
 * the next gradient of its size reuses it, so only 2 buffers are ever allocated (the seeded one
 * and the one being written), the intermediates' gradients are NULL afterwards, and dw is the
 * same, bit for bit. The buffer pass hands on must be released only by its new owner: released
 * after pass too, the first triple's gradient would reuse it while the second still reads it. */
static void released_gradients_are_reused(void **state) {
    (void)state;
    enum { SIZE = 1024 }; /* 4 KB (float) per buffer: far above the arena's 64-byte rounding */
    real seed[SIZE], kept_dw[SIZE];
    size_t used[2];
    for (int i = 0; i < SIZE; i++) seed[i] = 1;
    for (int release = 0; release < 2; release++) {
        Tape *tape = tape_create();
        tape->release_grads = release;
        Tensor *w = tensor_create(1, (int[]){SIZE}, 1);
        for (int i = 0; i < SIZE; i++) w->data[i] = (real)i;
        Tensor *chain[4];
        chain[0] = pass(tape, triple(tape, triple(tape, w)));
        for (int k = 1; k < 4; k++) chain[k] = triple(tape, chain[k - 1]);
        size_t before = tape->arena.used_bytes;
        tape_backward_from(tape, chain[3], seed);
        used[release] = tape->arena.used_bytes - before;
        for (int i = 0; i < SIZE; i++) assert_true(w->grad[i] == 243);
        if (release) {
            assert_memory_equal(w->grad, kept_dw, sizeof kept_dw);
            for (int k = 0; k < 4; k++) assert_null(chain[k]->grad);
        } else {
            memcpy(kept_dw, w->grad, sizeof kept_dw);
        }
        tensor_free(w);
        tape_free(tape);
    }
    assert_int_equal(used[0], 5 * SIZE * sizeof(real));
    assert_int_equal(used[1], 2 * SIZE * sizeof(real));
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
        cmocka_unit_test(anomaly_forward_inf_from_exp_overflow),
        cmocka_unit_test(anomaly_forward_nan_from_log_of_a_negative),
        cmocka_unit_test(without_anomaly_mode_nothing_is_checked),
        cmocka_unit_test(anomaly_backward_inf_from_sqrt_at_zero),
        cmocka_unit_test(anomaly_backward_names_the_first_in_backward_order),
        cmocka_unit_test(anomaly_backward_nan_names_the_input),
        cmocka_unit_test(backward_of_non_scalar_fails),
        cmocka_unit_test(arena_is_reused_after_reset),
        cmocka_unit_test(released_gradients_are_reused),
        cmocka_unit_test(tensor_shapes_are_validated),
    };
    return cmocka_run_group_tests_name("tape (" REAL_NAME ")", tests, NULL, NULL);
}
