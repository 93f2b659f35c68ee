/* test_block_pool.c - the block's ContextPool variants and the attention baselines (issue 4):
 * parameter names, each pool_feeds against its formula composed by hand, no peeking inside a
 * causal block, the local window's band, the adaptive span's mask and loss by hand, the plain
 * block unchanged, and every bad config through EXPECT_FAIL. */
#include <stdlib.h>

#include "test_util.h"
#include "test_layer_fixture.h"

#include "attention.h"
#include "block.h"
#include "ops.h"

/* Hand-computed values are exact in double; float32 rounds each op. */
#ifdef CPOOL_DOUBLE
static const double TOL = 1e-12;
#else
static const double TOL = 1e-5;
#endif

static int setup(void **state) {
    return layer_fixture_setup(state, 4242);
}

/* An owned (B, N, D) tensor of U(-1, 1) values. */
static Tensor *random_tokens(Rng *rng, int B, int N, int D) {
    Tensor *x = tensor_create(3, (int[]){B, N, D}, 0);
    for (long i = 0; i < x->size; i++) x->data[i] = (real)rng_range(rng, -1, 1);
    return x;
}

/* Adds U(-0.3, 0.3) to every parameter (LayerNorm's ones and zeros included). */
static void jitter(ParamSet *params, Rng *rng) {
    for (int p = 0; p < params->count; p++) {
        Tensor *t = params->items[p].tensor;
        for (long i = 0; i < t->size; i++) t->data[i] += (real)rng_range(rng, -0.3, 0.3);
    }
}

static void assert_bitwise_equal(const Tensor *expected, const Tensor *got, const char *what) {
    assert_true(tensor_same_shape(expected, got));
    for (long i = 0; i < got->size; i++)
        if (memcmp(&expected->data[i], &got->data[i], sizeof(real)) != 0)
            fail_msg("%s: element %ld: expected %.17g, got %.17g", what, i,
                     (double)expected->data[i], (double)got->data[i]);
}

static void assert_param(const ParamSet *params, int index, const char *name, int ndim,
                         const int *shape) {
    assert_true(index < params->count);
    if (strcmp(params->items[index].name, name) != 0)
        fail_msg("parameter %d is '%s', expected '%s'", index, params->items[index].name, name);
    const Tensor *t = params->items[index].tensor;
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
}

static BlockVariant pooled(BlockPoolFeeds feeds) {
    return (BlockVariant){.pool = BLOCK_POOL_CONTEXTPOOL, .pool_feeds = feeds};
}

/* ---- parameters ----------------------------------------------------------------------- */

/* The plain block's twelve, then pool.pred.0 (hidden, dim, kernel) and pool.pred.2 (2, hidden, 1)
 * - PyTorch's nn.Sequential(conv, GELU, conv) names - with the ContextPool defaults filled in. */
static void pool_parameters_are_named_pool_pred_after_the_block(void **state) {
    Fixture *f = *state;
    Block block;
    block_init_variant(&block, (BlockConfig){.dim = 8, .heads = 2, .causal = 1},
                       pooled(BLOCK_POOL_FEEDS_KV), &f->params, "blocks.0", &f->rng);
    assert_int_equal(f->params.count, 16);
    assert_param(&f->params, 0, "blocks.0.ln1.weight", 1, (int[]){8});
    assert_param(&f->params, 11, "blocks.0.ffn.fc2.bias", 1, (int[]){8});
    assert_param(&f->params, 12, "blocks.0.pool.pred.0.weight", 3, (int[]){8, 8, 3});
    assert_param(&f->params, 13, "blocks.0.pool.pred.0.bias", 1, (int[]){8});
    assert_param(&f->params, 14, "blocks.0.pool.pred.2.weight", 3, (int[]){2, 8, 1});
    assert_param(&f->params, 15, "blocks.0.pool.pred.2.bias", 1, (int[]){2});
    /* The pool inherits dim and causal; the resolved config is kept. */
    assert_int_equal(block.pool.config.dim, 8);
    assert_int_equal(block.pool.config.causal, 1);
    assert_true(block.variant.cp.s_min == 0.5 && block.variant.cp.s_max == 8);
    assert_int_equal(block.variant.cp.radius, 24);
}

