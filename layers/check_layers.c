/* check_layers.c - gradient checks for every layer: the input AND every parameter.
 *
 * Each case builds the layer in a fresh ParamSet, jitters every parameter (so LayerNorm's
 * ones/zeros are not a special point), draws an input in [-1, 1) and hands gradcheck the input(s)
 * followed by all the layer's parameter tensors, in creation order. gradcheck perturbs their data
 * in place and restores it; the forward reads the same tensors through the layer struct. The
 * ParamSet is freed with params_free (gradcheck_free is only for the owned inputs).
 *
 * The step. Every layer is a composition of smooth ops (matmul, add, slice/permute, softmax,
 * layernorm, GELU, convolution; the causal mask is structural, not a kink). Central differences
 * err by ~h^2/6 |f'''| (truncation) plus ~1e-16 |L| / h (rounding). For these layers the rounding
 * term dominates at gradcheck's default h = 1e-6, so the element checks use h = 1e-5, near the
 * optimum eps^(1/3) for double, which lowers the measured errors about tenfold. (The block's
 * whole-model direction check keeps h = 1e-6; see check_block.)
 *
 * Tolerances, from 30 seeds (`cpool gradcheck NAME --seed S`):
 *   - linear, embedding_layer, conv1d_layer, conv2d_layer: L is affine in each single element
 *     (the layers are bilinear in input and weight), so there is no truncation error at all;
 *     measured <= 3e-10, tolerance 1e-8.
 *   - layernorm_layer: inputs with rows spread by construction (check_input_spread_rows); measured
 *     <= 2e-10, tolerance 1e-8.
 *   - attention, ffn, block: measured <= 1.6e-8, tolerance 1e-7. The worst cases are pure
 *     rounding (absolute errors ~2e-11) on inputs whose whole gradient is ~1e-3: x_q of a causal
 *     cross-attention whose first query sees one key (its softmax is constant), fc1 of a
 *     dim-1 FFN. Relative to that small scale the noise floor reaches ~1e-8.
 *
 * The layer names "layernorm" and "embedding" belong to the ops, hence the _layer suffix, as for
 * conv1d_layer. */
#include "attention.h"
#include "block.h"
#include "conv.h"
#include "embedding.h"
#include "ffn.h"
#include "check_helpers.h"
#include "gradcheck.h"
#include "layernorm.h"
#include "linear.h"
#include "ops.h"
#include "util.h"

enum { MAX_INPUTS = 16 };
static const double STEP = 1e-5; /* h for the element checks; see the top of the file */

/* inputs = xs[0..n_x-1] then every parameter; returns the count. */
static int gather_inputs(Tensor **inputs, Tensor *const *xs, int n_x, const ParamSet *params) {
    if (n_x + params->count > MAX_INPUTS)
        cpool_fail("check_layers: %d inputs and %d parameters, at most %d", n_x, params->count,
                   MAX_INPUTS);
    int n = 0;
    for (int i = 0; i < n_x; i++) inputs[n++] = xs[i];
    for (int p = 0; p < params->count; p++) inputs[n++] = params->items[p].tensor;
    return n;
}

/* The common tail of every case: jitter, check everything, free the inputs and the ParamSet. */
static void check_and_free(GradcheckFn fn, void *layer, Tensor **xs, int n_x, ParamSet *params,
                           Rng *rng, GradcheckStats *stats) {
    Tensor *inputs[MAX_INPUTS];
    check_jitter_params(params, rng);
    int n = gather_inputs(inputs, xs, n_x, params);
    gradcheck(fn, layer, inputs, n, &(GradcheckOptions){.step = STEP, .seed = rng_u64(rng)}, stats,
              NULL);
    gradcheck_free(xs, n_x);
    params_free(params);
}

static Tensor *input(Rng *rng, int ndim, const int *shape) {
    return gradcheck_input(rng, ndim, shape, -1, 1);
}

/* ---- linear: 1-d, 2-d (no reshape) and 3-d inputs; with and without bias; size 1 ---- */

static Tensor *linear_fn(Tape *tape, Tensor *const *in, void *layer) {
    return linear_forward(tape, layer, in[0]);
}

