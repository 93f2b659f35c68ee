/* 03-gradcheck.c - checking a backward against finite differences, and watching two wrong
 * backwards get caught (one of them only when the test is written well). Float64: the checker
 * needs it (section 1 shows why). */
#include <math.h>
#include <stdio.h>

#include "attention.h"
#include "gradcheck.h"
#include "lesson.h"
#include "ops.h"

/* A custom op, written the way every op in autograd/ops_*.c is written: y = x^3, elementwise.
 * Its local derivative is dy/dx = 3 x^2, so the backward adds dx += dy * 3 x^2. Two more
 * backwards carry the mistakes this lesson catches. */
static void cube_backward(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    for (long i = 0; i < x->size; i++) dx[i] += y->grad[i] * 3 * x->data[i] * x->data[i];
}

/* Mistake 1: the factor 3 of the derivative is forgotten. */
static void cube_backward_forgets_three(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    for (long i = 0; i < x->size; i++) dx[i] += y->grad[i] * x->data[i] * x->data[i];
}

/* Mistake 2: the gradient is assigned (=) instead of accumulated (+=). */
static void cube_backward_assigns(Tape *tape, TapeRecord *record) {
    Tensor *x = record->inputs[0], *y = record->output;
    real *dx = tape_grad(tape, x);
    if (!dx) return;
    for (long i = 0; i < x->size; i++) dx[i] = y->grad[i] * 3 * x->data[i] * x->data[i];
}

static Tensor *op_cube(Tape *tape, Tensor *x, BackwardFn backward) {
    Tensor *y = tape_tensor(tape, x->ndim, x->shape);
    for (long i = 0; i < x->size; i++) y->data[i] = x->data[i] * x->data[i] * x->data[i];
    tape_record(tape, "cube", backward, y, 1, &x);
    return y;
}

/* What gradcheck differentiates: cube(x), or cube(x) * x, which uses x twice. */
typedef struct CubeCase {
    const char *what;
    BackwardFn backward;
    int reuse_input; /* 1: f(x) = cube(x) * x */
    double step;     /* the finite-difference step h; 0: the checker's default 1e-6 */
} CubeCase;

static Tensor *cube_function(Tape *tape, Tensor *const *inputs, void *context) {
    const CubeCase *c = context;
    Tensor *y = op_cube(tape, inputs[0], c->backward);
    return c->reuse_input ? op_mul(tape, y, inputs[0]) : y;
}

/* The attention layer of lesson 04 as a function of its input (its parameters are read from the
 * layer, and are the same tensors as inputs[1..]). */
static Tensor *attention_function(Tape *tape, Tensor *const *inputs, void *context) {
    return attention_forward(tape, context, inputs[0], inputs[0], NULL);
}

