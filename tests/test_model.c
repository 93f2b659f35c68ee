/* test_model.c - the three models (model.h): the documented defaults, every parameter's name and
 * shape in creation order, parameter counts against a hand formula, output shapes, what the aux
 * hands back, a charlm that never peeks at later bytes whatever its blocks, the span penalty and
 * clamp, FLOPs counted by hand, the same seed giving the same model, and every bad config and
 * bad input refused with one line. */
#include <stdlib.h>

#include "test_util.h"

#include "model.h"
#include "ops.h"

/* Each test gets a fresh tape and a seeded generator; the Model is heap-allocated (~30 KB). */
typedef struct Fixture {
    Model model;
    Tape *tape;
    Rng rng;
} Fixture;

static int setup(void **state) {
    Fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->tape = tape_create();
    rng_seed(&f->rng, 777);
    *state = f;
    return 0;
}

static int teardown(void **state) {
    Fixture *f = *state;
    tape_free(f->tape);
    model_free(&f->model); /* a zeroed or freed model frees nothing */
    free(f);
    return 0;
}

/* A tiny charlm: dim 8, heads 2, seq_len 6, pool none, one layer. */
static ModelConfig tiny_charlm(void) {
    ModelConfig c = model_default_config(MODEL_CHARLM);
    c.dim = 8, c.heads = 2, c.layers = 1, c.seq_len = 6, c.pool = MODEL_POOL_NONE;
    return c;
}

static ModelConfig tiny_vit(int patch, ModelPool pool) {
    ModelConfig c = model_default_config(MODEL_VIT);
    c.dim = 8, c.heads = 2, c.layers = 1, c.patch = patch, c.pool = pool;
    return c;
}

static ModelConfig tiny_cnn(ModelPool pool) {
    ModelConfig c = model_default_config(MODEL_CNN);
    c.channels = 2, c.pool = pool;
    return c;
}

/* Owned images (B, 1, 28, 28) of U(0, 1) pixels. */
static Tensor *random_images(Rng *rng, int B) {
    Tensor *x = tensor_create(4, (int[]){B, 1, 28, 28}, 0);
    for (long i = 0; i < x->size; i++) x->data[i] = (real)rng_uniform(rng);
    return x;
}

static void assert_shape(const Tensor *t, int ndim, const int *shape, const char *what) {
    char got[64];
    int same = t->ndim == ndim;
    for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
    if (!same) fail_msg("%s: got shape %s", what, TENSOR_SHAPE_STR(t, got));
}

/* Parameter `index` is `name`, of the given shape. */
static void assert_param(const ParamSet *params, int index, const char *name, int ndim,
                         const int *shape) {
    if (index >= params->count)
        fail_msg("expected '%s' at %d, but there are %d parameters", name, index, params->count);
    if (strcmp(params->items[index].name, name) != 0)
        fail_msg("parameter %d is '%s', expected '%s'", index, params->items[index].name, name);
    assert_shape(params->items[index].tensor, ndim, shape, name);
}

/* ---- defaults -------------------------------------------------------------------------- */

static void default_configs_are_the_documented_ones(void **state) {
    (void)state;
    ModelConfig c = model_default_config(MODEL_CHARLM);
    assert_int_equal(c.kind, MODEL_CHARLM);
    assert_int_equal(c.dim, 128), assert_int_equal(c.heads, 4), assert_int_equal(c.layers, 2);
    assert_int_equal(c.seq_len, 256), assert_int_equal(c.tie, 1);
    assert_int_equal(c.pool, MODEL_POOL_CONTEXTPOOL);
    assert_int_equal(c.variant.pool_feeds, BLOCK_POOL_FEEDS_KV);
    assert_true(c.variant.cp.s_min == 0.5 && c.variant.cp.s_max == 8 && c.variant.cp.s_fixed == 2);
    assert_int_equal(c.variant.cp.causal, 1);
    c = model_default_config(MODEL_VIT);
    assert_int_equal(c.dim, 64), assert_int_equal(c.heads, 4), assert_int_equal(c.layers, 2);
    assert_int_equal(c.patch, 4), assert_int_equal(c.pool, MODEL_POOL_CONTEXTPOOL);
    assert_true(c.variant.cp.s_max == 8);
    c = model_default_config(MODEL_CNN);
    assert_int_equal(c.channels, 16), assert_int_equal(c.pool, MODEL_POOL_CONTEXTPOOL);
    assert_true(c.variant.cp.s_min == 0.5 && c.variant.cp.s_max == 2);
    char err[256];
    for (int kind = MODEL_CHARLM; kind <= MODEL_CNN; kind++) {
        ModelConfig d = model_default_config((ModelKind)kind);
        if (model_check_config(&d, err, sizeof err) != 0) fail_msg("default config: %s", err);
    }
}

static void kind_and_pool_names(void **state) {
    (void)state;
    assert_string_equal(model_kind_name(MODEL_CHARLM), "charlm");
    assert_string_equal(model_kind_name(MODEL_VIT), "vit");
    assert_string_equal(model_kind_name(MODEL_CNN), "cnn");
    assert_string_equal(model_pool_name(MODEL_POOL_NONE), "none");
    assert_string_equal(model_pool_name(MODEL_POOL_AVG), "avg");
    assert_string_equal(model_pool_name(MODEL_POOL_CONTEXTPOOL), "contextpool");
}

