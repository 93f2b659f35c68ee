/* test_train_cmd.c - `cpool train`, `cpool eval` and `cpool sample` end to end, on a few KB of
 * generated text (and small generated IDX files) in a temporary directory, with a tiny model:
 *   - a run interrupted by Ctrl-C, or killed with SIGKILL, and resumed ends with the same
 *     parameters, optimizer state, loss curve and results, bit for bit, as a run never stopped;
 *   - broken data (missing, empty, too short, a directory, unreadable, truncated or mislabelled
 *     IDX files) and bad command lines are one line on stderr with exit status 1 (data) or 2
 *     (usage), and leave no checkpoint or result behind;
 *   - a diverging run (an lr whose first update overflows the next forward) stops at the step
 *     whose loss is NaN with exit 1 and one line naming the first op that produced a NaN/Inf (a
 *     re-run of the step in anomaly mode), and keeps its last checkpoint byte for byte; so does
 *     --anomaly, which names the same op and otherwise changes no bit of a run; a NaN gradient
 *     (planted) never reaches the parameters;
 *   - eval reproduces the run's own valid and test numbers; sample is deterministic for a seed,
 *     greedy at temperature 0, the same greedy with --top-k 1, and refuses an image model.
 *
 * The commands' sources are compiled into this test (the tools are not part of the library), each
 * with its two generic static names (print_help, parse_args) and exit codes renamed.
 *
 * Stopping a run at a chosen step. The library puts every file in place with rename()
 * (atomic_close: temp file, fsync, rename), so this test defines its own rename(), which the
 * linker prefers to the C library's: it counts the renames onto a run's checkpoint.safetensors
 * and, at the n-th, either raises SIGINT after it (what Ctrl-C does: the loop finishes the next
 * step, saves and exits 130) or, in a forked child, raises SIGKILL before it (kill -9 in the
 * middle of writing a checkpoint: the previous checkpoint stays, the loss curve has rows past it
 * and a temp file lies around). Everything else goes to the real rename (renameat). */
#include "test_train_util.h"

#include <fcntl.h>
#include <omp.h>
#include <signal.h>
#include <sys/wait.h>
#include <zlib.h>

/* cmd_train's calls to clip_grad_norm and adamw_step go through these spies (the #defines
 * around its #include): a test can plant a NaN in a gradient just before the norm is measured,
 * and every test can count the updates. */
#include "optim.h"

static struct {
    long clip_calls;
    long poison_at; /* the clip call (1 = the first) whose first gradient turns NaN; 0: none */
    long updates;
} spy;

static double spy_clip_grad_norm(ParamSet *params, double max_norm) {
    if (++spy.clip_calls == spy.poison_at) params->items[0].tensor->grad[0] = (real)NAN;
    return clip_grad_norm(params, max_norm);
}

static void spy_adamw_step(AdamW *opt, double lr) {
    spy.updates++;
    adamw_step(opt, lr);
}

#define print_help     train_print_help
#define parse_args     train_parse_args
#define EXIT_DATA      TRAIN_EXIT_DATA
#define EXIT_USAGE     TRAIN_EXIT_USAGE
#define clip_grad_norm spy_clip_grad_norm
#define adamw_step     spy_adamw_step
#include "../tools/cmd_train.c"
#undef print_help
#undef parse_args
#undef EXIT_DATA
#undef EXIT_USAGE
#undef clip_grad_norm
#undef adamw_step
#define print_help eval_print_help
#define parse_args eval_parse_args
#define EXIT_DATA  EVAL_EXIT_DATA
#define EXIT_USAGE EVAL_EXIT_USAGE
#include "../tools/cmd_eval.c"
#undef print_help
#undef parse_args
#undef EXIT_DATA
#undef EXIT_USAGE
#define print_help sample_print_help
#define parse_args sample_parse_args
#define EXIT_DATA  SAMPLE_EXIT_DATA
#define EXIT_USAGE SAMPLE_EXIT_USAGE
#include "../tools/cmd_sample.c"
#undef print_help
#undef parse_args
#undef EXIT_DATA
#undef EXIT_USAGE

#include "checkpoint.h"

/* cmd_train draws the run's figures at the end (tools/plot_run.c, not compiled in here) unless
 * --no-plots, which every run below passes: reference_run() asserts this was never called. */
static int plot_calls;

int plot_run_figures(const char *run_dir, const char *ckpt_path, char *err, size_t err_len) {
    (void)run_dir, (void)ckpt_path;
    plot_calls++;
    snprintf(err, err_len, "not compiled into this test");
    return -1;
}

/* ---- The checkpoint hook (see the top of the file) --------------------------------------- */

typedef enum HookAction { HOOK_NONE, HOOK_INTERRUPT, HOOK_KILL, HOOK_COPY } HookAction;

static struct {
    HookAction action;
    int at;               /* act at this rename onto a checkpoint.safetensors (1 = the first) */
    int count;            /* such renames so far */
    char copy_path[1024]; /* HOOK_COPY: after every such rename, the new file is copied here */
} hook;

static void hook_set(HookAction action, int at) {
    hook.action = action, hook.at = at, hook.count = 0;
}

static int ends_with(const char *text, const char *suffix) {
    size_t n = strlen(text), m = strlen(suffix);
    return n >= m && strcmp(text + n - m, suffix) == 0;
}

/* from's bytes into a new file `to` (plain stdio: it runs inside cmd_train, in a child). */
static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    char buffer[4096];
    size_t n;
    while (in && out && (n = fread(buffer, 1, sizeof buffer, in)) > 0) fwrite(buffer, 1, n, out);
    if (in) fclose(in);
    if (out) fclose(out);
}

int rename(const char *from, const char *to) {
    int acting = hook.action != HOOK_NONE && ends_with(to, "/checkpoint.safetensors") &&
                 ++hook.count == hook.at;
    if (acting && hook.action == HOOK_KILL) raise(SIGKILL); /* never returns */
    int status = renameat(AT_FDCWD, from, AT_FDCWD, to);
    if (acting && hook.action == HOOK_INTERRUPT) {
        hook.action = HOOK_NONE;
        raise(SIGINT); /* cmd_train's handler only sets its flag */
    }
    if (status == 0 && hook.action == HOOK_COPY && ends_with(to, "/checkpoint.safetensors"))
        copy_file(to, hook.copy_path);
    return status;
}

/* ---- Files -------------------------------------------------------------------------------- */

