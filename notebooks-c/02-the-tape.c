/* 02-the-tape.c - what the engine records during the forward pass, and the backward walk that
 * turns the record into gradients, printed one step at a time. Float64. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lesson.h"
#include "ops.h"

/* The tensors of this lesson by name, so the walk below can say whose gradient it prints. */
typedef struct Named {
    const Tensor *tensor;
    const char *name;
} Named;

static const char *name_of(const Named *names, int count, const Tensor *t) {
    for (int i = 0; i < count; i++)
        if (names[i].tensor == t) return names[i].name;
    return "?";
}

static Tensor *vector3(double a, double b, double c, int requires_grad) {
    Tensor *t = tensor_create(1, (int[]){3}, requires_grad);
    t->data[0] = a, t->data[1] = b, t->data[2] = c;
    return t;
}

int main(void) {
    lesson_begin("02 The tape");
    say("Lesson 01 called tape_backward and got gradients. Here is what happened in between. "
        "Every op that touches a tensor needing a gradient appends a record to the tape: which "
        "op, its inputs, its output. Backward is a for loop over those records, from the last "
        "to the first, and each record adds its share into its inputs' gradients.");

    // %%
    section("1. Recording");
    say("The function: u = x * w, v = tanh(u), p = v * x, L = sum(p), for vectors x and w of "
        "three elements (elementwise products). x is used twice, by the first and the third op: "
        "that is the case to watch. After each op we print how many records the tape holds.");
    Tape *tape = tape_create();
    Tensor *x = vector3(0.5, -1.0, 2.0, 1), *w = vector3(1.5, 0.5, -0.75, 1);
    Tensor *u = op_mul(tape, x, w);
    printf("u = x * w     records: %d\n", tape->n_records);
    Tensor *v = op_tanh(tape, u);
    printf("v = tanh(u)   records: %d\n", tape->n_records);
    Tensor *p = op_mul(tape, v, x);
    printf("p = v * x     records: %d\n", tape->n_records);
    Tensor *L = op_sum_all(tape, p);
    printf("L = sum(p)    records: %d\n\n", tape->n_records);
    print_vector("x", x->data, 3, 6);
    print_vector("w", w->data, 3, 6);
    print_vector("u", u->data, 3, 6);
    print_vector("v", v->data, 3, 6);
    print_vector("p", p->data, 3, 6);
    print_vector("L", L->data, 1, 6);
    printf("\ntape_print:\n");
    tape_print(tape, stdout);
    say("That list is the whole record of the forward pass. The ops ran in this order, so every "
        "record comes after the records that made its inputs: the list is already in an order "
        "where walking it backward meets every consumer of a tensor before its producer.");

    // %%
    section("2. Walking it backward");
    say("tape_backward seeds dL/dL = 1 and calls each record's backward, last to first. Here is "
        "that loop written out, printing every input gradient after each record has added its "
        "share. tape_grad(tape, t) gives t's gradient buffer (allocated, zeroed, on first use).");
    const Named names[] = {{x, "x"}, {w, "w"}, {u, "u"}, {v, "v"}, {p, "p"}, {L, "L"}};
    const int n_names = (int)(sizeof names / sizeof names[0]);
    real x_grad_direct[3]; /* x's gradient after record [2] alone: the path x -> p */
    tape_grad(tape, L)[0] = 1;
    for (int position = tape->n_records - 1; position >= 0; position--) {
        TapeRecord *record = &tape->records[position];
        if (!record->output->grad) continue; /* nothing reached this output */
        record->backward(tape, record);
        printf("after [%d] %s:\n", position, record->op);
        for (int i = 0; i < record->n_inputs; i++) {
            char label[16];
            snprintf(label, sizeof label, "  d%s", name_of(names, n_names, record->inputs[i]));
            print_vector(label, record->inputs[i]->grad, record->inputs[i]->size, 6);
        }
        if (position == 2) memcpy(x_grad_direct, x->grad, sizeof x_grad_direct);
    }
    say("x's gradient was written twice: record [2] (p = v * x) added dp * v, and record [0] "
        "(u = x * w) later added du * w on top. Each record knows only its own share; the sum is "
        "the chain rule's sum over the two paths from x to L. A backward that assigned instead "
        "of adding would keep only the last path, silently wrong (lesson 03 catches one).");

    // %%
    section("3. Checking by hand");
    say("By the product and chain rules, with v = tanh(x w): dL/dx_i = v_i + x_i (1 - v_i^2) w_i "
        "(the first term from the path through p directly, the second through u) and "
        "dL/dw_i = x_i^2 (1 - v_i^2).");
    real dx_hand[3], dw_hand[3], through_u[3];
    double worst = 0;
    for (int i = 0; i < 3; i++) {
        double vi = tanh(x->data[i] * w->data[i]);
        through_u[i] = x->data[i] * (1 - vi * vi) * w->data[i];
        dx_hand[i] = vi + through_u[i];
        dw_hand[i] = x->data[i] * x->data[i] * (1 - vi * vi);
        worst = fmax(worst, fmax(fabs(dx_hand[i] - x->grad[i]), fabs(dw_hand[i] - w->grad[i])));
    }
    print_vector("dx tape", x->grad, 3, 6);
    print_vector("dx hand", dx_hand, 3, 6);
    print_vector("dw tape", w->grad, 3, 6);
    print_vector("dw hand", dw_hand, 3, 6);
    printf("largest difference: %.1e\n", worst);
    Figure fig;
    lesson_figure_open(&fig, "02-the-tape-paths");
    FILE *bars = figure_data(&fig, "paths");
    for (int i = 0; i < 3; i++)
        fprintf(bars, "x_%d %g %g %g\n", i, x_grad_direct[i], x->grad[i] - x_grad_direct[i],
                x->grad[i]);
    figure_script(&fig,
                  "set title 'dL/dx: two records add their shares into x->grad'\n"
                  "set ylabel 'gradient dL/dx_i'\nset xlabel 'element of x'\n"
                  "set style data histograms\nset style histogram rowstacked\n"
                  "set style fill solid 0.8 border -1\nset boxwidth 0.6\nset grid y\n"
                  "set xzeroaxis lt -1\nset key below\nset offsets 0, 0, 0.2, 0.2\n"
                  "plot '%s' using 2:xtic(1) title 'added by [2] mul (p = v * x): dp * v', "
                  "'' using 3 title 'added by [0] mul (u = x * w): du * w', "
                  "'' using 0:($4 + ($4 > 0 ? 0.08 : -0.08)):(sprintf('total %%.3f', $4)) "
                  "with labels notitle\n",
                  figure_data_path(&fig, "paths"));
    lesson_figure_show(&fig, "x's gradient is the sum of two contributions, one per path");

    // %%
    section("4. tape_backward does exactly this");
    say("Zero the gradients, run the same forward pass on a fresh tape, and call tape_backward: "
        "the gradients are the same numbers, bit for bit.");
    real dx_walk[3], dw_walk[3];
    memcpy(dx_walk, x->grad, sizeof dx_walk);
    memcpy(dw_walk, w->grad, sizeof dw_walk);
    tape_reset(tape);
    tensor_zero_grad(x), tensor_zero_grad(w);
    L = op_sum_all(tape, op_mul(tape, op_tanh(tape, op_mul(tape, x, w)), x));
    tape_backward(tape, L);
    int identical = memcmp(dx_walk, x->grad, sizeof dx_walk) == 0 &&
                    memcmp(dw_walk, w->grad, sizeof dw_walk) == 0;
    printf("gradients identical to the walk above: %s\n", identical ? "yes" : "no");

    // %%
    section("5. What is not recorded");
    say("A record is only needed where a gradient must flow. Ops on tensors that need no "
        "gradient record nothing, and tape->no_grad = 1 (evaluation) records nothing at all. "
        "When only w needs a gradient, every op is still recorded (each depends on w), but "
        "tape_grad gives NULL for x, so no backward computes x's share.");
    Tensor *x_const = vector3(0.5, -1.0, 2.0, 0), *w_const = vector3(1.5, 0.5, -0.75, 0);
    tape_reset(tape);
    op_sum_all(tape, op_mul(tape, op_tanh(tape, op_mul(tape, x_const, w_const)), x_const));
    printf("x, w constants:             records %d\n", tape->n_records);
    tape_reset(tape);
    tape->no_grad = 1;
    op_sum_all(tape, op_mul(tape, op_tanh(tape, op_mul(tape, x, w)), x));
    printf("x, w parameters, no_grad:   records %d\n", tape->n_records);
    tape->no_grad = 0;
    tape_reset(tape);
    op_sum_all(tape, op_mul(tape, op_tanh(tape, op_mul(tape, x_const, w)), x_const));
    printf("only w a parameter:         records %d, tape_grad(x) is %s\n", tape->n_records,
           tape_grad(tape, x_const) ? "a buffer" : "NULL");

    // %%
    section("6. Gradients accumulate; the arena is reset");
    say("Parameters' gradients are never overwritten, only added to. Two backward passes without "
        "zeroing in between leave twice the gradient (which is how micro-batches are summed for "
        "free). Everything else of a step - intermediate tensors, their gradients, the records' "
        "saved values - lives in the tape's arena and is released at once by tape_reset.");
    tape_reset(tape);
    tensor_zero_grad(x), tensor_zero_grad(w);
    for (int pass = 1; pass <= 2; pass++) {
        L = op_sum_all(tape, op_mul(tape, op_tanh(tape, op_mul(tape, x, w)), x));
        tape_backward(tape, L);
        printf("after backward pass %d: dx[0] = %.6f (%.1f x the single-pass value), arena "
               "%zu bytes in use\n",
               pass, x->grad[0], x->grad[0] / dx_walk[0], tape->arena.used_bytes);
        tape_reset(tape);
    }
    printf("after tape_reset: %zu bytes in use, %d records\n", tape->arena.used_bytes,
           tape->n_records);

    tape_free(tape);
    tensor_free(x), tensor_free(w), tensor_free(x_const), tensor_free(w_const);
    return 0;
}