/* ---- parameters ------------------------------------------------------------------------ */

/* The twelve parameters of block `layer` from index `first` (thirteen with a span: span_heads
 * is then the heads, the length of attn.span.z; else 0). Returns the next index. */
static int assert_block_params(const ParamSet *p, int first, int layer, int dim, int hidden,
                               int span_heads) {
    static const char *const names[] = {
        "ln1.weight",     "ln1.bias",       "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "attn.span.z",    "ln2.weight",      "ln2.bias",      "ffn.fc1.weight",
        "ffn.fc1.bias",   "ffn.fc2.weight", "ffn.fc2.bias"};
    const int shapes[13][2] = {{dim},    {dim},         {3 * dim, dim}, {3 * dim}, {dim, dim},
                               {dim},    {span_heads},  {dim},          {dim},     {hidden, dim},
                               {hidden}, {dim, hidden}, {dim}};
    const int ndims[13] = {1, 1, 2, 1, 2, 1, 1, 1, 1, 2, 1, 2, 1};
    int index = first;
    for (int k = 0; k < 13; k++) {
        if (k == 6 && !span_heads) continue;
        char name[PARAM_NAME_MAX];
        snprintf(name, sizeof name, "blocks.%d.%s", layer, names[k]);
        assert_param(p, index++, name, ndims[k], shapes[k]);
    }
    return index;
}

/* A 1-d pool's predictor (hidden, dim, kernel), (hidden), (2, hidden, 1), (2); 2-d: 3x3, 1x1. */
static int assert_pool_params(const ParamSet *p, int first, const char *prefix, int dim, int hidden,
                              int kernel, int two_d) {
    char name[PARAM_NAME_MAX];
    snprintf(name, sizeof name, "%s.pred.0.weight", prefix);
    if (two_d)
        assert_param(p, first, name, 4, (int[]){hidden, dim, 3, 3});
    else
        assert_param(p, first, name, 3, (int[]){hidden, dim, kernel});
    snprintf(name, sizeof name, "%s.pred.0.bias", prefix);
    assert_param(p, first + 1, name, 1, (int[]){hidden});
    snprintf(name, sizeof name, "%s.pred.2.weight", prefix);
    if (two_d)
        assert_param(p, first + 2, name, 4, (int[]){2, hidden, 1, 1});
    else
        assert_param(p, first + 2, name, 3, (int[]){2, hidden, 1});
    snprintf(name, sizeof name, "%s.pred.2.bias", prefix);
    assert_param(p, first + 3, name, 1, (int[]){2});
    return first + 4;
}

/* tok, pos, the blocks (each with its pool last), ln_f, head when untied. */
static void charlm_parameters_in_creation_order(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    c.dim = 12, c.heads = 3, c.layers = 2, c.ffn_hidden = 20, c.seq_len = 9, c.tie = 0;
    c.pool = MODEL_POOL_CONTEXTPOOL;
    c.variant.cp.kernel = 5;
    model_init(&f->model, &c, &f->rng);
    const ParamSet *p = &f->model.params;
    assert_param(p, 0, "tok.weight", 2, (int[]){256, 12});
    assert_param(p, 1, "pos.weight", 2, (int[]){9, 12});
    int next = 2;
    for (int layer = 0; layer < 2; layer++) {
        next = assert_block_params(p, next, layer, 12, 20, 0);
        char prefix[32];
        snprintf(prefix, sizeof prefix, "blocks.%d.pool", layer);
        next = assert_pool_params(p, next, prefix, 12, 8, 5, 0); /* hidden max(8, 12/4) */
    }
    assert_param(p, next, "ln_f.weight", 1, (int[]){12});
    assert_param(p, next + 1, "ln_f.bias", 1, (int[]){12});
    assert_param(p, next + 2, "head.weight", 2, (int[]){256, 12});
    assert_int_equal(p->count, next + 3);
    assert_null(params_find(p, "head.bias"));
}

/* tie = 1: the token table is the head; there is no head.weight (nor head.bias). */
static void tied_charlm_has_no_head(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    c.variant.attn = (AttentionReach){.span = 1, .span_max = 4};
    model_init(&f->model, &c, &f->rng);
    const ParamSet *p = &f->model.params;
    assert_param(p, 0, "tok.weight", 2, (int[]){256, 8});
    int next = assert_block_params(p, 2, 0, 8, 32, 2); /* ffn 4 * dim, span z per head */
    assert_param(p, next, "ln_f.weight", 1, (int[]){8});
    assert_param(p, next + 1, "ln_f.bias", 1, (int[]){8});
    assert_int_equal(p->count, next + 2);
    assert_null(params_find(p, "head.weight"));
    assert_null(params_find(p, "head.bias"));
}

