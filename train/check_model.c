/* check_model.c - gradient checks of the three whole models (model.h): the training loss,
 * model_loss(model_forward(...)), as a function of every parameter.
 *
 * Each case builds a tiny model (dim 8, heads 2, sequences of at most 6 tokens, batches of 2) from
 * a seed, jitters every parameter by U(-0.5, 0.5) as check_layers.c does (so LayerNorm's ones and
 * zeros, the zero biases and the 0.02-scaled embeddings are not special points), draws its input
 * and targets, and then checks
 *   - every parameter at once along random directions v (DIRECTIONS per case), v_e ~ N(0, 1);
 *   - element by element, a few chosen parameters: pos.weight, the adaptive spans' z and the
 *     CNN's first convolution whole; tok.weight, head.weight and patch.weight on a random subset;
 *     every pool predictor ("*.pred.*"), whole in the charlm, on a subset in the vit and cnn.
 * The function is the loss itself: one number, so gradcheck's projection is one scalar factor.
 *
 * The direction check. gradcheck_direction takes at most 16 inputs (a charlm of two layers has
 * 38 parameters) and measures its error relative to the directional derivative |g.v|, which for a
 * random v falls near 0 by chance: with ~40 directions per run some land there (seed 3 gave
 * g.v = 1.4e-5 where |g| = 2.4, turning an absolute error of 2e-9, the rounding floor, into a
 * "relative" 7e-5). check_direction() below is the same central difference over ALL parameters,
 * (L(theta + h v) - L(theta - h v)) / 2h against g.v from one tape pass, with the error relative
 * to max(|g.v|, numeric, |g|): |g| is the standard deviation of g.v, so a gradient wrong by a
 * vector e shows up as ~|e| / |g|, while a chance near-zero g.v no longer divides noise by ~0.
 *
 * Steps. Central differences err by ~h^2 |L'''| / 6 (truncation) plus ~1e-16 |L| / h (rounding);
 * each step below was chosen from measurements over seeds 1..30:
 *   - elements: h = 5e-6. At 1e-5 (check_layers.c's choice for one layer) truncation showed in
 *     the deeper models (pos.weight of a two-layer charlm: 1.0e-7, growing as h^2); at 3e-6
 *     rounding did (1.7e-7 on a table whose gradient is small).
 *   - pool predictors: their gradients are ~1e-3 of the others (check_block_pool.c explains why),
 *     so rounding weighs more; each predictor convolution (weight with its bias) is measured
 *     against their common scale (check_contextpool.c explains why a 2-element bias alone
 *     measures noise). Transformers: h = 6e-5. At 3e-5 a second block's predictor whose w and s
 *     barely vary (w in 0.39..0.51) measured its rounding (1.6e-7); at 1e-4 truncation rises
 *     (1.2e-7 in the vit). In the CNN the predictors' gradients are smaller still (~3e-5, against
 *     ~0.3 for conv.2.bias: the head reads the mean over all pixels, and the mean of a map is
 *     nearly blind to how it was blurred): h = 1.5e-4, between rounding at 1e-4 and truncation
 *     at 3e-4 (7.6e-8) and 1e-3 (7.1e-7).
 *   - directions: h = 1e-6, the best of 3e-7, 1e-6, 3e-6 and 1e-5: they move some thousands of
 *     elements at once by h v_e (|v| ~ 50), so the loss's third derivative along v is large.
 * A check on a random subset of a tensor is measured against the largest gradient of the whole
 * tensor, not of the subset: a subset of an untied tok.weight is mostly rows of tokens absent from
 * the batch, whose gradient is exactly 0.
 *
 * Kinks. The transformers are smooth (GELU, softmax, LayerNorm, sigmoid and exp in the pools; the
 * causal mask and the local window are structural). The adaptive span's clamps are kept away from
 * the step as check_block_pool.c does: z_h L = k + f with an integer k and f in [0.25, 0.75], so
 * every bend of the mask is 0.25 / L away in z, against steps of 5e-6 (elements) or ~5e-6
 * (directions: h |v_e| at five sigma).
 * The CNN's three ReLUs bend at 0. centre_relus() builds each case so that none of their inputs is
 * within RELU_MARGIN = 1e-3 of 0: for conv.0, conv.1, conv.2 in turn (a bias moves only the layers
 * after it), each channel's bias is shifted to put 0 in the middle of the gap, at least
 * 2 RELU_MARGIN wide, between two consecutive pre-activations of that channel (over the batch and
 * every pixel) that is nearest to their median: about half of each ReLU's inputs then lie on each
 * side (no dead channel, whose gradient would be 0), and none near the kink. (A channel whose
 * values are packed too densely for such a gap - seen in a 1-channel CNN's conv.2, 98 values in a
 * range of 0.01 - gets its kink 2 RELU_MARGIN below its smallest value: always active.) A step
 * moves a pre-activation z by about h dz/dtheta_e (elements) or h grad(z).v (directions). Sampled
 * over 40 pre-activations per ReLU and seeds 1..3, |dz/dtheta_e| <= 2.3 and |grad z| <= 6.5: at
 * most 1.2e-5 at h = 5e-6 (3.5e-4 at the predictors' 1.5e-4, if their own |dz/dtheta_e| were as
 * large), and 3.3e-5 for a direction at five sigma: inside the margin.
 * cnn_min_preactivation() then measures the margin on the model checked (asserting that the
 * layers run one by one give model_forward's logits bit for bit).
 *
 * Tolerances (float64 relative error), from the worst over 30 seeds (`cpool64 gradcheck NAME
 * --seed S`, S = 1..30): model_charlm 7.4e-8 (seed 25: the second block's predictor above),
 * model_charlm_variants 7.1e-8, model_vit 4.4e-8, model_cnn 4.7e-8; against a tolerance of 1e-7
 * each, the level of the layer checks (check_block_pool.c). Each entry runs in 0.2-0.5 s. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check_helpers.h"
#include "gradcheck.h"
#include "image_data.h"
#include "model.h"
#include "ops.h"
#include "text_data.h"
#include "util.h"

enum { MAX_INPUTS = 16, BATCH = 2, MAX_LEN = 8, DIRECTIONS = 2 };
static const double STEP = 5e-6, POOL_STEP = 6e-5, CNN_POOL_STEP = 1.5e-4;
static const double DIRECTION_STEP = 1e-6;
static const double RELU_MARGIN = 1e-3;
static const long SUBSET = 48; /* elements checked of tok.weight, head.weight, patch.weight */

