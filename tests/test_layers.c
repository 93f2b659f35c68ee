/* test_layers.c - the layers: parameter names and shapes (PyTorch's), initialisation, forward
 * passes checked by hand on tiny configs, causality, and every bad config and bad input. */
#include <stdlib.h>

#include "test_util.h"
#include "test_layer_fixture.h"

#include "attention.h"
#include "block.h"
#include "conv.h"
#include "embedding.h"
#include "ffn.h"
#include "layernorm.h"
#include "linear.h"
#include "ops.h"

/* Hand-computed values are exact in double; float32 rounds each op. */
#ifdef CPOOL_DOUBLE
static const double TOL = 1e-12;
#else
static const double TOL = 1e-5;
#endif

static int setup(void **state) {
    return layer_fixture_setup(state, 1234);
}

/* VALUES(1, 2, 3) passes an array literal and its length: (const double[]){1, 2, 3}, 3. */
#define VALUES(...)                                                                                \
    (const double[]){__VA_ARGS__}, (long)(sizeof((const double[]){__VA_ARGS__}) / sizeof(double))
#define ZEROS NULL, 0

/* t's data := values (exactly t->size of them). */
static void set_values(Tensor *t, const double *values, long n) {
    assert_int_equal(t->size, n);
    for (long i = 0; i < n; i++) t->data[i] = (real)values[i];
}

/* An owned tensor holding `values`, or zeros for ZEROS. */
static Tensor *tensor_of(int ndim, const int *shape, const double *values, long n,
                         int requires_grad) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    if (values) set_values(t, values, n);
    return t;
}

static void fill_random(Tensor *t, Rng *rng) {
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, -1, 1);
}

/* Asserts that params[index] is called `name` and has the given shape. */
static void assert_param(const ParamSet *params, int index, const char *name, int ndim,
                         const int *shape) {
    assert_true(index < params->count);
    assert_string_equal(params->items[index].name, name);
    const Tensor *t = params->items[index].tensor;
    assert_int_equal(t->ndim, ndim);
    for (int d = 0; d < ndim; d++) assert_int_equal(t->shape[d], shape[d]);
    assert_true(t->requires_grad);
}

static double sigmoid(double x) {
    return 1 / (1 + exp(-x));
}

/* ---- linear ---------------------------------------------------------------------------- */

static void linear_has_weight_out_by_in_and_bias_out(void **state) {
    Fixture *f = *state;
    Linear fc, no_bias;
    linear_init(&fc, (LinearConfig){.in = 3, .out = 2, .bias = 1}, &f->params, "fc", &f->rng);
    linear_init(&no_bias, (LinearConfig){.in = 4, .out = 5}, &f->params, "head", &f->rng);
    assert_int_equal(f->params.count, 3);
    assert_param(&f->params, 0, "fc.weight", 2, (int[]){2, 3});
    assert_param(&f->params, 1, "fc.bias", 1, (int[]){2});
    assert_param(&f->params, 2, "head.weight", 2, (int[]){5, 4});
    assert_ptr_equal(fc.weight, params_find(&f->params, "fc.weight"));
    assert_null(no_bias.bias);
}

/* U(-1/sqrt(in), 1/sqrt(in)): within the bound, reaching near it, variance bound^2 / 3. */
static void linear_init_is_uniform_within_one_over_sqrt_in(void **state) {
    Fixture *f = *state;
    Linear fc;
    linear_init(&fc, (LinearConfig){.in = 16, .out = 1000, .bias = 1}, &f->params, "fc", &f->rng);
    double bound = 0.25, max_abs = 0, sum = 0, sum_sq = 0;
    for (long i = 0; i < fc.weight->size; i++) {
        double w = fc.weight->data[i];
        max_abs = fmax(max_abs, fabs(w));
        sum += w;
        sum_sq += w * w;
    }
    long n = fc.weight->size; /* 16000 draws: the mean's standard error is 0.25/sqrt(3n) ~ 1e-3 */
    assert_true(max_abs <= bound && max_abs > 0.99 * bound);
    assert_true(fabs(sum / n) < 0.006);
    assert_true(fabs(sum_sq / n - bound * bound / 3) < 0.05 * bound * bound / 3);
    for (long i = 0; i < fc.bias->size; i++) assert_true(fabs(fc.bias->data[i]) <= bound);
}

/* The documented draw order: every weight element in row-major order, then every bias. */
static void linear_draws_weight_then_bias_row_major(void **state) {
    Fixture *f = *state;
    Rng replay = f->rng;
    Linear fc;
    linear_init(&fc, (LinearConfig){.in = 4, .out = 3, .bias = 1}, &f->params, "fc", &f->rng);
    for (long i = 0; i < 12; i++)
        assert_true(fc.weight->data[i] == (real)rng_range(&replay, -0.5, 0.5));
    for (long i = 0; i < 3; i++)
        assert_true(fc.bias->data[i] == (real)rng_range(&replay, -0.5, 0.5));
}

