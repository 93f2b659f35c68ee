/* plots.h - the figures of `cpool plot`, callable from other commands and from tests.
 *
 *     char err[512];
 *     // after a training run: support.png, weights.png, curves.png, hist.png in the run's dir
 *     if (plot_run_figures("runs/kjv", "runs/kjv/checkpoint.safetensors", err, sizeof err) != 0)
 *         fprintf(stderr, "cpool train: figures: %s\n", err);
 *
 *     // any one figure, with the command line's arguments (argv[0] is "plot")
 *     char *argv[] = {"plot", "curves", "--csv", "a.csv", "--out", "curves.png"};
 *     int status = plot_run(6, argv, stdout, err, sizeof err);   // 0, 1 (data) or 2 (usage)
 *
 * Each figure is drawn by gnuplot from a script and data files kept beside the PNG
 * (tools/gnuplot.h); docs/figures.md shows every kind with the command that made it.
 */
#ifndef CPOOL_PLOTS_H
#define CPOOL_PLOTS_H

#include <stddef.h>
#include <stdio.h>

/* `cpool plot KIND [options]`: the exit status, with one line in err when it is not 0. report
 * receives what the command prints besides the figure (the cost table), or NULL. */
int plot_run(int argc, char **argv, FILE *report, char *err, size_t err_len);

/* The figures of a finished run, into run_dir: for a char-LM support.png, weights.png (when the
 * model has ContextPool), curves.png (from run_dir/loss.csv) and hist.png; for an image model
 * image-support.png instead of the first two. 0, or -1 with one line in err (the figures drawn
 * before the failure stay). */
int plot_run_figures(const char *run_dir, const char *ckpt_path, char *err, size_t err_len);

#endif
