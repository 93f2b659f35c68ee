/* fuzz_safetensors.c - libFuzzer harness for the safetensors reader (fuzz_readers.c says what it
 * calls). make fuzz-safetensors (tests/fuzz/fuzz.mk); seeds in tests/fuzz/corpus/safetensors/. */
#include "fuzz_main.h"

FUZZ_HARNESS("safetensors")
