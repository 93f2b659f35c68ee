/* lab_layers.c - the table of layers `cpool lab` can run (see lab_layers.h).
 *
 * Each layer needs two adapters: init builds the layer's config struct from the lab's key values,
 * forward calls the layer on the lab's input. Parameters are created without a prefix, so their
 * names are the ones a PyTorch module of the same structure has in its state_dict. */
#include "lab_layers.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "block.h"
#include "contextpool.h"
#include "conv.h"
#include "embedding.h"
#include "ffn.h"
#include "layernorm.h"
#include "linear.h"
#include "util.h"

/* ------------------------------------------------------------------------------------------ */
/* The adapters, one pair per layer                                                           */

static void linear_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    LinearConfig config = {
        .in = lab_int(c, "in"), .out = lab_int(c, "out"), .bias = lab_int(c, "bias")};
    linear_init(layer, config, params, "", rng);
}
static Tensor *linear_lab_forward(Tape *tape, const void *layer, const LabInput *in, Tensor **aux) {
    (void)aux;
    return linear_forward(tape, layer, in->x);
}

static void layernorm_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    (void)rng; /* weight 1, bias 0: nothing random */
    LayerNormConfig config = {.dim = lab_int(c, "dim"), .eps = lab_real(c, "eps")};
    if (!(config.eps > 0)) cpool_fail("layernorm: eps=%g must be positive", config.eps);
    layernorm_init(layer, config, params, "");
}
static Tensor *layernorm_lab_forward(Tape *tape, const void *layer, const LabInput *in,
                                     Tensor **aux) {
    (void)aux;
    return layernorm_forward(tape, layer, in->x);
}

static void embedding_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    EmbeddingConfig config = {.vocab = lab_int(c, "vocab"), .dim = lab_int(c, "dim")};
    embedding_init(layer, config, params, "", rng);
}
static Tensor *embedding_lab_forward(Tape *tape, const void *layer, const LabInput *in,
                                     Tensor **aux) {
    (void)aux;
    return embedding_forward(tape, layer, in->ids, in->ids_ndim, in->ids_shape);
}

/* The window and span keys, shared by attention and block. */
static AttentionReach reach_config(const LabConfig *c) {
    return (AttentionReach){.window = lab_int(c, "window"),
                            .span = lab_int(c, "span"), /* none|adaptive */
                            .span_max = lab_int(c, "span_max"),
                            .span_ramp = lab_int(c, "span_ramp"),
                            .span_coef = lab_real(c, "span_coef")};
}

static void attention_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    AttentionConfig config = {
        .dim = lab_int(c, "dim"), .heads = lab_int(c, "heads"), .causal = lab_int(c, "causal")};
    attention_init_reach(layer, config, reach_config(c), params, "", rng);
}
static Tensor *attention_lab_forward(Tape *tape, const void *layer, const LabInput *in,
                                     Tensor **aux) {
    return attention_forward(tape, layer, in->x, in->x, &aux[0]); /* aux[0]: "attn" */
}

static void ffn_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    FfnConfig config = {.dim = lab_int(c, "dim"), .hidden = lab_int(c, "hidden")};
    if (config.hidden == 0) config.hidden = 4 * config.dim;
    ffn_init(layer, config, params, "", rng);
}
static Tensor *ffn_lab_forward(Tape *tape, const void *layer, const LabInput *in, Tensor **aux) {
    (void)aux;
    return ffn_forward(tape, layer, in->x);
}

static ConvConfig conv_config(const LabConfig *c, int causal) {
    return (ConvConfig){.in = lab_int(c, "in"),
                        .out = lab_int(c, "out"),
                        .kernel = lab_int(c, "kernel"),
                        .stride = lab_int(c, "stride"),
                        .padding = lab_int(c, "padding"),
                        .groups = lab_int(c, "groups"),
                        .bias = lab_int(c, "bias"),
                        .causal = causal};
}
static void conv1d_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    conv1d_init(layer, conv_config(c, lab_int(c, "causal")), params, "", rng);
}
static Tensor *conv1d_lab_forward(Tape *tape, const void *layer, const LabInput *in, Tensor **aux) {
    (void)aux;
    return conv1d_forward(tape, layer, in->x);
}
static void conv2d_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    conv2d_init(layer, conv_config(c, 0), params, "", rng);
}
static Tensor *conv2d_lab_forward(Tape *tape, const void *layer, const LabInput *in, Tensor **aux) {
    (void)aux;
    return conv2d_forward(tape, layer, in->x);
}

