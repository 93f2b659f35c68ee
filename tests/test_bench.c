/* test_bench.c - `cpool bench`: the row list, one small row's JSON line, bad command lines, and
 * --torch: a missing script, a script without torch, a fake script's answers, and (only where
 * /usr/bin/python3 can import torch) the real bench/torch_bench.py on one quick row.
 *
 * The command's core, bench_run(), is compiled into this test from tools/ (the tools are not part
 * of the library). It writes into a tmpfile() that the tests read back. Timings are never
 * asserted (the machine is shared): only that every number is there, finite and sensible, and
 * that the derived ones (GFLOP/s, ratio) follow from the others. */
#include "test_util.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include "../tools/cmd_bench.c"

enum { OUTPUT_MAX = 8192 };

/* The printed times have 4 decimals (ms), GFLOP/s and the ratio 6 significant digits: for times
 * >= 0.1 ms each rounding is off by at most 5e-4 relative, the others by 5e-6, and a check below
 * combines at most three roundings, so 2e-3 bounds it. (Every row timed here takes over
 * 0.1 ms, even without valgrind.) */
static const double PRINT_ROUNDING = 2e-3;

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
                              "matmul_2048x128x128",
                              "matmul_2048x512x128",
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

/* matmul_2048x128x128 is M x K x N = 2048 x 128 x 128, forward and both backward products:
 * GFLOP/s x ms = 6 M K N / 1e6. */
static void a_matmul_row_counts_forward_and_both_backward_products(void **state) {
    (void)state;
    char output[OUTPUT_MAX], err[256];
    assert_int_equal(
        run_bench(output, err, sizeof err, "--json", "--repeats", "1", "matmul_2048x128x128", NULL),
        0);
    cJSON *row = cJSON_Parse(output);
    if (!row) fail_msg("not JSON: %s", output);
    double flops = 6.0 * 2048 * 128 * 128;
    double implied = number(row, "gflops") * number(row, "ms_median") * 1e6;
    if (fabs(implied - flops) > PRINT_ROUNDING * flops)
        fail_msg("gflops x ms_median = %g flops, expected 6 M K N = %g", implied, flops);
    assert_null(cJSON_GetObjectItemCaseSensitive(row, "torch_ms_median")); /* no --torch */
    cJSON_Delete(row);
}