/* W = [[1, 2, 3], [4, 5, 6]], b = [0.5, -1]:  y = x W^T + b row by row. */
static void linear_forward_is_x_times_weight_transposed_plus_bias(void **state) {
    Fixture *f = *state;
    Linear fc;
    linear_init(&fc, (LinearConfig){.in = 3, .out = 2, .bias = 1}, &f->params, "fc", &f->rng);
    set_values(fc.weight, VALUES(1, 2, 3, 4, 5, 6));
    set_values(fc.bias, VALUES(0.5, -1));
    Tensor *x = tensor_of(3, (int[]){1, 2, 3}, VALUES(1, 0, -1, 2, 1, 0), 0);
    Tensor *y = linear_forward(f->tape, &fc, x);
    /* [1 0 -1] -> [1 - 3 + 0.5, 4 - 6 - 1];  [2 1 0] -> [2 + 2 + 0.5, 8 + 5 - 1] */
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[2], 2);
    assert_close(((double[]){-1.5, -3, 4.5, 12}), y->data, 4, TOL, "linear y");
    /* A 1-d x is one row. */
    Tensor *row = tensor_of(1, (int[]){3}, VALUES(1, 0, -1), 0);
    Tensor *y_row = linear_forward(f->tape, &fc, row);
    assert_int_equal(y_row->ndim, 1);
    assert_close(((double[]){-1.5, -3}), y_row->data, 2, TOL, "linear 1-d y");
    tensor_free(x);
    tensor_free(row);
}

/* dW = dy^T x, db = sum of dy over rows, dx = dy W. With loss = sum(y): dy = 1. */
static void linear_backward_gives_weight_bias_and_input_gradients(void **state) {
    Fixture *f = *state;
    Linear fc;
    linear_init(&fc, (LinearConfig){.in = 3, .out = 2, .bias = 1}, &f->params, "fc", &f->rng);
    set_values(fc.weight, VALUES(1, 2, 3, 4, 5, 6));
    Tensor *x = tensor_of(2, (int[]){2, 3}, VALUES(1, 0, -1, 2, 1, 0), 1);
    tape_backward(f->tape, op_sum_all(f->tape, linear_forward(f->tape, &fc, x)));
    assert_close(((double[]){3, 1, -1, 3, 1, -1}), fc.weight->grad, 6, TOL, "dW");
    assert_close(((double[]){2, 2}), fc.bias->grad, 2, TOL, "db");
    assert_close(((double[]){5, 7, 9, 5, 7, 9}), x->grad, 6, TOL, "dx");
    tensor_free(x);
}

/* ---- layernorm ------------------------------------------------------------------------- */

static void layernorm_starts_as_ones_and_zeros(void **state) {
    Fixture *f = *state;
    LayerNorm ln;
    layernorm_init(&ln, (LayerNormConfig){.dim = 5}, &f->params, "ln1");
    assert_param(&f->params, 0, "ln1.weight", 1, (int[]){5});
    assert_param(&f->params, 1, "ln1.bias", 1, (int[]){5});
    for (int i = 0; i < 5; i++) {
        assert_true(ln.weight->data[i] == 1);
        assert_true(ln.bias->data[i] == 0);
    }
    assert_true(ln.config.eps == 1e-5); /* the default filled in */
}

/* x = [1, 2, 3]: mean 2, biased variance 2/3; y = (x - 2) / sqrt(2/3 + eps) * w + b. */
static void layernorm_forward_normalises_the_last_axis(void **state) {
    Fixture *f = *state;
    LayerNorm ln;
    layernorm_init(&ln, (LayerNormConfig){.dim = 3, .eps = 1e-3}, &f->params, "ln");
    set_values(ln.weight, VALUES(1, 2, 3));
    set_values(ln.bias, VALUES(0, 0, 1));
    Tensor *x = tensor_of(2, (int[]){1, 3}, VALUES(1, 2, 3), 0);
    Tensor *y = layernorm_forward(f->tape, &ln, x);
    double r = 1 / sqrt(2.0 / 3 + 1e-3);
    assert_close(((double[]){-r, 0, 3 * r + 1}), y->data, 3, TOL, "layernorm y");
    tensor_free(x);
}

/* ---- embedding ------------------------------------------------------------------------- */

static void embedding_is_vocab_by_dim_standard_normal(void **state) {
    Fixture *f = *state;
    Embedding tok;
    embedding_init(&tok, (EmbeddingConfig){.vocab = 1000, .dim = 100}, &f->params, "tok", &f->rng);
    assert_param(&f->params, 0, "tok.weight", 2, (int[]){1000, 100});
    double sum = 0, sum_sq = 0;
    long n = tok.weight->size; /* 1e5 draws: standard errors 0.003 (mean), 0.0045 (variance) */
    for (long i = 0; i < n; i++) {
        sum += tok.weight->data[i];
        sum_sq += (double)tok.weight->data[i] * tok.weight->data[i];
    }
    double mean = sum / n, std = sqrt(sum_sq / n - mean * mean);
    assert_true(fabs(mean) < 0.015);
    assert_true(fabs(std - 1) < 0.015);
}