/* patch, pos (one row per token of the G x G grid), the blocks with a 2-d pool, ln_f, head. */
static void vit_parameters_in_creation_order(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_vit(7, MODEL_POOL_CONTEXTPOOL);
    c.variant.cp.hidden = 5;
    model_init(&f->model, &c, &f->rng);
    const ParamSet *p = &f->model.params;
    assert_param(p, 0, "patch.weight", 4, (int[]){8, 1, 7, 7});
    assert_param(p, 1, "patch.bias", 1, (int[]){8});
    assert_param(p, 2, "pos.weight", 2, (int[]){16, 8});
    int next = assert_block_params(p, 3, 0, 8, 32, 0);
    next = assert_pool_params(p, next, "blocks.0.pool", 8, 5, 3, 1);
    assert_param(p, next, "ln_f.weight", 1, (int[]){8});
    assert_param(p, next + 1, "ln_f.bias", 1, (int[]){8});
    assert_param(p, next + 2, "head.weight", 2, (int[]){10, 8});
    assert_param(p, next + 3, "head.bias", 1, (int[]){10});
    assert_int_equal(p->count, next + 4);
    assert_true(f->model.blocks[0].variant.grid_h == 4 && f->model.blocks[0].variant.grid_w == 4);
    model_free(&f->model);
    c = tiny_vit(14, MODEL_POOL_NONE);
    model_init(&f->model, &c, &f->rng);
    assert_param(&f->model.params, 2, "pos.weight", 2, (int[]){4, 8});
    assert_int_equal(f->model.params.count, 3 + 12 + 4);
}

/* conv.0, [pool.0], conv.1, [pool.1], conv.2, head: widths c, 2c, 4c. */
static void cnn_parameters_in_creation_order(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_cnn(MODEL_POOL_CONTEXTPOOL);
    c.channels = 3;
    model_init(&f->model, &c, &f->rng);
    const ParamSet *p = &f->model.params;
    assert_param(p, 0, "conv.0.weight", 4, (int[]){3, 1, 3, 3});
    assert_param(p, 1, "conv.0.bias", 1, (int[]){3});
    int next = assert_pool_params(p, 2, "pool.0", 3, 8, 3, 1);
    assert_param(p, next, "conv.1.weight", 4, (int[]){6, 3, 3, 3});
    assert_param(p, next + 1, "conv.1.bias", 1, (int[]){6});
    next = assert_pool_params(p, next + 2, "pool.1", 6, 8, 3, 1);
    assert_param(p, next, "conv.2.weight", 4, (int[]){12, 6, 3, 3});
    assert_param(p, next + 1, "conv.2.bias", 1, (int[]){12});
    assert_param(p, next + 2, "head.weight", 2, (int[]){10, 12});
    assert_param(p, next + 3, "head.bias", 1, (int[]){10});
    assert_int_equal(p->count, next + 4);
    assert_int_equal(f->model.pools[0].config.stride, 2);
    assert_true(f->model.pools[0].config.s_max == 2);
    model_free(&f->model);
    c.pool = MODEL_POOL_AVG;
    model_init(&f->model, &c, &f->rng);
    assert_int_equal(f->model.params.count, 8);
    assert_param(&f->model.params, 2, "conv.1.weight", 4, (int[]){6, 3, 3, 3});
}

/* charlm: 256 d + seq_len d + layers (block + pool) + 2 d (+ 256 d untied), with
 * block = 2 d (ln1) + 3 d^2 + 3 d (qkv) + d^2 + d (proj) + 2 d (ln2) + 2 d h + h + d (ffn), and
 * pool = p d k + p + 2 p + 2. cnn: three convolutions 9 c_in c_out + c_out, a head 10 (4c) + 10,
 * and each pool 9 c_k p + p + 2 p + 2. */
static long charlm_count(int d, int seq_len, int layers, int h, int p, int k, int tie) {
    long block = 2L * d + 3L * d * d + 3 * d + (long)d * d + d + 2 * d + 2L * d * h + h + d;
    long pool = p > 0 ? (long)p * d * k + p + 2 * p + 2 : 0;
    return 256L * d + (long)seq_len * d + layers * (block + pool) + 2 * d + (tie ? 0 : 256L * d);
}

static long cnn_count(int c, int p) {
    long convs = (9L * 1 * c + c) + (9L * c * 2 * c + 2 * c) + (9L * 2 * c * 4 * c + 4 * c);
    long pools = p > 0 ? (9L * c * p + p + 2 * p + 2) + (9L * 2 * c * p + p + 2 * p + 2) : 0;
    return convs + 10L * 4 * c + 10 + pools;
}