/* One case: a model, its input and its targets. */
typedef struct ModelCase {
    Model model;
    ModelInput input;
    int *tokens;                  /* charlm: input.tokens, (B, N) (malloc'd) */
    int targets[BATCH * MAX_LEN]; /* charlm: (B, N) next bytes; others: (B) labels */
    double pred_step;             /* h for the pool predictors */
    long pred_elements;           /* elements checked of each predictor tensor; 0: all */
} ModelCase;

static Tensor *loss_fn(Tape *tape, Tensor *const *in, void *context) {
    (void)in; /* the parameters: the model reads them through its layers */
    ModelCase *c = context;
    Tensor *logits = model_forward(tape, &c->model, &c->input, NULL);
    return model_loss(tape, &c->model, logits, c->targets);
}

/* Every z_h at k + f tokens, f in [0.25, 0.75]: the span's kinks away from the step (see top). */
static void place_spans(Model *model, Rng *rng) {
    for (int i = 0; i < model->config.layers; i++) {
        Attention *attn = &model->blocks[i].attn;
        if (!attn->span_z) continue;
        int L = attn->reach.span_max;
        for (int h = 0; h < attn->config.heads; h++)
            attn->span_z->data[h] = (real)((rng_int(rng, L) + rng_range(rng, 0.25, 0.75)) / L);
    }
}

/* Builds config's model from rng, jitters it, draws the input (len tokens for the charlm, else
 * images of U(0, 1) pixels) and the targets. */
static void case_init(ModelCase *c, const ModelConfig *config, int len, Rng *rng) {
    memset(c, 0, sizeof *c);
    model_init(&c->model, config, rng);
    check_jitter_params(&c->model.params, rng);
    place_spans(&c->model, rng);
    c->input.batch = BATCH;
    c->pred_step = POOL_STEP;
    if (config->kind == MODEL_CHARLM) {
        if (len > MAX_LEN) cpool_fail("check_model: len=%d > %d", len, MAX_LEN);
        c->tokens = xmalloc(BATCH * (size_t)len * sizeof *c->tokens);
        for (int i = 0; i < BATCH * len; i++) {
            c->tokens[i] = rng_int(rng, TEXT_VOCAB_SIZE);
            c->targets[i] = rng_int(rng, TEXT_VOCAB_SIZE);
        }
        c->input.tokens = c->tokens;
        c->input.len = len;
    } else {
        Tensor *images = tensor_create(4, (int[]){BATCH, 1, IMAGE_SIZE, IMAGE_SIZE}, 0);
        for (long i = 0; i < images->size; i++) images->data[i] = (real)rng_uniform(rng);
        c->input.images = images;
        for (int b = 0; b < BATCH; b++) c->targets[b] = rng_int(rng, IMAGE_CLASSES);
    }
}

