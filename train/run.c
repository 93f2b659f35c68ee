/* run.c - see run.h. */
#include "run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "ops.h"
#include "progress.h"

int run_data_load(RunData *data, const RunConfig *run, const char *path, char *err,
                  size_t err_len) {
    memset(data, 0, sizeof *data);
    data->kind = run->model.kind;
    if (!path) path = run->train.data;
    if (data->kind == MODEL_CHARLM)
        return text_data_load(&data->text, path, run->model.seq_len, err, err_len);
    return image_data_load(&data->images, path, run->train.n_valid, err, err_len);
}

void run_data_free(RunData *data) {
    if (data->kind == MODEL_CHARLM)
        text_data_free(&data->text);
    else
        image_data_free(&data->images);
}

void run_batch_init(RunBatch *batch, const RunData *data, int capacity, int seq_len) {
    memset(batch, 0, sizeof *batch);
    if (data->kind == MODEL_CHARLM)
        text_batch_init(&batch->text, capacity, seq_len);
    else
        image_batch_init(&batch->images, capacity);
}

void run_batch_free(RunBatch *batch) {
    if (batch->text.inputs) text_batch_free(&batch->text);
    if (batch->images.images) image_batch_free(&batch->images);
}

void run_batch_sample(RunBatch *batch, const RunData *data, DataSplit split, Rng *rng) {
    if (data->kind == MODEL_CHARLM)
        text_data_sample(&data->text, split, rng, &batch->text);
    else
        image_data_sample(&data->images, split, rng, &batch->images);
}

/* The next sequential batch of the split: examples filled, 0 when it is done. */
static int batch_next(RunBatch *batch, const RunData *data, DataSplit split, long *cursor) {
    if (data->kind == MODEL_CHARLM) return text_data_next(&data->text, split, cursor, &batch->text);
    return image_data_next(&data->images, split, cursor, &batch->images);
}

ModelInput run_batch_input(const RunBatch *batch, const RunData *data) {
    if (data->kind == MODEL_CHARLM)
        return (ModelInput){.tokens = batch->text.inputs,
                            .batch = batch->text.batch_size,
                            .len = batch->text.seq_len};
    return (ModelInput){.images = batch->images.images, .batch = batch->images.batch_size};
}

const int *run_batch_targets(const RunBatch *batch, const RunData *data) {
    return data->kind == MODEL_CHARLM ? batch->text.targets : batch->images.labels;
}

long run_batch_units(const RunBatch *batch, const RunData *data) {
    if (data->kind == MODEL_CHARLM) return (long)batch->text.batch_size * batch->text.seq_len;
    return batch->images.batch_size;
}

const char *run_metric_name(ModelKind kind) {
    return kind == MODEL_CHARLM ? "bpc" : "accuracy";
}

/* Images whose largest logit is their label. logits (B, 10). */
static long count_correct(const Tensor *logits, const int *labels) {
    int B = logits->shape[0], C = logits->shape[1];
    long correct = 0;
    for (int b = 0; b < B; b++) {
        const real *row = logits->data + (long)b * C;
        int best = 0;
        for (int c = 1; c < C; c++)
            if (row[c] > row[best]) best = c;
        correct += best == labels[b];
    }
    return correct;
}

EvalResult run_evaluate(const Model *model, const RunData *data, DataSplit split, int batch_size,
                        int max_batches, Tape *tape) {
    RunBatch batch;
    run_batch_init(&batch, data, batch_size, model->config.seq_len);
    int no_grad = tape->no_grad;
    tape->no_grad = 1;
    double loss_sum = 0; /* nats, summed over targets */
    long count = 0, correct = 0, cursor = 0;
    for (int n = 0; max_batches <= 0 || n < max_batches; n++) {
        if (batch_next(&batch, data, split, &cursor) == 0) break;
        ModelInput in = run_batch_input(&batch, data);
        Tensor *logits = model_forward(tape, model, &in, NULL);
        const int *targets = run_batch_targets(&batch, data);
        Tensor *loss = op_cross_entropy(tape, logits, targets, -1); /* mean over the batch */
        long targets_n = logits->size / logits->shape[logits->ndim - 1];
        loss_sum += (double)loss->data[0] * (double)targets_n;
        count += targets_n;
        if (data->kind != MODEL_CHARLM) correct += count_correct(logits, targets);
        tape_reset(tape);
    }
    tape->no_grad = no_grad;
    run_batch_free(&batch);
    EvalResult result = {.loss = count ? loss_sum / (double)count : NAN, .count = count};
    result.metric = data->kind == MODEL_CHARLM ? nats_to_bits(result.loss)
                                               : (count ? (double)correct / (double)count : NAN);
    return result;
}

int run_load_checkpoint(const char *path, RunConfig *run, Model *model, char *err, size_t err_len) {
    char *text = NULL;
    if (checkpoint_read_config(path, &text, err, err_len) != 0) return -1;
    int status = run_config_parse(run, text, path, err, err_len);
    free(text);
    if (status != 0) return -1;
    char why[400];
    if (model_check_config(&run->model, why, sizeof why) != 0) {
        snprintf(err, err_len, "%s: config: %s", path, why);
        return -1;
    }
    Rng rng;
    rng_seed(&rng, run->train.seed);
    model_init(model, &run->model, &rng);
    if (checkpoint_load(path, &model->params, NULL, NULL, err, err_len) != 0) {
        model_free(model);
        return -1;
    }
    return 0;
}
