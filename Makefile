# The course and its toolkit. Every target sets up .venv first (idempotent, quick when done).
#   make course   execute every notebook in order into build/course (executed ipynb + student-edition html)
#   make student  the edition to hand out, from the committed executed notebooks (no run): build/student
#                 (ipynb + html, every cell tagged "solution" removed with its outputs)
#   make instructor  the full notebooks, solutions folded (<details> in html, collapsed in Jupyter): build/instructor
#   make site     the course website from the committed executed notebooks (student edition, no run)
#                 and the toolkit's docstrings: build/site (open build/site/index.html); prints pages, time
#   make test     unit tests (docstring examples and the site's browser check included), then nbval
#   make unit     unit tests only;  make nbval  every notebook under nbval only
#   make lab      JupyterLab on notebooks/
#   make bench    speed and memory figures (benchmarks/)
#   make render   re-execute the committed notebooks in place after a change
#   make manifests  rewrite the datasets' split manifests (datasets/manifests)
#   make lock     pin the installed versions into constraints.txt
#   make clean    remove build/, runs/ and caches
# GPU: install a CUDA build of torch into .venv first (see README), then any target.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: setup course student instructor site test unit nbval lab bench render manifests lock clean

setup: $(STAMP)

# torch first, pinned: an unpinned torch pulled in by the other packages may be a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	@$(PY) -m pip install --quiet -e ".[dev,all]" -c constraints.txt
	@# test oracles whose metadata asks for torchvision (which does not load beside this torch): files only
	@$(PY) -m pip install --quiet --no-deps timm torchattacks -c constraints.txt
	@touch $(STAMP)
	@echo "environment ready: $(VENV) (torch $$($(PY) -c 'import torch; print(torch.__version__)'))"

course: setup
	@$(PY) scripts/run_notebooks.py --out build/course $(NOTEBOOKS)

student instructor: setup
	@$(PY) scripts/editions.py $@ --out build/$@ $(NOTEBOOKS)

site: setup
	@$(PY) scripts/build_site.py

render: setup
	@$(PY) scripts/run_notebooks.py --inplace $(NOTEBOOKS)

test: setup
	@$(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

unit: setup
	@$(PY) -m pytest tests -p no:cacheprovider

nbval: setup
	@$(PY) -m pytest notebooks --nbval-lax --nbval-current-env -p no:cacheprovider

lab: setup
	@$(VENV)/bin/jupyter lab notebooks/

bench: setup
	@for f in benchmarks/bench_*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

manifests: setup
	@$(PY) scripts/write_manifests.py

# pin what .venv holds now (after an upgrade, then make render and make test)
lock: setup
	@{ sed '/^[^#]/,$$d' constraints.txt; $(PY) -m pip freeze --exclude-editable | grep -v -E '^(#|torch[= ]|triton[= ]|nvidia-)'; } > constraints.tmp && mv constraints.tmp constraints.txt

clean:
	rm -rf build runs notebooks/runs .pytest_cache