static void embedding_looks_up_rows_and_positions(void **state) {
    Fixture *f = *state;
    Embedding tok;
    embedding_init(&tok, (EmbeddingConfig){.vocab = 4, .dim = 2}, &f->params, "tok", &f->rng);
    set_values(tok.weight, VALUES(0, 1, 10, 11, 20, 21, 30, 31));
    Tensor *y = embedding_forward(f->tape, &tok, (int[]){3, 0, 3}, 2, (int[]){1, 3});
    assert_int_equal(y->ndim, 3);
    assert_int_equal(y->shape[1], 3);
    assert_int_equal(y->shape[2], 2);
    assert_close(((double[]){30, 31, 0, 1, 30, 31}), y->data, 6, TOL, "token rows");
    Tensor *pos = embedding_positions(f->tape, &tok, 3);
    assert_int_equal(pos->ndim, 2);
    assert_int_equal(pos->shape[0], 3);
    assert_close(((double[]){0, 1, 10, 11, 20, 21}), pos->data, 6, TOL, "positions 0..2");
    /* A repeated id receives the sum of its rows' gradients. */
    tape_backward(f->tape, op_sum_all(f->tape, y));
    assert_close(((double[]){1, 1, 0, 0, 0, 0, 2, 2}), tok.weight->grad, 8, TOL, "d weight");
}

/* ---- ffn ------------------------------------------------------------------------------- */

static void ffn_has_fc1_hidden_by_dim_and_fc2_dim_by_hidden(void **state) {
    Fixture *f = *state;
    Ffn ffn;
    ffn_init(&ffn, (FfnConfig){.dim = 4, .hidden = 7}, &f->params, "ffn", &f->rng);
    assert_int_equal(f->params.count, 4);
    assert_param(&f->params, 0, "ffn.fc1.weight", 2, (int[]){7, 4});
    assert_param(&f->params, 1, "ffn.fc1.bias", 1, (int[]){7});
    assert_param(&f->params, 2, "ffn.fc2.weight", 2, (int[]){4, 7});
    assert_param(&f->params, 3, "ffn.fc2.bias", 1, (int[]){4});
}

/* dim = hidden = 1: y = 3 GELU(2 x) + 1, GELU(1) = Phi(1) = (1 + erf(1/sqrt 2)) / 2. */
static void ffn_forward_is_fc2_of_erf_gelu_of_fc1(void **state) {
    Fixture *f = *state;
    Ffn ffn;
    ffn_init(&ffn, (FfnConfig){.dim = 1, .hidden = 1}, &f->params, "ffn", &f->rng);
    set_values(ffn.fc1.weight, VALUES(2));
    set_values(ffn.fc1.bias, VALUES(0));
    set_values(ffn.fc2.weight, VALUES(3));
    set_values(ffn.fc2.bias, VALUES(1));
    Tensor *x = tensor_of(2, (int[]){1, 1}, VALUES(0.5), 0);
    Tensor *y = ffn_forward(f->tape, &ffn, x);
    double expected = 3 * (1 + erf(1 / sqrt(2.0))) / 2 + 1;
    assert_close(&expected, y->data, 1, TOL, "ffn y");
    tensor_free(x);
}

/* ---- attention ------------------------------------------------------------------------- */

static void attention_has_qkv_and_proj_as_pytorch(void **state) {
    Fixture *f = *state;
    Attention attn;
    attention_init(&attn, (AttentionConfig){.dim = 6, .heads = 2}, &f->params, "attn", &f->rng);
    assert_int_equal(f->params.count, 4);
    assert_param(&f->params, 0, "attn.qkv.weight", 2, (int[]){18, 6});
    assert_param(&f->params, 1, "attn.qkv.bias", 1, (int[]){18});
    assert_param(&f->params, 2, "attn.proj.weight", 2, (int[]){6, 6});
    assert_param(&f->params, 3, "attn.proj.bias", 1, (int[]){6});
    double bound = 1 / sqrt(6.0);
    for (long i = 0; i < attn.qkv.weight->size; i++)
        assert_true(fabs(attn.qkv.weight->data[i]) <= bound);
}

/* dim 2: W_q = W_k = I, W_v = the swap [[0, 1], [1, 0]], qkv.bias 0, proj = I + [0.5, -0.5]. */
static void set_hand_weights(Attention *attn) {
    set_values(attn->qkv.weight, VALUES(1, 0, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0));
    set_values(attn->qkv.bias, VALUES(0, 0, 0, 0, 0, 0));
    set_values(attn->proj.weight, VALUES(1, 0, 0, 1));
    set_values(attn->proj.bias, VALUES(0.5, -0.5));
}

/* heads = 1, N = 2, x = [[1, 0], [0, 2]]: q = k = x, v = [[0, 1], [2, 0]], dh = 2.
 * scores = q k^T / sqrt 2 = [[1, 0], [0, 4]] / sqrt 2, so row 0's probabilities are
 * (s0, 1 - s0) with s0 = sigmoid(1/sqrt 2), row 1's (1 - s1, s1) with s1 = sigmoid(4/sqrt 2).
 * o0 = s0 v0 + (1 - s0) v1 = [2 (1 - s0), s0], o1 = [2 s1, 1 - s1]; y = o + [0.5, -0.5].
 * Causal: row 0 sees only itself, o0 = v0 = [0, 1]; row 1 is unchanged. */
