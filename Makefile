# contextpool-c build.
#
#   make            build/libcpool.a, build/cpool (float32) and build/cpool64 (float64)
#   make test       build and run every cmocka suite, in float32 and float64
#   make asan       the same suites under -fsanitize=address,undefined (in build-asan/)
#   make valgrind   the float64 suites under valgrind --leak-check=full
#   make valgrind-train  a short training run (train, eval, sample) under valgrind
#   make lint       clang-format check and cppcheck
#   make bench      the performance tables: every `cpool bench` row against PyTorch, matmul
#                   GFLOP/s against OpenBLAS
#   make callgrind  instructions per benchmark char-LM step, counted by callgrind (~10 min)
#   make run        the main job (README's first command): train, sample, figures
#   make experiments  every run behind docs/results.md (tools/experiments.mk)
#   make deps       install the Debian packages the project needs (or say how)
#   make data       data/kjv.txt, the King James Bible as plain text (once)
#
# BUILD=dir puts every artefact in another directory; CC=clang works too.

# Waiting OpenMP threads sleep instead of spinning: on a machine whose cores are busy with other
# work, spinning threads made a 2-thread training step 5-10x slower (docs/models.md, Threads).
export OMP_WAIT_POLICY ?= passive

CC      ?= cc
BUILD   ?= build
OPT     ?= -O3 -march=native
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unknown-pragmas
# -fno-math-errno: nothing here reads errno after a math function, and without it sqrt keeps a
# branch to libm (to set errno) that stops loops from vectorising (train/optim.c).
CFLAGS  := -std=c11 -D_DEFAULT_SOURCE -g $(OPT) $(WARN) -fno-math-errno -fopenmp -Iautograd -Ilayers -Itrain $(EXTRA_CFLAGS)
LDLIBS  := -lcjson -lm -lz -fopenmp $(EXTRA_LDFLAGS)

