/* check_block_pool.c - gradient checks for the ContextPool block variants and the attention
 * baselines: the input AND every parameter, element by element.
 *
 * As in check_layers.c, each case builds the layer in a fresh ParamSet, jitters every parameter
 * by U(-0.5, 0.5), draws an input whose rows have a standard deviation of at least 0.3 (LayerNorm's
 * curvature grows like 1/std^3), and hands gradcheck the input followed by every parameter, in
 * creation order.
 *
 * Steps. Central differences err by ~h^2/6 |f'''| (truncation) plus ~eps |L| / h (rounding). The
 * input and the transformer's parameters use h = 1e-5, near the optimum eps^(1/3) for double, as
 * in check_layers.c. The pool's predictor (pred.0, pred.2) reaches the output only through the
 * weights w and sizes s, whose effect is a difference between neighbouring tokens passed through
 * the attention: its gradients are ~1e-3 of the others, so at h = 1e-5 the rounding floor (an
 * absolute ~1e-10) alone is 1e-7 of their scale. Its third derivatives are small in proportion,
 * so the predictor is checked in a call of its own with h = 3e-5 (rounding three times lower,
 * truncation still far below it; at 1e-4 truncation shows, up to 8e-7). Sequences of one token, or
 * of dim 2 (where LayerNorm leaves two possible vectors and neighbours often coincide), make the
 * predictor's gradient vanish to its eps term and are left out for the same reason.
 *
 * Kinks. The pool is smooth everywhere (sigmoid, exp, a quotient whose denominator is at least
 * w_i > 0); its radius and causal cut-offs are structural, like the window of local attention.
 * The adaptive span's two clamps are the only kinks: the mask m(d) = clamp((R + zL - d)/R, 0, 1)
 * bends where zL = d - R or zL = d, and the inner clamp bends at z = 0 and z = 1. The span check
 * therefore sets every z_h after the jitter so that z_h L = k + f with an integer k in [0, L) and
 * f in [0.25, 0.75]: every kink is at least 0.25 / R away in the mask's argument (0.25 / L in z),
 * against a step of h L / R <= 4e-5. The distances d are integers, so this holds for all of them.
 *
 * Tolerance 1e-7 for each (float64 relative error, gradcheck's measure); the worst over 30 seeds
 * (`cpool gradcheck NAME --seed S`, S = 1..30):
 *   block_contextpool_kv 4.3e-8, block_contextpool_qkv 2.9e-8, block_contextpool_stream 2.4e-8,
 *   block_contextpool2d 2.0e-8, attention_window 4.4e-9, attention_span 1.3e-8
 * - the noise floor of attention and block in check_layers.c (<= 1.6e-8 there). */
#include "attention.h"
#include "block.h"
#include "check_helpers.h"
#include "gradcheck.h"
#include "ops.h"
#include "util.h"

static const double STEP = 1e-5, POOL_STEP = 3e-5;

/* Checks the parameters params->items[first .. first + count - 1] and, if check_xs, the inputs
 * xs[0..n_x-1] too, with step h. The inputs always come first (the function reads them as in[0],
 * in[1]); not checked, they are passed without requires_grad. */
static void check_some(GradcheckFn fn, void *context, Tensor **xs, int n_x, int check_xs,
                       ParamSet *params, int first, int count, double step, Rng *rng,
                       GradcheckStats *stats) {
    Tensor *inputs[16]; /* gradcheck's limit */
    int n = 0;
    for (int i = 0; i < n_x; i++) {
        xs[i]->requires_grad = check_xs;
        inputs[n++] = xs[i];
    }
    for (int p = first; p < first + count; p++) inputs[n++] = params->items[p].tensor;
    gradcheck(fn, context, inputs, n, &(GradcheckOptions){.step = step, .seed = rng_u64(rng)},
              stats, NULL);
    for (int i = 0; i < n_x; i++) xs[i]->requires_grad = 1;
}

/* Checks xs[0..n_x-1] and every parameter (already jittered), then frees both. The last n_pool
 * parameters (the pool's predictor) are checked on their own with the larger step POOL_STEP: see
 * the top of the file. */
static void check_and_free(GradcheckFn fn, void *context, Tensor **xs, int n_x, int n_pool,
                           ParamSet *params, Rng *rng, GradcheckStats *stats) {
    int n_rest = params->count - n_pool;
    check_some(fn, context, xs, n_x, 1, params, 0, n_rest, STEP, rng, stats);
    if (n_pool > 0)
        check_some(fn, context, xs, n_x, 0, params, n_rest, n_pool, POOL_STEP, rng, stats);
    gradcheck_free(xs, n_x);
    params_free(params);
}