static void parameter_counts_match_the_hand_formula(void **state) {
    Fixture *f = *state;
    static const int cases[][7] = {
        /* dim layers seq_len ffn pool tie kernel */
        {8, 1, 6, 0, 0, 1, 3},  {8, 2, 6, 0, 1, 0, 3},  {16, 3, 10, 24, 1, 1, 4},
        {12, 1, 4, 0, 0, 0, 3}, {40, 2, 5, 0, 1, 0, 3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *cc = cases[k];
        ModelConfig c = tiny_charlm();
        c.dim = cc[0], c.layers = cc[1], c.seq_len = cc[2], c.ffn_hidden = cc[3];
        c.pool = cc[4] ? MODEL_POOL_CONTEXTPOOL : MODEL_POOL_NONE, c.tie = cc[5];
        c.variant.cp.kernel = cc[6];
        model_init(&f->model, &c, &f->rng);
        int hidden = cc[3] ? cc[3] : 4 * cc[0], pred = cc[0] / 4 > 8 ? cc[0] / 4 : 8;
        long want = charlm_count(cc[0], cc[2], cc[1], hidden, cc[4] ? pred : 0, cc[6], cc[5]);
        if (params_count_elements(&f->model.params) != want)
            fail_msg("charlm case %zu: %ld parameters, expected %ld", k,
                     params_count_elements(&f->model.params), want);
        model_free(&f->model);
    }
    for (int channels = 1; channels <= 5; channels += 2)
        for (int pooled = 0; pooled < 2; pooled++) {
            ModelConfig c = tiny_cnn(pooled ? MODEL_POOL_CONTEXTPOOL : MODEL_POOL_AVG);
            c.channels = channels;
            model_init(&f->model, &c, &f->rng);
            long want = cnn_count(channels, pooled ? 8 : 0);
            if (params_count_elements(&f->model.params) != want)
                fail_msg("cnn c=%d pooled=%d: %ld parameters, expected %ld", channels, pooled,
                         params_count_elements(&f->model.params), want);
            model_free(&f->model);
        }
}

/* The same config and seed give the same parameters, bit for bit; another seed does not. */
static void same_seed_gives_the_same_parameters(void **state) {
    (void)state;
    ModelConfig configs[3] = {tiny_charlm(), tiny_vit(7, MODEL_POOL_CONTEXTPOOL),
                              tiny_cnn(MODEL_POOL_CONTEXTPOOL)};
    configs[0].pool = MODEL_POOL_CONTEXTPOOL;
    static Model a, b, other;
    for (int k = 0; k < 3; k++) {
        Rng r1, r2, r3;
        rng_seed(&r1, 5), rng_seed(&r2, 5), rng_seed(&r3, 6);
        model_init(&a, &configs[k], &r1);
        model_init(&b, &configs[k], &r2);
        model_init(&other, &configs[k], &r3);
        assert_int_equal(a.params.count, b.params.count);
        int differs = 0;
        for (int p = 0; p < a.params.count; p++) {
            const Tensor *x = a.params.items[p].tensor, *y = b.params.items[p].tensor;
            if (memcmp(x->data, y->data, (size_t)x->size * sizeof(real)) != 0)
                fail_msg("%s differs between two models of seed 5", a.params.items[p].name);
            const Tensor *z = other.params.items[p].tensor;
            differs |= memcmp(x->data, z->data, (size_t)x->size * sizeof(real)) != 0;
        }
        assert_true(differs);
        model_free(&a), model_free(&b), model_free(&other);
    }
}

/* The embedding tables start as N(0, 0.02^2): their standard deviation is near 0.02. */
static void embedding_tables_start_small(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    c.dim = 32, c.seq_len = 64;
    model_init(&f->model, &c, &f->rng);
    const Tensor *tables[2] = {f->model.tok.weight, f->model.pos.weight};
    for (int t = 0; t < 2; t++) {
        double sum2 = 0;
        for (long i = 0; i < tables[t]->size; i++) sum2 += tables[t]->data[i] * tables[t]->data[i];
        double std = sqrt(sum2 / (double)tables[t]->size);
        if (!(std > 0.018 && std < 0.022)) fail_msg("table %d: std %g, expected ~0.02", t, std);
    }
}

/* ---- forward --------------------------------------------------------------------------- */

static void output_shapes(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    c.pool = MODEL_POOL_CONTEXTPOOL, c.tie = 0;
    model_init(&f->model, &c, &f->rng);
    int tokens[3 * 6] = {0};
    for (int N = 1; N <= 6; N++) {
        ModelInput in = {.tokens = tokens, .batch = 3, .len = N};
        assert_shape(model_forward(f->tape, &f->model, &in, NULL), 3, (int[]){3, N, 256},
                     "charlm logits");
    }
    model_free(&f->model);
    ModelConfig configs[5] = {tiny_vit(7, MODEL_POOL_NONE), tiny_vit(14, MODEL_POOL_CONTEXTPOOL),
                              tiny_vit(28, MODEL_POOL_CONTEXTPOOL), tiny_cnn(MODEL_POOL_AVG),
                              tiny_cnn(MODEL_POOL_CONTEXTPOOL)};
    Tensor *x = random_images(&f->rng, 2);
    for (int k = 0; k < 5; k++) {
        model_init(&f->model, &configs[k], &f->rng);
        ModelInput in = {.images = x, .batch = 2};
        assert_shape(model_forward(f->tape, &f->model, &in, NULL), 2, (int[]){2, 10},
                     model_kind_name(configs[k].kind));
        model_free(&f->model);
        tape_reset(f->tape);
    }
    tensor_free(x);
}

/* aux: per block the attention probabilities and the pool's w and s; per CNN pool, its own. */
static void aux_holds_every_layers_pool_and_attention(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    c.layers = 2, c.pool = MODEL_POOL_CONTEXTPOOL;
    model_init(&f->model, &c, &f->rng);
    int tokens[2 * 5] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    ModelAux aux;
    ModelInput in = {.tokens = tokens, .batch = 2, .len = 5};
    model_forward(f->tape, &f->model, &in, &aux);
    assert_int_equal(aux.count, 2);
    for (int l = 0; l < 2; l++) {
        assert_shape(aux.layers[l].probs, 4, (int[]){2, 2, 5, 5}, "probs");
        assert_shape(aux.layers[l].pool.support, 2, (int[]){2, 5}, "support");
        assert_shape(aux.layers[l].pool.weights, 2, (int[]){2, 5}, "weights");
    }
    model_free(&f->model);
    ModelConfig cnn = tiny_cnn(MODEL_POOL_CONTEXTPOOL);
    model_init(&f->model, &cnn, &f->rng);
    Tensor *x = random_images(&f->rng, 3);
    ModelInput images = {.images = x, .batch = 3};
    model_forward(f->tape, &f->model, &images, &aux);
    assert_int_equal(aux.count, 2);
    assert_shape(aux.layers[0].pool.weights, 3, (int[]){3, 28, 28}, "pool.0 weights");
    assert_shape(aux.layers[0].pool.support, 3, (int[]){3, 14, 14}, "pool.0 support");
    assert_shape(aux.layers[1].pool.support, 3, (int[]){3, 7, 7}, "pool.1 support");
    model_free(&f->model);
    cnn.pool = MODEL_POOL_AVG;
    model_init(&f->model, &cnn, &f->rng);
    model_forward(f->tape, &f->model, &images, &aux);
    assert_int_equal(aux.count, 0);
    tensor_free(x);
}

/* For every block variant: changing the byte at t leaves every logit before t bit for bit the
 * same (and changes the logits at t). */
static void charlm_never_peeks_at_later_bytes(void **state) {
    Fixture *f = *state;
    enum { B = 2, N = 7 };
    typedef struct Variant {
        const char *name;
        ModelPool pool;
        BlockPoolFeeds feeds;
        int uniform, fixed, window, span, tie;
    } Variant;
    static const Variant variants[] = {
        {"none", MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 0, 1},
        {"kv", MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 0, 0},
        {"qkv", MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_QKV, 0, 0, 0, 0, 1},
        {"stream", MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_STREAM, 0, 0, 0, 0, 0},
        {"uniform weights", MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 1, 0, 0, 0, 1},
        {"fixed size", MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 0, 1, 0, 0, 0},
        {"window", MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 2, 0, 1},
        {"span", MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 1, 0},
    };
    int tokens[B * N], changed[B * N];
    for (int i = 0; i < B * N; i++) tokens[i] = rng_int(&f->rng, 256);
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        const Variant *w = &variants[v];
        ModelConfig c = tiny_charlm();
        c.layers = 2, c.seq_len = N, c.pool = w->pool, c.tie = w->tie;
        c.variant.pool_feeds = w->feeds;
        c.variant.cp.weights_uniform = w->uniform, c.variant.cp.size_fixed = w->fixed;
        c.variant.cp.s_max = 3;
        c.variant.attn.window = w->window;
        if (w->span) c.variant.attn = (AttentionReach){.span = 1, .span_max = 3, .span_ramp = 2};
        model_init(&f->model, &c, &f->rng);
        ModelInput in = {.tokens = tokens, .batch = B, .len = N};
        Tensor *before = model_forward(f->tape, &f->model, &in, NULL); /* (B, N, 256) */
        for (int t = 0; t < N; t++) {
            memcpy(changed, tokens, sizeof tokens);
            for (int b = 0; b < B; b++) changed[b * N + t] = (tokens[b * N + t] + 1 + b) % 256;
            ModelInput in2 = {.tokens = changed, .batch = B, .len = N};
            Tensor *after = model_forward(f->tape, &f->model, &in2, NULL);
            for (int b = 0; b < B; b++) {
                size_t row = (size_t)256 * sizeof(real);
                const real *x = before->data + (long)b * N * 256,
                           *y = after->data + (long)b * N * 256;
                if (memcmp(x, y, (size_t)t * row) != 0)
                    fail_msg("%s: changing byte %d changed a logit before it", w->name, t);
                if (memcmp(x + (long)t * 256, y + (long)t * 256, row) == 0)
                    fail_msg("%s: changing byte %d left its own logits unchanged", w->name, t);
            }
        }
        model_free(&f->model);
        tape_reset(f->tape);
    }
}

