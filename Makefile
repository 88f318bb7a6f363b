# Two entry points: `make demo` runs the pipeline on the embedded dataset, `make test` runs the tests.
# Both create the virtual environment from requirements.txt on first use.
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test lint clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

demo: $(VENV)/.installed
	$(PY) demo.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint  # two workers at one thread each: two jobs side by side beat one at two threads here
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n 2

clean:  # what make demo writes
	rm -rf data/synth out/tokenizer/default out/lm/default out/evaluator/synth out/eval/synth out/demo
