/* cmd_sample.c - `cpool sample`: generate text from a char-LM checkpoint.
 *
 *     cpool sample --ckpt FILE [--prompt TEXT] [--length N] [--temperature T] [--top-k K]
 *                  [--seed S]
 *
 * Autoregressive sampling, one byte at a time: the model reads the last seq_len bytes of prompt
 * + generated text, and the next byte is drawn from softmax(logits / T) over the K most likely
 * bytes (all 256 when K = 0). T = 0 takes the most likely byte (greedy). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "run.h"
#include "util.h"

enum { EXIT_DATA = 1, EXIT_USAGE = 2 };

typedef struct SampleOptions {
    const char *ckpt, *prompt;
    long length, top_k;
    double temperature;
    unsigned long long seed;
} SampleOptions;

static void print_help(void) {
    printf("usage: cpool sample --ckpt FILE [--prompt TEXT] [--length N] [--temperature T]\n"
           "                    [--top-k K] [--seed S]\n\n"
           "Generate text from a charlm checkpoint, one byte at a time.\n\n"
           "  --ckpt FILE       the checkpoint (required)\n"
           "  --prompt TEXT     the text to continue (default \"And God said\")\n"
           "  --length N        bytes to generate (default 400)\n"
           "  --temperature T   softmax temperature (default 0.8; 0: always the likeliest)\n"
           "  --top-k K         draw from the K likeliest bytes only (default 0: all 256)\n"
           "  --seed S          the random generator's seed (default 1)\n");
}

static int parse_number(const char *option, const char *value, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || end == value || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "cpool sample: %s %s: expected a number in %g..%g\n", option, value, lo,
                hi);
        return -1;
    }
    *out = x;
    return 0;
}

/* A whole number in lo..hi (hi below 2^53, so a double holds it exactly). */
static int parse_whole(const char *option, const char *value, double lo, double hi, long *out) {
    char *end;
    errno = 0;
    double x = strtod(value, &end);
    if (errno || end == value || *end || !(x >= lo && x <= hi) || x != floor(x)) {
        fprintf(stderr, "cpool sample: %s %s: expected an integer in %.0f..%.0f\n", option, value,
                lo, hi);
        return -1;
    }
    *out = (long)x;
    return 0;
}

static int parse_args(int argc, char **argv, SampleOptions *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) return print_help(), 1;
        if (strncmp(a, "--", 2)) {
            fprintf(stderr, "cpool sample: unexpected argument '%s' (try --help)\n", a);
            return -1;
        }
        if (!value) {
            fprintf(stderr, "cpool sample: %s needs a value (try --help)\n", a);
            return -1;
        }
        i++;
        long n;
        if (!strcmp(a, "--ckpt"))
            o->ckpt = value;
        else if (!strcmp(a, "--prompt"))
            o->prompt = value;
        else if (!strcmp(a, "--temperature")) {
            if (parse_number(a, value, 0, 100, &o->temperature)) return -1;
        } else if (!strcmp(a, "--length")) {
            if (parse_whole(a, value, 1, 1e7, &o->length)) return -1;
        } else if (!strcmp(a, "--top-k")) {
            if (parse_whole(a, value, 0, 256, &o->top_k)) return -1;
        } else if (!strcmp(a, "--seed")) {
            if (parse_whole(a, value, 0, 1e15, &n)) return -1;
            o->seed = (unsigned long long)n;
        } else {
            fprintf(stderr, "cpool sample: unknown option '%s' (try --help)\n", a);
            return -1;
        }
    }
    if (!o->ckpt) {
        fprintf(stderr, "cpool sample: --ckpt FILE is required (try --help)\n");
        return -1;
    }
    if (!o->prompt[0]) {
        fprintf(stderr, "cpool sample: --prompt must not be empty\n");
        return -1;
    }
    return 0;
}

/* The next byte from one row of 256 logits: greedy at T = 0, else a draw from the tempered
 * softmax restricted to the top_k largest (ties at the k-th value are kept). */