static void case_free(ModelCase *c) {
    free(c->tokens);
    if (c->input.images) tensor_free(c->input.images);
    model_free(&c->model);
}

/* ---- The checks of one case ---- */

/* Every parameter set to saved + t v (both over all of them, concatenated; v NULL: saved). */
static void move_params(ParamSet *params, const real *saved, const double *v, double t) {
    long k = 0;
    for (int p = 0; p < params->count; p++) {
        Tensor *x = params->items[p].tensor;
        for (long e = 0; e < x->size; e++, k++)
            x->data[e] = v ? (real)(saved[k] + t * v[k]) : saved[k];
    }
}

/* The loss at saved + t v. */
static double loss_along(ModelCase *c, const real *saved, const double *v, double t, Tape *tape) {
    move_params(&c->model.params, saved, v, t);
    tape_reset(tape);
    return (double)loss_fn(tape, NULL, c)->data[0];
}

/* One random direction v over every parameter (see the top of the file). */
static void check_direction(ModelCase *c, Rng *rng, GradcheckStats *stats) {
    ParamSet *params = &c->model.params;
    long n = params_count_elements(params);
    double *v = xmalloc((size_t)n * sizeof *v);
    real *saved = xmalloc((size_t)n * sizeof *saved);
    Tape *tape = tape_create();
    params_zero_grad(params);
    tape_backward(tape, loss_fn(tape, NULL, c));
    double analytic = 0, grad_norm2 = 0; /* g.v, |g|^2 */
    long k = 0;
    for (int p = 0; p < params->count; p++) {
        const Tensor *x = params->items[p].tensor;
        for (long e = 0; e < x->size; e++, k++) {
            v[k] = rng_normal(rng);
            saved[k] = x->data[e];
            analytic += (double)x->grad[e] * v[k];
            grad_norm2 += (double)x->grad[e] * (double)x->grad[e];
        }
    }
    params_zero_grad(params);
    tape->no_grad = 1;
    double plus = loss_along(c, saved, v, DIRECTION_STEP, tape);
    double minus = loss_along(c, saved, v, -DIRECTION_STEP, tape);
    move_params(params, saved, NULL, 0);
    double numeric = (plus - minus) / (2 * DIRECTION_STEP);
    double err = fabs(analytic - numeric);
    double scale = fmax(fmax(fabs(analytic), fabs(numeric)), sqrt(grad_norm2));
    GradcheckStats one = {.checks = 1, .elements = 1, .max_abs_err = isfinite(err) ? err : NAN};
    one.max_rel_err = isfinite(err) && scale > 0 ? err / scale : NAN;
    gradcheck_stats_merge(stats, &one);
    tape_free(tape);
    free(saved);
    free(v);
}

/* The largest |gradient| of each input, over all its elements (one tape pass). */
static void gradient_scales(ModelCase *c, Tensor *const *inputs, int n, double *scales) {
    Tape *tape = tape_create();
    params_zero_grad(&c->model.params);
    tape_backward(tape, loss_fn(tape, NULL, c));
    for (int i = 0; i < n; i++) {
        scales[i] = 0;
        for (long e = 0; e < inputs[i]->size; e++)
            scales[i] = fmax(scales[i], fabs((double)inputs[i]->grad[e]));
    }
    params_zero_grad(&c->model.params);
    tape_free(tape);
}

/* The scale gradcheck measured an input's errors against (0 if it had no error). */
static double scale_of(const GradcheckStats *s) {
    return s->max_abs_err > 0 ? s->max_abs_err / s->max_rel_err : 0;
}

/* Folds per-input results [first, first + n) into stats against their common scale: the largest
 * gradient among them (as check_contextpool.c), over every element of the tensors. */
static void fold_group(const GradcheckStats *per, const double *scales, int first, int n,
                       GradcheckStats *stats) {
    GradcheckStats group = {.checks = 1};
    double scale = 0;
    for (int i = first; i < first + n; i++) {
        group.elements += per[i].elements;
        group.max_abs_err = fmax(group.max_abs_err, per[i].max_abs_err);
        scale = fmax(scale, fmax(scale_of(&per[i]), scales[i]));
        if (isnan(per[i].max_rel_err)) group.max_rel_err = NAN; /* a NaN gradient fails */
    }
    if (!isnan(group.max_rel_err) && group.max_abs_err > 0)
        group.max_rel_err = scale > 0 ? group.max_abs_err / scale : INFINITY;
    gradcheck_stats_merge(stats, &group);
}

