/* model.c - see model.h. The three models share the config checks and the loss; each builds and
 * runs its own layers. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_data.h"
#include "ops.h"
#include "text_data.h"
#include "util.h"

#define EMBEDDING_STD 0.02 /* GPT-2's initialisation of the token and position tables */

const char *model_kind_name(ModelKind kind) {
    switch (kind) {
    case MODEL_CHARLM:
        return "charlm";
    case MODEL_VIT:
        return "vit";
    case MODEL_CNN:
        return "cnn";
    }
    return "?";
}

const char *model_pool_name(ModelPool pool) {
    switch (pool) {
    case MODEL_POOL_NONE:
        return "none";
    case MODEL_POOL_AVG:
        return "avg";
    case MODEL_POOL_CONTEXTPOOL:
        return "contextpool";
    }
    return "?";
}

ModelConfig model_default_config(ModelKind kind) {
    ModelConfig c = {.kind = kind, .heads = 4, .layers = 2, .tie = 1, .seq_len = 256};
    c.pool = MODEL_POOL_CONTEXTPOOL;
    c.dim = kind == MODEL_CHARLM ? 128 : 64;
    c.patch = 4;
    c.channels = 16;
    c.variant.pool_feeds = BLOCK_POOL_FEEDS_KV;
    c.variant.cp = contextpool_default_config(c.dim, kind == MODEL_CHARLM);
    c.variant.cp.dim = 0; /* filled from dim (or the CNN's channels) when the model is built */
    /* A 2x2 pool's replacement looks a few pixels around: s up to 2 pixels (radius 6), where
     * the sequence default of 8 would let every output of a 14x14 map average all of it (and
     * cost (2 * 24 + 1)^2 taps per output). */
    if (kind == MODEL_CNN) c.variant.cp.s_max = 2;
    return c;
}

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                      */

static int check_error(char *err, size_t err_len, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static int check_error(char *err, size_t err_len, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_len, format, args);
    va_end(args);
    return -1;
}

/* The model-level keys; the layers check their own when built. */
static int check_keys(const ModelConfig *c, char *err, size_t err_len) {
    const char *kind = model_kind_name(c->kind);
    if (c->kind != MODEL_CHARLM && c->kind != MODEL_VIT && c->kind != MODEL_CNN)
        return check_error(err, err_len, "model: kind=%d is not charlm, vit or cnn", (int)c->kind);
    if (c->kind == MODEL_CNN) {
        if (c->channels < 1)
            return check_error(err, err_len, "model: channels=%d must be positive", c->channels);
        if (c->pool != MODEL_POOL_AVG && c->pool != MODEL_POOL_CONTEXTPOOL)
            return check_error(err, err_len,
                               "model: pool=%s: the cnn pools with avg or contextpool",
                               model_pool_name(c->pool));
        return 0;
    }
    if (c->pool != MODEL_POOL_NONE && c->pool != MODEL_POOL_CONTEXTPOOL)
        return check_error(err, err_len, "model: pool=%s: a %s's blocks take none or contextpool",
                           model_pool_name(c->pool), kind);
    if (c->dim < 1 || c->heads < 1 || c->dim % c->heads != 0)
        return check_error(err, err_len, "model: heads=%d does not divide dim=%d", c->heads,
                           c->dim);
    if (c->layers < 1 || c->layers > MODEL_MAX_LAYERS)
        return check_error(err, err_len, "model: layers=%d, expected 1..%d", c->layers,
                           MODEL_MAX_LAYERS);
    if (c->kind == MODEL_CHARLM && c->seq_len < 1)
        return check_error(err, err_len, "model: seq_len=%d must be positive", c->seq_len);
    if (c->kind == MODEL_VIT && (c->patch < 1 || IMAGE_SIZE % c->patch != 0))
        return check_error(err, err_len, "model: patch=%d must divide the image side %d", c->patch,
                           IMAGE_SIZE);
    return 0;
}

static void build(Model *model, const ModelConfig *config, Rng *rng);

/* A scratch build for model_check_config, run inside cpool_try. */
typedef struct ScratchBuild {
    Model model; /* its ParamSet owns everything built so far, even after a failure */
    const ModelConfig *config;
    Rng rng;
} ScratchBuild;

static void build_scratch(void *arg) {
    ScratchBuild *scratch = arg;
    build(&scratch->model, scratch->config, &scratch->rng);
}

