/* lesson.c - prose, sections, numbers and figures for the lessons (see lesson.h). */
#include "lesson.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define WRAP_COLUMNS 96

/* 1 when LESSON_MARKUP is set (render.sh sets it): lines carry markers for the renderer. */
static int markup(void) {
    static int value = -1;
    if (value < 0) value = getenv("LESSON_MARKUP") != NULL;
    return value;
}

void lesson_begin(const char *title) {
    if (markup()) {
        printf("@@t %s\n", title);
        return;
    }
    printf("%s\n", title);
    for (size_t i = 0; i < strlen(title); i++) putchar('=');
    putchar('\n');
}

void section(const char *title) {
    if (markup()) {
        printf("@@h %s\n", title);
        return;
    }
    printf("\n%s\n", title);
    for (size_t i = 0; i < strlen(title); i++) putchar('-');
    putchar('\n');
}

/* Greedy word wrap: words (runs of non-blanks) go on a line while it stays within the limit. */
void say(const char *format, ...) {
    char text[8192];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);

    const char *prefix = markup() ? "@@p " : "";
    if (!markup()) putchar('\n'); /* a blank line before and after, on a terminal */
    int column = 0;
    for (char *word = strtok(text, " \n"); word; word = strtok(NULL, " \n")) {
        int length = (int)strlen(word);
        if (column > 0 && column + 1 + length > WRAP_COLUMNS) {
            putchar('\n');
            column = 0;
        }
        if (column == 0)
            column = printf("%s%s", prefix, word) - (int)strlen(prefix);
        else
            column += printf(" %s", word);
    }
    printf(markup() ? "\n@@p\n" : "\n\n");
}

void print_vector(const char *label, const real *values, long n, int decimals) {
    printf("%-10s", label);
    for (long i = 0; i < n; i++) printf(" %*.*f", decimals + 4, decimals, (double)values[i]);
    putchar('\n');
}

void print_matrix(const char *label, const real *values, int rows, int cols, int decimals) {
    printf("%s\n", label);
    for (int r = 0; r < rows; r++) {
        char row_label[32];
        snprintf(row_label, sizeof row_label, "  [%d]", r);
        print_vector(row_label, values + (long)r * cols, cols, decimals);
    }
}

void lesson_figure_open(Figure *fig, const char *name) {
    const char *dir = getenv("LESSON_FIGURE_DIR");
    if (!dir || !*dir) dir = "docs/notebooks";
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "lesson: cannot create %s: %s\n", dir, strerror(errno));
        exit(1);
    }
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/%s.png", dir, name);
    if (figure_open(fig, path, FIGURE_PNG, err, sizeof err) != 0) {
        fprintf(stderr, "lesson: %s\n", err);
        exit(1);
    }
}

void lesson_figure_show(Figure *fig, const char *caption) {
    char err[512];
    fflush(stdout);
    if (figure_close(fig, err, sizeof err) != 0) {
        fprintf(stderr, "lesson: %s\n", err);
        exit(1);
    }
    if (markup())
        printf("@@f %s %s\n", fig->out_path, caption);
    else
        printf("[figure %s: %s]\n", fig->out_path, caption);
}

double lesson_seconds(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + 1e-9 * (double)now.tv_nsec;
}
