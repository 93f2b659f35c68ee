// clang-format off
/* tape_example.c - the worked example of docs/autograd.md: L = sum(exp(x) * x).
 *
 * Build and run from the repository root (after `make BUILD=build-docs`):
 *
 *   cc -std=c11 -D_DEFAULT_SOURCE -Iautograd docs/examples/tape_example.c build-docs/libcpool64.a -lm -lz -fopenmp
 *   ./a.out
 *
 * It records three ops, prints the tape with tape_print(), then walks the tape backward exactly
 * as tape_backward() does (seed dL/dL = 1, records from last to first), printing the gradient
 * every record adds into its inputs. The input x is used twice (by exp and by mul), so its
 * gradient receives two contributions; the last lines compare it with the hand derivation
 * dL/dx_i = (1 + x_i) e^{x_i}. */
// clang-format on

/* libcpool64.a is the float64 build: `real` must be double here too (the Makefile passes
 * -DCPOOL_DOUBLE for it; the one-line command above does not, so say it in the source). */
#define CPOOL_DOUBLE

#include <math.h>
#include <stdio.h>

#include "ops.h"

static void print_values(const char *name, const real *values, long n) {
    printf("    %-8s = [", name);
    for (long i = 0; i < n; i++) printf(i ? ", %.6f" : "%.6f", values[i]);
    printf("]\n");
}

int main(void) {
    Tape *tape = tape_create();
    Tensor *x = tensor_create(1, (int[]){3}, 1); /* owned, requires grad: x->grad is zeros */
    x->data[0] = 0;
    x->data[1] = 1;
    x->data[2] = 2;

    /* Forward: three ops, three records. */
    Tensor *y = op_exp(tape, x);     /* y = e^x           (3)  */
    Tensor *z = op_mul(tape, y, x);  /* z = y * x         (3)  */
    Tensor *L = op_sum_all(tape, z); /* L = sum_i z_i     ()   */

    printf("forward:\n");
    print_values("x", x->data, x->size);
    print_values("y=exp(x)", y->data, y->size);
    print_values("z=y*x", z->data, z->size);
    print_values("L", L->data, L->size);

    printf("\ntape_print:\n");
    tape_print(tape, stdout);

    /* Backward: the loop of tape_backward(), written out to print each step. */
    printf("\nbackward:\n");
    tape_grad(tape, L)[0] = 1; /* the seed dL/dL = 1 */
    print_values("seed dL", L->grad, 1);
    for (int position = tape->n_records - 1; position >= 0; position--) {
        TapeRecord *record = &tape->records[position];
        if (!record->output->grad) continue;
        record->backward(tape, record);
        printf("  after [%d] %s:\n", position, record->op);
        for (int i = 0; i < record->n_inputs; i++) {
            Tensor *input = record->inputs[i];
            print_values(input == x   ? "x.grad"
                         : input == y ? "y.grad"
                                      : "z.grad",
                         input->grad, input->size);
        }
    }

    printf("\nby hand, (1 + x) e^x:\n");
    real expected[3];
    for (int i = 0; i < 3; i++) expected[i] = (1 + x->data[i]) * exp(x->data[i]);
    print_values("expected", expected, 3);

    tape_free(tape);
    tensor_free(x);
    return 0;
}
