/* test_train_text.c - the byte-level text dataset: the 90/5/5 split, random windows (inside
 * their split, reproducible, covering every start), sequential windows (every target once),
 * and a clear one-line error for every file problem. The real data/kjv.txt is read too when
 * `make data` has made it. */
#include "test_train_util.h"

#include "text_data.h"

/* A file of n pseudo-random bytes (a fixed seed), so no two windows of a few bytes are alike
 * and a window's content tells where it starts; returns its path. */
static const char *write_text(const char *name, long n) {
    unsigned char *bytes = malloc((size_t)n + 1);
    Rng rng;
    rng_seed(&rng, 99);
    for (long i = 0; i < n; i++) bytes[i] = (unsigned char)(rng_u64(&rng) >> 56);
    const char *path = train_temp_path(name);
    train_write_file(path, bytes, (size_t)n);
    free(bytes);
    return path;
}

static void load_ok(TextData *text, const char *path, int seq_len) {
    char err[256];
    if (text_data_load(text, path, seq_len, err, sizeof err) != 0) fail_msg("%s", err);
}

static void test_split_is_90_5_5_by_byte_offset(void **state) {
    (void)state;
    TextData text;
    load_ok(&text, write_text("a.txt", 1000), 8);
    assert_int_equal(text.size, 1000);
    assert_int_equal(text.begin[SPLIT_TRAIN], 0);
    assert_int_equal(text.length[SPLIT_TRAIN], 900);
    assert_int_equal(text.begin[SPLIT_VALID], 900);
    assert_int_equal(text.length[SPLIT_VALID], 50);
    assert_int_equal(text.begin[SPLIT_TEST], 950);
    assert_int_equal(text.length[SPLIT_TEST], 50);
    text_data_free(&text);

    load_ok(&text, write_text("b.txt", 1019), 8); /* floor(917.1), floor(50.95), the rest */
    assert_int_equal(text.length[SPLIT_TRAIN], 917);
    assert_int_equal(text.length[SPLIT_VALID], 50);
    assert_int_equal(text.length[SPLIT_TEST], 52);
    assert_int_equal(text.begin[SPLIT_TEST], 967);
    text_data_free(&text);
}

/* Where in the split row b's window starts (its inputs and targets checked against the file),
 * or a failure if it is not a window of that split. */
static long window_start(const TextData *text, DataSplit split, const TextBatch *batch, int b) {
    int n = batch->seq_len;
    const int *inputs = batch->inputs + b * n, *targets = batch->targets + b * n;
    const unsigned char *base = text->bytes + text->begin[split];
    for (long start = 0; start + n < text->length[split]; start++) {
        int same = 1;
        for (int t = 0; t < n && same; t++)
            same = inputs[t] == base[start + t] && targets[t] == base[start + t + 1];
        if (same) return start;
    }
    fail_msg("row %d is not a window of the %s split", b, split_name(split));
    return -1;
}

static void test_random_windows_lie_inside_their_split_and_cover_every_start(void **state) {
    (void)state;
    TextData text;
    load_ok(&text, write_text("c.txt", 400), 5); /* train 360, valid 20, test 20 */
    TextBatch batch;
    text_batch_init(&batch, 16, 5);
    Rng rng;
    rng_seed(&rng, 7);
    for (int s = 0; s < SPLIT_COUNT; s++) {
        long starts = text.length[s] - 5, seen_first = 0, seen_last = 0;
        for (int round = 0; round < 300; round++) {
            text_data_sample(&text, (DataSplit)s, &rng, &batch);
            assert_int_equal(batch.batch_size, 16);
            for (int b = 0; b < 16; b++) {
                long start = window_start(&text, (DataSplit)s, &batch, b);
                seen_first |= start == 0;
                seen_last |= start == starts - 1;
            }
        }
        if (!seen_first || !seen_last)
            fail_msg("%s: 4800 windows never started at 0 or never at the last start %ld",
                     split_name((DataSplit)s), starts - 1);
    }
    text_batch_free(&batch);
    text_data_free(&text);
}

