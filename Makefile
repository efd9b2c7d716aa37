# The two commands of the README. Both set everything up first.
.PHONY: demo test setup lint bench

setup:
	scripts/setup.sh

demo: setup
	.venv/bin/citypilot demo

test: setup
	.venv/bin/ruff check citypilot tests
	.venv/bin/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile

lint:
	.venv/bin/ruff check citypilot tests
	.venv/bin/ruff format --check citypilot tests

bench: setup
	.venv/bin/citypilot bench ingest
	.venv/bin/citypilot bench query
