/* 06-tiny-charlm.c - train a tiny character-level language model with ContextPool on the King
 * James Bible for a few hundred steps, and watch the support sizes its pools choose move away
 * from where they started. Float32, the precision models train in. Needs data/kjv.txt
 * (`make data`). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lesson.h"
#include "model.h"
#include "optim.h"
#include "text_data.h"

enum { LAYERS = 2, BATCH = 16, SEQ = 64, STEPS = 300, LOG_EVERY = 25 };
enum { SNAPSHOTS = 3 }; /* when the support sizes are kept for histograms */
static const int SNAPSHOT_STEPS[SNAPSHOTS] = {0, STEPS / 4, STEPS - 1};
enum { HIST_BINS = 30 };

/* Validation loss in bits per character over `batches` sequential windows of the valid split
 * (no_grad: nothing recorded). */
static double valid_bpc(const Model *model, const TextData *text, TextBatch *batch, int batches,
                        Tape *tape) {
    long cursor = 0;
    double nats = 0;
    tape->no_grad = 1;
    for (int k = 0; k < batches && text_data_next(text, SPLIT_VALID, &cursor, batch) > 0; k++) {
        ModelInput in = {.tokens = batch->inputs, .batch = batch->batch_size, .len = SEQ};
        Tensor *logits = model_forward(tape, model, &in, NULL);
        nats += model_loss(tape, model, logits, batch->targets)->data[0] / batches;
        tape_reset(tape);
    }
    tape->no_grad = 0;
    return nats / log(2);
}

