# stn-repro: one command each. `make install` once, then `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint format gpu-check bench-st table1 table2 table4 table5 fig3d gtsrb table3 all-tables \
	analyse report tensorboard clean

# Schedule for the table targets: `make table1 SCHEDULE=paper` on a GPU. Unset, each table
# trains with its own default (Tables 1 and 4: the `cpu` recipe; the others: `fast`).
SCHEDULE ?=
SCHEDULE_ARG = $(if $(SCHEDULE),schedule=$(SCHEDULE))
TABLE1 := table1_r table1_rts table1_p table1_e table1_tc

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)  # what CI runs; the layout is by hand (ruff format would rewrap 29 files)
	$(VENV)/bin/ruff check .

format: $(STAMP)  # fixes what ruff check can; no reformatting
	$(VENV)/bin/ruff check --fix .

# Everything a GPU would tell us, in one process within a budget (default 9 minutes).
gpu-check: $(STAMP)
	$(PY) scripts/gpu_check.py

bench-st: $(STAMP)
	$(PY) scripts/bench_st.py

table1: $(STAMP)
	for e in $(TABLE1); do $(VENV)/bin/stn-repro experiment=$$e $(SCHEDULE_ARG) || exit 1; done

table2: $(STAMP)
	for e in table2_svhn64 table2_svhn128; do \
		$(VENV)/bin/stn-repro experiment=$$e $(SCHEDULE_ARG) || exit 1; done

table4: $(STAMP)
	$(VENV)/bin/stn-repro experiment=table4_addition $(SCHEDULE_ARG)

table5: $(STAMP)
	for e in table5_coloc_t table5_coloc_tc; do \
		$(VENV)/bin/stn-repro experiment=$$e $(SCHEDULE_ARG) || exit 1; done

fig3d: $(STAMP)
	$(VENV)/bin/stn-repro experiment=fig_3d $(SCHEDULE_ARG)

gtsrb: $(STAMP)
	for e in gtsrb gtsrb_26epochs; do \
		$(VENV)/bin/stn-repro experiment=$$e $(SCHEDULE_ARG) || exit 1; done

table3: $(STAMP)
	$(VENV)/bin/stn-repro experiment=table3_cub $(SCHEDULE_ARG)

# The MNIST tables first: Table 2 and GTSRB stop (one line) where their files are missing.
all-tables: table1 table4 table5 fig3d table2 gtsrb  # table3 (CUB) needs GPUs: make table3

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir outputs/runs

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# The pose table, figures and animations of the finished $(SCHEDULE) runs, then one report.
analyse: $(STAMP)
	$(PY) scripts/analyse.py --schedule $(or $(SCHEDULE),fast)

report: analyse
	$(PY) scripts/report.py $(if $(SCHEDULE),--schedule $(SCHEDULE))