/* ---- block_contextpool_{kv,qkv,stream}, block_contextpool2d ---- */

static Tensor *block_fn(Tape *tape, Tensor *const *in, void *layer) {
    return block_forward(tape, layer, in[0], NULL);
}

typedef struct PoolCase {
    int dim, heads, causal, batch, tokens; /* tokens: N, or grid_h (grid_w below) */
    int grid_w;                            /* > 0: tokens on a (tokens, grid_w) grid */
    int hidden, kernel, radius;            /* the pool's predictor and window */
    int composed, weights_uniform, size_fixed;
} PoolCase;

/* One case per row, all with s_min = 0.5, s_max = 2: supports from a token to a few. */
static void check_pool_block(const PoolCase *cases, int n_cases, BlockPoolFeeds feeds, Rng *rng,
                             GradcheckStats *stats) {
    for (int k = 0; k < n_cases; k++) {
        const PoolCase *c = &cases[k];
        BlockVariant variant = {
            .pool = BLOCK_POOL_CONTEXTPOOL,
            .pool_feeds = feeds,
            .cp = {.hidden = c->hidden,
                   .kernel = c->kernel,
                   .s_min = 0.5,
                   .s_max = 2,
                   .radius = c->radius,
                   .weights_uniform = c->weights_uniform,
                   .size_fixed = c->size_fixed,
                   .s_fixed = 1.5,
                   .composed = c->composed},
        };
        int N = c->tokens;
        if (c->grid_w > 0) variant.grid_h = c->tokens, variant.grid_w = c->grid_w, N *= c->grid_w;
        ParamSet params = {0};
        Block layer;
        block_init_variant(&layer, (BlockConfig){c->dim, c->heads, 0, c->causal}, variant, &params,
                           "block", rng);
        check_jitter_params(&params, rng);
        Tensor *x = check_input_spread_rows(rng, 3, (int[]){c->batch, N, c->dim});
        check_and_free(block_fn, &layer, &x, 1, 4, &params, rng, stats);
    }
}

/* Sequences: causal and not, fused and composed, both ablations, B = 1, odd sizes, one head per
 * feature, an even causal kernel, a 1-wide kernel, radii shorter and longer than the sequence
 * (N = 1: see the top). */
static const PoolCase SEQUENCE_CASES[] = {
    /* dim heads causal B N grid_w hidden kernel radius composed uniform fixed */
    {4, 2, 1, 2, 5, 0, 3, 3, 2, 0, 0, 0}, {4, 2, 0, 2, 5, 0, 3, 3, 2, 0, 0, 0},
    {3, 1, 1, 1, 6, 0, 4, 2, 3, 1, 0, 0}, {3, 1, 0, 1, 4, 0, 2, 1, 6, 1, 0, 0},
    {6, 3, 1, 1, 4, 0, 3, 3, 1, 0, 1, 0}, {4, 1, 0, 2, 3, 0, 3, 3, 2, 0, 0, 1},
    {3, 3, 1, 1, 5, 0, 2, 2, 2, 0, 0, 0},
};
enum { N_SEQUENCE_CASES = sizeof SEQUENCE_CASES / sizeof SEQUENCE_CASES[0] };

static void check_block_contextpool_kv(Rng *rng, GradcheckStats *stats) {
    check_pool_block(SEQUENCE_CASES, N_SEQUENCE_CASES, BLOCK_POOL_FEEDS_KV, rng, stats);
}
static void check_block_contextpool_qkv(Rng *rng, GradcheckStats *stats) {
    check_pool_block(SEQUENCE_CASES, N_SEQUENCE_CASES, BLOCK_POOL_FEEDS_QKV, rng, stats);
}
static void check_block_contextpool_stream(Rng *rng, GradcheckStats *stats) {
    check_pool_block(SEQUENCE_CASES, N_SEQUENCE_CASES, BLOCK_POOL_FEEDS_STREAM, rng, stats);
}

