/* fuzz_config.c - libFuzzer harness for the config reader (fuzz_readers.c says what it calls).
 * make fuzz-config (tests/fuzz/fuzz.mk); seeds in tests/fuzz/corpus/config/. */
#include "fuzz_main.h"

FUZZ_HARNESS("config")