int model_check_config(const ModelConfig *config, char *err, size_t err_len) {
    if (check_keys(config, err, err_len) != 0) return -1;
    /* The layers' own checks (pool keys, spans, windows): build a scratch model with its own
     * generator, catching the first refusal. The scratch is freed either way. */
    ScratchBuild *scratch = xcalloc(1, sizeof *scratch);
    scratch->config = config;
    rng_seed(&scratch->rng, 1);
    int status = cpool_try(build_scratch, scratch, err, err_len);
    params_free(&scratch->model.params);
    free(scratch);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Building                                                                                    */

static void scale_table(Embedding *table) {
    for (long i = 0; i < table->weight->size; i++)
        table->weight->data[i] = (real)(table->weight->data[i] * EMBEDDING_STD);
}

static void build_blocks(Model *model, Rng *rng, int causal, int grid) {
    const ModelConfig *c = &model->config;
    BlockConfig block = {
        .dim = c->dim, .heads = c->heads, .ffn_hidden = c->ffn_hidden, .causal = causal};
    BlockVariant variant = c->variant;
    variant.pool = c->pool == MODEL_POOL_CONTEXTPOOL ? BLOCK_POOL_CONTEXTPOOL : BLOCK_POOL_NONE;
    variant.grid_h = variant.grid_w = variant.pool == BLOCK_POOL_CONTEXTPOOL ? grid : 0;
    for (int i = 0; i < c->layers; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "blocks.%d", i);
        block_init_variant(&model->blocks[i], block, variant, &model->params, prefix, rng);
    }
}

static void build_charlm(Model *model, Rng *rng) {
    const ModelConfig *c = &model->config;
    ParamSet *params = &model->params;
    embedding_init(&model->tok, (EmbeddingConfig){TEXT_VOCAB_SIZE, c->dim}, params, "tok", rng);
    embedding_init(&model->pos, (EmbeddingConfig){c->seq_len, c->dim}, params, "pos", rng);
    scale_table(&model->tok);
    scale_table(&model->pos);
    build_blocks(model, rng, 1, 0);
    layernorm_init(&model->ln_f, (LayerNormConfig){c->dim, 0}, params, "ln_f");
    if (!c->tie)
        linear_init(&model->head, (LinearConfig){c->dim, TEXT_VOCAB_SIZE, 0}, params, "head", rng);
}

static void build_vit(Model *model, Rng *rng) {
    const ModelConfig *c = &model->config;
    ParamSet *params = &model->params;
    int grid = IMAGE_SIZE / c->patch;
    conv2d_init(
        &model->patch,
        (ConvConfig){.in = 1, .out = c->dim, .kernel = c->patch, .stride = c->patch, .bias = 1},
        params, "patch", rng);
    embedding_init(&model->pos, (EmbeddingConfig){grid * grid, c->dim}, params, "pos", rng);
    scale_table(&model->pos);
    build_blocks(model, rng, 0, grid);
    layernorm_init(&model->ln_f, (LayerNormConfig){c->dim, 0}, params, "ln_f");
    linear_init(&model->head, (LinearConfig){c->dim, IMAGE_CLASSES, 1}, params, "head", rng);
}

static void build_cnn(Model *model, Rng *rng) {
    const ModelConfig *c = &model->config;
    ParamSet *params = &model->params;
    int width[4] = {1, c->channels, 2 * c->channels, 4 * c->channels};
    for (int k = 0; k < 3; k++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "conv.%d", k);
        conv2d_init(
            &model->conv[k],
            (ConvConfig){.in = width[k], .out = width[k + 1], .kernel = 3, .padding = 1, .bias = 1},
            params, prefix, rng);
        if (k == 2 || c->pool != MODEL_POOL_CONTEXTPOOL) continue;
        ContextPoolConfig pool = c->variant.cp;
        pool.dim = width[k + 1];
        pool.causal = 0;
        pool.stride = 2;
        snprintf(prefix, sizeof prefix, "pool.%d", k);
        contextpool2d_init(&model->pools[k], pool, params, prefix, rng);
    }
    linear_init(&model->head, (LinearConfig){width[3], IMAGE_CLASSES, 1}, params, "head", rng);
}

static void build(Model *model, const ModelConfig *config, Rng *rng) {
    model->config = *config;
    if (config->kind == MODEL_CHARLM) build_charlm(model, rng);
    if (config->kind == MODEL_VIT) build_vit(model, rng);
    if (config->kind == MODEL_CNN) build_cnn(model, rng);
}

void model_init(Model *model, const ModelConfig *config, Rng *rng) {
    char err[512];
    if (model_check_config(config, err, sizeof err) != 0) cpool_fail("%s", err);
    memset(model, 0, sizeof *model);
    build(model, config, rng);
}

void model_free(Model *model) {
    params_free(&model->params);
    memset(model, 0, sizeof *model);
}

/* ------------------------------------------------------------------------------------------ */
/* Forward                                                                                     */

static Tensor *run_blocks(Tape *tape, const Model *model, Tensor *x, ModelAux *aux) {
    for (int i = 0; i < model->config.layers; i++)
        x = block_forward_aux(tape, &model->blocks[i], x, aux ? &aux->layers[i] : NULL);
    if (aux) aux->count = model->config.layers;
    return x;
}

