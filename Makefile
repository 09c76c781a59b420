# make demo | make test | make bench | make data — each installs what is missing first (Debian: run as root).
PYTHON ?= python3
PIP := $(PYTHON) -m pip

FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install demo test bench data
install: .install.stamp
	@command -v ngspice >/dev/null && ldconfig -p | grep -q 'libngspice.so ' || { \
	  echo "installing ngspice (Debian packages ngspice libngspice0 libngspice0-dev)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngspice libngspice0 libngspice0-dev; }

.install.stamp: pyproject.toml
	$(PIP) install -q -e '.[test]'
	@touch $@

demo: install
	drn compare studies/configs/demo.toml --out results/demo
	drn plot results/demo
	@echo "results/demo/: README.md (provenance), summary.md, runtime_vs_width, speedup_vs_width, error_cdf (PNG + PDF)"

test: install
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

# Fashion-MNIST (70,000 images, IDX) from Debian's package: drn train --dataset fashion-mnist reads it there.
data:
	@test -f $(FASHION_DIR)/train-images-idx3-ubyte.gz || { \
	  echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; }
	@echo "Fashion-MNIST: $(FASHION_DIR)"

bench: install
	$(PYTHON) benchmarks/bench_start.py
	$(PYTHON) benchmarks/bench_solver.py
	$(PYTHON) benchmarks/bench_spice.py
	$(PYTHON) benchmarks/bench_circuit.py