/* Training releases each intermediate's gradient once its record's backward has run
 * (tape->release_grads, tape.h). For a charlm with ContextPool and a ViT with contextpool2d, a
 * step that releases them gives every parameter the same gradient, bit for bit, as one that
 * keeps them, and needs a smaller arena. */
static void released_gradients_change_no_parameter_gradient(void **state) {
    Fixture *f = *state;
    enum { B = 2, N = 6 };
    int tokens[B * N], targets[B * N];
    for (int i = 0; i < B * N; i++)
        tokens[i] = rng_int(&f->rng, 256), targets[i] = rng_int(&f->rng, 256);
    Tensor *images = random_images(&f->rng, B);
    int labels[B] = {3, 7};
    for (int kind = 0; kind < 2; kind++) {
        ModelConfig c = kind ? tiny_vit(7, MODEL_POOL_CONTEXTPOOL) : tiny_charlm();
        if (!kind) c.layers = 2, c.pool = MODEL_POOL_CONTEXTPOOL;
        model_init(&f->model, &c, &f->rng);
        ParamSet *params = &f->model.params;
        ModelInput in = {.tokens = tokens, .batch = B, .len = N, .images = images};
        real *kept[64];
        size_t peak[2];
        assert_true(params->count <= 64);
        for (int release = 0; release < 2; release++) {
            Tape *tape = tape_create();
            tape->release_grads = release;
            Tensor *logits = model_forward(tape, &f->model, &in, NULL);
            tape_backward(tape, model_loss(tape, &f->model, logits, kind ? labels : targets));
            peak[release] = tape->arena.peak_bytes;
            for (int k = 0; k < params->count; k++) {
                const Tensor *p = params->items[k].tensor;
                size_t bytes = (size_t)p->size * sizeof(real);
                if (!release) {
                    kept[k] = malloc(bytes);
                    memcpy(kept[k], p->grad, bytes);
                } else {
                    assert_memory_equal(kept[k], p->grad, bytes);
                    free(kept[k]);
                }
            }
            params_zero_grad(params);
            tape_free(tape);
        }
        assert_true(peak[1] < peak[0]);
        model_free(&f->model);
    }
    tensor_free(images);
}