/* tokens (B, N) -> logits (B, N, 256) */
static Tensor *charlm_forward(Tape *tape, const Model *model, const ModelInput *in, ModelAux *aux) {
    int B = in->batch, N = in->len;
    if (!in->tokens || B < 1 || N < 1 || N > model->config.seq_len)
        cpool_fail("charlm: expected tokens (B, N) with 1 <= N <= seq_len=%d, got (%d, %d)",
                   model->config.seq_len, B, N);
    Tensor *x = embedding_forward(tape, &model->tok, in->tokens, 2, (int[]){B, N}); /* (B,N,d) */
    x = op_add(tape, x, embedding_positions(tape, &model->pos, N)); /* + (N, d), broadcast */
    x = layernorm_forward(tape, &model->ln_f, run_blocks(tape, model, x, aux));
    if (model->config.tie) return op_matmul(tape, x, model->tok.weight, 0, 1); /* x tok^T */
    return linear_forward(tape, &model->head, x);
}

static void check_images(const char *kind, const Tensor *images) {
    char shape[64];
    if (!images || images->ndim != 4 || images->shape[1] != 1 || images->shape[2] != IMAGE_SIZE ||
        images->shape[3] != IMAGE_SIZE || images->shape[0] < 1)
        cpool_fail("%s: expected images (B, 1, %d, %d), got %s", kind, IMAGE_SIZE, IMAGE_SIZE,
                   images ? TENSOR_SHAPE_STR(images, shape) : "none");
}

/* images (B, 1, 28, 28) -> logits (B, 10) */
static Tensor *vit_forward(Tape *tape, const Model *model, Tensor *images, ModelAux *aux) {
    check_images("vit", images);
    int B = images->shape[0], dim = model->config.dim;
    int grid = IMAGE_SIZE / model->config.patch, T = grid * grid;
    Tensor *x = conv2d_forward(tape, &model->patch, images);        /* (B, dim, G, G) */
    x = op_reshape(tape, x, 3, (int[]){B, dim, T});                 /* (B, dim, T) */
    x = op_transpose(tape, x, 1, 2);                                /* (B, T, dim) */
    x = op_add(tape, x, embedding_positions(tape, &model->pos, T)); /* + (T, dim) */
    x = layernorm_forward(tape, &model->ln_f, run_blocks(tape, model, x, aux));
    return linear_forward(tape, &model->head, op_mean(tape, x, 1, 0)); /* (B, dim) -> (B, 10) */
}

/* images (B, 1, 28, 28) -> logits (B, 10) */
static Tensor *cnn_forward(Tape *tape, const Model *model, Tensor *images, ModelAux *aux) {
    check_images("cnn", images);
    int contextpool = model->config.pool == MODEL_POOL_CONTEXTPOOL;
    if (aux) memset(aux, 0, sizeof *aux);
    Tensor *x = images;
    for (int k = 0; k < 3; k++) {
        x = op_relu(tape, conv2d_forward(tape, &model->conv[k], x)); /* (B, c_k, H, W) */
        if (k == 2) break;
        if (contextpool) /* (B, c_k, H, W) -> (B, c_k, H/2, W/2) */
            x = contextpool2d_forward(tape, &model->pools[k], x, aux ? &aux->layers[k].pool : NULL);
        else
            x = op_avgpool2d(tape, x, 2, 2);
    }
    if (aux) aux->count = contextpool ? MODEL_CNN_POOLS : 0;
    int B = x->shape[0], C = x->shape[1];
    x = op_reshape(tape, x, 3, (int[]){B, C, x->shape[2] * x->shape[3]}); /* (B, 4c, 49) */
    return linear_forward(tape, &model->head, op_mean(tape, x, 2, 0));    /* (B, 10) */
}

Tensor *model_forward(Tape *tape, const Model *model, const ModelInput *in, ModelAux *aux) {
    switch (model->config.kind) {
    case MODEL_CHARLM:
        return charlm_forward(tape, model, in, aux);
    case MODEL_VIT:
        return vit_forward(tape, model, in->images, aux);
    case MODEL_CNN:
        return cnn_forward(tape, model, in->images, aux);
    }
    cpool_fail("model: kind=%d is not charlm, vit or cnn", (int)model->config.kind);
}

Tensor *model_loss(Tape *tape, const Model *model, Tensor *logits, const int *targets) {
    Tensor *loss = op_cross_entropy(tape, logits, targets, -1); /* mean over rows, nats */
    if (model->config.kind == MODEL_CNN || !model->config.variant.attn.span) return loss;
    for (int i = 0; i < model->config.layers; i++)
        loss = op_add(tape, loss, attention_span_loss(tape, &model->blocks[i].attn));
    return loss;
}

