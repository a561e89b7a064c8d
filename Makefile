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
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[test,mcu]"
# finn-plus without its pins (brevitas==0.13.0 would replace the CPU torch); its dependencies
# come from pyproject.toml above. See hw_builds/README.md.
	$(BIN)/python -m pip install --quiet --no-deps -c constraints.txt finn-plus==1.6.1

# The whole pipeline on search_spaces/selection_pendulum.yaml into runs/demo: staged selection
# (Ray Tune searches, MLflow), FINN sweep, QONNX and C export, report. Run again, it reuses every
# finished trial. See qsearch/demo.py for the commands it chains.
demo: install
	$(BIN)/qsearch demo

test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

bench: install
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) runs .pytest_cache