int main(void) {
    lesson_begin("06 Training a tiny char-LM, watching support sizes move");
    say("A language model reads text one byte at a time and predicts the next. Ours is a "
        "2-block transformer in which each block pools its keys and values with ContextPool "
        "(layers/block.h, pool_feeds = kv). Every token's pool predicts its own support size s: "
        "how many neighbouring characters it averages. At initialisation every s sits near the "
        "middle of its range. Training can only move them if wider or narrower context helps "
        "predict the next character, so where they go is what the model found useful.");

    // %%
    section("1. The model and the data");
    char err[512];
    TextData text;
    if (text_data_load(&text, "data/kjv.txt", SEQ, err, sizeof err) != 0) {
        fprintf(stderr, "%s (run `make data` first)\n", err);
        return 1;
    }
    ModelConfig config = model_default_config(MODEL_CHARLM);
    config.dim = 64, config.heads = 4, config.layers = LAYERS, config.seq_len = SEQ;
    Rng rng;
    rng_seed(&rng, 6);
    Model model;
    model_init(&model, &config, &rng);
    const ContextPoolConfig *pool = &model.blocks[0].pool.config;
    printf("data/kjv.txt: %ld bytes, %ld for training, %ld for validation\n", text.size,
           text.length[SPLIT_TRAIN], text.length[SPLIT_VALID]);
    printf("charlm: dim %d, %d heads, %d blocks, context %d bytes, %ld parameters\n", config.dim,
           config.heads, config.layers, config.seq_len, params_count_elements(&model.params));
    printf("ContextPool in each block: s in (%g, %g) characters, radius %d, causal\n", pool->s_min,
           pool->s_max, pool->radius);
    TextBatch batch;
    text_batch_init(&batch, BATCH, SEQ);
    Tape *tape = tape_create();
    double bpc_start = valid_bpc(&model, &text, &batch, 8, tape);
    printf("validation before training: %.3f bits per character (uniform guessing: %.3f)\n",
           bpc_start, log2(TEXT_VOCAB_SIZE));

    // %%
    section("2. Training");
    say("AdamW with a short warm-up and a cosine decay, %d steps of %d windows of %d "
        "characters, gradients clipped to norm 1. Every %d steps: the training loss, and the "
        "mean support size s and pooling weight w of each block's pool over the batch.",
        STEPS, BATCH, SEQ, LOG_EVERY);
    AdamW opt;
    adamw_init(&opt, &model.params, ADAMW_DEFAULTS);
    LrSchedule schedule = {
        .peak_lr = 3e-3, .min_lr = 3e-4, .warmup_steps = 20, .total_steps = STEPS};
    static real snapshots[SNAPSHOTS][LAYERS][BATCH * SEQ]; /* s of every token, per layer */
    double curve[STEPS][1 + LAYERS];                       /* loss, then mean s per layer */
    double started = lesson_seconds();
    printf("%5s %10s %8s", "step", "loss nats", "bpc");
    for (int l = 0; l < LAYERS; l++) printf("   mean s[%d] mean w[%d]", l, l);
    printf("\n");
    for (int step = 0; step < STEPS; step++) {
        text_data_sample(&text, SPLIT_TRAIN, &rng, &batch);
        ModelInput in = {.tokens = batch.inputs, .batch = BATCH, .len = SEQ};
        ModelAux aux;
        Tensor *logits = model_forward(tape, &model, &in, &aux);
        Tensor *loss = model_loss(tape, &model, logits, batch.targets);
        curve[step][0] = loss->data[0];
        for (int l = 0; l < LAYERS; l++) {
            const Tensor *s = aux.layers[l].pool.support, *w = aux.layers[l].pool.weights;
            double s_sum = 0, w_sum = 0;
            for (long i = 0; i < s->size; i++) s_sum += s->data[i], w_sum += w->data[i];
            curve[step][1 + l] = s_sum / s->size;
            for (int k = 0; k < SNAPSHOTS; k++)
                if (step == SNAPSHOT_STEPS[k])
                    memcpy(snapshots[k][l], s->data, sizeof snapshots[k][l]);
            if (step % LOG_EVERY == 0 || step == STEPS - 1) {
                if (l == 0) printf("%5d %10.4f %8.3f", step, loss->data[0], loss->data[0] / log(2));
                printf("   %9.3f %9.3f", s_sum / s->size, w_sum / w->size);
                if (l == LAYERS - 1) printf("\n");
            }
        }
        tape_backward(tape, loss);
        clip_grad_norm(&model.params, 1.0);
        adamw_step(&opt, lr_schedule_at(&schedule, step));
        params_zero_grad(&model.params);
        model_after_step(&model);
        tape_reset(tape);
    }
    double seconds = lesson_seconds() - started;
    double bpc_end = valid_bpc(&model, &text, &batch, 8, tape);
    printf("%d steps in %.1f s; validation: %.3f bits per character (from %.3f)\n", STEPS, seconds,
           bpc_end, bpc_start);

    // %%
    section("3. The support sizes moved");
    say("Mean s per block over training, and the distribution of s over every token of a batch "
        "at three moments.");
    for (int l = 0; l < LAYERS; l++) {
        double narrow = 0, wide = 0; /* fractions of the last batch's tokens */
        for (int i = 0; i < BATCH * SEQ; i++) {
            narrow += snapshots[SNAPSHOTS - 1][l][i] < 1.0;
            wide += snapshots[SNAPSHOTS - 1][l][i] > 2.0;
        }
        printf("block %d: mean s %.3f at step 0 -> %.3f at step %d; at the end %3.0f%% of tokens "
               "have s < 1, %3.0f%% have s > 2\n",
               l, curve[0][1 + l], curve[STEPS - 1][1 + l], STEPS - 1, 100 * narrow / (BATCH * SEQ),
               100 * wide / (BATCH * SEQ));
    }
    say("A pool whose s sinks to s_min = %g has learned that averaging did not help there: with "
        "s below one character the Gaussian gives the neighbours almost no weight, and the keys "
        "and values are single characters again. A pool that keeps s above 1 found use for "
        "wider context, and, as the histograms show, not the same width for every token.",
        pool->s_min);
    Figure fig;
    lesson_figure_open(&fig, "06-tiny-charlm-training");
    FILE *curve_data = figure_data(&fig, "curve");
    for (int step = 0; step < STEPS; step++) {
        fprintf(curve_data, "%d %g", step, curve[step][0] / log(2));
        for (int l = 0; l < LAYERS; l++) fprintf(curve_data, " %g", curve[step][1 + l]);
        fprintf(curve_data, "\n");
    }
    figure_script(&fig,
                  "set terminal @terminal size 1300,560\nset multiplot layout 1,2 title "
                  "'Tiny char-LM on the King James Bible (dim %d, %d blocks, ContextPool on "
                  "keys and values)'\nset grid\nset xlabel 'training step'\n"
                  "set title 'training loss'\nset ylabel 'bits per character'\nset key off\n"
                  "plot '%s' using 1:2 with lines lw 1.5\n"
                  "set title 'mean support size per block'\nset ylabel 's (characters)'\n"
                  "set key top right\nplot ",
                  config.dim, LAYERS, figure_data_path(&fig, "curve"));
    for (int l = 0; l < LAYERS; l++)
        figure_script(&fig, "%s'%s' using 1:%d with lines lw 2 title 'block %d'", l ? ", " : "",
                      figure_data_path(&fig, "curve"), 3 + l, l);
    figure_script(&fig, "\nunset multiplot\n");
    lesson_figure_show(&fig, "Training loss and the mean support size of each block's pool");

    lesson_figure_open(&fig, "06-tiny-charlm-histogram");
    FILE *hist = figure_data(&fig, "hist");
    const double bin = (pool->s_max - pool->s_min) / HIST_BINS;
    for (int b = 0; b < HIST_BINS; b++) {
        fprintf(hist, "%g", pool->s_min + (b + 0.5) * bin);
        for (int l = 0; l < LAYERS; l++)
            for (int k = 0; k < SNAPSHOTS; k++) {
                long count = 0;
                for (int i = 0; i < BATCH * SEQ; i++)
                    count += (int)((snapshots[k][l][i] - pool->s_min) / bin) == b;
                fprintf(hist, " %g", (double)count / (BATCH * SEQ));
            }
        fprintf(hist, "\n");
    }
    figure_script(&fig,
                  "set terminal @terminal size 1300,560\nset multiplot layout 1,%d title "
                  "'Support sizes s of every token of a batch (%d x %d), by block'\n"
                  "set grid\nset xlabel 's (characters)'\nset ylabel 'fraction of tokens'\n"
                  "set xrange [%g:%g]\nset key top right\nset style fill transparent solid 0.35\n",
                  LAYERS, BATCH, SEQ, pool->s_min, pool->s_max);
    for (int l = 0; l < LAYERS; l++) {
        figure_script(&fig, "set title 'block %d'\nplot ", l);
        for (int k = 0; k < SNAPSHOTS; k++)
            figure_script(&fig, "%s'%s' using 1:%d with boxes title 'step %d'", k ? ", " : "",
                          figure_data_path(&fig, "hist"), 2 + l * SNAPSHOTS + k, SNAPSHOT_STEPS[k]);
        figure_script(&fig, "\n");
    }
    figure_script(&fig, "unset multiplot\n");
    lesson_figure_show(&fig, "The distribution of s at three moments of training, per block");

    // %%
    section("4. Where the model looks wide");
    say("The first %d windows of the validation text (%d characters), and the s each block's "
        "pool chose at every character, averaged by what the character is - and, since the "
        "pool of a causal model looks back, by whether it ends a word (the next character, "
        "which the model has not seen, is a space or punctuation).",
        BATCH, BATCH * SEQ);
    long cursor = 0;
    text_data_next(&text, SPLIT_VALID, &cursor, &batch);
    tape->no_grad = 1;
    ModelInput in = {.tokens = batch.inputs, .batch = BATCH, .len = SEQ};
    ModelAux aux;
    model_forward(tape, &model, &in, &aux);
    enum { INSIDE, END, SPACE, PUNCTUATION, KINDS };
    const char *kinds[KINDS] = {"a letter inside a word", "a letter ending a word",
                                "a space or newline", "punctuation"};
    printf("%-24s", "mean s at");
    for (int l = 0; l < LAYERS; l++) printf("   block %d", l);
    printf("   characters\n");
    for (int kind = 0; kind < KINDS; kind++) {
        printf("%-24s", kinds[kind]);
        long count = 0;
        for (int l = 0; l < LAYERS; l++) {
            double sum = 0;
            count = 0;
            for (int i = 0; i < BATCH * SEQ; i++) {
                int c = batch.inputs[i], next = batch.targets[i];
                int k = isspace(c)      ? SPACE
                        : !isalpha(c)   ? PUNCTUATION
                        : isalpha(next) ? INSIDE
                                        : END;
                if (k == kind) sum += aux.layers[l].pool.support->data[i], count++;
            }
            printf("   %7.2f", count ? sum / count : NAN);
        }
        printf("   %10ld\n", count);
    }
    for (int l = 0; l < LAYERS; l++) {
        const real *s = aux.layers[l].pool.support->data;
        int widest = 0;
        for (int i = 1; i < SEQ; i++)
            if (s[i] > s[widest]) widest = i;
        printf("block %d, first window: widest, s = %.2f, at character %d: \"", l, s[widest],
               widest);
        for (int i = widest - 8 < 0 ? 0 : widest - 8; i <= widest; i++)
            printf("%s", batch.inputs[i] == '\n' ? "\\n" : (char[]){(char)batch.inputs[i], 0});
        printf("\" (the pool looks back from its last character)\n");
    }
    say("The figure shows the first window, one pair of bars per character.");
    const int shown = SEQ; /* characters drawn */
    lesson_figure_open(&fig, "06-tiny-charlm-passage");
    FILE *bars = figure_data(&fig, "passage");
    for (int i = 0; i < shown; i++) {
        fprintf(bars, "%d", i);
        for (int l = 0; l < LAYERS; l++) fprintf(bars, " %g", aux.layers[l].pool.support->data[i]);
        fprintf(bars, "\n");
    }
    figure_script(&fig,
                  "set terminal @terminal size 1500,520\nset title 'Support size s "
                  "chosen at each character of a validation passage'\n"
                  "set ylabel 's (characters)'\nset yrange [0:*]\nset grid y\n"
                  "set xlabel 'the passage, one character per pair of bars (\xe2\x90\xa3 a space, "
                  "\xe2\x86\xb5 a new verse)'\n"
                  "set xrange [-0.5:%g]\nset style fill solid 0.7\nset boxwidth 0.4\n"
                  "set key top right\nset xtics scale 0 font ',11' (",
                  shown - 0.5);
    for (int i = 0; i < shown; i++) {
        int c = batch.inputs[i];
        figure_script(&fig, "%s\"%s\" %d", i ? ", " : "",
                      c == ' '    ? "\xe2\x90\xa3" /* a visible space */
                      : c == '\n' ? "\xe2\x86\xb5" /* a return arrow */
                      : c == '"'  ? "\\\""
                                  : (char[]){(char)c, 0},
                      i);
    }
    figure_script(&fig, ")\nplot ");
    for (int l = 0; l < LAYERS; l++)
        figure_script(&fig, "%s'%s' using ($1 %+g):%d with boxes title 'block %d'", l ? ", " : "",
                      figure_data_path(&fig, "passage"), (l - 0.5) * 0.4, 2 + l, l);
    figure_script(&fig, "\n");
    lesson_figure_show(&fig, "s at every character of a passage, one bar per block");
    tape_reset(tape);

    adamw_free(&opt);
    tape_free(tape);
    text_batch_free(&batch);
    model_free(&model);
    text_data_free(&text);
    return 0;
}
