/* 08-cost.c - what pooling and attention cost as the sequence grows: multiply-adds counted,
 * then time and memory measured for one forward and backward pass. Float32, the precision
 * models train in. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "attention.h"
#include "contextpool.h"
#include "lesson.h"
#include "ops.h"

enum { DIM = 64, HEADS = 4, N_LENGTHS = 5 };
static const int LENGTHS[N_LENGTHS] = {128, 256, 512, 1024, 2048};

/* The three layers measured, each as "x (1, N, DIM) -> y (1, N, DIM)". */
typedef enum { POOL_FUSED, POOL_COMPOSED, ATTENTION, N_LAYERS } LayerKind;
static const char *const LAYER_NAMES[N_LAYERS] = {"ContextPool fused", "ContextPool composed",
                                                  "attention"};

typedef struct Layers {
    ContextPool fused, composed;
    Attention attention;
} Layers;

static Tensor *run_layer(Tape *tape, const Layers *layers, LayerKind kind, Tensor *x) {
    switch (kind) {
    case POOL_FUSED:
        return contextpool_forward(tape, &layers->fused, x, NULL);
    case POOL_COMPOSED:
        return contextpool_forward(tape, &layers->composed, x, NULL);
    default:
        return attention_forward(tape, &layers->attention, x, x, NULL);
    }
}

/* One forward and backward pass, timed: the best of a few runs (at least 3, at most 20, or
 * until 0.4 s have passed), since other programs share the machine. Also reports the
 * tape's arena at its fullest: activations, their gradients and saved values. */
static double step_ms(Tape *tape, const Layers *layers, LayerKind kind, Tensor *x, const real *seed,
                      double *arena_mb) {
    double best = INFINITY, started = lesson_seconds();
    for (int run = 0; run < 20 && (run < 3 || lesson_seconds() - started < 0.4); run++) {
        double start = lesson_seconds();
        Tensor *y = run_layer(tape, layers, kind, x);
        tape_backward_from(tape, y, seed);
        best = fmin(best, 1e3 * (lesson_seconds() - start));
        *arena_mb = tape->arena.used_bytes / 1e6;
        tape_reset(tape);
    }
    return best;
}

