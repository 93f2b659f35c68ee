/* fuzz_checkpoint.c - libFuzzer harness for the checkpoint reader (fuzz_readers.c says what it
 * calls). make fuzz-checkpoint (tests/fuzz/fuzz.mk); seeds in tests/fuzz/corpus/checkpoint/. */
#include "fuzz_main.h"

FUZZ_HARNESS("checkpoint")
