/* 04-attention.c - causal multi-head self-attention written out with ops, one head at a time,
 * and checked against the library's Attention layer: forward, probabilities and gradients.
 * Float64. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "lesson.h"
#include "ops.h"

/* The lesson's sizes: the text's characters are the tokens. */
#define TEXT "hello world"
enum { N = sizeof TEXT - 1, D = 12, HEADS = 2, MAX_HEADS = 8 };

/* Attention from scratch. x (B, N, D) -> y (B, N, D); probs[h] (B, N, N) for each head. The
 * parameters are the layer's: qkv.weight (3D, D), qkv.bias (3D), proj.weight (D, D),
 * proj.bias (D). Head h owns features [h dh, (h+1) dh) of q, of k and of v, dh = D / heads. */
static Tensor *attention_from_scratch(Tape *tape, const Attention *layer, Tensor *x,
                                      Tensor **probs) {
    int dim = layer->config.dim, heads = layer->config.heads, dh = dim / heads;
    int n = x->shape[1];
    /* 1. One linear map gives queries, keys and values: [q | k | v] = x W^T + b, (B, N, 3D). */
    Tensor *qkv = op_matmul(tape, x, layer->qkv.weight, 0, 1);
    qkv = op_add(tape, qkv, layer->qkv.bias);
    /* 2. The causal mask, (N, N): 1 where key j comes after query i. */
    Tensor *future = tape_tensor(tape, 2, (int[]){n, n});
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) future->data[i * n + j] = j > i;
    Tensor *outputs[MAX_HEADS];
    for (int h = 0; h < HEADS; h++) {
        Tensor *q = op_slice(tape, qkv, 2, h * dh, (h + 1) * dh); /* (B, N, dh) */
        Tensor *k = op_slice(tape, qkv, 2, dim + h * dh, dim + (h + 1) * dh);
        Tensor *v = op_slice(tape, qkv, 2, 2 * dim + h * dh, 2 * dim + (h + 1) * dh);
        /* 3. Scores: how well query i matches key j, q_i . k_j / sqrt(dh), (B, N, N). The
         * scale keeps their spread from growing with dh (a dot product of dh terms). */
        Tensor *scores = op_scale(tape, op_matmul(tape, q, k, 0, 1), 1 / sqrt(dh));
        /* 4. No looking ahead: those scores become -1e30, and exp(-1e30 - max) is exactly 0. */
        scores = op_masked_fill(tape, scores, future, -1e30);
        /* 5. Softmax over the keys j: each row is a probability distribution. */
        probs[h] = op_softmax(tape, scores);
        /* 6. Query i's output: the values averaged with those probabilities, (B, N, dh). */
        outputs[h] = op_matmul(tape, probs[h], v, 0, 0);
    }
    /* 7. The heads side by side, (B, N, D), then a last linear map mixes them. */
    Tensor *o = op_concat(tape, outputs, heads, 2);
    return op_add(tape, op_matmul(tape, o, layer->proj.weight, 0, 1), layer->proj.bias);
}

/* A character as a tick label: a space drawn as a visible "open box". */
static const char *tick(char c) {
    static char label[2];
    if (c == ' ') return "\xe2\x90\xa3";
    label[0] = c;
    return label;
}

