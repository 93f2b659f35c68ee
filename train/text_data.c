/* text_data.c - see text_data.h. */
#include "text_data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util.h"

/* The whole file into a malloc'd buffer; its size in *size. */
static int read_file(const char *path, unsigned char **bytes, long *size, char *err,
                     size_t err_len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return path_error(err, err_len, path, "cannot open: %s", strerror(errno));
    struct stat info;
    if (fstat(fileno(fp), &info) != 0 || !S_ISREG(info.st_mode)) {
        fclose(fp);
        return path_error(err, err_len, path, "not a regular file");
    }
    long n = (long)info.st_size;
    unsigned char *buffer = xmalloc((size_t)n);
    size_t got = fread(buffer, 1, (size_t)n, fp);
    int read_error = ferror(fp);
    fclose(fp);
    if (read_error || got != (size_t)n) {
        free(buffer);
        return path_error(err, err_len, path, "read %zu of %ld bytes: %s", got, n,
                          read_error ? strerror(errno) : "file shrank while reading");
    }
    *bytes = buffer;
    *size = n;
    return 0;
}

/* 90% / 5% / 5% by byte offset; each split must hold a window of seq_len + 1 bytes. */
static int split_bytes(TextData *text, const char *path, char *err, size_t err_len) {
    long n = text->size, window = (long)text->seq_len + 1;
    text->length[SPLIT_TRAIN] = n * 9 / 10;
    text->length[SPLIT_VALID] = n / 20;
    text->length[SPLIT_TEST] = n - text->length[SPLIT_TRAIN] - text->length[SPLIT_VALID];
    long offset = 0;
    for (int s = 0; s < SPLIT_COUNT; s++) {
        text->begin[s] = offset;
        offset += text->length[s];
    }
    for (int s = 0; s < SPLIT_COUNT; s++)
        if (text->length[s] < window)
            return path_error(
                err, err_len, path,
                "too short: the %s split holds %ld of the file's %ld bytes but one window needs "
                "%ld (seq_len %d + 1); the file needs at least %ld bytes",
                split_name((DataSplit)s), text->length[s], n, window, text->seq_len, 20 * window);
    return 0;
}

int text_data_load(TextData *text, const char *path, int seq_len, char *err, size_t err_len) {
    if (seq_len < 1) cpool_fail("text_data_load: seq_len must be at least 1, got %d", seq_len);
    *text = (TextData){.seq_len = seq_len};
    if (read_file(path, &text->bytes, &text->size, err, err_len) != 0) return -1;
    int status = text->size == 0 ? path_error(err, err_len, path, "file is empty")
                                 : split_bytes(text, path, err, err_len);
    if (status != 0) text_data_free(text);
    return status;
}

void text_data_free(TextData *text) {
    free(text->bytes);
    *text = (TextData){0};
}

static void check_split(const char *who, DataSplit split) {
    if (split < 0 || split >= SPLIT_COUNT)
        cpool_fail("%s: split %d is not SPLIT_TRAIN, SPLIT_VALID or SPLIT_TEST", who, (int)split);
}

long text_data_windows(const TextData *text, DataSplit split) {
    check_split("text_data_windows", split);
    return (text->length[split] - 1) / text->seq_len;
}

void text_batch_init(TextBatch *batch, int capacity, int seq_len) {
    if (capacity < 1 || seq_len < 1)
        cpool_fail("text_batch_init: capacity and seq_len must be at least 1, got %d and %d",
                   capacity, seq_len);
    size_t n = (size_t)capacity * (size_t)seq_len;
    *batch = (TextBatch){.capacity = capacity, .seq_len = seq_len};
    batch->inputs = xmalloc(n * sizeof(int));
    batch->targets = xmalloc(n * sizeof(int));
}

void text_batch_free(TextBatch *batch) {
    free(batch->inputs);
    free(batch->targets);
    *batch = (TextBatch){0};
}

static void check_batch(const char *who, const TextData *text, DataSplit split,
                        const TextBatch *batch) {
    check_split(who, split);
    if (batch->seq_len != text->seq_len)
        cpool_fail("%s: the batch was made for seq_len %d but the data has seq_len %d", who,
                   batch->seq_len, text->seq_len);
}

/* Row b of the batch from the seq_len + 1 bytes at window (inputs 0..N-1, targets 1..N). */
static void fill_row(TextBatch *batch, int b, const unsigned char *window) {
    int n = batch->seq_len;
    int *inputs = batch->inputs + (size_t)b * n, *targets = batch->targets + (size_t)b * n;
    for (int t = 0; t < n; t++) {
        inputs[t] = window[t];
        targets[t] = window[t + 1];
    }
}

void text_data_sample(const TextData *text, DataSplit split, Rng *rng, TextBatch *batch) {
    check_batch("text_data_sample", text, split, batch);
    long starts = text->length[split] - text->seq_len; /* window starts 0 .. starts - 1 */
    const unsigned char *base = text->bytes + text->begin[split];
    for (int b = 0; b < batch->capacity; b++) {
        long start = (long)(rng_uniform(rng) * (double)starts);
        fill_row(batch, b, base + start);
    }
    batch->batch_size = batch->capacity;
}

int text_data_next(const TextData *text, DataSplit split, long *cursor, TextBatch *batch) {
    check_batch("text_data_next", text, split, batch);
    long windows = text_data_windows(text, split);
    if (*cursor < 0) cpool_fail("text_data_next: cursor %ld is negative", *cursor);
    const unsigned char *base = text->bytes + text->begin[split];
    int filled = 0;
    for (; filled < batch->capacity && *cursor < windows; filled++, (*cursor)++)
        fill_row(batch, filled, base + *cursor * text->seq_len);
    batch->batch_size = filled;
    return filled;
}
