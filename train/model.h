/* model.h - the three models people train here: a char-level language model, a ViT and a CNN.
 *
 *     ModelConfig config = model_default_config(MODEL_CHARLM);
 *     config.layers = 2;
 *     config.pool = MODEL_POOL_CONTEXTPOOL;
 *     Model model;
 *     model_init(&model, &config, &rng);            // model.params holds every parameter
 *     ModelInput in = {.tokens = batch.inputs, .batch = B, .len = N};
 *     Tensor *logits = model_forward(tape, &model, &in, NULL);     // (B, N, 256)
 *     Tensor *loss = model_loss(tape, &model, logits, batch.targets);
 *     ... tape_backward, adamw_step ...
 *     model_after_step(&model);                      // clamps the adaptive spans' z
 *     model_free(&model);
 *
 * Parameter names are those of the PyTorch modules in tools/torch/contextpool.py, so a
 * checkpoint written here loads there with load_state_dict, and back.
 *
 * charlm - byte-level causal language model. tokens (B, N) ints in 0..255, N <= seq_len:
 *     x = tok(tokens) + pos(0..N-1)          "tok.weight" (256, dim), "pos.weight" (seq_len, dim)
 *     x = blocks.i(x), i = 0..layers-1       causal pre-norm blocks (block.h), "blocks.i.*"
 *     x = ln_f(x)                            "ln_f.weight", "ln_f.bias"
 *     logits = x tok.weight^T                tie = 1 (default): the head is the token table
 *     logits = x head.weight^T               tie = 0: "head.weight" (256, dim), no bias
 *   -> logits (B, N, 256). The embedding tables start as N(0, 0.02^2) (GPT-2's choice, where
 *   PyTorch's nn.Embedding default N(0, 1) would make the tied head's first logits ~ sqrt(dim)).
 *
 * vit - image classifier on patches. images (B, 1, 28, 28), patch p dividing 28, G = 28 / p:
 *     x = patch(images)                      Conv2d(1, dim, p, stride p): "patch.weight"
 *                                            (dim, 1, p, p), "patch.bias" -> (B, dim, G, G)
 *     x = x as (B, G*G, dim) + pos(0..G*G-1) tokens in row-major pixel order, "pos.weight"
 *     x = blocks.i(x)                        non-causal; with a pool, contextpool2d on the
 *                                            (G, G) token grid (block.h's grid_h, grid_w)
 *     logits = head(mean_tokens(ln_f(x)))    "ln_f.*", "head.weight" (10, dim), "head.bias"
 *   -> logits (B, 10). pos starts as N(0, 0.02^2).
 *
 * cnn - small ConvNet, c = channels. images (B, 1, 28, 28):
 *     x = pool.0(relu(conv.0(images)))       Conv2d(1, c, 3, padding 1)        -> (B, c, 14, 14)
 *     x = pool.1(relu(conv.1(x)))            Conv2d(c, 2c, 3, padding 1)       -> (B, 2c, 7, 7)
 *     x = relu(conv.2(x))                    Conv2d(2c, 4c, 3, padding 1)      -> (B, 4c, 7, 7)
 *     logits = head(mean_HW(x))              "head.weight" (10, 4c), "head.bias" -> (B, 10)
 *   pool.k is 2x2 average pooling (pool = avg, no parameters) or contextpool2d stride 2
 *   (pool = contextpool, "pool.k.pred.*"): ceil(H/2) outputs, each centred on an even pixel.
 *
 * Parameters are created (and drawn from rng) in the order listed; in the blocks, block.h's.
 * For charlm and vit this is also the order of the PyTorch state_dict; the cnn's torch module
 * lists conv.* before pool.* (loading goes by name, so the order does not matter there).
 * model_init checks the whole config first and fails with one line naming the key
 * ("model: heads=3 does not divide dim=64"); nothing is allocated then.
 */
#ifndef CPOOL_MODEL_H
#define CPOOL_MODEL_H

#include "block.h"
#include "embedding.h"

#define MODEL_MAX_LAYERS 16
#define MODEL_CNN_POOLS  2

