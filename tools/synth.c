/* synth.c - the synthetic task with known support sizes: generator, model, training, measures.
 * See synth.h for the task and docs/synthetic.md for what it shows. */
#include "synth.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "optim.h"
#include "util.h"

/* The layer's smallest support size; s_max is the config's. */
#define SYNTH_S_MIN 0.5

SynthConfig synth_default_config(void) {
    return (SynthConfig){.n_widths = 4,
                         .widths = {1, 2, 4, 8},
                         .len = 256,
                         .segment_min = 16,
                         .segment_max = 64,
                         .dim = 16,
                         .s_max = 12,
                         .batch = 16,
                         .steps = 1000,
                         .lr = 1e-2,
                         .eval_batch = 16,
                         .seed = 1};
}

void synth_config_check(const SynthConfig *c) {
    if (c->n_widths < 1 || c->n_widths > SYNTH_MAX_WIDTHS)
        cpool_fail("synth: n_widths=%d must be in [1, %d]", c->n_widths, SYNTH_MAX_WIDTHS);
    if (!(c->s_max > SYNTH_S_MIN && c->s_max <= 64))
        cpool_fail("synth: s_max=%g must be in (%g, 64]", c->s_max, SYNTH_S_MIN);
    for (int k = 0; k < c->n_widths; k++)
        if (!(c->widths[k] > 0 && c->widths[k] <= c->s_max))
            cpool_fail("synth: widths[%d]=%g must be in (0, s_max=%g]", k, c->widths[k], c->s_max);
    if (c->len < 1) cpool_fail("synth: len=%d must be >= 1", c->len);
    if (c->segment_min < 1 || c->segment_max < c->segment_min)
        cpool_fail("synth: segment lengths [%d, %d] must satisfy 1 <= min <= max", c->segment_min,
                   c->segment_max);
    if (c->dim < 1) cpool_fail("synth: dim=%d must be >= 1", c->dim);
    if (c->batch < 1) cpool_fail("synth: batch=%d must be >= 1", c->batch);
    if (c->eval_batch < 1) cpool_fail("synth: eval_batch=%d must be >= 1", c->eval_batch);
    if (c->steps < 1) cpool_fail("synth: steps=%ld must be >= 1", c->steps);
    if (!(c->lr > 0 && c->lr < 1)) cpool_fail("synth: lr=%g must be in (0, 1)", c->lr);
}

int synth_radius(const SynthConfig *config) {
    return (int)ceil(3 * config->s_max);
}

/* ------------------------------------------------------------------------------------------ */
/* The generator                                                                              */

void synth_batch_alloc(SynthBatch *batch, int sequences, int len) {
    if (sequences < 1 || len < 1)
        cpool_fail("synth: a batch of %d sequences of %d tokens is empty", sequences, len);
    size_t n = (size_t)sequences * (size_t)len;
    batch->batch = sequences;
    batch->len = len;
    batch->width_class = xcalloc(n, sizeof(int));
    batch->width = xcalloc(n, sizeof(double));
    batch->value = xcalloc(n, sizeof(double));
    batch->target = xcalloc(n, sizeof(double));
    batch->target_scale = xcalloc(n, sizeof(double));
}

void synth_batch_free(SynthBatch *batch) {
    free(batch->width_class);
    free(batch->width);
    free(batch->value);
    free(batch->target);
    free(batch->target_scale);
    memset(batch, 0, sizeof *batch);
}

/*   T_i        = sum_j G_ij v_j / Z_i,        Z_i = sum_j G_ij
 *   Var(T_i)   = sum_j G_ij^2 / Z_i^2          (v_j independent, unit variance)
 * over |i - j| <= R inside the sequence, G_ij = exp(-(i-j)^2 / (2 W_i^2)). The window is cut at
 * the ends and renormalised, as the layer does. */
void synth_targets(const double *value, const double *width, int len, int radius, double *target,
                   double *inverse_variance) {
    for (int i = 0; i < len; i++) {
        int lo = i - radius > 0 ? i - radius : 0, hi = i + radius < len - 1 ? i + radius : len - 1;
        double two_w2 = 2 * width[i] * width[i];
        double sum_g = 0, sum_g2 = 0, sum_gv = 0;
        for (int j = lo; j <= hi; j++) {
            double g = exp(-(double)(i - j) * (i - j) / two_w2);
            sum_g += g;
            sum_g2 += g * g;
            sum_gv += g * value[j];
        }
        target[i] = sum_gv / sum_g;
        inverse_variance[i] = sum_g * sum_g / sum_g2;
    }
}