/* The loss is the mean cross-entropy, plus span_coef L mean_h(z) per block with a span. */
static void loss_adds_the_span_penalty_of_every_block(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    c.layers = 3;
    c.variant.attn = (AttentionReach){.span = 1, .span_max = 4, .span_ramp = 2, .span_coef = 0.01};
    model_init(&f->model, &c, &f->rng);
    f->model.blocks[1].attn.span_z->data[0] = (real)0.25; /* block 1: mean z = 0.375 */
    int tokens[6] = {5, 6, 7, 8, 9, 10}, targets[6] = {6, 7, 8, 9, 10, 11};
    ModelInput in = {.tokens = tokens, .batch = 1, .len = 6};
    Tensor *logits = model_forward(f->tape, &f->model, &in, NULL);
    double ce = op_cross_entropy(f->tape, logits, targets, -1)->data[0];
    double loss = model_loss(f->tape, &f->model, logits, targets)->data[0];
    double penalty = 0.01 * 4 * (0.5 + 0.375 + 0.5);
    double want[1] = {ce + penalty};
    assert_close(want, &(real){(real)loss}, 1, 1e-6, "loss with spans");
    model_free(&f->model);
    c.variant.attn = (AttentionReach){0};
    model_init(&f->model, &c, &f->rng);
    logits = model_forward(f->tape, &f->model, &in, NULL);
    assert_true(model_loss(f->tape, &f->model, logits, targets)->data[0] ==
                op_cross_entropy(f->tape, logits, targets, -1)->data[0]);
}

/* model_after_step puts every block's span z back into [0, 1]. */
static void after_step_clamps_every_span(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    c.layers = 2;
    c.variant.attn = (AttentionReach){.span = 1, .span_max = 4};
    model_init(&f->model, &c, &f->rng);
    f->model.blocks[0].attn.span_z->data[0] = (real)1.5;
    f->model.blocks[1].attn.span_z->data[1] = (real)-0.25;
    f->model.blocks[1].attn.span_z->data[0] = (real)0.75;
    model_after_step(&f->model);
    assert_true(f->model.blocks[0].attn.span_z->data[0] == 1);
    assert_true(f->model.blocks[1].attn.span_z->data[1] == 0);
    assert_true(f->model.blocks[1].attn.span_z->data[0] == (real)0.75);
    model_free(&f->model);
    ModelConfig cnn = tiny_cnn(MODEL_POOL_AVG); /* nothing to clamp: a no-op */
    model_init(&f->model, &cnn, &f->rng);
    model_after_step(&f->model);
}

/* ---- cost ------------------------------------------------------------------------------ */

/* Counted by hand, 2 m n k per product: a tiny charlm (d 8, seq_len 6, ffn 32) per token:
 *   qkv 2*8*24 = 384, proj 2*8*8 = 128, ffn 2*8*32 + 2*32*8 = 1024, attention q.k and p.v over
 *   the causal triangle, 1+2+...+6 = 21 pairs, 21/6 = 3.5 keys per token: 2*2*3.5*8 = 112;
 *   1648 per block; head 2*8*256 = 4096.
 * With the pool (hidden 8, kernel 3, radius ceil(3*8) = 24 -> the 6 positions a causal token sees):
 *   predictor 2*8*8*3 + 2*8*2 = 416, banded sum 2*6*8 = 96: 512 more per block.
 * cnn c = 2, per image: each 3x3 convolution 2*9*c_in*c_out*pixels = 2*9*1*2*784 =
 *   2*9*2*4*196 = 2*9*4*8*49 = 28224; 2x2 means one add per input value, 784*2 + 196*4 = 2352;
 *   head 2*8*10 = 160. With ContextPool (hidden 8, radius ceil(3*2) = 6: 13x13 taps) instead:
 *   predictor at every input pixel 784*(2*9*2*8 + 2*8*2) + 196*(2*9*4*8 + 2*8*2) = 370048,
 *   banded sum at every output 196*2*169*2 + 49*2*169*4 = 198744.
 * vit patch 7 (16 tokens), d 8, no pool: per token the patch 2*49*8 = 784 and a block with
 *   attention over 16 tokens 384 + 128 + 1024 + 2*2*16*8 = 2048; times 16, plus the head 160. */