/* TEMP/name, in one of 16 rotating buffers (a test holds a few at a time). */
static const char *temp(const char *name) {
    static char paths[16][1024];
    static int next;
    char *path = paths[next++ % 16];
    snprintf(path, 1024, "%s/%s", train_temp_dir, name);
    return path;
}

/* dir/name, in one of 8 rotating buffers. */
static const char *in_dir(const char *dir, const char *name) {
    static char paths[8][1200];
    static int next;
    char *path = paths[next++ % 8];
    snprintf(path, 1200, "%s/%s", dir, name);
    return path;
}

static int exists(const char *path) {
    return access(path, F_OK) == 0;
}

/* Whether dir holds a file whose name starts with prefix. */
static int holds_file_starting(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int found = 0;
    for (struct dirent *e; !found && (e = readdir(d));)
        found = strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return found;
}

/* About 4 KB of words drawn from a small vocabulary: 90/5/5 splits of ~3700/200/200 bytes. */
static void write_corpus(const char *path, long bytes, uint64_t seed) {
    static const char *const words[] = {
        "in",      "the",  "beginning", "god",   "created", "heaven", "and",  "earth", "was",
        "without", "form", "void",      "light", "day",     "night",  "said", "let",   "be"};
    Rng rng;
    rng_seed(&rng, seed);
    char *text = malloc((size_t)bytes + 32);
    long n = 0;
    while (n < bytes) {
        const char *word = words[rng_int(&rng, sizeof words / sizeof words[0])];
        n += sprintf(text + n, "%s%s", word, rng_int(&rng, 9) == 0 ? ".\n" : " ");
    }
    train_write_file(path, text, (size_t)bytes);
    free(text);
}

static void put_u32_be(unsigned char *b, uint32_t v) {
    b[0] = (unsigned char)(v >> 24), b[1] = (unsigned char)(v >> 16);
    b[2] = (unsigned char)(v >> 8), b[3] = (unsigned char)v;
}

/* One gzip'd IDX file: the header fields (magic first), then n data bytes. */
static void write_idx(const char *path, const uint32_t *fields, int n_fields,
                      const unsigned char *data, size_t n) {
    unsigned char header[16];
    for (int f = 0; f < n_fields; f++) put_u32_be(header + 4 * f, fields[f]);
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    assert_int_equal(gzwrite(gz, header, 4 * (unsigned)n_fields), 4 * n_fields);
    assert_int_equal(gzwrite(gz, data, (unsigned)n), (int)n);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* A small Fashion-MNIST look-alike in dir: 16 training and 8 test images, random pixels and
 * labels; label_magic replaces the t10k labels' magic. */
static void write_images(const char *dir, uint32_t label_magic) {
    mkdir(dir, 0777);
    Rng rng;
    rng_seed(&rng, 99);
    const char *prefixes[2] = {"train", "t10k"};
    const int counts[2] = {16, 8};
    for (int k = 0; k < 2; k++) {
        size_t n = (size_t)counts[k] * IMAGE_PIXELS;
        unsigned char *pixels = malloc(n), labels[16];
        for (size_t i = 0; i < n; i++) pixels[i] = (unsigned char)rng_int(&rng, 256);
        for (int i = 0; i < counts[k]; i++) labels[i] = (unsigned char)rng_int(&rng, 10);
        char path[1200];
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefixes[k]);
        write_idx(path, (uint32_t[]){IDX_IMAGES_MAGIC, (uint32_t)counts[k], 28, 28}, 4, pixels, n);
        snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefixes[k]);
        write_idx(path, (uint32_t[]){k ? label_magic : IDX_LABELS_MAGIC, (uint32_t)counts[k]}, 2,
                  labels, (size_t)counts[k]);
        free(pixels);
    }
}

/* Cuts the file at path to its first `keep` bytes. */
static void truncate_file(const char *path, long keep) {
    size_t n;
    char *bytes = train_read_file(path, &n);
    assert_true((size_t)keep < n);
    train_write_file(path, bytes, (size_t)keep);
    free(bytes);
}

/* ---- Running a command -------------------------------------------------------------------- */

typedef int (*Command)(int argc, char **argv);

/* The last command's stdout and stderr (malloc'd, replaced by each run). */
static char *out_text, *err_text;

/* stdout and stderr into TEMP/stdout.txt and TEMP/stderr.txt; the originals kept in saved[]. */
static char out_path[1024], err_path[1024];

static void capture_begin(int saved[2]) {
    snprintf(out_path, sizeof out_path, "%s/stdout.txt", train_temp_dir);
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", train_temp_dir);
    fflush(stdout), fflush(stderr);
    saved[0] = dup(STDOUT_FILENO), saved[1] = dup(STDERR_FILENO);
    int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(saved[0] >= 0 && saved[1] >= 0 && out >= 0 && err >= 0);
    dup2(out, STDOUT_FILENO), dup2(err, STDERR_FILENO);
    close(out), close(err);
}

/* The originals back; what was written into out_text and err_text. */
static void capture_end(const int saved[2]) {
    fflush(stdout), fflush(stderr);
    dup2(saved[0], STDOUT_FILENO), dup2(saved[1], STDERR_FILENO);
    close(saved[0]), close(saved[1]);
    free(out_text), free(err_text);
    out_text = train_read_file(out_path, NULL);
    err_text = train_read_file(err_path, NULL);
}

/* A command must end by returning its status, never inside cpool_fail() (whose default handler
 * exits the program): while one runs, this handler jumps back to run_argv, which fails the
 * test. It ignores `user`: model_check_config() reinstalls the handler it found with user NULL. */
static jmp_buf command_escape;

static void command_failed(const char *message, void *user) {
    (void)message, (void)user;
    longjmp(command_escape, 1);
}

enum { CAUGHT_FAILURE = -1000 };

/* command(argc, argv)'s status, or CAUGHT_FAILURE if it called cpool_fail(). */
static int call_catching(Command command, int argc, char **argv) {
    static ErrorHandler previous; /* static: kept across the longjmp */
    static void *previous_user;
    previous_user = cpool_error_handler_user();
    previous = cpool_set_error_handler(command_failed, NULL);
    if (setjmp(command_escape) != 0) {
        cpool_set_error_handler(previous, previous_user);
        return CAUGHT_FAILURE;
    }
    int status = command(argc, argv);
    cpool_set_error_handler(previous, previous_user);
    return status;
}

/* Runs command(argv) - argv[0] the command's name, NULL-terminated - with stdout and stderr
 * captured into out_text and err_text. Returns its exit status. */
