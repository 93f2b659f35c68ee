/* cmd_bench.c - `cpool bench`: how long the work people run here takes, row by row, and what
 * the same work takes in PyTorch on the same machine.
 *
 *     cpool bench [--json] [--threads T] [--repeats R] [--torch [SCRIPT]] [NAME ...]
 *     cpool bench --list
 *
 * Each row times one piece of work: one warm-up run, then R timed runs (default 5); it reports
 * the median, the fastest and the slowest, GFLOP/s from the median, and the peak resident memory
 * of the process that ran it. Rows (docs/performance.md has the numbers):
 *
 *   matmul_512, matmul_1024     C = A B through op_matmul, then backward through the tape
 *   matmul_2048x128x128,        (dA = dC B^T, dB = A^T dC, seed dC = ones): 6 M K N, written
 *   matmul_2048x512x128         M x K x N for A (M, K), B (K, N); one number is a square n^3.
 *                               The skinny ones are the models' shapes: 2048 = B N tokens
 *                               against a 128-wide weight (qkv, proj) or the 512-wide FFN
 *   charlm_step                 one training step of the benchmark char-LM without a pool:
 *                               B = 8, N = 256, dim 128, 4 heads, 4 blocks, vocabulary 256;
 *                               forward, loss, backward, AdamW (random tokens)
 *   charlm_step_cp              the same with pool = contextpool (defaults)
 *   vit_step_cp                 one step of the ViT, B = 64, patch 4, dim 64, 2 blocks,
 *                               contextpool (random images)
 *       model rows count 3 x model_forward_flops() x tokens (images): backward costs ~2x forward
 *   contextpool_fwd_bwd_N       op_contextpool1d forward and backward, B = 1, D = 64, causal,
 *                               the layer's default radius R = ceil(3 s_max) = 24:
 *                               6 N (R + 1) D (each of the band's (R + 1) pairs costs one
 *                               D-wide multiply-add forward, two backward)
 *   attention_fwd_bwd_N         op_attention forward and backward, B = 1, 4 heads of 16, causal:
 *                               6 N (N + 1) 64 (the two forward products over the causal
 *                               triangle, 2 N (N + 1) / 2 pairs x dim x 2, and twice that back)
 *   for N = 1024, 2048, 4096, 8192.
 *
 * Peak memory. getrusage's ru_maxrss only ever grows in a process, so each row runs in a child
 * process of its own (fork) and reports that child's peak: the row's own tensors, parameters,
 * optimizer state and tape arena, plus the few MB of the program itself. The child sends its
 * numbers back through a pipe. An attention row whose probabilities (N x N x heads values, kept
 * for backward) would pass 2 GB is skipped with a note instead.
 *
 * PyTorch (--torch). bench/torch_bench.py does every row's work in PyTorch: same shapes, same
 * thread count, one warm-up and R timed runs, the median. It runs under /usr/bin/python3 as ONE
 * process for all rows (importing torch takes seconds), with OPENBLAS_NUM_THREADS and
 * OMP_NUM_THREADS = T and without OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (OpenBLAS picks its own
 * kernel). Its first line says which torch and BLAS; then it reads a row name per line on its
 * stdin and answers with that row's JSON line, so each of our rows is followed at once by
 * torch's (both see the same moment of a shared machine). A row gains torch_ms_median, ratio =
 * ms_median / torch_ms_median (below 1: we are faster) and the variant torch's time is from
 * (torch_bench.py times ContextPool two ways and keeps the faster). If the script's first line
 * is not torch's (no torch: it exits, or says "unavailable"), one note line says so and the
 * torch columns read n/a; the exit status stays 0. A missing script is an error (status 1).
 *
 * The work is bench_run(), which takes argv, writes the table (or JSON lines) to `out` and
 * returns the exit status with the error as one line: 0 done, 1 a row failed, 2 usage. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <omp.h>

#include "commands.h"
#include "model.h"
#include "ops.h"
#include "optim.h"

enum { BENCH_EXIT_FAILED = 1, BENCH_EXIT_USAGE = 2 };
enum { BENCH_MAX_REPEATS = 1000, BENCH_MAX_THREADS = 256 };

/* ------------------------------------------------------------------------------------------ */
/* The rows                                                                                   */

typedef enum RowKind {
    ROW_MATMUL,
    ROW_CHARLM,
    ROW_CHARLM_CP,
    ROW_VIT_CP,
    ROW_POOL,
    ROW_ATTN
} RowKind;

typedef struct BenchRow {
    const char *name;
    RowKind kind;
    int n;    /* op and charlm rows: the sequence length; matmul: N, the columns of B and C */
    int m, k; /* matmul: A is (M, K), B (K, N) */
} BenchRow;

