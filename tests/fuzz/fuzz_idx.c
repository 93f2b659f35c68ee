/* fuzz_idx.c - libFuzzer harness for the idx reader (fuzz_readers.c says what it calls).
 * make fuzz-idx (tests/fuzz/fuzz.mk); seeds in tests/fuzz/corpus/idx/. */
#include "fuzz_main.h"

FUZZ_HARNESS("idx")
