/* gnuplot.c - a figure is a script and its data files; gnuplot draws it (see gnuplot.h).
 *
 * For out_path "runs/kjv/support.png" the files are
 *
 *     runs/kjv/support.gp            the script, kept: `gnuplot runs/kjv/support.gp` redraws
 *     runs/kjv/support.NAME.dat      one per figure_data(fig, "NAME"), kept beside it
 *     runs/kjv/support.png.tmp.PID   where gnuplot draws; renamed to support.png on success
 *
 * The script takes its output file from the gnuplot variable `outfile`, which defaults to the
 * PNG's own path, so figure_close runs `gnuplot -e "outfile='...tmp.PID'" support.gp` and a reader
 * who reruns the script by hand overwrites support.png. The terminal options are the string
 * variable `terminal`, so a script that wants another canvas size says
 * `set terminal @terminal size 1800,500` without repeating the font.
 *
 * gnuplot's standard error is collected through a pipe. When it fails (a script error, no PNG),
 * the last line it printed - "support.gp" line 12: undefined variable: foo - becomes err; when
 * it succeeds with warnings, they are passed on to our standard error. The program run is
 * "gnuplot", or $CPOOL_GNUPLOT when set (the tests use it to simulate a missing gnuplot). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "gnuplot.h"
#include "util.h"

/* The PNG terminal: a size and a font that read well on a screen and in a document. */
#define FIGURE_PNG_TERMINAL "pngcairo enhanced font 'DejaVu Sans,13' linewidth 1.5"
#define FIGURE_PNG_WIDTH    1200
#define FIGURE_PNG_HEIGHT   800
/* The text preview: characters, coloured when standard output is a terminal. */
#define FIGURE_DUMB_COLUMNS 120
#define FIGURE_DUMB_ROWS    40

static int figure_error(char *err, size_t err_len, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static int figure_error(char *err, size_t err_len, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_len, format, args);
    va_end(args);
    return -1;
}

/* out_path without its ".png" (or whole, when it has another ending), into base. */
static void figure_base(const char *out_path, char *base, size_t base_len) {
    size_t n = strlen(out_path);
    if (n > 4 && strcmp(out_path + n - 4, ".png") == 0) n -= 4;
    snprintf(base, base_len, "%.*s", (int)n, out_path);
}

/* The file behind data stream i: BASE.NAME.dat. */
static void figure_data_file(const Figure *fig, int i, char *path, size_t path_len) {
    char base[4000]; /* out_path is shorter (figure_open) */
    figure_base(fig->out_path, base, sizeof base);
    snprintf(path, path_len, "%s.%s.dat", base, fig->data_names[i]);
}

/* text inside a gnuplot single-quoted string: a quote is written twice. */
static void gnuplot_quote(const char *text, char *quoted, size_t quoted_len) {
    size_t k = 0;
    for (const char *c = text; *c && k + 3 < quoted_len; c++) {
        if (*c == '\'') quoted[k++] = '\'';
        quoted[k++] = *c;
    }
    quoted[k] = '\0';
}

/* ------------------------------------------------------------------------------------------ */
/* Writing the script and the data                                                            */

static void write_header(Figure *fig) {
    char quoted[4096];
    fprintf(fig->script, "# %s - a contextpool-c figure; redraw it with `gnuplot %s`.\n",
            fig->script_path, fig->script_path);
    if (fig->term == FIGURE_PNG) {
        gnuplot_quote(fig->out_path, quoted, sizeof quoted);
        fprintf(fig->script,
                "terminal = \"" FIGURE_PNG_TERMINAL "\"\n"
                "set terminal @terminal size %d,%d\n"
                "if (!exists(\"outfile\")) outfile = '%s'\n"
                "set output outfile\n",
                FIGURE_PNG_WIDTH, FIGURE_PNG_HEIGHT, quoted);
    } else {
        fprintf(fig->script,
                "terminal = \"dumb nofeed%s\"\n"
                "set terminal @terminal size %d,%d\n",
                isatty(STDOUT_FILENO) ? " ansi256" : "", FIGURE_DUMB_COLUMNS, FIGURE_DUMB_ROWS);
    }
}

int figure_check_out(const char *out_path, char *err, size_t err_len) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", out_path);
    char *slash = strrchr(dir, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    if (access(dir, W_OK) != 0)
        return path_error(err, err_len, dir, "cannot write the figure there: %s", strerror(errno));
    struct stat info;
    if (stat(out_path, &info) == 0 && S_ISDIR(info.st_mode))
        return path_error(err, err_len, out_path, "is a directory; expected FILE.png");
    return 0;
}