static void forward_flops_match_a_hand_count(void **state) {
    (void)state;
    ModelConfig c = tiny_charlm();
    assert_true(model_forward_flops(&c) == 1648 + 4096);
    c.layers = 2;
    assert_true(model_forward_flops(&c) == 2 * 1648 + 4096);
    c.pool = MODEL_POOL_CONTEXTPOOL;
    assert_true(model_forward_flops(&c) == 2 * (1648 + 512) + 4096);
    ModelConfig span = tiny_charlm(); /* the span's chain computes all 6 keys: 2*2*6*8 = 192 */
    span.variant.attn.span = 1;
    assert_true(model_forward_flops(&span) == 384 + 128 + 1024 + 192 + 4096);
    ModelConfig cnn = tiny_cnn(MODEL_POOL_AVG);
    assert_true(model_forward_flops(&cnn) == 3 * 28224 + 2352 + 160);
    cnn.pool = MODEL_POOL_CONTEXTPOOL;
    assert_true(model_forward_flops(&cnn) == 3 * 28224 + 370048 + 198744 + 160);
    ModelConfig vit = tiny_vit(7, MODEL_POOL_NONE);
    assert_true(model_forward_flops(&vit) == 16 * (784 + 2048) + 160);
}

/* ---- bad configs and inputs ------------------------------------------------------------ */

/* model_check_config's line; model_init fails with the same, leaving the Model untouched. */
static void assert_bad_config(const ModelConfig *c, const char *message) {
    char err[512] = "";
    if (model_check_config(c, err, sizeof err) == 0) fail_msg("accepted; expected '%s'", message);
    if (strcmp(err, message) != 0) fail_msg("error '%s', expected '%s'", err, message);
    assert_null(strchr(err, '\n'));
    static Model model, copy;
    memset(&model, 0x5a, sizeof model);
    memcpy(&copy, &model, sizeof model);
    Rng rng;
    rng_seed(&rng, 1);
    EXPECT_FAIL(model_init(&model, c, &rng), message);
    assert_memory_equal(&model, &copy, sizeof model);
}

static void bad_configs_fail_with_one_line(void **state) {
    (void)state;
    ModelConfig c = tiny_charlm();
    c.heads = 3;
    assert_bad_config(&c, "model: heads=3 does not divide dim=8");
    c = tiny_charlm(), c.dim = 0;
    assert_bad_config(&c, "model: heads=2 does not divide dim=0");
    c = tiny_charlm(), c.layers = 0;
    assert_bad_config(&c, "model: layers=0, expected 1..16");
    c = tiny_charlm(), c.layers = 17;
    assert_bad_config(&c, "model: layers=17, expected 1..16");
    c = tiny_charlm(), c.seq_len = 0;
    assert_bad_config(&c, "model: seq_len=0 must be positive");
    c = tiny_charlm(), c.pool = MODEL_POOL_AVG;
    assert_bad_config(&c, "model: pool=avg: a charlm's blocks take none or contextpool");
    c = tiny_vit(5, MODEL_POOL_NONE);
    assert_bad_config(&c, "model: patch=5 must divide the image side 28");
    c = tiny_vit(0, MODEL_POOL_NONE);
    assert_bad_config(&c, "model: patch=0 must divide the image side 28");
    c = tiny_vit(7, MODEL_POOL_AVG);
    assert_bad_config(&c, "model: pool=avg: a vit's blocks take none or contextpool");
    c = tiny_cnn(MODEL_POOL_NONE);
    assert_bad_config(&c, "model: pool=none: the cnn pools with avg or contextpool");
    c = tiny_cnn(MODEL_POOL_AVG), c.channels = 0;
    assert_bad_config(&c, "model: channels=0 must be positive");
    c = tiny_charlm(), c.kind = (ModelKind)7;
    assert_bad_config(&c, "model: kind=7 is not charlm, vit or cnn");
    /* The layers' own keys, found by building: the pool's sizes, window, span, ffn. */
    c = tiny_charlm(), c.pool = MODEL_POOL_CONTEXTPOOL;
    c.variant.cp.s_min = 4, c.variant.cp.s_max = 2;
    assert_bad_config(&c, "contextpool: s_max=2 must be in [s_min, 1e6], s_min=4");
    c = tiny_vit(7, MODEL_POOL_CONTEXTPOOL), c.variant.cp.s_min = -1;
    assert_bad_config(&c, "contextpool2d: s_min=-1 must be positive");
    c = tiny_cnn(MODEL_POOL_CONTEXTPOOL), c.variant.cp.s_min = 3;
    assert_bad_config(&c, "contextpool2d: s_max=2 must be in [s_min, 1e6], s_min=3");
    c = tiny_charlm(), c.pool = MODEL_POOL_CONTEXTPOOL, c.variant.cp.radius = -1;
    assert_bad_config(&c, "contextpool: radius=-1 must be >= 0 (0: ceil(3 s_max))");
    c = tiny_vit(7, MODEL_POOL_CONTEXTPOOL), c.variant.cp.kernel = 5;
    assert_bad_config(&c, "contextpool2d: kernel=5, the 2-d predictor is always 3x3 (use 0 or 3)");
    c = tiny_charlm(), c.variant.attn.window = -1;
    assert_bad_config(&c, "attention: window=-1 must be >= 0 (0 means full attention)");
    c = tiny_charlm(), c.variant.attn = (AttentionReach){.span = 1, .span_max = -2};
    assert_bad_config(&c, "attention: span_max=-2 must be >= 0 (0 means 256)");
    c = tiny_charlm(), c.ffn_hidden = -1;
    assert_bad_config(&c, "block: ffn_hidden=-1 must be positive (0 means 4*dim)");
}

