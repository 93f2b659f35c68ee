/* 01-value-and-gradient.c - one neuron, its loss, and the loss's gradient: by hand, then by the
 * engine, then as the slope you can see on a plot. Float64 (libcpool64.a), so that the hand
 * computation and the engine agree to the last digit printed. */
#include <math.h>
#include <stdio.h>

#include "lesson.h"
#include "ops.h"

/* The same neuron in plain C: L(w, b) = (tanh(w x + b) - t)^2 / 2. */
static double neuron_loss(double w, double b, double x, double t) {
    double y = tanh(w * x + b);
    return 0.5 * (y - t) * (y - t);
}

/* The same neuron with the engine: every op appends a record to the tape (lesson 02). */
static Tensor *neuron_forward(Tape *tape, Tensor *w, Tensor *b, Tensor *x, Tensor *t) {
    Tensor *z = op_add(tape, op_mul(tape, w, x), b); /* z = w x + b */
    Tensor *y = op_tanh(tape, z);                    /* y = tanh(z) */
    Tensor *error = op_sub(tape, y, t);              /* y - t       */
    return op_scale(tape, op_mul(tape, error, error), 0.5);
}

/* A 0-d tensor (a scalar) holding value. */
static Tensor *scalar(double value, int requires_grad) {
    Tensor *s = tensor_create(0, NULL, requires_grad);
    s->data[0] = value;
    return s;
}