static void test_a_batch_costs_exactly_batch_size_draws_and_a_seed_fixes_it(void **state) {
    (void)state;
    TextData text;
    load_ok(&text, write_text("d.txt", 2000), 16);
    TextBatch first, second;
    text_batch_init(&first, 8, 16);
    text_batch_init(&second, 8, 16);
    Rng rng, again, counted;
    rng_seed(&rng, 123), rng_seed(&again, 123), rng_seed(&counted, 123);
    text_data_sample(&text, SPLIT_TRAIN, &rng, &first);
    text_data_sample(&text, SPLIT_TRAIN, &again, &second);
    assert_memory_equal(first.inputs, second.inputs, 8 * 16 * sizeof(int));
    assert_memory_equal(first.targets, second.targets, 8 * 16 * sizeof(int));
    for (int b = 0; b < 8; b++) rng_u64(&counted);
    assert_memory_equal(rng.state, counted.state, sizeof rng.state);
    text_batch_free(&first);
    text_batch_free(&second);
    text_data_free(&text);
}

static void test_sequential_windows_make_every_target_appear_once(void **state) {
    (void)state;
    TextData text;
    load_ok(&text, write_text("e.txt", 1000), 7); /* valid: 50 bytes -> 7 windows, 49 targets */
    assert_int_equal(text_data_windows(&text, SPLIT_VALID), 7);
    assert_int_equal(text_data_windows(&text, SPLIT_TRAIN), 899 / 7);
    TextBatch batch;
    text_batch_init(&batch, 3, 7);
    const unsigned char *valid = text.bytes + text.begin[SPLIT_VALID];
    long cursor = 0, window = 0;
    int sizes[4], n_batches = 0, filled;
    while ((filled = text_data_next(&text, SPLIT_VALID, &cursor, &batch)) > 0) {
        assert_int_equal(filled, batch.batch_size);
        for (int b = 0; b < filled; b++, window++)
            for (int t = 0; t < 7; t++) {
                assert_int_equal(batch.inputs[b * 7 + t], valid[window * 7 + t]);
                assert_int_equal(batch.targets[b * 7 + t], valid[window * 7 + t + 1]);
            }
        if (n_batches < 4) sizes[n_batches] = filled;
        n_batches++;
    }
    assert_int_equal(n_batches, 3); /* 3 + 3 + 1 windows */
    assert_int_equal(sizes[0], 3), assert_int_equal(sizes[1], 3), assert_int_equal(sizes[2], 1);
    assert_int_equal(cursor, 7);
    assert_int_equal(text_data_next(&text, SPLIT_VALID, &cursor, &batch), 0); /* stays done */
    text_batch_free(&batch);
    text_data_free(&text);
}

static void expect_load_error(const char *path, int seq_len, const char *expected) {
    TextData text;
    char err[512];
    if (text_data_load(&text, path, seq_len, err, sizeof err) == 0)
        fail_msg("%s loaded but should fail with \"%s\"", path, expected);
    if (!strstr(err, expected)) fail_msg("error \"%s\" does not say \"%s\"", err, expected);
    if (strncmp(err, path, strlen(path)) != 0) fail_msg("error \"%s\" does not name the file", err);
    if (strchr(err, '\n')) fail_msg("error \"%s\" is more than one line", err);
    assert_null(text.bytes);
}

static void test_file_problems_are_one_line_naming_the_file(void **state) {
    (void)state;
    expect_load_error(train_temp_path("missing.txt"), 8, "cannot open: No such file or directory");
    expect_load_error(write_text("empty.txt", 0), 8, "file is empty");
    expect_load_error(train_temp_dir, 8, "not a regular file");
    /* a window of 9 bytes needs 20 * 9 = 180 bytes: valid gets floor(179 / 20) = 8 */
    expect_load_error(
        write_text("short.txt", 179), 8,
        "too short: the valid split holds 8 of the file's 179 bytes but one window needs 9 "
        "(seq_len 8 + 1); the file needs at least 180 bytes");
    TextData text;
    load_ok(&text, write_text("just.txt", 180), 8); /* exactly enough */
    assert_int_equal(text.length[SPLIT_VALID], 9);
    assert_int_equal(text.length[SPLIT_TEST], 9);
    text_data_free(&text);
}