int main(void) {
    lesson_begin("08 Cost: pooling against attention");
    say("Attention compares every token with every other: its cost grows with N^2. ContextPool "
        "pools each token over a window of at most 2R + 1 tokens: its cost grows with N. This "
        "lesson counts, then measures, both for one sequence of N tokens of D = %d features.",
        DIM);

    // %%
    section("1. Counting multiply-adds");
    say("Pooling: every token sums 2R + 1 neighbours of D features, N (2R + 1) D. Attention: "
        "q k^T and P v, two N x N x D products over all heads, 2 N^2 D. The predictor, a width-3 "
        "convolution to `hidden` channels, adds 3 N D hidden; attention's projections add "
        "4 N D^2. With the default s_max = 8 the radius is R = 24.");
    ParamSet params = {0};
    Rng rng;
    rng_seed(&rng, 8);
    Layers layers;
    contextpool_init(&layers.fused, contextpool_default_config(DIM, 0), &params, "fused", &rng);
    layers.composed = layers.fused; /* the same parameters, the N x N implementation */
    layers.composed.config.composed = 1;
    attention_init(&layers.attention, (AttentionConfig){.dim = DIM, .heads = HEADS}, &params,
                   "attn", &rng);
    const int R = layers.fused.config.radius, hidden = layers.fused.config.hidden;
    printf("%6s %14s %14s %14s %14s %10s\n", "N", "pool", "predictor", "attention", "projections",
           "attn/pool");
    for (int k = 0; k < N_LENGTHS; k++) {
        double n = LENGTHS[k];
        double pool = n * (2 * R + 1) * DIM, predictor = 3 * n * DIM * hidden;
        double attention = 2 * n * n * DIM, projections = 4 * n * DIM * DIM;
        printf("%6d %13.1fM %13.1fM %13.1fM %13.1fM %10.1f\n", LENGTHS[k], pool / 1e6,
               predictor / 1e6, attention / 1e6, projections / 1e6,
               (attention + projections) / (pool + predictor));
    }

    // %%
    section("2. Measuring");
    say("Now the clock: one forward and one backward pass of each layer on a random sequence, "
        "the best of a few runs, on one thread (so that we compare work, not how well each "
        "layer spreads over cores, and other programs on the machine disturb it less). The "
        "composed ContextPool is the same "
        "formula built from ordinary ops around an explicit N x N matrix (lesson 05): the same "
        "numbers, but quadratic cost. Memory is the tape's arena after the backward pass: every "
        "activation, gradient and saved value of the step.");
    omp_set_num_threads(1);
    Tape *tape = tape_create();
    double ms[N_LAYERS][N_LENGTHS], mb[N_LAYERS][N_LENGTHS];
    printf("%6s", "N");
    for (int kind = 0; kind < N_LAYERS; kind++) printf(" %21s", LAYER_NAMES[kind]);
    printf("\n%6s", "");
    for (int kind = 0; kind < N_LAYERS; kind++) printf(" %10s %10s", "ms", "MB");
    printf("\n");
    for (int k = 0; k < N_LENGTHS; k++) {
        Tensor *x = tensor_create(3, (int[]){1, LENGTHS[k], DIM}, 1);
        real *seed = malloc((size_t)x->size * sizeof(real));
        for (long i = 0; i < x->size; i++)
            x->data[i] = rng_normal(&rng), seed[i] = rng_normal(&rng);
        printf("%6d", LENGTHS[k]);
        for (int kind = 0; kind < N_LAYERS; kind++) {
            ms[kind][k] = step_ms(tape, &layers, kind, x, seed, &mb[kind][k]);
            printf(" %10.2f %10.1f", ms[kind][k], mb[kind][k]);
            fflush(stdout);
        }
        printf("\n");
        free(seed);
        tensor_free(x);
    }
    const int last = N_LENGTHS - 1;
    say("From N = %d to N = %d (x%d), the fused pool's time grew x%.0f and attention's x%.0f; "
        "at N = %d attention took %.0f times as long as the fused pool and %.0f times its "
        "memory. The composed pool pays for its N x N matrix: x%.0f in time.",
        LENGTHS[0], LENGTHS[last], LENGTHS[last] / LENGTHS[0],
        ms[POOL_FUSED][last] / ms[POOL_FUSED][0], ms[ATTENTION][last] / ms[ATTENTION][0],
        LENGTHS[last], ms[ATTENTION][last] / ms[POOL_FUSED][last],
        mb[ATTENTION][last] / mb[POOL_FUSED][last], ms[POOL_COMPOSED][last] / ms[POOL_COMPOSED][0]);

    // %%
    section("3. The picture");
    say("On log-log axes a cost proportional to N^p is a straight line of slope p. The grey "
        "lines are slopes 1 and 2, drawn through the first fused and attention points.");
    Figure fig;
    lesson_figure_open(&fig, "08-cost");
    FILE *data = figure_data(&fig, "cost");
    for (int k = 0; k < N_LENGTHS; k++) {
        fprintf(data, "%d", LENGTHS[k]);
        for (int kind = 0; kind < N_LAYERS; kind++)
            fprintf(data, " %g %g", ms[kind][k], mb[kind][k]);
        fprintf(data, "\n");
    }
    const char *path = figure_data_path(&fig, "cost");
    figure_script(&fig,
                  "set terminal @terminal size 1400,600\n"
                  "set multiplot layout 1,2 title 'One forward and backward pass, D = %d, "
                  "R = %d, %d attention heads, one thread, float32'\n"
                  "set logscale xy\nset grid\nset key top left\nset xlabel 'sequence length N "
                  "(tokens)'\nset xtics (128, 256, 512, 1024, 2048)\nset xrange [110:2400]\n",
                  DIM, R, HEADS);
    const char *styles[N_LAYERS] = {"pt 7", "pt 5 dt 2", "pt 9"};
    for (int panel = 0; panel < 2; panel++) {
        figure_script(&fig, "set title '%s'\nset ylabel '%s'\nplot ",
                      panel ? "memory: the tape arena after backward" : "time",
                      panel ? "memory (MB)" : "time (ms)");
        for (int kind = 0; kind < N_LAYERS; kind++)
            figure_script(&fig, "'%s' using 1:%d with linespoints %s lw 2 title '%s', ", path,
                          2 + 2 * kind + panel, styles[kind], LAYER_NAMES[kind]);
        double fused0 = panel ? mb[POOL_FUSED][0] : ms[POOL_FUSED][0];
        double attention0 = panel ? mb[ATTENTION][0] : ms[ATTENTION][0];
        figure_script(&fig,
                      "[128:2048] %g * (x / 128) lc 'gray40' dt 3 lw 2 title 'slope 1 (N)', "
                      "[128:2048] %g * (x / 128)**2 lc 'gray40' dt 4 lw 2 title 'slope 2 (N^2)'\n",
                      fused0, attention0);
    }
    figure_script(&fig, "unset multiplot\n");
    lesson_figure_show(&fig, "Time and memory of one training step of each layer as N grows");

    tape_free(tape);
    params_free(&params);
    return 0;
}