int main(void) {
    lesson_begin("01 A value and its gradient");
    say("Training a network means nudging its parameters so that a loss goes down. To know "
        "which way to nudge, we need the loss's gradient: how much the loss changes per unit "
        "change of each parameter. This lesson computes one by hand, lets the engine compute "
        "the same, and then looks at what the number means.");

    // %%
    section("1. A value");
    say("One neuron with weight w and bias b reads an input x and answers y = tanh(w x + b). "
        "We want it to answer t, and measure how far it is with the squared error "
        "L = (y - t)^2 / 2. Here is the forward pass, one intermediate value at a time.");
    const double x = 1.5, t = 0.5, w = 0.8, b = -0.3;
    double z = w * x + b;
    double y = tanh(z);
    double loss = 0.5 * (y - t) * (y - t);
    printf("x = %.1f   t = %.1f   w = %.1f   b = %.1f\n", x, t, w, b);
    printf("z = w x + b         = %.6f\n", z);
    printf("y = tanh(z)         = %.6f\n", y);
    printf("L = (y - t)^2 / 2   = %.6f\n", loss);

    // %%
    section("2. Its gradient, by hand");
    say("L depends on w only through z, and on z only through y. The chain rule multiplies the "
        "local derivatives along that path: dL/dw = dL/dy * dy/dz * dz/dw. Each factor is easy: "
        "dL/dy = y - t, dy/dz = 1 - tanh(z)^2 = 1 - y^2, dz/dw = x and dz/db = 1.");
    double dL_dy = y - t;
    double dy_dz = 1 - y * y;
    double dL_dw = dL_dy * dy_dz * x;
    double dL_db = dL_dy * dy_dz * 1;
    printf("dL/dy = y - t     = %.6f\n", dL_dy);
    printf("dy/dz = 1 - y^2   = %.6f\n", dy_dz);
    printf("dL/dw = dL/dy dy/dz x   = %.6f\n", dL_dw);
    printf("dL/db = dL/dy dy/dz 1   = %.6f\n", dL_db);

    // %%
    section("3. The same, by the engine");
    say("Now the engine. w and b are tensors that require a gradient (0-d tensors: scalars); x "
        "and t are constants. The forward pass is written with ops (neuron_forward, above); "
        "tape_backward then walks the recorded ops backward and leaves dL/dw in w->grad and dL/db "
        "in b->grad.");
    Tape *tape = tape_create();
    Tensor *w_param = scalar(w, 1), *b_param = scalar(b, 1);
    Tensor *x_const = scalar(x, 0), *t_const = scalar(t, 0);
    Tensor *loss_tensor = neuron_forward(tape, w_param, b_param, x_const, t_const);
    tape_backward(tape, loss_tensor);
    printf("L      engine %.12f   by hand %.12f\n", loss_tensor->data[0], loss);
    printf("dL/dw  engine %.12f   by hand %.12f   difference %.1e\n", w_param->grad[0], dL_dw,
           fabs(w_param->grad[0] - dL_dw));
    printf("dL/db  engine %.12f   by hand %.12f   difference %.1e\n", b_param->grad[0], dL_db,
           fabs(b_param->grad[0] - dL_db));
    tape_reset(tape);
    say("The engine multiplied the same factors, in another order, so the two agree up to the "
        "rounding of a double (1e-16). The engine's advantage is that it does this for any "
        "composition "
        "of ops, with millions of parameters, without anyone writing the chain rule out.");

    // %%
    section("4. What the number means: a slope");
    say("dL/dw says: move w by a small h and L moves by about h dL/dw. Check it: the change of L "
        "divided by h approaches the gradient as h shrinks (the leftover shrinks like h, from the "
        "curvature of L).");
    printf("%8s %16s %16s %12s\n", "h", "(L(w+h)-L(w))/h", "dL/dw", "difference");
    for (double h = 0.1; h > 1e-4; h /= 10) {
        double slope = (neuron_loss(w + h, b, x, t) - loss) / h;
        printf("%8.0e %16.6f %16.6f %12.1e\n", h, slope, dL_dw, slope - dL_dw);
    }
    Figure fig;
    lesson_figure_open(&fig, "01-value-and-gradient-slope");
    FILE *curve = figure_data(&fig, "curve");
    for (double wi = -1; wi <= 2.5 + 1e-9; wi += 0.02)
        fprintf(curve, "%g %g %g\n", wi, neuron_loss(wi, b, x, t), loss + dL_dw * (wi - w));
    figure_script(&fig,
                  "set title 'L(w) = (tanh(%g w %+g) - %g)^2 / 2 and its tangent at w = %g'\n"
                  "set xlabel 'weight w'\nset ylabel 'loss L'\nset grid\n"
                  "set yrange [-0.02:0.25]\nset key bottom right\n"
                  "set label 1 'slope dL/dw = %.4f' at %g,%g offset 1,-1\n"
                  "set object 1 circle at %g,%g size 0.03 fillstyle solid fc rgb 'black'\n"
                  "plot '%s' using 1:2 with lines lw 2 title 'L(w)', "
                  "'' using 1:3 with lines dt 2 lw 2 title 'tangent L(%g) + (w - %g) dL/dw'\n",
                  x, b, t, w, dL_dw, w, loss, w, loss, figure_data_path(&fig, "curve"), w, w);
    lesson_figure_show(&fig, "The loss as a function of w (b fixed) and the tangent whose slope "
                             "is the gradient");

    // %%
    section("5. Walking downhill");
    say("Gradient descent takes a step against the gradient, w := w - lr dL/dw (and the same for "
        "b), recomputes the gradient at the new point and repeats. Owned tensors accumulate "
        "gradients, so they are zeroed after each step; the tape is reset, since its records "
        "belong to the step that made them. Learning rate 1:");
    const double learning_rate = 1.0;
    double losses[21];
    printf("%5s %10s %10s %12s\n", "step", "w", "b", "L");
    for (int step = 0; step <= 20; step++) {
        loss_tensor = neuron_forward(tape, w_param, b_param, x_const, t_const);
        losses[step] = loss_tensor->data[0];
        if (step % 4 == 0)
            printf("%5d %10.6f %10.6f %12.3e\n", step, w_param->data[0], b_param->data[0],
                   losses[step]);
        tape_backward(tape, loss_tensor);
        w_param->data[0] -= learning_rate * w_param->grad[0];
        b_param->data[0] -= learning_rate * b_param->grad[0];
        tensor_zero_grad(w_param);
        tensor_zero_grad(b_param);
        tape_reset(tape);
    }
    double z_final = w_param->data[0] * x + b_param->data[0];
    int rises = 0; /* steps after which the loss went up: the step overshot the valley */
    for (int step = 1; step <= 20; step++) rises += losses[step] > losses[step - 1];
    say("The neuron now answers tanh(%.6f) = %.6f for a target of %.1f. Each step only used the "
        "local slope. A step that is too long overshoots the valley, and the loss rose after %d "
        "of the 20 steps; near the minimum it falls by a factor of about %.2f per step.",
        z_final, tanh(z_final), t, rises, losses[19] / losses[20]);
    lesson_figure_open(&fig, "01-value-and-gradient-descent");
    FILE *steps = figure_data(&fig, "steps");
    for (int step = 0; step <= 20; step++) fprintf(steps, "%d %g\n", step, losses[step]);
    figure_script(&fig,
                  "set title 'Gradient descent on one neuron (learning rate %g)'\n"
                  "set xlabel 'step'\nset ylabel 'loss L (log scale)'\nset logscale y\n"
                  "set format y '10^{%%L}'\nset grid\nset key off\n"
                  "plot '%s' using 1:2 with linespoints pt 7 lw 2\n",
                  learning_rate, figure_data_path(&fig, "steps"));
    lesson_figure_show(&fig, "The loss falls geometrically as gradient descent walks downhill");

    tape_free(tape);
    tensor_free(w_param), tensor_free(b_param), tensor_free(x_const), tensor_free(t_const);
    return 0;
}