static void attention_one_head_two_tokens_by_hand(void **state) {
    Fixture *f = *state;
    double s0 = sigmoid(1 / sqrt(2.0)), s1 = sigmoid(4 / sqrt(2.0));
    Tensor *x = tensor_of(3, (int[]){1, 2, 2}, VALUES(1, 0, 0, 2), 0);
    for (int causal = 0; causal < 2; causal++) {
        Attention attn;
        char prefix[16];
        snprintf(prefix, sizeof prefix, "attn%d", causal);
        attention_init(&attn, (AttentionConfig){2, 1, causal}, &f->params, prefix, &f->rng);
        set_hand_weights(&attn);
        Tensor *probs = NULL;
        Tensor *y = attention_forward(f->tape, &attn, x, x, &probs);
        double p0 = causal ? 1 : s0;
        double want_probs[4] = {p0, 1 - p0, 1 - s1, s1};
        double want_y[4] = {2 * (1 - p0) + 0.5, p0 - 0.5, 2 * s1 + 0.5, 1 - s1 - 0.5};
        assert_int_equal(probs->ndim, 4);
        assert_close(want_probs, probs->data, 4, TOL, causal ? "causal probs" : "probs");
        assert_close(want_y, y->data, 4, TOL, causal ? "causal y" : "y");
    }
    tensor_free(x);
}

/* heads = 2, dim 2 (dh = 1, scale 1): head h sees feature h only. Same weights and x.
 * Head 0: q = k = [1, 0], v = [0, 2]: row 0 softmax(1, 0) -> o = 2 (1 - sigmoid 1); row 1
 * softmax(0, 0) -> o = 1. Head 1: q = k = [0, 2], v = [1, 0]: row 0 -> 1/2; row 1 softmax(0, 4)
 * -> o = 1 - sigmoid 4. Heads side by side: o = [[h0 row 0, h1 row 0], [h0 row 1, h1 row 1]]. */
static void attention_two_heads_use_their_own_columns(void **state) {
    Fixture *f = *state;
    Attention attn;
    attention_init(&attn, (AttentionConfig){2, 2, 0}, &f->params, "attn", &f->rng);
    set_hand_weights(&attn);
    Tensor *x = tensor_of(3, (int[]){1, 2, 2}, VALUES(1, 0, 0, 2), 0);
    Tensor *probs = NULL;
    Tensor *y = attention_forward(f->tape, &attn, x, x, &probs);
    double want_y[4] = {2 * (1 - sigmoid(1)) + 0.5, 0.5 - 0.5, 1 + 0.5, 1 - sigmoid(4) - 0.5};
    assert_close(want_y, y->data, 4, TOL, "two-head y");
    assert_int_equal(probs->shape[1], 2);
    double want_probs[8] = {sigmoid(1), 1 - sigmoid(1), 0.5,       0.5, 0.5,
                            0.5,        1 - sigmoid(4), sigmoid(4)};
    assert_close(want_probs, probs->data, 8, TOL, "two-head probs (B, H, N, N)");
    tensor_free(x);
}

static void attention_probs_rows_sum_to_one_and_causal_upper_triangle_is_zero(void **state) {
    Fixture *f = *state;
    const int B = 2, H = 3, N = 5, D = 6;
    Attention attn;
    attention_init(&attn, (AttentionConfig){D, H, 1}, &f->params, "attn", &f->rng);
    Tensor *x = tensor_of(3, (int[]){B, N, D}, ZEROS, 0);
    fill_random(x, &f->rng);
    Tensor *probs = NULL;
    attention_forward(f->tape, &attn, x, x, &probs);
    int want_shape[4] = {B, H, N, N};
    for (int d = 0; d < 4; d++) assert_int_equal(probs->shape[d], want_shape[d]);
    for (long row = 0; row < (long)B * H * N; row++) {
        const real *p = probs->data + row * N;
        int i = (int)(row % N);
        double sum = 0;
        for (int j = 0; j < N; j++) {
            sum += p[j];
            if (j > i)
                assert_true(p[j] == 0);
            else
                assert_true(p[j] > 0);
        }
        assert_close(((double[]){1}), &(real){(real)sum}, 1, TOL, "row sum");
    }
    tensor_free(x);
}

/* Changing token j must leave every output i < j bit for bit the same (masked probabilities are
 * exactly 0), and change the outputs i >= j. */
static void causal_attention_output_ignores_later_tokens(void **state) {
    Fixture *f = *state;
    const int N = 5, D = 4, changed = 3;
    Attention attn;
    attention_init(&attn, (AttentionConfig){D, 2, 1}, &f->params, "attn", &f->rng);
    Tensor *x = tensor_of(3, (int[]){1, N, D}, ZEROS, 0);
    fill_random(x, &f->rng);
    Tensor *before = attention_forward(f->tape, &attn, x, x, NULL);
    for (int d = 0; d < D; d++) x->data[changed * D + d] += 1;
    Tensor *after = attention_forward(f->tape, &attn, x, x, NULL);
    for (int i = 0; i < N; i++) {
        int same = memcmp(before->data + i * D, after->data + i * D, D * sizeof(real)) == 0;
        assert_int_equal(same, i < changed);
    }
    tensor_free(x);
}

/* x_q != x_kv with equal contents must give self-attention's output, and gradients that add up
 * to self-attention's: dx = dx_q + dx_kv, the same parameter gradients. */