/* On a grid the predictor is 2-d: pool.pred.0 (hidden, dim, 3, 3), pool.pred.2 (2, hidden, 1, 1).
 */
static void grid_pool_parameters_are_4d(void **state) {
    Fixture *f = *state;
    Block block;
    BlockVariant variant = pooled(BLOCK_POOL_FEEDS_KV);
    variant.grid_h = 2, variant.grid_w = 3;
    variant.cp.hidden = 5;
    block_init_variant(&block, (BlockConfig){.dim = 4, .heads = 1}, variant, &f->params, "b",
                       &f->rng);
    assert_param(&f->params, 12, "b.pool.pred.0.weight", 4, (int[]){5, 4, 3, 3});
    assert_param(&f->params, 14, "b.pool.pred.2.weight", 4, (int[]){2, 5, 1, 1});
}

/* With a span, "attn.span.z" (heads) follows attn.proj.bias, initialised to 0.5; the reach's
 * zeros become the defaults L = 256, R = 32, coefficient 2e-6. */
static void span_adds_attn_span_z_after_proj(void **state) {
    Fixture *f = *state;
    Block block;
    BlockVariant variant = {.attn = {.span = 1}};
    block_init_variant(&block, (BlockConfig){.dim = 6, .heads = 3}, variant, &f->params, "b",
                       &f->rng);
    assert_int_equal(f->params.count, 13);
    assert_param(&f->params, 5, "b.attn.proj.bias", 1, (int[]){6});
    assert_param(&f->params, 6, "b.attn.span.z", 1, (int[]){3});
    for (int h = 0; h < 3; h++) assert_true(block.attn.span_z->data[h] == (real)0.5);
    assert_int_equal(block.attn.reach.span_max, 256);
    assert_int_equal(block.attn.reach.span_ramp, 32);
    assert_true(block.attn.reach.span_coef == 2e-6);
}

/* The pool is created last, so from the same seed every other parameter draws the same numbers
 * as in the plain block: the variants start from the same transformer. */
static void adding_a_pool_keeps_the_other_parameters_initialisation(void **state) {
    Fixture *f = *state;
    ParamSet plain = {0};
    Block a, b;
    Rng rng_a, rng_b;
    rng_seed(&rng_a, 7);
    rng_seed(&rng_b, 7);
    block_init(&a, (BlockConfig){.dim = 4, .heads = 2}, &plain, "b", &rng_a);
    block_init_variant(&b, (BlockConfig){.dim = 4, .heads = 2}, pooled(BLOCK_POOL_FEEDS_QKV),
                       &f->params, "b", &rng_b);
    for (int p = 0; p < plain.count; p++) {
        assert_string_equal(plain.items[p].name, f->params.items[p].name);
        assert_bitwise_equal(plain.items[p].tensor, f->params.items[p].tensor, plain.items[p].name);
    }
    params_free(&plain);
}

/* ---- pool = none and each pool_feeds against its formula ------------------------------- */

/* pool = none is the plain pre-norm block, op for op: x + attn(ln1 x), then + ffn(ln2 x). */
static void pool_none_is_the_plain_block_exactly(void **state) {
    Fixture *f = *state;
    Block block;
    block_init_variant(&block, (BlockConfig){.dim = 6, .heads = 3, .causal = 1}, (BlockVariant){0},
                       &f->params, "b", &f->rng);
    assert_int_equal(f->params.count, 12);
    jitter(&f->params, &f->rng);
    Tensor *x = random_tokens(&f->rng, 2, 5, 6);
    Tensor *h = layernorm_forward(f->tape, &block.ln1, x);
    Tensor *probs, *want_probs;
    Tensor *mid = op_add(f->tape, x, attention_forward(f->tape, &block.attn, h, h, &want_probs));
    Tensor *want =
        op_add(f->tape, mid,
               ffn_forward(f->tape, &block.ffn, layernorm_forward(f->tape, &block.ln2, mid)));
    BlockAux aux;
    Tensor *y = block_forward_aux(f->tape, &block, x, &aux);
    assert_bitwise_equal(want, y, "block y");
    assert_bitwise_equal(want_probs, aux.probs, "block probs");
    assert_null(aux.pool.weights);
    assert_null(aux.pool.support);
    y = block_forward(f->tape, &block, x, &probs);
    assert_bitwise_equal(want, y, "block_forward y");
    assert_bitwise_equal(want_probs, probs, "block_forward probs");
    tensor_free(x);
}

