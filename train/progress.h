/* progress.h - the training progress line and the loss-curve CSV file.
 *
 *     Progress progress;
 *     progress_init(&progress, stderr, "tok", first_step, total_steps, 100);
 *     for (long step = first_step; step < total_steps; step++) {
 *         ... one step on B * N tokens ...
 *         progress_update(&progress, step + 1, B * N, loss, "bpc", nats_to_bits(loss));
 *         if (evaluating) progress_print(&progress, "step %ld: valid bpc %.4f", step + 1, bpc);
 *     }
 *     progress_finish(&progress);
 *
 * The line reads
 *
 *     step 1200/20000  loss 1.2345  bpc 1.7810  12.3k tok/s  ETA 25m40s
 *
 * On a terminal (isatty) it is rewritten in place after every update ("\r", the line, then
 * "\033[K" to clear what a longer previous line left); progress_print first clears it, prints
 * its own line and lets the next update redraw. Redraws are limited to 10 a second (and the
 * last step), so fast steps do not flood the terminal. Anywhere else (a file, a pipe, CI logs) it
 * is printed as a plain line at the first update, every `every` steps and at the last step, and
 * progress_print prints plain lines. The speed is in units (tokens, images) per second since
 * progress_init; the ETA assumes the remaining steps go at the average pace of this session.
 *
 *     CsvLog log;
 *     if (csv_log_open(&log, "runs/kjv/loss.csv", "bpc", -1, err, sizeof err) != 0) ...
 *     csv_log_write(&log, &(CsvRow){.step = 100, .tokens = 819200, .lr = 1e-3,
 *                                   .train_loss = 1.52, .valid_loss = NAN, .valid_metric = NAN,
 *                                   .elapsed_seconds = 61.5}, err, sizeof err);
 *     csv_log_close(&log, err, sizeof err);
 *
 * The CSV has one header line and one row per call, each flushed at once (a crash loses
 * nothing written before it; `tail -f` and plotting tools see rows as they come):
 *
 *     step,tokens,lr,train_loss,valid_loss,valid_bpc,elapsed_s
 *     100,819200,0.001,1.52,,,61.5
 *
 * The sixth column is named after the metric ("valid_bpc", "valid_accuracy"). A value that is
 * NaN (not measured at this row) is an empty cell. Numbers use %.9g (losses) and %.6g (lr),
 * enough to plot and to compare runs. Opening with resume_step >= 0 continues an existing file
 * for a resumed run: the rows after resume_step (written after the checkpoint, by the run that
 * was interrupted) and a partial last line are dropped, the header is checked, and the kept part
 * is rewritten atomically (temp file and rename) before appending; a missing file is started
 * afresh. resume_step -1 starts a new file (replacing any old one).
 */
#ifndef CPOOL_PROGRESS_H
#define CPOOL_PROGRESS_H

#include <stddef.h>
#include <stdio.h>

/* Seconds on a monotonic clock (differences only). */
double wall_seconds(void);
/* Loss in nats (natural log) to bits: / ln 2. Bits per character for a byte-level model. */
double nats_to_bits(double nats);
/* "1h02m", "3m05s", "12s" into buffer (returns it); "?" for a negative or non-finite time. */
char *format_duration(double seconds, char *buffer, size_t buffer_len);

typedef struct Progress {
    FILE *out;
    int is_terminal;  /* 1: rewrite one line in place */
    int every;        /* not a terminal: print every `every` steps */
    const char *unit; /* "tok" or "img": what the speed counts */
    long first_step;  /* the step the session started at (0, or the resumed step) */
    long total_steps;
    long units; /* units processed this session */
    double start_seconds;
    double drawn_seconds; /* when the terminal line was last drawn (at most 10 a second) */
    int line_open;        /* a terminal line is showing, not yet ended with "\n" */
} Progress;

void progress_init(Progress *progress, FILE *out, const char *unit, long first_step,
                   long total_steps, int every);
/* After step `step` (1-based: steps done) that processed `units` units with training loss
 * `loss`; metric_name NULL omits the metric. */
void progress_update(Progress *progress, long step, long units, double loss,
                     const char *metric_name, double metric);
/* A line of its own (evaluation results, "saved checkpoint"), not garbling the progress line. */
void progress_print(Progress *progress, const char *format, ...)
    __attribute__((format(printf, 2, 3)));
/* End the terminal line, if one is showing. */
void progress_finish(Progress *progress);

typedef struct CsvRow {
    long step;
    long tokens; /* tokens (or images) trained on so far */
    double lr;
    double train_loss;   /* NaN: empty cell */
    double valid_loss;   /* NaN: empty cell */
    double valid_metric; /* bpc or accuracy; NaN: empty cell */
    double elapsed_seconds;
} CsvRow;

typedef struct CsvLog {
    FILE *fp;
    char path[4096];
} CsvLog;

int csv_log_open(CsvLog *log, const char *path, const char *metric_name, long resume_step,
                 char *err, size_t err_len);
int csv_log_write(CsvLog *log, const CsvRow *row, char *err, size_t err_len);
int csv_log_close(CsvLog *log, char *err, size_t err_len);

#endif