/* The checks pass good configs through without touching err. */
static void good_configs_pass_the_check(void **state) {
    (void)state;
    ModelConfig configs[] = {tiny_charlm(), tiny_vit(14, MODEL_POOL_CONTEXTPOOL),
                             tiny_cnn(MODEL_POOL_AVG), tiny_cnn(MODEL_POOL_CONTEXTPOOL)};
    for (size_t k = 0; k < sizeof configs / sizeof configs[0]; k++) {
        char err[64] = "untouched";
        assert_int_equal(model_check_config(&configs[k], err, sizeof err), 0);
        assert_string_equal(err, "untouched");
    }
}

/* Images of the wrong shape, or none, for an image model named kind. */
static void assert_bad_images(Fixture *f, ModelConfig config, const char *kind) {
    model_init(&f->model, &config, &f->rng);
    Tensor *narrow = tensor_create(4, (int[]){2, 1, 28, 27}, 0);
    Tensor *rgb = tensor_create(4, (int[]){2, 3, 28, 28}, 0);
    Tensor *flat = tensor_create(2, (int[]){2, 784}, 0);
    char expected[128];
    ModelInput bad = {.images = narrow, .batch = 2};
    snprintf(expected, sizeof expected, "%s: expected images (B, 1, 28, 28), got (2, 1, 28, 27)",
             kind);
    EXPECT_FAIL(model_forward(f->tape, &f->model, &bad, NULL), expected);
    bad.images = rgb;
    snprintf(expected, sizeof expected, "%s: expected images (B, 1, 28, 28), got (2, 3, 28, 28)",
             kind);
    EXPECT_FAIL(model_forward(f->tape, &f->model, &bad, NULL), expected);
    bad.images = flat;
    snprintf(expected, sizeof expected, "%s: expected images (B, 1, 28, 28), got (2, 784)", kind);
    EXPECT_FAIL(model_forward(f->tape, &f->model, &bad, NULL), expected);
    bad.images = NULL;
    snprintf(expected, sizeof expected, "%s: expected images (B, 1, 28, 28), got none", kind);
    EXPECT_FAIL(model_forward(f->tape, &f->model, &bad, NULL), expected);
    tensor_free(narrow), tensor_free(rgb), tensor_free(flat);
    model_free(&f->model);
    tape_reset(f->tape);
}

static void bad_inputs_fail_with_one_line(void **state) {
    Fixture *f = *state;
    ModelConfig c = tiny_charlm();
    model_init(&f->model, &c, &f->rng);
    int tokens[2 * 7] = {0};
    ModelInput in = {.tokens = tokens, .batch = 2, .len = 7};
    EXPECT_FAIL(model_forward(f->tape, &f->model, &in, NULL),
                "charlm: expected tokens (B, N) with 1 <= N <= seq_len=6, got (2, 7)");
    in.len = 0;
    EXPECT_FAIL(model_forward(f->tape, &f->model, &in, NULL),
                "charlm: expected tokens (B, N) with 1 <= N <= seq_len=6, got (2, 0)");
    in.len = 3, in.batch = 0;
    EXPECT_FAIL(model_forward(f->tape, &f->model, &in, NULL),
                "charlm: expected tokens (B, N) with 1 <= N <= seq_len=6, got (0, 3)");
    ModelInput none = {.batch = 1, .len = 3};
    EXPECT_FAIL(model_forward(f->tape, &f->model, &none, NULL), "charlm: expected tokens (B, N)");
    tokens[4] = 256;
    in.batch = 2;
    EXPECT_FAIL(model_forward(f->tape, &f->model, &in, NULL),
                "op_embedding: id 256 at position 4 is out of range [0, 256)");
    tape_reset(f->tape);
    model_free(&f->model);

    assert_bad_images(f, tiny_vit(7, MODEL_POOL_NONE), "vit");
    assert_bad_images(f, tiny_cnn(MODEL_POOL_AVG), "cnn");
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(default_configs_are_the_documented_ones),
        TEST(kind_and_pool_names),
        TEST(charlm_parameters_in_creation_order),
        TEST(tied_charlm_has_no_head),
        TEST(vit_parameters_in_creation_order),
        TEST(cnn_parameters_in_creation_order),
        TEST(parameter_counts_match_the_hand_formula),
        TEST(same_seed_gives_the_same_parameters),
        TEST(embedding_tables_start_small),
        TEST(output_shapes),
        TEST(aux_holds_every_layers_pool_and_attention),
        TEST(charlm_never_peeks_at_later_bytes),
        TEST(released_gradients_change_no_parameter_gradient),
        TEST(loss_adds_the_span_penalty_of_every_block),
        TEST(after_step_clamps_every_span),
        TEST(forward_flops_match_a_hand_count),
        TEST(bad_configs_fail_with_one_line),
        TEST(good_configs_pass_the_check),
        TEST(bad_inputs_fail_with_one_line),
    };
    return cmocka_run_group_tests_name("model (" REAL_NAME ")", tests, NULL, NULL);
}
