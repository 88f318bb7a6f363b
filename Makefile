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
	$(PY) data.py --out data/synth_demo --size 2000
	$(PY) data.py --data data/synth_demo --show 0,1,2 --gif_dir out/demo
	$(PY) tokenizer.py --data_dir=data/synth_demo --run_name=demo --max_iters=300
	$(PY) tokenizer.py --encode --data_dir=data/synth_demo --run_name=demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest -q

clean:
	rm -rf out/demo out/tokenizer/demo data/synth_demo
