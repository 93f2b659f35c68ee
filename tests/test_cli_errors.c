/* test_cli_errors.c - every subcommand of the real program, fed bad command lines and malformed
 * files: "errors, not aborts" (docs/robustness.md) checked from the outside.
 *
 * Each case runs build/DIR/cpool (cpool64 for the float64 suite: the program beside this test's
 * directory) in a child process, with its working directory an empty scratch directory, and
 * asserts:
 *   - it exited (no signal: no abort, no crash, no sanitizer death, no timeout) with status 2 for
 *     a usage error or 1 for a data error, as the case says;
 *   - stderr is exactly one line, starting "cpool", naming the offending flag, key or file;
 *   - stdout is empty (no partial results);
 *   - no file appeared anywhere under the suite's temporary directory (no output, no *.tmp.*).
 * A run under ASan counts too: a sanitizer report is more than one line.
 *
 * The fixtures are made once: a small text corpus, a tiny charlm checkpoint trained by the
 * program itself (2 steps, a few ms), and the broken files built from them. Every case of a
 * command runs before its test fails, so one run lists every failing case. CLI_ERRORS_VERBOSE=1
 * prints every case's status and line. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "npy.h"
#include "rng.h"
#include "test_temp_dir.h"
#include "test_util.h"

enum { MAX_CASE_ARGS = 24, CHILD_SECONDS = 60 };

static char program[4096]; /* the cpool binary under test, "" when not built */

/* ---- Running the program ------------------------------------------------------------------ */

typedef struct Outcome {
    int exited, status, signal;
    char out[4096], err[4096];
} Outcome;

/* "@/" in text becomes the temp directory. */
static void expand(const char *text, char *out, size_t out_len) {
    size_t n = 0;
    for (const char *c = text; *c && n + 1 < out_len; c++) {
        if (c[0] == '@' && c[1] == '/') {
            n += (size_t)snprintf(out + n, out_len - n, "%s", temp_dir);
            if (n >= out_len) n = out_len - 1;
        } else {
            out[n++] = *c;
        }
    }
    out[n] = '\0';
}

static void read_small_file(const char *path, char *text, size_t len) {
    FILE *fp = fopen(path, "rb");
    size_t n = fp ? fread(text, 1, len - 1, fp) : 0;
    text[n] = '\0';
    if (fp) fclose(fp);
}

/* Run `cpool args...` (args NULL-terminated, "@/" expanded) in TEMP/cwd. */
static Outcome run_program(const char *const *args) {
    static char expanded[MAX_CASE_ARGS][1024];
    char *argv[MAX_CASE_ARGS + 2];
    int argc = 0;
    argv[argc++] = program;
    for (int i = 0; args[i]; i++) {
        assert_true(i < MAX_CASE_ARGS);
        expand(args[i], expanded[i], sizeof expanded[i]);
        argv[argc++] = expanded[i];
    }
    argv[argc] = NULL;
    char out_path[512], err_path[512];
    snprintf(out_path, sizeof out_path, "%s", temp_path("capture/stdout"));
    snprintf(err_path, sizeof err_path, "%s", temp_path("capture/stderr"));
    fflush(NULL);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        if (chdir(temp_path("cwd")) != 0 || !freopen(out_path, "w", stdout) ||
            !freopen(err_path, "w", stderr))
            _exit(99);
        setenv("OMP_NUM_THREADS", "1", 1);
        alarm(CHILD_SECONDS); /* a case that hangs dies of SIGALRM, which the test reports */
        execv(program, argv);
        _exit(98);
    }
    int wstatus;
    while (waitpid(child, &wstatus, 0) < 0) assert_int_equal(errno, EINTR);
    Outcome o = {.exited = WIFEXITED(wstatus)};
    o.status = o.exited ? WEXITSTATUS(wstatus) : -1;
    o.signal = WIFSIGNALED(wstatus) ? WTERMSIG(wstatus) : 0;
    read_small_file(out_path, o.out, sizeof o.out);
    read_small_file(err_path, o.err, sizeof o.err);
    return o;
}

/* ---- What exists under the temp directory -------------------------------------------------- */