LIB_SRC   := $(sort $(wildcard autograd/*.c layers/*.c train/*.c))
TOOL_SRC  := $(sort $(wildcard tools/*.c))
TEST_SRC  := $(sort $(wildcard tests/test_*.c))
HEADERS   := $(wildcard autograd/*.h layers/*.h train/*.h tools/*.h tests/*.h)

# Every object exists twice: float32 (obj32/) and float64 (obj64/, -DCPOOL_DOUBLE).
LIB32   := $(BUILD)/libcpool.a
LIB64   := $(BUILD)/libcpool64.a
OBJ32   := $(LIB_SRC:%.c=$(BUILD)/obj32/%.o)
OBJ64   := $(LIB_SRC:%.c=$(BUILD)/obj64/%.o)
TOOL32  := $(TOOL_SRC:%.c=$(BUILD)/obj32/%.o)
TOOL64  := $(TOOL_SRC:%.c=$(BUILD)/obj64/%.o)
TESTS32 := $(TEST_SRC:tests/%.c=$(BUILD)/tests32/%)
TESTS64 := $(TEST_SRC:tests/%.c=$(BUILD)/tests64/%)

# (run-tests is the part of `test` after the package check.)
.PHONY: all test run-tests asan valgrind valgrind-train lint format bench callgrind run deps clean
all: $(LIB32) $(LIB64) $(BUILD)/cpool $(BUILD)/cpool64

# Quiet by default ("CC32 file.c"); `make V=1` shows the full command lines.
Q := $(if $(V),,@)

$(BUILD)/obj32/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC32  $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/obj64/%.o: %.c $(HEADERS)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC64  $<")
	$(Q)$(CC) $(CFLAGS) -DCPOOL_DOUBLE -c $< -o $@

$(LIB32): $(OBJ32)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^
$(LIB64): $(OBJ64)
	@mkdir -p $(dir $@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/cpool: $(TOOL32) $(LIB32)
	@$(if $(V),,echo "  LINK  $@")
	$(Q)$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/cpool64: $(TOOL64) $(LIB64)
	@$(if $(V),,echo "  LINK  $@")
	$(Q)$(CC) $(CFLAGS) -DCPOOL_DOUBLE -o $@ $^ $(LDLIBS)

# Test programs may #include a tools/*.c file to test a command's core, hence $(TOOL_SRC).
$(BUILD)/tests32/%: tests/%.c $(LIB32) $(HEADERS) $(TOOL_SRC)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  TEST  $@")
	$(Q)$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB32) -lcmocka $(LDLIBS)
$(BUILD)/tests64/%: tests/%.c $(LIB64) $(HEADERS) $(TOOL_SRC)
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  TEST  $@")
	$(Q)$(CC) $(CFLAGS) -DCPOOL_DOUBLE -Itests -o $@ $< $(LIB64) -lcmocka $(LDLIBS)

# Targets that need the Debian packages check for them first, then build (deps must finish
# before any compiler runs, so the work is a second make invocation).
test: deps
	@$(MAKE) --no-print-directory run-tests
run-tests: all $(TESTS32) $(TESTS64)
	@tools/run-tests.sh $(TESTS32) $(TESTS64)

# Sanitizers: a separate build directory, no -march tuning needed, frame pointers for traces.
asan: deps
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
	    EXTRA_LDFLAGS="-fsanitize=address,undefined" run-tests

# Valgrind does not know AVX-512, so this is a separate build without -march=native; one
# OpenMP thread, so the thread pool's stacks are not reported as "possibly lost".
valgrind: deps
	@$(MAKE) --no-print-directory BUILD=build-valgrind OPT="-O1" build-valgrind/libcpool64.a \
	    $(TEST_SRC:tests/%.c=build-valgrind/tests64/%)
	@OMP_NUM_THREADS=1 RUNNER="valgrind --quiet --suppressions=tools/valgrind.supp --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=99" \
	    tools/run-tests.sh $(TEST_SRC:tests/%.c=build-valgrind/tests64/%)

# A short training run, evaluation and sampling through the float32 command, under valgrind.
valgrind-train: deps
	@$(MAKE) --no-print-directory BUILD=build-valgrind OPT="-O1" build-valgrind/cpool
	@tools/valgrind-train.sh build-valgrind

FORMAT_FILES := $(wildcard autograd/*.[ch] layers/*.[ch] train/*.[ch] tools/*.[ch] tests/*.[ch] bench/*.[ch] notebooks-c/*.[ch])
lint:
	clang-format --dry-run -Werror $(FORMAT_FILES)
	cppcheck --quiet --error-exitcode=1 --library=tools/cppcheck.cfg --enable=warning,performance,portability --std=c11 \
	    --inline-suppr --suppress=missingIncludeSystem -Iautograd -Ilayers -Itrain autograd layers train tools
	@# errors, not aborts (util.h): no exit() or abort() in the library (comment lines aside) but
	@# util.c's marked one
	@if grep -nE '(^|[^_a-zA-Z0-9])(exit|abort)\(' autograd/*.c layers/*.c train/*.c \
	    | grep -vE '^[^:]*:[0-9]*: *(\*|/\*|//)' \
	    | grep -v '^autograd/util.c:[0-9]*: *abort(); /\* lint: the library.s one abort' | grep .; \
	then echo "lint: exit() or abort() inside the library (see util.h)"; exit 1; fi
format:
	clang-format -i $(FORMAT_FILES)

# make bench: every `cpool bench` row (one thread) beside the same work in PyTorch (--torch:
# bench/torch_bench.py; n/a without torch), then bench/'s matmul table against OpenBLAS and the
# CPU's FMA peak. The first lines name the machine and its load. A few minutes on 2 cores.
BENCH_REPEATS ?= 5
bench: deps
	@$(MAKE) --no-print-directory $(BUILD)/cpool
	$(BUILD)/cpool bench --torch --repeats $(BENCH_REPEATS)
	@$(MAKE) --no-print-directory -C bench BUILD=../$(BUILD)

# Instructions per run of a bench row (CALLGRIND_ROW, default the benchmark char-LM step) under
# callgrind, with a cpool built for AVX2 (valgrind does not know AVX-512): bench/callgrind-step.sh.
CALLGRIND_ROW ?= charlm_step_cp
callgrind: deps
	@$(MAKE) --no-print-directory BUILD=build-callgrind OPT="-O3 -march=x86-64-v3" build-callgrind/cpool
	@bench/callgrind-step.sh build-callgrind $(CALLGRIND_ROW)

# The main job: train a small ContextPool char-LM on the KJV text (about 5 minutes on two cores),
# print its held-out bpc and a sample, and draw its figures into runs/main/.
MAIN_RUN  := runs/main
MAIN_KEYS := model=charlm dim=64 heads=4 layers=2 seq_len=128 batch=16 steps=4000 warmup=100 \
             lr=2e-3 min_lr=2e-4 eval_every=500 eval_batches=16 pool=contextpool seed=1
MAIN_CKPT := $(MAIN_RUN)/checkpoint.safetensors
run: deps data
	@$(MAKE) --no-print-directory all
	$(BUILD)/cpool train $(MAIN_KEYS) --force --out $(MAIN_RUN)
	$(BUILD)/cpool sample --ckpt $(MAIN_CKPT) --prompt "And God said" --length 300
	@echo "figures (drawn by cpool train): $(MAIN_RUN)/support.png weights.png hist.png curves.png"

deps:
	@tools/deps.sh

clean:
	rm -rf $(BUILD) build-asan build-valgrind

# make data: data/kjv.txt, the King James Bible as plain text (one verse per line, 4.1 MB), made
# once from Debian's bible-kjv if absent. `bible -f` turns pretty-printing off, so each verse is
# one line "Ge1:1 In the beginning God created ..."; sed strips that reference (book, chapter,
# colon, verse, one space). Every line must carry one, there must be 31102 verses, and the file
# appears only when complete (temp file, then rename). See docs/training.md.
KJV_REFERENCE := ^[1-3]?[A-Z][A-Za-z]*[0-9]+:[0-9]+
.PHONY: data
data: deps
	@$(MAKE) --no-print-directory data/kjv.txt
data/kjv.txt:
	@mkdir -p data
	@echo "  BIBLE $@"
	$(Q)bible -f "gen1:1-rev22:21" > $@.raw.tmp || { rm -f $@.raw.tmp; exit 1; }
	$(Q)verses=$$(wc -l < $@.raw.tmp); unmatched=$$(grep -c -v -E '$(KJV_REFERENCE) ' $@.raw.tmp); \
	if [ "$$verses" != 31102 ] || [ "$$unmatched" != 0 ]; then \
	    echo "data: bible printed $$verses lines ($$unmatched without a verse reference), expected 31102 verses" >&2; \
	    rm -f $@.raw.tmp; exit 1; fi
	$(Q)sed -E 's/$(KJV_REFERENCE) //' $@.raw.tmp > $@.tmp && rm -f $@.raw.tmp && mv $@.tmp $@ \
	    || { rm -f $@.raw.tmp $@.tmp; exit 1; }
	@echo "  data/kjv.txt: $$(wc -c < $@) bytes, $$(wc -l < $@) verses"

# Targets of their own rooms: notebooks (notebooks-c/notebooks.mk), the synthetic task
# (tools/synthetic.mk), the experiments (tools/experiments.mk), the fuzzers (tests/fuzz/fuzz.mk).
-include notebooks-c/notebooks.mk tools/synthetic.mk tools/experiments.mk tests/fuzz/fuzz.mk