int figure_open(Figure *fig, const char *out_path, FigureTerm term, char *err, size_t err_len) {
    memset(fig, 0, sizeof *fig);
    if (strlen(out_path) + 32 >= sizeof fig->out_path)
        return figure_error(err, err_len, "%.64s...: path too long", out_path);
    strcpy(fig->out_path, out_path);
    fig->term = term;
    char base[4000]; /* out_path is shorter (figure_open) */
    figure_base(out_path, base, sizeof base);
    snprintf(fig->script_path, sizeof fig->script_path, "%s.gp", base);
    fig->script = fopen(fig->script_path, "w");
    if (!fig->script)
        return figure_error(err, err_len, "%s: cannot write: %s", fig->script_path,
                            strerror(errno));
    write_header(fig);
    return 0;
}

static int figure_find_data(const Figure *fig, const char *name) {
    for (int i = 0; i < fig->n_data; i++)
        if (strcmp(fig->data_names[i], name) == 0) return i;
    return -1;
}

FILE *figure_data(Figure *fig, const char *name) {
    int i = figure_find_data(fig, name);
    if (i >= 0) return fig->data[i];
    if (fig->n_data == FIGURE_MAX_DATA)
        cpool_fail("figure_data: more than %d data files in %s", FIGURE_MAX_DATA, fig->out_path);
    if (!name[0] || strlen(name) >= sizeof fig->data_names[0] ||
        strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") !=
            strlen(name))
        cpool_fail("figure_data: name '%s' must be 1..63 letters, digits, '_' or '-'", name);
    i = fig->n_data;
    strcpy(fig->data_names[i], name);
    char path[4200];
    figure_data_file(fig, i, path, sizeof path);
    fig->data[i] = fopen(path, "w");
    if (!fig->data[i]) cpool_fail("%s: cannot write: %s", path, strerror(errno));
    gnuplot_quote(path, fig->data_paths[i], sizeof fig->data_paths[i]);
    fig->n_data++;
    return fig->data[i];
}

const char *figure_data_path(const Figure *fig, const char *name) {
    int i = figure_find_data(fig, name);
    if (i < 0) cpool_fail("figure_data_path: no data file '%s' in %s", name, fig->out_path);
    return fig->data_paths[i];
}

void figure_script(Figure *fig, const char *format, ...) {
    va_list args;
    va_start(args, format);
    vfprintf(fig->script, format, args);
    va_end(args);
}

/* Close the script and every data file; the first one that failed to be written, into err. */
static int figure_close_files(Figure *fig, char *err, size_t err_len) {
    int status = 0;
    for (int i = 0; i < fig->n_data; i++) {
        if (!fig->data[i]) continue;
        int failed = ferror(fig->data[i]) | fclose(fig->data[i]);
        fig->data[i] = NULL;
        if (failed && status == 0) {
            char path[4200];
            figure_data_file(fig, i, path, sizeof path);
            status = figure_error(err, err_len, "%s: write failed", path);
        }
    }
    if (fig->script) {
        int failed = ferror(fig->script) | fclose(fig->script);
        fig->script = NULL;
        if (failed && status == 0)
            status = figure_error(err, err_len, "%s: write failed", fig->script_path);
    }
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Running gnuplot                                                                            */

/* What gnuplot printed on standard error: the last GNUPLOT_ERR_KEEP bytes. */
#define GNUPLOT_ERR_KEEP 8192
typedef struct GnuplotRun {
    int exec_errno; /* 0: gnuplot started; else why execvp failed */
    int status;     /* waitpid's */
    char output[GNUPLOT_ERR_KEEP + 1];
    size_t length;
} GnuplotRun;

static void read_all(int fd, GnuplotRun *run) {
    char chunk[1024];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        if (run->length + (size_t)n > GNUPLOT_ERR_KEEP) { /* keep the tail */
            size_t drop = run->length + (size_t)n - GNUPLOT_ERR_KEEP;
            if (drop > run->length) drop = run->length;
            memmove(run->output, run->output + drop, run->length - drop);
            run->length -= drop;
        }
        size_t take =
            (size_t)n < GNUPLOT_ERR_KEEP - run->length ? (size_t)n : GNUPLOT_ERR_KEEP - run->length;
        memcpy(run->output + run->length, chunk + (size_t)n - take, take);
        run->length += take;
    }
    run->output[run->length] = '\0';
}

/* In the child: stdin from /dev/null, stderr into the pipe, then gnuplot. If that fails, errno
 * goes up exec_fd, a pipe closed by a successful exec (close-on-exec), so the parent can tell
 * "gnuplot did not start" from "gnuplot failed". Only async-signal-safe calls here. */
static _Noreturn void exec_gnuplot(const char *program, char *const argv[], int err_fd,
                                   int exec_fd) {
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    dup2(err_fd, STDERR_FILENO);
    execvp(program, argv);
    int why = errno;
    ssize_t written = write(exec_fd, &why, sizeof why);
    (void)written;
    _exit(127);
}

