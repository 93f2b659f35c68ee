# notebooks-c/notebooks.mk - the lessons (included by the Makefile).
#
#   make notebooks       build every lesson, run it, render docs/notebooks/NN-name.md
#   make notebook-05     the same for one lesson (always reruns it)
#
# A lesson notebooks-c/NN-name.c becomes $(BUILD)/notebooks/NN-name, linked with the lesson
# helpers (notebooks-c/lesson.c), the figure writer (tools/gnuplot.c) and the library. Lessons
# that train or time things use float32 (libcpool.a), the others float64 (libcpool64.a), so that
# their numbers agree to the last printed digit. render.sh runs the program and writes the page;
# the lesson writes its figures next to it, docs/notebooks/NN-name-*.png.

NB_NAMES   := $(sort $(basename $(notdir $(wildcard notebooks-c/[0-9][0-9]-*.c))))
NB_FLOAT32 := $(filter 06-% 07-% 08-%,$(NB_NAMES))
NB_FLOAT64 := $(filter-out $(NB_FLOAT32),$(NB_NAMES))
NB_BIN32   := $(NB_FLOAT32:%=$(BUILD)/notebooks/%)
NB_BIN64   := $(NB_FLOAT64:%=$(BUILD)/notebooks/%)
NB_PAGES   := $(NB_NAMES:%=docs/notebooks/%.md)
NB_CFLAGS  := $(CFLAGS) -Inotebooks-c -Itools
NB_HELPERS := notebooks-c/lesson.h tools/gnuplot.h

.PHONY: notebooks run-notebooks
notebooks: deps
	@$(MAKE) --no-print-directory run-notebooks
run-notebooks: $(NB_PAGES)

$(BUILD)/notebooks/lesson32.o: notebooks-c/lesson.c $(NB_HELPERS) $(HEADERS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(NB_CFLAGS) -c $< -o $@
$(BUILD)/notebooks/lesson64.o: notebooks-c/lesson.c $(NB_HELPERS) $(HEADERS)
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(NB_CFLAGS) -DCPOOL_DOUBLE -c $< -o $@

$(NB_BIN32): $(BUILD)/notebooks/%: notebooks-c/%.c $(BUILD)/notebooks/lesson32.o \
                                   $(BUILD)/obj32/tools/gnuplot.o $(LIB32) $(NB_HELPERS) $(HEADERS)
	@$(if $(V),,echo "  NB32  $<")
	$(Q)$(CC) $(NB_CFLAGS) -o $@ $< $(BUILD)/notebooks/lesson32.o $(BUILD)/obj32/tools/gnuplot.o \
	    $(LIB32) $(LDLIBS)
$(NB_BIN64): $(BUILD)/notebooks/%: notebooks-c/%.c $(BUILD)/notebooks/lesson64.o \
                                   $(BUILD)/obj64/tools/gnuplot.o $(LIB64) $(NB_HELPERS) $(HEADERS)
	@$(if $(V),,echo "  NB64  $<")
	$(Q)$(CC) $(NB_CFLAGS) -DCPOOL_DOUBLE -o $@ $< $(BUILD)/notebooks/lesson64.o \
	    $(BUILD)/obj64/tools/gnuplot.o $(LIB64) $(LDLIBS)

docs/notebooks/%.md: $(BUILD)/notebooks/% notebooks-c/%.c notebooks-c/render.sh
	$(Q)notebooks-c/render.sh $(BUILD)/notebooks/$* notebooks-c/$*.c $@

# The char-LM lesson reads the King James Bible (`make data`).
$(filter docs/notebooks/06-%,$(NB_PAGES)): data/kjv.txt

# One lesson by its number (or any prefix of its name): build it, run it, render it.
notebook-%: deps
	@pages="$(filter docs/notebooks/$*%,$(NB_PAGES))"; \
	if [ -z "$$pages" ]; then echo "notebook-$*: no lesson notebooks-c/$**.c" >&2; exit 2; fi; \
	$(MAKE) --no-print-directory $(patsubst docs/notebooks/%.md,$(BUILD)/notebooks/%,$(filter docs/notebooks/$*%,$(NB_PAGES))) && \
	for page in $$pages; do \
	    lesson=$$(basename $$page .md); \
	    notebooks-c/render.sh $(BUILD)/notebooks/$$lesson notebooks-c/$$lesson.c $$page || exit 1; \
	done