/* The ContextPool keys, named `prefix` + "hidden" etc. ("cp_hidden" in the block). Choices:
 * weights learned|uniform, size adaptive|fixed, impl fused|composed. */
static ContextPoolConfig pool_config(const LabConfig *c, const char *prefix) {
    const char *keys[] = {"hidden",  "kernel", "s_min",   "s_max", "radius",
                          "weights", "size",   "s_fixed", "impl"};
    char name[9][32];
    for (int k = 0; k < 9; k++) snprintf(name[k], sizeof name[k], "%s%s", prefix, keys[k]);
    return (ContextPoolConfig){.hidden = lab_int(c, name[0]),
                               .kernel = lab_int(c, name[1]),
                               .s_min = lab_real(c, name[2]),
                               .s_max = lab_real(c, name[3]),
                               .radius = lab_int(c, name[4]),
                               .weights_uniform = lab_int(c, name[5]),
                               .size_fixed = lab_int(c, name[6]),
                               .s_fixed = lab_real(c, name[7]),
                               .composed = lab_int(c, name[8])};
}

static void contextpool1d_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    ContextPoolConfig config = pool_config(c, "");
    config.dim = lab_int(c, "dim");
    config.causal = lab_int(c, "causal");
    contextpool_init(layer, config, params, "", rng);
}
static Tensor *contextpool1d_lab_forward(Tape *tape, const void *layer, const LabInput *in,
                                         Tensor **aux) {
    ContextPoolAux pool;
    Tensor *y = contextpool_forward(tape, layer, in->x, &pool);
    aux[0] = pool.weights, aux[1] = pool.support; /* "weights", "support" */
    return y;
}

static void contextpool2d_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    ContextPoolConfig config = pool_config(c, "");
    config.dim = lab_int(c, "dim");
    config.stride = lab_int(c, "stride");
    contextpool2d_init(layer, config, params, "", rng);
}
static Tensor *contextpool2d_lab_forward(Tape *tape, const void *layer, const LabInput *in,
                                         Tensor **aux) {
    ContextPoolAux pool;
    Tensor *y = contextpool2d_forward(tape, layer, in->x, &pool);
    aux[0] = pool.weights, aux[1] = pool.support; /* "weights", "support" */
    return y;
}

static void block_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    BlockConfig config = {.dim = lab_int(c, "dim"),
                          .heads = lab_int(c, "heads"),
                          .ffn_hidden = lab_int(c, "ffn_hidden"),
                          .causal = lab_int(c, "causal")};
    BlockVariant variant = {.pool = lab_int(c, "pool"),             /* none|contextpool */
                            .pool_feeds = lab_int(c, "pool_feeds"), /* kv|qkv|stream */
                            .cp = pool_config(c, "cp_"),
                            .grid_h = lab_int(c, "grid_h"),
                            .grid_w = lab_int(c, "grid_w"),
                            .attn = reach_config(c)};
    block_init_variant(layer, config, variant, params, "", rng);
}
static Tensor *block_lab_forward(Tape *tape, const void *layer, const LabInput *in, Tensor **aux) {
    BlockAux out;
    Tensor *y = block_forward_aux(tape, layer, in->x, &out);
    aux[0] = out.probs;                                   /* "attn" */
    aux[1] = out.pool.weights, aux[2] = out.pool.support; /* NULL without a pool */
    return y;
}

/* ------------------------------------------------------------------------------------------ */
/* The table                                                                                  */

