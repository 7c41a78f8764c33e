# bnnflow's two entry points for a new user (see README):
#   make all    create .venv from requirements.lock, then run `snakemake all` on the default config
#   make test   create both environments, then run the test suite (CI runs exactly this)
PYTHON ?= python3.11
VENV   ?= .venv
BOARD_VENV ?= .venv-board
LARQ_VENV ?= .venv-larq
# Debian packages the tests need: the report's browser test and the Fashion-MNIST files.
APT_PACKAGES := chromium dataset-fashion-mnist
# Debian packages of the SLURM test: tests/workflow/test_slurm.py starts a single-node SLURM 22.05 with them.
SLURM_APT_PACKAGES := slurm-wlm slurmdbd munge mariadb-server
# Debian packages of the board-CPU tests (tests/board_cpu): QEMU user-mode emulation and mmdebstrap, which builds
# the ARMv7 / AArch64 Debian root file systems that host/ is tested in (cached in ~/.cache/bnnflow, see README).
BOARD_CPU_APT_PACKAGES := qemu-user-static binfmt-support mmdebstrap

.PHONY: all env board-env larq-env system-deps slurm-deps board-cpu-deps test
all: env larq-env
	$(VENV)/bin/snakemake all

env: $(VENV)/.installed
$(VENV)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --no-deps -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@# the one accepted conflict: finn-plus's brevitas==0.13.0 pin (bnnflow uses 0.13.4, see requirements.lock)
	@extra=$$($(VENV)/bin/python -m pip check 2>&1 | grep -v "finn-plus 1.6.1 has requirement brevitas==0.13.0" | grep -v "^No broken"); \
	if [ -n "$$extra" ]; then echo "pip check: $$extra" >&2; exit 1; fi
	touch $@

# The board's world: numpy<2 with pynq and finn-plus-driver, as on a PYNQ image (host/ must run there).
board-env: $(BOARD_VENV)/.installed
$(BOARD_VENV)/.installed: requirements-board.lock
	$(PYTHON) -m venv $(BOARD_VENV)
	$(BOARD_VENV)/bin/python -m pip install --quiet --no-deps -r requirements-board.lock
	touch $@

# The Larq world (larq_models/): TensorFlow 2.16 + tf-keras + Larq 0.14, numpy<2; Snakemake runs its rules with
# this interpreter (larq.python in workflow/config.yaml), never the main one.
larq-env: $(LARQ_VENV)/.installed
$(LARQ_VENV)/.installed: requirements-larq.lock
	$(PYTHON) -m venv $(LARQ_VENV)
	$(LARQ_VENV)/bin/python -m pip install --quiet --no-deps -r requirements-larq.lock
	$(LARQ_VENV)/bin/python -m pip check
	touch $@

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing; install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

# The same install for the SLURM test's packages (the daemons are started by the test itself, under a temp dir).
slurm-deps:
	@missing=""; for p in $(SLURM_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing; install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

# The same install for the board-CPU tests' packages (the root file systems are built by the tests, cached).
board-cpu-deps:
	@missing=""; for p in $(BOARD_CPU_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "missing Debian packages:$$missing; install them with: sudo apt-get install$$missing" >&2; exit 1; fi; \
	fi

test: env board-env larq-env system-deps slurm-deps board-cpu-deps
	$(VENV)/bin/python -m pytest -m "not board_env"
	# host/ runs on the board: its tests again, in the numpy<2 + pynq + finn-plus-driver environment
	$(BOARD_VENV)/bin/python -m pytest tests/host
	# larq_models/ runs in its own world: its tests in the TensorFlow + Larq environment
	$(LARQ_VENV)/bin/python -m pytest -m larq_env tests/larq_models
