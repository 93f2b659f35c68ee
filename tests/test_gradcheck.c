/* test_gradcheck.c - the gradient checker itself, and every registered check.
 *
 * Finite differences only mean something in double, so in the float32 build these tests are
 * skipped (cmocka reports them as skipped, not passed). */
#include "test_util.h"

#include "gradcheck.h"
#include "ops.h"

/* A deliberately wrong exp: forward e^x, backward dx += dy * x (should be dy * e^x). */
static void wrong_exp_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0];
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    for (long i = 0; i < x->size; i++) dx[i] += record->output->grad[i] * x->data[i];
}

static Tensor *wrong_exp(Tape *tape, Tensor *const *in, void *context) {
    (void)context;
    Tensor *x = in[0];
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
    for (long i = 0; i < x->size; i++) y->data[i] = (real)exp(x->data[i]);
    tape_record(tape, "wrong_exp", wrong_exp_backward, y, 1, &x);
    return y;
}

/* exp with a backward that writes NaN: the checker must not report zero error. */
static void nan_backward(Tape *tape, TapeRecord *record) {
    real *dx = tape_grad(tape, record->inputs[0]);
    if (dx) dx[0] += (real)NAN;
}

static Tensor *nan_exp(Tape *tape, Tensor *const *in, void *context) {
    (void)context;
    Tensor *x = in[0];
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
    for (long i = 0; i < x->size; i++) y->data[i] = (real)exp(x->data[i]);
    tape_record(tape, "nan_exp", nan_backward, y, 1, &x);
    return y;
}

static Tensor *right_exp(Tape *tape, Tensor *const *in, void *context) {
    (void)context;
    return op_exp(tape, in[0]);
}

#ifdef CPOOL_DOUBLE
#define REQUIRE_DOUBLE()
#else
#define REQUIRE_DOUBLE() skip()
#endif

static void a_wrong_backward_is_caught(void **state) {
    (void)state;
    REQUIRE_DOUBLE();
    Rng rng;
    rng_seed(&rng, 7);
    Tensor *x = gradcheck_input(&rng, 2, (int[]){3, 4}, -1, 1);
    GradcheckStats stats = {0};
    double rel = gradcheck(wrong_exp, NULL, &x, 1, NULL, &stats, NULL);
    /* The error is the size of the gradient itself (x vs e^x differ by O(1)), far above any
     * tolerance we use (1e-8 .. 1e-6). */
    assert_true(rel > 0.1);
    double rel_direction = gradcheck_direction(wrong_exp, NULL, &x, 1, NULL, &stats);
    assert_true(rel_direction > 0.01);
    assert_int_equal(stats.checks, 2);
    gradcheck_free(&x, 1);
}

static void a_nan_gradient_fails(void **state) {
    (void)state;
    REQUIRE_DOUBLE();
    Rng rng;
    rng_seed(&rng, 5);
    Tensor *x = gradcheck_input(&rng, 1, (int[]){4}, -1, 1);
    GradcheckStats stats = {0};
    gradcheck(nan_exp, NULL, &x, 1, NULL, &stats, NULL);
    assert_true(isnan(stats.max_rel_err));
    assert_false(stats.max_rel_err <= 1e-8); /* the test cmd_gradcheck applies */
    GradcheckStats direction = {0};
    gradcheck_direction(nan_exp, NULL, &x, 1, NULL, &direction);
    assert_true(isnan(direction.max_rel_err));
    gradcheck_free(&x, 1);
}

static void a_right_backward_passes_at_double_precision(void **state) {
    (void)state;
    REQUIRE_DOUBLE();
    Rng rng;
    rng_seed(&rng, 7);
    Tensor *x = gradcheck_input(&rng, 2, (int[]){3, 4}, -1, 1);
    GradcheckStats per_input[1] = {{0}};
    double rel = gradcheck(right_exp, NULL, &x, 1, NULL, NULL, per_input);
    assert_true(rel < 1e-8);
    assert_int_equal(per_input[0].elements, 12);
    assert_true(gradcheck_direction(right_exp, NULL, &x, 1, NULL, NULL) < 1e-8);
    gradcheck_free(&x, 1);
}

static void a_too_large_step_is_visible(void **state) {
    (void)state;
    REQUIRE_DOUBLE();
    /* With h = 0.5 the truncation error of central differences, h^2/6 f''' ~ 4% for exp,
     * dominates: the checker must report it rather than hide it. */
    Rng rng;
    rng_seed(&rng, 3);
    Tensor *x = gradcheck_input(&rng, 1, (int[]){5}, -1, 1);
    double rel = gradcheck(right_exp, NULL, &x, 1, &(GradcheckOptions){.step = 0.5}, NULL, NULL);
    assert_true(rel > 1e-2);
    gradcheck_free(&x, 1);
}

static void inputs_keep_away_from_kinks(void **state) {
    (void)state;
    Rng rng;
    rng_seed(&rng, 1);
    const double kinks[2] = {0, 0.5};
    Tensor *x = gradcheck_input_away(&rng, 1, (int[]){1000}, -1, 1, kinks, 2, 0.01);
    for (long i = 0; i < x->size; i++) {
        assert_true(fabs(x->data[i]) >= 0.01 - 1e-7);
        assert_true(fabs(x->data[i] - 0.5) >= 0.01 - 1e-7);
    }
    gradcheck_free(&x, 1);
    EXPECT_FAIL(gradcheck_input_away(&rng, 1, (int[]){3}, -1, 1, kinks, 1, 5), "no value");
}

static void every_registered_check_passes(void **state) {
    (void)state;
    REQUIRE_DOUBLE();
    int failures = 0;
    assert_true(opcheck_count() > 0);
    for (int i = 0; i < opcheck_count(); i++) {
        const OpCheck *check = opcheck_at(i);
        Rng rng;
        rng_seed(&rng, 1);
        GradcheckStats stats = {0};
        check->run(&rng, &stats);
        if (!(stats.checks > 0 && stats.max_rel_err <= check->tolerance)) {
            print_error("gradcheck %s: %d checks, max_rel_err %.3e > tolerance %.1e\n", check->name,
                        stats.checks, stats.max_rel_err, check->tolerance);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void names_are_unique_and_findable(void **state) {
    (void)state;
    for (int i = 0; i < opcheck_count(); i++) {
        const OpCheck *check = opcheck_at(i);
        assert_ptr_equal(opcheck_find(check->name), check);
        assert_true(check->tolerance > 0 && check->tolerance < 1e-3);
    }
    assert_null(opcheck_find("no_such_op"));
    assert_null(opcheck_at(opcheck_count()));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_wrong_backward_is_caught),
        cmocka_unit_test(a_nan_gradient_fails),
        cmocka_unit_test(a_right_backward_passes_at_double_precision),
        cmocka_unit_test(a_too_large_step_is_visible),
        cmocka_unit_test(inputs_keep_away_from_kinks),
        cmocka_unit_test(every_registered_check_passes),
        cmocka_unit_test(names_are_unique_and_findable),
    };
    return cmocka_run_group_tests_name("gradcheck (" REAL_NAME ")", tests, NULL, NULL);
}
