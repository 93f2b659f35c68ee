/* plot_curves.c - `cpool plot curves`: several runs' loss.csv files on one plot.
 *
 * A loss.csv is train/progress.h's: one header line, then a row per logged step,
 *
 *     step,tokens,lr,train_loss,valid_loss,valid_bpc,elapsed_s        (or valid_accuracy)
 *     100,819200,0.001,1.52,,,61.5
 *
 * an empty cell where nothing was measured. Every file is read whole and checked (the header,
 * seven cells a row, numbers in the cells) before anything is drawn; a problem is one line
 * naming the file, the line and the column. Each run gets one colour; a metric measured at every
 * step (train_*) is a thin line, one measured at evaluations (valid_*) a line with points. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plot_job.h"
#include "util.h"

#define CSV_COLUMNS 7
static const char *const csv_columns[CSV_COLUMNS] = {
    "step", "tokens", "lr", "train_loss", "valid_loss", "valid_*", "elapsed_s"};
enum { COL_STEP, COL_TOKENS, COL_LR, COL_TRAIN_LOSS, COL_VALID_LOSS, COL_METRIC, COL_ELAPSED };

/* One run's file, parsed: rows of seven numbers, NaN for empty cells. */
typedef struct CurveRun {
    const char *path;
    char label[128];
    char metric[32]; /* the sixth column's name: "valid_bpc", "valid_accuracy" */
    double (*rows)[CSV_COLUMNS];
    int n_rows;
} CurveRun;

/* What can be plotted, and from which column. */
typedef struct CurveMetric {
    const char *name;
    int column;
    double scale;        /* the value drawn is cell * scale */
    int per_evaluation;  /* 1: valid_* (points), 0: every logged step (a line) */
    const char *legend;  /* after the run's label in the key */
    const char *y_label; /* with units */
} CurveMetric;

static const CurveMetric curve_metrics[] = {
    {"train_loss", COL_TRAIN_LOSS, 1.0, 0, "train", "training loss (nats per prediction)"},
    {"valid_loss", COL_VALID_LOSS, 1.0, 1, "valid", "validation loss (nats per prediction)"},
    {"train_bpc", COL_TRAIN_LOSS, 1.0 / M_LN2, 0, "train", "bits per character"},
    {"valid_bpc", COL_METRIC, 1.0, 1, "valid", "bits per character"},
    {"valid_accuracy", COL_METRIC, 100.0, 1, "valid accuracy", "validation accuracy (%)"},
};
enum { N_CURVE_METRICS = sizeof curve_metrics / sizeof curve_metrics[0] };

/* ------------------------------------------------------------------------------------------ */
/* Reading a CSV                                                                              */

/* "runs/kjv/loss.csv:baseline" -> path and label; a default label from the path. */
static void split_label(PlotJob *job, const char *spec, CurveRun *run) {
    const char *colon = strrchr(spec, ':');
    char *path = plot_alloc(job, strlen(spec) + 1);
    strcpy(path, spec);
    if (colon && access(spec, F_OK) != 0) { /* a file called "a:b" wins over a label */
        path[colon - spec] = '\0';
        snprintf(run->label, sizeof run->label, "%s", colon + 1);
    }
    run->path = path;
    if (run->label[0]) return;
    char stem[128];
    plot_stem(path, stem, sizeof stem);
    const char *slash = strrchr(path, '/');
    if (strcmp(stem, "loss") == 0 && slash && slash != path) { /* runs/kjv/loss.csv -> "kjv" */
        const char *start = slash;
        while (start > path && start[-1] != '/') start--;
        snprintf(run->label, sizeof run->label, "%.*s", (int)(slash - start), start);
    } else {
        snprintf(run->label, sizeof run->label, "%s", stem);
    }
}

static int check_header(PlotJob *job, CurveRun *run, char *line) {
    line[strcspn(line, "\r\n")] = '\0';
    char *cell = line;
    for (int c = 0; c < CSV_COLUMNS; c++) {
        char *comma = strchr(cell, ',');
        if (comma) *comma = '\0';
        int ok = c == COL_METRIC ? strncmp(cell, "valid_", 6) == 0 && strlen(cell) < 32
                                 : strcmp(cell, csv_columns[c]) == 0;
        if (!ok || (!comma) != (c == CSV_COLUMNS - 1))
            return plot_error(job, PLOT_EXIT_DATA,
                              "%s: not a loss.csv: column %d of the header is '%s', expected "
                              "'%s' (step,tokens,lr,train_loss,valid_loss,valid_*,elapsed_s)",
                              run->path, c + 1, cell, csv_columns[c]);
        if (c == COL_METRIC) strcpy(run->metric, cell);
        cell = comma ? comma + 1 : cell;
    }
    return 0;
}

