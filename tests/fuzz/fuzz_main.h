/* fuzz_main.h - the body of every libFuzzer harness: FUZZ_HARNESS("npy") in fuzz_npy.c defines
 * LLVMFuzzerTestOneInput for that reader of fuzz_readers.c. An input that makes the reader call
 * cpool_fail(), refuse without a one-line message or (config) change across format + parse is
 * a finding: the harness prints why and aborts, so libFuzzer saves the input as a crash. */
#ifndef CPOOL_FUZZ_MAIN_H
#define CPOOL_FUZZ_MAIN_H

#include <stdio.h>
#include <stdlib.h>

#include "fuzz_readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_HARNESS(reader_name)                                                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {                                 \
        static const FuzzReader *reader;                                                           \
        if (!reader) reader = fuzz_reader_find(reader_name);                                       \
        char err[1024];                                                                            \
        if (fuzz_run_input(reader, data, size, err, sizeof err) >= FUZZ_CPOOL_FAIL) {              \
            fprintf(stderr, "fuzz_%s finding: %s\n", reader_name, err);                            \
            abort();                                                                               \
        }                                                                                          \
        return 0;                                                                                  \
    }

#endif