static const BenchRow bench_rows[] = {
    {"matmul_512", ROW_MATMUL, 512, 512, 512},
    {"matmul_1024", ROW_MATMUL, 1024, 1024, 1024},
    {"matmul_2048x128x128", ROW_MATMUL, 128, 2048, 128},
    {"matmul_2048x512x128", ROW_MATMUL, 128, 2048, 512},
    {"charlm_step", ROW_CHARLM, 256, 0, 0},
    {"charlm_step_cp", ROW_CHARLM_CP, 256, 0, 0},
    {"vit_step_cp", ROW_VIT_CP, 0, 0, 0},
    {"contextpool_fwd_bwd_1024", ROW_POOL, 1024, 0, 0},
    {"contextpool_fwd_bwd_2048", ROW_POOL, 2048, 0, 0},
    {"contextpool_fwd_bwd_4096", ROW_POOL, 4096, 0, 0},
    {"contextpool_fwd_bwd_8192", ROW_POOL, 8192, 0, 0},
    {"attention_fwd_bwd_1024", ROW_ATTN, 1024, 0, 0},
    {"attention_fwd_bwd_2048", ROW_ATTN, 2048, 0, 0},
    {"attention_fwd_bwd_4096", ROW_ATTN, 4096, 0, 0},
    {"attention_fwd_bwd_8192", ROW_ATTN, 8192, 0, 0},
};
enum { BENCH_N_ROWS = sizeof bench_rows / sizeof bench_rows[0] };

/* The shapes of the rows (see the top of the file). */
enum { CHARLM_BATCH = 8, CHARLM_LAYERS = 4, VIT_BATCH = 64 };
enum { OP_DIM = 64, ATTN_HEADS = 4, POOL_RADIUS = 24 };
static const double ATTN_MAX_BYTES = 2e9; /* skip attention when P would need more */
static const double STEP_LR = 1e-3;

static const BenchRow *find_row(const char *name) {
    for (int r = 0; r < BENCH_N_ROWS; r++)
        if (strcmp(bench_rows[r].name, name) == 0) return &bench_rows[r];
    return NULL;
}

/* Why a row cannot run here, or NULL. */
static const char *skip_reason(const BenchRow *row, char *note, size_t note_len) {
    if (row->kind != ROW_ATTN) return NULL;
    double bytes = (double)row->n * row->n * ATTN_HEADS * sizeof(real);
    if (bytes <= ATTN_MAX_BYTES) return NULL;
    snprintf(note, note_len, "skipped: P (N x N x heads) would take %.1f GB > %.0f GB", bytes / 1e9,
             ATTN_MAX_BYTES / 1e9);
    return note;
}

/* ------------------------------------------------------------------------------------------ */
/* The work: set up once, run many times                                                      */

typedef struct Work {
    const BenchRow *row;
    Tape *tape;
    Rng rng;
    double flops; /* per run */
    /* op rows: the inputs and the upstream gradient (ones) for backward */
    Tensor *a, *b, *c;
    real *seed;
    /* model rows */
    Model model;
    AdamW opt;
    ModelInput input;
    int *tokens, *targets;
} Work;

static Tensor *random_tensor(Rng *rng, int ndim, const int *shape, int requires_grad, double lo,
                             double hi) {
    Tensor *t = tensor_create(ndim, shape, requires_grad);
    for (long i = 0; i < t->size; i++) t->data[i] = (real)rng_range(rng, lo, hi);
    return t;
}

static real *ones(long count) {
    real *values = malloc((size_t)count * sizeof(real));
    for (long i = 0; i < count; i++) values[i] = 1;
    return values;
}

/* A (M, K), B (K, N); forward C = A B (2 M K N), backward dA = dC B^T and dB = A^T dC
 * (2 M K N each). */
static void setup_matmul(Work *w, const BenchRow *row) {
    w->a = random_tensor(&w->rng, 2, (int[]){row->m, row->k}, 1, -0.5, 0.5);
    w->b = random_tensor(&w->rng, 2, (int[]){row->k, row->n}, 1, -0.5, 0.5);
    w->seed = ones((long)row->m * row->n);
    w->flops = 6.0 * row->m * row->k * row->n;
}

/* x (1, N, 64); w in (0.1, 1) and s in [0.5, 8], the ranges the layer's predictor produces. */
static void setup_pool(Work *w, int n) {
    w->a = random_tensor(&w->rng, 3, (int[]){1, n, OP_DIM}, 1, -1, 1);
    w->b = random_tensor(&w->rng, 2, (int[]){1, n}, 1, 0.1, 1);
    w->c = random_tensor(&w->rng, 2, (int[]){1, n}, 1, 0.5, 8);
    w->seed = ones((long)n * OP_DIM);
    w->flops = 6.0 * n * (POOL_RADIUS + 1) * OP_DIM;
}

