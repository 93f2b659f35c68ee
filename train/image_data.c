/* image_data.c - see image_data.h.
 *
 * An IDX file is read through zlib's gz* functions in three steps: the header (magic and
 * dimensions, big-endian uint32s), the data part into a buffer that grows as bytes actually
 * arrive (so a header that lies about its count cannot make us allocate more than the file
 * holds), and a final read that must find nothing more.
 */
#include "image_data.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "util.h"

/* --- Reading one IDX file -------------------------------------------------------------------- */

typedef struct IdxFile {
    gzFile gz;
    const char *path;
    char *err;
    size_t err_len;
} IdxFile;

static int idx_open(IdxFile *f, const char *path, char *err, size_t err_len) {
    *f = (IdxFile){.path = path, .err = err, .err_len = err_len};
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return path_error(err, err_len, path, "cannot open: %s", errno ? strerror(errno) : "zlib");
    gzbuffer(f->gz, 1 << 17);
    if (gzdirect(f->gz)) {
        gzclose(f->gz);
        return path_error(err, err_len, path, "not a gzip file");
    }
    return 0;
}

/* zlib's error message for the file, without the "path: " it starts with. */
static int gzip_error(IdxFile *f) {
    int code;
    const char *message = gzerror(f->gz, &code);
    size_t n = strlen(f->path);
    if (strncmp(message, f->path, n) == 0 && strncmp(message + n, ": ", 2) == 0) message += n + 2;
    return path_error(f->err, f->err_len, f->path, "corrupt gzip data: %s", message);
}

/* Up to n bytes into buffer; *got says how many arrived. -1 on a corrupt gzip stream. */
static int idx_read(IdxFile *f, void *buffer, size_t n, size_t *got) {
    *got = 0;
    while (*got < n) {
        size_t ask = n - *got < (1u << 30) ? n - *got : (1u << 30);
        int r = gzread(f->gz, (unsigned char *)buffer + *got, (unsigned)ask);
        if (r < 0) return gzip_error(f);
        if (r == 0) {
            int code;
            gzerror(f->gz, &code);
            if (code != Z_OK) return gzip_error(f); /* Z_BUF_ERROR: the stream is cut short */
            break;
        }
        *got += (size_t)r;
    }
    return 0;
}

