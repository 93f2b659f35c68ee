/* test_errors.c - cpool_try (util.h): a failure anywhere inside the body comes back as -1 and
 * one line; tries nest, and the previous handler or try is in place again after each, on both
 * paths; a body that succeeds leaves err alone. Also the checks that turn user keys into errors
 * before a cpool_fail() could see them: lr_schedule_check and model_check_config. */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "model.h"
#include "optim.h"
#include "test_util.h"

typedef struct Body {
    int reached_end; /* set after the failing call: must stay 0 */
    int fail;        /* call cpool_fail with this many newlines in the message (-1: no failure) */
    int inner_status;
    char inner_err[256];
} Body;

static void failing_body(void *arg) {
    Body *body = arg;
    if (body->fail == 0) cpool_fail("op_matmul: a (2, 3) and b (4, 5) do not fit");
    if (body->fail > 0) cpool_fail("first line\nsecond line\rthird");
    body->reached_end = 1;
}

static void try_returns_minus_one_and_the_message(void **state) {
    (void)state;
    Body body = {.fail = 0};
    char err[128] = "unchanged";
    assert_int_equal(cpool_try(failing_body, &body, err, sizeof err), -1);
    assert_string_equal(err, "op_matmul: a (2, 3) and b (4, 5) do not fit");
    assert_int_equal(body.reached_end, 0);
}

static void message_is_one_line_and_cut_to_err_len(void **state) {
    (void)state;
    Body body = {.fail = 1};
    char err[128];
    assert_int_equal(cpool_try(failing_body, &body, err, sizeof err), -1);
    assert_string_equal(err, "first line second line third");
    char small[6];
    assert_int_equal(cpool_try(failing_body, &body, small, sizeof small), -1);
    assert_string_equal(small, "first"); /* 5 bytes and the terminator */
    assert_int_equal(cpool_try(failing_body, &body, NULL, 0), -1);
}

static void success_returns_zero_and_leaves_err(void **state) {
    (void)state;
    Body body = {.fail = -1};
    char err[32] = "set by the body";
    assert_int_equal(cpool_try(failing_body, &body, err, sizeof err), 0);
    assert_string_equal(err, "set by the body");
    assert_int_equal(body.reached_end, 1);
}

/* The inner try catches its failure; the outer body goes on and fails itself afterwards. */
static void outer_body(void *arg) {
    Body *body = arg;
    Body inner = {.fail = 0};
    body->inner_status = cpool_try(failing_body, &inner, body->inner_err, sizeof body->inner_err);
    cpool_fail("outer: after the inner try");
}

static void tries_nest_and_the_innermost_catches(void **state) {
    (void)state;
    Body body = {0};
    char err[128];
    assert_int_equal(cpool_try(outer_body, &body, err, sizeof err), -1);
    assert_int_equal(body.inner_status, -1);
    assert_string_equal(body.inner_err, "op_matmul: a (2, 3) and b (4, 5) do not fit");
    assert_string_equal(err, "outer: after the inner try");
}

static void counting_handler(const char *message, void *user) {
    (void)message;
    longjmp(*(jmp_buf *)user, 1);
}

/* After a try, on either path, the handler installed before it is the one in place. */
static void previous_handler_is_restored_on_both_paths(void **state) {
    (void)state;
    static jmp_buf escape;
    ErrorHandler outside = cpool_set_error_handler(counting_handler, &escape);
    Body failing = {.fail = 0}, passing = {.fail = -1};
    assert_int_equal(cpool_try(failing_body, &failing, NULL, 0), -1);
    assert_ptr_equal(cpool_error_handler_user(), &escape);
    assert_int_equal(cpool_try(failing_body, &passing, NULL, 0), 0);
    assert_ptr_equal(cpool_error_handler_user(), &escape);
    volatile int caught = 0;
    if (setjmp(escape) == 0)
        cpool_fail("reaches the handler, not a stale try");
    else
        caught = 1;
    assert_int_equal(caught, 1);
    assert_ptr_equal(cpool_set_error_handler(outside, NULL), counting_handler);
}

/* No try, no handler: a broken invariant. It aborts (a signal, not an exit status a caller could
 * mistake for an ordinary error) after one line saying so. Run in a child process. */
static void uncaught_failure_is_an_internal_error_and_aborts(void **state) {
    (void)state;
    int pipe_fds[2];
    assert_int_equal(pipe(pipe_fds), 0);
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        dup2(pipe_fds[1], 2);
        close(pipe_fds[0]);
        cpool_set_error_handler(NULL, NULL);
        cpool_fail("tape_backward: node %d has no grad", 7);
    }
    close(pipe_fds[1]);
    char text[256] = "";
    ssize_t n = read(pipe_fds[0], text, sizeof text - 1);
    close(pipe_fds[0]);
    text[n > 0 ? n : 0] = '\0';
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
    assert_string_equal(text, "cpool: internal error: tape_backward: node 7 has no grad\n");
}

static void lr_schedule_check_names_the_keys(void **state) {
    (void)state;
    char err[128];
    LrSchedule good = {.peak_lr = 1e-3, .min_lr = 1e-4, .warmup_steps = 10, .total_steps = 100};
    assert_int_equal(lr_schedule_check(&good, err, sizeof err), 0);
    LrSchedule low_above_peak = {.peak_lr = 1e-3, .min_lr = 1, .total_steps = 10};
    assert_int_equal(lr_schedule_check(&low_above_peak, err, sizeof err), -1);
    assert_string_equal(err, "min_lr=1 must be in [0, lr=0.001]");
    LrSchedule long_warmup = {.peak_lr = 1e-3, .warmup_steps = 20, .total_steps = 10};
    assert_int_equal(lr_schedule_check(&long_warmup, err, sizeof err), -1);
    assert_string_equal(err, "warmup=20 must be in [0, steps=10]");
}

/* A layer's refusal, caught inside model_check_config by its own cpool_try: an error, and the
 * handler outside is untouched. */
static void model_check_config_returns_a_layers_refusal(void **state) {
    (void)state;
    ModelConfig config = model_default_config(MODEL_CHARLM);
    config.variant.cp.s_min = 5, config.variant.cp.s_max = 1;
    char err[256];
    void *user_before = cpool_error_handler_user();
    assert_int_equal(model_check_config(&config, err, sizeof err), -1);
    assert_non_null(strstr(err, "s_max=1"));
    assert_null(strchr(err, '\n'));
    assert_ptr_equal(cpool_error_handler_user(), user_before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(try_returns_minus_one_and_the_message),
        cmocka_unit_test(message_is_one_line_and_cut_to_err_len),
        cmocka_unit_test(success_returns_zero_and_leaves_err),
        cmocka_unit_test(tries_nest_and_the_innermost_catches),
        cmocka_unit_test(previous_handler_is_restored_on_both_paths),
        cmocka_unit_test(uncaught_failure_is_an_internal_error_and_aborts),
        cmocka_unit_test(lr_schedule_check_names_the_keys),
        cmocka_unit_test(model_check_config_returns_a_layers_refusal),
    };
    return cmocka_run_group_tests_name("errors (cpool_try)", tests, NULL, NULL);
}