static void setup_attention(Work *w, int n) {
    int shape[4] = {1, ATTN_HEADS, n, OP_DIM / ATTN_HEADS};
    w->a = random_tensor(&w->rng, 4, shape, 1, -1, 1);
    w->b = random_tensor(&w->rng, 4, shape, 1, -1, 1);
    w->c = random_tensor(&w->rng, 4, shape, 1, -1, 1);
    w->seed = ones((long)n * OP_DIM);
    w->flops = 6.0 * n * (n + 1.0) * OP_DIM;
}

static ModelConfig row_model_config(RowKind kind) {
    ModelConfig config = model_default_config(kind == ROW_VIT_CP ? MODEL_VIT : MODEL_CHARLM);
    if (kind != ROW_VIT_CP) {
        config.layers = CHARLM_LAYERS;
        config.pool = kind == ROW_CHARLM_CP ? MODEL_POOL_CONTEXTPOOL : MODEL_POOL_NONE;
    }
    return config;
}

/* Random tokens (or images) and targets; the model and AdamW as training makes them. */
static void setup_model(Work *w, RowKind kind) {
    ModelConfig config = row_model_config(kind);
    model_init(&w->model, &config, &w->rng);
    adamw_init(&w->opt, &w->model.params, ADAMW_DEFAULTS);
    int charlm = config.kind == MODEL_CHARLM;
    int batch = charlm ? CHARLM_BATCH : VIT_BATCH, len = charlm ? w->row->n : 1;
    int classes = charlm ? 256 : 10;
    w->tokens = malloc((size_t)batch * len * sizeof(int));
    w->targets = malloc((size_t)batch * len * sizeof(int));
    for (int i = 0; i < batch * len; i++) {
        w->tokens[i] = rng_int(&w->rng, 256);
        w->targets[i] = rng_int(&w->rng, classes);
    }
    w->input = (ModelInput){.tokens = w->tokens, .batch = batch, .len = len};
    if (!charlm) w->input.images = random_tensor(&w->rng, 4, (int[]){batch, 1, 28, 28}, 0, 0, 1);
    w->flops = 3 * model_forward_flops(&config) * batch * len;
}

static void work_setup(Work *w, const BenchRow *row) {
    *w = (Work){.row = row, .tape = tape_create()};
    w->tape->release_grads = 1; /* as training runs (nothing here reads a gradient afterwards) */
    rng_seed(&w->rng, 1);
    switch (row->kind) {
    case ROW_MATMUL:
        setup_matmul(w, row);
        break;
    case ROW_POOL:
        setup_pool(w, row->n);
        break;
    case ROW_ATTN:
        setup_attention(w, row->n);
        break;
    default:
        setup_model(w, row->kind);
        break;
    }
}

/* One run of the row's work; everything it made on the tape is released at the end. */
static void work_run(Work *w) {
    Tensor *out = NULL;
    switch (w->row->kind) {
    case ROW_MATMUL:
        out = op_matmul(w->tape, w->a, w->b, 0, 0);
        break;
    case ROW_POOL:
        out = op_contextpool1d(w->tape, w->a, w->b, w->c, POOL_RADIUS, 1, (real)1e-6);
        break;
    case ROW_ATTN:
        out = op_attention(w->tape, w->a, w->b, w->c, 1, 0, NULL);
        break;
    default: {
        Tensor *logits = model_forward(w->tape, &w->model, &w->input, NULL);
        tape_backward(w->tape, model_loss(w->tape, &w->model, logits, w->targets));
        adamw_step(&w->opt, STEP_LR);
        model_after_step(&w->model);
        params_zero_grad(&w->model.params);
    }
    }
    if (out) {
        tape_backward_from(w->tape, out, w->seed);
        Tensor *inputs[3] = {w->a, w->b, w->c};
        for (int i = 0; i < 3; i++)
            if (inputs[i]) tensor_zero_grad(inputs[i]);
    }
    tape_reset(w->tape);
}

static void work_free(Work *w) {
    if (w->row->kind == ROW_CHARLM || w->row->kind == ROW_CHARLM_CP || w->row->kind == ROW_VIT_CP) {
        adamw_free(&w->opt);
        model_free(&w->model);
        tensor_free(w->input.images);
    }
    Tensor *inputs[3] = {w->a, w->b, w->c};
    for (int i = 0; i < 3; i++) tensor_free(inputs[i]);
    free(w->seed);
    free(w->tokens);
    free(w->targets);
    tape_free(w->tape);
}