typedef enum ModelKind { MODEL_CHARLM, MODEL_VIT, MODEL_CNN } ModelKind;
/* The blocks' (or the CNN's) pooling: none (transformers) / avg (cnn), or ContextPool. */
typedef enum ModelPool { MODEL_POOL_NONE, MODEL_POOL_AVG, MODEL_POOL_CONTEXTPOOL } ModelPool;

typedef struct ModelConfig {
    ModelKind kind;
    int dim, heads, layers; /* transformers: width, heads per block, blocks */
    int ffn_hidden;         /* 0 means 4 * dim */
    int seq_len;            /* charlm: longest context (rows of pos.weight) */
    int tie;                /* charlm: 1 = the head is tok.weight */
    int patch;              /* vit: patch side in pixels, dividing 28 */
    int channels;           /* cnn: width c of the first stage */
    ModelPool pool;         /* none or contextpool (transformers), avg or contextpool (cnn) */
    BlockVariant variant;   /* transformers: the blocks' pool_feeds, cp keys (ablations) and
                               attention reach; .pool and .grid are set from the fields above */
} ModelConfig;

/* The defaults for a kind: charlm dim 128, heads 4, layers 2, seq_len 256, tie 1, pool
 * contextpool; vit dim 64, heads 4, layers 2, patch 4, pool contextpool; cnn channels 16, pool
 * contextpool. Pool keys as contextpool_default_config (s_min 0.5, s_max 8, s_fixed 2), except
 * the cnn's s_max: 2 pixels. */
ModelConfig model_default_config(ModelKind kind);

/* Check a config without building anything: 0, or -1 with one line in err. */
int model_check_config(const ModelConfig *config, char *err, size_t err_len);

typedef struct Model {
    ModelConfig config;
    ParamSet params;
    Embedding tok, pos;                 /* charlm: tok, pos; vit: pos */
    Conv patch;                         /* vit */
    Block blocks[MODEL_MAX_LAYERS];     /* charlm, vit */
    LayerNorm ln_f;                     /* charlm, vit */
    Linear head;                        /* vit, cnn; charlm when tie = 0 */
    Conv conv[3];                       /* cnn */
    ContextPool pools[MODEL_CNN_POOLS]; /* cnn with pool = contextpool */
} Model;

/* What the model reads: tokens for the charlm, images for the others. */
typedef struct ModelInput {
    const int *tokens; /* charlm: (batch, len) row-major */
    int batch, len;
    Tensor *images; /* vit, cnn: (B, 1, 28, 28) */
} ModelInput;

/* Per layer, what its pool and attention computed (for figures): blocks, or the CNN's pools
 * in aux.layers[0..1].pool. Arena tensors, valid until the tape's reset. */
typedef struct ModelAux {
    int count;
    BlockAux layers[MODEL_MAX_LAYERS];
} ModelAux;

/* cpool_fail() on a bad config (the message of model_check_config). */
void model_init(Model *model, const ModelConfig *config, Rng *rng);
void model_free(Model *model);
/* -> logits: charlm (B, N, 256), vit and cnn (B, 10). aux may be NULL. */
Tensor *model_forward(Tape *tape, const Model *model, const ModelInput *in, ModelAux *aux);
/* Mean cross-entropy over every row of logits (in nats), plus the adaptive spans' penalty
 * when the blocks have one. targets: charlm (B*N) next bytes, others (B) labels. */
Tensor *model_loss(Tape *tape, const Model *model, Tensor *logits, const int *targets);
/* After each optimizer step: keeps constrained parameters in range (the spans' z in [0, 1]). */
void model_after_step(Model *model);

/* Forward-pass floating-point operations per example (per token for charlm, per image
 * otherwise): 2 m n k for every matrix product and convolution, plus the pools' and
 * attention's weighted sums over the keys computed (the fused causal attention: the triangle,
 * (N + 1) / 2 keys per token; the adaptive span's masked chain: all N); elementwise work is
 * left out. A training step costs about 3x. */
double model_forward_flops(const ModelConfig *config);

/* "charlm", "vit", "cnn"; "none", "avg", "contextpool". */
const char *model_kind_name(ModelKind kind);
const char *model_pool_name(ModelPool pool);

#endif