/* The block with pool_feeds = feeds, and the same formula written out with its sublayers. */
static void check_feeds_formula(Fixture *f, BlockPoolFeeds feeds, int composed) {
    Block block;
    BlockVariant variant = pooled(feeds);
    variant.cp = (ContextPoolConfig){.hidden = 3, .s_max = 3, .composed = composed};
    block_init_variant(&block, (BlockConfig){.dim = 4, .heads = 2, .causal = 1}, variant,
                       &f->params, "b", &f->rng);
    jitter(&f->params, &f->rng);
    Tensor *x = random_tokens(&f->rng, 2, 6, 4);
    Tape *tape = f->tape;
    ContextPoolAux want_aux;
    Tensor *h = layernorm_forward(tape, &block.ln1, x), *mid, *want;
    if (feeds == BLOCK_POOL_FEEDS_STREAM) {
        mid = op_add(tape, x, attention_forward(tape, &block.attn, h, h, NULL));
    } else {
        Tensor *p = contextpool_forward(tape, &block.pool, h, &want_aux);
        Tensor *q = feeds == BLOCK_POOL_FEEDS_KV ? h : p;
        mid = op_add(tape, x, attention_forward(tape, &block.attn, q, p, NULL));
    }
    want =
        op_add(tape, mid, ffn_forward(tape, &block.ffn, layernorm_forward(tape, &block.ln2, mid)));
    if (feeds == BLOCK_POOL_FEEDS_STREAM)
        want = contextpool_forward(tape, &block.pool, want, &want_aux);
    BlockAux aux;
    Tensor *y = block_forward_aux(tape, &block, x, &aux);
    assert_bitwise_equal(want, y, "y");
    assert_bitwise_equal(want_aux.weights, aux.pool.weights, "pool weights");
    assert_bitwise_equal(want_aux.support, aux.pool.support, "pool support");
    assert_int_equal(aux.pool.support->ndim, 2); /* (B, N) */
    tensor_free(x);
    params_free(&f->params);
    f->params = (ParamSet){0};
}

/* kv: x + attn(q = h, kv = pool(h)); qkv: x + attn(pool(h)); stream: pool(x) after the block. */
static void each_pool_feeds_is_its_formula(void **state) {
    Fixture *f = *state;
    for (int composed = 0; composed < 2; composed++) {
        check_feeds_formula(f, BLOCK_POOL_FEEDS_KV, composed);
        check_feeds_formula(f, BLOCK_POOL_FEEDS_QKV, composed);
        check_feeds_formula(f, BLOCK_POOL_FEEDS_STREAM, composed);
    }
}

/* On a (2, 3) grid the pool sees the tokens as an image: (B, N, dim) -> (B, dim, 2, 3),
 * contextpool2d, and back; aux holds (B, 2, 3) maps. */
