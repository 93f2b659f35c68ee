/* fuzz_npy.c - libFuzzer harness for the npy reader (fuzz_readers.c says what it calls).
 * make fuzz-npy (tests/fuzz/fuzz.mk); seeds in tests/fuzz/corpus/npy/. */
#include "fuzz_main.h"

FUZZ_HARNESS("npy")