static void test_programming_errors_fail_loudly(void **state) {
    (void)state;
    TextData text;
    char err[256];
    EXPECT_FAIL(text_data_load(&text, "x", 0, err, sizeof err), "seq_len must be at least 1");
    TextBatch batch;
    EXPECT_FAIL(text_batch_init(&batch, 0, 4), "capacity and seq_len must be at least 1");
    load_ok(&text, write_text("f.txt", 1000), 8);
    text_batch_init(&batch, 2, 4);
    Rng rng;
    rng_seed(&rng, 1);
    EXPECT_FAIL(text_data_sample(&text, SPLIT_TRAIN, &rng, &batch),
                "the batch was made for seq_len 4 but the data has seq_len 8");
    text_batch_free(&batch);
    text_batch_init(&batch, 2, 8);
    EXPECT_FAIL(text_data_sample(&text, (DataSplit)3, &rng, &batch), "split 3 is not");
    long cursor = -1;
    EXPECT_FAIL(text_data_next(&text, SPLIT_TEST, &cursor, &batch), "cursor -1 is negative");
    text_batch_free(&batch);
    text_data_free(&text);
}

static void test_split_names_parse_back(void **state) {
    (void)state;
    for (int s = 0; s < SPLIT_COUNT; s++) {
        DataSplit parsed;
        assert_int_equal(split_parse(split_name((DataSplit)s), &parsed), 0);
        assert_int_equal(parsed, s);
    }
    DataSplit unused;
    assert_int_equal(split_parse("validation", &unused), -1);
    assert_string_equal(split_name(SPLIT_VALID), "valid");
}

/* data/kjv.txt from `make data`: 31102 verses, 4137850 bytes with bible-kjv 4.38. */
static void test_the_real_kjv_file_if_made(void **state) {
    (void)state;
    const char *path = "data/kjv.txt";
    if (access(path, R_OK) != 0) {
        print_message("skipped: %s is absent (run `make data`)\n", path);
        return;
    }
    TextData text;
    load_ok(&text, path, 256);
    assert_true(text.size > 4000000);
    assert_memory_equal(text.bytes, "In the beginning God created the heaven and the earth.\n", 55);
    assert_int_equal(text.length[SPLIT_TRAIN], text.size * 9 / 10);
    long newlines = 0;
    for (long i = 0; i < text.size; i++) newlines += text.bytes[i] == '\n';
    assert_int_equal(newlines, 31102);
    print_message("%s: %ld bytes, %ld / %ld / %ld, %ld valid windows of 256\n", path, text.size,
                  text.length[SPLIT_TRAIN], text.length[SPLIT_VALID], text.length[SPLIT_TEST],
                  text_data_windows(&text, SPLIT_VALID));
    text_data_free(&text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_is_90_5_5_by_byte_offset),
        cmocka_unit_test(test_random_windows_lie_inside_their_split_and_cover_every_start),
        cmocka_unit_test(test_a_batch_costs_exactly_batch_size_draws_and_a_seed_fixes_it),
        cmocka_unit_test(test_sequential_windows_make_every_target_appear_once),
        cmocka_unit_test(test_file_problems_are_one_line_naming_the_file),
        cmocka_unit_test(test_programming_errors_fail_loudly),
        cmocka_unit_test(test_split_names_parse_back),
        cmocka_unit_test(test_the_real_kjv_file_if_made),
    };
    return cmocka_run_group_tests_name("train: text data (" REAL_NAME ")", tests,
                                       train_temp_dir_create, train_temp_dir_remove);
}
