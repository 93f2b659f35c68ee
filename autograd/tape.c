/* tape.c - see tape.h. */
#include "tape.h"

#include <math.h>
#include <stdarg.h>
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
    tape->free_grads = NULL;
    tape->anomaly_found = 0;
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

/* ---- Gradient buffers -------------------------------------------------------------------
 * A released buffer keeps its size and the next one in its first bytes: every arena block holds
 * at least ARENA_ALIGN = 64 bytes, room for both. */
typedef struct FreeGrad {
    struct FreeGrad *next;
    size_t bytes;
} FreeGrad;

/* An uninitialised buffer for a gradient of n reals: the newest released one of exactly that
 * size (the most likely to be in the cache; gradients come in a few sizes, so an exact match is
 * the common case), or new arena memory. */
static real *grad_buffer(Tape *tape, long n) {
    size_t bytes = (size_t)n * sizeof(real);
    for (FreeGrad **link = &tape->free_grads; *link; link = &(*link)->next)
        if ((*link)->bytes == bytes) {
            FreeGrad *found = *link;
            *link = found->next;
            return (real *)found;
        }
    return arena_alloc(&tape->arena, bytes);
}

/* After `record`'s backward: its output's gradient is dead. A backward may have handed the
 * buffer itself on to an input as that input's gradient (op_add does, instead of copying it):
 * then the input owns it now, and releases it after its own record's backward. */
static void release_grad(Tape *tape, const TapeRecord *record) {
    Tensor *t = record->output;
    for (int i = 0; i < record->n_inputs; i++)
        if (record->inputs[i]->grad == t->grad) {
            t->grad = NULL;
            return;
        }
    FreeGrad *freed = (FreeGrad *)t->grad;
    *freed = (FreeGrad){.next = tape->free_grads, .bytes = (size_t)t->size * sizeof(real)};
    tape->free_grads = freed;
    t->grad = NULL;
}

real *tape_grad(Tape *tape, Tensor *t) {
    if (!t->requires_grad) return NULL;
    if (!t->grad) {
        t->grad = grad_buffer(tape, t->size);
        memset(t->grad, 0, (size_t)t->size * sizeof(real));
    }
    return t->grad;
}

real *tape_grad_write(Tape *tape, Tensor *t, int *overwrite) {
    *overwrite = t->requires_grad && !t->grad;
    if (*overwrite) t->grad = grad_buffer(tape, t->size);
    return t->requires_grad ? t->grad : NULL;
}

/* ---- Anomaly mode ------------------------------------------------------------------------ */

/* Index of the first non-finite value, or -1. x - x is 0 for every finite x and NaN for NaN
 * and +-Inf, so one vectorised pass with no branch decides (IEEE arithmetic: the compiler may
 * not fold x - x to 0 without -ffast-math), and only a bad buffer is scanned for the index. */
static long first_non_finite(const real *values, long n) {
    real sum = 0;
#pragma omp simd reduction(+ : sum)
    for (long i = 0; i < n; i++) sum += values[i] - values[i];
    if (sum == 0) return -1;
    for (long i = 0; i < n; i++)
        if (!isfinite(values[i])) return i;
    return -1;
}

/* Appends printf-style text at out[*used], never past out_len (a long message is cut). */
__attribute__((format(printf, 4, 5))) static void append(char *out, size_t out_len, size_t *used,
                                                         const char *format, ...) {
    if (*used >= out_len) return;
    va_list args;
    va_start(args, format);
    int n = vsnprintf(out + *used, out_len - *used, format, args);
    va_end(args);
    if (n > 0) *used += (size_t)n;
}

/* The name the tape's namer gives t ("fc.weight"), or NULL. */
static const char *input_name(const Tape *tape, const Tensor *t) {
    return tape->tensor_name ? tape->tensor_name(t, tape->tensor_name_user) : NULL;
}

/* The op's signature: "input (2, 3)" or "inputs (2, 3), 'fc.weight' (4, 3)", then "; output
 * (2, 4)" - the shapes a reader needs to find the op in the model. */
