/* bench_matmul.c - how fast is our matrix multiply? GFLOP/s beside OpenBLAS and PyTorch.
 *
 *     make bench                     (from the top directory; see bench/Makefile)
 *     bench_matmul [torch_matmul.py]  (the script is optional: without it PyTorch shows n/a)
 *
 * For square n x n x n products, n = 256, 512, 1024, on one thread and on every core, it prints:
 *   gemm        our gemm(), C = A B                                     2 n^3 flops
 *   matmul f+b  op_matmul forward and backward through the tape:        6 n^3 flops
 *               C = A B, then dA = dC B^T and dB = A^T dC
 *   OpenBLAS    cblas_sgemm on the same matrices (n/a if it is not installed)
 *   ratio       gemm / OpenBLAS
 *   torch mm, torch f+b: PyTorch's matmul forward, and forward+backward (torch_matmul.py)
 * Each number is the best of several timed runs after a warm-up run (the best, not the mean,
 * because on a shared machine interference only ever makes a run slower).
 *
 * Peak. The theoretical single-core fp32 peak is an estimate: the clock reported in /proc/cpuinfo
 * x FMA pipes x fp32 lanes per pipe x 2 flops per FMA, with the pipes and lanes assumed from the
 * CPU (printed). Virtual machines often report the base clock while the core runs faster, so the
 * bench also times a loop of independent FMAs: the rate a perfect kernel could reach here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "gemm.h"
#include "ops.h"
#include "rng.h"

#ifdef HAVE_OPENBLAS
#include <cblas.h>
#endif

enum { N_SIZES = 3, MAX_THREAD_SETTINGS = 2 };
static const int sizes[N_SIZES] = {256, 512, 1024};
static const double BUDGET_SECONDS = 0.7; /* per measurement, after the warm-up */
static const int MIN_RUNS = 3, MAX_RUNS = 500;

/* --- Timing -------------------------------------------------------------------------------- */

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef void (*Work)(void *context);

/* Best wall time of work(context): one warm-up run, then runs until both MIN_RUNS and the time
 * budget are reached. */
static double best_seconds(Work work, void *context) {
    work(context);
    double best = 1e30, spent = 0;
    for (int runs = 0; runs < MIN_RUNS || (spent < BUDGET_SECONDS && runs < MAX_RUNS); runs++) {
        double start = now_seconds();
        work(context);
        double elapsed = now_seconds() - start;
        spent += elapsed;
        if (elapsed < best) best = elapsed;
    }
    return best;
}

/* --- The workloads --------------------------------------------------------------------------- */

typedef struct Problem {
    int n;
    real *A, *B, *C; /* n x n each */
    Tape *tape;
    Tensor *a, *b; /* the same values as A and B, with gradients */
    real *seed;    /* dC for the backward pass: n x n ones */
} Problem;

static void run_gemm(void *context) {
    Problem *p = context;
    gemm(0, 0, p->n, p->n, p->n, p->A, p->n, p->B, p->n, p->C, p->n, 0);
}

static void run_matmul_forward_backward(void *context) {
    Problem *p = context;
    Tensor *c = op_matmul(p->tape, p->a, p->b, 0, 0);
    tape_backward_from(p->tape, c, p->seed);
    tape_reset(p->tape);
    tensor_zero_grad(p->a);
    tensor_zero_grad(p->b);
}

#ifdef HAVE_OPENBLAS
static void run_openblas(void *context) {
    Problem *p = context;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->n, p->n, p->n, 1, p->A, p->n, p->B,
                p->n, 0, p->C, p->n);
}
#endif

static Problem problem_create(int n) {
    Problem p = {.n = n, .tape = tape_create()};
    int shape[2] = {n, n};
    p.a = tensor_create(2, shape, 1);
    p.b = tensor_create(2, shape, 1);
    p.A = p.a->data;
    p.B = p.b->data;
    p.C = malloc((size_t)n * n * sizeof(real));
    p.seed = malloc((size_t)n * n * sizeof(real));
    Rng rng;
    rng_seed(&rng, 1);
    for (long i = 0; i < (long)n * n; i++) {
        p.A[i] = (real)rng_range(&rng, -0.5, 0.5);
        p.B[i] = (real)rng_range(&rng, -0.5, 0.5);
        p.seed[i] = 1;
    }
    return p;
}

static void problem_free(Problem *p) {
    tape_free(p->tape);
    tensor_free(p->a);
    tensor_free(p->b);
    free(p->C);
    free(p->seed);
}

/* --- PyTorch, through torch_matmul.py -------------------------------------------------------- */

typedef struct TorchResult {
    double forward, forward_backward; /* GFLOP/s; 0 when unavailable */
} TorchResult;

/* Runs the script once per thread count, with OpenMP's and OpenBLAS's thread counts set in its
 * environment (torch.set_num_threads alone does not bound the BLAS library's own threads). */