/* Element by element: inputs[0..n-1] with step h, at most max_elements of each (0: all), folded
 * in groups of `group` consecutive inputs. A group is measured against the largest gradient of
 * its tensors over ALL their elements, not only those checked: a subset of an untied tok.weight
 * is mostly rows of tokens absent from the batch, whose gradient is exactly 0 on both sides. */
static void check_elements(ModelCase *c, Tensor *const *inputs, int n, int group, double h,
                           long max_elements, Rng *rng, GradcheckStats *stats) {
    double scales[MAX_INPUTS];
    GradcheckStats per[MAX_INPUTS] = {0};
    gradient_scales(c, inputs, n, scales);
    GradcheckOptions options = {.step = h, .max_elements = max_elements, .seed = rng_u64(rng)};
    gradcheck(loss_fn, c, inputs, n, &options, NULL, per);
    for (int first = 0; first < n; first += group) fold_group(per, scales, first, group, stats);
}

/* Every parameter whose name contains one of the n_parts strings, each measured on its own. */
static void check_named(ModelCase *c, const char *const *parts, int n_parts, long max_elements,
                        Rng *rng, GradcheckStats *stats) {
    const ParamSet *params = &c->model.params;
    Tensor *inputs[MAX_INPUTS];
    int n = 0;
    for (int p = 0; p < params->count; p++) {
        int wanted = 0;
        for (int k = 0; k < n_parts; k++) wanted |= strstr(params->items[p].name, parts[k]) != 0;
        if (!wanted) continue;
        if (n == MAX_INPUTS) cpool_fail("check_model: more than %d parameters match", MAX_INPUTS);
        inputs[n++] = params->items[p].tensor;
    }
    if (n > 0) check_elements(c, inputs, n, 1, STEP, max_elements, rng, stats);
}

/* Every pool predictor: its four tensors, created in a row (pred.0.weight, pred.0.bias,
 * pred.2.weight, pred.2.bias), each convolution (weight and bias) measured as one. */
static void check_predictors(ModelCase *c, Rng *rng, GradcheckStats *stats) {
    const ParamSet *params = &c->model.params;
    for (int p = 0; p + 3 < params->count; p++) {
        const char *name = params->items[p].name;
        size_t len = strlen(name);
        if (len < 13 || strcmp(name + len - 13, "pred.0.weight") != 0) continue;
        Tensor *inputs[4];
        for (int i = 0; i < 4; i++) inputs[i] = params->items[p + i].tensor;
        check_elements(c, inputs, 4, 2, c->pred_step, c->pred_elements, rng, stats);
    }
}

/* The whole check of one case, which it frees. */
static void check_case(ModelCase *c, Rng *rng, GradcheckStats *stats) {
    for (int d = 0; d < DIRECTIONS; d++) check_direction(c, rng, stats);
    static const char *const whole[] = {"pos.weight", "span.z", "conv.0."};
    static const char *const subset[] = {"tok.weight", "head.weight", "patch.weight"};
    check_named(c, whole, 3, 0, rng, stats);
    check_named(c, subset, 3, SUBSET, rng, stats);
    check_predictors(c, rng, stats);
    case_free(c);
}

/* ---- model_charlm, model_charlm_variants ---- */

typedef struct CharlmCase {
    int layers, tie, len;
    ModelPool pool;
    BlockPoolFeeds feeds;
    int weights_uniform, size_fixed, window, span;
} CharlmCase;

static void check_charlm_cases(const CharlmCase *cases, int n_cases, Rng *rng,
                               GradcheckStats *stats) {
    for (int k = 0; k < n_cases; k++) {
        const CharlmCase *cc = &cases[k];
        ModelConfig config = model_default_config(MODEL_CHARLM);
        config.dim = 8, config.heads = 2, config.layers = cc->layers, config.seq_len = 6;
        config.tie = cc->tie, config.pool = cc->pool;
        config.variant.pool_feeds = cc->feeds;
        config.variant.cp.s_max = 2; /* supports of one token to a few: s matters */
        config.variant.cp.weights_uniform = cc->weights_uniform;
        config.variant.cp.size_fixed = cc->size_fixed;
        config.variant.cp.s_fixed = 1.5;
        config.variant.attn.window = cc->window;
        if (cc->span)
            config.variant.attn = (AttentionReach){.span = 1, .span_max = 4, .span_ramp = 2};
        ModelCase c;
        case_init(&c, &config, cc->len, rng);
        check_case(&c, rng, stats);
    }
}