/* One sequence: segments of uniform length in [segment_min, segment_max] (the last one cut by
 * the sequence's end), each with a uniform width class; values N(0, 1). */
static void generate_sequence(const SynthConfig *config, Rng *rng, int *width_class, double *width,
                              double *value) {
    int span = config->segment_max - config->segment_min + 1;
    for (int start = 0; start < config->len;) {
        int length = config->segment_min + rng_int(rng, span);
        int c = rng_int(rng, config->n_widths);
        for (int i = start; i < start + length && i < config->len; i++) {
            width_class[i] = c;
            width[i] = config->widths[c];
        }
        start += length;
    }
    for (int i = 0; i < config->len; i++) value[i] = rng_normal(rng);
}

void synth_generate(SynthBatch *batch, const SynthConfig *config, Rng *rng) {
    if (batch->len != config->len)
        cpool_fail("synth: the batch holds sequences of %d tokens, the config says len=%d",
                   batch->len, config->len);
    int radius = synth_radius(config);
    for (int b = 0; b < batch->batch; b++) {
        size_t at = (size_t)b * batch->len;
        generate_sequence(config, rng, batch->width_class + at, batch->width + at,
                          batch->value + at);
        synth_targets(batch->value + at, batch->width + at, batch->len, radius, batch->target + at,
                      batch->target_scale + at);
    }
}

/* ------------------------------------------------------------------------------------------ */
/* The model                                                                                  */

void synth_model_init(SynthModel *model, const SynthConfig *config, Rng *rng) {
    synth_config_check(config);
    memset(model, 0, sizeof *model);
    EmbeddingConfig embed = {.vocab = config->n_widths, .dim = config->dim};
    embedding_init(&model->width_embed, embed, &model->params, "width_embed", rng);
    LinearConfig value_in = {.in = 1, .out = config->dim, .bias = 0};
    linear_init(&model->value_in, value_in, &model->params, "value_in", rng);
    ContextPoolConfig pool = contextpool_default_config(config->dim, 0);
    pool.s_min = SYNTH_S_MIN;
    pool.s_max = config->s_max;
    pool.radius = synth_radius(config);
    contextpool_init(&model->pool, pool, &model->params, "pool", rng);
    LinearConfig readout = {.in = config->dim, .out = 1, .bias = 1};
    linear_init(&model->readout, readout, &model->params, "readout", rng);
}

void synth_model_free(SynthModel *model) {
    params_free(&model->params);
}

/* A constant (no gradient) arena tensor of the given shape filled from doubles. */
static Tensor *constant_tensor(Tape *tape, const double *values, int ndim, const int *shape) {
    Tensor *t = tape_tensor(tape, ndim, shape);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)values[i];
    return t;
}

/* x = width_embed(c) + value_in(v)   (B, N, dim)
 * y = pool(x)                        (B, N, dim)
 * p = readout(y)                     (B, N, 1) -> (B, N) */
Tensor *synth_model_forward(Tape *tape, const SynthModel *model, const SynthBatch *batch,
                            ContextPoolAux *aux) {
    int B = batch->batch, N = batch->len;
    Tensor *classes =
        embedding_forward(tape, &model->width_embed, batch->width_class, 2, (int[]){B, N});
    Tensor *values = constant_tensor(tape, batch->value, 3, (int[]){B, N, 1});
    Tensor *x = op_add(tape, classes, linear_forward(tape, &model->value_in, values));
    Tensor *y = contextpool_forward(tape, &model->pool, x, aux);
    Tensor *p = linear_forward(tape, &model->readout, y);
    return op_reshape(tape, p, 2, (int[]){B, N});
}

/* loss = mean_i (p_i - T_i)^2 * scale_i, scale_i = 1 / Var(T_i). */
Tensor *synth_loss(Tape *tape, Tensor *prediction, const SynthBatch *batch) {
    int shape[2] = {batch->batch, batch->len};
    if (prediction->ndim != 2 || prediction->shape[0] != shape[0] ||
        prediction->shape[1] != shape[1]) {
        char got[64];
        cpool_fail("synth_loss: prediction %s, expected (%d, %d)",
                   TENSOR_SHAPE_STR(prediction, got), shape[0], shape[1]);
    }
    Tensor *target = constant_tensor(tape, batch->target, 2, shape);
    Tensor *scale = constant_tensor(tape, batch->target_scale, 2, shape);
    Tensor *error = op_sub(tape, prediction, target);
    Tensor *squared = op_mul(tape, error, error);
    return op_mean_all(tape, op_mul(tape, squared, scale));
}