static int draw_byte(const real *logits, double temperature, long top_k, Rng *rng) {
    int best = 0;
    for (int c = 1; c < TEXT_VOCAB_SIZE; c++)
        if (logits[c] > logits[best]) best = c;
    if (temperature == 0) return best;
    double threshold = -INFINITY;
    if (top_k > 0 && top_k < TEXT_VOCAB_SIZE) { /* the k-th largest logit */
        double sorted[TEXT_VOCAB_SIZE];
        for (int c = 0; c < TEXT_VOCAB_SIZE; c++) sorted[c] = logits[c];
        for (int k = 0; k < top_k; k++) /* partial selection sort, descending */
            for (int c = k + 1; c < TEXT_VOCAB_SIZE; c++)
                if (sorted[c] > sorted[k]) {
                    double tmp = sorted[k];
                    sorted[k] = sorted[c];
                    sorted[c] = tmp;
                }
        threshold = sorted[top_k - 1];
    }
    double p[TEXT_VOCAB_SIZE], total = 0;
    for (int c = 0; c < TEXT_VOCAB_SIZE; c++) {
        p[c] = logits[c] >= threshold ? exp((logits[c] - logits[best]) / temperature) : 0;
        total += p[c];
    }
    double u = rng_uniform(rng) * total;
    for (int c = 0; c < TEXT_VOCAB_SIZE; c++) {
        if (u < p[c]) return c;
        u -= p[c];
    }
    return best; /* rounding left u just past the last bin */
}

/* What sampling owns, reachable after a cpool_fail() inside it (cpool_try). */
typedef struct SampleJob {
    const SampleOptions *options;
    RunConfig run;
    Model model;
    int model_loaded;
    int *tokens; /* prompt + generated bytes */
    Tape *tape;
    int status;
    char err[4096];
} SampleJob;

/* The prompt and length new bytes, each printed as it is drawn. */
static void generate(SampleJob *job) {
    const SampleOptions *o = job->options;
    int seq_len = job->model.config.seq_len;
    long prompt_len = (long)strlen(o->prompt), total = prompt_len + o->length;
    job->tokens = xmalloc((size_t)total * sizeof *job->tokens);
    for (long i = 0; i < prompt_len; i++) job->tokens[i] = (unsigned char)o->prompt[i];
    Rng rng;
    rng_seed(&rng, o->seed);
    job->tape = tape_create();
    job->tape->no_grad = 1;
    fputs(o->prompt, stdout);
    for (long n = prompt_len; n < total; n++) {
        int len = n < seq_len ? (int)n : seq_len; /* the last seq_len bytes */
        ModelInput in = {.tokens = job->tokens + n - len, .batch = 1, .len = len};
        Tensor *logits = model_forward(job->tape, &job->model, &in, NULL); /* (1, len, 256) */
        job->tokens[n] = draw_byte(logits->data + (long)(len - 1) * TEXT_VOCAB_SIZE, o->temperature,
                                   o->top_k, &rng);
        putchar(job->tokens[n]);
        fflush(stdout);
        tape_reset(job->tape);
    }
    putchar('\n');
}

/* 0, or EXIT_DATA with job->err set; nothing is printed before the model is known to fit. */
static int sample_steps(SampleJob *job) {
    const char *ckpt = job->options->ckpt;
    if (run_load_checkpoint(ckpt, &job->run, &job->model, job->err, sizeof job->err) != 0)
        return EXIT_DATA;
    job->model_loaded = 1;
    if (job->run.model.kind != MODEL_CHARLM) {
        snprintf(job->err, sizeof job->err, "%s: model=%s, but sampling needs a charlm", ckpt,
                 model_kind_name(job->run.model.kind));
        return EXIT_DATA;
    }
    generate(job);
    return 0;
}

static void sample_body(void *arg) {
    SampleJob *job = arg;
    job->status = sample_steps(job);
}

int cmd_sample(int argc, char **argv) {
    SampleOptions o = {.prompt = "And God said", .length = 400, .temperature = 0.8, .seed = 1};
    int parsed = parse_args(argc, argv, &o);
    if (parsed != 0) return parsed > 0 ? 0 : EXIT_USAGE;
    SampleJob *job = xcalloc(1, sizeof *job);
    job->options = &o;
    char failure[1024];
    int status = EXIT_DATA;
    if (cpool_try(sample_body, job, failure, sizeof failure) != 0)
        fprintf(stderr, "cpool sample: %s: %s\n", o.ckpt, failure);
    else if ((status = job->status) != 0)
        fprintf(stderr, "cpool sample: %s\n", job->err);
    if (job->tape) tape_free(job->tape);
    free(job->tokens);
    if (job->model_loaded) model_free(&job->model);
    free(job);
    return status;
}