static int run_argv(Command command, char **argv) {
    int argc = 0, saved[2];
    while (argv[argc]) argc++;
    capture_begin(saved);
    int status = call_catching(command, argc, argv);
    capture_end(saved);
    if (status == CAUGHT_FAILURE)
        fail_msg("`cpool %s` stopped in cpool_fail: %s", argv[0], cpool_last_error());
    return status;
}

enum { SKIP_STATUS = 77 };

/* The same in a forked child, as the program runs: a cpool_fail() inside ends it with its
 * message and status 1. user >= 0: the child runs as that user (SKIP_STATUS if it cannot).
 * Returns the exit status. */
static int run_argv_in_child(Command command, char **argv, int user) {
    int argc = 0;
    while (argv[argc]) argc++;
    int saved[2];
    capture_begin(saved);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        cpool_set_error_handler(NULL, NULL); /* the program's: print "cpool: ..." and exit 1 */
        if (user >= 0 && setuid((uid_t)user) != 0) _exit(SKIP_STATUS);
        int status = command(argc, argv);
        fflush(stdout), fflush(stderr);
        _exit(status);
    }
    int wait_status;
    assert_int_equal(waitpid(child, &wait_status, 0), child);
    capture_end(saved);
    if (!WIFEXITED(wait_status)) fail_msg("`cpool %s` died (wait status %d)", argv[0], wait_status);
    return WEXITSTATUS(wait_status);
}

#define MAX_ARGS 48

/* run(command, "name", args..., NULL) */
static int run(Command command, ...) {
    char *argv[MAX_ARGS];
    int argc = 0;
    va_list args;
    va_start(args, command);
    for (char *a; (a = va_arg(args, char *));) {
        assert_true(argc < MAX_ARGS - 1);
        argv[argc++] = a;
    }
    va_end(args);
    argv[argc] = NULL;
    return run_argv(command, argv);
}

/* `cpool train` with the tiny charlm's keys, data=TEMP/text.txt, --out dir, --threads 1 and the
 * extra arguments (NULL-terminated) after them. */
static int train_tiny(const char *dir, ...) {
    static char data[1100];
    snprintf(data, sizeof data, "data=%s", temp("text.txt"));
    char *argv[MAX_ARGS] = {
        "train",   data,         "dim=16",       "heads=2",  "layers=1",           "seq_len=16",
        "batch=4", "steps=12",   "eval_every=4", "seed=3",   "checkpoint_every=4", "--threads",
        "1",       "--no-plots", "--out",        (char *)dir};
    int argc = 16;
    va_list args;
    va_start(args, dir);
    for (char *a; (a = va_arg(args, char *));) {
        assert_true(argc < MAX_ARGS - 1);
        argv[argc++] = a;
    }
    va_end(args);
    argv[argc] = NULL;
    return run_argv(cmd_train, argv);
}

/* stderr is exactly one line, "prefix" followed by text containing `contains`. */
static void assert_one_line(const char *prefix, const char *contains) {
    size_t n = strlen(err_text);
    if (n == 0 || err_text[n - 1] != '\n' || strchr(err_text, '\n') != err_text + n - 1)
        fail_msg("expected one line on stderr, got:\n%s", err_text);
    if (strncmp(err_text, prefix, strlen(prefix)) != 0 || !strstr(err_text, contains))
        fail_msg("stderr '%s' is not '%s...%s...'", err_text, prefix, contains);
}

/* Nothing of a run in dir: no checkpoint, result, loss curve or config. */
static void assert_no_run_files(const char *dir) {
    const char *names[4] = {"checkpoint.safetensors", "result.txt", "loss.csv", "config.txt"};
    for (int i = 0; i < 4; i++)
        if (exists(in_dir(dir, names[i]))) fail_msg("%s/%s was written", dir, names[i]);
}

/* ---- Reading a run back ------------------------------------------------------------------- */

/* A checkpoint's model, optimizer and state. */
typedef struct Saved {
    RunConfig run;
    Model model;
    AdamW opt;
    TrainState state;
} Saved;

static void saved_load(Saved *s, const char *path) {
    char err[1024];
    memset(s, 0, sizeof *s);
    if (run_load_checkpoint(path, &s->run, &s->model, err, sizeof err) != 0) fail_msg("%s", err);
    adamw_init(&s->opt, &s->model.params, ADAMW_DEFAULTS);
    if (checkpoint_load(path, &s->model.params, &s->opt, &s->state, err, sizeof err) != 0)
        fail_msg("%s", err);
}

static void saved_free(Saved *s) {
    adamw_free(&s->opt);
    model_free(&s->model);
    free(s->state.config);
}

static void assert_same_bits(const Tensor *a, const Tensor *b, const char *what) {
    assert_int_equal(a->size, b->size);
    if (memcmp(a->data, b->data, (size_t)a->size * sizeof(real)) != 0) fail_msg("%s differs", what);
}

/* Parameters, moments, steps, counters and generator: the same bits. */
static void assert_same_checkpoint(const char *path_a, const char *path_b) {
    static Saved a, b;
    saved_load(&a, path_a);
    saved_load(&b, path_b);
    assert_int_equal(a.model.params.count, b.model.params.count);
    for (int i = 0; i < a.model.params.count; i++) {
        const char *name = a.model.params.items[i].name;
        assert_string_equal(name, b.model.params.items[i].name);
        assert_same_bits(a.model.params.items[i].tensor, b.model.params.items[i].tensor, name);
        assert_same_bits(a.opt.m[i], b.opt.m[i], "optimizer m");
        assert_same_bits(a.opt.v[i], b.opt.v[i], "optimizer v");
    }
    assert_int_equal(a.opt.step, b.opt.step);
    assert_int_equal(a.state.step, b.state.step);
    assert_int_equal(a.state.tokens, b.state.tokens);
    assert_memory_equal(a.state.rng.state, b.state.rng.state, sizeof a.state.rng.state);
    assert_string_equal(a.state.config, b.state.config);
    saved_free(&a);
    saved_free(&b);
}

static long checkpoint_step(const char *path) {
    static Saved s;
    saved_load(&s, path);
    long step = s.state.step;
    saved_free(&s);
    return step;
}

