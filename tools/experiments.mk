# make experiments: every run behind docs/results.md, then the tables in it.
#
#   make -j2 experiments          all runs, two at a time (each on one thread), then the tables
#   make exp-charlm-cp-L2         one run (its name is the directory under runs/exp/)
#   make results                  just the tables, from whatever runs have finished
#
# A finished run is not repeated (delete its directory to redo it); an interrupted one resumes
# from its checkpoint. The keys of each run are below: the common part, then its own.

EXP_DIR ?= runs/exp

# Char-LM on the KJV text: the same width, context, batch and token budget for every run
# (2000 steps x 16 windows x 128 bytes = 4.1M training tokens).
EXP_CHARLM := model=charlm dim=64 heads=4 seq_len=128 batch=16 steps=2000 warmup=100 lr=2e-3 \
              min_lr=2e-4 eval_every=200 eval_batches=16 checkpoint_every=500
# Fashion-MNIST: 1500 steps x 64 images = 96000 images, 1.7 epochs of the 55000 training ones.
EXP_IMAGE  := batch=64 steps=1500 warmup=100 lr=1e-3 min_lr=1e-4 eval_every=150 \
              eval_batches=20 checkpoint_every=500

EXP_charlm-plain-L2      := $(EXP_CHARLM) pool=none layers=2 seed=1
EXP_charlm-plain-L4      := $(EXP_CHARLM) pool=none layers=4 seed=1
EXP_charlm-plain-L6      := $(EXP_CHARLM) pool=none layers=6 seed=1
EXP_charlm-cp-L1         := $(EXP_CHARLM) pool=contextpool layers=1 seed=1
EXP_charlm-cp-L2         := $(EXP_CHARLM) pool=contextpool layers=2 seed=1
EXP_charlm-cp-L3         := $(EXP_CHARLM) pool=contextpool layers=3 seed=1
EXP_charlm-cp-L2-uniform := $(EXP_CHARLM) pool=contextpool layers=2 seed=1 weights=uniform
EXP_charlm-cp-L2-fixed   := $(EXP_CHARLM) pool=contextpool layers=2 seed=1 size=fixed
EXP_charlm-cp-L2-qkv     := $(EXP_CHARLM) pool=contextpool layers=2 seed=1 pool_feeds=qkv
EXP_charlm-cp-L2-stream  := $(EXP_CHARLM) pool=contextpool layers=2 seed=1 pool_feeds=stream
EXP_charlm-window-L2     := $(EXP_CHARLM) pool=none layers=2 seed=1 window=24
EXP_charlm-span-L2       := $(EXP_CHARLM) pool=none layers=2 seed=1 span=1 span_max=128
EXP_charlm-cp-L2-seed2   := $(EXP_CHARLM) pool=contextpool layers=2 seed=2
EXP_charlm-cp-L2-seed3   := $(EXP_CHARLM) pool=contextpool layers=2 seed=3
EXP_charlm-plain-L4-seed2 := $(EXP_CHARLM) pool=none layers=4 seed=2
EXP_charlm-plain-L4-seed3 := $(EXP_CHARLM) pool=none layers=4 seed=3
EXP_vit-plain            := model=vit $(EXP_IMAGE) pool=none seed=1
EXP_vit-cp               := model=vit $(EXP_IMAGE) pool=contextpool seed=1
EXP_cnn-avg              := model=cnn $(EXP_IMAGE) pool=avg seed=1
EXP_cnn-cp               := model=cnn $(EXP_IMAGE) pool=contextpool seed=1

# The longest runs first, so that two parallel jobs finish close together.
EXP_RUNS := charlm-plain-L6 charlm-cp-L3 charlm-plain-L4 charlm-plain-L4-seed2 \
            charlm-plain-L4-seed3 charlm-cp-L2 charlm-cp-L2-seed2 charlm-cp-L2-seed3 \
            charlm-cp-L2-uniform charlm-cp-L2-fixed charlm-cp-L2-qkv charlm-cp-L2-stream \
            charlm-window-L2 charlm-span-L2 charlm-plain-L2 charlm-cp-L1 \
            vit-cp vit-plain cnn-cp cnn-avg

.PHONY: experiments experiment-runs results $(EXP_RUNS:%=exp-%)
experiments: deps data
	@$(MAKE) --no-print-directory all
	@$(MAKE) --no-print-directory experiment-runs
	@$(MAKE) --no-print-directory results
experiment-runs: $(EXP_RUNS:%=exp-%)
$(EXP_RUNS:%=exp-%): exp-%: $(BUILD)/cpool data/kjv.txt
	@tools/run-experiment.sh $(BUILD)/cpool $(EXP_DIR)/$* $(EXP_$*)
results:
	@tools/results.sh $(EXP_DIR) docs/results.md
