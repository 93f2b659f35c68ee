/* test_layer_fixture.h - the per-test state of the layer suites: a fresh ParamSet, tape and
 * seeded rng. Each suite keeps its own seed, so its setup is one line:
 *     static int setup(void **state) { return layer_fixture_setup(state, 1234); }
 */
#ifndef CPOOL_TEST_LAYER_FIXTURE_H
#define CPOOL_TEST_LAYER_FIXTURE_H

#include <stdlib.h>

#include "params.h"
#include "rng.h"
#include "tape.h"

typedef struct Fixture {
    ParamSet params;
    Tape *tape;
    Rng rng;
} Fixture;

static inline int layer_fixture_setup(void **state, uint64_t seed) {
    Fixture *f = calloc(1, sizeof *f);
    if (!f) return -1;
    f->tape = tape_create();
    rng_seed(&f->rng, seed);
    *state = f;
    return 0;
}

static inline int teardown(void **state) {
    Fixture *f = *state;
    tape_free(f->tape);
    params_free(&f->params);
    free(f);
    return 0;
}

#endif