/* The loss curve without its last column (elapsed seconds, which differ between runs). */
static char *curve_without_time(const char *dir) {
    char *text = train_read_file(in_dir(dir, "loss.csv"), NULL);
    char *out = text;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        const char *comma = line + len;
        while (comma > line && *comma != ',') comma--;
        memmove(out, line, (size_t)(comma - line));
        out += comma - line;
        *out++ = '\n';
        line += len + (end != NULL);
    }
    *out = '\0';
    return text;
}

static int count_lines(const char *text) {
    int n = 0;
    for (; *text; text++) n += *text == '\n';
    return n;
}

/* A "key = value" number of result.txt (fails if absent). */
static double result_value(const char *dir, const char *key) {
    char *text = train_read_file(in_dir(dir, "result.txt"), NULL);
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\n%s = ", key);
    char *with_newline = malloc(strlen(text) + 2);
    sprintf(with_newline, "\n%s", text);
    const char *at = strstr(with_newline, pattern);
    if (!at) fail_msg("result.txt has no '%s'", key);
    double value = strtod(at + strlen(pattern), NULL);
    free(with_newline);
    free(text);
    return value;
}

/* Every line of result.txt but the wall-clock time. */
static char *result_without_time(const char *dir) {
    char *text = train_read_file(in_dir(dir, "result.txt"), NULL);
    char *at = strstr(text, "train_seconds = ");
    assert_non_null(at);
    char *end = strchr(at, '\n');
    memmove(at, end + 1, strlen(end + 1) + 1);
    return text;
}

/* ---- The reference run -------------------------------------------------------------------- */

/* TEMP/a: the tiny charlm trained 12 steps without a stop (once per suite). */
static const char *reference_run(void) {
    static int done;
    const char *dir = temp("a");
    if (!done) {
        int status = train_tiny(dir, "--quiet", NULL);
        if (status != 0) fail_msg("the reference run failed (%d): %s", status, err_text);
        assert_int_equal(plot_calls, 0);
        done = 1;
    }
    return dir;
}

/* Every file of a finished run, 12 training rows and 3 evaluations in its curve, its result. */
static void a_run_writes_config_checkpoint_curve_and_result(void **state) {
    (void)state;
    const char *dir = reference_run();
    const char *names[4] = {"config.txt", "checkpoint.safetensors", "loss.csv", "result.txt"};
    for (int i = 0; i < 4; i++)
        if (!exists(in_dir(dir, names[i]))) fail_msg("%s was not written", names[i]);
    char *curve = train_read_file(in_dir(dir, "loss.csv"), NULL);
    assert_int_equal(count_lines(curve), 1 + 12 + 3);
    assert_true(strncmp(curve, "step,tokens,lr,train_loss,valid_loss,valid_bpc,elapsed_s\n", 56) ==
                0);
    free(curve);
    assert_int_equal(checkpoint_step(in_dir(dir, "checkpoint.safetensors")), 12);
    assert_true(result_value(dir, "steps") == 12);
    assert_true(result_value(dir, "examples") == 12 * 4 * 16);
    double bpc = result_value(dir, "valid_bpc");
    assert_true(bpc > 0 && bpc < 9); /* finite, and below uniform (8 bits) give or take */
    char *config = train_read_file(in_dir(dir, "config.txt"), NULL);
    assert_non_null(strstr(config, "dim = 16\n"));
    free(config);
}

/* ---- Resuming ----------------------------------------------------------------------------- */

/* dir resumed to the end: the same checkpoint, curve and results as the reference run. */
static void assert_resumes_to_the_reference(const char *dir) {
    int status =
        run(cmd_train, "train", "--resume", "--out", dir, "--threads", "1", "--no-plots", NULL);
    if (status != 0) fail_msg("resume failed (%d): %s", status, err_text);
    const char *reference = reference_run();
    assert_same_checkpoint(in_dir(reference, "checkpoint.safetensors"),
                           in_dir(dir, "checkpoint.safetensors"));
    char *want = curve_without_time(reference), *got = curve_without_time(dir);
    assert_string_equal(want, got);
    free(want), free(got);
    want = result_without_time(reference), got = result_without_time(dir);
    assert_string_equal(want, got);
    free(want), free(got);
}

/* Ctrl-C while the step-8 checkpoint is written: step 9 is finished and saved, exit 130; the
 * resumed run ends exactly where the uninterrupted one did. */
static void ctrl_c_then_resume_is_bit_identical(void **state) {
    (void)state;
    const char *dir = temp("b");
    hook_set(HOOK_INTERRUPT, 2);
    int status = train_tiny(dir, "--quiet", NULL);
    hook_set(HOOK_NONE, 0);
    assert_int_equal(status, 130);
    assert_non_null(strstr(err_text, "stopped at step 9; checkpoint saved."));
    assert_int_equal(checkpoint_step(in_dir(dir, "checkpoint.safetensors")), 9);
    assert_false(exists(in_dir(dir, "result.txt")));
    assert_resumes_to_the_reference(dir);
}

/* SIGKILL in the middle of writing the step-8 checkpoint (a forked child): the step-4 one stays,
 * the curve runs past it to step 8, a temp file is left; the resumed run drops the rows after 4
 * and ends exactly where the uninterrupted one did. */
static void kill_9_then_resume_is_bit_identical(void **state) {
    (void)state;
    const char *dir = temp("c");
    fflush(stdout), fflush(stderr);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        hook_set(HOOK_KILL, 2);
        _exit(train_tiny(dir, "--quiet", NULL) == 0 ? 0 : 1); /* only if the hook missed */
    }
    int wait_status;
    assert_int_equal(waitpid(child, &wait_status, 0), child);
    if (!WIFSIGNALED(wait_status) || WTERMSIG(wait_status) != SIGKILL)
        fail_msg("the child was not killed (wait status %d)", wait_status);
    assert_int_equal(checkpoint_step(in_dir(dir, "checkpoint.safetensors")), 4);
    assert_true(holds_file_starting(dir, "checkpoint.safetensors.tmp.")); /* cut mid-write */
    char *curve = train_read_file(in_dir(dir, "loss.csv"), NULL);
    assert_int_equal(count_lines(curve), 1 + 8 + 2); /* rows to step 8, evaluations at 4 and 8 */
    free(curve);
    assert_false(exists(in_dir(dir, "result.txt")));
    assert_resumes_to_the_reference(dir);
}

/* ---- Broken data -------------------------------------------------------------------------- */