static void cross_attention_with_equal_inputs_matches_self_attention(void **state) {
    Fixture *f = *state;
    const int B = 2, N = 3, D = 6;
    Attention attn;
    attention_init(&attn, (AttentionConfig){D, 3, 1}, &f->params, "attn", &f->rng);
    int shape[3] = {B, N, D};
    Tensor *x = tensor_of(3, shape, ZEROS, 1);
    fill_random(x, &f->rng);
    Tensor *x_q = tensor_of(3, shape, ZEROS, 1), *x_kv = tensor_of(3, shape, ZEROS, 1);
    memcpy(x_q->data, x->data, x->size * sizeof(real));
    memcpy(x_kv->data, x->data, x->size * sizeof(real));

    Tensor *y_self = attention_forward(f->tape, &attn, x, x, NULL);
    Tensor *y_cross = attention_forward(f->tape, &attn, x_q, x_kv, NULL);
    double want[36];
    for (long i = 0; i < y_self->size; i++) want[i] = y_self->data[i];
    assert_close(want, y_cross->data, y_self->size, 10 * TOL, "cross y");

    /* Backward each alone; compare the parameter gradients, then the input gradients. */
    double grads[4][18 * 6];
    Tensor *params[4] = {attn.qkv.weight, attn.qkv.bias, attn.proj.weight, attn.proj.bias};
    tape_backward(f->tape, op_sum_all(f->tape, op_mul(f->tape, y_self, y_self)));
    for (int p = 0; p < 4; p++)
        for (long i = 0; i < params[p]->size; i++) grads[p][i] = params[p]->grad[i];
    params_zero_grad(&f->params);
    tape_reset(f->tape);
    y_cross = attention_forward(f->tape, &attn, x_q, x_kv, NULL);
    tape_backward(f->tape, op_sum_all(f->tape, op_mul(f->tape, y_cross, y_cross)));
    for (int p = 0; p < 4; p++)
        assert_close(grads[p], params[p]->grad, params[p]->size, 10 * TOL, f->params.items[p].name);
    double dx[36];
    for (long i = 0; i < x->size; i++) dx[i] = x->grad[i];
    for (long i = 0; i < x->size; i++) x_q->grad[i] += x_kv->grad[i];
    assert_close(dx, x_q->grad, x->size, 10 * TOL, "dx_q + dx_kv");
    tensor_free(x);
    tensor_free(x_q);
    tensor_free(x_kv);
}

/* ---- block ------------------------------------------------------------------------------ */

static void block_names_follow_the_pytorch_module_tree(void **state) {
    Fixture *f = *state;
    Block block;
    block_init(&block, (BlockConfig){.dim = 8, .heads = 2}, &f->params, "blocks.0", &f->rng);
    const char *names[12] = {"ln1.weight",    "ln1.bias",         "attn.qkv.weight",
                             "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
                             "ln2.weight",    "ln2.bias",         "ffn.fc1.weight",
                             "ffn.fc1.bias",  "ffn.fc2.weight",   "ffn.fc2.bias"};
    const int shapes[12][2] = {{8}, {8}, {24, 8}, {24}, {8, 8},  {8},
                               {8}, {8}, {32, 8}, {32}, {8, 32}, {8}};
    assert_int_equal(f->params.count, 12);
    for (int p = 0; p < 12; p++) {
        char full[PARAM_NAME_MAX];
        snprintf(full, sizeof full, "blocks.0.%s", names[p]);
        assert_param(&f->params, p, full, shapes[p][1] ? 2 : 1, shapes[p]);
    }
    assert_int_equal(block.config.ffn_hidden, 32); /* 0 means 4 * dim */
}

/* With attn.proj and ffn.fc2 zeroed, both branches add 0: the block is the identity, which
 * shows the residual wiring. With random weights the shape is still (B, N, dim). */
static void block_is_residual(void **state) {
    Fixture *f = *state;
    Block block;
    block_init(&block, (BlockConfig){.dim = 4, .heads = 2, .causal = 1}, &f->params, "b", &f->rng);
    Tensor *x = tensor_of(3, (int[]){2, 3, 4}, ZEROS, 0);
    fill_random(x, &f->rng);
    Tensor *probs = NULL;
    Tensor *y = block_forward(f->tape, &block, x, &probs);
    assert_int_equal(y->ndim, 3);
    for (int d = 0; d < 3; d++) assert_int_equal(y->shape[d], x->shape[d]);
    assert_int_equal(probs->shape[1], 2);

    Tensor *zeroed[4] = {block.attn.proj.weight, block.attn.proj.bias, block.ffn.fc2.weight,
                         block.ffn.fc2.bias};
    for (int p = 0; p < 4; p++) tensor_fill(zeroed[p], 0);
    y = block_forward(f->tape, &block, x, NULL);
    double want[24];
    for (long i = 0; i < x->size; i++) want[i] = x->data[i];
    assert_close(want, y->data, x->size, 0, "identity block");
    tensor_free(x);
}

/* ---- conv ------------------------------------------------------------------------------- */

static void conv_weights_are_out_by_in_over_groups_by_kernel(void **state) {
    Fixture *f = *state;
    Conv c1, c2;
    conv1d_init(&c1, (ConvConfig){.in = 4, .out = 6, .kernel = 3, .groups = 2, .bias = 1},
                &f->params, "c1", &f->rng);
    conv2d_init(&c2, (ConvConfig){.in = 3, .out = 2, .kernel = 5}, &f->params, "c2", &f->rng);
    assert_int_equal(f->params.count, 3);
    assert_param(&f->params, 0, "c1.weight", 3, (int[]){6, 2, 3});
    assert_param(&f->params, 1, "c1.bias", 1, (int[]){6});
    assert_param(&f->params, 2, "c2.weight", 4, (int[]){2, 3, 5, 5});
    assert_null(c2.bias);
    assert_int_equal(c1.config.stride, 1); /* defaults filled in */
    double bound1 = 1 / sqrt(2.0 * 3), bound2 = 1 / sqrt(3.0 * 25), max2 = 0;
    for (long i = 0; i < c1.weight->size; i++) assert_true(fabs(c1.weight->data[i]) <= bound1);
    for (long i = 0; i < c1.bias->size; i++) assert_true(fabs(c1.bias->data[i]) <= bound1);
    for (long i = 0; i < c2.weight->size; i++) max2 = fmax(max2, fabs(c2.weight->data[i]));
    assert_true(max2 <= bound2 && max2 > 0.9 * bound2);
}

