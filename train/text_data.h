/* text_data.h - a byte-level text corpus, split train / valid / test, and batches of windows.
 *
 * Every byte is a token (a vocabulary of 256), as in the enwik8 and text8 character-level
 * benchmarks. The whole file is read into memory and split by byte offset, in file order,
 * 90% / 5% / 5% (for enwik8's 10^8 bytes this is the standard 90M / 5M / 5M split):
 *
 *     train = bytes [0, n_train)   valid = [n_train, n_train + n_valid)   test = the rest
 *     n_train = floor(0.90 n)      n_valid = floor(0.05 n)
 *
 * A window is seq_len + 1 consecutive bytes of one split (never crossing into the next):
 * inputs are its first seq_len bytes, targets its last seq_len, so target t is the byte that
 * follows input t. A batch is batch_size windows, row-major (batch_size, seq_len) int arrays
 * ready for op_embedding and op_cross_entropy.
 *
 *     TextData text;
 *     char err[256];
 *     if (text_data_load(&text, "data/kjv.txt", 256, err, sizeof err) != 0) {
 *         fprintf(stderr, "%s\n", err);               // "data/kjv.txt: cannot open: No such ..."
 *         exit(1);
 *     }
 *     TextBatch batch;
 *     text_batch_init(&batch, 32, text.seq_len);      // room for 32 windows of 256
 *     text_data_sample(&text, SPLIT_TRAIN, &rng, &batch);      // 32 random windows
 *     int shape[2] = {batch.batch_size, batch.seq_len};
 *     Tensor *x = op_embedding(tape, token_table, batch.inputs, 2, shape);
 *     ... loss = op_cross_entropy(tape, logits, batch.targets, -1) ...
 *
 *     long cursor = 0;                                // evaluation: every window exactly once
 *     while (text_data_next(&text, SPLIT_VALID, &cursor, &batch) > 0) ...
 *
 *     text_batch_free(&batch);
 *     text_data_free(&text);
 *
 * Random windows (training) start anywhere in the split, uniformly: window b starts at
 * floor(u * (split_bytes - seq_len)) for one u = rng_uniform(rng), drawn for b = 0, 1, ... in
 * order, so a batch costs exactly batch_size draws and a seed fixes every batch of a run.
 *
 * Sequential windows (evaluation) tile the split without overlap: window w holds inputs
 * [w seq_len, (w + 1) seq_len) and the byte after each as its target, so every byte but the
 * first is a target exactly once; the last (split_bytes - 1) % seq_len targets, less than one
 * window, are left out. text_data_windows() says how many windows there are.
 *
 * File problems (missing, unreadable, empty, too short for a window in every split) are
 * returned as one line in err naming the file; bad arguments (seq_len < 1, a batch made for
 * another seq_len) are programming errors: cpool_fail("text_data: ...").
 */
#ifndef CPOOL_TEXT_DATA_H
#define CPOOL_TEXT_DATA_H

#include <stddef.h>

#include "rng.h"
#include "split.h"

#define TEXT_VOCAB_SIZE 256 /* one token per byte value */

typedef struct TextData {
    unsigned char *bytes;     /* the whole file, size bytes (malloc'd) */
    long size;                /* bytes in the file */
    long begin[SPLIT_COUNT];  /* split s is bytes[begin[s] .. begin[s] + length[s] - 1] */
    long length[SPLIT_COUNT]; /* bytes in each split */
    int seq_len;              /* tokens per window (inputs and targets each) */
} TextData;

typedef struct TextBatch {
    int capacity;   /* windows it has room for */
    int seq_len;    /* tokens per window */
    int batch_size; /* windows filled by the last sample / next (<= capacity) */
    int *inputs;    /* (capacity, seq_len): row b is window b's bytes 0..seq_len-1 */
    int *targets;   /* (capacity, seq_len): row b is window b's bytes 1..seq_len */
} TextBatch;

/* Read the file at path and split it. Every split must hold at least one window of seq_len + 1
 * bytes. 0 on success, or -1 with one line in err and nothing allocated. */
int text_data_load(TextData *text, const char *path, int seq_len, char *err, size_t err_len);
void text_data_free(TextData *text);

/* Sequential windows in a split: floor((length - 1) / seq_len). */
long text_data_windows(const TextData *text, DataSplit split);

void text_batch_init(TextBatch *batch, int capacity, int seq_len);
void text_batch_free(TextBatch *batch);

/* Fill the whole batch (batch_size = capacity) with random windows of the split. */
void text_data_sample(const TextData *text, DataSplit split, Rng *rng, TextBatch *batch);

/* Fill the batch with the next sequential windows, starting at window *cursor (start at 0), and
 * advance *cursor past them. Returns the number filled (also batch->batch_size): capacity, fewer
 * at the end of the split, 0 when the split is done. */
int text_data_next(const TextData *text, DataSplit split, long *cursor, TextBatch *batch);

#endif