static void grid_pool_is_contextpool2d_on_the_token_image(void **state) {
    Fixture *f = *state;
    Block block;
    BlockVariant variant = pooled(BLOCK_POOL_FEEDS_QKV);
    variant.grid_h = 2, variant.grid_w = 3;
    variant.cp = (ContextPoolConfig){.hidden = 3, .s_max = 2};
    block_init_variant(&block, (BlockConfig){.dim = 4, .heads = 2}, variant, &f->params, "b",
                       &f->rng);
    jitter(&f->params, &f->rng);
    Tensor *x = random_tokens(&f->rng, 2, 6, 4);
    Tape *tape = f->tape;
    Tensor *h = layernorm_forward(tape, &block.ln1, x);
    Tensor *image = op_permute(tape, op_reshape(tape, h, 4, (int[]){2, 2, 3, 4}),
                               (int[]){0, 3, 1, 2}); /* (B, dim, 2, 3) */
    ContextPoolAux want_aux;
    Tensor *p = contextpool2d_forward(tape, &block.pool, image, &want_aux);
    /* Token n = (r, c) is pixel (r, c): p[b, d, r, c] -> tokens[b, n, d]. */
    Tensor *tokens = tape_tensor(tape, 3, (int[]){2, 6, 4});
    for (int b = 0; b < 2; b++)
        for (int n = 0; n < 6; n++)
            for (int d = 0; d < 4; d++)
                tokens->data[(b * 6 + n) * 4 + d] = p->data[(b * 4 + d) * 6 + n];
    Tensor *mid = op_add(tape, x, attention_forward(tape, &block.attn, tokens, tokens, NULL));
    Tensor *want =
        op_add(tape, mid, ffn_forward(tape, &block.ffn, layernorm_forward(tape, &block.ln2, mid)));
    BlockAux aux;
    Tensor *y = block_forward_aux(tape, &block, x, &aux);
    double expected[48];
    for (int i = 0; i < 48; i++) expected[i] = want->data[i];
    assert_close(expected, y->data, 48, TOL, "grid block y");
    assert_bitwise_equal(want_aux.support, aux.pool.support, "support");
    assert_int_equal(aux.pool.support->ndim, 3);
    assert_int_equal(aux.pool.weights->shape[1], 2);
    assert_int_equal(aux.pool.weights->shape[2], 3);
    tensor_free(x);
}

/* ---- causality ------------------------------------------------------------------------- */

/* For every cut c: change every token j > c; the outputs at i <= c stay bit for bit the same. */
static void assert_no_peeking(Fixture *f, const Block *block, int N, const char *what) {
    const int B = 2, D = block->config.dim;
    Tensor *x = random_tokens(&f->rng, B, N, D);
    Tensor *before = block_forward(f->tape, block, x, NULL);
    for (int cut = 0; cut < N - 1; cut++) {
        Tensor *changed = random_tokens(&f->rng, B, N, D);
        for (int b = 0; b < B; b++)
            memcpy(changed->data + (long)b * N * D, x->data + (long)b * N * D,
                   (size_t)(cut + 1) * D * sizeof(real));
        Tensor *after = block_forward(f->tape, block, changed, NULL);
        for (int b = 0; b < B; b++) {
            long start = (long)b * N * D, count = (long)(cut + 1) * D;
            if (memcmp(before->data + start, after->data + start, count * sizeof(real)) != 0)
                fail_msg("%s: changing tokens after %d changed an output at or before it", what,
                         cut);
            if (memcmp(before->data + start + count, after->data + start + count,
                       (N * D - count) * sizeof(real)) == 0)
                fail_msg("%s: changing tokens after %d changed nothing after it", what, cut);
        }
        tensor_free(changed);
    }
    tensor_free(x);
    tape_reset(f->tape);
}

static void causal_block_never_peeks_at_later_tokens(void **state) {
    Fixture *f = *state;
    const BlockConfig config = {.dim = 4, .heads = 2, .causal = 1};
    const char *names[] = {"kv", "qkv", "stream"};
    for (int composed = 0; composed < 2; composed++)
        for (int feeds = 0; feeds < 3; feeds++) {
            Block block;
            BlockVariant variant = pooled((BlockPoolFeeds)feeds);
            variant.cp = (ContextPoolConfig){.kernel = 2, .s_max = 3, .composed = composed};
            char prefix[32];
            snprintf(prefix, sizeof prefix, "b%d%d", composed, feeds);
            block_init_variant(&block, config, variant, &f->params, prefix, &f->rng);
            assert_no_peeking(f, &block, 7, names[feeds]);
        }
    Block window, span;
    block_init_variant(&window, config, (BlockVariant){.attn = {.window = 2}}, &f->params, "w",
                       &f->rng);
    assert_no_peeking(f, &window, 7, "window=2");
    block_init_variant(&span, config,
                       (BlockVariant){.attn = {.span = 1, .span_max = 4, .span_ramp = 2}},
                       &f->params, "s", &f->rng);
    assert_no_peeking(f, &span, 7, "span");
}

