# Two entry points, both self-contained on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WEIGHTS_STAMP := $(VENV)/.weights
OUT := out

.PHONY: demo test weights bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[test,dask]'
	touch $(STAMP)

$(WEIGHTS_STAMP): $(STAMP)
	$(BIN)/nnst-hr weights
	touch $(WEIGHTS_STAMP)

weights: $(WEIGHTS_STAMP)

test: $(WEIGHTS_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# CPU-friendly sizes and schedules (the paper's 200 + 200 steps take about 10 minutes per
# 256 px image on 2 cores): a guided 256 px result and a 384 -> 1536 px poster.
demo: $(WEIGHTS_STAMP)
	mkdir -p $(OUT)
	$(BIN)/nnst-hr run samples/guided/louvre_to_house/content.png samples/guided/louvre_to_house/style.png \
		--guide samples/guided/louvre_to_house -o $(OUT)/louvre_guided.png --size 256 \
		--steps 60 --split-steps 40 --overwrite
	$(BIN)/nnst-hr run samples/content/coffee.png samples/style/cozens_grotto-in-the-campagna_watercolor.jpg \
		-o $(OUT)/coffee_cozens_poster.tif --size 384 --out-size 1536 --steps 60 --split-steps 40 --overwrite
	@echo "demo results are in $(OUT)/ (each run's intermediate results in $(OUT)/*.run/)"

# in this order: each prints what it measured and its ratio against a baseline of the same run
BENCHES := nnst guided_search synthesis poster png_codec memory experiment scale_out placement \
	time_left workplan_priors plan_time_left

bench: $(WEIGHTS_STAMP)
	for name in $(BENCHES); do $(BIN)/python bench/$$name.py || exit 1; done

clean:
	rm -rf $(OUT) $(VENV) *.egg-info