/* A charlm run on `data` fails with one line naming it, exit 1, and writes nothing. */
static void assert_bad_text(const char *data, const char *why) {
    char key[1100], expected[1300];
    snprintf(key, sizeof key, "data=%s", data);
    const char *dir = temp("broken");
    int status = train_tiny(dir, key, NULL);
    assert_int_equal(status, 1);
    snprintf(expected, sizeof expected, "cpool train: %s: ", data);
    assert_one_line(expected, why);
    assert_no_run_files(dir);
}

static void broken_text_files_are_one_line_and_exit_1(void **state) {
    (void)state;
    assert_bad_text(temp("missing.txt"), "cannot open: No such file or directory");
    train_write_file(temp("empty.txt"), "", 0);
    assert_bad_text(temp("empty.txt"), "file is empty");
    write_corpus(temp("short.txt"), 300, 5); /* valid and test splits of 15 bytes < 17 */
    assert_bad_text(temp("short.txt"), "too short: the valid split holds 15 of the file's 300 "
                                       "bytes but one window needs 17 (seq_len 16 + 1)");
    assert_bad_text(temp("images"), "not a regular file");
}

/* Unreadable: permission denied. Root reads any file, so as root the command runs in a child
 * that has become user nobody (65534); TEMP is opened to it for the run directory. */
static void unreadable_text_file_is_one_line_and_exit_1(void **state) {
    (void)state;
    const char *path = temp("locked.txt"), *dir = temp("locked-run");
    write_corpus(path, 4000, 6);
    chmod(path, 0);
    char data[1100];
    snprintf(data, sizeof data, "data=%s", path);
    char *argv[] = {"train", data, "seq_len=16", "--no-plots", "--out", (char *)dir, NULL};
    int status;
    if (geteuid() != 0) {
        status = run_argv(cmd_train, argv);
    } else {
        chmod(train_temp_dir, 0711);
        mkdir(dir, 0777);
        chmod(dir, 0777);
        status = run_argv_in_child(cmd_train, argv, 65534);
        chmod(train_temp_dir, 0700);
        if (status == SKIP_STATUS) skip();
    }
    assert_int_equal(status, 1);
    char expected[1200];
    snprintf(expected, sizeof expected, "cpool train: %s: ", path);
    assert_one_line(expected, "cannot open: Permission denied");
    assert_no_run_files(dir);
}

/* An image run on a broken Fashion-MNIST directory: one line naming the file, exit 1. */
static void assert_bad_images(const char *dir, const char *file, const char *why) {
    char data[1100], expected[1300];
    snprintf(data, sizeof data, "data=%s", dir);
    const char *out = temp("broken-images");
    int status =
        run(cmd_train, "train", "model=vit", data, "dim=8", "heads=2", "layers=1", "patch=14",
            "batch=4", "steps=2", "n_valid=4", "--threads", "1", "--no-plots", "--out", out, NULL);
    assert_int_equal(status, 1);
    snprintf(expected, sizeof expected, "cpool train: %s/%s: ", dir, file);
    assert_one_line(expected, why);
    assert_no_run_files(out);
}

static void broken_image_files_are_one_line_and_exit_1(void **state) {
    (void)state;
    const char *cut = temp("cut-gzip"), *short_data = temp("short-data"), *magic = temp("magic");
    write_images(cut, IDX_LABELS_MAGIC); /* the gzip stream itself cut short */
    truncate_file(in_dir(cut, "train-images-idx3-ubyte.gz"), 200);
    assert_bad_images(cut, "train-images-idx3-ubyte.gz",
                      "corrupt gzip data: unexpected end of file");
    write_images(short_data, IDX_LABELS_MAGIC); /* whole gzip, 7 images where 8 are promised */
    unsigned char pixels[7 * IMAGE_PIXELS] = {0};
    write_idx(in_dir(short_data, "t10k-images-idx3-ubyte.gz"),
              (uint32_t[]){IDX_IMAGES_MAGIC, 8, 28, 28}, 4, pixels, sizeof pixels);
    assert_bad_images(short_data, "t10k-images-idx3-ubyte.gz",
                      "truncated: the header promises 8 images of 28x28");
    write_images(magic, 0x00000802);
    assert_bad_images(magic, "t10k-labels-idx1-ubyte.gz",
                      "magic is 0x00000802 but an IDX labels file has 0x00000801");
    assert_bad_images(temp("nowhere"), "train-images-idx3-ubyte.gz", "cannot open");
}

/* ---- Bad command lines -------------------------------------------------------------------- */

/* `cpool train ARGS...` (NULL-terminated) is a usage error: one line, exit 2, no run dir. */
static void assert_usage_error(const char *contains, ...) {
    char *argv[MAX_ARGS] = {"train"};
    int argc = 1;
    va_list args;
    va_start(args, contains);
    for (char *a; (a = va_arg(args, char *));) argv[argc++] = a;
    va_end(args);
    argv[argc] = NULL;
    int status = run_argv(cmd_train, argv);
    if (status != 2)
        fail_msg("exit %d for '%s', expected 2 (stderr: %s)", status, contains, err_text);
    assert_one_line("cpool train: ", contains);
    assert_false(exists(temp("usage")));
}

static void bad_command_lines_are_one_line_and_exit_2(void **state) {
    (void)state;
    const char *out = temp("usage");
    assert_usage_error("unknown key 'lyaers'", "lyaers=2", "--out", out, NULL);
    assert_usage_error("layers=0: expected an integer in 1..16", "layers=0", "--out", out, NULL);
    assert_usage_error("dim=12x: expected an integer, got '12x'", "dim=12x", "--out", out, NULL);
    assert_usage_error("model: heads=3 does not divide dim=16", "dim=16", "heads=3", "--out", out,
                       NULL);
    assert_usage_error("unknown option '--fast'", "--fast", "--out", out, NULL);
    assert_usage_error("'steps': expected KEY=VALUE or an option", "steps", "--out", out, NULL);
    assert_usage_error("--resume takes every key from the checkpoint", "--resume", "steps=3",
                       "--out", out, NULL);
    assert_usage_error("--resume needs --out DIR", "--resume", NULL);
    assert_usage_error("--threads 0: expected an integer in 1..1024", "--threads", "0", "--out",
                       out, NULL);
    assert_usage_error("--threads needs a value", "--out", out, "--threads", NULL);
    assert_usage_error("cannot open", "--config", temp("no-such.cfg"), "--out", out, NULL);
    assert_usage_error("--resume continues a run and --force replaces it", "--resume", "--force",
                       "--out", out, NULL);
}

/* A fresh run into a directory that holds one is refused (exit 2) and leaves it as it was;
 * --force replaces it. */
