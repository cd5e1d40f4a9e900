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
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(WEIGHTS_STAMP): $(STAMP)
	$(BIN)/nnst-hr weights
	touch $(WEIGHTS_STAMP)

weights: $(WEIGHTS_STAMP)

test: $(WEIGHTS_STAMP)
	$(BIN)/python -m pytest -q

demo: $(WEIGHTS_STAMP)
	mkdir -p $(OUT)
	$(BIN)/nnst-hr run samples/content/astronaut.png samples/style/turner_shipwreck-of-the-minotaur_oil.jpg \
		-o $(OUT)/astronaut_turner.png --size 256 --overwrite
	$(BIN)/nnst-hr run samples/guided/louvre_to_house/content.png samples/guided/louvre_to_house/style.png \
		--guide samples/guided/louvre_to_house -o $(OUT)/louvre_guided.png --size 256 --overwrite
	$(BIN)/nnst-hr run samples/content/coffee.png samples/style/cozens_grotto-in-the-campagna_watercolor.jpg \
		-o $(OUT)/coffee_cozens_poster.tif --size 384 --out-size 1536 --overwrite
	@echo "demo results are in $(OUT)/"

bench: $(WEIGHTS_STAMP)
	$(BIN)/python bench/nnst.py
	$(BIN)/python bench/patchsynth.py
	$(BIN)/python bench/poster.py

clean:
	rm -rf $(OUT) $(VENV) *.egg-info
