/* plot_cost.c - `cpool plot cost`: what pooling and attention cost as the sequence grows.
 *
 * For N = 128, 256, ..., max_n, one sequence (B = 1) of N tokens of width dim goes forward and
 * backward through
 *
 *     contextpool   y = op_contextpool1d(x, w, s), causal, s_max 8 so radius 24   O(N R D)
 *     attention     y = attention_forward(x, x) of a causal layer, 4 heads          O(N^2 D)
 *
 * and L = sum(y) is differentiated, on one thread (so the curves show the algorithms, not how
 * busy the other cores are). The time is the best of a few repeats (wall clock, after a warm-up
 * at small N); the memory is the tape arena's peak: every activation, saved value and
 * gradient the step needed, parameters and inputs left out. Attention's memory grows by 4x per
 * doubling; a size whose predicted peak (4x the previous one) passes 2 GB is skipped and the
 * figure says so. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "attention.h"
#include "ops.h"
#include "plot_job.h"
#include "progress.h"

#define COST_MEMORY_LIMIT_BYTES (2.0 * 1024 * 1024 * 1024)
#define COST_MAX_SIZES          16

typedef struct CostRow {
    int n;
    double pool_ms, pool_mb;
    double attn_ms, attn_mb; /* NAN when skipped */
} CostRow;

typedef struct CostInputs {
    Tensor *x, *w, *s; /* (1, N, dim), (1, N), (1, N) */
} CostInputs;

static void make_inputs(CostInputs *in, int n, int dim, Rng *rng) {
    in->x = tensor_create(3, (int[]){1, n, dim}, 1);
    in->w = tensor_create(2, (int[]){1, n}, 1);
    in->s = tensor_create(2, (int[]){1, n}, 1);
    for (long i = 0; i < in->x->size; i++) in->x->data[i] = (real)rng_normal(rng);
    for (int i = 0; i < n; i++) {
        in->w->data[i] = (real)rng_range(rng, 0.05, 1.0); /* as sigmoid(a) would give */
        in->s->data[i] = (real)rng_range(rng, 0.5, 8.0);  /* s_min .. s_max */
    }
}

static void free_inputs(CostInputs *in) {
    tensor_free(in->x), tensor_free(in->w), tensor_free(in->s);
}

/* One forward + backward of the chosen layer on a fresh tape: the best time of `repeats` (ms)
 * and the arena's peak (MB). */
static void measure(const CostInputs *in, const Attention *attn, int repeats, double *ms,
                    double *mb) {
    Tape *tape = tape_create();
    *ms = INFINITY;
    for (int r = 0; r < repeats; r++) {
        double start = wall_seconds();
        Tensor *y = attn ? attention_forward(tape, attn, in->x, in->x, NULL)
                         : op_contextpool1d(tape, in->x, in->w, in->s, 24, 1, (real)1e-6);
        tape_backward(tape, op_sum_all(tape, y));
        double elapsed = 1000.0 * (wall_seconds() - start);
        if (elapsed < *ms) *ms = elapsed;
        tape_reset(tape);
    }
    *mb = (double)tape->arena.peak_bytes / (1024.0 * 1024.0);
    tape_free(tape);
}

/* Every size: fills rows, returns how many. */
static int measure_all(PlotJob *job, CostRow *rows) {
    int dim = job->options.dim, heads = dim % 4 == 0 ? 4 : 1, count = 0;
    ParamSet params = {0};
    Rng rng;
    rng_seed(&rng, 1);
    Attention attn;
    attention_init(&attn, (AttentionConfig){.dim = dim, .heads = heads, .causal = 1}, &params,
                   "attn", &rng);
    double previous_attn_bytes = 0;
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    for (int n = 128; n <= job->options.max_n && count < COST_MAX_SIZES; n *= 2) {
        CostRow *row = &rows[count++];
        row->n = n;
        CostInputs in;
        make_inputs(&in, n, dim, &rng);
        int repeats = n <= 512 ? 5 : 3; /* the arena touches new pages in the first two */
        if (n <= 1024) measure(&in, NULL, 1, &row->pool_ms, &row->pool_mb); /* warm-up */
        measure(&in, NULL, repeats, &row->pool_ms, &row->pool_mb);
        row->attn_ms = row->attn_mb = NAN;
        if (4.0 * previous_attn_bytes <= COST_MEMORY_LIMIT_BYTES) {
            measure(&in, &attn, repeats, &row->attn_ms, &row->attn_mb);
            previous_attn_bytes = row->attn_mb * 1024.0 * 1024.0;
        }
        free_inputs(&in);
    }
    omp_set_num_threads(threads);
    params_free(&params);
    return count;
}