/* Title with the machine and the load, the column names, a line per row, the load at the end. */
static void the_table_has_a_header_and_one_line_per_row(void **state) {
    (void)state;
    char output[OUTPUT_MAX], err[256];
    assert_int_equal(run_bench(output, err, sizeof err, "--repeats", "1",
                               "contextpool_fwd_bwd_1024", "contextpool_fwd_bwd_1024", NULL),
                     0);
    assert_int_equal(count_lines(output), 5);
    assert_non_null(strstr(output, "cores; load average"));
    assert_non_null(strstr(output, "at the end"));
    assert_non_null(strstr(output, "GFLOP/s"));
    assert_null(strstr(output, "torch")); /* no --torch, no torch columns */
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

/* ---- --torch ---------------------------------------------------------------------------- */

/* A script file with the given text; path receives its name (remove it after). */
static void write_script(char *path, size_t len, const char *text) {
    snprintf(path, len, "/tmp/test_bench_XXXXXX.py");
    int fd = mkstemps(path, 3);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static int have_python(void) {
    return access(TORCH_PYTHON, X_OK) == 0;
}

static void a_missing_script_is_one_line_with_status_1(void **state) {
    (void)state;
    char output[OUTPUT_MAX], err[256];
    int status = run_bench(output, err, sizeof err, "--torch", "/nonexistent/torch_bench.py",
                           "matmul_512", NULL);
    assert_int_equal(status, 1);
    if (!strstr(err, "--torch: cannot read the script '/nonexistent/torch_bench.py'"))
        fail_msg("error '%s' does not name the script", err);
    assert_null(strchr(err, '\n'));
    assert_string_equal(output, ""); /* nothing ran */
}

/* A script that dies at once, as torch_bench.py without torch would: every row still runs,
 * with one note line and n/a (table), or a torch_note and no ratio (JSON); exit status 0. */
static void without_torch_the_rows_run_and_say_n_a(void **state) {
    (void)state;
    if (!have_python()) skip();
    char script[64], output[OUTPUT_MAX], err[256];
    write_script(script, sizeof script, "import sys\nsys.exit(1)\n");
    assert_int_equal(run_bench(output, err, sizeof err, "--repeats", "1", "--torch", script,
                               "matmul_2048x128x128", NULL),
                     0);
    if (!strstr(output, "torch: n/a: the PyTorch script printed nothing (exit status 1)\n"))
        fail_msg("no note line:\n%s", output);
    if (!strstr(output, "n/a     n/a")) fail_msg("no n/a columns:\n%s", output);
    assert_int_equal(run_bench(output, err, sizeof err, "--json", "--repeats", "1", "--torch",
                               script, "matmul_2048x128x128", NULL),
                     0);
    assert_int_equal(count_lines(output), 1);
    cJSON *row = cJSON_Parse(output);
    if (!row) fail_msg("not JSON: %s", output);
    assert_true(number(row, "ms_median") > 0);
    assert_null(cJSON_GetObjectItemCaseSensitive(row, "torch_ms_median"));
    assert_null(cJSON_GetObjectItemCaseSensitive(row, "ratio"));
    assert_true(cJSON_IsString(cJSON_GetObjectItemCaseSensitive(row, "torch_note")));
    cJSON_Delete(row);
    remove(script);
}

/* torch_bench.py's protocol, played by a fake: a first line naming torch, then one answer per
 * name read from stdin (here 50 ms for any row, a skip for attention). */
static const char *const FAKE_TORCH =
    "import json, sys\n"
    "print(json.dumps({'torch_version': 'fake', 'blas': 'none', 'threads': 1}), flush=True)\n"
    "print('a line that is not JSON', flush=True)\n"
    "for name in sys.stdin:\n"
    "    name = name.strip()\n"
    "    row = {'name': name, 'threads': 1}\n"
    "    if name.startswith('attention'):\n"
    "        row['skipped'] = 'too \"big\"'\n"
    "    else:\n"
    "        row.update(ms_median=50.0, ms_min=40.0, ms_max=60.0, cpu_ms_median=45.0,\n"
    "                   variant='unfold')\n"
    "    print(json.dumps(row), flush=True)\n";

static void the_scripts_answers_become_torch_columns_and_the_ratio(void **state) {
    (void)state;
    if (!have_python()) skip();
    char script[64], output[OUTPUT_MAX], err[256];
    write_script(script, sizeof script, FAKE_TORCH);
    assert_int_equal(run_bench(output, err, sizeof err, "--json", "--repeats", "1", "--torch",
                               script, "contextpool_fwd_bwd_1024", "attention_fwd_bwd_1024", NULL),
                     0);
    assert_int_equal(count_lines(output), 2);
    cJSON *row = cJSON_Parse(output);
    if (!row) fail_msg("not JSON: %s", output);
    assert_true(number(row, "torch_ms_median") == 50.0);
    assert_true(number(row, "torch_ms_min") == 40.0);
    double ratio = number(row, "ratio"), expected = number(row, "ms_median") / 50.0;
    if (fabs(ratio - expected) > PRINT_ROUNDING * expected)
        fail_msg("ratio %g, expected ms_median / torch_ms_median = %g", ratio, expected);
    const cJSON *variant = cJSON_GetObjectItemCaseSensitive(row, "torch_variant");
    assert_true(cJSON_IsString(variant));
    assert_string_equal(variant->valuestring, "unfold");
    cJSON_Delete(row);
    row = cJSON_Parse(strchr(output, '\n') + 1); /* the escaped quotes still parse */
    if (!row) fail_msg("second line not JSON: %s", output);
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(row, "torch_note");
    assert_true(cJSON_IsString(note));
    assert_string_equal(note->valuestring, "skipped: too \"big\"");
    assert_null(cJSON_GetObjectItemCaseSensitive(row, "ratio"));
    cJSON_Delete(row);
    remove(script);
}

/* A row name right after --torch is a row, not the script. */
static void torch_takes_a_script_only_if_it_looks_like_one(void **state) {
    (void)state;
    BenchOptions o;
    char err[256];
    char *rows[] = {"bench", "--torch", "matmul_512"};
    assert_int_equal(parse_args(3, rows, &o, err, sizeof err), 0);
    assert_true(o.torch && !o.torch_script && o.n_rows == 1);
    char *script[] = {"bench", "--torch", "mine.py", "matmul_512"};
    assert_int_equal(parse_args(4, script, &o, err, sizeof err), 0);
    assert_string_equal(o.torch_script, "mine.py");
    assert_int_equal(o.n_rows, 1);
}

/* The real thing, where torch is installed: one quick row against bench/torch_bench.py. */
static void with_torch_a_quick_row_gets_a_positive_time_and_ratio(void **state) {
    (void)state;
    if (!have_python() || access("bench/torch_bench.py", R_OK) != 0 ||
        system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0)
        skip();
    char output[OUTPUT_MAX], err[256];
    assert_int_equal(run_bench(output, err, sizeof err, "--json", "--repeats", "1", "--torch",
                               "bench/torch_bench.py", "matmul_2048x128x128", NULL),
                     0);
    cJSON *row = cJSON_Parse(output);
    if (!row) fail_msg("not JSON: %s", output);
    if (!cJSON_GetObjectItemCaseSensitive(row, "torch_ms_median")) fail_msg("no torch: %s", output);
    assert_true(number(row, "torch_ms_median") > 0);
    assert_true(number(row, "ratio") > 0);
    cJSON_Delete(row);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(list_names_every_row_once_per_line),
        cmocka_unit_test(one_row_prints_one_json_line_with_every_key),
        cmocka_unit_test(a_matmul_row_counts_forward_and_both_backward_products),
        cmocka_unit_test(the_table_has_a_header_and_one_line_per_row),
        cmocka_unit_test(attention_skips_only_what_would_not_fit),
        cmocka_unit_test(bad_command_lines_are_one_line_with_status_2),
        cmocka_unit_test(a_missing_script_is_one_line_with_status_1),
        cmocka_unit_test(without_torch_the_rows_run_and_say_n_a),
        cmocka_unit_test(the_scripts_answers_become_torch_columns_and_the_ratio),
        cmocka_unit_test(torch_takes_a_script_only_if_it_looks_like_one),
        cmocka_unit_test(with_torch_a_quick_row_gets_a_positive_time_and_ratio),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
