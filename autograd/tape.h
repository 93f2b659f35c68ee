/* tape.h - the tape (a Wengert list) that records ops and walks them backward.
 *
 * Every op applied to a tensor that needs a gradient appends one TapeRecord: which op, its
 * inputs, its output, and whatever it saved for the backward pass. Because ops run in order, the
 * tape is already topologically sorted; backward is a for loop from the last record to the first,
 * and each record's backward *adds* into its inputs' gradients (an input used twice receives both
 * contributions). No recursion, no graph search.
 *
 * Intermediate tensors, gradients of intermediates, saved values and the inputs lists all live in
 * the tape's arena, released at once by tape_reset() at the end of a step.
 *
 * With tape->release_grads = 1 (what training sets), backward also hands each intermediate's
 * gradient back as soon as the record that made the tensor has run its backward: every
 * contribution to it came from later records, which ran before, so nothing reads it again. The
 * next gradient of the same size reuses the buffer, still warm in the cache, so at most the
 * live gradients (a few MB) are in memory at once instead of one per intermediate (docs/memory.md).
 * A caller that reads intermediate gradients after backward (gradient checks, the layer lab,
 * tests) leaves it 0, the default.
 *
 *     Tape *tape = tape_create();
 *     Tensor *w = tensor_create(1, (int[]){3}, 1);          // a parameter: owned, has a grad
 *     for (int step = 0; step < 100; step++) {
 *         Tensor *loss = op_sum_all(tape, op_mul(tape, w, w));  // loss = sum w^2
 *         tape_backward(tape, loss);                         // w->grad += 2 w
 *         ... update w from w->grad, then tensor_zero_grad(w) ...
 *         tape_reset(tape);                                  // loss and the record are gone
 *     }
 *     tape_free(tape);
 *
 * Modes: tape->no_grad = 1 records nothing (evaluation); tape->anomaly = 1 checks every forward
 * output and every gradient produced in backward for NaN/Inf and fails (cpool_fail) at the first
 * one with one line naming the op, its position on the tape, its input and output shapes, and
 * the element:
 *
 *     anomaly: op 'log' at tape position 0 (input 'w' (2); output (2)) produced NaN in its
 *     forward output at element 1
 *
 * Inputs are named when tape->tensor_name is set (a trainer names its parameters this way).
 */
#ifndef CPOOL_TAPE_H
#define CPOOL_TAPE_H

#include "arena.h"
#include "tensor.h"

typedef struct Tape Tape;
typedef struct TapeRecord TapeRecord;

/* An op's backward: read record->output->grad, add into each input's gradient (tape_grad). */
typedef void (*BackwardFn)(Tape *tape, TapeRecord *record);

struct TapeRecord {
    const char *op; /* the op's name, e.g. "matmul" */
    BackwardFn backward;
    int n_inputs;
    Tensor **inputs; /* n_inputs pointers, in the arena */
    Tensor *output;
    void *saved; /* op-specific values kept for backward (tape_save), or NULL */
};

struct Tape {
    Arena arena;         /* everything that lives for one step */
    TapeRecord *records; /* records[0..n_records-1] in forward order (malloc'd, kept on reset) */
    int n_records;
    int capacity;
    int no_grad; /* 1: ops record nothing and outputs do not require grad */
    /* 1: backward releases each record's output gradient after the record's backward (above);
     * the tensor's grad is NULL afterwards. */
    int release_grads;
    struct FreeGrad *free_grads; /* released gradient buffers, newest first (in the arena) */
    int anomaly;                 /* 1: check every forward and backward output for NaN/Inf */
    /* Anomaly messages name an input as tensor_name(input, tensor_name_user) says ("fc.weight"
     * for a parameter), or by its shape alone when this is NULL or returns NULL. */
    const char *(*tensor_name)(const Tensor *t, void *user);
    void *tensor_name_user;
    /* 1 once anomaly mode has found a NaN/Inf (set just before its cpool_fail, so a caller that
     * catches the failure can tell it from other errors); tape_reset clears it. */
    int anomaly_found;
};

Tape *tape_create(void);
void tape_free(Tape *tape);
void tape_reset(Tape *tape); /* forget all records, release the arena, clear anomaly_found */

/* A new intermediate tensor in the arena: data uninitialised (tape_tensor) or zeroed. */
Tensor *tape_tensor(Tape *tape, int ndim, const int *shape);
Tensor *tape_tensor_zeros(Tape *tape, int ndim, const int *shape);
/* Arena memory for an op's saved values; zeroed. Lives until tape_reset. */
void *tape_save(Tape *tape, size_t bytes);

/* Called by every op after computing `output` from `inputs`. If recording (not no_grad) and some
 * input requires grad, appends a record and marks the output as requiring grad; returns the
 * record (so the op can attach saved values) or NULL when nothing was recorded. In anomaly mode it
 * checks the output for NaN/Inf either way (the position named is then tape->n_records, the one
 * the record gets or would get). */
TapeRecord *tape_record(Tape *tape, const char *op, BackwardFn backward, Tensor *output,
                        int n_inputs, Tensor *const *inputs);

/* The gradient buffer of t, allocated (zeroed, in the arena) on first use; NULL when t does not
 * require grad, so a backward can skip inputs that need nothing. */
real *tape_grad(Tape *tape, Tensor *t);
/* The same buffer for a backward that produces its whole contribution to t (all t->size
 * elements) in one pass: on first use it is allocated WITHOUT zeroing and *overwrite = 1 (the
 * caller must store, =, every element); later *overwrite = 0 (other contributions are there:
 * add, +=). It saves zeroing a buffer only to add into it once. NULL (*overwrite = 0) when t
 * does not require grad. */
real *tape_grad_write(Tape *tape, Tensor *t, int *overwrite);

/* Backward from a scalar loss: seeds d(loss)/d(loss) = 1 and walks the records in reverse. In
 * anomaly mode, after each record's backward, every input gradient it added to is checked: the op
 * named is the first (in backward order) whose contribution made a gradient non-finite. */
void tape_backward(Tape *tape, Tensor *loss);
/* Backward from any output with a given upstream gradient `seed` (output->size values): the
 * vector-Jacobian product used by the gradient checker and the layer lab. */
void tape_backward_from(Tape *tape, Tensor *output, const real *seed);

/* One line per record: position, op, input shapes -> output shape. */
void tape_print(const Tape *tape, FILE *out);

#endif
