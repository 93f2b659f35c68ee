/* test_train_image.c - Fashion-MNIST reading: small IDX files written here (a valid set and one
 * malformed file per check, each refused with one line naming the file and the field), batches
 * (values byte / 255, shapes, labels, the splits), and the real files when installed. */
#include "test_train_util.h"

#include <zlib.h>

#include "image_data.h"

/* Image k of a test set: pixel i = (k + 3 i) % 256, so pixel 0 is k; label k % 10. */
static unsigned char pixel_of(int k, int i) {
    return (unsigned char)((k + 3 * i) % 256);
}

static void put_u32_be(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)(v >> 24), b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8), b[3] = (unsigned char)v;
}

/* An IDX file from its parts: the header fields (magic first), then n data bytes; gzip'd
 * unless plain. */
static void write_idx(const char *path, const uint32_t *fields, int n_fields,
                      const unsigned char *data, size_t n, int plain) {
    unsigned char header[16];
    for (int f = 0; f < n_fields; f++) put_u32_be(header + 4 * f, fields[f]);
    if (plain) {
        FILE *fp = fopen(path, "wb");
        assert_non_null(fp);
        fwrite(header, 1, 4 * (size_t)n_fields, fp);
        if (n) fwrite(data, 1, n, fp);
        assert_int_equal(fclose(fp), 0);
        return;
    }
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, header, 4 * (unsigned)n_fields), 4 * n_fields);
    if (n) assert_int_equal(gzwrite(gz, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* Options for a generated set: how many images, and one thing to break. */
typedef struct SetOptions {
    int n_train, n_test;
    uint32_t image_magic, label_magic;
    int rows;
    int label_count_delta; /* train labels file says n_train + delta */
    int extra_bytes;       /* appended to the train images' data */
    int missing_bytes;     /* cut from the train images' data */
    int bad_label;         /* > 0: train label 3 is this */
    int plain;             /* train images not gzip'd */
} SetOptions;

static SetOptions valid_set(void) {
    return (SetOptions){.n_train = 10,
                        .n_test = 4,
                        .image_magic = IDX_IMAGES_MAGIC,
                        .label_magic = IDX_LABELS_MAGIC,
                        .rows = IMAGE_SIZE};
}

static void write_pair(const char *dir, const char *prefix, int count, const SetOptions *o,
                       int broken) {
    char path[1024];
    int rows = broken ? o->rows : IMAGE_SIZE;
    size_t pixels = (size_t)count * (size_t)rows * IMAGE_SIZE;
    size_t n = broken ? pixels + (size_t)o->extra_bytes - (size_t)o->missing_bytes : pixels;
    unsigned char *data = calloc(pixels + 64, 1), labels[64];
    for (int k = 0; k < count; k++) {
        for (int i = 0; i < rows * IMAGE_SIZE; i++)
            data[(size_t)k * rows * IMAGE_SIZE + i] = pixel_of(k, i);
        labels[k] = (unsigned char)(k % 10);
    }
    if (broken && o->bad_label) labels[3] = (unsigned char)o->bad_label;
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    uint32_t image_header[4] = {broken ? o->image_magic : IDX_IMAGES_MAGIC, (uint32_t)count,
                                (uint32_t)rows, IMAGE_SIZE};
    write_idx(path, image_header, 4, data, n, broken && o->plain);
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    uint32_t label_header[2] = {broken ? o->label_magic : IDX_LABELS_MAGIC,
                                (uint32_t)(count + (broken ? o->label_count_delta : 0))};
    write_idx(path, label_header, 2, labels, (size_t)count, 0);
    free(data);
}

/* A directory TEMP/name with the four files; the options break the train files. */
static const char *write_set(const char *name, SetOptions o) {
    static char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", train_temp_dir, name);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_pair(dir, "train", o.n_train, &o, 1);
    write_pair(dir, "t10k", o.n_test, &o, 0);
    return dir;
}

static void test_a_valid_set_splits_and_converts_to_0_1(void **state) {
    (void)state;
    const char *dir = write_set("valid", valid_set());
    ImageData images;
    char err[512];
    if (image_data_load(&images, dir, 3, err, sizeof err) != 0) fail_msg("%s", err);
    assert_int_equal(images.count[SPLIT_TRAIN], 7);
    assert_int_equal(images.count[SPLIT_VALID], 3); /* the last 3 training images */
    assert_int_equal(images.count[SPLIT_TEST], 4);
    assert_int_equal(images.pixels[SPLIT_VALID][0], 7);
    assert_int_equal(images.labels[SPLIT_VALID][0], 7);

    ImageBatch batch;
    image_batch_init(&batch, 3);
    long cursor = 0;
    int expected_sizes[3] = {3, 1, 0}, k = 0;
    for (int round = 0; round < 3; round++) {
        int filled = image_data_next(&images, SPLIT_TEST, &cursor, &batch);
        assert_int_equal(filled, expected_sizes[round]);
        assert_int_equal(batch.images->ndim, 4);
        assert_int_equal(batch.images->shape[0], filled);
        assert_int_equal(batch.images->shape[1], 1);
        assert_int_equal(batch.images->shape[2], 28);
        assert_int_equal(batch.images->shape[3], 28);
        assert_int_equal(batch.images->size, filled * 784);
        for (int b = 0; b < filled; b++, k++) {
            assert_int_equal(batch.labels[b], k % 10);
            for (int i = 0; i < IMAGE_PIXELS; i++) {
                real expected = (real)pixel_of(k, i) / (real)255;
                if (batch.images->data[b * IMAGE_PIXELS + i] != expected)
                    fail_msg("test image %d pixel %d: expected %g, got %g", k, i, (double)expected,
                             (double)batch.images->data[b * IMAGE_PIXELS + i]);
            }
        }
    }
    image_batch_free(&batch);
    image_data_free(&images);
}

static void test_random_batches_stay_in_their_split_and_are_reproducible(void **state) {
    (void)state;
    const char *dir = write_set("random", valid_set());
    ImageData images;
    char err[512];
    if (image_data_load(&images, dir, 3, err, sizeof err) != 0) fail_msg("%s", err);
    ImageBatch batch;
    image_batch_init(&batch, 50);
    Rng rng, again;
    rng_seed(&rng, 5), rng_seed(&again, 5);
    int seen[10] = {0};
    for (int s = SPLIT_TRAIN; s <= SPLIT_VALID; s++) {
        image_data_sample(&images, (DataSplit)s, &rng, &batch);
        assert_int_equal(batch.batch_size, 50);
        for (int b = 0; b < 50; b++) {
            int k = (int)lround(batch.images->data[b * IMAGE_PIXELS] * 255); /* pixel 0 is k */
            assert_int_equal(batch.labels[b], k % 10);
            if (s == SPLIT_TRAIN) assert_true(k >= 0 && k < 7);
            if (s == SPLIT_VALID) assert_true(k >= 7 && k < 10);
            seen[k] = 1;
        }
    }
    for (int k = 0; k < 10; k++)
        if (!seen[k]) fail_msg("100 random images never included image %d", k);
    for (int b = 0; b < 100; b++) rng_u64(&again); /* exactly one draw per image */
    assert_memory_equal(rng.state, again.state, sizeof rng.state);
    image_batch_free(&batch);
    image_data_free(&images);
}

/* A broken set must be refused with one line that starts with the named file and says what. */
static void expect_refused(const char *name, SetOptions o, int n_valid, const char *file,
                           const char *expected) {
    const char *dir = write_set(name, o);
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s%s%s", dir, file[0] ? "/" : "", file);
    ImageData images;
    if (image_data_load(&images, dir, n_valid, err, sizeof err) == 0)
        fail_msg("%s: loaded but should fail with \"%s\"", name, expected);
    if (strncmp(err, path, strlen(path)) != 0)
        fail_msg("%s: error \"%s\" does not start with %s", name, err, path);
    if (!strstr(err, expected))
        fail_msg("%s: error \"%s\" does not say \"%s\"", name, err, expected);
    if (strchr(err, '\n')) fail_msg("%s: error \"%s\" is more than one line", name, err);
    for (int i = 0; i < 4; i++) assert_null(images.owned[i]);
}

static void test_every_malformed_file_is_one_line_naming_file_and_field(void **state) {
    (void)state;
    const char *images = "train-images-idx3-ubyte.gz", *labels = "train-labels-idx1-ubyte.gz";
    SetOptions o = valid_set();
    o.image_magic = IDX_LABELS_MAGIC;
    expect_refused("magic", o, 3, images,
                   "magic is 0x00000801 but an IDX images file has 0x00000803");
    o = valid_set(), o.label_magic = 0x08030000;
    expect_refused("label_magic", o, 3, labels, "magic is 0x08030000 but an IDX labels file has");
    o = valid_set(), o.missing_bytes = 100;
    expect_refused("truncated", o, 3, images,
                   "truncated: the header promises 10 images of 28x28 (7856 bytes) but the file "
                   "decompresses to 7756");
    o = valid_set(), o.extra_bytes = 1;
    expect_refused("too_long", o, 3, images,
                   "too long: the header promises 10 images of 28x28 (7856 bytes) but the file "
                   "decompresses to 7857");
    o = valid_set(), o.label_count_delta = -1;
    expect_refused(
        "count", o, 3, labels,
        "too long: the header promises 9 labels (17 bytes) but the file decompresses to 18");
    o = valid_set(), o.label_count_delta = 1;
    expect_refused(
        "count_high", o, 3, labels,
        "truncated: the header promises 11 labels (19 bytes) but the file decompresses to 18");
    o = valid_set(), o.bad_label = 10;
    expect_refused("label10", o, 3, labels, "label 10 at index 3 is outside 0..9");
    o = valid_set(), o.plain = 1;
    expect_refused("plain", o, 3, images, "not a gzip file");
    o = valid_set(), o.rows = 32;
    expect_refused("rows", o, 3, images, "rows is 32 but Fashion-MNIST images are 28x28");
    expect_refused("n_valid", valid_set(), 10, "",
                   "n_valid 10 leaves no training images: the train files hold 10");
}

/* Counts that disagree between the two files of a pair (each file consistent on its own). */
static void test_image_and_label_counts_must_match(void **state) {
    (void)state;
    const char *dir = write_set("mismatch", valid_set());
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/train-labels-idx1-ubyte.gz", dir);
    unsigned char labels[9] = {0};
    write_idx(path, (uint32_t[]){IDX_LABELS_MAGIC, 9}, 2, labels, 9, 0);
    ImageData images;
    assert_int_equal(image_data_load(&images, dir, 3, err, sizeof err), -1);
    if (!strstr(err, "train-labels-idx1-ubyte.gz: count is 9 but ") ||
        !strstr(err, "train-images-idx3-ubyte.gz holds 10 images"))
        fail_msg("unexpected error: %s", err);
}

static void expect_read_error(const char *path, const char *expected) {
    unsigned char *pixels = NULL;
    int count, rows, cols;
    char err[512];
    assert_int_equal(idx_read_images(path, &pixels, &count, &rows, &cols, err, sizeof err), -1);
    if (!strstr(err, expected)) fail_msg("error \"%s\" does not say \"%s\"", err, expected);
    assert_null(pixels);
}

static void test_missing_short_and_corrupt_files(void **state) {
    (void)state;
    expect_read_error(train_temp_path("nothing.gz"), "cannot open: No such file or directory");
    const char *path = train_temp_path("short.gz");
    write_idx(path, (uint32_t[]){IDX_IMAGES_MAGIC, 1}, 2, NULL, 0, 0); /* 8 of 16 bytes */
    expect_read_error(path, "truncated: 8 bytes, shorter than the 16-byte IDX images header");
    path = train_temp_path("empty.gz");
    train_write_file(path, "", 0);
    expect_read_error(path, "not a gzip file");

    /* a real gzip stream with a byte of its compressed body flipped */
    path = train_temp_path("corrupt.gz");
    unsigned char data[2000];
    for (int i = 0; i < 2000; i++) data[i] = (unsigned char)(i * i);
    write_idx(path, (uint32_t[]){IDX_IMAGES_MAGIC, 2, 10, 100}, 4, data, 2000, 0);
    size_t n;
    char *bytes = train_read_file(path, &n);
    train_write_file(train_temp_path("cut.gz"), bytes, n / 2); /* the stream cut short */
    expect_read_error(train_temp_path("cut.gz"), "corrupt gzip data: unexpected end of file");
    bytes[n / 2] ^= 0x55;
    train_write_file(path, bytes, n);
    free(bytes);
    expect_read_error(path, "corrupt gzip data: ");
}

static void test_programming_errors_fail_loudly(void **state) {
    (void)state;
    ImageData images;
    char err[64];
    EXPECT_FAIL(image_data_load(&images, "x", -1, err, sizeof err), "n_valid must be >= 0, got -1");
    ImageBatch batch;
    EXPECT_FAIL(image_batch_init(&batch, 0), "capacity must be at least 1, got 0");
    const char *dir = write_set("errors", valid_set());
    if (image_data_load(&images, dir, 0, err, sizeof err) != 0) fail_msg("%s", err);
    image_batch_init(&batch, 2);
    Rng rng;
    rng_seed(&rng, 1);
    EXPECT_FAIL(image_data_sample(&images, SPLIT_VALID, &rng, &batch), "the valid split is empty");
    EXPECT_FAIL(image_data_sample(&images, (DataSplit)-1, &rng, &batch), "split -1 is not");
    long cursor = 0;
    assert_int_equal(image_data_next(&images, SPLIT_VALID, &cursor, &batch), 0);
    image_batch_free(&batch);
    image_data_free(&images);
}

/* Debian's dataset-fashion-mnist: 60000 + 10000 images, 6000 and 1000 of each class. */
static void test_the_real_fashion_mnist_if_installed(void **state) {
    (void)state;
    if (access(FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        print_message("skipped: %s is absent (apt-get install dataset-fashion-mnist)\n",
                      FASHION_MNIST_DIR);
        return;
    }
    ImageData images;
    char err[512];
    if (image_data_load(&images, FASHION_MNIST_DIR, 5000, err, sizeof err) != 0)
        fail_msg("%s", err);
    assert_int_equal(images.count[SPLIT_TRAIN], 55000);
    assert_int_equal(images.count[SPLIT_VALID], 5000);
    assert_int_equal(images.count[SPLIT_TEST], 10000);
    assert_int_equal(images.labels[SPLIT_TRAIN][0], 9); /* the first image is an ankle boot */
    int per_class[2][10] = {{0}};
    for (int s = 0; s < SPLIT_COUNT; s++)
        for (int k = 0; k < images.count[s]; k++) per_class[s == SPLIT_TEST][images.labels[s][k]]++;
    for (int c = 0; c < 10; c++) {
        assert_int_equal(per_class[0][c], 6000);
        assert_int_equal(per_class[1][c], 1000);
    }
    print_message("%s: 55000 / 5000 / 10000 images, 6000 + 1000 per class\n", FASHION_MNIST_DIR);
    image_data_free(&images);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_a_valid_set_splits_and_converts_to_0_1),
        cmocka_unit_test(test_random_batches_stay_in_their_split_and_are_reproducible),
        cmocka_unit_test(test_every_malformed_file_is_one_line_naming_file_and_field),
        cmocka_unit_test(test_image_and_label_counts_must_match),
        cmocka_unit_test(test_missing_short_and_corrupt_files),
        cmocka_unit_test(test_programming_errors_fail_loudly),
        cmocka_unit_test(test_the_real_fashion_mnist_if_installed),
    };
    return cmocka_run_group_tests_name("train: image data (" REAL_NAME ")", tests,
                                       train_temp_dir_create, train_temp_dir_remove);
}