static uint32_t get_u32_be(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* The header's n_fields uint32s (magic first), checked for length and magic. */
static int idx_header(IdxFile *f, int n_fields, uint32_t magic, const char *kind,
                      uint32_t *fields) {
    unsigned char bytes[16];
    size_t want = 4 * (size_t)n_fields, got;
    if (idx_read(f, bytes, want, &got) != 0) return -1;
    if (got < want)
        return path_error(f->err, f->err_len, f->path,
                          "truncated: %zu bytes, shorter than the %zu-byte IDX %s header", got,
                          want, kind);
    for (int i = 0; i < n_fields; i++) fields[i] = get_u32_be(bytes + 4 * i);
    if (fields[0] != magic)
        return path_error(f->err, f->err_len, f->path,
                          "magic is 0x%08x but an IDX %s file has 0x%08x", (unsigned)fields[0],
                          kind, (unsigned)magic);
    if (fields[1] > INT_MAX)
        return path_error(f->err, f->err_len, f->path, "count %u is more than %d",
                          (unsigned)fields[1], INT_MAX);
    return 0;
}

/* The data part: exactly `expected` bytes, then the end of the file. `what` describes the
 * promise for messages ("10000 images of 28x28"). */
static int idx_data(IdxFile *f, size_t header_bytes, size_t expected, const char *what,
                    unsigned char **data) {
    size_t capacity = expected < (1u << 20) ? expected : (1u << 20), used = 0, got;
    unsigned char *buffer = xmalloc(capacity);
    for (;;) {
        if (idx_read(f, buffer + used, capacity - used, &got) != 0) goto failed;
        used += got;
        if (used < capacity || capacity == expected) break;
        capacity = capacity * 2 < expected ? capacity * 2 : expected;
        buffer = xrealloc(buffer, capacity);
    }
    if (used < expected) {
        path_error(f->err, f->err_len, f->path,
                   "truncated: the header promises %s (%zu bytes) but the file decompresses to %zu",
                   what, header_bytes + expected, header_bytes + used);
        goto failed;
    }
    unsigned char extra[4096];
    size_t extra_bytes = 0;
    do {
        if (idx_read(f, extra, sizeof extra, &got) != 0) goto failed;
        extra_bytes += got;
    } while (got == sizeof extra);
    if (extra_bytes > 0) {
        path_error(f->err, f->err_len, f->path,
                   "too long: the header promises %s (%zu bytes) but the file decompresses to %zu",
                   what, header_bytes + expected, header_bytes + expected + extra_bytes);
        goto failed;
    }
    *data = buffer;
    return 0;
failed:
    free(buffer);
    return -1;
}

int idx_read_images(const char *path, unsigned char **pixels, int *count, int *rows, int *cols,
                    char *err, size_t err_len) {
    IdxFile f;
    if (idx_open(&f, path, err, err_len) != 0) return -1;
    uint32_t h[4] = {0};
    int status = idx_header(&f, 4, IDX_IMAGES_MAGIC, "images", h);
    if (status == 0 && (h[2] == 0 || h[3] == 0 || h[2] > 65535 || h[3] > 65535))
        status = path_error(err, err_len, path, "rows x cols is %ux%u, expected each in 1..65535",
                            (unsigned)h[2], (unsigned)h[3]);
    if (status == 0) {
        char what[96];
        snprintf(what, sizeof what, "%u images of %ux%u", (unsigned)h[1], (unsigned)h[2],
                 (unsigned)h[3]);
        status = idx_data(&f, 16, (size_t)h[1] * h[2] * h[3], what, pixels);
    }
    gzclose(f.gz);
    if (status != 0) return -1;
    *count = (int)h[1];
    *rows = (int)h[2];
    *cols = (int)h[3];
    return 0;
}

int idx_read_labels(const char *path, int n_classes, unsigned char **labels, int *count, char *err,
                    size_t err_len) {
    IdxFile f;
    if (idx_open(&f, path, err, err_len) != 0) return -1;
    uint32_t h[2] = {0};
    unsigned char *data = NULL;
    int status = idx_header(&f, 2, IDX_LABELS_MAGIC, "labels", h);
    if (status == 0) {
        char what[64];
        snprintf(what, sizeof what, "%u labels", (unsigned)h[1]);
        status = idx_data(&f, 8, h[1], what, &data);
    }
    gzclose(f.gz);
    for (uint32_t i = 0; status == 0 && i < h[1]; i++)
        if (data[i] >= n_classes)
            status = path_error(err, err_len, path, "label %d at index %u is outside 0..%d",
                                data[i], (unsigned)i, n_classes - 1);
    if (status != 0) {
        free(data);
        return -1;
    }
    *labels = data;
    *count = (int)h[1];
    return 0;
}

/* --- The dataset ----------------------------------------------------------------------------- */

/* One pair of files (prefix "train" or "t10k"), with the Fashion-MNIST checks across them. */
static int read_pair(const char *dir, const char *prefix, unsigned char **pixels,
                     unsigned char **labels, int *count, char *err, size_t err_len) {
    char images_path[4096], labels_path[4096];
    snprintf(images_path, sizeof images_path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    snprintf(labels_path, sizeof labels_path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    int n_images, n_labels, rows, cols;
    if (idx_read_images(images_path, pixels, &n_images, &rows, &cols, err, err_len) != 0) return -1;
    int status = 0;
    if (rows != IMAGE_SIZE || cols != IMAGE_SIZE)
        status =
            path_error(err, err_len, images_path, "%s is %d but Fashion-MNIST images are %dx%d",
                       rows != IMAGE_SIZE ? "rows" : "cols", rows != IMAGE_SIZE ? rows : cols,
                       IMAGE_SIZE, IMAGE_SIZE);
    if (status == 0)
        status = idx_read_labels(labels_path, IMAGE_CLASSES, labels, &n_labels, err, err_len);
    if (status == 0 && n_labels != n_images) {
        free(*labels);
        status = path_error(err, err_len, labels_path, "count is %d but %s holds %d images",
                            n_labels, images_path, n_images);
    }
    if (status != 0) {
        free(*pixels);
        *pixels = *labels = NULL;
        return -1;
    }
    *count = n_images;
    return 0;
}

int image_data_load(ImageData *images, const char *dir, int n_valid, char *err, size_t err_len) {
    if (n_valid < 0) cpool_fail("image_data_load: n_valid must be >= 0, got %d", n_valid);
    *images = (ImageData){0};
    unsigned char **own = images->owned;
    int n_train, n_test;
    if (read_pair(dir, "train", &own[0], &own[1], &n_train, err, err_len) != 0) return -1;
    if (read_pair(dir, "t10k", &own[2], &own[3], &n_test, err, err_len) != 0) {
        image_data_free(images);
        return -1;
    }
    if (n_valid >= n_train) {
        image_data_free(images);
        return path_error(err, err_len, dir,
                          "n_valid %d leaves no training images: the train files hold %d", n_valid,
                          n_train);
    }
    int counts[SPLIT_COUNT] = {n_train - n_valid, n_valid, n_test};
    long firsts[SPLIT_COUNT] = {0, n_train - n_valid, 0};
    for (int s = 0; s < SPLIT_COUNT; s++) {
        int file = s == SPLIT_TEST ? 2 : 0; /* owned[file] pixels, owned[file + 1] labels */
        images->count[s] = counts[s];
        images->pixels[s] = own[file] + firsts[s] * IMAGE_PIXELS;
        images->labels[s] = own[file + 1] + firsts[s];
    }
    return 0;
}

void image_data_free(ImageData *images) {
    for (int i = 0; i < 4; i++) free(images->owned[i]);
    *images = (ImageData){0};
}

/* --- Batches --------------------------------------------------------------------------------- */

void image_batch_init(ImageBatch *batch, int capacity) {
    if (capacity < 1) cpool_fail("image_batch_init: capacity must be at least 1, got %d", capacity);
    *batch = (ImageBatch){.capacity = capacity, .batch_size = capacity};
    batch->images = tensor_create(4, (int[]){capacity, 1, IMAGE_SIZE, IMAGE_SIZE}, 0);
    batch->labels = xmalloc((size_t)capacity * sizeof(int));
}

void image_batch_free(ImageBatch *batch) {
    tensor_free(batch->images);
    free(batch->labels);
    *batch = (ImageBatch){0};
}

static void check_split(const char *who, DataSplit split) {
    if (split < 0 || split >= SPLIT_COUNT)
        cpool_fail("%s: split %d is not SPLIT_TRAIN, SPLIT_VALID or SPLIT_TEST", who, (int)split);
}

/* Image `index` of the split into row b of the batch: x = byte / 255, as torchvision's
 * ToTensor computes it. */
static void fill_image(ImageBatch *batch, int b, const ImageData *images, DataSplit split,
                       long index) {
    const unsigned char *pixels = images->pixels[split] + index * IMAGE_PIXELS;
    real *x = batch->images->data + (size_t)b * IMAGE_PIXELS;
    for (int i = 0; i < IMAGE_PIXELS; i++) x[i] = (real)pixels[i] / (real)255;
    batch->labels[b] = images->labels[split][index];
}

static void set_batch_size(ImageBatch *batch, int n) {
    batch->batch_size = n;
    batch->images->shape[0] = n;
    batch->images->size = (long)n * IMAGE_PIXELS;
}

void image_data_sample(const ImageData *images, DataSplit split, Rng *rng, ImageBatch *batch) {
    check_split("image_data_sample", split);
    int count = images->count[split];
    if (count == 0) cpool_fail("image_data_sample: the %s split is empty", split_name(split));
    for (int b = 0; b < batch->capacity; b++)
        fill_image(batch, b, images, split, (long)(rng_uniform(rng) * count));
    set_batch_size(batch, batch->capacity);
}

int image_data_next(const ImageData *images, DataSplit split, long *cursor, ImageBatch *batch) {
    check_split("image_data_next", split);
    if (*cursor < 0) cpool_fail("image_data_next: cursor %ld is negative", *cursor);
    int filled = 0;
    for (; filled < batch->capacity && *cursor < images->count[split]; filled++, (*cursor)++)
        fill_image(batch, filled, images, split, *cursor);
    set_batch_size(batch, filled);
    return filled;
}