/* Row line_no (1-based, the header is line 1) into values. */
static int parse_row(PlotJob *job, const CurveRun *run, int line_no, char *line,
                     double values[CSV_COLUMNS]) {
    line[strcspn(line, "\r\n")] = '\0';
    char *cell = line;
    for (int c = 0; c < CSV_COLUMNS; c++) {
        char *comma = strchr(cell, ',');
        if ((!comma) != (c == CSV_COLUMNS - 1))
            return plot_error(job, PLOT_EXIT_DATA, "%s:%d: expected %d comma-separated cells",
                              run->path, line_no, CSV_COLUMNS);
        if (comma) *comma = '\0';
        char *end = cell;
        values[c] = *cell ? strtod(cell, &end) : NAN;
        if (*end != '\0' || (!*cell && c < COL_TRAIN_LOSS))
            return plot_error(job, PLOT_EXIT_DATA, "%s:%d: column %s: expected a number, got '%s'",
                              run->path, line_no, c == COL_METRIC ? run->metric : csv_columns[c],
                              cell);
        cell = comma ? comma + 1 : cell;
    }
    return 0;
}

static int read_csv(PlotJob *job, const char *spec, CurveRun *run) {
    split_label(job, spec, run);
    FILE *fp = fopen(run->path, "r");
    if (!fp)
        return plot_error(job, PLOT_EXIT_DATA, "%s: cannot open: %s", run->path, strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    int status = 0, capacity = 0;
    ssize_t n;
    if ((n = getline(&line, &cap, fp)) <= 0)
        status = plot_error(job, PLOT_EXIT_DATA, "%s: empty (not a loss.csv)", run->path);
    else
        status = check_header(job, run, line);
    for (int line_no = 2; !status && (n = getline(&line, &cap, fp)) > 0; line_no++) {
        if (line[n - 1] != '\n' && feof(fp)) break; /* a row cut short by a crash: skip it */
        if (run->n_rows == capacity) {
            capacity = capacity ? 2 * capacity : 64;
            run->rows = xrealloc(run->rows, sizeof *run->rows * (size_t)capacity);
        }
        status = parse_row(job, run, line_no, line, run->rows[run->n_rows]);
        run->n_rows += status == 0;
    }
    free(line);
    fclose(fp);
    if (run->rows) { /* hand the rows to the job, so they are freed with it */
        void *kept = plot_alloc(job, sizeof *run->rows * (size_t)(run->n_rows + 1));
        memcpy(kept, run->rows, sizeof *run->rows * (size_t)run->n_rows);
        free(run->rows);
        run->rows = kept;
    }
    if (!status && run->n_rows == 0)
        status = plot_error(job, PLOT_EXIT_DATA, "%s: no rows yet (only the header)", run->path);
    return status;
}

/* ------------------------------------------------------------------------------------------ */
/* Choosing what to draw                                                                      */

static const CurveMetric *find_metric(const char *name) {
    for (int m = 0; m < N_CURVE_METRICS; m++)
        if (strcmp(curve_metrics[m].name, name) == 0) return &curve_metrics[m];
    return NULL;
}

/* --metric, or by default train and valid bpc (text runs) or valid accuracy (image runs). */
static int choose_metrics(PlotJob *job, const CurveRun *runs, int n_runs,
                          const CurveMetric *chosen[2], int *n_chosen) {
    for (int r = 1; r < n_runs; r++)
        if (strcmp(runs[r].metric, runs[0].metric) != 0)
            return plot_error(job, PLOT_EXIT_DATA,
                              "%s measures %s but %s measures %s: plot them separately",
                              runs[r].path, runs[r].metric, runs[0].path, runs[0].metric);
    const char *name = job->options.metric;
    *n_chosen = 1;
    if (!name) {
        if (strcmp(runs[0].metric, "valid_bpc") == 0) {
            chosen[0] = find_metric("train_bpc"), chosen[1] = find_metric("valid_bpc");
            *n_chosen = 2;
        } else {
            chosen[0] = find_metric(strcmp(runs[0].metric, "valid_accuracy") == 0 ? "valid_accuracy"
                                                                                  : "train_loss");
        }
        return 0;
    }
    if (!(chosen[0] = find_metric(name)))
        return plot_error(job, PLOT_EXIT_USAGE,
                          "--metric '%s': expected train_loss, valid_loss, train_bpc, valid_bpc "
                          "or valid_accuracy",
                          name);
    if (chosen[0]->column == COL_METRIC && strcmp(runs[0].metric, name) != 0)
        return plot_error(job, PLOT_EXIT_DATA, "%s: no %s column (its sixth column is %s)",
                          runs[0].path, name, runs[0].metric);
    return 0;
}

static double x_value(const PlotJob *job, const double row[CSV_COLUMNS]) {
    const char *x = job->options.x_axis ? job->options.x_axis : "tokens";
    if (strcmp(x, "step") == 0) return row[COL_STEP];
    if (strcmp(x, "time") == 0) return row[COL_ELAPSED] / 60.0;
    return row[COL_TOKENS];
}

/* Data block m of the run's file: x and metric m's value where it was measured. Returns how
 * many points it holds. */
static int write_series(PlotJob *job, FILE *data, const CurveRun *run, const CurveMetric *metric) {
    int points = 0;
    fprintf(data, "# %s: x, %s\n", run->path, metric->name);
    for (int i = 0; i < run->n_rows; i++) {
        double v = run->rows[i][metric->column];
        if (!isfinite(v)) continue;
        fprintf(data, "%.12g %.8g\n", x_value(job, run->rows[i]), v * metric->scale);
        points++;
    }
    fprintf(data, "\n\n");
    return points;
}

/* ------------------------------------------------------------------------------------------ */
/* The figure                                                                                 */

static void write_axes(PlotJob *job, const CurveRun *runs, const CurveMetric *const chosen[2],
                       int n_chosen) {
    const char *x = job->options.x_axis ? job->options.x_axis : "tokens";
    int images = strcmp(runs[0].metric, "valid_accuracy") == 0;
    const char *x_label = strcmp(x, "step") == 0   ? "optimizer step"
                          : strcmp(x, "time") == 0 ? "training time (minutes)"
                          : images                 ? "images trained on"
                                                   : "tokens (characters) trained on";
    Figure *fig = &job->fig;
    if (n_chosen == 2)
        figure_script(fig, "set title 'Training curves: bits per character, training (line) and "
                           "validation (points)' font ',15'\n");
    else
        figure_script(fig, "set title 'Training curves: %s' font ',15'\n", chosen[0]->y_label);
    figure_script(fig, "set xlabel '%s'\nset ylabel '%s'\n", x_label,
                  chosen[n_chosen - 1]->y_label);
    if (strcmp(x, "tokens") == 0) figure_script(fig, "set format x '%%.1s%%c'\n");
    figure_script(fig, "set xrange [0:*]\n");
    figure_script(fig,
                  "set grid lc rgb '#dddddd'\nset key %s right box opaque\n"
                  "set border 3\nset tics nomirror\nset offsets 0, 0, graph 0.05, graph 0.05\n",
                  strcmp(chosen[0]->name, "valid_accuracy") == 0 ? "bottom" : "top");
}

int plot_curves(PlotJob *job) {
    int n_runs = job->options.n_csv, status = 0, n_chosen = 0;
    CurveRun *runs = plot_alloc(job, sizeof *runs * (size_t)n_runs);
    for (int r = 0; r < n_runs && !status; r++)
        status = read_csv(job, job->options.csv[r], &runs[r]);
    const CurveMetric *chosen[2] = {NULL, NULL};
    if (!status) status = choose_metrics(job, runs, n_runs, chosen, &n_chosen);
    if (!status) status = plot_figure_open(job);
    if (status) return status;
    Figure *fig = &job->fig;
    write_axes(job, runs, chosen, n_chosen);
    int total_points = 0;
    const char *separator = "plot ";
    for (int r = 0; r < n_runs; r++) {
        char name[16], label[300];
        snprintf(name, sizeof name, "run%d", r);
        FILE *data = figure_data(fig, name);
        plot_literal(job, runs[r].label, label, sizeof label);
        for (int m = 0; m < n_chosen; m++) {
            int points = write_series(job, data, &runs[r], chosen[m]);
            total_points += points;
            if (points == 0) {
                plot_note(job, "%s: no %s values yet\n", runs[r].path, chosen[m]->name);
                continue;
            }
            const char *style =
                chosen[m]->per_evaluation
                    ? (points == 1 ? "points pt 7 ps 1.2" : "linespoints pt 7 ps 0.9 lw 2.5")
                    : "lines lw 1.2";
            figure_script(fig, "%s'%s' index %d using 1:2 with %s lc rgb '%s' title '%s: %s'",
                          separator, figure_data_path(fig, name), m, style, plot_colour(r), label,
                          chosen[m]->legend);
            separator = ", \\\n     ";
        }
    }
    figure_script(fig, "\n");
    if (total_points == 0)
        return plot_error(job, PLOT_EXIT_DATA, "%s: no %s values in any row", runs[0].path,
                          chosen[n_chosen - 1]->name);
    return plot_figure_close(job);
}