/* Kernel [1, 2], x = [1, 2, 3]. Causal: padded [0, 1, 2, 3], y_i = x_(i-1) + 2 x_i = [2, 5, 8].
 * padding = 1: [0, 1, 2, 3, 0] -> [2, 5, 8, 3]. */
static void conv1d_forward_by_hand_and_causal(void **state) {
    Fixture *f = *state;
    Conv causal, padded;
    conv1d_init(&causal, (ConvConfig){.in = 1, .out = 1, .kernel = 2, .causal = 1}, &f->params,
                "causal", &f->rng);
    conv1d_init(&padded, (ConvConfig){.in = 1, .out = 1, .kernel = 2, .padding = 1, .bias = 1},
                &f->params, "padded", &f->rng);
    set_values(causal.weight, VALUES(1, 2));
    set_values(padded.weight, VALUES(1, 2));
    set_values(padded.bias, VALUES(10));
    Tensor *x = tensor_of(3, (int[]){1, 1, 3}, VALUES(1, 2, 3), 0);
    Tensor *y = conv1d_forward(f->tape, &causal, x);
    assert_int_equal(y->shape[2], 3);
    assert_close(((double[]){2, 5, 8}), y->data, 3, TOL, "causal conv1d");
    y = conv1d_forward(f->tape, &padded, x);
    assert_int_equal(y->shape[2], 4);
    assert_close(((double[]){12, 15, 18, 13}), y->data, 4, TOL, "padded conv1d");
    tensor_free(x);
}

static void causal_conv1d_output_ignores_later_inputs(void **state) {
    Fixture *f = *state;
    Conv conv;
    conv1d_init(&conv, (ConvConfig){.in = 2, .out = 3, .kernel = 3, .bias = 1, .causal = 1},
                &f->params, "conv", &f->rng);
    const int L = 6, changed = 4;
    Tensor *x = tensor_of(3, (int[]){1, 2, L}, ZEROS, 0);
    fill_random(x, &f->rng);
    Tensor *before = conv1d_forward(f->tape, &conv, x);
    x->data[changed] += 1;     /* channel 0 */
    x->data[L + changed] -= 1; /* channel 1 */
    Tensor *after = conv1d_forward(f->tape, &conv, x);
    for (int o = 0; o < 3; o++)
        for (int i = 0; i < L; i++)
            assert_int_equal(before->data[o * L + i] == after->data[o * L + i], i < changed);
    tensor_free(x);
}

/* Kernel 2x2 of ones over x = 1..9 (3x3): each output is a 2x2 window sum, plus bias 0.5. */
static void conv2d_forward_sums_windows(void **state) {
    Fixture *f = *state;
    Conv conv;
    conv2d_init(&conv, (ConvConfig){.in = 1, .out = 1, .kernel = 2, .bias = 1}, &f->params, "conv",
                &f->rng);
    tensor_fill(conv.weight, 1);
    tensor_fill(conv.bias, 0.5);
    Tensor *x = tensor_of(4, (int[]){1, 1, 3, 3}, VALUES(1, 2, 3, 4, 5, 6, 7, 8, 9), 0);
    Tensor *y = conv2d_forward(f->tape, &conv, x);
    assert_int_equal(y->shape[2], 2);
    assert_int_equal(y->shape[3], 2);
    assert_close(((double[]){12.5, 16.5, 24.5, 28.5}), y->data, 4, TOL, "conv2d windows");
    tensor_free(x);
}

/* ---- bad configs and bad inputs --------------------------------------------------------- */