static void run_torch(const char *script, int threads, TorchResult results[N_SIZES], char *version,
                      size_t version_len) {
    char command[1024];
    snprintf(command, sizeof command,
             "OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d /usr/bin/python3 '%s' --threads %d "
             "--sizes %d,%d,%d 2>/dev/null",
             threads, threads, script, threads, sizes[0], sizes[1], sizes[2]);
    FILE *pipe = popen(command, "r");
    if (!pipe) return;
    char line[256];
    while (fgets(line, sizeof line, pipe)) {
        int t, n;
        double forward, both;
        if (strncmp(line, "# torch ", 8) == 0) {
            snprintf(version, version_len, "%s", line + 8);
            version[strcspn(version, "\n")] = 0;
        } else if (sscanf(line, "%d %d %lf %lf", &t, &n, &forward, &both) == 4) {
            for (int s = 0; s < N_SIZES; s++)
                if (sizes[s] == n) results[s] = (TorchResult){forward, both};
        }
    }
    pclose(pipe);
}

/* --- The peak -------------------------------------------------------------------------------- */

/* A value from /proc/cpuinfo ("cpu MHz", "vendor_id", ...) for the first CPU, or "". */
static void cpuinfo_field(const char *key, char *value, size_t len) {
    value[0] = 0;
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, key, strlen(key)) != 0 || !colon) continue;
        snprintf(value, len, "%s", colon + 2);
        value[strcspn(value, "\n")] = 0;
        break;
    }
    fclose(f);
}

/* FMA pipes per core and fp32 lanes per pipe, from the vendor and the instruction set. */
static const char *fma_layout(int *pipes, int *lanes) {
    char vendor[64], family[16];
    cpuinfo_field("vendor_id", vendor, sizeof vendor);
    cpuinfo_field("cpu family", family, sizeof family);
    *pipes = 2;
    if (strcmp(vendor, "AuthenticAMD") == 0 && atoi(family) >= 23) {
        *lanes = 8;
        return "AMD Zen: 2 FMA pipes of 256 bits (Zen 4 runs AVX-512 as two 256-bit halves)";
    }
    if (__builtin_cpu_supports("avx512f")) {
        *lanes = 16;
        return "AVX-512: assumes 2 FMA units of 512 bits (some parts have one)";
    }
    if (__builtin_cpu_supports("fma")) {
        *lanes = 8;
        return "AVX2: 2 FMA units of 256 bits";
    }
    *lanes = 4;
    return "SSE: assumes 2 units of 128 bits (multiply and add)";
}

/* One core running nothing but independent FMAs: 12 accumulator vectors, so the latency of one
 * FMA is hidden behind the others. Returns GFLOP/s, the best of a few runs. */
typedef float vfloat __attribute__((vector_size(64)));
static double measured_fma_peak(void) {
    enum { ACCUMULATORS = 12, STEPS = 5000000, RUNS = 10 };
    vfloat acc[ACCUMULATORS], x, y;
    for (int l = 0; l < 16; l++) x[l] = 0.999999f, y[l] = 1e-7f;
    for (int i = 0; i < ACCUMULATORS; i++) acc[i] = x * (float)i;
    double best = 1e30;
    for (int run = 0; run < RUNS; run++) {
        double start = now_seconds();
        for (int s = 0; s < STEPS; s++)
            for (int i = 0; i < ACCUMULATORS; i++) acc[i] = acc[i] * x + y;
        double elapsed = now_seconds() - start;
        if (elapsed < best) best = elapsed;
    }
    float sink = 0;
    for (int i = 0; i < ACCUMULATORS; i++) sink += acc[i][0];
    if (sink == 12345) puts(""); /* keep the loop alive */
    return 2.0 * 16 * ACCUMULATORS * (double)STEPS / best * 1e-9;
}

/* --- The table ------------------------------------------------------------------------------- */

typedef struct Row {
    double gemm, matmul_forward_backward, openblas; /* GFLOP/s; 0 for n/a */
    TorchResult torch;
} Row;

/* Our gemm and op_matmul forward+backward on `threads` threads at every size, then OpenBLAS at
 * every size: one library's idle threads (which spin for a while after a parallel call) then
 * never steal a core from the other's measurement. */
static void measure(int threads, Row rows[N_SIZES]) {
    omp_set_num_threads(threads);
    for (int s = 0; s < N_SIZES; s++) {
        Problem p = problem_create(sizes[s]);
        double flops = 2.0 * sizes[s] * sizes[s] * sizes[s];
        rows[s].gemm = flops / best_seconds(run_gemm, &p) * 1e-9;
        rows[s].matmul_forward_backward =
            3 * flops / best_seconds(run_matmul_forward_backward, &p) * 1e-9;
        problem_free(&p);
    }
#ifdef HAVE_OPENBLAS
    usleep(300000);
    openblas_set_num_threads(threads);
    for (int s = 0; s < N_SIZES; s++) {
        Problem p = problem_create(sizes[s]);
        double flops = 2.0 * sizes[s] * sizes[s] * sizes[s];
        rows[s].openblas = flops / best_seconds(run_openblas, &p) * 1e-9;
        problem_free(&p);
    }
    usleep(300000);
#endif
}