#define KEY_DIM_FROM_X                                                                             \
    { "dim", LAB_INT, 0, LAB_FROM_LAST_AXIS, "features (the model width)", NULL, NULL }
#define KEY_HEADS                                                                                  \
    { "heads", LAB_INT, 1, LAB_DEFAULT, "attention heads (must divide dim)", NULL, NULL }
#define KEY_CAUSAL                                                                                 \
    { "causal", LAB_BOOL, 0, LAB_DEFAULT, "1: token i attends to j <= i only", NULL, NULL }
#define KEY_CONV_IN                                                                                \
    { "in", LAB_INT, 0, LAB_FROM_AXIS_1, "input channels", NULL, NULL }
#define KEY_CONV_OUT                                                                               \
    { "out", LAB_INT, 0, LAB_REQUIRED, "output channels", NULL, NULL }
#define KEY_KERNEL                                                                                 \
    { "kernel", LAB_INT, 0, LAB_REQUIRED, "kernel size", NULL, NULL }
#define KEY_STRIDE                                                                                 \
    { "stride", LAB_INT, 1, LAB_DEFAULT, "step between windows", NULL, NULL }
#define KEY_PADDING                                                                                \
    { "padding", LAB_INT, 0, LAB_DEFAULT, "zeros added on each side", NULL, NULL }
#define KEY_GROUPS                                                                                 \
    { "groups", LAB_INT, 1, LAB_DEFAULT, "channel groups (divide in and out)", NULL, NULL }
#define KEY_BIAS                                                                                   \
    { "bias", LAB_BOOL, 1, LAB_DEFAULT, "1: add a bias", NULL, NULL }
/* The attention's reach (attention.h), in attention and block. */
#define KEY_WINDOW                                                                                 \
    { "window", LAB_INT, 0, LAB_DEFAULT, "K > 0: attend only to |i-j| <= K; 0: all", NULL, NULL }
#define KEY_SPAN                                                                                   \
    { "span", LAB_CHOICE, 0, LAB_DEFAULT, "a learned soft span per head", NULL, "none|adaptive" }
#define KEY_SPAN_MAX                                                                               \
    { "span_max", LAB_INT, 256, LAB_DEFAULT, "span: L, the largest span (tokens)", NULL, NULL }
#define KEY_SPAN_RAMP                                                                              \
    { "span_ramp", LAB_INT, 32, LAB_DEFAULT, "span: R, the mask's ramp (tokens)", NULL, NULL }
#define KEY_SPAN_COEF                                                                              \
    { "span_coef", LAB_REAL, 2e-6, LAB_DEFAULT, "span: the span loss's coefficient", NULL, NULL }
/* The ContextPool keys (contextpool.h): `prefix` is "" in the pool layers, "cp_" in the block. */
#define KEY_POOL_HIDDEN(prefix)                                                                    \
    { prefix "hidden", LAB_INT, 0, LAB_DEFAULT, "the predictor's width", "max(8,dim/4)", NULL }
#define KEY_POOL_KERNEL(prefix)                                                                    \
    { prefix "kernel", LAB_INT, 3, LAB_DEFAULT, "the predictor's kernel (2-d: 3)", NULL, NULL }
#define KEY_POOL_S_MIN(prefix)                                                                     \
    { prefix "s_min", LAB_REAL, 0.5, LAB_DEFAULT, "smallest support size s (tokens)", NULL, NULL }
#define KEY_POOL_S_MAX(prefix)                                                                     \
    { prefix "s_max", LAB_REAL, 8, LAB_DEFAULT, "largest support size s (tokens)", NULL, NULL }
#define KEY_POOL_RADIUS(prefix)                                                                    \
    { prefix "radius", LAB_INT, 0, LAB_DEFAULT, "pool |i-j| <= radius", "ceil(3*s_max)", NULL }
#define KEY_POOL_WEIGHTS(prefix)                                                                   \
    { prefix "weights", LAB_CHOICE, 0, LAB_DEFAULT, "w: sigmoid(a), or 1", NULL, "learned|uniform" }