/* ---- local window ---------------------------------------------------------------------- */

/* window = K: probability 0 exactly where |i - j| > K (or j > i when causal), positive inside,
 * rows summing to 1. */
static void window_attention_is_zero_outside_the_band(void **state) {
    Fixture *f = *state;
    const int B = 2, H = 2, N = 7, D = 4;
    Tensor *x = random_tokens(&f->rng, B, N, D);
    for (int causal = 0; causal < 2; causal++)
        for (int K = 1; K <= 3; K++) {
            Attention attn;
            char prefix[32];
            snprintf(prefix, sizeof prefix, "a%d%d", causal, K);
            attention_init_reach(&attn, (AttentionConfig){D, H, causal},
                                 (AttentionReach){.window = K}, &f->params, prefix, &f->rng);
            Tensor *probs;
            attention_forward(f->tape, &attn, x, x, &probs);
            for (long row = 0; row < (long)B * H * N; row++) {
                int i = (int)(row % N);
                double sum = 0;
                for (int j = 0; j < N; j++) {
                    real p = probs->data[row * N + j];
                    int inside = abs(i - j) <= K && (!causal || j <= i);
                    if (inside ? !(p > 0) : p != 0)
                        fail_msg("K=%d causal=%d: p[%d][%d] = %g", K, causal, i, j, (double)p);
                    sum += p;
                }
                assert_close((double[]){1}, &(real){(real)sum}, 1, TOL, "row sum");
            }
        }
    tensor_free(x);
}

/* A window of N - 1 or more hides nothing: the same numbers as full attention. */
static void window_covering_the_sequence_is_full_attention(void **state) {
    Fixture *f = *state;
    Attention full, wide;
    Rng replay = f->rng;
    attention_init(&full, (AttentionConfig){4, 2, 0}, &f->params, "full", &f->rng);
    attention_init_reach(&wide, (AttentionConfig){4, 2, 0}, (AttentionReach){.window = 4},
                         &f->params, "wide", &replay);
    Tensor *x = random_tokens(&f->rng, 1, 5, 4);
    assert_bitwise_equal(attention_forward(f->tape, &full, x, x, NULL),
                         attention_forward(f->tape, &wide, x, x, NULL), "window=4, N=5");
    tensor_free(x);
}

/* ---- adaptive span --------------------------------------------------------------------- */

/* The same attention without the span: its probabilities are P before the mask. */
static Tensor *unmasked_probs(Tape *tape, const Attention *attn, Tensor *x) {
    Attention plain = *attn;
    plain.reach.span = 0;
    Tensor *probs;
    attention_forward(tape, &plain, x, x, &probs);
    return probs;
}

/* L = 4, R = 2, N = 4. Head 0: z = 0.25, z L = 1, m(d) = clamp((3 - d) / 2, 0, 1) =
 * 1, 1, 0.5, 0 for d = 0..3. Head 1: z = 0.625, z L = 2.5, m(d) = clamp((4.5 - d) / 2) =
 * 1, 1, 1, 0.75. Then P' = P m / (sum_j P m + 1e-8). Non-causal, so d = |i - j|. */
static void span_mask_by_hand(void **state) {
    Fixture *f = *state;
    const int N = 4;
    const double mask[2][4] = {{1, 1, 0.5, 0}, {1, 1, 1, 0.75}};
    Attention attn;
    attention_init_reach(&attn, (AttentionConfig){4, 2, 0},
                         (AttentionReach){.span = 1, .span_max = 4, .span_ramp = 2}, &f->params,
                         "a", &f->rng);
    attn.span_z->data[0] = (real)0.25, attn.span_z->data[1] = (real)0.625;
    Tensor *x = random_tokens(&f->rng, 1, N, 4);
    Tensor *p = unmasked_probs(f->tape, &attn, x), *masked;
    attention_forward(f->tape, &attn, x, x, &masked);
    double want[2 * 4 * 4];
    for (int h = 0; h < 2; h++)
        for (int i = 0; i < N; i++) {
            double total = 1e-8;
            for (int j = 0; j < N; j++) total += p->data[(h * N + i) * N + j] * mask[h][abs(i - j)];
            for (int j = 0; j < N; j++)
                want[(h * N + i) * N + j] =
                    p->data[(h * N + i) * N + j] * mask[h][abs(i - j)] / total;
        }
    assert_close(want, masked->data, 2 * N * N, TOL, "P'");
    assert_true(masked->data[0 * N + 3] == 0); /* head 0, i = 0, j = 3: m = 0 exactly */
    tensor_free(x);
}

