# Two commands do everything: `make video` renders the video, `make test` runs the tests.
# Both run `make setup` first, which installs what is missing and is a no-op otherwise.
PY := .venv/bin/python
QUALITY ?= low
# Scenes rendered at once: one per CPU core (each is one manim process, about 1 GB of memory).
JOBS ?= $(shell nproc)

.PHONY: setup video test lint figures clean

setup:
	@bash scripts/setup.sh

video: setup
	$(PY) render.py video --quality $(QUALITY) --jobs $(JOBS)

# pytest exits 5 when it collected no test: on this project that is a broken checkout, not a pass.
test: setup
	@$(PY) -m pytest -q || { rc=$$?; [ $$rc -ne 5 ] || echo "error: pytest collected no tests" >&2; exit $$rc; }

lint: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

figures: setup
	$(PY) render.py figures --quality $(QUALITY) --jobs $(JOBS)

clean:
	rm -rf media figures .cache