int main(void) {
    lesson_begin("03 Checking gradients");
    say("A backward is hand-written code, and hand-written code has bugs. The check that catches "
        "them needs no calculus at all: nudge an input a little, see how much the output moves, "
        "and compare that slope with what the backward said.");

    // %%
    section("1. Finite differences, and how small the nudge should be");
    say("For f(x) = tanh(x) at x = 0.7, compare the exact derivative 1 - tanh(x)^2 with the "
        "forward difference (f(x+h) - f(x)) / h and the central difference "
        "(f(x+h) - f(x-h)) / 2h, for shrinking h.");
    const double x0 = 0.7, exact = 1 - tanh(x0) * tanh(x0);
    const float x0_float = 0.7f; /* the same in float32, against its own exact derivative */
    const double exact_float = 1 - tanh((double)x0_float) * tanh((double)x0_float);
    double steps[13], forward_err[13], central_err[13], central_err_float[13];
    printf("%8s %14s %14s %22s\n", "h", "forward error", "central error", "central error float32");
    for (int k = 0; k < 13; k++) {
        double h = pow(10, -(k + 1));
        float h_float = (float)h;
        steps[k] = h;
        forward_err[k] = fabs((tanh(x0 + h) - tanh(x0)) / h - exact);
        central_err[k] = fabs((tanh(x0 + h) - tanh(x0 - h)) / (2 * h) - exact);
        central_err_float[k] = fabs(
            (tanhf(x0_float + h_float) - tanhf(x0_float - h_float)) / (2 * h_float) - exact_float);
        printf("%8.0e %14.2e %14.2e %22.2e\n", h, forward_err[k], central_err[k],
               central_err_float[k]);
    }
    int best = 0, best_float = 0;
    for (int k = 1; k < 13; k++) {
        if (central_err[k] < central_err[best]) best = k;
        if (central_err_float[k] < central_err_float[best_float]) best_float = k;
    }
    say("Two errors pull in opposite directions. Truncation: the difference quotient is not the "
        "derivative, off by about h f''/2 (forward) or h^2 f'''/6 (central). Rounding: f is "
        "computed with a relative error near 1e-16, and dividing by h magnifies it to about "
        "1e-16 / h. The central difference is best here at h = %.0e, with an error of %.1e. In "
        "float32, where rounding is near 1e-7, the best is %.1e at h = %.0e, %.0e times worse: a "
        "bug that moves a gradient by a few parts in a million would hide in it. That is why the "
        "checker runs in float64, with h = 1e-6.",
        steps[best], central_err[best], central_err_float[best_float], steps[best_float],
        central_err_float[best_float] / central_err[best]);
    Figure fig;
    lesson_figure_open(&fig, "03-gradcheck-step");
    FILE *errors = figure_data(&fig, "errors");
    for (int k = 0; k < 13; k++)
        fprintf(errors, "%g %g %g %g\n", steps[k], fmax(forward_err[k], 1e-17),
                fmax(central_err[k], 1e-17), fmax(central_err_float[k], 1e-17));
    figure_script(&fig,
                  "set title 'Error of finite differences for d tanh(x)/dx at x = %g'\n"
                  "set xlabel 'step h (smaller to the right)'\nset ylabel 'absolute error'\n"
                  "set logscale xy\nset format x '10^{%%L}'\nset format y '10^{%%L}'\n"
                  "set grid\nset key bottom left\nset xrange [1:1e-13]\nset yrange [1e-13:10]\n"
                  "plot '%s' using 1:2 with linespoints pt 7 lw 2 title 'forward, float64', "
                  "'' using 1:3 with linespoints pt 5 lw 2 title 'central, float64', "
                  "'' using 1:4 with linespoints pt 9 lw 2 title 'central, float32', "
                  "[1e-6:1e-1] 0.02 * x**2 dt 2 lc 'gray' title 'slope h^2 (truncation)', "
                  "[1e-13:1e-6] 1e-16 / x dt 3 lc 'black' title 'slope 1/h (rounding)'\n",
                  x0, figure_data_path(&fig, "errors"));
    lesson_figure_show(&fig, "The central difference's error: truncation falls like h^2 until "
                             "rounding, growing like 1/h, takes over");

    // %%
    section("2. The checker on a correct op");
    say("gradcheck (autograd/gradcheck.h) does this for every element of every input of a "
        "function built from ops. It draws a random r of the output's shape, takes "
        "L = sum(r * f(x)), and compares the tape's dL/dx with central differences element by "
        "element. The error is reported relative to the size of that input's gradient. Our cube "
        "op with the right backward, on a random (3, 4) input:");
    Rng rng;
    rng_seed(&rng, 3);
    Tensor *x = gradcheck_input(&rng, 2, (int[]){3, 4}, -1.5, 1.5);
    CubeCase correct = {"correct backward, f = cube(x)", cube_backward, 0, 0};
    GradcheckStats stats = {0};
    double error = gradcheck(cube_function, &correct, &x, 1, NULL, &stats, NULL);
    printf("elements compared %ld, max abs error %.1e, max relative error %.1e\n", stats.elements,
           stats.max_abs_err, error);

    // %%
    section("3. A wrong backward gets caught");
    say("Now the mistakes. Each row runs the same check; the verdict uses the tolerance 1e-8 "
        "that the project's own table (cpool gradcheck) uses for smooth ops.");
    const CubeCase cases[] = {
        {"correct backward, f = cube(x)", cube_backward, 0, 0},
        {"correct backward, f = cube(x) * x", cube_backward, 1, 0},
        {"forgets the 3, f = cube(x)", cube_backward_forgets_three, 0, 0},
        {"assigns (=), f = cube(x)", cube_backward_assigns, 0, 0},
        {"assigns (=), f = cube(x) * x", cube_backward_assigns, 1, 0},
        {"correct backward, h = 1e-2", cube_backward, 0, 1e-2},
    };
    const double tolerance = 1e-8;
    printf("%-36s %14s  %s\n", "case", "relative error", "verdict");
    for (int c = 0; c < (int)(sizeof cases / sizeof cases[0]); c++) {
        GradcheckOptions options = {.step = cases[c].step};
        GradcheckStats case_stats = {0};
        double case_error =
            gradcheck(cube_function, (void *)&cases[c], &x, 1, &options, &case_stats, NULL);
        printf("%-36s %14.1e  %s\n", cases[c].what, case_error,
               case_error <= tolerance ? "pass" : "FAIL");
    }
    say("Forgetting the 3 is caught at once: the tape's gradient is a third of the true one, a "
        "relative error of 2/3. The assignment is sneakier. With x used once, nothing else "
        "writes into x's gradient, so = and += give the same numbers and the check passes. Use "
        "x twice and the multiplication's share, added first (its record is later on the tape), "
        "is overwritten: caught. The lesson for tests: always check an op in a function that "
        "uses its input more than once. And the last row: a correct backward fails when the "
        "step is too coarse, so a failure means look closer, not blame the backward at once.");

    // %%
    section("4. A whole layer");
    say("The same checker takes a whole layer, with its parameters as inputs: here the causal "
        "attention layer of lesson 04 (dim 4, 2 heads) on 3 tokens. Each input gets its own "
        "error; `cpool gradcheck all` runs such checks for every op and layer of the project.");
    ParamSet params = {0};
    Attention attention;
    attention_init(&attention, (AttentionConfig){.dim = 4, .heads = 2, .causal = 1}, &params,
                   "attn", &rng);
    Tensor *inputs[5] = {gradcheck_input(&rng, 3, (int[]){1, 3, 4}, -1, 1)};
    const char *input_names[5] = {"x"};
    for (int i = 0; i < params.count; i++) {
        inputs[1 + i] = params.items[i].tensor;
        input_names[1 + i] = params.items[i].name;
    }
    GradcheckStats per_input[5] = {{0}}, layer_stats = {0};
    gradcheck(attention_function, &attention, inputs, 1 + params.count, NULL, &layer_stats,
              per_input);
    for (int i = 0; i < 1 + params.count; i++)
        printf("%-18s %4ld elements   max relative error %.1e\n", input_names[i],
               per_input[i].elements, per_input[i].max_rel_err);

    gradcheck_free(inputs, 1);
    params_free(&params);
    gradcheck_free(&x, 1);
    return 0;
}