static void a_run_is_not_replaced_without_force(void **state) {
    (void)state;
    const char *dir = temp("replaced");
    assert_int_equal(train_tiny(dir, "steps=1", "--quiet", NULL), 0);
    size_t n;
    char *before = train_read_file(in_dir(dir, "checkpoint.safetensors"), &n);
    assert_int_equal(train_tiny(dir, "steps=2", "--quiet", NULL), 2);
    assert_one_line("cpool train: ", "already holds a run (checkpoint.safetensors); continue it "
                                     "with --resume, replace it with --force");
    size_t n_after;
    char *after = train_read_file(in_dir(dir, "checkpoint.safetensors"), &n_after);
    assert_true(n == n_after && memcmp(before, after, n) == 0);
    assert_int_equal(train_tiny(dir, "steps=2", "--quiet", "--force", NULL), 0);
    assert_int_equal(checkpoint_step(in_dir(dir, "checkpoint.safetensors")), 2);
    assert_true(result_value(dir, "steps") == 2);
    free(before), free(after);
}

/* --resume where there is no checkpoint: a data error (exit 1), one line. */
static void resume_without_a_checkpoint_is_one_line_and_exit_1(void **state) {
    (void)state;
    const char *dir = temp("empty-run");
    mkdir(dir, 0777);
    assert_int_equal(run(cmd_train, "train", "--resume", "--out", dir, NULL), 1);
    assert_one_line("cpool train: ", "checkpoint.safetensors");
}

/* ---- Divergence --------------------------------------------------------------------------- */

/* An lr whose first update leaves the parameters finite but whose next forward overflows. Adam's
 * first step moves every parameter by about lr (m / sqrt(v) = sign(g)), so they reach ~lr, and a
 * product of two of them overflows: 1e30 in float32 (max 3.4e38), 1e300 in float64 (max 1.8e308).
 * Step 1 computes a finite loss and is saved; step 2's loss is NaN. */
static const char *overflowing_lr(void) {
    return sizeof(real) == 4 ? "lr=1e30" : "lr=1e300";
}

/* The tiny charlm with an overflowing lr, a checkpoint every step, `pool` and `option` (or
 * NULL), run in a forked child as the program runs; every checkpoint it puts in place is copied
 * to TEMP/copied.safetensors (the rename hook). Returns the exit status. */
static int run_diverging(const char *dir, const char *pool, const char *option) {
    char data[1100];
    snprintf(data, sizeof data, "data=%s", temp("text.txt"));
    char *argv[] = {"train",
                    data,
                    "dim=16",
                    "heads=2",
                    "layers=1",
                    "seq_len=16",
                    "batch=4",
                    "steps=12",
                    (char *)overflowing_lr(),
                    "warmup=0",
                    "checkpoint_every=1",
                    (char *)pool,
                    "--threads",
                    "1",
                    "--quiet",
                    "--no-plots",
                    "--out",
                    (char *)dir,
                    (char *)option,
                    NULL};
    unlink(temp("copied.safetensors"));
    hook_set(HOOK_COPY, 0);
    snprintf(hook.copy_path, sizeof hook.copy_path, "%s", temp("copied.safetensors"));
    int status = run_argv_in_child(cmd_train, argv, -1);
    hook_set(HOOK_NONE, 0);
    return status;
}

/* The checkpoint in dir is the last one the run saved, byte for byte (the rename hook copied
 * each save to TEMP/copied.safetensors), and it is the checkpoint of `step`. */
static void assert_last_good_checkpoint_kept(const char *dir, long step) {
    size_t n_disk, n_copy;
    char *disk = train_read_file(in_dir(dir, "checkpoint.safetensors"), &n_disk);
    char *copy = train_read_file(temp("copied.safetensors"), &n_copy);
    assert_true(n_disk == n_copy && memcmp(disk, copy, n_disk) == 0);
    free(disk), free(copy);
    assert_int_equal(checkpoint_step(in_dir(dir, "checkpoint.safetensors")), step);
}

/* A run that diverged at step 2: exit 1; on stderr the start line and exactly one more,
 * "cpool train: training diverged at step 2: ...; stopped (the checkpoint of step 1 is kept)",
 * naming an op and its tape position; the checkpoint on disk is byte for byte the last one the
 * run put in place, and is step 1's: nothing newer was written, not even in part (no temp file);
 * loss.csv ends at step 1 and there is no result.txt, as for any run that stops early. Returns
 * the message between "step 2: " and "; stopped". */
static char *assert_diverged_at_step_2(const char *dir, int status) {
    const char *prefix = "cpool train: training diverged at step 2: ";
    const char *suffix = "; stopped (the checkpoint of step 1 is kept)\n";
    const char *line = strchr(err_text, '\n');
    if (status != 1 || strncmp(err_text, "training charlm: ", 17) != 0 || !line ||
        count_lines(err_text) != 2 || strncmp(line + 1, prefix, strlen(prefix)) != 0 ||
        !ends_with(line + 1, suffix) || !strstr(line, "op '") ||
        !strstr(line, " at tape position "))
        fail_msg("exit %d, stderr:\n%s", status, err_text);
    assert_last_good_checkpoint_kept(dir, 1);
    assert_false(holds_file_starting(dir, "checkpoint.safetensors.tmp"));
    char *curve = curve_without_time(dir);
    assert_int_equal(count_lines(curve), 2); /* the header and step 1's row */
    assert_non_null(strstr(curve, "\n1,"));
    free(curve);
    assert_false(exists(in_dir(dir, "result.txt")));
    const char *from = line + 1 + strlen(prefix);
    return strndup(from, strlen(from) - strlen(suffix));
}

/* Step 2's loss is NaN: the parameters are not updated, the step is re-run in anomaly mode and
 * the one line names the first op that overflowed, with its shapes and the parameter among its
 * inputs. Without a pool that is the first matrix product with a parameter of size ~lr, the
 * attention's qkv projection (the embeddings and the layer norm before it stay finite; whether
 * the overflow shows as Inf or, summed with -Inf inside the product, NaN depends on the build);
 * with the pools, the pool refuses the NaN sizes first, and the re-run finds the predictor's
 * first convolution, which overflowed before them. */