#define KEY_POOL_SIZE(prefix)                                                                      \
    { prefix "size", LAB_CHOICE, 0, LAB_DEFAULT, "s predicted, or s_fixed", NULL, "adaptive|fixed" }
#define KEY_POOL_S_FIXED(prefix)                                                                   \
    { prefix "s_fixed", LAB_REAL, 2, LAB_DEFAULT, "every s, with size=fixed", NULL, NULL }
#define KEY_POOL_IMPL(prefix)                                                                      \
    { prefix "impl", LAB_CHOICE, 0, LAB_DEFAULT, "banded op, or N x N ops", NULL, "fused|composed" }

const LabLayer lab_layers[] = {
    {.name = "linear",
     .summary = "y = x W^T + b over the last axis (nn.Linear)",
     .input = "x (..., in)",
     .min_ndim = 1,
     .max_ndim = TENSOR_MAX_DIMS,
     .keys = {{"in", LAB_INT, 0, LAB_FROM_LAST_AXIS, "input features", NULL, NULL},
              {"out", LAB_INT, 0, LAB_REQUIRED, "output features", NULL, NULL},
              KEY_BIAS},
     .layer_bytes = sizeof(Linear),
     .init = linear_lab_init,
     .forward = linear_lab_forward},
    {.name = "layernorm",
     .summary = "normalise the last axis, then scale and shift (nn.LayerNorm)",
     .input = "x (..., dim)",
     .min_ndim = 1,
     .max_ndim = TENSOR_MAX_DIMS,
     .keys = {KEY_DIM_FROM_X,
              {"eps", LAB_REAL, 1e-5, LAB_DEFAULT, "added to the variance", NULL, NULL}},
     .layer_bytes = sizeof(LayerNorm),
     .init = layernorm_lab_init,
     .forward = layernorm_lab_forward},
    {.name = "embedding",
     .summary = "look up one row per token id (nn.Embedding); no grad_in.npy",
     .input = "ids (...) integers in [0, vocab)",
     .integer_input = 1,
     .min_ndim = 0,
     .max_ndim = TENSOR_MAX_DIMS - 1,
     .keys = {{"vocab", LAB_INT, 0, LAB_REQUIRED, "rows of the table", NULL, NULL},
              {"dim", LAB_INT, 0, LAB_REQUIRED, "features per row", NULL, NULL}},
     .layer_bytes = sizeof(Embedding),
     .init = embedding_lab_init,
     .forward = embedding_lab_forward},
    {.name = "attention",
     .summary = "multi-head self-attention, qkv and proj linears; writes attn.npy",
     .input = "x (B, N, dim)",
     .min_ndim = 3,
     .max_ndim = 3,
     .keys = {KEY_DIM_FROM_X, KEY_HEADS, KEY_CAUSAL, KEY_WINDOW, KEY_SPAN, KEY_SPAN_MAX,
              KEY_SPAN_RAMP, KEY_SPAN_COEF},
     .aux = {"attn"},
     .layer_bytes = sizeof(Attention),
     .init = attention_lab_init,
     .forward = attention_lab_forward},
    {.name = "ffn",
     .summary = "fc2(GELU(fc1(x))), the transformer's feed-forward net",
     .input = "x (..., dim)",
     .min_ndim = 1,
     .max_ndim = TENSOR_MAX_DIMS,
     .keys = {KEY_DIM_FROM_X,
              {"hidden", LAB_INT, 0, LAB_DEFAULT, "hidden features", "4*dim", NULL}},
     .layer_bytes = sizeof(Ffn),
     .init = ffn_lab_init,
     .forward = ffn_lab_forward},
    {.name = "conv1d",
     .summary = "1-d convolution (nn.Conv1d); causal pads kernel-1 zeros on the left",
     .input = "x (B, in, L)",
     .min_ndim = 3,
     .max_ndim = 3,
     .keys = {KEY_CONV_IN,
              KEY_CONV_OUT,
              KEY_KERNEL,
              KEY_STRIDE,
              KEY_PADDING,
              KEY_GROUPS,
              {"causal", LAB_BOOL, 0, LAB_DEFAULT, "1: output i sees inputs <= i (padding=0)", NULL,
               NULL},
              KEY_BIAS},
     .layer_bytes = sizeof(Conv),
     .init = conv1d_lab_init,
     .forward = conv1d_lab_forward},
    {.name = "conv2d",
     .summary = "2-d convolution with a square kernel (nn.Conv2d)",
     .input = "x (B, in, H, W)",
     .min_ndim = 4,
     .max_ndim = 4,
     .keys = {KEY_CONV_IN, KEY_CONV_OUT, KEY_KERNEL, KEY_STRIDE, KEY_PADDING, KEY_GROUPS, KEY_BIAS},
     .layer_bytes = sizeof(Conv),
     .init = conv2d_lab_init,
     .forward = conv2d_lab_forward},
    {.name = "contextpool1d",
     .summary = "ContextPool along a sequence; writes weights.npy, support.npy",
     .input = "x (B, N, dim)",
     .min_ndim = 3,
     .max_ndim = 3,
     .keys = {KEY_DIM_FROM_X,
              KEY_POOL_HIDDEN(""),
              KEY_POOL_KERNEL(""),
              KEY_POOL_S_MIN(""),
              KEY_POOL_S_MAX(""),
              KEY_POOL_RADIUS(""),
              {"causal", LAB_BOOL, 0, LAB_DEFAULT, "1: pool only j <= i", NULL, NULL},
              KEY_POOL_WEIGHTS(""),
              KEY_POOL_SIZE(""),
              KEY_POOL_S_FIXED(""),
              KEY_POOL_IMPL("")},
     .aux = {"weights", "support"},
     .layer_bytes = sizeof(ContextPool),
     .init = contextpool1d_lab_init,
     .forward = contextpool1d_lab_forward},
    {.name = "contextpool2d",
     .summary = "ContextPool on an image, stride 1 or 2; writes weights.npy, support.npy",
     .input = "x (B, C, H, W)",
     .min_ndim = 4,
     .max_ndim = 4,
     .keys = {{"dim", LAB_INT, 0, LAB_FROM_AXIS_1, "channels C", NULL, NULL},
              KEY_POOL_HIDDEN(""),
              KEY_POOL_KERNEL(""),
              KEY_POOL_S_MIN(""),
              KEY_POOL_S_MAX(""),
              KEY_POOL_RADIUS(""),
              KEY_POOL_WEIGHTS(""),
              KEY_POOL_SIZE(""),
              KEY_POOL_S_FIXED(""),
              KEY_POOL_IMPL(""),
              {"stride", LAB_INT, 1, LAB_DEFAULT, "1, or 2: y is (B, C, ceil(H/2), ceil(W/2))",
               NULL, NULL}},
     .aux = {"weights", "support"},
     .layer_bytes = sizeof(ContextPool),
     .init = contextpool2d_lab_init,
     .forward = contextpool2d_lab_forward},
    {.name = "block",
     .summary = "pre-norm transformer block, optionally pooled; attn.npy (+ weights, support)",
     .input = "x (B, N, dim)",
     .min_ndim = 3,
     .max_ndim = 3,
     .keys = {KEY_DIM_FROM_X,
              KEY_HEADS,
              {"ffn_hidden", LAB_INT, 0, LAB_DEFAULT, "hidden features of the ffn", "4*dim", NULL},
              KEY_CAUSAL,
              {"pool", LAB_CHOICE, 0, LAB_DEFAULT, "add a pool (the cp_* keys)", NULL,
               "none|contextpool"},
              {"pool_feeds", LAB_CHOICE, 0, LAB_DEFAULT,
               "pool gives attn k, v / q, k, v / pools the output", NULL, "kv|qkv|stream"},
              KEY_POOL_HIDDEN("cp_"),
              KEY_POOL_KERNEL("cp_"),
              KEY_POOL_S_MIN("cp_"),
              KEY_POOL_S_MAX("cp_"),
              KEY_POOL_RADIUS("cp_"),
              KEY_POOL_WEIGHTS("cp_"),
              KEY_POOL_SIZE("cp_"),
              KEY_POOL_S_FIXED("cp_"),
              KEY_POOL_IMPL("cp_"),
              {"grid_h", LAB_INT, 0, LAB_DEFAULT, "tokens on a grid_h x grid_w image (2-d pool)",
               NULL, NULL},
              {"grid_w", LAB_INT, 0, LAB_DEFAULT, "(N = grid_h grid_w, causal=0; 0: a sequence)",
               NULL, NULL},
              KEY_WINDOW,
              KEY_SPAN,
              KEY_SPAN_MAX,
              KEY_SPAN_RAMP,
              KEY_SPAN_COEF},
     .aux = {"attn"},
     .optional_aux = {"weights", "support"},
     .layer_bytes = sizeof(Block),
     .init = block_lab_init,
     .forward = block_lab_forward},
};
const int lab_layer_count = sizeof lab_layers / sizeof lab_layers[0];