static void describe_op(const Tape *tape, int n_inputs, Tensor *const *inputs, const Tensor *output,
                        char *out, size_t out_len, size_t *used) {
    char shape[64];
    append(out, out_len, used, "%s", n_inputs == 1 ? "input" : "inputs");
    for (int i = 0; i < n_inputs; i++) {
        const char *name = input_name(tape, inputs[i]);
        append(out, out_len, used, "%s", i ? ", " : " ");
        if (name) append(out, out_len, used, "'%s' ", name);
        append(out, out_len, used, "%s", TENSOR_SHAPE_STR(inputs[i], shape));
    }
    append(out, out_len, used, "; output %s", TENSOR_SHAPE_STR(output, shape));
}

/* "element 7", plus its index "[1, 3]" when t has more than one axis. */
static void describe_element(const Tensor *t, long element, char *out, size_t out_len,
                             size_t *used) {
    append(out, out_len, used, "element %ld", element);
    if (t->ndim < 2) return;
    int index[TENSOR_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) { /* row-major: the last axis varies fastest */
        index[d] = (int)(element % t->shape[d]);
        element /= t->shape[d];
    }
    append(out, out_len, used, " (index [");
    for (int d = 0; d < t->ndim; d++) append(out, out_len, used, "%s%d", d ? ", " : "", index[d]);
    append(out, out_len, used, "])");
}

static const char *non_finite_name(real value) {
    return isnan(value) ? "NaN" : value > 0 ? "Inf" : "-Inf";
}

/* The one line of an anomaly, then cpool_fail. bad_input < 0: the op's forward output held the
 * value; else the gradient of inputs[bad_input] did, after the op's backward. */
static _Noreturn void anomaly_fail(Tape *tape, const char *op, int position, int n_inputs,
                                   Tensor *const *inputs, const Tensor *output, int bad_input,
                                   long element) {
    const Tensor *holder = bad_input < 0 ? output : inputs[bad_input];
    const real *values = bad_input < 0 ? output->data : holder->grad;
    char message[900];
    size_t used = 0;
    append(message, sizeof message, &used, "anomaly: op '%s' at tape position %d (", op, position);
    describe_op(tape, n_inputs, inputs, output, message, sizeof message, &used);
    append(message, sizeof message, &used, ") produced %s ", non_finite_name(values[element]));
    if (bad_input < 0)
        append(message, sizeof message, &used, "in its forward output at ");
    else {
        const char *name = input_name(tape, holder);
        append(message, sizeof message, &used, "in backward, in the gradient of its input %d",
               bad_input);
        if (name) append(message, sizeof message, &used, " '%s'", name);
        append(message, sizeof message, &used, ", at ");
    }
    describe_element(holder, element, message, sizeof message, &used);
    tape->anomaly_found = 1;
    cpool_fail("%s", message);
}

/* Forward: the output of the op about to be recorded at tape->n_records. */
static void check_forward(Tape *tape, const char *op, const Tensor *output, int n_inputs,
                          Tensor *const *inputs) {
    long bad = first_non_finite(output->data, output->size);
    if (bad >= 0) anomaly_fail(tape, op, tape->n_records, n_inputs, inputs, output, -1, bad);
}

/* Backward: every input gradient of the record at `position`, just after its backward ran. */
static void check_backward(Tape *tape, const TapeRecord *record, int position) {
    for (int i = 0; i < record->n_inputs; i++) {
        const Tensor *input = record->inputs[i];
        long bad = input->grad ? first_non_finite(input->grad, input->size) : -1;
        if (bad >= 0)
            anomaly_fail(tape, record->op, position, record->n_inputs, record->inputs,
                         record->output, i, bad);
    }
}

/* ---- Recording and the backward walk ------------------------------------------------------ */

TapeRecord *tape_record(Tape *tape, const char *op, BackwardFn backward, Tensor *output,
                        int n_inputs, Tensor *const *inputs) {
    if (tape->anomaly) check_forward(tape, op, output, n_inputs, inputs);
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
        if (tape->anomaly) check_backward(tape, record, position);
        if (tape->release_grads) release_grad(tape, record);
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