static void bad_configs_fail_naming_layer_and_key(void **state) {
    Fixture *f = *state;
    ParamSet *p = &f->params;
    Rng *rng = &f->rng;
    Linear fc;
    EXPECT_FAIL(linear_init(&fc, (LinearConfig){0, 3, 1}, p, "fc", rng), "linear: in=0");
    EXPECT_FAIL(linear_init(&fc, (LinearConfig){3, -1, 1}, p, "fc", rng), "linear: out=-1");
    LayerNorm ln;
    EXPECT_FAIL(layernorm_init(&ln, (LayerNormConfig){0, 0}, p, "ln"), "layernorm: dim=0");
    EXPECT_FAIL(layernorm_init(&ln, (LayerNormConfig){4, -1}, p, "ln"), "layernorm: eps=-1");
    Embedding emb;
    EXPECT_FAIL(embedding_init(&emb, (EmbeddingConfig){0, 4}, p, "e", rng), "embedding: vocab=0");
    EXPECT_FAIL(embedding_init(&emb, (EmbeddingConfig){4, 0}, p, "e", rng), "embedding: dim=0");
    Ffn ffn;
    EXPECT_FAIL(ffn_init(&ffn, (FfnConfig){0, 4}, p, "ffn", rng), "ffn: dim=0");
    EXPECT_FAIL(ffn_init(&ffn, (FfnConfig){4, 0}, p, "ffn", rng), "ffn: hidden=0");
    Attention attn;
    EXPECT_FAIL(attention_init(&attn, (AttentionConfig){64, 3, 0}, p, "a", rng),
                "attention: heads=3 does not divide dim=64");
    EXPECT_FAIL(attention_init(&attn, (AttentionConfig){64, 0, 0}, p, "a", rng),
                "attention: heads=0");
    EXPECT_FAIL(attention_init(&attn, (AttentionConfig){0, 1, 0}, p, "a", rng), "attention: dim=0");
    Block block;
    EXPECT_FAIL(block_init(&block, (BlockConfig){10, 4, 0, 0}, p, "b", rng),
                "block: heads=4 does not divide dim=10");
    EXPECT_FAIL(block_init(&block, (BlockConfig){8, 2, -1, 0}, p, "b", rng),
                "block: ffn_hidden=-1");
    EXPECT_FAIL(block_init(&block, (BlockConfig){0, 1, 0, 0}, p, "b", rng), "block: dim=0");
    EXPECT_FAIL(block_init(&block, (BlockConfig){8, 0, 0, 0}, p, "b", rng), "block: heads=0");
    assert_int_equal(p->count, 0); /* nothing half-created */
}

static void bad_conv_configs_fail(void **state) {
    Fixture *f = *state;
    ParamSet *p = &f->params;
    Rng *rng = &f->rng;
    Conv conv;
#define BAD_CONV1D(text, ...)                                                                      \
    EXPECT_FAIL(conv1d_init(&conv, (ConvConfig){__VA_ARGS__}, p, "c", rng), text)
    BAD_CONV1D("conv1d: in=0", .in = 0, .out = 2, .kernel = 3);
    BAD_CONV1D("conv1d: out=0", .in = 2, .out = 0, .kernel = 3);
    BAD_CONV1D("conv1d: kernel=0", .in = 2, .out = 2, .kernel = 0);
    BAD_CONV1D("conv1d: stride=-1", .in = 2, .out = 2, .kernel = 3, .stride = -1);
    BAD_CONV1D("conv1d: padding=-2", .in = 2, .out = 2, .kernel = 3, .padding = -2);
    BAD_CONV1D("conv1d: groups=-1", .in = 2, .out = 2, .kernel = 3, .groups = -1);
    BAD_CONV1D("conv1d: in=6 is not divisible by groups=4", .in = 6, .out = 4, .kernel = 3,
               .groups = 4);
    BAD_CONV1D("conv1d: out=6 is not divisible by groups=4", .in = 4, .out = 6, .kernel = 3,
               .groups = 4);
    BAD_CONV1D("conv1d: causal=1 pads kernel-1 on the left itself; padding=1 must be 0", .in = 2,
               .out = 2, .kernel = 3, .padding = 1, .causal = 1);
#undef BAD_CONV1D
    EXPECT_FAIL(
        conv2d_init(&conv, (ConvConfig){.in = 2, .out = 2, .kernel = 3, .causal = 1}, p, "c", rng),
        "conv2d: causal=1 is for conv1d only");
    EXPECT_FAIL(
        conv2d_init(&conv, (ConvConfig){.in = 3, .out = 2, .kernel = 3, .groups = 2}, p, "c", rng),
        "conv2d: in=3 is not divisible by groups=2");
    EXPECT_FAIL(conv2d_init(&conv, (ConvConfig){.in = 2, .out = 2, .kernel = -3}, p, "c", rng),
                "conv2d: kernel=-3");
    assert_int_equal(p->count, 0);
}

static void bad_inputs_fail_naming_layer_and_shapes(void **state) {
    Fixture *f = *state;
    Tape *tape = f->tape;
    Linear fc;
    linear_init(&fc, (LinearConfig){4, 2, 1}, &f->params, "fc", &f->rng);
    LayerNorm ln;
    layernorm_init(&ln, (LayerNormConfig){4, 0}, &f->params, "ln");
    Ffn ffn;
    ffn_init(&ffn, (FfnConfig){4, 8}, &f->params, "ffn", &f->rng);
    Attention attn;
    attention_init(&attn, (AttentionConfig){4, 2, 1}, &f->params, "attn", &f->rng);
    Block block;
    block_init(&block, (BlockConfig){4, 2, 0, 1}, &f->params, "block", &f->rng);
    Tensor *x23 = tensor_create(2, (int[]){2, 3}, 0);
    Tensor *x234 = tensor_create(3, (int[]){2, 3, 4}, 0);
    Tensor *x254 = tensor_create(3, (int[]){2, 5, 4}, 0);
    Tensor *x4 = tensor_create(1, (int[]){4}, 0);
    Tensor *scalar = tensor_create(0, NULL, 0);

    EXPECT_FAIL(linear_forward(tape, &fc, x23), "linear: x must be (..., 4), got shape (2, 3)");
    EXPECT_FAIL(linear_forward(tape, &fc, scalar), "linear: x must be (..., 4), got shape ()");
    EXPECT_FAIL(layernorm_forward(tape, &ln, x23),
                "layernorm: x must be (..., 4), got shape (2, 3)");
    EXPECT_FAIL(ffn_forward(tape, &ffn, x23), "ffn: x must be (..., 4), got shape (2, 3)");
    EXPECT_FAIL(attention_forward(tape, &attn, x4, x4, NULL),
                "attention: x_q must be (B, N, 4), got shape (4)");
    EXPECT_FAIL(attention_forward(tape, &attn, x23, x23, NULL), "attention: x_q must be (B, N, 4)");
    EXPECT_FAIL(attention_forward(tape, &attn, x234, x254, NULL),
                "attention: x_kv shape (2, 5, 4) differs from x_q shape (2, 3, 4)");
    EXPECT_FAIL(block_forward(tape, &block, x4, NULL), "block: x must be (B, N, 4), got shape (4)");
    tensor_free(x23);
    tensor_free(x234);
    tensor_free(x254);
    tensor_free(x4);
    tensor_free(scalar);
}