/* ------------------------------------------------------------------------------------------ */
/* Measures                                                                                   */

double synth_pearson(const double *x, const double *y, long n) {
    if (n < 2) return NAN;
    double mean_x = 0, mean_y = 0;
    for (long i = 0; i < n; i++) mean_x += x[i], mean_y += y[i];
    mean_x /= n, mean_y /= n;
    double sxy = 0, sxx = 0, syy = 0;
    for (long i = 0; i < n; i++) {
        double dx = x[i] - mean_x, dy = y[i] - mean_y;
        sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
    }
    if (sxx == 0 || syy == 0) return NAN;
    return sxy / sqrt(sxx * syy);
}

/* Same as above with y in `real` (a tensor's data). */
static double pearson_real(const double *x, const real *y, long n, double *scratch) {
    for (long i = 0; i < n; i++) scratch[i] = y[i];
    return synth_pearson(x, scratch, n);
}

/* Learned s per width class: mean, standard deviation, count. */
static void support_per_width(const SynthConfig *config, SynthResult *r) {
    long n = (long)r->eval.batch * r->eval.len;
    double sum[SYNTH_MAX_WIDTHS] = {0}, sum2[SYNTH_MAX_WIDTHS] = {0};
    for (long i = 0; i < n; i++) {
        int c = r->eval.width_class[i];
        sum[c] += r->support[i], sum2[c] += r->support[i] * r->support[i];
        r->count[c]++;
    }
    for (int c = 0; c < config->n_widths; c++) {
        long k = r->count[c];
        r->mean_support[c] = k ? sum[c] / k : NAN;
        double var = k ? sum2[c] / k - r->mean_support[c] * r->mean_support[c] : NAN;
        r->std_support[c] = var > 0 ? sqrt(var) : 0;
    }
}

/* The loss of one support size s for every token, w uniform, with the best scale a of the
 * pooled value: p_i = a u_i, u_i = sum_j g_ij v_j / sum_j g_ij, a = sum k u T / sum k u^2
 * (k = 1 / Var(T)). What a layer with size_fixed and a perfect readout could reach at best.
 * scratch: 3 n doubles. */
static double fixed_support_loss(const SynthBatch *eval, double s, int radius, double *scratch) {
    long n = (long)eval->batch * eval->len;
    double *width = scratch, *pooled = scratch + n, *unused = scratch + 2 * n;
    for (long i = 0; i < n; i++) width[i] = s;
    for (int b = 0; b < eval->batch; b++) {
        size_t at = (size_t)b * eval->len;
        synth_targets(eval->value + at, width + at, eval->len, radius, pooled + at, unused + at);
    }
    double ut = 0, uu = 0;
    for (long i = 0; i < n; i++) {
        ut += eval->target_scale[i] * pooled[i] * eval->target[i];
        uu += eval->target_scale[i] * pooled[i] * pooled[i];
    }
    double a = uu > 0 ? ut / uu : 0, loss = 0;
    for (long i = 0; i < n; i++) {
        double e = a * pooled[i] - eval->target[i];
        loss += eval->target_scale[i] * e * e;
    }
    return loss / n;
}

/* Scan s over [s_min, s_max] in steps of 0.1 token for the best single support size. */
static void best_fixed_support(const SynthConfig *config, SynthResult *r) {
    long n = (long)r->eval.batch * r->eval.len;
    double *scratch = xmalloc(3 * (size_t)n * sizeof(double));
    r->fixed_loss = INFINITY;
    int steps = (int)floor((config->s_max - SYNTH_S_MIN) / 0.1 + 1e-9);
    for (int k = 0; k <= steps; k++) {
        double s = SYNTH_S_MIN + 0.1 * k;
        double loss = fixed_support_loss(&r->eval, s, synth_radius(config), scratch);
        if (loss < r->fixed_loss) r->fixed_loss = loss, r->fixed_support = s;
    }
    free(scratch);
}

/* Run the model on the held-out set without recording: s and w of every token into support
 * and weight (NULL: not wanted); returns the loss. */
