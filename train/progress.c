/* progress.c - see progress.h. */
#include "progress.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

double wall_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}

double nats_to_bits(double nats) {
    return nats / M_LN2;
}

char *format_duration(double seconds, char *buffer, size_t buffer_len) {
    if (!(seconds >= 0) || !isfinite(seconds)) {
        snprintf(buffer, buffer_len, "?");
        return buffer;
    }
    long s = lround(seconds);
    if (s >= 3600)
        snprintf(buffer, buffer_len, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else if (s >= 60)
        snprintf(buffer, buffer_len, "%ldm%02lds", s / 60, s % 60);
    else
        snprintf(buffer, buffer_len, "%lds", s);
    return buffer;
}

/* 950, 12.3k, 4.56M: three significant digits and a suffix. */
static char *format_rate(double rate, char *buffer, size_t buffer_len) {
    if (rate >= 1e6)
        snprintf(buffer, buffer_len, "%.3gM", rate / 1e6);
    else if (rate >= 1e3)
        snprintf(buffer, buffer_len, "%.3gk", rate / 1e3);
    else
        snprintf(buffer, buffer_len, "%.3g", rate);
    return buffer;
}

/* --- The progress line ----------------------------------------------------------------------- */

void progress_init(Progress *progress, FILE *out, const char *unit, long first_step,
                   long total_steps, int every) {
    if (every < 1) cpool_fail("progress_init: every must be at least 1, got %d", every);
    *progress = (Progress){
        .out = out,
        .is_terminal = isatty(fileno(out)),
        .every = every,
        .unit = unit,
        .first_step = first_step,
        .total_steps = total_steps,
        .start_seconds = wall_seconds(),
        .drawn_seconds = -1,
    };
}

static void format_line(const Progress *progress, long step, double loss, const char *metric_name,
                        double metric, char *line, size_t line_len) {
    double elapsed = wall_seconds() - progress->start_seconds;
    long done = step - progress->first_step;
    char rate[32], eta[32];
    format_rate(elapsed > 0 ? (double)progress->units / elapsed : 0, rate, sizeof rate);
    format_duration(done > 0 ? elapsed / (double)done * (double)(progress->total_steps - step)
                             : NAN,
                    eta, sizeof eta);
    int n = snprintf(line, line_len, "step %ld/%ld  loss %.4f", step, progress->total_steps, loss);
    if (metric_name && n >= 0 && (size_t)n < line_len)
        n += snprintf(line + n, line_len - (size_t)n, "  %s %.4f", metric_name, metric);
    if (n >= 0 && (size_t)n < line_len)
        snprintf(line + n, line_len - (size_t)n, "  %s %s/s  ETA %s", rate, progress->unit, eta);
}

void progress_update(Progress *progress, long step, long units, double loss,
                     const char *metric_name, double metric) {
    progress->units += units;
    int last = step >= progress->total_steps;
    char line[256];
    if (progress->is_terminal) {
        double now = wall_seconds();
        if (!last && progress->drawn_seconds >= 0 && now - progress->drawn_seconds < 0.1) return;
        progress->drawn_seconds = now;
        format_line(progress, step, loss, metric_name, metric, line, sizeof line);
        fprintf(progress->out, "\r%s\033[K", line);
        progress->line_open = 1;
    } else {
        if (!(step == progress->first_step + 1 || step % progress->every == 0 || last)) return;
        format_line(progress, step, loss, metric_name, metric, line, sizeof line);
        fprintf(progress->out, "%s\n", line);
    }
    fflush(progress->out);
}

void progress_print(Progress *progress, const char *format, ...) {
    if (progress->line_open) fputs("\r\033[K", progress->out);
    progress->line_open = 0;
    progress->drawn_seconds = -1; /* redraw at the next update */
    va_list args;
    va_start(args, format);
    vfprintf(progress->out, format, args);
    va_end(args);
    fputc('\n', progress->out);
    fflush(progress->out);
}

void progress_finish(Progress *progress) {
    if (progress->line_open) fputc('\n', progress->out);
    progress->line_open = 0;
    fflush(progress->out);
}

/* --- The CSV loss curve ---------------------------------------------------------------------- */

/* Whether a complete line (newline removed) of an existing file is kept for a resume at
 * resume_step: the header must be this run's, and a row is kept if its step <= resume_step.
 * 1 keep, 0 drop, -1 error. */
static int keep_line(const char *path, long number, const char *line, const char *header,
                     long resume_step, char *err, size_t err_len) {
    if (number == 1)
        return strcmp(line, header) == 0
                   ? 1
                   : path_error(err, err_len, path, "header is '%.100s' but this run writes '%s'",
                                line, header);
    char *end;
    long step = strtol(line, &end, 10);
    if (end == line || *end != ',')
        return path_error(err, err_len, path, "line %ld: expected a step number, got '%.40s'",
                          number, line);
    return step <= resume_step;
}

/* The kept part of an existing file (header included) for a resume at resume_step, malloc'd
 * into *kept; a missing or empty file gives just the header. A partial last line (no newline:
 * the interrupted run died writing it) is dropped. */
static int kept_rows(const char *path, const char *header, long resume_step, char **kept, char *err,
                     size_t err_len) {
    size_t capacity = strlen(header) + 2, used = 0;
    *kept = xmalloc(capacity);
    FILE *fp = fopen(path, "r");
    if (!fp && errno != ENOENT) {
        free(*kept);
        return path_error(err, err_len, path, "cannot open: %s", strerror(errno));
    }
    char *line = NULL;
    size_t line_capacity = 0;
    ssize_t length;
    int status = 0;
    for (long number = 1; fp && (length = getline(&line, &line_capacity, fp)) > 0; number++) {
        if (line[length - 1] != '\n') break;
        line[length - 1] = '\0';
        status = keep_line(path, number, line, header, resume_step, err, err_len);
        if (status < 0) break;
        if (status == 0) continue;
        while (used + (size_t)length + 1 > capacity) *kept = xrealloc(*kept, capacity *= 2);
        memcpy(*kept + used, line, (size_t)length - 1);
        (*kept)[used + (size_t)length - 1] = '\n';
        used += (size_t)length;
    }
    if (status >= 0 && fp && ferror(fp)) status = path_error(err, err_len, path, "read failed");
    free(line);
    if (fp) fclose(fp);
    if (status < 0) {
        free(*kept);
        return -1;
    }
    if (used == 0) used = (size_t)snprintf(*kept, capacity, "%s\n", header);
    (*kept)[used] = '\0';
    return 0;
}

int csv_log_open(CsvLog *log, const char *path, const char *metric_name, long resume_step,
                 char *err, size_t err_len) {
    *log = (CsvLog){0};
    if (strlen(path) >= sizeof log->path) return path_error(err, err_len, path, "path too long");
    strcpy(log->path, path);
    char header[256];
    snprintf(header, sizeof header, "step,tokens,lr,train_loss,valid_loss,valid_%s,elapsed_s",
             metric_name);
    char *content;
    if (resume_step >= 0) {
        if (kept_rows(path, header, resume_step, &content, err, err_len) != 0) return -1;
    } else {
        content = xmalloc(strlen(header) + 2);
        sprintf(content, "%s\n", header);
    }
    AtomicFile af;
    int status = atomic_open(&af, path, err, err_len);
    if (status == 0) {
        fputs(content, af.fp);
        status = atomic_close(&af, err, err_len);
    }
    free(content);
    if (status != 0) return -1;
    log->fp = fopen(path, "a");
    if (!log->fp)
        return path_error(err, err_len, path, "cannot open for appending: %s", strerror(errno));
    return 0;
}

/* A number, or nothing for NaN. */
static void put_value(FILE *fp, const char *format, double value) {
    fputc(',', fp);
    if (!isnan(value)) fprintf(fp, format, value);
}

int csv_log_write(CsvLog *log, const CsvRow *row, char *err, size_t err_len) {
    fprintf(log->fp, "%ld,%ld", row->step, row->tokens);
    put_value(log->fp, "%.6g", row->lr);
    put_value(log->fp, "%.9g", row->train_loss);
    put_value(log->fp, "%.9g", row->valid_loss);
    put_value(log->fp, "%.9g", row->valid_metric);
    put_value(log->fp, "%.3f", row->elapsed_seconds);
    fputc('\n', log->fp);
    if (fflush(log->fp) != 0 || ferror(log->fp))
        return path_error(err, err_len, log->path, "write failed: %s", strerror(errno));
    return 0;
}

int csv_log_close(CsvLog *log, char *err, size_t err_len) {
    if (!log->fp) return 0;
    int failed = ferror(log->fp) != 0;
    if (fclose(log->fp) != 0) failed = 1;
    log->fp = NULL;
    return failed ? path_error(err, err_len, log->path, "write failed: %s", strerror(errno)) : 0;
}