/* Both ends of a pipe, the write end closed on exec. */
static int exec_pipe(int fds[2]) {
    if (pipe(fds) != 0) return -1;
    fcntl(fds[1], F_SETFD, FD_CLOEXEC);
    return 0;
}

/* gnuplot [-e "outfile='PATH'"] SCRIPT; -1 with err if it could not even be started. */
static int run_gnuplot(const char *script_path, const char *outfile, GnuplotRun *run, char *err,
                       size_t err_len) {
    const char *program = getenv("CPOOL_GNUPLOT");
    if (!program || !*program) program = "gnuplot";
    char quoted[4200], assignment[4300];
    char *argv[5] = {(char *)program};
    int argc = 1;
    if (outfile) {
        gnuplot_quote(outfile, quoted, sizeof quoted);
        snprintf(assignment, sizeof assignment, "outfile='%s'", quoted);
        argv[argc++] = "-e";
        argv[argc++] = assignment;
    }
    argv[argc++] = (char *)script_path;
    argv[argc] = NULL;
    int fds[2], exec_fds[2];
    if (pipe(fds) != 0)
        return figure_error(err, err_len, "gnuplot: cannot make a pipe: %s", strerror(errno));
    if (exec_pipe(exec_fds) != 0) {
        close(fds[0]), close(fds[1]);
        return figure_error(err, err_len, "gnuplot: cannot make a pipe: %s", strerror(errno));
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]), close(exec_fds[0]);
        exec_gnuplot(program, argv, fds[1], exec_fds[1]);
    }
    int fork_errno = errno;
    close(fds[1]), close(exec_fds[1]);
    memset(run, 0, sizeof *run);
    if (pid > 0) {
        read_all(fds[0], run);
        if (read(exec_fds[0], &run->exec_errno, sizeof run->exec_errno) <= 0) run->exec_errno = 0;
        while (waitpid(pid, &run->status, 0) < 0 && errno == EINTR) {
        }
    }
    close(fds[0]), close(exec_fds[0]);
    if (pid < 0)
        return figure_error(err, err_len, "gnuplot: cannot fork: %s", strerror(fork_errno));
    if (run->exec_errno)
        return figure_error(err, err_len,
                            "gnuplot: cannot run '%s': %s (install gnuplot-nox: "
                            "make deps)",
                            program, strerror(run->exec_errno));
    return 0;
}

/* The last non-empty line of text, trimmed, into line. */
static void last_line(const char *text, char *line, size_t line_len) {
    const char *end = text + strlen(text);
    while (end > text && (end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\r')) end--;
    const char *start = end;
    while (start > text && start[-1] != '\n') start--;
    while (start < end && *start == ' ') start++;
    snprintf(line, line_len, "%.*s", (int)(end - start), start);
}

/* Why gnuplot failed, as one line. */
static int gnuplot_failure(const GnuplotRun *run, const char *script_path, char *err,
                           size_t err_len) {
    char line[1024];
    last_line(run->output, line, sizeof line);
    if (WIFSIGNALED(run->status))
        return figure_error(err, err_len, "gnuplot was killed by signal %d drawing %s",
                            WTERMSIG(run->status), script_path);
    if (line[0]) return figure_error(err, err_len, "gnuplot: %s", line);
    return figure_error(err, err_len, "gnuplot failed on %s and wrote no figure", script_path);
}

static long file_bytes(const char *path) {
    struct stat info;
    return stat(path, &info) == 0 ? (long)info.st_size : -1;
}

int figure_close(Figure *fig, char *err, size_t err_len) {
    if (figure_close_files(fig, err, err_len) != 0) return -1;
    char tmp_path[4200];
    snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", fig->out_path, (long)getpid());
    int png = fig->term == FIGURE_PNG;
    GnuplotRun run;
    int status = run_gnuplot(fig->script_path, png ? tmp_path : NULL, &run, err, err_len);
    if (status == 0) {
        int ok = WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0;
        if (ok && png && file_bytes(tmp_path) <= 0) ok = 0;
        if (!ok)
            status = gnuplot_failure(&run, fig->script_path, err, err_len);
        else if (run.length > 0)
            fprintf(stderr, "%s", run.output); /* warnings: worth seeing */
    }
    if (!png && status == 0) printf("\n"); /* the preview's last row has no newline */
    if (png && status == 0 && rename(tmp_path, fig->out_path) != 0)
        status = figure_error(err, err_len, "%s: cannot rename into place: %s", fig->out_path,
                              strerror(errno));
    if (png && status != 0) unlink(tmp_path);
    return status;
}

void figure_abort(Figure *fig) {
    char scratch[256];
    figure_close_files(fig, scratch, sizeof scratch);
    for (int i = 0; i < fig->n_data; i++) {
        char path[4200];
        figure_data_file(fig, i, path, sizeof path);
        unlink(path);
    }
    if (fig->script_path[0]) unlink(fig->script_path);
    fig->n_data = 0;
}