const LabLayer *lab_layer_find(const char *name) {
    for (int i = 0; i < lab_layer_count; i++)
        if (strcmp(lab_layers[i].name, name) == 0) return &lab_layers[i];
    return NULL;
}

/* ------------------------------------------------------------------------------------------ */
/* Configs                                                                                    */

static int key_index(const LabLayer *layer, const char *name, size_t name_len) {
    for (int k = 0; k < LAB_MAX_KEYS && layer->keys[k].name; k++)
        if (strlen(layer->keys[k].name) == name_len &&
            strncmp(layer->keys[k].name, name, name_len) == 0)
            return k;
    return -1;
}

void lab_config_init(LabConfig *config, const LabLayer *layer) {
    *config = (LabConfig){.layer = layer};
    for (int k = 0; k < LAB_MAX_KEYS && layer->keys[k].name; k++)
        config->values[k] = layer->keys[k].value;
}

/* The index of `name` (name_len bytes) among the '|'-separated names of choices, or -1. */
static int choice_index(const char *choices, const char *name, size_t name_len) {
    int index = 0;
    for (const char *p = choices;; index++) {
        size_t len = strcspn(p, "|");
        if (len == name_len && strncmp(p, name, len) == 0) return index;
        if (p[len] == '\0') return -1;
        p += len + 1;
    }
}