static void check_linear(Rng *rng, GradcheckStats *stats) {
    const struct {
        LinearConfig config;
        int ndim, shape[3]; /* x's shape; its last entry is config.in */
    } cases[] = {
        {{3, 4, 1}, 2, {2, 3}},    {{5, 3, 1}, 3, {2, 3, 5}}, {{1, 1, 1}, 1, {1}},
        {{4, 7, 0}, 3, {1, 1, 4}}, {{7, 5, 1}, 1, {7}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ParamSet params = {0};
        Linear layer;
        linear_init(&layer, cases[k].config, &params, "fc", rng);
        Tensor *x = input(rng, cases[k].ndim, cases[k].shape);
        check_and_free(linear_fn, &layer, &x, 1, &params, rng, stats);
    }
}

/* ---- layernorm_layer: dims 1 (output = bias), odd, with leading dims ---- */

static Tensor *layernorm_fn(Tape *tape, Tensor *const *in, void *layer) {
    return layernorm_forward(tape, layer, in[0]);
}

static void check_layernorm_layer(Rng *rng, GradcheckStats *stats) {
    const struct {
        int dim, ndim, shape[3];
    } cases[] = {{5, 2, {3, 5}}, {1, 2, {2, 1}}, {4, 3, {2, 3, 4}}, {7, 1, {7}}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ParamSet params = {0};
        LayerNorm layer;
        layernorm_init(&layer, (LayerNormConfig){cases[k].dim, 0}, &params, "ln");
        Tensor *x = check_input_spread_rows(rng, cases[k].ndim, cases[k].shape);
        check_and_free(layernorm_fn, &layer, &x, 1, &params, rng, stats);
    }
}

/* ---- embedding_layer: tokens (B, N) plus learned positions (N, D), as a model uses them ---- */

typedef struct EmbeddingCase {
    Embedding tokens, positions;
    int batch, length;
    int ids[16];
} EmbeddingCase;

static Tensor *embedding_fn(Tape *tape, Tensor *const *in, void *context) {
    (void)in; /* the two tables, read through the layers */
    EmbeddingCase *c = context;
    Tensor *tok = embedding_forward(tape, &c->tokens, c->ids, 2, (int[]){c->batch, c->length});
    return op_add(tape, tok, embedding_positions(tape, &c->positions, c->length)); /* (B, N, D) */
}

/* vocab < B N, so ids repeat and their gradients must accumulate. */
static void check_embedding_layer(Rng *rng, GradcheckStats *stats) {
    const int cases[][5] = {
        /* vocab dim max_len B N */ {3, 4, 5, 2, 4}, {1, 1, 1, 1, 1}, {5, 3, 6, 3, 5}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *c = cases[k];
        ParamSet params = {0};
        EmbeddingCase e = {.batch = c[3], .length = c[4]};
        embedding_init(&e.tokens, (EmbeddingConfig){c[0], c[1]}, &params, "tok", rng);
        embedding_init(&e.positions, (EmbeddingConfig){c[2], c[1]}, &params, "pos", rng);
        for (int i = 0; i < e.batch * e.length; i++) e.ids[i] = rng_int(rng, c[0]);
        check_and_free(embedding_fn, &e, NULL, 0, &params, rng, stats);
    }
}

/* ---- attention: self and cross, causal and not, heads = 1, N = 1, B = 1, odd dims ---- */

typedef struct AttentionCase {
    Attention layer;
    int cross; /* 1: x_q = in[0], x_kv = in[1]; 0: both in[0] */
} AttentionCase;

static Tensor *attention_fn(Tape *tape, Tensor *const *in, void *context) {
    AttentionCase *c = context;
    return attention_forward(tape, &c->layer, in[0], in[c->cross], NULL);
}

static void check_attention(Rng *rng, GradcheckStats *stats) {
    const int cases[][6] = {
        /* dim heads causal cross B N */
        {4, 2, 0, 0, 2, 3}, {6, 3, 1, 0, 1, 5}, {3, 1, 1, 0, 2, 1}, {5, 1, 0, 0, 1, 4},
        {4, 2, 1, 1, 2, 3}, {6, 2, 0, 1, 1, 4}, {3, 3, 1, 1, 1, 2},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *c = cases[k];
        ParamSet params = {0};
        AttentionCase a = {.cross = c[3]};
        attention_init(&a.layer, (AttentionConfig){c[0], c[1], c[2]}, &params, "attn", rng);
        int shape[3] = {c[4], c[5], c[0]};
        Tensor *xs[2] = {input(rng, 3, shape), input(rng, 3, shape)};
        check_and_free(attention_fn, &a, xs, 1 + a.cross, &params, rng, stats);
        if (!a.cross) tensor_free(xs[1]);
    }
}

/* ---- ffn ---- */

static Tensor *ffn_fn(Tape *tape, Tensor *const *in, void *layer) {
    return ffn_forward(tape, layer, in[0]);
}

static void check_ffn(Rng *rng, GradcheckStats *stats) {
    const struct {
        FfnConfig config;
        int ndim, shape[3];
    } cases[] = {{{3, 5}, 2, {2, 3}}, {{1, 1}, 3, {1, 1, 1}}, {{4, 7}, 3, {2, 3, 4}}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ParamSet params = {0};
        Ffn layer;
        ffn_init(&layer, cases[k].config, &params, "ffn", rng);
        Tensor *x = input(rng, cases[k].ndim, cases[k].shape);
        check_and_free(ffn_fn, &layer, &x, 1, &params, rng, stats);
    }
}

/* ---- conv1d_layer, conv2d_layer ---- */

static Tensor *conv1d_fn(Tape *tape, Tensor *const *in, void *layer) {
    return conv1d_forward(tape, layer, in[0]);
}

static Tensor *conv2d_fn(Tape *tape, Tensor *const *in, void *layer) {
    return conv2d_forward(tape, layer, in[0]);
}

/* Padding, stride 2, groups (incl. depthwise), causal, no bias, a 1-wide kernel, B = 1. */
static void check_conv1d_layer(Rng *rng, GradcheckStats *stats) {
    const struct {
        ConvConfig config; /* in out kernel stride padding groups bias causal */
        int batch, length;
    } cases[] = {
        {{2, 3, 3, 1, 1, 1, 1, 0}, 2, 5}, {{4, 2, 2, 2, 0, 2, 1, 0}, 1, 7},
        {{3, 3, 3, 1, 0, 3, 1, 1}, 2, 4}, {{2, 4, 4, 1, 0, 1, 0, 1}, 1, 3},
        {{3, 1, 1, 0, 0, 0, 1, 0}, 1, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ParamSet params = {0};
        Conv layer;
        conv1d_init(&layer, cases[k].config, &params, "conv", rng);
        int shape[3] = {cases[k].batch, cases[k].config.in, cases[k].length};
        Tensor *x = input(rng, 3, shape);
        check_and_free(conv1d_fn, &layer, &x, 1, &params, rng, stats);
    }
}

static void check_conv2d_layer(Rng *rng, GradcheckStats *stats) {
    const struct {
        ConvConfig config; /* in out kernel stride padding groups bias causal */
        int batch, height, width;
    } cases[] = {
        {{2, 2, 3, 1, 1, 1, 1, 0}, 1, 4, 5},
        {{4, 6, 2, 2, 0, 2, 1, 0}, 2, 5, 5},
        {{3, 3, 3, 2, 1, 3, 0, 0}, 1, 5, 3},
        {{1, 1, 1, 1, 0, 1, 1, 0}, 1, 1, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ParamSet params = {0};
        Conv layer;
        conv2d_init(&layer, cases[k].config, &params, "conv", rng);
        int shape[4] = {cases[k].batch, cases[k].config.in, cases[k].height, cases[k].width};
        Tensor *x = input(rng, 4, shape);
        check_and_free(conv2d_fn, &layer, &x, 1, &params, rng, stats);
    }
}

/* ---- block: every parameter element by element on small blocks, then the whole model along
 * one random direction on a larger one ---- */

static Tensor *block_fn(Tape *tape, Tensor *const *in, void *layer) {
    return block_forward(tape, layer, in[0], NULL);
}

/* Small blocks element by element (every parameter and the input), then the whole-model check:
 * one random direction v over the input and all ~3300 numbers of a realistic block (dim 16,
 * 4 heads, B 2, N 8). Along v the step is h |v| ~ 57 h and the third derivative grows as |v|^3,
 * so the direction check keeps the default h = 1e-6 (measured ~1e-9, against ~1e-8 at h = 3e-6
 * and ~1e-7 at h = 1e-5). */
static void check_block(Rng *rng, GradcheckStats *stats) {
    const int cases[][6] = {
        /* dim heads ffn_hidden causal B N   (ffn_hidden 0: 4 dim) */
        {4, 2, 0, 1, 2, 3}, {3, 1, 5, 0, 1, 1},  {6, 3, 7, 1, 1, 4},
        {5, 1, 0, 0, 2, 2}, {16, 4, 0, 1, 2, 8}, {16, 2, 0, 0, 2, 8},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *c = cases[k];
        ParamSet params = {0};
        Block layer;
        block_init(&layer, (BlockConfig){c[0], c[1], c[2], c[3]}, &params, "block", rng);
        Tensor *x = check_input_spread_rows(rng, 3, (int[]){c[4], c[5], c[0]});
        if (c[0] < 16) {
            check_and_free(block_fn, &layer, &x, 1, &params, rng, stats);
            continue;
        }
        Tensor *inputs[MAX_INPUTS];
        check_jitter_params(&params, rng);
        int n = gather_inputs(inputs, &x, 1, &params);
        gradcheck_direction(block_fn, &layer, inputs, n, &(GradcheckOptions){.seed = rng_u64(rng)},
                            stats);
        gradcheck_free(&x, 1);
        params_free(&params);
    }
}

const OpCheck check_table_layers[] = {
    /* Tolerances: measured worst over 30 seeds, and why, at the top of the file. */
    {"linear", check_linear, 1e-8},                   /* affine per element: <= 1e-10 */
    {"layernorm_layer", check_layernorm_layer, 1e-8}, /* spread rows: <= 2e-10 */
    {"embedding_layer", check_embedding_layer, 1e-8}, /* affine per element: <= 3e-10 */
    {"attention", check_attention, 1e-7},             /* noise floor, small gradients: <= 1.6e-8 */
    {"ffn", check_ffn, 1e-7},                         /* the same: <= 8e-9 */
    {"conv1d_layer", check_conv1d_layer, 1e-8},       /* affine per element: <= 1e-10 */
    {"conv2d_layer", check_conv2d_layer, 1e-8},       /* affine per element: <= 1e-10 */
    {"block", check_block, 1e-7},                     /* elements <= 1.2e-8, direction ~1e-9 */
    {0},
};
