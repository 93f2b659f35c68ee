/* test_train_progress.c - the progress line (plain lines off a terminal, one line redrawn in
 * place on a terminal), the loss-curve CSV (rows flushed as written, a resumed run's file cut
 * back to its checkpoint), and Ctrl-C as a stop request (first signal sets a flag, second one
 * kills). */
#include "test_train_util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "interrupt.h"
#include "progress.h"

/* --- Progress ----------------------------------------------------------------------------------
 */

static int count_lines(const char *text) {
    int n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

static void test_off_a_terminal_lines_come_every_k_steps(void **state) {
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    Progress progress;
    progress_init(&progress, out, "tok", 0, 12, 5);
    assert_int_equal(progress.is_terminal, 0);
    for (long step = 1; step <= 12; step++)
        progress_update(&progress, step, 256, log(2.0), "bpc", nats_to_bits(log(2.0)));
    progress_print(&progress, "valid bpc %.3f", 1.25);
    progress_finish(&progress);
    fclose(out);
    assert_int_equal(count_lines(text), 5); /* steps 1, 5, 10, 12 and the printed line */
    assert_non_null(strstr(text, "step 1/12  loss 0.6931  bpc 1.0000  "));
    assert_non_null(strstr(text, "\nstep 5/12  loss 0.6931  bpc 1.0000  "));
    assert_non_null(strstr(text, "\nstep 10/12  "));
    assert_non_null(strstr(text, "\nstep 12/12  "));
    assert_non_null(strstr(text, " tok/s  ETA "));
    assert_non_null(strstr(text, "\nvalid bpc 1.250\n"));
    assert_null(strchr(text, '\r'));
    assert_null(strchr(text, '\033'));
    free(text);
}

static void test_a_resumed_run_counts_from_its_first_step(void **state) {
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    Progress progress;
    progress_init(&progress, out, "img", 100, 200, 50);
    progress_update(&progress, 101, 64, 0.5, "acc", 0.875);
    progress_update(&progress, 102, 64, 0.5, NULL, 0);
    progress_update(&progress, 150, 64, 0.25, NULL, 0);
    fclose(out);
    assert_int_equal(count_lines(text), 2);
    assert_non_null(strstr(text, "step 101/200  loss 0.5000  acc 0.8750  "));
    assert_non_null(strstr(text, "step 150/200  loss 0.2500  "));
    assert_non_null(strstr(text, " img/s  ETA "));
    free(text);
}

static void test_on_a_terminal_one_line_is_redrawn_in_place(void **state) {
    (void)state;
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    Progress progress;
    progress_init(&progress, out, "tok", 0, 3, 100);
    progress.is_terminal = 1; /* as if isatty() */
    progress_update(&progress, 1, 10, 2.0, NULL, 0);
    progress_update(&progress, 2, 10, 1.5, NULL, 0); /* within 0.1 s: not redrawn */
    progress_print(&progress, "saved %s", "checkpoint");
    progress_update(&progress, 3, 10, 1.0, NULL, 0); /* the last step is always drawn */
    progress_finish(&progress);
    fclose(out);
    assert_int_equal(strncmp(text, "\rstep 1/3  loss 2.0000  ", 24), 0);
    assert_null(strstr(text, "step 2/3"));
    assert_non_null(strstr(text, "\033[K\r\033[Ksaved checkpoint\n\rstep 3/3  loss 1.0000  "));
    assert_int_equal(text[strlen(text) - 1], '\n');
    assert_int_equal(count_lines(text), 2);
    free(text);
}

static void test_durations_and_bits(void **state) {
    (void)state;
    char b[32];
    assert_string_equal(format_duration(0, b, sizeof b), "0s");
    assert_string_equal(format_duration(59.4, b, sizeof b), "59s");
    assert_string_equal(format_duration(61, b, sizeof b), "1m01s");
    assert_string_equal(format_duration(3725, b, sizeof b), "1h02m");
    assert_string_equal(format_duration(90061, b, sizeof b), "25h01m");
    assert_string_equal(format_duration(-1, b, sizeof b), "?");
    assert_string_equal(format_duration(NAN, b, sizeof b), "?");
    assert_true(fabs(nats_to_bits(log(2.0)) - 1) < 1e-15);
    assert_true(fabs(nats_to_bits(log(256.0)) - 8) < 1e-14);
    double t0 = wall_seconds();
    assert_true(wall_seconds() >= t0);
    Progress progress;
    EXPECT_FAIL(progress_init(&progress, stderr, "tok", 0, 10, 0), "every must be at least 1");
}

/* --- CSV ---------------------------------------------------------------------------------------
 */

static const char *const HEADER = "step,tokens,lr,train_loss,valid_loss,valid_bpc,elapsed_s\n";

static void open_ok(CsvLog *log, const char *path, const char *metric, long resume_step) {
    char err[512];
    if (csv_log_open(log, path, metric, resume_step, err, sizeof err) != 0) fail_msg("%s", err);
}

static void write_ok(CsvLog *log, CsvRow row) {
    char err[512];
    if (csv_log_write(log, &row, err, sizeof err) != 0) fail_msg("%s", err);
}

static void close_ok(CsvLog *log) {
    char err[512];
    if (csv_log_close(log, err, sizeof err) != 0) fail_msg("%s", err);
}

static void test_csv_rows_are_flushed_as_written_and_nan_is_empty(void **state) {
    (void)state;
    const char *path = train_temp_path("loss.csv");
    train_write_file(path, "old content\n", 12); /* a new run replaces it */
    CsvLog log;
    open_ok(&log, path, "bpc", -1);
    write_ok(&log, (CsvRow){.step = 100,
                            .tokens = 25600,
                            .lr = 1e-3,
                            .train_loss = 1.5,
                            .valid_loss = NAN,
                            .valid_metric = NAN,
                            .elapsed_seconds = 12.25});
    char *text = train_read_file(path, NULL); /* before closing: already on disk */
    char expected[512];
    snprintf(expected, sizeof expected, "%s100,25600,0.001,1.5,,,12.250\n", HEADER);
    assert_string_equal(text, expected);
    free(text);
    write_ok(&log, (CsvRow){.step = 200,
                            .tokens = 51200,
                            .lr = 0.000999876,
                            .train_loss = NAN,
                            .valid_loss = 1.0 / 3,
                            .valid_metric = 0.48089834696298783,
                            .elapsed_seconds = 24.5});
    close_ok(&log);
    text = train_read_file(path, NULL);
    snprintf(expected, sizeof expected,
             "%s100,25600,0.001,1.5,,,12.250\n200,51200,0.000999876,,0.333333333,0.480898347,"
             "24.500\n",
             HEADER);
    assert_string_equal(text, expected);
    free(text);
}

static void test_a_resumed_run_drops_rows_after_its_checkpoint(void **state) {
    (void)state;
    const char *path = train_temp_path("resume.csv");
    char content[1024];
    snprintf(content, sizeof content,
             "%s100,1,0.001,2,,,1.000\n200,2,0.001,1.9,1.8,2.5,2.000\n300,3,0.001,1.7,,,3.000\n"
             "400,4,0.001,1.6,,,4.000\n50",
             HEADER); /* "50": a row cut off by the crash */
    train_write_file(path, content, strlen(content));
    CsvLog log;
    open_ok(&log, path, "bpc", 200); /* the checkpoint was at step 200 */
    write_ok(&log, (CsvRow){.step = 300,
                            .tokens = 3,
                            .lr = 0.001,
                            .train_loss = 1.75,
                            .valid_loss = NAN,
                            .valid_metric = NAN,
                            .elapsed_seconds = 3});
    close_ok(&log);
    char *text = train_read_file(path, NULL);
    char expected[1024];
    snprintf(expected, sizeof expected,
             "%s100,1,0.001,2,,,1.000\n200,2,0.001,1.9,1.8,2.5,2.000\n300,3,0.001,1.75,,,3.000\n",
             HEADER);
    assert_string_equal(text, expected);
    free(text);

    /* resuming without a file starts one */
    const char *fresh = train_temp_path("fresh.csv");
    open_ok(&log, fresh, "bpc", 500);
    close_ok(&log);
    text = train_read_file(fresh, NULL);
    assert_string_equal(text, HEADER);
    free(text);
}

static void expect_open_error(const char *path, const char *metric, long resume_step,
                              const char *expected) {
    CsvLog log;
    char err[512];
    assert_int_equal(csv_log_open(&log, path, metric, resume_step, err, sizeof err), -1);
    if (!strstr(err, expected)) fail_msg("error \"%s\" does not say \"%s\"", err, expected);
    if (strchr(err, '\n')) fail_msg("error \"%s\" is more than one line", err);
    assert_null(log.fp);
}

static void test_csv_problems_are_one_line_naming_the_file(void **state) {
    (void)state;
    const char *path = train_temp_path("acc.csv");
    CsvLog log;
    open_ok(&log, path, "accuracy", -1);
    close_ok(&log);
    expect_open_error(path, "bpc", 10,
                      "header is 'step,tokens,lr,train_loss,valid_loss,valid_accuracy,elapsed_s' "
                      "but this run writes 'step,tokens,lr,train_loss,valid_loss,valid_bpc,"
                      "elapsed_s'");
    char content[256];
    snprintf(content, sizeof content, "%s100,1,,,,,\nbad,2,,,,,\n", HEADER);
    train_write_file(path, content, strlen(content));
    expect_open_error(path, "bpc", 10, "acc.csv: line 3: expected a step number, got 'bad,2");
    expect_open_error(train_temp_path("no/such/dir.csv"), "bpc", -1, "cannot create");
}

/* --- Interrupts --------------------------------------------------------------------------------
 */

static volatile sig_atomic_t earlier_handler_calls;
static void earlier_handler(int signal_number) {
    (void)signal_number;
    earlier_handler_calls++;
}

/* raise() with stderr sent to /dev/null (the handler writes its one-line notice there). */
static void raise_quietly(int signal_number) {
    fflush(stderr);
    int saved = dup(STDERR_FILENO), null = open("/dev/null", O_WRONLY);
    dup2(null, STDERR_FILENO);
    raise(signal_number);
    dup2(saved, STDERR_FILENO);
    close(null), close(saved);
}

static void test_first_signal_sets_the_flag_and_restore_puts_back_the_old_handler(void **state) {
    (void)state;
    signal(SIGINT, earlier_handler);
    signal(SIGTERM, earlier_handler);
    interrupt_install();
    assert_int_equal(interrupt_requested(), 0);
    raise_quietly(SIGINT);
    assert_int_equal(interrupt_requested(), SIGINT);
    interrupt_restore();
    assert_int_equal(interrupt_requested(), 0);
    raise(SIGINT);
    assert_int_equal(earlier_handler_calls, 1);

    interrupt_install();
    raise_quietly(SIGTERM);
    assert_int_equal(interrupt_requested(), SIGTERM);
    interrupt_restore();
    assert_int_equal(earlier_handler_calls, 1);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
}

static void test_a_second_signal_kills_the_process(void **state) {
    (void)state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDERR_FILENO);
        interrupt_install();
        raise(SIGINT); /* sets the flag */
        if (interrupt_requested() != SIGINT) _exit(3);
        raise(SIGINT); /* default action: the child dies here */
        _exit(4);
    }
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGINT)
        fail_msg("the child should die of SIGINT, status %d", status);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_a_terminal_lines_come_every_k_steps),
        cmocka_unit_test(test_a_resumed_run_counts_from_its_first_step),
        cmocka_unit_test(test_on_a_terminal_one_line_is_redrawn_in_place),
        cmocka_unit_test(test_durations_and_bits),
        cmocka_unit_test(test_csv_rows_are_flushed_as_written_and_nan_is_empty),
        cmocka_unit_test(test_a_resumed_run_drops_rows_after_its_checkpoint),
        cmocka_unit_test(test_csv_problems_are_one_line_naming_the_file),
        cmocka_unit_test(test_first_signal_sets_the_flag_and_restore_puts_back_the_old_handler),
        cmocka_unit_test(test_a_second_signal_kills_the_process),
    };
    return cmocka_run_group_tests_name("train: progress, csv, interrupt (" REAL_NAME ")", tests,
                                       train_temp_dir_create, train_temp_dir_remove);
}