/* Plain and ContextPool (kv), tied and untied, one and two layers, a sequence shorter than
 * seq_len. */
static void check_model_charlm(Rng *rng, GradcheckStats *stats) {
    static const CharlmCase cases[] = {
        /* layers tie len pool feeds uniform fixed window span */
        {1, 1, 6, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 0},
        {2, 0, 5, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 0},
        {1, 0, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 0},
        {2, 1, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 0},
    };
    check_charlm_cases(cases, sizeof cases / sizeof cases[0], rng, stats);
}

/* The ablations and baselines of the experiments, each tied and untied: the pool feeding qkv or
 * the stream, uniform weights, fixed sizes, local windows of 2 and 1, adaptive spans. */
static void check_model_charlm_variants(Rng *rng, GradcheckStats *stats) {
    static const CharlmCase cases[] = {
        /* layers tie len pool feeds uniform fixed window span */
        {1, 0, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_QKV, 0, 0, 0, 0},
        {1, 1, 5, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_QKV, 0, 0, 0, 0},
        {2, 0, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_STREAM, 0, 0, 0, 0},
        {1, 1, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_STREAM, 0, 0, 0, 0},
        {1, 0, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 1, 0, 0, 0},
        {1, 1, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 1, 0, 0, 0},
        {1, 0, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 0, 1, 0, 0},
        {1, 1, 6, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 0, 1, 0, 0},
        {1, 0, 6, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 2, 0},
        {2, 1, 6, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 1, 0},
        {1, 0, 6, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 1},
        {2, 1, 6, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 0, 0, 0, 1},
    };
    check_charlm_cases(cases, sizeof cases / sizeof cases[0], rng, stats);
}

/* ---- model_vit ---- */

/* Patches of 7 (a 4x4 token grid) and 14 (2x2), with and without the pool, every pool_feeds. The
 * 2-d predictors (8 x 8 x 3 x 3 weights per layer) are checked on a random subset. */
static void check_model_vit(Rng *rng, GradcheckStats *stats) {
    static const int cases[][4] = {
        /* patch pool feeds layers */
        {7, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 1},
        {14, MODEL_POOL_NONE, BLOCK_POOL_FEEDS_KV, 2},
        {7, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_KV, 1},
        {14, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_QKV, 2},
        {7, MODEL_POOL_CONTEXTPOOL, BLOCK_POOL_FEEDS_STREAM, 1},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ModelConfig config = model_default_config(MODEL_VIT);
        config.dim = 8, config.heads = 2, config.patch = cases[k][0];
        config.pool = (ModelPool)cases[k][1];
        config.variant.pool_feeds = (BlockPoolFeeds)cases[k][2];
        config.layers = cases[k][3];
        config.variant.cp.s_max = 2;
        ModelCase c;
        case_init(&c, &config, 0, rng);
        c.pred_elements = 96;
        check_case(&c, rng, stats);
    }
}

/* ---- model_cnn ---- */

static int compare_reals(const void *a, const void *b) {
    real x = *(const real *)a, y = *(const real *)b;
    return (x > y) - (x < y);
}

/* The CNN up to the input of ReLU k (conv.k's output, (B, c_k, H, W)), as cnn_forward runs it. */
static Tensor *cnn_preactivation(Tape *tape, const Model *m, Tensor *images, int k) {
    Tensor *x = images;
    for (int j = 0;; j++) {
        Tensor *z = conv2d_forward(tape, &m->conv[j], x); /* (B, c_j, H, W) */
        if (j == k) return z;
        x = op_relu(tape, z);
        x = m->config.pool == MODEL_POOL_CONTEXTPOOL
                ? contextpool2d_forward(tape, &m->pools[j], x, NULL)
                : op_avgpool2d(tape, x, 2, 2);
    }
}

/* The shift that moves the kink at 0 to where it leaves most room: among the middles of the gaps
 * at least 2 RELU_MARGIN wide between consecutive values of v (n values, sorted here), and the
 * point 2 RELU_MARGIN below the smallest value (the channel always active, for a channel with no
 * such gap), the one nearest to their median. */