static double evaluate(const SynthModel *model, Tape *tape, const SynthBatch *eval, double *support,
                       double *weight) {
    tape->no_grad = 1;
    ContextPoolAux aux;
    Tensor *p = synth_model_forward(tape, model, eval, &aux);
    double loss = synth_loss(tape, p, eval)->data[0];
    for (long i = 0; i < aux.support->size; i++) {
        if (support) support[i] = aux.support->data[i];
        if (weight) weight[i] = aux.weights->data[i];
    }
    tape_reset(tape);
    tape->no_grad = 0;
    return loss;
}

/* ------------------------------------------------------------------------------------------ */
/* Training                                                                                   */

/* One AdamW step on a fresh batch; returns the loss and the batch's Pearson r(W, s). */
static double train_step(SynthModel *model, AdamW *opt, Tape *tape, SynthBatch *batch, double lr,
                         double *correlation, double *scratch) {
    ContextPoolAux aux;
    Tensor *loss = synth_loss(tape, synth_model_forward(tape, model, batch, &aux), batch);
    double value = loss->data[0];
    *correlation = pearson_real(batch->width, aux.support->data, aux.support->size, scratch);
    tape_backward(tape, loss);
    clip_grad_norm(&model->params, 1.0);
    adamw_step(opt, lr);
    params_zero_grad(&model->params);
    tape_reset(tape);
    return value;
}

/* The held-out set (its own random stream, so changing the steps or the batch never changes
 * it) and the arrays the measures go into. */
static void prepare_result(const SynthConfig *config, SynthResult *result) {
    memset(result, 0, sizeof *result);
    Rng eval_rng;
    rng_seed(&eval_rng, config->seed ^ 0xe7a1da7aULL);
    synth_batch_alloc(&result->eval, config->eval_batch, config->len);
    synth_generate(&result->eval, config, &eval_rng);
    size_t n = (size_t)config->eval_batch * config->len;
    result->initial_support = xcalloc(n, sizeof(double));
    result->support = xcalloc(n, sizeof(double));
    result->weight = xcalloc(n, sizeof(double));
}

/* config->steps AdamW steps, each on a fresh batch from data_rng; returns the last loss. */
static double train_loop(const SynthConfig *config, SynthModel *model, Tape *tape, Rng *data_rng,
                         Progress *progress) {
    AdamW opt;
    adamw_init(&opt, &model->params, ADAMW_DEFAULTS);
    LrSchedule schedule = {.peak_lr = config->lr,
                           .min_lr = config->lr / 10,
                           .warmup_steps = config->steps / 20,
                           .total_steps = config->steps};
    SynthBatch batch;
    synth_batch_alloc(&batch, config->batch, config->len);
    double *scratch = xmalloc((size_t)config->batch * config->len * sizeof(double));
    double loss = NAN;
    for (long step = 0; step < config->steps; step++) {
        synth_generate(&batch, config, data_rng);
        double r = 0, lr = lr_schedule_at(&schedule, step);
        loss = train_step(model, &opt, tape, &batch, lr, &r, scratch);
        if (progress)
            progress_update(progress, step + 1, (long)config->batch * config->len, loss, "r", r);
    }
    free(scratch);
    synth_batch_free(&batch);
    adamw_free(&opt);
    return loss;
}

void synth_train(const SynthConfig *config, Progress *progress, SynthResult *result) {
    synth_config_check(config);
    prepare_result(config, result);
    long n = (long)config->eval_batch * config->len;
    /* Independent streams for the initialisation and the training data. */
    Rng init_rng, data_rng;
    rng_seed(&init_rng, config->seed);
    rng_seed(&data_rng, config->seed ^ 0x5eedda7aULL);
    SynthModel model;
    synth_model_init(&model, config, &init_rng);
    Tape *tape = tape_create();

    result->initial_loss = evaluate(&model, tape, &result->eval, result->initial_support, NULL);
    result->initial_correlation = synth_pearson(result->eval.width, result->initial_support, n);
    double start = wall_seconds();
    result->train_loss = train_loop(config, &model, tape, &data_rng, progress);
    result->seconds = wall_seconds() - start;
    result->eval_loss = evaluate(&model, tape, &result->eval, result->support, result->weight);
    result->correlation = synth_pearson(result->eval.width, result->support, n);
    support_per_width(config, result);
    best_fixed_support(config, result);

    tape_free(tape);
    synth_model_free(&model);
}

void synth_result_free(SynthResult *result) {
    synth_batch_free(&result->eval);
    free(result->initial_support);
    free(result->support);
    free(result->weight);
    result->initial_support = result->support = result->weight = NULL;
}
