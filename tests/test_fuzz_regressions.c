/* test_fuzz_regressions.c - every input the fuzzers ever crashed a reader with stays refused.
 *
 * tests/fuzz/regressions/<reader>/ holds the crash inputs libFuzzer saved (tests/fuzz/fuzz.mk),
 * byte for byte; each goes through fuzz_run_input() exactly as the harness gave it to the reader
 * (written to a temp file, gzipped first for idx_gz, as text for config). Each must now be
 * refused with one line: no crash (run under `make asan` too), no cpool_fail(), no empty or
 * multi-line message. The seed corpus tests/fuzz/corpus/<reader>/ goes through the same path
 * and must give no finding either (the seeds are valid files, so a reader that starts failing on
 * them, or a seed that no longer matches the format, shows up here before anyone fuzzes).
 *
 * The tests run from the repository root, as `make test` does. */
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>

#include "fuzz/fuzz_readers.c"

/* The whole file at path, malloc'd (a zero-byte file gives a 1-byte buffer, *size 0). */
static uint8_t *read_whole(const char *path, size_t *size) {
    FILE *fp = fopen(path, "rb");
    if (!fp) fail_msg("cannot open %s", path);
    uint8_t *bytes = NULL;
    size_t capacity = 0;
    *size = 0;
    for (;;) {
        if (*size == capacity) bytes = realloc(bytes, capacity = capacity * 2 + 4096);
        size_t got = fread(bytes + *size, 1, capacity - *size, fp);
        if (got == 0) break;
        *size += got;
    }
    fclose(fp);
    return bytes;
}

static int not_hidden(const struct dirent *entry) {
    return entry->d_name[0] != '.';
}

/* Run every file of dir/<reader>/ through the reader; each outcome must be `wanted` (or, when
 * any_but_finding, anything short of a finding). Returns the number of files. */
static int run_directory(const char *dir, const FuzzReader *reader, FuzzOutcome wanted,
                         int any_but_finding) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, reader->name);
    struct dirent **entries;
    int n = scandir(path, &entries, not_hidden, alphasort);
    if (n < 0) return 0; /* no such directory: nothing found for this reader yet */
    for (int i = 0; i < n; i++) {
        snprintf(path, sizeof path, "%s/%s/%s", dir, reader->name, entries[i]->d_name);
        size_t size;
        uint8_t *bytes = read_whole(path, &size);
        char err[1024];
        FuzzOutcome outcome = fuzz_run_input(reader, bytes, size, err, sizeof err);
        free(bytes);
        int ok = any_but_finding ? outcome < FUZZ_CPOOL_FAIL : outcome == wanted;
        if (!ok)
            fail_msg("%s: outcome %d (expected %s): %s", path, (int)outcome,
                     any_but_finding ? "no finding" : "a one-line refusal", err);
        free(entries[i]);
    }
    free(entries);
    return n;
}

static void crash_inputs_are_refused_with_one_line(void **state) {
    (void)state;
    int total = 0;
    for (int r = 0; r < FUZZ_READER_COUNT; r++)
        total += run_directory("tests/fuzz/regressions", &FUZZ_READERS[r], FUZZ_REFUSED, 0);
    print_message("%d regression inputs refused\n", total);
}

static void seed_corpus_gives_no_finding(void **state) {
    (void)state;
    for (int r = 0; r < FUZZ_READER_COUNT; r++) {
        int n = run_directory("tests/fuzz/corpus", &FUZZ_READERS[r], FUZZ_ACCEPTED, 1);
        if (n == 0) fail_msg("tests/fuzz/corpus/%s: no seeds", FUZZ_READERS[r].name);
    }
}

static void the_seeds_are_valid_files(void **state) {
    (void)state;
    /* A seed per reader that every call accepts, in both builds (a float32 checkpoint is only
     * refused for resuming by cpool64, so that one is checked where it applies). */
    const char *accepted[][2] = {
        {"npy", "i4_2x2.npy"},
        {"safetensors", "model_f32.safetensors"},
        {"config", "vit.cfg"},
#ifndef CPOOL_DOUBLE
        {"checkpoint", "step3.safetensors"},
#endif
    };
    for (size_t i = 0; i < sizeof accepted / sizeof accepted[0]; i++) {
        char path[512], err[1024];
        snprintf(path, sizeof path, "tests/fuzz/corpus/%s/%s", accepted[i][0], accepted[i][1]);
        size_t size;
        uint8_t *bytes = read_whole(path, &size);
        FuzzOutcome outcome =
            fuzz_run_input(fuzz_reader_find(accepted[i][0]), bytes, size, err, sizeof err);
        free(bytes);
        if (outcome != FUZZ_ACCEPTED) fail_msg("%s: not accepted: %s", path, err);
    }
    /* The IDX harness calls both readers on every input, so each file is refused by one. */
    char err[1024];
    unsigned char *pixels, *labels;
    int count, rows, cols;
    assert_int_equal(idx_read_images("tests/fuzz/corpus/idx/images-2x28x28.gz", &pixels, &count,
                                     &rows, &cols, err, sizeof err),
                     0);
    assert_int_equal(count * rows * cols, 2 * 28 * 28);
    free(pixels);
    assert_int_equal(
        idx_read_labels("tests/fuzz/corpus/idx/labels-12.gz", 10, &labels, &count, err, sizeof err),
        0);
    assert_int_equal(count, 12);
    free(labels);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(crash_inputs_are_refused_with_one_line),
        cmocka_unit_test(seed_corpus_gives_no_finding),
        cmocka_unit_test(the_seeds_are_valid_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