/* The name at `index` among the names of choices, into out ("?" if there is none). */
static const char *choice_name(const char *choices, int index, char *out, size_t out_len) {
    const char *p = choices;
    for (int i = 0; i < index && p; i++)
        if ((p = strchr(p, '|'))) p++;
    snprintf(out, out_len, "%.*s", p ? (int)strcspn(p, "|") : 1, p ? p : "?");
    return out;
}

/* text as a value of the key's type into *value: 0, or -1 with the reason in err. */
static int parse_value(const LabLayer *layer, const LabKey *key, const char *text, double *value,
                       char *err, size_t err_len) {
    char *end = NULL;
    errno = 0;
    if (key->type == LAB_CHOICE) {
        int index = choice_index(key->choices, text, strlen(text));
        if (index < 0) {
            snprintf(err, err_len, "%s: %s='%s' is not one of %s", layer->name, key->name, text,
                     key->choices);
            return -1;
        }
        *value = index;
        return 0;
    }
    if (key->type == LAB_REAL) {
        *value = strtod(text, &end);
        if (end == text || *end != '\0' || !isfinite(*value) || text[0] == ' ') {
            snprintf(err, err_len, "%s: %s='%s' is not a number", layer->name, key->name, text);
            return -1;
        }
        return 0;
    }
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == ' ' || errno == ERANGE || v < INT_MIN ||
        v > INT_MAX) {
        snprintf(err, err_len, "%s: %s='%s' is not an integer", layer->name, key->name, text);
        return -1;
    }
    if (key->type == LAB_BOOL && v != 0 && v != 1) {
        snprintf(err, err_len, "%s: %s='%s' must be 0 or 1", layer->name, key->name, text);
        return -1;
    }
    *value = (double)v;
    return 0;
}