typedef struct Listing {
    char names[256][160];
    int count;
} Listing;

/* Every file and directory under dir (relative to the temp directory; directories end in '/'),
 * except the capture files: a failed command must not even leave an empty run directory. */
static void list_tree(const char *dir, const char *relative, Listing *listing) {
    DIR *d = opendir(dir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char path[1024], rel[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        snprintf(rel, sizeof rel, "%s%s%s", relative, *relative ? "/" : "", e->d_name);
        if (!strcmp(rel, "capture")) continue;
        struct stat info;
        int is_dir = lstat(path, &info) == 0 && S_ISDIR(info.st_mode);
        if (listing->count < 256)
            snprintf(listing->names[listing->count++], sizeof listing->names[0], "%.158s%s", rel,
                     is_dir ? "/" : "");
        if (is_dir) list_tree(path, rel, listing);
    }
    closedir(d);
}

static Listing *snapshot(void) {
    static Listing listing;
    listing.count = 0;
    list_tree(temp_dir, "", &listing);
    return &listing;
}

/* The first name in after that is not in before, or NULL. */
static const char *new_file(const Listing *before, const Listing *after) {
    for (int i = 0; i < after->count; i++) {
        int seen = 0;
        for (int j = 0; j < before->count && !seen; j++)
            seen = strcmp(after->names[i], before->names[j]) == 0;
        if (!seen) return after->names[i];
    }
    return NULL;
}

/* ---- The cases --------------------------------------------------------------------------------
 */

typedef struct CliCase {
    int status;        /* 1 data error, 2 usage error */
    const char *names; /* what the one line must mention (after "@/" expansion) */
    const char *args[MAX_CASE_ARGS];
} CliCase;

/* Appends "why" for a failed case to report; returns 1 if the case failed. */
static int check_case(const CliCase *c, char *report, size_t report_len) {
    static Listing before;
    before = *snapshot();
    Outcome o = run_program(c->args);
    const char *created = new_file(&before, snapshot());
    char names[1024], why[512] = "";
    expand(c->names, names, sizeof names);
    size_t err_len = strlen(o.err);
    const char *first_newline = strchr(o.err, '\n');
    if (!o.exited)
        snprintf(why, sizeof why, "killed by signal %d", o.signal);
    else if (o.status != c->status)
        snprintf(why, sizeof why, "exit status %d, expected %d", o.status, c->status);
    else if (err_len == 0 || o.err[err_len - 1] != '\n' || first_newline != o.err + err_len - 1)
        snprintf(why, sizeof why, "stderr is not one line");
    else if (strncmp(o.err, "cpool", 5) != 0)
        snprintf(why, sizeof why, "stderr does not start with \"cpool\"");
    else if (!strstr(o.err, names))
        snprintf(why, sizeof why, "stderr does not mention \"%.400s\"", names);
    else if (o.out[0])
        snprintf(why, sizeof why, "stdout is not empty: \"%.80s\"", o.out);
    else if (created)
        snprintf(why, sizeof why, "left a file behind: %s", created);
    if (getenv("CLI_ERRORS_VERBOSE")) fprintf(stderr, "%d %s", o.status, o.err);
    if (!why[0]) return 0;
    size_t n = strlen(report);
    n += (size_t)snprintf(report + n, report_len - n, "\n  cpool");
    for (int i = 0; c->args[i] && n < report_len; i++)
        n += (size_t)snprintf(report + n, report_len - n, " %s", c->args[i]);
    if (n < report_len)
        snprintf(report + n, report_len - n, "\n    %s; stderr: %.300s", why,
                 o.err[0] ? o.err : "(empty)\n");
    return 1;
}

static void check_cases(const char *command, const CliCase *cases, int n_cases) {
    if (!program[0]) skip();
    static char report[32768];
    report[0] = '\0';
    int failed = 0;
    for (int i = 0; i < n_cases; i++) failed += check_case(&cases[i], report, sizeof report);
    if (!failed) return;
    fprintf(stderr, "cpool %s: %d of %d cases failed:%s\n", command, failed, n_cases, report);
    fail();
}

#define CHECK_CASES(command, cases) check_cases(command, cases, sizeof cases / sizeof cases[0])

/* The tiny model's keys, written in each train case that needs the rest to be valid. */
#define TINY "dim=8", "heads=1", "layers=1", "seq_len=8", "batch=2", "steps=2", "--no-plots"

static void no_command(void **state) {
    (void)state;
    static const CliCase cases[] = {
        {2, "which command", {NULL}},
        {2, "frobnicate", {"frobnicate", NULL}},
        {2, "--bogus", {"--bogus", NULL}},
    };
    CHECK_CASES("(no command)", cases);
}

static void train_command(void **state) {
    (void)state;
    static const CliCase cases[] = {
        {2, "--bogus", {"train", "--bogus", NULL}},
        {2, "--out", {"train", "--out", NULL}},
        {2, "--threads", {"train", "--threads", "many", NULL}},
        {2, "steps", {"train", "steps=abc", TINY, "--out", "@/out/r", NULL}},
        {2, "steps", {"train", "steps=99999999999999999999", "--out", "@/out/r", NULL}},
        {2, "steps", {"train", "steps=-5", "--out", "@/out/r", NULL}},
        {2, "steps", {"train", "steps=0", "--out", "@/out/r", NULL}},
        {2, "dim", {"train", "dim=0", "--out", "@/out/r", NULL}},
        {2, "batch", {"train", "batch=-1", "--out", "@/out/r", NULL}},
        {2, "seq_len", {"train", "seq_len=0", "--out", "@/out/r", NULL}},
        {2, "lr", {"train", "lr=nan", "--out", "@/out/r", NULL}},
        {2, "min_lr", {"train", "lr=0.001", "min_lr=1", TINY, "--out", "@/out/r", NULL}},
        {2, "s_fixed", {"train", "size=fixed", "s_fixed=1e300", TINY, "--out", "@/out/r", NULL}},
        {2, "nosuchkey", {"train", "nosuchkey=1", "--out", "@/out/r", NULL}},
        {2, "model", {"train", "model=rnn", "--out", "@/out/r", NULL}},
        {2, "heads", {"train", "data=@/text.txt", TINY, "heads=3", "--out", "@/out/r", NULL}},
        {1, "@/missing.txt", {"train", "data=@/missing.txt", TINY, "--out", "@/out/r", NULL}},
        {1, "@/empty.txt", {"train", "data=@/empty.txt", TINY, "--out", "@/out/r", NULL}},
        {1, "@/short.txt", {"train", "data=@/short.txt", TINY, "--out", "@/out/r", NULL}},
        {1, "@/dir", {"train", "data=@/dir", TINY, "--out", "@/out/r", NULL}},
        {1, "@/badmagic", {"train", "model=vit", "data=@/badmagic", "--out", "@/out/r", NULL}},
        /* a --config file is part of the command line: its errors are usage errors */
        {2, "@/missing.cfg", {"train", "--config", "@/missing.cfg", "--out", "@/out/r", NULL}},
        {2, "@/dir", {"train", "--config", "@/dir", "--out", "@/out/r", NULL}},
        {2, "@/binary.bin", {"train", "--config", "@/binary.bin", "--out", "@/out/r", NULL}},
        {2, "nosuchkey", {"train", "--config", "@/bad_key.cfg", "--out", "@/out/r", NULL}},
        {2, "steps", {"train", "--config", "@/bad_value.cfg", "--out", "@/out/r", NULL}},
        /* an empty config sets nothing: the default data file (absent from the cwd) is missing */
        {1, "data/kjv.txt", {"train", "--config", "@/empty.bin", "--out", "@/out/r", NULL}},
        {1, "@/npyrun", {"train", "--resume", "--out", "@/npyrun", "--no-plots", NULL}},
        {1, "@/truncrun", {"train", "--resume", "--out", "@/truncrun", "--no-plots", NULL}},
    };
    CHECK_CASES("train", cases);
}

static void eval_command(void **state) {
    (void)state;
    static const CliCase cases[] = {
        {2, "--ckpt", {"eval", NULL}},
        {2, "--ckpt", {"eval", "--ckpt", NULL}},
        {2, "--bogus", {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--bogus", "1", NULL}},
        {2, "--batch", {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--batch", "0", NULL}},
        {2,
         "--batch",
         {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--batch", "99999999999999999999",
          NULL}},
        {2,
         "--batches",
         {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--batches", "-1", NULL}},
        {2,
         "--threads",
         {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--threads", "x", NULL}},
        {2, "--split", {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--split", "dev", NULL}},
        {1, "@/missing.safetensors", {"eval", "--ckpt", "@/missing.safetensors", NULL}},
        {1, "@/empty.bin", {"eval", "--ckpt", "@/empty.bin", NULL}},
        {1, "@/dir", {"eval", "--ckpt", "@/dir", NULL}},
        {1, "@/binary.bin", {"eval", "--ckpt", "@/binary.bin", NULL}},
        {1, "@/x.npy", {"eval", "--ckpt", "@/x.npy", NULL}},
        {1, "@/truncated.safetensors", {"eval", "--ckpt", "@/truncated.safetensors", NULL}},
        {1,
         "@/short.txt",
         {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--data", "@/short.txt", NULL}},
        {1,
         "@/empty.txt",
         {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--data", "@/empty.txt", NULL}},
        {1, "@/dir", {"eval", "--ckpt", "@/run/checkpoint.safetensors", "--data", "@/dir", NULL}},
        {1, "@/dim0.safetensors", {"eval", "--ckpt", "@/dim0.safetensors", NULL}},
        {1, "@/heads3.safetensors", {"eval", "--ckpt", "@/heads3.safetensors", NULL}},
        {1, "@/seq9.safetensors", {"eval", "--ckpt", "@/seq9.safetensors", NULL}},
        {1, "@/smax0.safetensors", {"eval", "--ckpt", "@/smax0.safetensors", NULL}},
        {1, "@/vit.safetensors", {"eval", "--ckpt", "@/vit.safetensors", NULL}},
        {1, "@/badkey.safetensors", {"eval", "--ckpt", "@/badkey.safetensors", NULL}},
        {1, "@/format.safetensors", {"eval", "--ckpt", "@/format.safetensors", NULL}},
        {1, "@/bitflip.safetensors", {"eval", "--ckpt", "@/bitflip.safetensors", NULL}},
    };
    CHECK_CASES("eval", cases);
}

static void sample_command(void **state) {
    (void)state;
#define CKPT "--ckpt", "@/run/checkpoint.safetensors"
    static const CliCase cases[] = {
        {2, "--ckpt", {"sample", NULL}},
        {2, "--bogus", {"sample", CKPT, "--bogus", "1", NULL}},
        {2, "--length", {"sample", CKPT, "--length", NULL}},
        {2, "--length", {"sample", CKPT, "--length", "0", NULL}},
        {2, "--length", {"sample", CKPT, "--length", "2.5", NULL}},
        {2, "--length", {"sample", CKPT, "--length", "99999999999999999999", NULL}},
        {2, "--temperature", {"sample", CKPT, "--temperature", "-1", NULL}},
        {2, "--temperature", {"sample", CKPT, "--temperature", "nan", NULL}},
        {2, "--top-k", {"sample", CKPT, "--top-k", "300", NULL}},
        {2, "--seed", {"sample", CKPT, "--seed", "99999999999999999999", NULL}},
        {2, "--prompt", {"sample", CKPT, "--prompt", "", NULL}},
        {1, "@/x.npy", {"sample", "--ckpt", "@/x.npy", NULL}},
        {1, "@/truncated.safetensors", {"sample", "--ckpt", "@/truncated.safetensors", NULL}},
        {1, "@/dir", {"sample", "--ckpt", "@/dir", NULL}},
        {1, "@/seq9.safetensors", {"sample", "--ckpt", "@/seq9.safetensors", NULL}},
        {1, "@/bitflip.safetensors", {"sample", "--ckpt", "@/bitflip.safetensors", NULL}},
    };
#undef CKPT
    CHECK_CASES("sample", cases);
}

static void plot_command(void **state) {
    (void)state;
#define CKPT "--ckpt", "@/run/checkpoint.safetensors"
    static const CliCase cases[] = {
        {2, "which figure", {"plot", NULL}},
        {2, "nokind", {"plot", "nokind", NULL}},
        {2, "--ckpt", {"plot", "support", "--out", "@/out/s.png", NULL}},
        {2, "--bogus", {"plot", "support", CKPT, "--bogus", "1", "--out", "@/out/s.png", NULL}},
        {2, "--layer", {"plot", "attention", CKPT, "--layer", "99", "--out", "@/out/a.png", NULL}},
        {2, "--head", {"plot", "attention", CKPT, "--head", "5", "--out", "@/out/a.png", NULL}},
        {2, "--length", {"plot", "support", CKPT, "--length", "-3", "--out", "@/out/s.png", NULL}},
        {2, "--max-n", {"plot", "cost", "--max-n", "100", "--term", "dumb", NULL}},
        {2, "--tokens", {"plot", "hist", CKPT, "--tokens", "0", "--out", "@/out/h.png", NULL}},
        {1, "@/x.npy", {"plot", "support", "--ckpt", "@/x.npy", "--out", "@/out/s.png", NULL}},
        {1,
         "@/truncated.safetensors",
         {"plot", "weights", "--ckpt", "@/truncated.safetensors", "--out", "@/out/w.png", NULL}},
        {1,
         "@/empty.txt",
         {"plot", "support", CKPT, "--data", "@/empty.txt", "--out", "@/out/s.png", NULL}},
        {1,
         "@/missing.csv",
         {"plot", "curves", "--csv", "@/missing.csv", "--out", "@/out/c.png", NULL}},
        {1,
         "@/binary.bin",
         {"plot", "curves", "--csv", "@/binary.bin", "--out", "@/out/c.png", NULL}},
        {1, "@/nodir", {"plot", "support", CKPT, "--out", "@/nodir/s.png", NULL}},
        {1, "@/out", {"plot", "support", CKPT, "--out", "@/out", NULL}},
    };
#undef CKPT
    CHECK_CASES("plot", cases);
}

static void synth_command(void **state) {
    (void)state;
    static const CliCase cases[] = {
        {2, "--bogus", {"synth", "--bogus", "1", NULL}},
        {2, "--steps", {"synth", "--steps", NULL}},
        {2, "--steps", {"synth", "--steps", "0", NULL}},
        {2, "--steps", {"synth", "--steps", "abc", NULL}},
        {2, "--steps", {"synth", "--steps", "99999999999999999999", NULL}},
        {2, "--seed", {"synth", "--seed", "-1", NULL}},
        {2, "--out", {"synth", "--out", "@/out/figure.txt", NULL}},
        {2, "--term", {"synth", "--term", "svg", NULL}},
        {1, "@/nodir", {"synth", "--steps", "1", "--out", "@/nodir/s.png", NULL}},
    };
    CHECK_CASES("synth", cases);
}

static void gradcheck_command(void **state) {
    (void)state;
    static const CliCase cases[] = {
        {2, "nosuchop", {"gradcheck", "nosuchop", NULL}},
        {2, "--bogus", {"gradcheck", "--bogus", NULL}},
        {2, "--seed", {"gradcheck", "--seed", NULL}},
        {2, "--seed", {"gradcheck", "--seed", "abc", NULL}},
        {2, "--seed", {"gradcheck", "--seed", "-1", NULL}},
        {2, "--seed", {"gradcheck", "--seed", "99999999999999999999", NULL}},
    };
    CHECK_CASES("gradcheck", cases);
}

static void lab_command(void **state) {
    (void)state;
#define OUT "--out", "@/out/lab"
    static const CliCase cases[] = {
        {2, "which layer", {"lab", NULL}},
        {2, "nolayer", {"lab", "nolayer", NULL}},
        {2, "--in", {"lab", "linear", "--set", "out=4", OUT, NULL}},
        {2, "--bogus", {"lab", "linear", "--bogus", "1", NULL}},
        {2, "nokey", {"lab", "linear", "--set", "nokey=1", "--in", "@/x.npy", OUT, NULL}},
        {2, "out", {"lab", "linear", "--set", "out=abc", "--in", "@/x.npy", OUT, NULL}},
        {2, "out", {"lab", "linear", "--set", "out=0", "--in", "@/x.npy", OUT, NULL}},
        {2,
         "out",
         {"lab", "linear", "--set", "out=99999999999999999999", "--in", "@/x.npy", OUT, NULL}},
        {2,
         "--seed",
         {"lab", "linear", "--set", "out=4", "--seed", "-2", "--in", "@/x.npy", OUT, NULL}},
        {1,
         "@/missing.npy",
         {"lab", "linear", "--set", "out=4", "--in", "@/missing.npy", OUT, NULL}},
        {1, "@/empty.bin", {"lab", "linear", "--set", "out=4", "--in", "@/empty.bin", OUT, NULL}},
        {1, "@/text.txt", {"lab", "linear", "--set", "out=4", "--in", "@/text.txt", OUT, NULL}},
        {1, "@/dir", {"lab", "linear", "--set", "out=4", "--in", "@/dir", OUT, NULL}},
        {1,
         "@/x.npy",
         {"lab", "linear", "--set", "out=4", "--in", "@/x.npy", "--params", "@/x.npy", OUT, NULL}},
        {1,
         "@/x.npy",
         {"lab", "linear", "--set", "out=5", "--in", "@/x.npy", "--grad-out", "@/x.npy", OUT,
          NULL}},
        {1,
         "@/ids.npy",
         {"lab", "embedding", "--set", "vocab=4", "--set", "dim=2", "--in", "@/ids.npy", OUT,
          NULL}},
        {1, "@/x.npy", {"lab", "attention", "--in", "@/x.npy", OUT, NULL}},
        {2, "heads", {"lab", "attention", "--set", "heads=3", "--in", "@/x3.npy", OUT, NULL}},
        {2, "eps", {"lab", "layernorm", "--set", "eps=0", "--in", "@/x.npy", OUT, NULL}},
        {2, "stride", {"lab", "contextpool2d", "--set", "stride=3", "--in", "@/x4.npy", OUT, NULL}},
        {1,
         "@/out/file",
         {"lab", "linear", "--set", "out=4", "--in", "@/x.npy", "--out", "@/out/file", NULL}},
    };
#undef OUT
    CHECK_CASES("lab", cases);
}

static void bench_command(void **state) {
    (void)state;
    static const CliCase cases[] = {
        {2, "--bogus", {"bench", "--bogus", NULL}},
        {2, "--repeats", {"bench", "--repeats", "0", NULL}},
        {2, "--repeats", {"bench", "--repeats", "99999999999999999999", NULL}},
        {2, "--threads", {"bench", "--threads", "-1", NULL}},
        {2, "norow", {"bench", "norow", NULL}},
    };
    CHECK_CASES("bench", cases);
}

/* ---- Fixtures ------------------------------------------------------------------------------ */

static void write_file(const char *path, const void *bytes, size_t n) {
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void write_text(const char *path, const char *text) {
    write_file(path, text, strlen(text));
}

/* The first n bytes of from, into to. */
static void copy_prefix(const char *from, const char *to, long n) {
    FILE *fp = fopen(from, "rb");
    assert_non_null(fp);
    char *bytes = malloc((size_t)n);
    assert_int_equal(fread(bytes, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    write_file(to, bytes, (size_t)n);
    free(bytes);
}

/* from, with the first `find` replaced by `replace` (the same length), into to. */
static void copy_edited(const char *from, const char *to, const char *find, const char *replace) {
    FILE *fp = fopen(from, "rb");
    assert_non_null(fp);
    static char bytes[1 << 20];
    size_t n = fread(bytes, 1, sizeof bytes, fp);
    fclose(fp);
    size_t len = strlen(find);
    assert_int_equal(len, strlen(replace));
    size_t at = 0;
    while (at + len <= n && memcmp(bytes + at, find, len) != 0) at++;
    if (at + len > n) fail_msg("%s does not contain \"%s\"", from, find);
    memcpy(bytes + at, replace, len);
    write_file(to, bytes, n);
}

/* A .npy file of n little-endian int32 values, shape (n,): the format numpy.save writes. */
static void write_npy_ints(const char *path, const int *values, int n) {
    char header[128];
    int len = snprintf(header, sizeof header,
                       "{'descr': '<i4', 'fortran_order': False, 'shape': (%d,), }", n);
    while ((10 + len + 1) % 64 != 0) header[len++] = ' ';
    header[len++] = '\n';
    unsigned char preamble[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)len, 0};
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    fwrite(preamble, 1, sizeof preamble, fp);
    fwrite(header, 1, (size_t)len, fp);
    fwrite(values, sizeof *values, (size_t)n, fp);
    assert_int_equal(fclose(fp), 0);
}

static long file_size(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 ? (long)info.st_size : -1;
}

/* About 4 KB of words: enough for the tiny model's 90/5/5 splits. */
static void write_corpus(const char *path) {
    static const char *const words[] = {"the", "and", "of", "lord", "said", "unto", "him", "god"};
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    Rng rng;
    rng_seed(&rng, 7);
    for (int i = 0; i < 1000; i++) fprintf(fp, "%s ", words[rng_u64(&rng) % 8]);
    assert_int_equal(fclose(fp), 0);
}

/* A gzipped "IDX images" file whose magic number is wrong (0x00000802, not 0x00000803). */
static void write_bad_idx(const char *path) {
    gzFile gz = gzopen(path, "wb");
    assert_non_null(gz);
    unsigned char header[16] = {0, 0, 8, 2, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
    assert_int_equal(gzwrite(gz, header, sizeof header), (int)sizeof header);
    unsigned char pixels[28 * 28] = {0};
    assert_int_equal(gzwrite(gz, pixels, sizeof pixels), (int)sizeof pixels);
    assert_int_equal(gzclose(gz), Z_OK);
}

/* The program beside this test's directory: DIR/tests32/test -> DIR/cpool (tests64: cpool64). */
static void find_program(void) {
    char self[4000];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) return;
    self[n] = '\0';
    for (int cut = 0; cut < 2; cut++) {
        char *slash = strrchr(self, '/');
        if (!slash) return;
        *slash = '\0';
    }
#ifdef CPOOL_DOUBLE
    snprintf(program, sizeof program, "%s/cpool64", self);
#else
    snprintf(program, sizeof program, "%s/cpool", self);
#endif
    if (access(program, X_OK) != 0) {
        fprintf(stderr, "test_cli_errors: %s not built; skipping (make all)\n", program);
        program[0] = '\0';
    }
}

static int setup(void **state) {
    (void)state;
    if (temp_dir_create("cli-errors") != 0) return -1;
    find_program();
    const char *dirs[] = {"capture", "cwd", "out", "dir", "badmagic", "npyrun", "truncrun"};
    for (int i = 0; i < 7; i++)
        if (mkdir(temp_path(dirs[i]), 0777) != 0) return -1;
    write_corpus(temp_path("text.txt"));
    write_text(temp_path("short.txt"), "In the beginning");
    write_text(temp_path("empty.txt"), "");
    write_text(temp_path("empty.bin"), "");
    write_text(temp_path("out/file"), "a file where lab wants a directory");
    unsigned char binary[512];
    Rng rng;
    rng_seed(&rng, 11);
    for (int i = 0; i < 512; i++) binary[i] = (unsigned char)(rng_u64(&rng) >> 56);
    binary[0] = 0; /* starts with a NUL byte whatever the generator draws */
    write_file(temp_path("binary.bin"), binary, sizeof binary);
    write_text(temp_path("bad_key.cfg"), "model=charlm\nnosuchkey=1\n");
    write_text(temp_path("bad_value.cfg"), "model=charlm\nsteps=12abc\n");
    write_bad_idx(temp_path("badmagic/train-images-idx3-ubyte.gz"));
    write_bad_idx(temp_path("badmagic/t10k-images-idx3-ubyte.gz"));
    Tensor *x = tensor_create(2, (int[]){3, 4}, 0);
    char err[512];
    if (npy_save(temp_path("x.npy"), x, err, sizeof err) != 0)
        return fprintf(stderr, "%s\n", err), -1;
    tensor_free(x);
    if (!program[0]) return 0;
    /* A real checkpoint, by the program itself; then broken copies of it. */
    const char *train[] = {"train", "data=@/text.txt", TINY, "--quiet", "--out", "@/run", NULL};
    Outcome o = run_program(train);
    if (!o.exited || o.status != 0) return fprintf(stderr, "training failed: %s\n", o.err), -1;
    char ckpt[512]; /* temp_path's buffers rotate: keep a copy */
    snprintf(ckpt, sizeof ckpt, "%s", temp_path("run/checkpoint.safetensors"));
    copy_prefix(ckpt, temp_path("truncated.safetensors"), file_size(ckpt) / 2);
    copy_prefix(ckpt, temp_path("truncrun/checkpoint.safetensors"), file_size(ckpt) / 2);
    copy_prefix(temp_path("run/config.txt"), temp_path("truncrun/config.txt"),
                file_size(temp_path("run/config.txt")));
    /* The config rides in the header, outside the payload's checksum: edits of the same length
     * keep the file readable and make its config wrong. */
    const struct {
        const char *name, *find, *replace;
    } edits[] = {
        {"dim0.safetensors", "dim = 8\\n", "dim = 0\\n"},
        {"heads3.safetensors", "heads = 1\\n", "heads = 3\\n"},
        {"seq9.safetensors", "seq_len = 8\\n", "seq_len = 9\\n"},
        {"smax0.safetensors", "s_max = 8\\n", "s_max = 0\\n"},
        {"vit.safetensors", "model = charlm", "model = vit   "},
        {"badkey.safetensors", "steps = 2\\n", "stepz = 2\\n"},
        {"format.safetensors", "contextpool-c checkpoint", "contextpool-c checkpoinT"},
    };
    for (int i = 0; i < (int)(sizeof edits / sizeof edits[0]); i++)
        copy_edited(ckpt, temp_path(edits[i].name), edits[i].find, edits[i].replace);
    /* One payload byte changed: the checksum must catch it. */
    FILE *fp = fopen(ckpt, "rb");
    static unsigned char bytes[1 << 20];
    size_t n = fread(bytes, 1, sizeof bytes, fp);
    fclose(fp);
    bytes[n - 3] ^= 0x40;
    write_file(temp_path("bitflip.safetensors"), bytes, n);
    int ids[2] = {1, 7};
    write_npy_ints(temp_path("ids.npy"), ids, 2);
    Tensor *x3 = tensor_create(3, (int[]){2, 4, 4}, 0);
    if (npy_save(temp_path("x3.npy"), x3, err, sizeof err) != 0)
        return fprintf(stderr, "%s\n", err), -1;
    tensor_free(x3);
    Tensor *x4 = tensor_create(4, (int[]){1, 2, 4, 4}, 0);
    if (npy_save(temp_path("x4.npy"), x4, err, sizeof err) != 0)
        return fprintf(stderr, "%s\n", err), -1;
    tensor_free(x4);
    copy_prefix(temp_path("x.npy"), temp_path("npyrun/checkpoint.safetensors"),
                file_size(temp_path("x.npy")));
    copy_prefix(temp_path("run/config.txt"), temp_path("npyrun/config.txt"),
                file_size(temp_path("run/config.txt")));
    return 0;
}

static int teardown(void **state) {
    (void)state;
    return temp_dir_remove();
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(no_command),        cmocka_unit_test(train_command),
        cmocka_unit_test(eval_command),      cmocka_unit_test(sample_command),
        cmocka_unit_test(plot_command),      cmocka_unit_test(synth_command),
        cmocka_unit_test(gradcheck_command), cmocka_unit_test(lab_command),
        cmocka_unit_test(bench_command),
    };
    return cmocka_run_group_tests_name("cli errors", tests, setup, teardown);
}
