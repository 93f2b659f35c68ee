/* 05-contextpool.c - ContextPool step by step on eight tokens: the predictor, the pooling
 * weights and support sizes, the Gaussian window, the pooled features - each printed, the
 * pooling redone by hand with plain loops, and everything checked against contextpool_forward.
 * Float64. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "contextpool.h"
#include "lesson.h"
#include "ops.h"

enum { N = 8, D = 2, SPIKE = 3 }; /* tokens, features, where feature 1 has its spike */

/* The pooling, by hand: y_i = sum_j g_ij w_j x_j / (sum_j g_ij w_j + eps), where
 * g_ij = exp(-(i-j)^2 / (2 s_i^2)) for |i - j| <= radius, else 0. Also returns the normalised
 * weights A_ij = g_ij w_j / (sum_j g_ij w_j + eps) (rows sum to 1 up to eps). */
static void pool_by_hand(const real *x, const real *w, const real *s, int radius, real g[N][N],
                         real A[N][N], real *y) {
    const double eps = 1e-6; /* the layer's, see docs/contextpool.md */
    for (int i = 0; i < N; i++) {
        double total = 0;
        for (int j = 0; j < N; j++) {
            g[i][j] = abs(i - j) <= radius ? exp(-(i - j) * (i - j) / (2 * s[i] * s[i])) : 0;
            total += g[i][j] * w[j];
        }
        for (int j = 0; j < N; j++) A[i][j] = g[i][j] * w[j] / (total + eps);
        for (int d = 0; d < D; d++) {
            double sum = 0;
            for (int j = 0; j < N; j++) sum += A[i][j] * x[j * D + d];
            y[i * D + d] = sum;
        }
    }
}

static double max_difference(const real *a, const real *b, long n) {
    double worst = 0;
    for (long i = 0; i < n; i++) worst = fmax(worst, fabs(a[i] - b[i]));
    return worst;
}

