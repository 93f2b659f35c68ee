/* fuzz_idx_gz.c - libFuzzer harness for the idx_gz reader (fuzz_readers.c says what it calls).
 * make fuzz-idx_gz (tests/fuzz/fuzz.mk); seeds in tests/fuzz/corpus/idx_gz/. */
#include "fuzz_main.h"

FUZZ_HARNESS("idx_gz")