static void bad_embedding_and_conv_inputs_fail(void **state) {
    Fixture *f = *state;
    Tape *tape = f->tape;
    Embedding emb;
    embedding_init(&emb, (EmbeddingConfig){5, 2}, &f->params, "emb", &f->rng);
    EXPECT_FAIL(embedding_forward(tape, &emb, (int[]){1, 5}, 1, (int[]){2}), "out of range [0, 5)");
    EXPECT_FAIL(embedding_forward(tape, &emb, (int[]){-1}, 1, (int[]){1}), "out of range [0, 5)");
    EXPECT_FAIL(embedding_positions(tape, &emb, 6),
                "embedding: 6 positions requested, the table holds 1 to 5");
    EXPECT_FAIL(embedding_positions(tape, &emb, 0), "embedding: 0 positions requested");

    Conv c1, c2;
    conv1d_init(&c1, (ConvConfig){.in = 2, .out = 2, .kernel = 3}, &f->params, "c1", &f->rng);
    conv2d_init(&c2, (ConvConfig){.in = 2, .out = 2, .kernel = 3, .padding = 1}, &f->params, "c2",
                &f->rng);
    Tensor *x_125 = tensor_create(3, (int[]){1, 2, 5}, 0);
    Tensor *x_135 = tensor_create(3, (int[]){1, 3, 5}, 0);
    Tensor *x_122 = tensor_create(3, (int[]){1, 2, 2}, 0);
    Tensor *x_1200 = tensor_create(4, (int[]){1, 2, 1, 0}, 0);
    EXPECT_FAIL(conv1d_forward(tape, &c1, x_135),
                "conv1d: x must be (B, 2, L), got shape (1, 3, 5)");
    EXPECT_FAIL(conv1d_forward(tape, &c1, x_1200), "conv1d: x must be (B, 2, L)");
    EXPECT_FAIL(conv1d_forward(tape, &c1, x_122),
                "conv1d: x of shape (1, 2, 2) padded by 0+0 is shorter than kernel=3");
    EXPECT_FAIL(conv2d_forward(tape, &c2, x_125), "conv2d: x must be (B, 2, H, W), got shape");
    EXPECT_FAIL(conv2d_forward(tape, &c2, x_1200),
                "conv2d: x of shape (1, 2, 1, 0) padded by 1 is smaller than kernel=3");
    tensor_free(x_125);
    tensor_free(x_135);
    tensor_free(x_122);
    tensor_free(x_1200);
}

#define TEST(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        TEST(linear_has_weight_out_by_in_and_bias_out),
        TEST(linear_init_is_uniform_within_one_over_sqrt_in),
        TEST(linear_draws_weight_then_bias_row_major),
        TEST(linear_forward_is_x_times_weight_transposed_plus_bias),
        TEST(linear_backward_gives_weight_bias_and_input_gradients),
        TEST(layernorm_starts_as_ones_and_zeros),
        TEST(layernorm_forward_normalises_the_last_axis),
        TEST(embedding_is_vocab_by_dim_standard_normal),
        TEST(embedding_looks_up_rows_and_positions),
        TEST(ffn_has_fc1_hidden_by_dim_and_fc2_dim_by_hidden),
        TEST(ffn_forward_is_fc2_of_erf_gelu_of_fc1),
        TEST(attention_has_qkv_and_proj_as_pytorch),
        TEST(attention_one_head_two_tokens_by_hand),
        TEST(attention_two_heads_use_their_own_columns),
        TEST(attention_probs_rows_sum_to_one_and_causal_upper_triangle_is_zero),
        TEST(causal_attention_output_ignores_later_tokens),
        TEST(cross_attention_with_equal_inputs_matches_self_attention),
        TEST(block_names_follow_the_pytorch_module_tree),
        TEST(block_is_residual),
        TEST(conv_weights_are_out_by_in_over_groups_by_kernel),
        TEST(conv1d_forward_by_hand_and_causal),
        TEST(causal_conv1d_output_ignores_later_inputs),
        TEST(conv2d_forward_sums_windows),
        TEST(bad_configs_fail_naming_layer_and_key),
        TEST(bad_conv_configs_fail),
        TEST(bad_inputs_fail_naming_layer_and_shapes),
        TEST(bad_embedding_and_conv_inputs_fail),
    };
    return cmocka_run_group_tests_name("layers (" REAL_NAME ")", tests, NULL, NULL);
}
