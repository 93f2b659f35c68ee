# tests/fuzz/fuzz.mk - libFuzzer harnesses for the file readers (included by the Makefile).
#
#   make fuzz                   every harness for FUZZ_SECONDS (default 60) each, one after the
#                               other (make -j2 fuzz: two at a time)
#   make fuzz-npy               one harness: npy safetensors checkpoint idx idx_gz config
#   make fuzz-build             build the harnesses only
#   make fuzz-seeds             regenerate the seed corpus tests/fuzz/corpus/ with the library's
#                               own writers (tests/fuzz/make_corpus.c)
#
# Needs clang with libFuzzer (Debian: clang-14 ships libclang_rt.fuzzer). The library is built
# again, float32, with ASan + UBSan and coverage instrumentation, in $(FUZZ_BUILD)/. Each run grows $(FUZZ_BUILD)/corpus/<reader>/ from the seeds and
# writes crash inputs to $(FUZZ_BUILD)/crashes/<reader>/; a crash input that is fixed becomes a
# regression case in tests/fuzz/regressions/<reader>/ (tests/test_fuzz_regressions.c runs them).

FUZZ_CC      ?= clang
FUZZ_BUILD   ?= $(BUILD)/fuzz
FUZZ_SECONDS ?= 60
FUZZ_READERS := npy safetensors checkpoint idx idx_gz config
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=all
FUZZ_CFLAGS  := -std=c11 -D_DEFAULT_SOURCE -g -O1 -fno-omit-frame-pointer $(WARN) -Wno-pass-failed \
                -fopenmp -Iautograd -Ilayers -Itrain -Itests/fuzz $(FUZZ_SAN)
FUZZ_LIB     := $(FUZZ_BUILD)/libcpool-fuzz.a
FUZZ_OBJ     := $(LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_BUILD)/obj/fuzz_readers.o

# Each harness's largest input, in bytes: a little above its largest seed, so mutations can grow
# a seed but the fuzzer does not spend its time on megabyte files the readers reject by size.
FUZZ_MAX_LEN_npy         := 4096
FUZZ_MAX_LEN_safetensors := 8192
FUZZ_MAX_LEN_checkpoint  := 8192
FUZZ_MAX_LEN_idx         := 4096
FUZZ_MAX_LEN_idx_gz      := 4096
FUZZ_MAX_LEN_config      := 4096

FUZZ_FLAGS = -max_total_time=$(FUZZ_SECONDS) -max_len=$(FUZZ_MAX_LEN_$*) -timeout=10 \
             -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/crashes/$*/

.PHONY: fuzz fuzz-build fuzz-seeds $(FUZZ_READERS:%=fuzz-%)
fuzz: $(FUZZ_READERS:%=fuzz-%)
fuzz-build: $(FUZZ_READERS:%=$(FUZZ_BUILD)/fuzz_%)

$(FUZZ_BUILD)/obj/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  FUZZCC $<")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_BUILD)/obj/fuzz_readers.o: tests/fuzz/fuzz_readers.c tests/fuzz/fuzz_readers.h $(HEADERS)
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
$(FUZZ_LIB): $(FUZZ_OBJ)
	$(Q)rm -f $@ && ar rcs $@ $^
$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz_main.h $(FUZZ_LIB)
	@$(if $(V),,echo "  FUZZLD $@")
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_LIB) -lcjson -lz -lm -fopenmp

$(FUZZ_READERS:%=fuzz-%): fuzz-%: $(FUZZ_BUILD)/fuzz_%
	@mkdir -p $(FUZZ_BUILD)/corpus/$* $(FUZZ_BUILD)/crashes/$*
	$(FUZZ_BUILD)/fuzz_$* $(FUZZ_FLAGS) $(FUZZ_BUILD)/corpus/$* tests/fuzz/corpus/$*

# The seeds: small valid files written by the library itself (npy_save, safetensors_save_params,
# checkpoint_save, run_config_format; IDX files by hand, the library has no IDX writer).
fuzz-seeds: $(LIB32) tests/fuzz/make_corpus.c tests/fuzz/fuzz_readers.c
	@mkdir -p $(BUILD)/fuzz-seeds
	$(Q)$(CC) $(CFLAGS) -Itests/fuzz -o $(BUILD)/fuzz-seeds/make_corpus tests/fuzz/make_corpus.c \
	    tests/fuzz/fuzz_readers.c $(LIB32) $(LDLIBS)
	$(BUILD)/fuzz-seeds/make_corpus tests/fuzz/corpus

# The regression suite includes fuzz_readers.c: rebuild it when the harness code changes.
$(BUILD)/tests32/test_fuzz_regressions $(BUILD)/tests64/test_fuzz_regressions: \
    tests/fuzz/fuzz_readers.c tests/fuzz/fuzz_readers.h
