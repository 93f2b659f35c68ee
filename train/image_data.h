/* image_data.h - Fashion-MNIST (28x28 grey images, 10 classes), split train / valid / test.
 *
 * Debian's dataset-fashion-mnist installs the four IDX files, gzip-compressed, in
 * /usr/share/datasets/fashion-mnist/ (FASHION_MNIST_DIR):
 *
 *     train-images-idx3-ubyte.gz  train-labels-idx1-ubyte.gz   60000 images and labels
 *     t10k-images-idx3-ubyte.gz   t10k-labels-idx1-ubyte.gz    10000
 *
 * The splits: train = the first 60000 - n_valid training images, valid = the last n_valid
 * (5000 is usual), test = the 10000 t10k images. Pixels are kept as bytes and converted when a
 * batch is made: an image is a (1, 28, 28) block of reals in [0, 1] (byte / 255), a batch is
 * (batch_size, 1, 28, 28), the NCHW layout op_conv2d takes, with one label in 0..9 per image.
 *
 *     ImageData images;
 *     char err[256];
 *     if (image_data_load(&images, FASHION_MNIST_DIR, 5000, err, sizeof err) != 0) {
 *         fprintf(stderr, "%s\n", err);
 *         exit(1);
 *     }
 *     ImageBatch batch;
 *     image_batch_init(&batch, 64);
 *     image_data_sample(&images, SPLIT_TRAIN, &rng, &batch);   // 64 random images
 *     ... logits = model(batch.images);  loss = op_cross_entropy(tape, logits, batch.labels, -1)
 *
 *     long cursor = 0;                                          // evaluation: each image once
 *     while (image_data_next(&images, SPLIT_TEST, &cursor, &batch) > 0) ...
 *
 *     image_batch_free(&batch);
 *     image_data_free(&images);
 *
 * Random batches draw with replacement: image b is floor(u * count) for one u = rng_uniform(rng)
 * per image, in order, so a batch costs exactly batch_size draws and a seed fixes the run (and
 * the generator's state is all a checkpoint needs to resume the same sequence of batches).
 *
 * The IDX format (http://yann.lecun.com/exdb/mnist/), big-endian:
 *
 *     images: magic 0x00000803, count, rows, cols (uint32 each), then count * rows * cols bytes
 *     labels: magic 0x00000801, count (uint32 each), then count bytes
 *
 * Reading checks everything, and a file that is not exactly right is refused with one line
 * naming the file and the field:
 *
 *     .../train-labels-idx1-ubyte.gz: label 10 at index 7 is outside 0..9
 *     .../t10k-images-idx3-ubyte.gz: truncated: the header promises 10000 images of 28x28
 *     (7840016 bytes) but the file decompresses to 7000016
 *
 * namely: not gzip (or a corrupt gzip stream), the magic, rows and cols (28 for Fashion-MNIST),
 * a data part shorter or longer than the header promises, label and image counts that differ,
 * labels outside 0..9, and an n_valid that leaves no training images.
 */
#ifndef CPOOL_IMAGE_DATA_H
#define CPOOL_IMAGE_DATA_H

#include <stddef.h>

#include "rng.h"
#include "split.h"
#include "tensor.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define IMAGE_SIZE        28 /* rows = cols */
#define IMAGE_PIXELS      (IMAGE_SIZE * IMAGE_SIZE)
#define IMAGE_CLASSES     10

#define IDX_IMAGES_MAGIC 0x00000803u
#define IDX_LABELS_MAGIC 0x00000801u

typedef struct ImageData {
    int count[SPLIT_COUNT];                   /* images in each split */
    const unsigned char *pixels[SPLIT_COUNT]; /* count * IMAGE_PIXELS bytes, row-major */
    const unsigned char *labels[SPLIT_COUNT]; /* count labels in 0..IMAGE_CLASSES-1 */
    unsigned char *owned[4];                  /* the buffers above point into (freed) */
} ImageData;

typedef struct ImageBatch {
    int capacity;   /* images it has room for */
    int batch_size; /* images filled by the last sample / next (<= capacity) */
    Tensor *images; /* (batch_size, 1, 28, 28), owned; shape[0] follows batch_size */
    int *labels;    /* batch_size labels */
} ImageBatch;

/* Read the four files from dir and split them. 0 on success, or -1 with one line in err and
 * nothing allocated. */
int image_data_load(ImageData *images, const char *dir, int n_valid, char *err, size_t err_len);
void image_data_free(ImageData *images);

/* One gzip-compressed IDX file, fully checked (magic, dimensions, exact size, label range).
 * idx_read_images: *pixels (count * rows * cols bytes), *count, *rows, *cols.
 * idx_read_labels: *labels (count bytes, each < n_classes), *count. Free with free(). */
int idx_read_images(const char *path, unsigned char **pixels, int *count, int *rows, int *cols,
                    char *err, size_t err_len);
int idx_read_labels(const char *path, int n_classes, unsigned char **labels, int *count, char *err,
                    size_t err_len);

void image_batch_init(ImageBatch *batch, int capacity);
void image_batch_free(ImageBatch *batch);

/* Fill the whole batch (batch_size = capacity) with random images of the split. */
void image_data_sample(const ImageData *images, DataSplit split, Rng *rng, ImageBatch *batch);

/* Fill the batch with images *cursor, *cursor + 1, ... of the split (start at 0) and advance
 * *cursor. Returns the number filled: capacity, fewer at the end, 0 when the split is done. */
int image_data_next(const ImageData *images, DataSplit split, long *cursor, ImageBatch *batch);

#endif
