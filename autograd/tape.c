/* tape.c - see tape.h. */
#include "tape.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

Tape *tape_create(void) {
    return xcalloc(1, sizeof(Tape));
}

void tape_free(Tape *tape) {
    if (!tape) return;
    arena_free(&tape->arena);
    free(tape->records);
    free(tape);
}

void tape_reset(Tape *tape) {
    tape->n_records = 0;
    arena_reset(&tape->arena);
}

Tensor *tape_tensor(Tape *tape, int ndim, const int *shape) {
    long size = shape_size(ndim, shape);
    Tensor *t = arena_calloc(&tape->arena, sizeof *t);
    t->ndim = ndim;
    for (int d = 0; d < TENSOR_MAX_DIMS; d++) t->shape[d] = d < ndim ? shape[d] : 1;
    t->size = size;
    t->data = arena_alloc(&tape->arena, (size_t)size * sizeof(real));
    return t;
}

Tensor *tape_tensor_zeros(Tape *tape, int ndim, const int *shape) {
    Tensor *t = tape_tensor(tape, ndim, shape);
    memset(t->data, 0, (size_t)t->size * sizeof(real));
    return t;
}

void *tape_save(Tape *tape, size_t bytes) {
    return arena_calloc(&tape->arena, bytes);
}

real *tape_grad(Tape *tape, Tensor *t) {
    if (!t->requires_grad) return NULL;
    if (!t->grad) t->grad = arena_calloc(&tape->arena, (size_t)t->size * sizeof(real));
    return t->grad;
}

/* Index of the first non-finite value, or -1. */
static long first_non_finite(const real *values, long n) {
    for (long i = 0; i < n; i++)
        if (!isfinite(values[i])) return i;
    return -1;
}

static void check_finite(const char *op, int position, const char *what, const real *values,
                         long n) {
    long bad = first_non_finite(values, n);
    if (bad >= 0)
        cpool_fail("anomaly: op '%s' at tape position %d produced %s in its %s at element %ld", op,
                   position, isnan(values[bad]) ? "NaN" : "Inf", what, bad);
}

TapeRecord *tape_record(Tape *tape, const char *op, BackwardFn backward, Tensor *output,
                        int n_inputs, Tensor *const *inputs) {
    if (tape->anomaly)
        check_finite(op, tape->n_records, "forward output", output->data, output->size);
    int needs_grad = 0;
    for (int i = 0; i < n_inputs; i++) needs_grad |= inputs[i]->requires_grad;
    if (tape->no_grad || !needs_grad) return NULL;

    if (tape->n_records == tape->capacity) {
        tape->capacity = tape->capacity ? 2 * tape->capacity : 256;
        tape->records = xrealloc(tape->records, (size_t)tape->capacity * sizeof(TapeRecord));
    }
    TapeRecord *record = &tape->records[tape->n_records++];
    record->op = op;
    record->backward = backward;
    record->n_inputs = n_inputs;
    record->inputs = arena_alloc(&tape->arena, (size_t)n_inputs * sizeof(Tensor *));
    memcpy(record->inputs, inputs, (size_t)n_inputs * sizeof(Tensor *));
    record->output = output;
    record->saved = NULL;
    output->requires_grad = 1;
    return record;
}

void tape_backward_from(Tape *tape, Tensor *output, const real *seed) {
    real *d_output = tape_grad(tape, output);
    if (!d_output)
        cpool_fail("tape_backward: the output does not depend on anything that requires grad");
    for (long i = 0; i < output->size; i++) d_output[i] += seed[i];

    for (int position = tape->n_records - 1; position >= 0; position--) {
        TapeRecord *record = &tape->records[position];
        if (!record->output->grad) continue; /* no gradient flowed into this record */
        record->backward(tape, record);
        if (!tape->anomaly) continue;
        for (int i = 0; i < record->n_inputs; i++) {
            Tensor *input = record->inputs[i];
            if (input->grad)
                check_finite(record->op, position, "input gradient", input->grad, input->size);
        }
    }
}

void tape_backward(Tape *tape, Tensor *loss) {
    if (loss->size != 1) {
        char shape[64];
        cpool_fail("tape_backward: the loss must have one element, got shape %s",
                   TENSOR_SHAPE_STR(loss, shape));
    }
    const real one = 1;
    tape_backward_from(tape, loss, &one);
}

void tape_print(const Tape *tape, FILE *out) {
    for (int position = 0; position < tape->n_records; position++) {
        const TapeRecord *record = &tape->records[position];
        char shape[64];
        fprintf(out, "[%3d] %-14s", position, record->op);
        for (int i = 0; i < record->n_inputs; i++)
            fprintf(out, "%s%s", i ? ", " : " ", TENSOR_SHAPE_STR(record->inputs[i], shape));
        fprintf(out, " -> %s\n", TENSOR_SHAPE_STR(record->output, shape));
    }
}