void model_after_step(Model *model) {
    if (model->config.kind == MODEL_CNN) return;
    for (int i = 0; i < model->config.layers; i++) attention_span_clamp(&model->blocks[i].attn);
}

/* ------------------------------------------------------------------------------------------ */
/* Cost                                                                                        */

/* Resolved pool keys: the defaults contextpool_init would fill in. */
static void pool_sizes(const ContextPoolConfig *cp, int dim, int *hidden, int *kernel,
                       int *radius) {
    *hidden = cp->hidden > 0 ? cp->hidden : (dim / 4 > 8 ? dim / 4 : 8);
    *kernel = cp->kernel > 0 ? cp->kernel : 3;
    *radius = cp->radius > 0 ? cp->radius : (int)ceil(3 * cp->s_max);
}

static double min_d(double a, double b) {
    return a < b ? a : b;
}

/* The keys a query's scores and weighted sum visit, averaged over the N queries. The fused
 * op_attention forms only seen(i) = [max(0, i - K), min(last, i + K)] (last = i when causal,
 * else N - 1; K the window, none when 0): a causal layer without window visits the triangle,
 * N (N + 1) / 2 pairs, so (N + 1) / 2 keys per query. The composed chain (the adaptive span, or
 * reach.composed) computes the whole masked N x N matrix: N keys. */
static double attention_keys(const ModelConfig *c, int N) {
    const AttentionReach *reach = &c->variant.attn;
    if (reach->span || reach->composed) return N;
    int causal = c->kind == MODEL_CHARLM, window = reach->window;
    double pairs = 0;
    for (int i = 0; i < N; i++) {
        int first = window > 0 && i - window > 0 ? i - window : 0;
        int last = causal ? i : N - 1;
        if (window > 0 && i + window < last) last = i + window;
        pairs += last - first + 1;
    }
    return pairs / N;
}

/* One token of a block over N tokens (a W x W grid when grid > 0): matrix products, attention's
 * two weighted sums over the keys it visits, and the pool's predictor and banded sum. */
static double block_flops(const ModelConfig *c, int N, int grid) {
    double d = c->dim, hidden = c->ffn_hidden > 0 ? c->ffn_hidden : 4 * c->dim;
    double keys = attention_keys(c, N);
    double flops = 2 * d * 3 * d + 2 * d * d + 2 * 2 * d * hidden + 2 * 2 * keys * d;
    if (c->pool != MODEL_POOL_CONTEXTPOOL) return flops;
    int pred_hidden, kernel, radius;
    pool_sizes(&c->variant.cp, c->dim, &pred_hidden, &kernel, &radius);
    double band = grid > 0 ? pow(min_d(2.0 * radius + 1, grid), 2)
                           : min_d(c->kind == MODEL_CHARLM ? radius + 1 : 2.0 * radius + 1, N);
    double taps = grid > 0 ? 9 : kernel;
    return flops + 2 * d * pred_hidden * taps + 2 * pred_hidden * 2 + 2 * band * d;
}

/* One image of the CNN: three 3x3 convolutions, the pools (contextpool: predictor at every
 * input pixel, banded sum at every output), the head. */
static double cnn_flops(const ModelConfig *c) {
    double width[4] = {1, c->channels, 2.0 * c->channels, 4.0 * c->channels};
    double side[3] = {IMAGE_SIZE, IMAGE_SIZE / 2, IMAGE_SIZE / 4};
    double flops = 2 * width[3] * IMAGE_CLASSES;
    for (int k = 0; k < 3; k++) {
        double pixels = side[k] * side[k];
        flops += 2 * 9 * width[k] * width[k + 1] * pixels;
        if (k == 2) break;
        if (c->pool == MODEL_POOL_AVG) {
            flops += pixels * width[k + 1];
            continue;
        }
        int pred_hidden, kernel, radius;
        ContextPoolConfig cp = c->variant.cp;
        pool_sizes(&cp, (int)width[k + 1], &pred_hidden, &kernel, &radius);
        double band = pow(min_d(2.0 * radius + 1, side[k]), 2);
        flops += pixels * (2 * 9 * width[k + 1] * pred_hidden + 2 * pred_hidden * 2);
        flops += pixels / 4 * 2 * band * width[k + 1];
    }
    return flops;
}

double model_forward_flops(const ModelConfig *c) {
    if (c->kind == MODEL_CNN) return cnn_flops(c);
    if (c->kind == MODEL_CHARLM)
        return c->layers * block_flops(c, c->seq_len, 0) + 2.0 * c->dim * TEXT_VOCAB_SIZE;
    int grid = IMAGE_SIZE / c->patch, T = grid * grid;
    double per_token = 2.0 * c->patch * c->patch * c->dim + c->layers * block_flops(c, T, grid);
    return T * per_token + 2.0 * c->dim * IMAGE_CLASSES;
}
