/* lesson.h - the few helpers every lesson uses to print prose, sections, numbers and figures.
 *
 * A lesson is a C program that reads as prose and code. It prints its explanation with say(),
 * starts each part with section(), prints its numbers with printf (or print_vector /
 * print_matrix), and draws its figures with gnuplot (tools/gnuplot.h) through lesson_figure_open
 * and lesson_figure_show:
 *
 *     lesson_begin("01 A value and its gradient");
 *     // %%
 *     section("1. A value");
 *     say("One neuron computes y = tanh(w x + b). With w = %g ...", w);
 *     printf("y = %.6f\n", y);
 *
 *     Figure fig;
 *     lesson_figure_open(&fig, "01-value-and-gradient-slope");   // docs/notebooks/...png
 *     ... figure_data / figure_script ...
 *     lesson_figure_show(&fig, "The loss as a function of w");  // runs gnuplot, names the PNG
 *
 * Run by hand, a lesson prints plain text. `make notebooks` runs it with LESSON_MARKUP=1 in the
 * environment: then say(), section() and lesson_figure_show() mark their lines ("@@p ", "@@h ",
 * "@@f ") so that notebooks-c/render.sh can lay the output out as Markdown - prose as text,
 * numbers as code blocks, figures as images - next to the code that produced it. The source is
 * cut into code blocks at the lines `// %%`, one before each section() (see render.sh).
 *
 * Figures go to docs/notebooks/NAME.png, or to $LESSON_FIGURE_DIR/NAME.png when that is set.
 * Any failure (gnuplot missing, a directory that cannot be written) ends the lesson with one line
 * on stderr and exit status 1.
 */
#ifndef CPOOL_LESSON_H
#define CPOOL_LESSON_H

#include "gnuplot.h"
#include "tensor.h"

void lesson_begin(const char *title); /* the lesson's number and title, as a heading */
void section(const char *title);      /* a new part of the lesson, as a heading */
/* One paragraph, printf-style, wrapped at 96 columns. */
void say(const char *format, ...) __attribute__((format(printf, 1, 2)));

/* "label  v0  v1 ..." with `decimals` digits after the point, one line. */
void print_vector(const char *label, const real *values, long n, int decimals);
/* A rows x cols row-major matrix, one row a line, under a label. */
void print_matrix(const char *label, const real *values, int rows, int cols, int decimals);

/* Figures: open docs/notebooks/NAME.png (exits on failure); show: run gnuplot, then print the
 * figure's path and caption (the rendered lesson shows the image there). */
void lesson_figure_open(Figure *fig, const char *name);
void lesson_figure_show(Figure *fig, const char *caption);

double lesson_seconds(void); /* a monotonic clock, in seconds */

#endif