static double centring_shift(real *v, long n) {
    qsort(v, (size_t)n, sizeof *v, compare_reals);
    double median = v[n / 2], kink = v[0] - 2 * RELU_MARGIN;
    for (long i = 0; i + 1 < n; i++) {
        double middle = 0.5 * ((double)v[i] + (double)v[i + 1]);
        if (v[i + 1] - v[i] >= 2 * RELU_MARGIN && fabs(middle - median) < fabs(kink - median))
            kink = middle;
    }
    return -kink;
}

/* Shifts the bias of every channel of conv.0, conv.1, conv.2 (in that order) so that its ReLU's
 * inputs straddle 0, none within RELU_MARGIN of it (see the top of the file). */
static void centre_relus(ModelCase *c) {
    Tape *tape = tape_create();
    tape->no_grad = 1;
    for (int k = 0; k < 3; k++) {
        Tensor *z = cnn_preactivation(tape, &c->model, c->input.images, k);
        int B = z->shape[0], C = z->shape[1];
        long HW = (long)z->shape[2] * z->shape[3];
        real *values = xmalloc((size_t)(B * HW) * sizeof *values);
        for (int ch = 0; ch < C; ch++) {
            for (int b = 0; b < B; b++)
                memcpy(values + b * HW, z->data + ((long)b * C + ch) * HW,
                       (size_t)HW * sizeof *values);
            c->model.conv[k].bias->data[ch] += (real)centring_shift(values, B * HW);
        }
        free(values);
        tape_reset(tape);
    }
    tape_free(tape);
}

/* The smallest |input| of the three ReLUs, after asserting that the layers run one by one
 * (cnn_preactivation, then the head as cnn_forward) give model_forward's logits bit for bit, so
 * that what is measured is the model checked. */
static double cnn_min_preactivation(const ModelCase *c) {
    const Model *m = &c->model;
    Tape *tape = tape_create();
    tape->no_grad = 1;
    double min_abs = INFINITY;
    for (int k = 0; k < 3; k++) {
        Tensor *z = cnn_preactivation(tape, m, c->input.images, k);
        for (long i = 0; i < z->size; i++) min_abs = fmin(min_abs, fabs((double)z->data[i]));
    }
    Tensor *x = op_relu(tape, cnn_preactivation(tape, m, c->input.images, 2)); /* (B, 4c, 7, 7) */
    int B = x->shape[0], C = x->shape[1];
    x = op_reshape(tape, x, 3, (int[]){B, C, x->shape[2] * x->shape[3]});
    Tensor *logits = linear_forward(tape, &m->head, op_mean(tape, x, 2, 0));
    Tensor *expected = model_forward(tape, m, &c->input, NULL);
    if (memcmp(logits->data, expected->data, (size_t)logits->size * sizeof(real)) != 0)
        cpool_fail("check_model: the CNN's layers run one by one differ from model_forward");
    tape_free(tape);
    return min_abs;
}

/* Average pooling and ContextPool, channels 2 and 1; the pools with a small predictor and reach
 * (hidden 4, radius 3), for speed. */
static void check_model_cnn(Rng *rng, GradcheckStats *stats) {
    static const int cases[][2] = {
        /* pool channels */
        {MODEL_POOL_AVG, 2},
        {MODEL_POOL_CONTEXTPOOL, 2},
        {MODEL_POOL_CONTEXTPOOL, 3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        ModelConfig config = model_default_config(MODEL_CNN);
        config.pool = (ModelPool)cases[k][0];
        config.channels = cases[k][1];
        config.variant.cp.hidden = 4;
        config.variant.cp.radius = 3;
        ModelCase c;
        case_init(&c, &config, 0, rng);
        c.pred_step = CNN_POOL_STEP;
        c.pred_elements = 24;
        centre_relus(&c);
        double min_abs = cnn_min_preactivation(&c);
        if (!(min_abs >= RELU_MARGIN))
            cpool_fail("check_model: a ReLU input is %g from 0, closer than %g", min_abs,
                       RELU_MARGIN);
        check_case(&c, rng, stats);
    }
}

const OpCheck check_table_model[] = {
    /* Tolerances and the measured worst over 30 seeds: at the top of the file. */
    {"model_charlm", check_model_charlm, 1e-7},
    {"model_charlm_variants", check_model_charlm_variants, 1e-7},
    {"model_vit", check_model_vit, 1e-7},
    {"model_cnn", check_model_cnn, 1e-7},
    {0},
};