/* "in out bias": the row's key names, for messages. */
static const char *key_names(const LabLayer *layer, char *out, size_t out_len) {
    size_t used = 0;
    out[0] = '\0';
    for (int k = 0; k < LAB_MAX_KEYS && layer->keys[k].name && used < out_len; k++)
        used += (size_t)snprintf(out + used, out_len - used, k ? " %s" : "%s", layer->keys[k].name);
    return out;
}

int lab_config_set(LabConfig *config, const char *assignment, char *err, size_t err_len) {
    const LabLayer *layer = config->layer;
    const char *equals = strchr(assignment, '=');
    size_t name_len = equals ? (size_t)(equals - assignment) : strlen(assignment);
    int k = key_index(layer, assignment, name_len);
    char names[512];
    if (k < 0) {
        snprintf(err, err_len, "%s has no key '%.*s' (its keys: %s)", layer->name, (int)name_len,
                 assignment, key_names(layer, names, sizeof names));
        return -1;
    }
    const LabKey *key = &layer->keys[k];
    if (!equals || equals[1] == '\0') {
        snprintf(err, err_len, "%s: key '%s' needs a value (--set %s=VALUE)", layer->name,
                 key->name, key->name);
        return -1;
    }
    if (config->given[k]) {
        snprintf(err, err_len, "%s: key '%s' is set twice", layer->name, key->name);
        return -1;
    }
    if (parse_value(layer, key, equals + 1, &config->values[k], err, err_len) != 0) return -1;
    config->given[k] = 1;
    return 0;
}

int lab_config_resolve(LabConfig *config, const LabInput *input, char *err, size_t err_len) {
    const LabLayer *layer = config->layer;
    for (int k = 0; k < LAB_MAX_KEYS && layer->keys[k].name; k++) {
        const LabKey *key = &layer->keys[k];
        if (config->given[k] || key->source == LAB_DEFAULT) continue;
        const Tensor *x = input->x;
        int axis = key->source == LAB_FROM_LAST_AXIS ? (x ? x->ndim - 1 : -1) : 1;
        if (key->source == LAB_REQUIRED || !x || axis < 0 || axis >= x->ndim) {
            snprintf(err, err_len, "%s: key '%s' is required (--set %s=N)", layer->name, key->name,
                     key->name);
            return -1;
        }
        config->values[k] = x->shape[axis];
    }
    return 0;
}

static int key_or_fail(const LabConfig *config, const char *key) {
    int k = key_index(config->layer, key, strlen(key));
    if (k < 0) cpool_fail("lab: layer '%s' has no key '%s'", config->layer->name, key);
    return k;
}

int lab_int(const LabConfig *config, const char *key) {
    return (int)config->values[key_or_fail(config, key)];
}

double lab_real(const LabConfig *config, const char *key) {
    return config->values[key_or_fail(config, key)];
}

void lab_config_string(const LabConfig *config, char *out, size_t out_len) {
    const LabLayer *layer = config->layer;
    size_t used = 0;
    out[0] = '\0';
    for (int k = 0; k < LAB_MAX_KEYS && layer->keys[k].name && used < out_len; k++) {
        double v = config->values[k];
        char text[32];
        if (layer->keys[k].type == LAB_CHOICE) {
            choice_name(layer->keys[k].choices, (int)v, text, sizeof text);
        } else {
            snprintf(text, sizeof text, "%.15g", v);
            if (strtod(text, NULL) != v) snprintf(text, sizeof text, "%.17g", v);
        }
        used += (size_t)snprintf(out + used, out_len - used, "%s%s=%s", k ? " " : "",
                                 layer->keys[k].name, text);
    }
}

const char *lab_choice_name(const LabKey *key, int index, char *out, size_t out_len) {
    return choice_name(key->choices, index, out, out_len);
}