static void print_cell(double gflops) {
    if (gflops > 0)
        printf(" %10.1f", gflops);
    else
        printf(" %10s", "n/a");
}

static void print_row(int threads, int n, const Row *row) {
    printf("%7d %5d", threads, n);
    print_cell(row->gemm);
    print_cell(row->matmul_forward_backward);
    print_cell(row->openblas);
    if (row->openblas > 0)
        printf(" %10.2f ", row->gemm / row->openblas);
    else
        printf(" %10s ", "n/a");
    print_cell(row->torch.forward);
    print_cell(row->torch.forward_backward);
    printf("\n");
}

static void print_header(int cores) {
    char model[256];
    cpuinfo_field("model name", model, sizeof model);
    printf("matmul benchmark (" REAL_NAME "): square n x n x n, GFLOP/s, best of >= %d runs\n",
           MIN_RUNS);
    printf("CPU: %s, %d logical cores\n", model, cores);
#ifdef HAVE_OPENBLAS
    printf("OpenBLAS: %s; core %s\n", openblas_get_config(), openblas_get_corename());
#else
    printf("OpenBLAS: not installed (n/a)\n");
#endif
}

/* The estimate, the measured FMA rate, and how close our best single-thread gemm came. */
static void print_peak(double fma_peak, double best_single_gemm) {
    char mhz_text[64];
    cpuinfo_field("cpu MHz", mhz_text, sizeof mhz_text);
    double ghz = atof(mhz_text) / 1000;
    int pipes, lanes;
    const char *layout = fma_layout(&pipes, &lanes);
    int flops_per_cycle = pipes * lanes * 2;
    printf("theoretical fp32 peak per core (an estimate): %.2f GHz (cpu MHz, /proc/cpuinfo) x %d "
           "FMA pipes x %d lanes x 2 flops = %.1f GFLOP/s\n  [%s]\n",
           ghz, pipes, lanes, ghz * flops_per_cycle, layout);
    printf("measured: an FMA-only loop on one core runs at %.1f GFLOP/s (%.2f GHz effective at %d "
           "flops/cycle);\n  our best single-thread gemm reaches %.0f%% of that\n",
           fma_peak, fma_peak / flops_per_cycle, flops_per_cycle,
           100 * best_single_gemm / fma_peak);
}

int main(int argc, char **argv) {
    const char *torch_script = argc > 1 ? argv[1] : NULL;
    int cores = omp_get_num_procs();
    int thread_settings[MAX_THREAD_SETTINGS] = {1, cores};
    int n_settings = cores > 1 ? 2 : 1;
    print_header(cores);

    Row rows[MAX_THREAD_SETTINGS][N_SIZES] = {0};
    char torch_version[256] = "";
    for (int t = 0; torch_script && t < n_settings; t++) {
        TorchResult torch[N_SIZES] = {0};
        run_torch(torch_script, thread_settings[t], torch, torch_version, sizeof torch_version);
        for (int s = 0; s < N_SIZES; s++) rows[t][s].torch = torch[s];
    }
    omp_set_num_threads(1);
    double fma_peak = measured_fma_peak();
    for (int t = 0; t < n_settings; t++) measure(thread_settings[t], rows[t]);
    double again = measured_fma_peak(); /* the best of two moments on a shared machine */
    if (again > fma_peak) fma_peak = again;

    printf("torch: %s\n\n",
           torch_version[0] ? torch_version : "n/a (not importable by /usr/bin/python3)");
    printf("threads     n       gemm matmul f+b   OpenBLAS  gemm/OBLAS   torch mm  torch f+b\n");
    double best_single_gemm = 0;
    for (int t = 0; t < n_settings; t++)
        for (int s = 0; s < N_SIZES; s++) {
            print_row(thread_settings[t], sizes[s], &rows[t][s]);
            if (t == 0 && rows[t][s].gemm > best_single_gemm) best_single_gemm = rows[t][s].gemm;
        }
    printf("\n");
    print_peak(fma_peak, best_single_gemm);
    for (int s = 0; s < N_SIZES; s++)
        if (sizes[s] == 512 && rows[0][s].openblas > 0)
            printf("512 x 512, one thread: our gemm runs at %.0f%% of OpenBLAS sgemm\n",
                   100 * rows[0][s].gemm / rows[0][s].openblas);
    return 0;
}
