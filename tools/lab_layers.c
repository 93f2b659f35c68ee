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

static void attention_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    AttentionConfig config = {
        .dim = lab_int(c, "dim"), .heads = lab_int(c, "heads"), .causal = lab_int(c, "causal")};
    attention_init(layer, config, params, "", rng);
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

static void block_lab_init(void *layer, const LabConfig *c, ParamSet *params, Rng *rng) {
    BlockConfig config = {.dim = lab_int(c, "dim"),
                          .heads = lab_int(c, "heads"),
                          .ffn_hidden = lab_int(c, "ffn_hidden"),
                          .causal = lab_int(c, "causal")};
    block_init(layer, config, params, "", rng);
}
static Tensor *block_lab_forward(Tape *tape, const void *layer, const LabInput *in, Tensor **aux) {
    return block_forward(tape, layer, in->x, &aux[0]); /* aux[0]: "attn" */
}

/* ------------------------------------------------------------------------------------------ */
/* The table                                                                                  */

#define KEY_DIM_FROM_X                                                                             \
    { "dim", LAB_INT, 0, LAB_FROM_LAST_AXIS, "features (the model width)", NULL }
#define KEY_HEADS                                                                                  \
    { "heads", LAB_INT, 1, LAB_DEFAULT, "attention heads (must divide dim)", NULL }
#define KEY_CAUSAL                                                                                 \
    { "causal", LAB_BOOL, 0, LAB_DEFAULT, "1: token i attends to j <= i only", NULL }
#define KEY_CONV_IN                                                                                \
    { "in", LAB_INT, 0, LAB_FROM_AXIS_1, "input channels", NULL }
#define KEY_CONV_OUT                                                                               \
    { "out", LAB_INT, 0, LAB_REQUIRED, "output channels", NULL }
#define KEY_KERNEL                                                                                 \
    { "kernel", LAB_INT, 0, LAB_REQUIRED, "kernel size", NULL }
#define KEY_STRIDE                                                                                 \
    { "stride", LAB_INT, 1, LAB_DEFAULT, "step between windows", NULL }
#define KEY_PADDING                                                                                \
    { "padding", LAB_INT, 0, LAB_DEFAULT, "zeros added on each side", NULL }
#define KEY_GROUPS                                                                                 \
    { "groups", LAB_INT, 1, LAB_DEFAULT, "channel groups (divide in and out)", NULL }
#define KEY_BIAS                                                                                   \
    { "bias", LAB_BOOL, 1, LAB_DEFAULT, "1: add a bias", NULL }

const LabLayer lab_layers[] = {
    {.name = "linear",
     .summary = "y = x W^T + b over the last axis (nn.Linear)",
     .input = "x (..., in)",
     .min_ndim = 1,
     .max_ndim = TENSOR_MAX_DIMS,
     .keys = {{"in", LAB_INT, 0, LAB_FROM_LAST_AXIS, "input features", NULL},
              {"out", LAB_INT, 0, LAB_REQUIRED, "output features", NULL},
              KEY_BIAS},
     .layer_bytes = sizeof(Linear),
     .init = linear_lab_init,
     .forward = linear_lab_forward},
    {.name = "layernorm",
     .summary = "normalise the last axis, then scale and shift (nn.LayerNorm)",
     .input = "x (..., dim)",
     .min_ndim = 1,
     .max_ndim = TENSOR_MAX_DIMS,
     .keys = {KEY_DIM_FROM_X, {"eps", LAB_REAL, 1e-5, LAB_DEFAULT, "added to the variance", NULL}},
     .layer_bytes = sizeof(LayerNorm),
     .init = layernorm_lab_init,
     .forward = layernorm_lab_forward},
    {.name = "embedding",
     .summary = "look up one row per token id (nn.Embedding); no grad_in.npy",
     .input = "ids (...) integers in [0, vocab)",
     .integer_input = 1,
     .min_ndim = 0,
     .max_ndim = TENSOR_MAX_DIMS - 1,
     .keys = {{"vocab", LAB_INT, 0, LAB_REQUIRED, "rows of the table", NULL},
              {"dim", LAB_INT, 0, LAB_REQUIRED, "features per row", NULL}},
     .layer_bytes = sizeof(Embedding),
     .init = embedding_lab_init,
     .forward = embedding_lab_forward},
    {.name = "attention",
     .summary = "multi-head self-attention, qkv and proj linears; writes attn.npy",
     .input = "x (B, N, dim)",
     .min_ndim = 3,
     .max_ndim = 3,
     .keys = {KEY_DIM_FROM_X, KEY_HEADS, KEY_CAUSAL},
     .aux = {"attn"},
     .layer_bytes = sizeof(Attention),
     .init = attention_lab_init,
     .forward = attention_lab_forward},
    {.name = "ffn",
     .summary = "fc2(GELU(fc1(x))), the transformer's feed-forward net",
     .input = "x (..., dim)",
     .min_ndim = 1,
     .max_ndim = TENSOR_MAX_DIMS,
     .keys = {KEY_DIM_FROM_X, {"hidden", LAB_INT, 0, LAB_DEFAULT, "hidden features", "4*dim"}},
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
              {"causal", LAB_BOOL, 0, LAB_DEFAULT, "1: output i sees inputs <= i (padding=0)",
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
    {.name = "block",
     .summary = "pre-norm transformer block: x + attn(ln1(x)), then + ffn(ln2(x)); writes attn.npy",
     .input = "x (B, N, dim)",
     .min_ndim = 3,
     .max_ndim = 3,
     .keys = {KEY_DIM_FROM_X,
              KEY_HEADS,
              {"ffn_hidden", LAB_INT, 0, LAB_DEFAULT, "hidden features of the ffn", "4*dim"},
              KEY_CAUSAL},
     .aux = {"attn"},
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

/* text as a value of the key's type into *value: 0, or -1 with the reason in err. */
static int parse_value(const LabLayer *layer, const LabKey *key, const char *text, double *value,
                       char *err, size_t err_len) {
    char *end = NULL;
    errno = 0;
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
    char names[256];
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
        char number[32];
        snprintf(number, sizeof number, "%.15g", v);
        if (strtod(number, NULL) != v) snprintf(number, sizeof number, "%.17g", v);
        used += (size_t)snprintf(out + used, out_len - used, "%s%s=%s", k ? " " : "",
                                 layer->keys[k].name, number);
    }
}