static void a_diverging_run_names_the_first_op_and_keeps_its_checkpoint(void **state) {
    (void)state;
    char *message =
        assert_diverged_at_step_2(temp("nan"), run_diverging(temp("nan"), "pool=none", NULL));
    const char *expected = "the loss is NaN; the first non-finite value of the step: op '";
    if (strncmp(message, expected, strlen(expected)) != 0 ||
        !strstr(message, "'blocks.0.attn.qkv.weight' (48, 16)") ||
        !strstr(message, ") produced ") || !strstr(message, " in its forward output at element "))
        fail_msg("pool=none: '%s'", message);
    free(message);
    message = assert_diverged_at_step_2(temp("nan-pool"),
                                        run_diverging(temp("nan-pool"), "pool=contextpool", NULL));
    if (!strstr(message, "op_contextpool1d: support sizes s must be positive and finite") ||
        !strstr(message,
                "; the first non-finite value of the step: op 'conv1d_nlc' at tape position ") ||
        !strstr(message, "'blocks.0.pool.pred.0.weight'"))
        fail_msg("pool=contextpool: '%s'", message);
    free(message);
}

/* --anomaly checks every step: step 2 stops inside its forward, at the op the re-run found
 * (the message has no symptom: the loss was never computed). */
static void anomaly_mode_names_the_same_op(void **state) {
    (void)state;
    const char *dir = temp("nan-checked");
    char *message = assert_diverged_at_step_2(dir, run_diverging(dir, "pool=none", "--anomaly"));
    char *rerun =
        assert_diverged_at_step_2(temp("nan"), run_diverging(temp("nan"), "pool=none", "--force"));
    const char *found = strstr(rerun, "; the first non-finite value of the step: op '");
    assert_non_null(found);
    assert_string_equal(message, found + 2); /* the same op, position, shapes and element */
    free(message), free(rerun);
}

/* The checks only read: a run with --anomaly computes the reference run's bits. */
static void anomaly_mode_changes_no_bit(void **state) {
    (void)state;
    const char *dir = temp("checked");
    int status = train_tiny(dir, "--quiet", "--anomaly", NULL);
    if (status != 0) fail_msg("the --anomaly run failed (%d): %s", status, err_text);
    assert_same_checkpoint(in_dir(reference_run(), "checkpoint.safetensors"),
                           in_dir(dir, "checkpoint.safetensors"));
    char *want = curve_without_time(reference_run()), *got = curve_without_time(dir);
    assert_string_equal(want, got);
    free(want), free(got);
}

/* A NaN planted in a gradient at step 3, once (after backward, before the norm): the norm is NaN,
 * so there is no update (two in all, never a third); the re-run finds every op finite (the plant
 * is not an op) and says so; the step-2 checkpoint is kept. In this process: the spies count. */
static void a_nan_gradient_never_reaches_the_parameters(void **state) {
    (void)state;
    const char *dir = temp("nan-gradient");
    spy.clip_calls = 0, spy.updates = 0, spy.poison_at = 3;
    hook_set(HOOK_COPY, 0);
    snprintf(hook.copy_path, sizeof hook.copy_path, "%s", temp("copied.safetensors"));
    int status = train_tiny(dir, "checkpoint_every=1", "--quiet", NULL);
    hook_set(HOOK_NONE, 0);
    spy.poison_at = 0;
    assert_int_equal(status, 1);
    assert_int_equal(spy.updates, 2);
    assert_int_equal(spy.clip_calls, 4); /* steps 1, 2, 3 and the re-run of 3 */
    assert_int_equal(count_lines(err_text), 2);
    const char *line = strchr(err_text, '\n') + 1;
    if (strncmp(line, "cpool train: training diverged at step 3: the gradient norm is NaN (loss ",
                63) != 0 ||
        !strstr(line, "but anomaly checks found no NaN or Inf in any op's output or gradient (the "
                      "step's re-run computed a finite loss and gradient norm: the step is not "
                      "reproducible); stopped (the checkpoint of step 2 is kept)\n"))
        fail_msg("stderr:\n%s", err_text);
    assert_last_good_checkpoint_kept(dir, 2);
}

/* ---- eval --------------------------------------------------------------------------------- */

/* "PATH SPLIT: bpc X  loss Y nats  (N bytes)" -> X, Y and N. */
static void parse_eval(const char *split, double *metric, double *loss, long *count) {
    char pattern[64];
    snprintf(pattern, sizeof pattern, " %s: bpc ", split);
    const char *at = strstr(out_text, pattern);
    if (!at) fail_msg("eval printed '%s'", out_text);
    if (sscanf(at + strlen(pattern), "%lf loss %lf nats (%ld bytes)", metric, loss, count) != 3)
        fail_msg("eval printed '%s'", out_text);
}

/* On the whole split, eval computes what the run wrote into result.txt (printed to 4 and 6
 * decimals), over every target of the split's windows. */
static void eval_reproduces_the_runs_valid_and_test_numbers(void **state) {
    (void)state;
    const char *dir = reference_run(), *ckpt = in_dir(dir, "checkpoint.safetensors");
    double metric, loss;
    long count;
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--threads", "1", NULL), 0);
    parse_eval("valid", &metric, &loss, &count);
    assert_true(isfinite(metric));
    assert_true(fabs(metric - result_value(dir, "valid_bpc")) <= 6e-5);
    assert_true(fabs(loss - result_value(dir, "valid_loss")) <= 6e-5);
    /* the valid split: 5% of the file, in windows of 16 inputs and 16 targets */
    TextData text;
    char err[256];
    assert_int_equal(text_data_load(&text, temp("text.txt"), 16, err, sizeof err), 0);
    assert_int_equal(count, text_data_windows(&text, SPLIT_VALID) * 16);
    text_data_free(&text);
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--split", "test", NULL), 0);
    parse_eval("test", &metric, &loss, &count);
    assert_true(fabs(metric - result_value(dir, "test_bpc")) <= 6e-5);
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--batches", "1", "--batch", "2", NULL),
                     0);
    parse_eval("valid", &metric, &loss, &count);
    assert_int_equal(count, 2 * 16);
}

static void eval_bad_arguments(void **state) {
    (void)state;
    const char *ckpt = in_dir(reference_run(), "checkpoint.safetensors");
    assert_int_equal(run(cmd_eval, "eval", NULL), 2);
    assert_one_line("cpool eval: ", "--ckpt FILE is required");
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--split", "dev", NULL), 2);
    assert_one_line("cpool eval: ", "--split dev: expected valid, test or train");
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--batches", "0", NULL), 2);
    assert_one_line("cpool eval: ", "--batches 0: expected "); /* the wording is cmd_eval.c's */
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--fast", "1", NULL), 2);
    assert_one_line("cpool eval: ", "unknown option '--fast'");
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", temp("none.safetensors"), NULL), 1);
    assert_one_line("cpool eval: ", "none.safetensors");
    train_write_file(temp("empty.txt"), "", 0);
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--data", temp("empty.txt"), NULL), 1);
    assert_one_line("cpool eval: ", "file is empty");
}