static double max_difference(const real *a, const real *b, long n) {
    double worst = 0;
    for (long i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    return worst;
}

int main(void) {
    lesson_begin("04 Attention from scratch");
    say("Self-attention lets every token gather information from the others: token i asks a "
        "question (its query), every token j offers a label (its key) and a content (its value), "
        "and i receives the contents averaged with weights given by how well its query matches "
        "each key. We write it with the ops of lessons 01-03, then check it against the "
        "library's Attention layer (layers/attention.h) number for number.");

    // %%
    section("1. Tokens");
    say("Eleven characters, each turned into a vector of D = %d numbers by a random table (one "
        "row per byte value). A language model learns that table (lesson 06); here it is random, "
        "which is enough to follow the arithmetic.",
        D);
    const char *text = TEXT;
    Rng rng;
    rng_seed(&rng, 4);
    real table[256][D];
    for (int c = 0; c < 256; c++)
        for (int d = 0; d < D; d++) table[c][d] = rng_normal(&rng);
    Tensor *x = tensor_create(3, (int[]){1, N, D}, 1);
    for (int i = 0; i < N; i++)
        memcpy(x->data + i * D, table[(unsigned char)text[i]], sizeof table[0]);
    printf("text \"%s\": x has shape (1, %d, %d)\n", text, N, D);
    print_vector("x[0] 'h'", x->data, D, 3);

    // %%
    section("2. The computation");
    say("The layer's parameters come from attention_init (PyTorch's initialisation), causal, "
        "with %d heads of %d features. attention_from_scratch, above, runs steps 1-7 with them. "
        "Here are head 0's probabilities: row i is query i's distribution over the keys.",
        HEADS, D / HEADS);
    ParamSet params = {0};
    Attention layer;
    attention_init(&layer, (AttentionConfig){.dim = D, .heads = HEADS, .causal = 1}, &params,
                   "attn", &rng);
    Tape *tape = tape_create();
    Tensor *probs[MAX_HEADS];
    Tensor *y = attention_from_scratch(tape, &layer, x, probs);
    print_matrix("probs, head 0 (rows: queries 'h' 'e' 'l' ..., columns: keys)", probs[0]->data, N,
                 N, 3);
    double worst_row_error = 0;
    for (int i = 0; i < N; i++) {
        double row_sum = 0;
        for (int j = 0; j < N; j++) row_sum += probs[0]->data[i * N + j];
        worst_row_error = fmax(worst_row_error, fabs(row_sum - 1));
    }
    printf("every row sums to 1 within %.1e; everything above the diagonal is exactly 0\n",
           worst_row_error);
    const real *last_row = probs[0]->data + (N - 1) * N;
    say("Look at the last row, query 'd'. Keys 2, 3 and 9 are all 'l', and get %.6f, %.6f and "
        "%.6f: the same. A key is only its content; nothing here knows where a token is. That "
        "is why language models add a position embedding to x.",
        last_row[2], last_row[3], last_row[9]);

    // %%
    section("3. Checked against the library's layer");
    say("attention_forward computes the same function its own way (all heads in one batched "
        "product, the scale applied to q rather than to the scores). Both run on the same x and "
        "parameters, and both are differentiated from the same random seed r, that is the "
        "gradient of sum(r * y).");
    real y_scratch[N * D], probs_scratch[HEADS][N * N], dx_scratch[N * D];
    memcpy(y_scratch, y->data, sizeof y_scratch);
    for (int h = 0; h < HEADS; h++)
        memcpy(probs_scratch[h], probs[h]->data, sizeof probs_scratch[h]);
    real seed[N * D];
    for (int i = 0; i < N * D; i++) seed[i] = rng_normal(&rng);
    tape_backward_from(tape, y, seed);
    memcpy(dx_scratch, x->grad, sizeof dx_scratch);
    real *dparams_scratch = malloc((size_t)params_count_elements(&params) * sizeof(real));
    for (int p = 0, offset = 0; p < params.count; offset += params.items[p++].tensor->size)
        memcpy(dparams_scratch + offset, params.items[p].tensor->grad,
               params.items[p].tensor->size * sizeof(real));
    tape_reset(tape);
    tensor_zero_grad(x), params_zero_grad(&params);

    Tensor *layer_probs;
    Tensor *y_layer = attention_forward(tape, &layer, x, x, &layer_probs); /* (B, H, N, N) */
    tape_backward_from(tape, y_layer, seed);
    printf("max |y from scratch - y of the layer|        %.1e\n",
           max_difference(y_scratch, y_layer->data, N * D));
    for (int h = 0; h < HEADS; h++)
        printf("max |probs head %d, scratch - layer|          %.1e\n", h,
               max_difference(probs_scratch[h], layer_probs->data + h * N * N, N * N));
    printf("max |dx, scratch - layer|                    %.1e\n",
           max_difference(dx_scratch, x->grad, N * D));
    for (int p = 0, offset = 0; p < params.count; offset += params.items[p++].tensor->size)
        printf("max |d%-17s scratch - layer|    %.1e\n", params.items[p].name,
               max_difference(dparams_scratch + offset, params.items[p].tensor->grad,
                              params.items[p].tensor->size));
    say("Agreement to the rounding of float64, forward and backward: the tape differentiated "
        "our version op by op, and got the layer's gradients.");

    // %%
    section("4. The picture");
    say("Both heads' probabilities as images: the causal triangle is the mask, and each head "
        "spreads its attention its own way, since each has its own slice of q, k and v.");
    Figure fig;
    lesson_figure_open(&fig, "04-attention-probs");
    FILE *cells = figure_data(&fig, "probs");
    for (int h = 0; h < HEADS; h++) {
        for (int i = 0; i < N; i++)
            for (int j = 0; j < N; j++)
                fprintf(cells, "%d %d %g\n", j, i, probs_scratch[h][i * N + j]);
        fprintf(cells, "\n\n"); /* gnuplot: the next block is "index h + 1" */
    }
    figure_script(&fig,
                  "set terminal @terminal size 1300,620\nset multiplot layout 1,2 title "
                  "'Causal attention probabilities on \"%s\" (random weights)'\n",
                  text);
    figure_script(&fig, "set xtics (");
    for (int j = 0; j < N; j++) figure_script(&fig, "%s'%s' %d", j ? ", " : "", tick(text[j]), j);
    figure_script(&fig, ")\nset ytics (");
    for (int i = 0; i < N; i++) figure_script(&fig, "%s'%s' %d", i ? ", " : "", tick(text[i]), i);
    figure_script(&fig,
                  ")\nset yrange [%g:-0.5]\nset xrange [-0.5:%g]\nset size ratio -1\n"
                  "set cbrange [0:1]\nset cblabel 'probability'\n"
                  "set palette defined (0 'white', 0.3 '#6baed6', 1 '#08306b')\n"
                  "set xlabel 'key j'\nset ylabel 'query i'\n",
                  N - 0.5, N - 0.5);
    for (int h = 0; h < HEADS; h++)
        figure_script(&fig,
                      "set title 'head %d'\nplot '%s' index %d using 1:2:3 with image "
                      "notitle\n",
                      h, figure_data_path(&fig, "probs"), h);
    figure_script(&fig, "unset multiplot\n");
    lesson_figure_show(&fig, "Each row is one query's distribution over the keys it may see");

    free(dparams_scratch);
    tape_free(tape);
    params_free(&params);
    tensor_free(x);
    return 0;
}
