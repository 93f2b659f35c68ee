/* synth.h - a synthetic task whose right support sizes are known (docs/synthetic.md).
 *
 * The task. A sequence of N tokens is cut into segments of random length; each segment draws a
 * width W from a small set ({1, 2, 4, 8} tokens by default), the same for all its tokens. Every
 * token j carries a random value v_j ~ N(0, 1) and its segment's width class c_j (which of the
 * widths). The target at token i is the Gaussian moving average of the values with the width of
 * i's own segment:
 *
 *     T_i = sum_j G_ij v_j / sum_j G_ij,   G_ij = exp(-(i-j)^2 / (2 W_i^2)),  |i-j| <= R, 0 <= j <
 * N
 *
 * with R the layer's truncation radius. That is exactly what a ContextPool layer computes with
 * support s_i = W_i and uniform pooling weights, so the right support size of every token is
 * known: s_i = W_i. A single s for all tokens cannot fit segments of different widths; a model
 * that reaches a small loss must choose s per token.
 *
 * The model (one ContextPool layer between a linear input and a linear readout):
 *
 *     x = width_embed(c) + value_in(v)     "width_embed.weight" (n_widths, dim),
 *                                          "value_in.weight" (dim, 1)          -> (B, N, dim)
 *     y = pool(x)                          ContextPool, s in (s_min, s_max)    -> (B, N, dim)
 *     p = readout(y)                       "readout.weight" (1, dim), "readout.bias" -> (B, N)
 *
 * The width class is on every token (not only on a marker at the segment's start) because the
 * predictor that chooses s_i sees tokens i-1, i, i+1 only: a lone marker would be out of its
 * sight for most of the segment. The class is one-hot (an embedding row), so nothing tells the
 * model that the classes are ordered: the order of the learned s is learned.
 *
 * The loss is the normalised squared error, mean_i (p_i - T_i)^2 / Var(T_i), where
 * Var(T_i) = sum_j G_ij^2 / (sum_j G_ij)^2 is the variance of the target over random values:
 * a wide window's targets are small and smooth, and without this they would hardly count.
 * Predicting 0 everywhere scores 1; the right s with w uniform scores 0.
 *
 *     SynthConfig config = synth_default_config();
 *     config.steps = 300;
 *     SynthResult result;
 *     synth_train(&config, NULL, &result);         // or a Progress * for a progress line
 *     printf("r = %.3f\n", result.correlation);    // Pearson(true W, learned s) over eval tokens
 *     synth_result_free(&result);
 *
 * Bad configs fail with one line naming the key: cpool_fail("synth: steps=0 must be >= 1").
 */
#ifndef CPOOL_SYNTH_H
#define CPOOL_SYNTH_H

#include <stdint.h>

#include "contextpool.h"
#include "embedding.h"
#include "linear.h"
#include "progress.h"

#define SYNTH_MAX_WIDTHS 8

typedef struct SynthConfig {
    /* the task */
    int n_widths;
    double widths[SYNTH_MAX_WIDTHS]; /* the window widths W, in tokens (> 0, <= s_max) */
    int len;                         /* tokens per sequence N */
    int segment_min, segment_max;    /* segment lengths, uniform in [min, max] tokens */
    /* the model */
    int dim;      /* features per token */
    double s_max; /* the layer's largest support; s_min 0.5; radius ceil(3 s_max) */
    /* training */
    int batch;      /* sequences per step, fresh from the generator each step */
    long steps;     /* AdamW updates */
    double lr;      /* peak learning rate; warm-up over steps/20, cosine down to lr/10 */
    int eval_batch; /* sequences of the held-out set the correlation is measured on */
    uint64_t seed;
} SynthConfig;

/* The full run of `cpool synth`: widths {1, 2, 4, 8}, N = 256, segments of 16..64 tokens,
 * dim 16, s_max 12, batch 16, 1000 steps, lr 1e-2, eval 16 sequences (4096 tokens), seed 1. */
SynthConfig synth_default_config(void);
/* cpool_fail naming the first bad key, or return. */
void synth_config_check(const SynthConfig *config);
/* The layer's truncation radius for this config: ceil(3 s_max). */
int synth_radius(const SynthConfig *config);

/* Sequences of the task, all arrays (batch * len) row-major, owned by the batch. */
typedef struct SynthBatch {
    int batch, len;
    int *width_class;     /* c: index into config.widths */
    double *width;        /* W = widths[c], the right support size */
    double *value;        /* v ~ N(0, 1) */
    double *target;       /* T, the Gaussian moving average of v with width W */
    double *target_scale; /* 1 / Var(T) over random v: the loss weight */
} SynthBatch;

void synth_batch_alloc(SynthBatch *batch, int sequences, int len);
void synth_batch_free(SynthBatch *batch);
/* Draw every sequence of the batch from rng: segments, widths, values, then the targets. */
void synth_generate(SynthBatch *batch, const SynthConfig *config, Rng *rng);
/* The targets of one sequence (len tokens) from its values and widths, radius R:
 * target[i] = T_i and inverse_variance[i] = 1 / Var(T_i) as defined above. Plain loops in double.
 */
void synth_targets(const double *value, const double *width, int len, int radius, double *target,
                   double *inverse_variance);

typedef struct SynthModel {
    ParamSet params;
    Embedding width_embed; /* (n_widths, dim) */
    Linear value_in;       /* 1 -> dim, no bias */
    ContextPool pool;
    Linear readout; /* dim -> 1, with bias */
} SynthModel;

void synth_model_init(SynthModel *model, const SynthConfig *config, Rng *rng);
void synth_model_free(SynthModel *model);
/* Predictions p (B, N) for a batch; aux (may be NULL) receives the layer's w and s. */
Tensor *synth_model_forward(Tape *tape, const SynthModel *model, const SynthBatch *batch,
                            ContextPoolAux *aux);
/* mean_i (p_i - T_i)^2 / Var(T_i), 0-d, from op_sub, op_mul and op_mean_all. */
Tensor *synth_loss(Tape *tape, Tensor *prediction, const SynthBatch *batch);

/* What a run measured on the held-out set (arrays of eval_batch * len, owned). */
typedef struct SynthResult {
    double initial_loss;        /* the held-out loss before training */
    double initial_correlation; /* ... and r(W, s) then */
    double train_loss;          /* the last step's */
    double eval_loss;           /* the held-out set's normalised squared error */
    double correlation;   /* Pearson r between true W and learned s, over every held-out token */
    double fixed_loss;    /* the best any single s reaches on the held-out set (w uniform) */
    double fixed_support; /* ... and that s */
    double mean_support[SYNTH_MAX_WIDTHS]; /* learned s per width class: mean, std, count */
    double std_support[SYNTH_MAX_WIDTHS];
    long count[SYNTH_MAX_WIDTHS];
    SynthBatch eval;         /* the held-out sequences */
    double *initial_support; /* s of every held-out token before training */
    double *support;         /* learned s of every held-out token */
    double *weight;          /* learned w of every held-out token */
    double seconds;          /* training time */
} SynthResult;

/* Train a fresh model (seeded by config->seed) and measure it. progress may be NULL. */
void synth_train(const SynthConfig *config, Progress *progress, SynthResult *result);
void synth_result_free(SynthResult *result);

/* Pearson correlation of x and y (n pairs); NaN when n < 2 or either is constant. In double. */
double synth_pearson(const double *x, const double *y, long n);

#endif