/* z outside [0, 1] acts as its clamp: z = 1.5 as 1, z = -0.5 as 0 (m(d) = (R - d) / R). */
static void span_clamps_z_into_zero_one(void **state) {
    Fixture *f = *state;
    AttentionReach reach = {.span = 1, .span_max = 2, .span_ramp = 3};
    Attention outside, inside;
    Rng replay = f->rng;
    attention_init_reach(&outside, (AttentionConfig){2, 2, 1}, reach, &f->params, "out", &f->rng);
    attention_init_reach(&inside, (AttentionConfig){2, 2, 1}, reach, &f->params, "in", &replay);
    outside.span_z->data[0] = (real)1.5, outside.span_z->data[1] = (real)-0.5;
    inside.span_z->data[0] = 1, inside.span_z->data[1] = 0;
    Tensor *x = random_tokens(&f->rng, 2, 5, 2);
    assert_bitwise_equal(attention_forward(f->tape, &inside, x, x, NULL),
                         attention_forward(f->tape, &outside, x, x, NULL), "clamped z");
    attention_span_clamp(&outside);
    assert_true(outside.span_z->data[0] == 1 && outside.span_z->data[1] == 0);
    tensor_free(x);
}

/* loss = coef L mean_h clamp(z_h, 0, 1): z = (0.25, 1.5), L = 4, coef = 0.01 gives
 * 0.04 (0.25 + 1) / 2 = 0.025; dloss/dz = coef L / heads = 0.02 inside [0, 1], 0 outside. */
static void span_loss_is_coef_times_span_max_times_mean_z(void **state) {
    Fixture *f = *state;
    Attention attn, plain;
    attention_init_reach(&attn, (AttentionConfig){2, 2, 0},
                         (AttentionReach){.span = 1, .span_max = 4, .span_coef = 0.01}, &f->params,
                         "a", &f->rng);
    attn.span_z->data[0] = (real)0.25, attn.span_z->data[1] = (real)1.5;
    Tensor *loss = attention_span_loss(f->tape, &attn);
    assert_int_equal(loss->ndim, 0);
    assert_close((double[]){0.025}, loss->data, 1, TOL, "span loss");
    tape_backward(f->tape, loss);
    assert_close(((double[]){0.02, 0}), attn.span_z->grad, 2, TOL, "dloss/dz");
    /* Without a span the loss is a constant 0 that needs no gradient. */
    attention_init(&plain, (AttentionConfig){2, 2, 0}, &f->params, "plain", &f->rng);
    Tensor *zero = attention_span_loss(f->tape, &plain);
    assert_int_equal(zero->ndim, 0);
    assert_true(zero->data[0] == 0 && !zero->requires_grad);
}

/* ---- bad configs ----------------------------------------------------------------------- */