int main(void) {
    lesson_begin("05 ContextPool step by step");
    say("ContextPool (Huang et al., ICML 2022) replaces each token's feature by a weighted "
        "average of the features around it, before attention sees it. How far around - the "
        "support size s_i - and how much each neighbour counts - its pooling weight w_j - are "
        "predicted from the features, per token. N tokens in, N out. Here is every step on "
        "eight tokens, small enough to redo with a calculator.");

    // %%
    section("1. The input");
    say("Eight tokens with two features each. Feature 0 is the token's position j, so its "
        "pooled value is the centre of mass of the window a token pools. Feature 1 is a spike: 1 "
        "at token %d, 0 elsewhere, so its pooled value shows how far the spike spreads.",
        SPIKE);
    Tensor *x = tensor_create(3, (int[]){1, N, D}, 0);
    for (int j = 0; j < N; j++) {
        x->data[j * D + 0] = j;
        x->data[j * D + 1] = j == SPIKE;
    }
    real x_feature[D][N];
    for (int j = 0; j < N; j++)
        for (int d = 0; d < D; d++) x_feature[d][j] = x->data[j * D + d];
    print_vector("x feat 0", x_feature[0], N, 4);
    print_vector("x feat 1", x_feature[1], N, 4);

    // %%
    section("2. The predictor");
    say("A small convolutional network reads the sequence: a convolution of width 3 (each "
        "token sees itself and its two neighbours) to max(8, D/4) hidden channels, GELU, then a "
        "1x1 "
        "convolution to 2 channels, a and b. Convolutions run along the sequence, so here the "
        "features become channels first (the layer itself skips that transpose: op_conv1d_nlc "
        "reads the tokens as they are and gives the same numbers). We take the defaults but a "
        "small range for s, "
        "s in (0.5, 2), and a truncation radius of 2 tokens, so that the numbers below stay few.");
    ContextPoolConfig config = contextpool_default_config(D, 0);
    config.s_max = 2;
    config.radius = 2;
    ParamSet params = {0};
    Rng rng;
    rng_seed(&rng, 5);
    ContextPool layer;
    contextpool_init(&layer, config, &params, "pool", &rng);
    Tape *tape = tape_create();
    Tensor *channels_first = op_transpose(tape, x, 1, 2);                   /* (1, D, N) */
    Tensor *hidden = conv1d_forward(tape, &layer.pred0, channels_first);    /* (1, 8, N) */
    Tensor *ab = conv1d_forward(tape, &layer.pred2, op_gelu(tape, hidden)); /* (1, 2, N) */
    const real *a = ab->data, *b = ab->data + N;
    char shapes[4][64];
    printf("x %s -> channels first %s -> hidden %s -> [a, b] %s\n", TENSOR_SHAPE_STR(x, shapes[0]),
           TENSOR_SHAPE_STR(channels_first, shapes[1]), TENSOR_SHAPE_STR(hidden, shapes[2]),
           TENSOR_SHAPE_STR(ab, shapes[3]));
    print_vector("a", a, N, 4);
    print_vector("b", b, N, 4);

    // %%
    section("3. Pooling weights and support sizes");
    say("Each token j gets a pooling weight w_j = sigmoid(a_j) in (0, 1): how much it counts "
        "for whoever pools it. Each token i gets a support size s_i = s_min + (s_max - s_min) "
        "sigmoid(b_i): the width, in tokens, of the Gaussian it pools with. A freshly "
        "initialised predictor gives small a and b, so w starts near 0.5 and s near the middle "
        "of its range; training moves them (lesson 06).");
    real w[N], s[N];
    const ContextPoolConfig *c = &layer.config; /* with the defaults filled in */
    for (int j = 0; j < N; j++) {
        w[j] = 1 / (1 + exp(-a[j]));
        s[j] = c->s_min + (c->s_max - c->s_min) / (1 + exp(-b[j]));
    }
    print_vector("w", w, N, 4);
    print_vector("s", s, N, 4);

    // %%
    section("4. The Gaussian window and the pooling matrix");
    say("Token i weighs token j by g_ij = exp(-(i-j)^2 / (2 s_i^2)), a Gaussian of the "
        "distance with i's own width, cut to 0 beyond the radius (|i - j| > %d here). Multiplied "
        "by w_j and normalised per row, that gives the pooling matrix A: row i says how much "
        "of each token goes into y_i, and sums to 1. Near the ends a window is cut, and "
        "normalising redistributes its mass over the tokens that exist.",
        c->radius);
    real g[N][N], A[N][N], y[N * D];
    pool_by_hand(x->data, w, s, c->radius, g, A, y);
    print_matrix("g (row i: the Gaussian of token i)", &g[0][0], N, N, 3);
    print_matrix("A = g w / row sum", &A[0][0], N, N, 3);

    // %%
    section("5. The pooled features");
    say("y = A x: every token's features replaced by its window's weighted average.");
    real y_feature[D][N];
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) y_feature[d][i] = y[i * D + d];
    print_vector("x feat 0", x_feature[0], N, 4);
    print_vector("y feat 0", y_feature[0], N, 4);
    print_vector("x feat 1", x_feature[1], N, 4);
    print_vector("y feat 1", y_feature[1], N, 4);
    say("Token 0 has no left neighbours, so its centre of mass moves right (%.4f), and token %d "
        "moves left: the cut windows. The spike at token %d keeps %.4f of itself and lends the "
        "rest to its neighbours. By hand, for token %d, with the w and s printed above:",
        y_feature[0][0], N - 1, SPIKE, y_feature[1][SPIKE], SPIKE);
    const int i = SPIKE;
    double numerator = 0, denominator = 0;
    printf("token %d, s = %.4f:\n", i, s[i]);
    for (int j = i - c->radius; j <= i + c->radius; j++) {
        double gij = exp(-(i - j) * (i - j) / (2 * s[i] * s[i]));
        printf("  j = %d: g = exp(-%d / (2 * %.4f^2)) = %.4f, times w_j = %.4f: %.4f, "
               "x_j = (%g, %g)\n",
               j, (i - j) * (i - j), s[i], gij, w[j], gij * w[j], x->data[j * D],
               x->data[j * D + 1]);
        numerator += gij * w[j] * x->data[j * D];
        denominator += gij * w[j];
    }
    printf("  y_%d feature 0 = %.4f / (%.4f + 1e-6) = %.4f\n", i, numerator, denominator,
           numerator / (denominator + 1e-6));

    // %%
    section("6. Checked against the layer");
    say("contextpool_forward runs the whole layer: the same predictor, then the fused banded "
        "op (autograd/ops_contextpool.c); with config.composed = 1, the same formula written "
        "with ordinary tape ops and an explicit N x N matrix. Both against our loops:");
    ContextPoolAux aux;
    Tensor *y_fused = contextpool_forward(tape, &layer, x, &aux);
    ContextPool composed = layer; /* the same parameters, the other implementation */
    composed.config.composed = 1;
    Tensor *y_composed = contextpool_forward(tape, &composed, x, NULL);
    printf("max |w by hand - aux.weights|      %.1e\n", max_difference(w, aux.weights->data, N));
    printf("max |s by hand - aux.support|      %.1e\n", max_difference(s, aux.support->data, N));
    printf("max |y by hand - y fused|          %.1e\n", max_difference(y, y_fused->data, N * D));
    printf("max |y by hand - y composed|       %.1e\n", max_difference(y, y_composed->data, N * D));
    Figure fig;
    lesson_figure_open(&fig, "05-contextpool-matrix");
    FILE *cells = figure_data(&fig, "matrix");
    for (int row = 0; row < N; row++)
        for (int j = 0; j < N; j++) fprintf(cells, "%d %d %g\n", j, row, A[row][j]);
    figure_script(
        &fig,
        "set terminal @terminal size 900,800\n"
        "set title 'The pooling matrix A_{ij} = g_{ij} w_j / {/Symbol S}_j g_{ij} w_j "
        "(radius %d)'\n"
        "set xlabel 'token j (pooled from)'\nset ylabel 'token i (pooling)'\n"
        "set xrange [-0.5:%g]\nset yrange [%g:-0.5]\nset size ratio -1\n"
        "set xtics 1\nset ytics 1\nset cbrange [0:1]\nset cblabel 'share of token j in y_i'\n"
        "set palette defined (0 'white', 0.5 '#fdae61', 1 '#d7191c')\n"
        "plot '%s' using 1:2:3 with image notitle, "
        "'' using 1:2:($3 > 0 ? sprintf('%%.3f', $3) : '0') with labels notitle\n",
        c->radius, N - 0.5, N - 0.5, figure_data_path(&fig, "matrix"));
    lesson_figure_show(&fig, "Row i is how token i's pooled feature is made: a cut, "
                             "renormalised Gaussian times the weights w");

    // %%
    section("7. What the support size does");
    say("The last bias of the predictor, pred.2.bias[1], shifts every b, and so every s. "
        "Shifted by -6, s sits near s_min; by +6, near s_max.");
    const double shifts[3] = {-6, 0, 6};
    const double initial_bias = layer.pred2.bias->data[1];
    real spread[3][N], mean_s[3] = {0};
    printf("%-11s %14s %7s   y feat 1 for tokens 0..%d\n", "bias shift", "pred.2.bias[1]", "mean s",
           N - 1);
    for (int k = 0; k < 3; k++) {
        layer.pred2.bias->data[1] = initial_bias + shifts[k];
        Tensor *y_shifted = contextpool_forward(tape, &layer, x, &aux);
        for (int j = 0; j < N; j++) {
            spread[k][j] = y_shifted->data[j * D + 1];
            mean_s[k] += aux.support->data[j] / N;
        }
        printf("%+11.0f %14.4f %7.3f  ", shifts[k], layer.pred2.bias->data[1], mean_s[k]);
        for (int j = 0; j < N; j++) printf(" %.4f", spread[k][j]);
        printf("\n");
    }
    layer.pred2.bias->data[1] = initial_bias;
    say("With s near s_min the window is about one token wide, and %.0f%% of the spike stays "
        "where it was; near s_max only %.0f%% stays, the rest shared across the window of "
        "radius %d. Each token chooses its own s, so a model can keep some tokens sharp and "
        "blur others.",
        100 * spread[0][SPIKE], 100 * spread[2][SPIKE], c->radius);
    lesson_figure_open(&fig, "05-contextpool-support");
    FILE *lines = figure_data(&fig, "spread");
    for (int j = 0; j < N; j++)
        fprintf(lines, "%d %g %g %g %g\n", j, x_feature[1][j], spread[0][j], spread[1][j],
                spread[2][j]);
    figure_script(
        &fig,
        "set title 'A spike at token %d, pooled with small, initial and large support "
        "sizes'\n"
        "set xlabel 'token'\nset ylabel 'feature 1'\nset xtics 1\nset grid\n"
        "set xrange [-0.5:%d.5]\n"
        "set yrange [-0.05:1.1]\nset key top right\nset style fill solid 0.25\n"
        "plot '%s' using 1:2 with boxes lc 'gray' title 'x (input)', "
        "'' using 1:3 with linespoints pt 7 lw 2 title 'y, mean s = %.2f (bias - 6)', "
        "'' using 1:4 with linespoints pt 5 lw 2 title 'y, mean s = %.2f (as initialised)', "
        "'' using 1:5 with linespoints pt 9 lw 2 title 'y, mean s = %.2f (bias + 6)'\n",
        SPIKE, N - 1, figure_data_path(&fig, "spread"), mean_s[0], mean_s[1], mean_s[2]);
    lesson_figure_show(&fig, "The support size decides how far a token's content spreads");
    say("That is the whole layer. In a transformer block it sits before attention (its output "
        "feeds the keys and values, by default), and its predictor learns, per token, which "
        "context is worth pooling: lesson 06 watches that happen.");

    tape_free(tape);
    params_free(&params);
    tensor_free(x);
    return 0;
}
