/* test_bench.c - `cpool bench`: the row list, one small row's JSON line, and bad command lines.
 *
 * The command's core, bench_run(), is compiled into this test from tools/ (the tools are not part
 * of the library). It writes into a tmpfile() that the tests read back. Timings are never
 * asserted (the machine is shared): only that every number is there, finite and sensible. */
#include "test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#include "../tools/cmd_bench.c"

enum { OUTPUT_MAX = 8192 };

/* Run `cpool bench ARGS...` (NULL-terminated); stdout into output, the error line into err. */
static int run_bench(char *output, char *err, size_t err_len, ...) {
    char *argv[32] = {"bench"};
    int argc = 1;
    va_list args;
    va_start(args, err_len);
    for (const char *a; (a = va_arg(args, const char *));) argv[argc++] = (char *)a;
    va_end(args);
    FILE *out = tmpfile();
    assert_non_null(out);
    err[0] = '\0';
    int status = bench_run(argc, argv, out, err, err_len);
    rewind(out);
    size_t n = fread(output, 1, OUTPUT_MAX - 1, out);
    output[n] = '\0';
    fclose(out);
    return status;
}

static int count_lines(const char *text) {
    int lines = 0;
    for (; *text; text++) lines += *text == '\n';
    return lines;
}

static void list_names_every_row_once_per_line(void **state) {
    (void)state;
    char output[OUTPUT_MAX], err[256];
    assert_int_equal(run_bench(output, err, sizeof err, "--list", NULL), 0);
    assert_int_equal(count_lines(output), BENCH_N_ROWS);
    const char *expected[] = {"matmul_512",
                              "matmul_1024",
                              "charlm_step",
                              "charlm_step_cp",
                              "vit_step_cp",
                              "contextpool_fwd_bwd_1024",
                              "contextpool_fwd_bwd_8192",
                              "attention_fwd_bwd_1024",
                              "attention_fwd_bwd_8192"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        char line[64];
        snprintf(line, sizeof line, "%s\n", expected[i]);
        if (!strstr(output, line)) fail_msg("--list lacks %s:\n%s", expected[i], output);
    }
}

static double number(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (!cJSON_IsNumber(item)) fail_msg("key '%s' missing or not a number", key);
    if (!isfinite(item->valuedouble)) fail_msg("key '%s' is not finite", key);
    return item->valuedouble;
}

static void one_row_prints_one_json_line_with_every_key(void **state) {
    (void)state;
    char output[OUTPUT_MAX], err[256];
    assert_int_equal(run_bench(output, err, sizeof err, "--json", "--repeats", "2", "--threads",
                               "1", "contextpool_fwd_bwd_1024", NULL),
                     0);
    assert_int_equal(count_lines(output), 1);
    cJSON *row = cJSON_Parse(output);
    if (!row) fail_msg("not JSON: %s", output);
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(row, "name");
    assert_true(cJSON_IsString(name));
    assert_string_equal(name->valuestring, "contextpool_fwd_bwd_1024");
    assert_true(number(row, "threads") == 1);
    double median = number(row, "ms_median"), lo = number(row, "ms_min");
    double hi = number(row, "ms_max");
    assert_true(0 < lo && lo <= median && median <= hi);
    assert_true(number(row, "gflops") > 0);
    assert_true(number(row, "peak_rss_mb") > 0);
    assert_true(number(row, "cpu_ms_median") > 0);
    cJSON_Delete(row);
}

static void the_table_has_a_header_and_one_line_per_row(void **state) {
    (void)state;
    char output[OUTPUT_MAX], err[256];
    assert_int_equal(run_bench(output, err, sizeof err, "--repeats", "1",
                               "contextpool_fwd_bwd_1024", "contextpool_fwd_bwd_1024", NULL),
                     0);
    assert_int_equal(count_lines(output), 4);
    assert_non_null(strstr(output, "load average"));
    assert_non_null(strstr(output, "GFLOP/s"));
}

/* The 2 GB bound: float32 keeps N = 8192 (1.07 GB of P), float64 skips it (2.1 GB). */
static void attention_skips_only_what_would_not_fit(void **state) {
    (void)state;
    char note[128];
    assert_null(skip_reason(find_row("attention_fwd_bwd_4096"), note, sizeof note));
    assert_null(skip_reason(find_row("contextpool_fwd_bwd_8192"), note, sizeof note));
    const char *skip = skip_reason(find_row("attention_fwd_bwd_8192"), note, sizeof note);
    if (sizeof(real) == 8)
        assert_non_null(skip);
    else
        assert_null(skip);
}

static void bad_command_lines_are_one_line_with_status_2(void **state) {
    (void)state;
    const char *cases[][3] = {
        {"no_such_row", NULL, "unknown row 'no_such_row'"},
        {"--fast", NULL, "unknown option '--fast'"},
        {"--threads", "0", "--threads needs an integer in 1..256, got '0'"},
        {"--threads", "two", "--threads needs an integer"},
        {"--repeats", "-3", "--repeats needs an integer in 1..1000, got '-3'"},
        {"--repeats", "5x", "--repeats needs an integer"},
        {"--repeats", NULL, "--repeats needs an integer in 1..1000, got ''"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char output[OUTPUT_MAX], err[256];
        int status = run_bench(output, err, sizeof err, cases[i][0], cases[i][1], NULL);
        assert_int_equal(status, 2);
        if (!strstr(err, cases[i][2])) fail_msg("'%s' lacks '%s'", err, cases[i][2]);
        assert_null(strchr(err, '\n'));
        assert_string_equal(output, ""); /* nothing ran */
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_names_every_row_once_per_line),
        cmocka_unit_test(one_row_prints_one_json_line_with_every_key),
        cmocka_unit_test(the_table_has_a_header_and_one_line_per_row),
        cmocka_unit_test(attention_skips_only_what_would_not_fit),
        cmocka_unit_test(bad_command_lines_are_one_line_with_status_2),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
