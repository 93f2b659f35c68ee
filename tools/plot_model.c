/* plot_model.c - a checkpoint, loaded for a figure, and one forward pass that hands back what
 * every layer's ContextPool and attention computed (plot_job.h). */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "plot_job.h"

/* As run_load_checkpoint (train/run.h), keeping the step the checkpoint was saved at. */
int plot_load_model(PlotJob *job, PlotModel *m, const char *path) {
    memset(m, 0, sizeof *m);
    m->path = path;
    char *text = NULL;
    if (checkpoint_read_config(path, &text, job->err, job->err_len) != 0) return PLOT_EXIT_DATA;
    int status = run_config_parse(&m->run, text, path, job->err, job->err_len);
    free(text);
    if (status != 0) return PLOT_EXIT_DATA;
    char why[400];
    if (model_check_config(&m->run.model, why, sizeof why) != 0)
        return plot_error(job, PLOT_EXIT_DATA, "%s: config: %s", path, why);
    Rng rng;
    rng_seed(&rng, m->run.train.seed);
    model_init(&m->model, &m->run.model, &rng);
    m->built = 1;
    TrainState state;
    if (checkpoint_load(path, &m->model.params, NULL, &state, job->err, job->err_len) != 0)
        return PLOT_EXIT_DATA;
    m->step = state.step;
    free(state.config);
    return 0;
}

int plot_require_pool(PlotJob *job, const PlotModel *m, const char *noun) {
    if (m->run.model.pool == MODEL_POOL_CONTEXTPOOL) return 0;
    return plot_error(job, PLOT_EXIT_DATA, "%s: the model has pool=%s: no %s to plot", m->path,
                      model_pool_name(m->run.model.pool), noun);
}

int plot_require_kind(PlotJob *job, const PlotModel *m, ModelKind kind, const char *for_what) {
    if (m->run.model.kind == kind) return 0;
    return plot_error(job, PLOT_EXIT_DATA, "%s: a %s model; %s needs a %s checkpoint", m->path,
                      model_kind_name(m->run.model.kind), for_what, model_kind_name(kind));
}

Tensor *plot_forward(PlotJob *job, const PlotModel *m, const int *tokens, int batch, int len,
                     Tensor *images, ModelAux *aux) {
    if (!job->tape) job->tape = tape_create();
    tape_reset(job->tape);
    job->tape->no_grad = 1;
    ModelInput in = {.tokens = tokens, .batch = batch, .len = len, .images = images};
    memset(aux, 0, sizeof *aux);
    return model_forward(job->tape, &m->model, &in, aux);
}

int plot_load_data(PlotJob *job, const PlotModel *m) {
    if (run_data_load(&job->data, &m->run, job->options.data, job->err, job->err_len) != 0)
        return PLOT_EXIT_DATA;
    job->data_loaded = 1;
    return 0;
}

int plot_pool_count(const PlotModel *m) {
    if (m->run.model.kind == MODEL_CNN) return MODEL_CNN_POOLS;
    return m->run.model.layers;
}

char *plot_pool_name(const PlotModel *m, int index, char *out, size_t out_len) {
    if (m->run.model.kind == MODEL_CNN) {
        int side = 28 >> index; /* each pooling stage halves the side: 28 -> 14 -> 7 */
        snprintf(out, out_len, "pool %d (%dx%d -> %dx%d)", index, side, side, side / 2, side / 2);
    } else {
        snprintf(out, out_len, "layer %d", index);
    }
    return out;
}

char *plot_model_caption(const PlotModel *m, char *out, size_t out_len) {
    const ModelConfig *c = &m->run.model;
    char shape[64];
    if (c->kind == MODEL_CNN)
        snprintf(shape, sizeof shape, "channels %d", c->channels);
    else
        snprintf(shape, sizeof shape, "dim %d, %d layer%s", c->dim, c->layers,
                 c->layers == 1 ? "" : "s");
    snprintf(out, out_len, "%s: %s, %s, pool=%s, step %ld", m->path, model_kind_name(c->kind),
             shape, model_pool_name(c->pool), m->step);
    return out;
}

void plot_image_fill(PlotJob *job, Tensor *batch, DataSplit split, const int *indices, int n) {
    const ImageData *images = &job->data.images;
    batch->shape[0] = n;
    batch->size = (long)n * IMAGE_PIXELS;
    for (int b = 0; b < n; b++) {
        const unsigned char *pixels = images->pixels[split] + (long)indices[b] * IMAGE_PIXELS;
        for (int p = 0; p < IMAGE_PIXELS; p++)
            batch->data[(long)b * IMAGE_PIXELS + p] = (real)(pixels[p] / 255.0);
    }
}

Tensor *plot_image_batch(PlotJob *job, DataSplit split, const int *indices, int n) {
    Tensor *batch = plot_alloc(job, sizeof *batch);
    *batch = (Tensor){.ndim = 4, .shape = {n, 1, IMAGE_SIZE, IMAGE_SIZE, 1, 1}};
    batch->data = plot_alloc(job, sizeof(real) * (size_t)n * IMAGE_PIXELS);
    plot_image_fill(job, batch, split, indices, n);
    return batch;
}