static void bad_pool_and_reach_configs_fail(void **state) {
    Fixture *f = *state;
    ParamSet *p = &f->params;
    Rng *rng = &f->rng;
    Block block;
    const BlockConfig config = {.dim = 4, .heads = 2}, causal = {.dim = 4, .heads = 2, .causal = 1};
    EXPECT_FAIL(block_init_variant(&block, config, (BlockVariant){.pool_feeds = 7}, p, "b", rng),
                "block: pool_feeds=7 is not kv (0), qkv (1) or stream (2)");
    EXPECT_FAIL(block_init_variant(&block, config, (BlockVariant){.pool = 3}, p, "b", rng),
                "block: pool=3 is not none (0) or contextpool (1)");
    EXPECT_FAIL(
        block_init_variant(&block, causal, (BlockVariant){.grid_h = 2, .grid_w = 3}, p, "b", rng),
        "block: causal=1 with grid_h=2, grid_w=3: image tokens have no order");
    EXPECT_FAIL(block_init_variant(&block, config, (BlockVariant){.grid_h = 2}, p, "b", rng),
                "block: grid_h=2, grid_w=0: give both (> 0) for image tokens, or neither");
    EXPECT_FAIL(
        block_init_variant(&block, config, (BlockVariant){.grid_h = -1, .grid_w = 2}, p, "b", rng),
        "block: grid_h=-1");
    BlockVariant strided = pooled(BLOCK_POOL_FEEDS_KV);
    strided.grid_h = strided.grid_w = 2;
    strided.cp.stride = 2;
    EXPECT_FAIL(block_init_variant(&block, config, strided, p, "b", rng),
                "block: cp stride=2, but a block keeps its N tokens");
    EXPECT_FAIL(
        block_init_variant(&block, config, (BlockVariant){.attn = {.window = -1}}, p, "b", rng),
        "attention: window=-1 must be >= 0 (0 means full attention)");
    Attention attn;
    AttentionConfig ac = {4, 2, 0};
    EXPECT_FAIL(attention_init_reach(&attn, ac, (AttentionReach){.window = -2}, p, "a", rng),
                "attention: window=-2 must be >= 0");
    EXPECT_FAIL(attention_init_reach(&attn, ac, (AttentionReach){.span = 2}, p, "a", rng),
                "attention: span=2 must be 0 or 1");
    EXPECT_FAIL(
        attention_init_reach(&attn, ac, (AttentionReach){.span = 1, .span_max = -4}, p, "a", rng),
        "attention: span_max=-4 must be >= 0 (0 means 256)");
    EXPECT_FAIL(
        attention_init_reach(&attn, ac, (AttentionReach){.span = 1, .span_ramp = -1}, p, "a", rng),
        "attention: span_ramp=-1 must be >= 0 (0 means 32)");
    EXPECT_FAIL(attention_init_reach(&attn, ac, (AttentionReach){.span_coef = -1e-6}, p, "a", rng),
                "attention: span_coef=-1e-06 must be a finite number >= 0");
    EXPECT_FAIL(attention_init_reach(&attn, ac, (AttentionReach){.span_coef = NAN}, p, "a", rng),
                "attention: span_coef=nan");
    assert_int_equal(p->count, 0); /* every config is checked before a parameter is made */
}

/* The grid must hold exactly the N tokens given. */
static void grid_not_matching_the_tokens_fails(void **state) {
    Fixture *f = *state;
    Block block;
    BlockVariant variant = pooled(BLOCK_POOL_FEEDS_KV);
    variant.grid_h = 2, variant.grid_w = 3;
    block_init_variant(&block, (BlockConfig){.dim = 4, .heads = 2}, variant, &f->params, "b",
                       &f->rng);
    Tensor *x = tensor_create(3, (int[]){1, 7, 4}, 0);
    EXPECT_FAIL(block_forward(f->tape, &block, x, NULL),
                "block: x of shape (1, 7, 4) has N=7 tokens, but grid_h=2 x grid_w=3 is 6");
    tensor_free(x);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(pool_parameters_are_named_pool_pred_after_the_block),
        TEST(grid_pool_parameters_are_4d),
        TEST(span_adds_attn_span_z_after_proj),
        TEST(adding_a_pool_keeps_the_other_parameters_initialisation),
        TEST(pool_none_is_the_plain_block_exactly),
        TEST(each_pool_feeds_is_its_formula),
        TEST(grid_pool_is_contextpool2d_on_the_token_image),
        TEST(causal_block_never_peeks_at_later_tokens),
        TEST(window_attention_is_zero_outside_the_band),
        TEST(window_covering_the_sequence_is_full_attention),
        TEST(span_mask_by_hand),
        TEST(span_clamps_z_into_zero_one),
        TEST(span_loss_is_coef_times_span_max_times_mean_z),
        TEST(bad_pool_and_reach_configs_fail),
        TEST(grid_not_matching_the_tokens_fails),
    };
    return cmocka_run_group_tests_name("block pool (" REAL_NAME ")", tests, NULL, NULL);
}