static void print_table(PlotJob *job, const CostRow *rows, int count) {
    plot_note(job,
              "forward + backward, B = 1, dim %d, %s, one thread (best of 3 to 5 runs; "
              "memory = tape arena peak)\n",
              job->options.dim, REAL_NAME);
    plot_note(job, "%7s  %15s  %15s  %13s  %13s\n", "N", "contextpool ms", "contextpool MB",
              "attention ms", "attention MB");
    for (int i = 0; i < count; i++) {
        const CostRow *r = &rows[i];
        plot_note(job, "%7d  %15.3f  %15.2f", r->n, r->pool_ms, r->pool_mb);
        if (isnan(r->attn_ms))
            plot_note(job, "  %13s  %13s\n", "skipped", "(> 2 GB)");
        else
            plot_note(job, "  %13.3f  %13.2f\n", r->attn_ms, r->attn_mb);
    }
}

/* One panel: column `pool_col` and `attn_col` of the data against N, with guide slopes. */
static void write_cost_panel(PlotJob *job, const char *title, const char *y_label, int column,
                             double pool_at_128, double attn_at_128) {
    Figure *fig = &job->fig;
    const char *data = figure_data_path(fig, "cost");
    figure_script(fig,
                  "set title '%s'\nset ylabel '%s'\n"
                  "plot '%s' using 1:%d with linespoints pt 7 lw 2.5 lc rgb '#1f77b4' "
                  "title 'ContextPool (op\\_contextpool1d)', \\\n"
                  "     '' using 1:%d with linespoints pt 5 lw 2.5 lc rgb '#d62728' "
                  "title 'attention (attention\\_forward)', \\\n"
                  "     %.6g * (x / 128) with lines dt 2 lw 1 lc rgb '#777777' title 'slope 1: "
                  "∝ N', \\\n"
                  "     %.6g * (x / 128)**2 with lines dt 3 lw 1 lc rgb '#777777' "
                  "title 'slope 2: ∝ N^2'\n",
                  title, y_label, data, column, column + 2, pool_at_128, attn_at_128);
}

int plot_cost(PlotJob *job) {
    CostRow *rows = plot_alloc(job, sizeof(CostRow) * COST_MAX_SIZES);
    int count = measure_all(job, rows);
    print_table(job, rows, count);
    int status = plot_figure_open(job);
    if (status) return status;
    Figure *fig = &job->fig;
    FILE *data = figure_data(fig, "cost");
    fprintf(data, "# N  contextpool_ms  contextpool_MB  attention_ms  attention_MB\n");
    int last_attn = 0;
    for (int i = 0; i < count; i++) {
        fprintf(data, "%d %.6g %.6g %.6g %.6g\n", rows[i].n, rows[i].pool_ms, rows[i].pool_mb,
                rows[i].attn_ms, rows[i].attn_mb);
        if (!isnan(rows[i].attn_ms)) last_attn = i;
    }
    plot_canvas(job, 1500, 650, 0, 0);
    char subtitle[300];
    int n = snprintf(subtitle, sizeof subtitle, "B = 1, dim %d, %s, one thread", job->options.dim,
                     REAL_NAME);
    if (last_attn + 1 < count)
        snprintf(subtitle + n, sizeof subtitle - (size_t)n,
                 "; attention not measured for N >= %d: its N x N buffers would pass 2 GB",
                 rows[last_attn + 1].n);
    plot_title(job, "set multiplot layout 1,2 title",
               "Cost of one forward + backward pass vs sequence length N", subtitle);
    figure_script(fig,
                  "set logscale xy 2\nset logscale y 10\nset format y '10^{%%L}'\n"
                  "set xlabel 'sequence length N (tokens)'\nset xtics 128, 2\n"
                  "set grid lc rgb '#dddddd'\nset key top left box opaque\n"
                  "set xrange [100:%d]\n",
                  rows[count - 1].n * 5 / 4);
    write_cost_panel(job, "time", "time per forward + backward (ms)", 2, rows[0].pool_ms,
                     rows[0].attn_ms);
    write_cost_panel(job, "memory", "tape arena peak (MB)", 3, rows[0].pool_mb, rows[0].attn_mb);
    figure_script(fig, "unset multiplot\n");
    return plot_figure_close(job);
}
