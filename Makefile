# The whole set-up: `make demo` and `make test` each create .venv if it is missing and install
# the project with the pinned versions in constraints.txt before running. pip's install is a
# quick no-op when everything is already there, so it runs every time.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export MPLBACKEND := Agg

.PHONY: install demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" -c constraints.txt
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test]"
# finn-plus without its pins (brevitas==0.13.0 would replace the CPU torch); its dependencies
# come from pyproject.toml above. See hw_builds/README.md.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt finn-plus==1.6.1

demo: install
	$(BIN)/qsearch train --env InvertedPendulum-v5 --algo sac --scope core --bits 3 --width 64 \
		--steps 5000 --learning-starts 1000 --eval-every 1000 --seed 0 --out runs/demo --force
	$(BIN)/qsearch eval runs/demo --episodes 10 --engine int

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: install
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
