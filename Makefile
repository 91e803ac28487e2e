# Two commands do all setup on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= 2
EXPERIMENTS ?= experiments/experiments.yaml
TRAINING_THREADS ?=
STAMP := $(VENV)/.installed

.PHONY: demo test test-slurm experiments setup report lint clean

$(STAMP): pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/snakemake --cores $(CORES) --resources gpu=1 --profile profiles/default
	$(BIN)/snakemake --cores $(CORES) --report results/report.html
	@$(BIN)/python -c "import pandas as pd; print(pd.read_csv('results/summary.tsv', sep='\t').to_string(index=False))"
	@echo "open results/overview.html (what was achieved) or results/report.html"

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# The paper's tables on rendered KiTS19 (data/kits19-ct) and IBSI (../shared/data/ibsi-sts):
# results/tables/table1-3.tsv and report.html. Long: see docs/experiments.md;
# EXPERIMENTS=experiments/quick.yaml runs the same set at a quick budget; TRAINING_THREADS=1
# trains with one thread per job, CORES jobs side by side (docs/experiments.md).
experiments: $(STAMP)
	$(BIN)/python experiments/run.py --config $(EXPERIMENTS) --cores $(CORES) \
	  $(if $(TRAINING_THREADS),--training-threads $(TRAINING_THREADS))

# A real single-node SLURM cluster on localhost (installs Debian's slurm-wlm; needs root).
test-slurm: $(STAMP)
	bash tests/slurm/run_slurm_test.sh

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .
	$(BIN)/ruff check .

clean:
	rm -rf results logs .snakemake
