# resvae_keras: make demo | test | lab | figures | bench | report | gpu-check
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROFILE ?= demo
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
export TF_CPP_MIN_LOG_LEVEL ?= 2
export MPLBACKEND ?= Agg

.PHONY: venv demo test lint lab figures bench report gpu-check clean

# $(call run_notebooks,PROFILE,NBCONVERT_OUTPUT_FLAGS): execute every notebook in order, headless,
# with inline figures (the notebooks also save them under figures/).
define run_notebooks
	@for nb in $(NOTEBOOKS); do \
	  echo "== $$nb ($(1))"; \
	  RESVAE_PROFILE=$(1) MPLBACKEND=module://matplotlib_inline.backend_inline \
	    $(BIN)/jupyter nbconvert --to notebook --execute $(2) \
	    --ExecutePreprocessor.timeout=-1 $$nb || exit 1; \
	done
endef

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

# The main job on the embedded demo faces: data, training, evaluation and every notebook.
# The executed copies go to runs/demo/notebooks/, so the committed notebooks keep their
# celeba-subset outputs.
demo: $(STAMP)
	@mkdir -p runs/demo/notebooks
	$(call run_notebooks,demo,--output-dir runs/demo/notebooks)
	@echo "demo outputs: runs/demo/notebooks/ (executed notebooks), figures/demo/ (figures),"
	@echo "              runs/demo/ (model.keras, history.csv, grids/), data/demo/ and data/cache/demo/ (data)"

# nbval collects notebooks/ recursively: the seven notebooks, then notebooks/solutions/.
test: $(STAMP)
	RESVAE_PROFILE=demo $(BIN)/python -m pytest -q tests
	RESVAE_PROFILE=demo $(BIN)/python -m pytest -q --nbval-lax --nbval-current-env -p no:cacheprovider notebooks

lint: $(STAMP)
	$(BIN)/ruff check resvae_keras tests notebooks

# Jupyter refuses to start as root without --allow-root (containers, Colab-like machines).
lab: $(STAMP)
	$(BIN)/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks

# Executes every notebook in order, headless, in place; their figures land in figures/.
figures: $(STAMP)
	$(call run_notebooks,$(PROFILE),--inplace)
	$(BIN)/python scripts/strip_tf_logs.py $(NOTEBOOKS)

bench: $(STAMP)
	$(BIN)/python -m resvae_keras bench data
	$(BIN)/python -m resvae_keras bench train
	$(BIN)/python -m resvae_keras bench eval

# On a machine with an NVIDIA GPU: the CUDA build of TensorFlow in .venv-gpu, a GPU training
# benchmark and one demo epoch, then one JSON line (README, "GPU and several devices").
gpu-check:
	PYTHON=$(PYTHON) bash scripts/gpu_check.sh

# Renders report/laporan.md and README.md from their .j2 templates and report/results/, then
# one self-contained HTML file with pandoc: figures and report/laporan.css (wide tables scroll)
# embedded.
# --embed-resources needs pandoc 2.19 or newer; older ones spell it --self-contained.
report: $(STAMP)
	$(BIN)/python -m resvae_keras report
	@if command -v pandoc >/dev/null; then \
	  embed=$$(pandoc --help | grep -q -- --embed-resources && echo --embed-resources \
	    || echo --self-contained); \
	  cd report && pandoc laporan.md --standalone $$embed --toc --mathml \
	    -V maxwidth=60em --css laporan.css --resource-path=.:.. -o laporan.html \
	    && echo "rendered report/laporan.html (self-contained)"; \
	else echo "pandoc not found: report/laporan.md is up to date, laporan.html was not rendered" \
	  "(install pandoc, e.g. apt-get install pandoc, and run make report again)"; fi

clean:
	rm -rf $(VENV) .venv-gpu .pytest_cache
