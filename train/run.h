/* run.h - what train, eval, sample and plot share: a run's data, a checkpoint's model, evaluation.
 *
 *     RunConfig run;  Model model;  char err[512];
 *     if (run_load_checkpoint("runs/charlm/checkpoint.safetensors", &run, &model, err,
 *                             sizeof err) != 0) ...       // the config it was trained with
 *     RunData data;
 *     if (run_data_load(&data, &run, NULL, err, sizeof err) != 0) ...   // run.train.data
 *     Tape *tape = tape_create();
 *     EvalResult result = run_evaluate(&model, &data, SPLIT_TEST, 16, 0, tape);
 *     printf("test bpc %.4f\n", result.metric);
 *
 * The metric is bits per character for the charlm (mean cross-entropy in nats / ln 2, over every
 * target byte of the split's sequential windows) and accuracy in [0, 1] for the image models
 * (every image of the split). Evaluation records nothing on the tape (no_grad) and resets it.
 */
#ifndef CPOOL_RUN_H
#define CPOOL_RUN_H

#include "image_data.h"
#include "model.h"
#include "run_config.h"
#include "tape.h"
#include "text_data.h"

/* The data a model kind reads: text for the charlm, images otherwise. */
typedef struct RunData {
    ModelKind kind;
    TextData text;
    ImageData images;
} RunData;

/* One training or evaluation batch, sized for `capacity` examples. */
typedef struct RunBatch {
    TextBatch text;
    ImageBatch images;
} RunBatch;

/* Load run->train.data (or path, when not NULL) for run->model.kind. 0, or -1 with err. */
int run_data_load(RunData *data, const RunConfig *run, const char *path, char *err, size_t err_len);
void run_data_free(RunData *data);

void run_batch_init(RunBatch *batch, const RunData *data, int capacity, int seq_len);
void run_batch_free(RunBatch *batch);
/* A random training batch (batch_size = capacity draws from rng). */
void run_batch_sample(RunBatch *batch, const RunData *data, DataSplit split, Rng *rng);
/* The model's input and targets for the batch last filled. */
ModelInput run_batch_input(const RunBatch *batch, const RunData *data);
const int *run_batch_targets(const RunBatch *batch, const RunData *data);
/* Examples the batch holds, and what one of them counts as progress (N tokens, or 1 image). */
long run_batch_units(const RunBatch *batch, const RunData *data);

typedef struct EvalResult {
    double loss;   /* mean cross-entropy per target, nats */
    double metric; /* bpc (charlm) or accuracy (vit, cnn) */
    long count;    /* targets (bytes or images) evaluated */
} EvalResult;

/* The split in sequential batches of batch_size; max_batches > 0 stops after that many. */
EvalResult run_evaluate(const Model *model, const RunData *data, DataSplit split, int batch_size,
                        int max_batches, Tape *tape);
/* "bpc" or "accuracy". */
const char *run_metric_name(ModelKind kind);

/* Read the config stored in a checkpoint, build its model and load its parameters (not the
 * optimizer). 0, or -1 with one line in err and nothing allocated. */
int run_load_checkpoint(const char *path, RunConfig *run, Model *model, char *err, size_t err_len);

#endif
