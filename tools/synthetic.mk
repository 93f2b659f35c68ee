# tools/synthetic.mk - `make synthetic`: the synthetic task whose right support sizes are known
# (docs/synthetic.md). Builds $(BUILD)/cpool, trains a one-block ContextPool model on the task
# (1000 steps, about 10 s of one core) and draws docs/figures/synthetic.png; its gnuplot script
# and data (synthetic.gp, synthetic.*.dat) are kept beside it. Included by the Makefile.
.PHONY: synthetic
synthetic: deps
	@$(MAKE) --no-print-directory $(BUILD)/cpool
	@mkdir -p docs/figures
	$(BUILD)/cpool synth --out docs/figures/synthetic.png