/* ------------------------------------------------------------------------------------------ */
/* Timing, in a child process per row                                                        */

/* Wall-clock times, and the CPU time of the whole process (every thread) per run: on a shared
 * machine wall time grows with the other jobs' load, one thread's CPU time much less. */
typedef struct RowResult {
    double ms_median, ms_min, ms_max, gflops, peak_rss_mb, cpu_ms_median;
} RowResult;

static double now_ms(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return 1e3 * (double)t.tv_sec + 1e-6 * (double)t.tv_nsec;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts values (count >= 1) and returns their median. */
static double median_of(double *values, int count) {
    qsort(values, (size_t)count, sizeof values[0], compare_doubles);
    return count % 2 ? values[count / 2] : (values[count / 2 - 1] + values[count / 2]) / 2;
}

/* One warm-up run, then `repeats` timed runs. */
static RowResult measure_row(const BenchRow *row, int threads, int repeats) {
    omp_set_num_threads(threads);
    Work w;
    work_setup(&w, row);
    work_run(&w);
    double ms[BENCH_MAX_REPEATS] = {0}, cpu_ms[BENCH_MAX_REPEATS] = {0}; /* repeats >= 1 */
    for (int r = 0; r < repeats; r++) {
        double start = now_ms(CLOCK_MONOTONIC), cpu_start = now_ms(CLOCK_PROCESS_CPUTIME_ID);
        work_run(&w);
        ms[r] = now_ms(CLOCK_MONOTONIC) - start;
        cpu_ms[r] = now_ms(CLOCK_PROCESS_CPUTIME_ID) - cpu_start;
    }
    double median = median_of(ms, repeats);
    RowResult result = {.ms_median = median,
                        .ms_min = ms[0],
                        .ms_max = ms[repeats - 1],
                        .gflops = w.flops / (median * 1e6),
                        .cpu_ms_median = median_of(cpu_ms, repeats)};
    work_free(&w);
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    result.peak_rss_mb = (double)usage.ru_maxrss / 1024; /* Linux: kilobytes */
    return result;
}

/* Runs the row in a child process; 0, or -1 with err when the child failed. */
static int run_in_child(const BenchRow *row, int threads, int repeats, RowResult *result, char *err,
                        size_t err_len) {
    int fds[2];
    if (pipe(fds) != 0) return snprintf(err, err_len, "pipe: %s", strerror(errno)), -1;
    fflush(NULL); /* nothing buffered gets written twice */
    pid_t pid = fork();
    if (pid < 0) return snprintf(err, err_len, "fork: %s", strerror(errno)), -1;
    if (pid == 0) {
        close(fds[0]);
        RowResult r = measure_row(row, threads, repeats);
        _exit(write(fds[1], &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1);
    }
    close(fds[1]);
    ssize_t got = read(fds[0], result, sizeof *result);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got == (ssize_t)sizeof *result && WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFSIGNALED(status))
        snprintf(err, err_len, "row %s: killed by signal %d", row->name, WTERMSIG(status));
    else
        snprintf(err, err_len, "row %s failed (exit status %d)", row->name, WEXITSTATUS(status));
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* PyTorch: bench/torch_bench.py, one process answering row after row                        */

static const char *const TORCH_PYTHON = "/usr/bin/python3";
static const char *const TORCH_SCRIPT = "bench/torch_bench.py";

/* torch's numbers for one row, or why there are none. */
typedef struct TorchRow {
    int measured;
    int down; /* no torch (any more): the note is TorchProcess.down, shown once in the table */
    double ms_median, ms_min, ms_max, cpu_ms_median;
    char variant[32];
    char note[200]; /* not measured: the reason ("skipped: ...", "error: ..."), or "" */
} TorchRow;

typedef struct TorchProcess {
    pid_t pid;       /* 0 once stopped, or never started */
    FILE *to, *from; /* the script's stdin and stdout */
    FILE *errors;    /* its stderr (a temporary file), read for the reason when it stops */
    char about[256]; /* "torch 1.13.0a0, OpenBLAS 0.3.21 (core ...)" from its first line */
    char down[200];  /* why there are no (more) torch numbers */
} TorchProcess;

/* The script: the one given, else bench/torch_bench.py beside the program's directory (build/
 * is a sibling of bench/), else in the current directory. 0, or -1 with err. */
static int torch_script_path(const char *given, char *path, size_t len, char *err, size_t err_len) {
    if (given) {
        snprintf(path, len, "%s", given);
        if (access(path, R_OK) == 0) return 0;
        snprintf(err, err_len, "--torch: cannot read the script '%s': %s", given, strerror(errno));
        return -1;
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = '\0', strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = '\0';
        snprintf(path, len, "%s/../%s", exe, TORCH_SCRIPT);
        if (access(path, R_OK) == 0) return 0;
    }
    snprintf(path, len, "%s", TORCH_SCRIPT);
    if (access(path, R_OK) == 0) return 0;
    snprintf(err, err_len,
             "--torch: %s is neither beside the program (%s/..) nor in the current directory; "
             "give its path: --torch SCRIPT",
             TORCH_SCRIPT, slash ? exe : "?");
    return -1;
}

/* text, cut to fit len bytes (a reason or a name may be longer than its field). */
static void copy_text(char *to, size_t len, const char *text) {
    size_t n = strlen(text) < len ? strlen(text) : len - 1;
    memcpy(to, text, n);
    to[n] = '\0';
}

/* The last non-empty line of f (from its start), without the newline; "" if none. */
static void last_line(FILE *f, char *line, size_t len) {
    char buffer[512];
    line[0] = '\0';
    rewind(f);
    while (fgets(buffer, sizeof buffer, f)) {
        buffer[strcspn(buffer, "\n")] = '\0';
        if (buffer[0]) copy_text(line, len, buffer);
    }
}

/* Ends the script (it exits at the end of its stdin) and keeps why: `why`, else its last line
 * on stderr, else its exit status. */
static void torch_stop(TorchProcess *t, const char *why) {
    if (!t->pid) return;
    fclose(t->to);
    fclose(t->from);
    int status = 0;
    waitpid(t->pid, &status, 0);
    t->pid = 0;
    char line[160];
    last_line(t->errors, line, sizeof line);
    fclose(t->errors);
    if (why)
        snprintf(t->down, sizeof t->down, "%s", why);
    else if (line[0])
        snprintf(t->down, sizeof t->down, "the PyTorch script: %s", line);
    else
        snprintf(t->down, sizeof t->down, "the PyTorch script printed nothing (exit status %d)",
                 WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* The script's next output line that is a JSON object, or NULL at its end. */
static cJSON *torch_read_object(TorchProcess *t) {
    char line[4096];
    while (fgets(line, sizeof line, t->from)) {
        cJSON *object = cJSON_Parse(line);
        if (cJSON_IsObject(object)) return object;
        cJSON_Delete(object);
    }
    return NULL;
}

static const char *json_string(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static double json_number(const cJSON *object, const char *key) {
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : 0;
}

/* In the child: the script's stdin, stdout and stderr, its environment, exec. */
static void torch_exec(const char *script, int in[2], int out[2], FILE *errors, int threads,
                       int repeats) {
    dup2(in[0], STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(fileno(errors), STDERR_FILENO);
    close(in[0]), close(in[1]), close(out[0]), close(out[1]);
    char threads_text[16], repeats_text[16];
    snprintf(threads_text, sizeof threads_text, "%d", threads);
    snprintf(repeats_text, sizeof repeats_text, "%d", repeats);
    setenv("OPENBLAS_NUM_THREADS", threads_text, 1); /* set_num_threads does not bound BLAS */
    setenv("OMP_NUM_THREADS", threads_text, 1);
    unsetenv("OPENBLAS_CORETYPE"); /* OpenBLAS picks the kernel for this CPU itself */
    unsetenv("OPENBLAS_L2_SIZE");
    execl(TORCH_PYTHON, TORCH_PYTHON, script, "--threads", threads_text, "--repeats", repeats_text,
          "-", (char *)NULL);
    fprintf(stderr, "cannot run %s: %s\n", TORCH_PYTHON, strerror(errno));
    _exit(127);
}

/* Starts the script and reads its first line. t->pid is 0 afterwards if there is no torch
 * (t->down says why); that is not an error. */
static void torch_start(TorchProcess *t, const char *script, int threads, int repeats) {
    *t = (TorchProcess){0};
    int in[2], out[2];
    if (!(t->errors = tmpfile()) || pipe(in) != 0) {
        snprintf(t->down, sizeof t->down, "tmpfile or pipe: %s", strerror(errno));
        if (t->errors) fclose(t->errors);
        return;
    }
    if (pipe(out) != 0) {
        snprintf(t->down, sizeof t->down, "pipe: %s", strerror(errno));
        close(in[0]), close(in[1]), fclose(t->errors);
        return;
    }
    fflush(NULL); /* nothing buffered gets written twice */
    pid_t pid = fork();
    if (pid == 0) torch_exec(script, in, out, t->errors, threads, repeats);
    close(in[0]), close(out[1]);
    if (pid < 0) {
        snprintf(t->down, sizeof t->down, "fork: %s", strerror(errno));
        close(in[1]), close(out[0]), fclose(t->errors);
        return;
    }
    *t = (TorchProcess){
        .pid = pid, .to = fdopen(in[1], "w"), .from = fdopen(out[0], "r"), .errors = t->errors};
    cJSON *header = torch_read_object(t);
    const char *version = json_string(header, "torch_version");
    const char *unavailable = json_string(header, "unavailable");
    char why[200];
    if (version) {
        const char *blas = json_string(header, "blas");
        snprintf(t->about, sizeof t->about, "%s, BLAS %s", version, blas ? blas : "?");
    } else if (unavailable) {
        snprintf(why, sizeof why, "%s cannot import torch (%s)", TORCH_PYTHON, unavailable);
        torch_stop(t, why);
    } else {
        torch_stop(t, NULL);
    }
    cJSON_Delete(header);
}

/* One row's answer: {"ms_median", "ms_min", "ms_max", "cpu_ms_median", "variant", ...}, or
 * {"skipped": why} or {"error": why}. */
static TorchRow torch_parse_answer(const cJSON *answer) {
    TorchRow r = {.ms_median = json_number(answer, "ms_median"),
                  .ms_min = json_number(answer, "ms_min"),
                  .ms_max = json_number(answer, "ms_max"),
                  .cpu_ms_median = json_number(answer, "cpu_ms_median")};
    const char *skipped = json_string(answer, "skipped"), *error = json_string(answer, "error");
    const char *variant = json_string(answer, "variant");
    char note[sizeof r.note + 16];
    if (skipped || error) {
        snprintf(note, sizeof note, "%s: %s", skipped ? "skipped" : "error",
                 skipped ? skipped : error);
        copy_text(r.note, sizeof r.note, note);
    } else if (!(r.ms_median > 0)) {
        copy_text(r.note, sizeof r.note, "torch_bench.py's answer has no ms_median");
    } else {
        r.measured = 1;
        copy_text(r.variant, sizeof r.variant, variant ? variant : "?");
    }
    return r;
}

/* Asks the script for one row (it answers with one JSON line). */
static TorchRow torch_measure(TorchProcess *t, const char *name) {
    TorchRow r = {.down = !t->pid};
    if (t->pid) {
        fprintf(t->to, "%s\n", name);
        fflush(t->to); /* SIGPIPE is ignored meanwhile: a dead script is an end of its output */
        cJSON *answer = torch_read_object(t);
        if (answer) r = torch_parse_answer(answer);
        cJSON_Delete(answer);
        if (!answer) torch_stop(t, NULL); /* this row shows why; the next ones only n/a */
    }
    if (!t->pid) copy_text(r.note, sizeof r.note, t->down);
    return r;
}

/* ------------------------------------------------------------------------------------------ */
/* Output                                                                                     */

/* "AMD EPYC, 2 cores" (the first "model name" of /proc/cpuinfo). */
static void describe_machine(char *text, size_t len) {
    char line[256], model[128] = "unknown CPU";
    FILE *f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) != 0 || !colon) continue;
        snprintf(model, sizeof model, "%s", colon + 2);
        model[strcspn(model, "\n")] = '\0';
        break;
    }
    if (f) fclose(f);
    snprintf(text, len, "%s, %d cores", model, omp_get_num_procs());
}

static void print_load(FILE *out, const char *when) {
    double load[3] = {0, 0, 0};
    getloadavg(load, 3);
    fprintf(out, "load average %.2f %.2f %.2f %s\n", load[0], load[1], load[2], when);
}

static void print_table_header(FILE *out, int threads, int repeats, const TorchProcess *torch) {
    char machine[192];
    describe_machine(machine, sizeof machine);
    fprintf(out, "cpool bench (%s, %d thread%s, median of %d after one warm-up) on %s; ", REAL_NAME,
            threads, threads == 1 ? "" : "s", repeats, machine);
    print_load(out, "at the start");
    if (torch && torch->pid) fprintf(out, "torch: %s\n", torch->about);
    if (torch && !torch->pid) fprintf(out, "torch: n/a: %s\n", torch->down);
    fprintf(out, "%-26s %10s %10s %10s %9s %12s %10s", "row", "ms median", "ms min", "ms max",
            "GFLOP/s", "peak RSS MB", "cpu ms");
    if (torch) fprintf(out, " %10s %7s  %s", "torch ms", "ratio", "torch variant");
    fprintf(out, "\n");
}

/* A JSON string: quotes, backslashes and control characters escaped. */
static void print_json_string(FILE *out, const char *text) {
    fputc('"', out);
    for (const unsigned char *c = (const unsigned char *)text; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(out, "\\%c", *c);
        else if (*c < 0x20)
            fprintf(out, "\\u%04x", *c);
        else
            fputc(*c, out);
    }
    fputc('"', out);
}

static void print_json_torch(FILE *out, const RowResult *r, const TorchRow *torch) {
    if (torch->measured) {
        fprintf(out,
                ", \"torch_ms_median\": %.4f, \"torch_ms_min\": %.4f, \"torch_ms_max\": %.4f, "
                "\"torch_cpu_ms_median\": %.4f, \"torch_variant\": ",
                torch->ms_median, torch->ms_min, torch->ms_max, torch->cpu_ms_median);
        print_json_string(out, torch->variant);
        fprintf(out, ", \"ratio\": %.6g", r->ms_median / torch->ms_median);
        if (torch->cpu_ms_median > 0)
            fprintf(out, ", \"cpu_ratio\": %.6g", r->cpu_ms_median / torch->cpu_ms_median);
    } else if (torch->note[0]) {
        fprintf(out, ", \"torch_note\": ");
        print_json_string(out, torch->note);
    }
}

static void print_json(FILE *out, const BenchRow *row, int threads, const RowResult *r,
                       const char *note, const TorchRow *torch) {
    fprintf(out, "{\"name\": \"%s\", \"threads\": %d", row->name, threads);
    if (note) {
        fprintf(out, ", \"skipped\": ");
        print_json_string(out, note);
        fprintf(out, "}\n");
        return;
    }
    fprintf(out,
            ", \"ms_median\": %.4f, \"ms_min\": %.4f, \"ms_max\": %.4f, \"gflops\": %.6g, "
            "\"peak_rss_mb\": %.1f, \"cpu_ms_median\": %.4f",
            r->ms_median, r->ms_min, r->ms_max, r->gflops, r->peak_rss_mb, r->cpu_ms_median);
    if (torch) print_json_torch(out, r, torch);
    fprintf(out, "}\n");
}

static void print_table_row(FILE *out, const BenchRow *row, const RowResult *r,
                            const TorchRow *torch) {
    fprintf(out, "%-26s %10.3f %10.3f %10.3f %9.1f %12.1f %10.3f", row->name, r->ms_median,
            r->ms_min, r->ms_max, r->gflops, r->peak_rss_mb, r->cpu_ms_median);
    if (torch && torch->measured)
        fprintf(out, " %10.3f %7.2f  %s", torch->ms_median, r->ms_median / torch->ms_median,
                torch->variant);
    else if (torch)
        fprintf(out, " %10s %7s  %s", "n/a", "n/a", torch->down ? "" : torch->note);
    fprintf(out, "\n");
}

static void print_row(FILE *out, int json, const BenchRow *row, int threads, const RowResult *r,
                      const char *note, const TorchRow *torch) {
    if (json)
        print_json(out, row, threads, r, note, torch);
    else if (note)
        fprintf(out, "%-26s %s\n", row->name, note);
    else
        print_table_row(out, row, r, torch);
    fflush(out);
}

static void print_help(FILE *out) {
    fprintf(out,
            "usage: cpool bench [--json] [--threads T] [--repeats R] [--torch [SCRIPT]] "
            "[NAME ...]\n"
            "       cpool bench --list\n"
            "\n"
            "Time each row (every row when no NAME is given): one warm-up run, then R timed runs\n"
            "(default 5) on T OpenMP threads (default 1). Prints a table, or with --json one\n"
            "object per row: {\"name\", \"threads\", \"ms_median\", \"ms_min\", \"ms_max\", "
            "\"gflops\",\n"
            "\"peak_rss_mb\", \"cpu_ms_median\"}: the last, the process's CPU time per run, is\n"
            "the number to read beside the wall time on a machine shared with other jobs.\n"
            "Each row runs in a process of its own, so its peak RSS is its own.\n"
            "\n"
            "--torch [SCRIPT]: after each row, the same work in PyTorch (SCRIPT, by default\n"
            "bench/torch_bench.py; a SCRIPT argument has a '/' or ends in .py), run by\n"
            "/usr/bin/python3 with T threads; adds \"torch_ms_median\", \"torch_variant\" and\n"
            "\"ratio\" (ms_median / torch_ms_median: below 1, we are faster). Without torch the\n"
            "columns read n/a.\n"
            "The rows and how their FLOPs are counted: tools/cmd_bench.c, docs/performance.md.\n"
            "\n"
            "exit status: 0 done, 1 a row failed (or the script is missing), 2 a usage error.\n");
}

/* ------------------------------------------------------------------------------------------ */
/* Arguments                                                                                  */

typedef struct BenchOptions {
    int json, list, threads, repeats, torch;
    const char *torch_script; /* NULL: the default place */
    const BenchRow *rows[BENCH_N_ROWS * 4];
    int n_rows;
} BenchOptions;

static int parse_count(const char *option, const char *text, int max, int *value, char *err,
                       size_t err_len) {
    char *end = NULL;
    errno = 0;
    long v = text ? strtol(text, &end, 10) : 0;
    if (!text || end == text || *end != '\0' || errno == ERANGE || v < 1 || v > max) {
        snprintf(err, err_len, "%s needs an integer in 1..%d, got '%s'", option, max,
                 text ? text : "");
        return -1;
    }
    *value = (int)v;
    return 0;
}

/* After --torch: is this argument the script (a path, or a .py name) rather than a row? */
static int looks_like_script(const char *arg) {
    size_t len = arg ? strlen(arg) : 0;
    return arg && (strchr(arg, '/') || (len > 3 && strcmp(arg + len - 3, ".py") == 0));
}

static int parse_args(int argc, char **argv, BenchOptions *o, char *err, size_t err_len) {
    *o = (BenchOptions){.threads = 1, .repeats = 5};
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--json") == 0) {
            o->json = 1;
        } else if (strcmp(arg, "--list") == 0) {
            o->list = 1;
        } else if (strcmp(arg, "--torch") == 0) {
            o->torch = 1;
            if (looks_like_script(next)) o->torch_script = argv[++i];
        } else if (strcmp(arg, "--threads") == 0 || strcmp(arg, "--repeats") == 0) {
            int threads = arg[2] == 't';
            if (parse_count(arg, next, threads ? BENCH_MAX_THREADS : BENCH_MAX_REPEATS,
                            threads ? &o->threads : &o->repeats, err, err_len) != 0)
                return -1;
            i++;
        } else if (strncmp(arg, "-", 1) == 0) {
            snprintf(err, err_len, "unknown option '%s' (see cpool bench --help)", arg);
            return -1;
        } else if (!find_row(arg)) {
            snprintf(err, err_len, "unknown row '%s' (cpool bench --list names them)", arg);
            return -1;
        } else if (o->n_rows == BENCH_N_ROWS * 4) {
            snprintf(err, err_len, "too many rows (at most %d)", BENCH_N_ROWS * 4);
            return -1;
        } else {
            o->rows[o->n_rows++] = find_row(arg);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The command                                                                                */

/* Every row: ours in a child process, then torch's (when torch is not NULL). */
static int run_rows(const BenchOptions *o, FILE *out, TorchProcess *torch, char *err,
                    size_t err_len) {
    for (int r = 0; r < o->n_rows; r++) {
        char note[128];
        RowResult result = {0};
        TorchRow torch_row = {0};
        const char *skip = skip_reason(o->rows[r], note, sizeof note);
        if (!skip && run_in_child(o->rows[r], o->threads, o->repeats, &result, err, err_len) != 0)
            return BENCH_EXIT_FAILED;
        if (!skip && torch) torch_row = torch_measure(torch, o->rows[r]->name);
        print_row(out, o->json, o->rows[r], o->threads, &result, skip, torch ? &torch_row : NULL);
    }
    return 0;
}

int bench_run(int argc, char **argv, FILE *out, char *err, size_t err_len) {
    BenchOptions o;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(out);
            return 0;
        }
    if (parse_args(argc, argv, &o, err, err_len) != 0) return BENCH_EXIT_USAGE;
    if (o.list) {
        for (int r = 0; r < BENCH_N_ROWS; r++) fprintf(out, "%s\n", bench_rows[r].name);
        return 0;
    }
    if (o.n_rows == 0)
        for (int r = 0; r < BENCH_N_ROWS; r++) o.rows[o.n_rows++] = &bench_rows[r];
    char script[PATH_MAX + 64];
    if (o.torch && torch_script_path(o.torch_script, script, sizeof script, err, err_len) != 0)
        return BENCH_EXIT_FAILED;
    TorchProcess torch = {0};
    void (*old_sigpipe)(int) = SIG_DFL;
    if (o.torch) {
        old_sigpipe = signal(SIGPIPE, SIG_IGN);
        torch_start(&torch, script, o.threads, o.repeats);
    }
    if (!o.json) print_table_header(out, o.threads, o.repeats, o.torch ? &torch : NULL);
    int status = run_rows(&o, out, o.torch ? &torch : NULL, err, err_len);
    if (!o.json && status == 0) print_load(out, "at the end");
    if (o.torch) {
        torch_stop(&torch, "done");
        signal(SIGPIPE, old_sigpipe);
    }
    return status;
}

int cmd_bench(int argc, char **argv) {
    char err[512] = "";
    int status = bench_run(argc, argv, stdout, err, sizeof err);
    if (status != 0) fprintf(stderr, "cpool bench: %s\n", err);
    return status;
}