/* ---- sample ------------------------------------------------------------------------------- */

/* `cpool sample` on the reference checkpoint with the given options: its text (malloc'd). */
static char *sample(const char *seed, const char *temperature, const char *top_k) {
    const char *ckpt = in_dir(reference_run(), "checkpoint.safetensors");
    int status = run(cmd_sample, "sample", "--ckpt", ckpt, "--prompt", "the ", "--length", "24",
                     "--seed", seed, "--temperature", temperature, "--top-k", top_k, NULL);
    if (status != 0) fail_msg("sample failed: %s", err_text);
    assert_int_equal(strlen(out_text), 4 + 24 + 1); /* the prompt, 24 bytes, a newline */
    assert_true(strncmp(out_text, "the ", 4) == 0);
    return strdup(out_text);
}

static void sample_is_deterministic_and_greedy_at_temperature_0(void **state) {
    (void)state;
    char *a = sample("7", "1", "0"), *b = sample("7", "1", "0"), *c = sample("8", "1", "0");
    assert_string_equal(a, b);
    assert_string_not_equal(a, c); /* 24 draws from a barely trained model: they differ */
    char *greedy = sample("7", "0", "0"), *greedy2 = sample("123", "0", "0");
    assert_string_equal(greedy, greedy2); /* no draw at all */
    char *top1 = sample("9", "0.8", "1");
    assert_string_equal(greedy, top1);
    free(a), free(b), free(c), free(greedy), free(greedy2), free(top1);
}

static void sample_bad_arguments(void **state) {
    (void)state;
    const char *ckpt = in_dir(reference_run(), "checkpoint.safetensors");
    assert_int_equal(run(cmd_sample, "sample", NULL), 2);
    assert_one_line("cpool sample: ", "--ckpt FILE is required");
    assert_int_equal(run(cmd_sample, "sample", "--ckpt", ckpt, "--temperature", "-1", NULL), 2);
    assert_one_line("cpool sample: ", "--temperature -1: expected a number in 0..100");
    assert_int_equal(run(cmd_sample, "sample", "--ckpt", ckpt, "--top-k", "300", NULL), 2);
    assert_one_line("cpool sample: ", "--top-k 300");
    assert_int_equal(run(cmd_sample, "sample", "--ckpt", ckpt, "--prompt", "", NULL), 2);
    assert_one_line("cpool sample: ", "--prompt must not be empty");
    assert_int_equal(run(cmd_sample, "sample", "--ckpt", temp("none.safetensors"), NULL), 1);
    assert_one_line("cpool sample: ", "none.safetensors");
}

/* A vit trained two steps on the small IDX files: its checkpoint evaluates (accuracy), and
 * sample refuses it with one line. */
static void sample_refuses_an_image_model(void **state) {
    (void)state;
    char data[1100];
    snprintf(data, sizeof data, "data=%s", temp("images"));
    const char *dir = temp("vit");
    int status = run(cmd_train, "train", "model=vit", data, "dim=8", "heads=2", "layers=1",
                     "patch=14", "batch=4", "steps=2", "n_valid=4", "eval_every=0", "--threads",
                     "1", "--quiet", "--no-plots", "--out", dir, NULL);
    if (status != 0) fail_msg("vit run failed: %s", err_text);
    double accuracy = result_value(dir, "test_accuracy");
    assert_true(accuracy >= 0 && accuracy <= 1);
    const char *ckpt = in_dir(dir, "checkpoint.safetensors");
    assert_int_equal(run(cmd_eval, "eval", "--ckpt", ckpt, "--split", "test", NULL), 0);
    assert_non_null(strstr(out_text, "test: accuracy "));
    assert_non_null(strstr(out_text, "(8 images)"));
    assert_int_equal(run(cmd_sample, "sample", "--ckpt", ckpt, NULL), 1);
    assert_one_line("cpool sample: ", "model=vit, but sampling needs a charlm");
}

/* ---- The suite ---------------------------------------------------------------------------- */

static int suite_setup(void **state) {
    if (train_temp_dir_create(state) != 0) return -1;
    char path[1024];
    snprintf(path, sizeof path, "%s/text.txt", train_temp_dir);
    write_corpus(path, 4000, 1);
    snprintf(path, sizeof path, "%s/images", train_temp_dir);
    write_images(path, IDX_LABELS_MAGIC);
    return 0;
}

static int suite_teardown(void **state) {
    free(out_text), free(err_text);
    return train_temp_dir_remove(state);
}

int main(void) {
    /* One thread throughout: no OpenMP pool exists when the kill test forks. */
    omp_set_num_threads(1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(a_run_writes_config_checkpoint_curve_and_result),
        cmocka_unit_test(ctrl_c_then_resume_is_bit_identical),
        cmocka_unit_test(kill_9_then_resume_is_bit_identical),
        cmocka_unit_test(broken_text_files_are_one_line_and_exit_1),
        cmocka_unit_test(unreadable_text_file_is_one_line_and_exit_1),
        cmocka_unit_test(broken_image_files_are_one_line_and_exit_1),
        cmocka_unit_test(bad_command_lines_are_one_line_and_exit_2),
        cmocka_unit_test(a_run_is_not_replaced_without_force),
        cmocka_unit_test(resume_without_a_checkpoint_is_one_line_and_exit_1),
        cmocka_unit_test(a_diverging_run_names_the_first_op_and_keeps_its_checkpoint),
        cmocka_unit_test(anomaly_mode_names_the_same_op),
        cmocka_unit_test(anomaly_mode_changes_no_bit),
        cmocka_unit_test(a_nan_gradient_never_reaches_the_parameters),
        cmocka_unit_test(eval_reproduces_the_runs_valid_and_test_numbers),
        cmocka_unit_test(eval_bad_arguments),
        cmocka_unit_test(sample_is_deterministic_and_greedy_at_temperature_0),
        cmocka_unit_test(sample_bad_arguments),
        cmocka_unit_test(sample_refuses_an_image_model),
    };
    return cmocka_run_group_tests_name("train, eval, sample commands (" REAL_NAME ")", tests,
                                       suite_setup, suite_teardown);
}
