/* gnuplot.h - write a figure with gnuplot: the data files and the script are ours, gnuplot draws.
 *
 *     Figure fig;
 *     if (figure_open(&fig, "plots/support.png", FIGURE_PNG, err, sizeof err) != 0) ...
 *     FILE *data = figure_data(&fig, "support");      // a data file beside the script
 *     fprintf(data, "%d %g\n", i, s[i]);  ...
 *     figure_script(&fig, "set title 'Support sizes'\nplot '%s' using 1:2 with lines\n",
 *                   figure_data_path(&fig, "support"));
 *     if (figure_close(&fig, err, sizeof err) != 0) ...  // runs gnuplot; PNG appears atomically
 *
 * figure_open starts the script with the terminal (pngcairo at a readable default size and font,
 * or `dumb` for a text preview on stdout) and the output: a temporary file beside the PNG,
 * renamed over it only when gnuplot succeeded, so a failed plot never leaves half a PNG. The data
 * files and the script are kept next to the figure (FILE.png -> FILE.gp, FILE.NAME.dat), so the
 * reader can rerun or restyle it with `gnuplot FILE.gp`. Errors (gnuplot missing, a script
 * error, an unwritable directory) come back as one line in err.
 */
#ifndef CPOOL_GNUPLOT_H
#define CPOOL_GNUPLOT_H

#include <stddef.h>
#include <stdio.h>

typedef enum FigureTerm { FIGURE_PNG, FIGURE_DUMB } FigureTerm;

#define FIGURE_MAX_DATA 16

typedef struct Figure {
    char out_path[4096];    /* the PNG (FIGURE_PNG) */
    char script_path[4096]; /* out_path with .gp */
    FigureTerm term;
    FILE *script;
    int n_data;
    char data_names[FIGURE_MAX_DATA][64];
    char data_paths[FIGURE_MAX_DATA][4096];
    FILE *data[FIGURE_MAX_DATA];
} Figure;

/* Whether a figure can be written at out_path: its directory takes files and out_path is not
 * itself a directory. 0, or -1 with one line in err. Commands call it before their work, so a
 * bad --out fails at once rather than after minutes of training or measuring. */
int figure_check_out(const char *out_path, char *err, size_t err_len);
int figure_open(Figure *fig, const char *out_path, FigureTerm term, char *err, size_t err_len);
/* A new data file named name (opened once; later calls return the same stream). */
FILE *figure_data(Figure *fig, const char *name);
/* Its path, quoted for use inside a gnuplot script string. */
const char *figure_data_path(const Figure *fig, const char *name);
/* Append to the script, printf-style. */
void figure_script(Figure *fig, const char *format, ...) __attribute__((format(printf, 2, 3)));
/* Close every file, run gnuplot on the script, rename the PNG into place. 0, or -1 with err. */
int figure_close(Figure *fig, char *err, size_t err_len);
/* Abandon the figure: close and remove everything written. */
void figure_abort(Figure *fig);

#endif