/* Image tokens: every pool_feeds, fused and composed, a one-row grid, a radius of 1. */
static void check_block_contextpool2d(Rng *rng, GradcheckStats *stats) {
    static const PoolCase cases[] = {
        /* dim heads causal B H W hidden kernel radius composed uniform fixed */
        {4, 2, 0, 2, 2, 3, 3, 3, 2, 0, 0, 0},
        {4, 2, 0, 1, 3, 3, 2, 3, 1, 1, 0, 0},
        {4, 1, 0, 1, 1, 5, 3, 3, 2, 0, 1, 0},
    };
    for (int feeds = BLOCK_POOL_FEEDS_KV; feeds <= BLOCK_POOL_FEEDS_STREAM; feeds++)
        check_pool_block(cases, 3, (BlockPoolFeeds)feeds, rng, stats);
}

/* ---- attention_window, attention_span ---- */

typedef struct AttentionCase {
    Attention layer;
    int cross; /* 1: x_q = in[0], x_kv = in[1] */
} AttentionCase;

static Tensor *attention_fn(Tape *tape, Tensor *const *in, void *context) {
    AttentionCase *c = context;
    return attention_forward(tape, &c->layer, in[0], in[c->cross], NULL);
}

/* One attention case: jitter, then z (if any) by construction (see the top), then check. */
static void check_attention_case(const int *c, AttentionReach reach, Rng *rng,
                                 GradcheckStats *stats) {
    /* c: dim heads causal cross B N */
    ParamSet params = {0};
    AttentionCase a = {.cross = c[3]};
    attention_init_reach(&a.layer, (AttentionConfig){c[0], c[1], c[2]}, reach, &params, "attn",
                         rng);
    check_jitter_params(&params, rng);
    for (int h = 0; reach.span && h < c[1]; h++) {
        int L = a.layer.reach.span_max;
        double reach_tokens = rng_int(rng, L) + rng_range(rng, 0.25, 0.75); /* z L */
        a.layer.span_z->data[h] = (real)(reach_tokens / L);
    }
    int shape[3] = {c[4], c[5], c[0]};
    Tensor *xs[2] = {gradcheck_input(rng, 3, shape, -1, 1), gradcheck_input(rng, 3, shape, -1, 1)};
    check_and_free(attention_fn, &a, xs, 1 + a.cross, 0, &params, rng, stats);
    if (!a.cross) tensor_free(xs[1]);
}

/* Windows of 1 and 2 tokens on sequences longer than them, causal and not, self and cross. */
static void check_attention_window(Rng *rng, GradcheckStats *stats) {
    static const int cases[][7] = {
        /* dim heads causal cross B N window */
        {4, 2, 0, 0, 2, 5, 1}, {4, 2, 1, 0, 1, 6, 2}, {3, 1, 1, 1, 2, 4, 1},
        {6, 3, 0, 1, 1, 5, 2}, {2, 1, 0, 0, 1, 1, 1}, {4, 1, 1, 0, 1, 3, 5},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
        check_attention_case(cases[k], (AttentionReach){.window = cases[k][6]}, rng, stats);
}

/* Spans whose ramps fall inside the sequence (L = 4 and 3, R = 2 and 1), one head and several,
 * causal and not, self and cross, and a span inside a window. */
static void check_attention_span(Rng *rng, GradcheckStats *stats) {
    static const int cases[][9] = {
        /* dim heads causal cross B N span_max span_ramp window */
        {4, 2, 0, 0, 2, 5, 4, 2, 0}, {4, 2, 1, 0, 1, 6, 4, 2, 0}, {3, 1, 1, 1, 2, 4, 3, 1, 0},
        {6, 3, 0, 1, 1, 6, 3, 2, 0}, {4, 4, 1, 0, 1, 7, 4, 1, 3}, {2, 1, 0, 0, 1, 1, 2, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int *c = cases[k];
        AttentionReach reach = {.span = 1, .span_max = c[6], .span_ramp = c[7], .window = c[8]};
        check_attention_case(c, reach, rng, stats);
    }
}

const OpCheck check_table_block_pool[] = {
    /* Tolerances and the measured worst over 30 seeds: at the top of the file. */
    {"block_contextpool_kv", check_block_contextpool_kv, 1e-7},
    {"block_contextpool_qkv", check_block_contextpool_qkv, 1e-7},
    {"block_contextpool_stream", check_block_contextpool_stream, 1e-7},
    {"block_contextpool2d", check_block_contextpool2d, 1e-7},
    {"attention_window", check_attention_window, 1e-7},
    {"attention_span", check_attention_span, 1e-7},
    {0},
};
