# thorfleet.llm: `make demo` rehearses a fleet on this machine, `make test` proves the collection.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
STAMP := $(VENV)/.requirements-installed
FLEET := sim/fleet
DEMO_UNITS ?= 3

# Everything below runs with the project's venv first on PATH (molecule calls ansible-config)
# and finds this collection, by a link, as thorfleet.llm.
export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help setup venv host images collection lint changelog changelog-check unit sanity docs ee contract molecule test demo \
	down clean bench bench-keys bench-cache bench-converge bench-gateway

help:
	@echo "make setup   venv, Docker engine, simulator images (idempotent)"
	@echo "make demo    a $(DEMO_UNITS)-unit simulated fleet on this machine"
	@echo "make test    lint, unit, sanity and contract tests, every molecule scenario"
	@echo "make sanity  ansible-test sanity and antsibull-docs' lint on the collection as it is built"
	@echo "make docs    the collection's documentation as HTML, in .cache/docs/build/html"
	@echo "make down    remove the demo fleet"
	@echo "make changelog  CHANGELOG.md from changelogs/ (antsibull-changelog)"
	@echo "make ee      the execution environment's build context in .cache/ee/context, checked"
	@echo "make bench   every benchmark below, one after another"
	@echo "make bench-keys  1,000 keys: litellm_key in one task vs one uri task per key"
	@echo "make bench-cache model cache to 8 units on shaped links: star vs tree vs one copy (T1)"
	@echo "make bench-converge  no-op site.yml on 1, 2, 4, 8 units: times and ratio to one unit"
	@echo "make bench-gateway  TTFT and tokens/s direct, through the gateway to 1 unit and to 3 (1 and 8 clients)"

setup: venv host images collection

venv: $(STAMP)
$(STAMP): requirements.txt
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements.txt
	touch $@

host:
	sim/bin/ensure-host

images: venv host
	$(FLEET) build

# ansible.cfg looks for collections under .collections: link this checkout in as thorfleet.llm.
collection:
	mkdir -p .collections/ansible_collections/thorfleet
	ln -sfn ../../.. .collections/ansible_collections/thorfleet/llm

lint: venv collection changelog-check
	yamllint --strict .
	ruff check .
	ruff format --check .
	ansible-lint --profile production

# CHANGELOG.md is antsibull-changelog's output (changelogs/config.yaml says how releases work), never edited by hand.
changelog: venv
	antsibull-changelog generate

# An invalid fragment or changelog.yaml fails, and so does a CHANGELOG.md that differs from what the tool writes.
changelog-check: venv
	antsibull-changelog lint
	antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
	mkdir -p .cache/changelog
	antsibull-changelog generate --output .cache/changelog/CHANGELOG.md --output-format md
	diff -u .cache/changelog/CHANGELOG.md CHANGELOG.md || { echo "CHANGELOG.md is not antsibull-changelog's: make changelog"; exit 1; }

# The execution environment's build context, from the collection as Galaxy ships it; no registry is needed to write
# it (`podman build .cache/ee/context` makes the image where one is reachable). ansible-builder reads the definition's
# requirement paths from the collection's root (see meta/execution-environment.yml), so it is given from there.
EE := .cache/ee
EE_ROOT := $(EE)/collections/ansible_collections/thorfleet/llm
ee: venv
	rm -rf $(EE)
	mkdir -p $(EE_ROOT)
	ansible-galaxy collection build --output-path $(EE_ROOT) .
	tar -xzf $(EE_ROOT)/thorfleet-llm-*.tar.gz -C $(EE_ROOT)
	ln -s meta/execution-environment.yml $(EE_ROOT)/execution-environment.yml
	ansible-builder create --file $(EE_ROOT)/execution-environment.yml --context $(EE)/context --output-filename Containerfile
	python tests/ee/check_context.py $(EE) requirements.txt

unit: venv
	pytest tests/unit sim/tests

# ansible-test sanity (no containers) and antsibull-docs' checks of every plugin's and role's documentation, on
# the collection as `ansible-galaxy collection build` ships it (build_ignore applied), unpacked where ansible-test
# needs it: a path ending in ansible_collections/thorfleet/llm. The unpacked copy gets a git repository of its own,
# or ansible-test would take its file list from this checkout's, which ignores .cache. Each test runs in a venv
# ansible-test makes with its own pinned tools (~/.ansible/test/venv, made once); .ci/get_pip.py stands in for
# the pip bootstrap script it would download from a host that is not always reachable.
# Python 3.11 is this venv's: the controller's, and within the modules' python_requires (tests/config.yml).
SANITY := .cache/sanity
SANITY_COLLECTION := $(SANITY)/ansible_collections/thorfleet/llm
SANITY_GET_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py
sanity: venv
	rm -rf $(SANITY)
	mkdir -p $(SANITY_COLLECTION)
	ansible-galaxy collection build --output-path $(SANITY) .
	tar -xzf $(SANITY)/thorfleet-llm-*.tar.gz -C $(SANITY_COLLECTION)
	git -C $(SANITY_COLLECTION) init -q
	test -f $(SANITY_GET_PIP) || install -D -m 0644 .ci/get_pip.py $(SANITY_GET_PIP)
	cd $(SANITY_COLLECTION) && ansible-test sanity --local --python 3.11
	ANSIBLE_COLLECTIONS_PATH=$(CURDIR)/$(SANITY) antsibull-docs lint-collection-docs --plugin-docs \
		--validate-collection-refs dependent --disallow-unknown-collection-refs $(SANITY_COLLECTION)

# The collection's documentation (modules, filters, tests, roles) rendered by antsibull-docs and Sphinx.
# --lenient: links into docs.ansible.com and docs.python.org only resolve where those answer; broken plugin
# and role docs fail `make sanity` (antsibull-docs lint-collection-docs) instead.
DOCS := .cache/docs
docs: venv collection
	rm -rf $(DOCS)
	mkdir -p -m 0755 $(DOCS)  # sphinx-init wants it made, and writable by its owner only
	antsibull-docs sphinx-init --use-current --dest-dir $(DOCS) --fail-on-error --lenient thorfleet.llm
	cd $(DOCS) && ./build.sh

# The real vLLM parser and the real LiteLLM proxy, each in a venv of its own under ~/.cache/thorfleet.
contract: venv
	pytest tests/contract

# Every scenario, each one's whole output (its verifiers' playbook runs too) scanned for its secrets.
molecule: setup
	$(FLEET) prune
	python tests/scenarios.py

test: setup lint unit sanity ee contract molecule

# The whole service on simulated units: units, weights, site.yml, then one request through thor-01.
demo: setup
	$(FLEET) up $(DEMO_UNITS)
	ansible-playbook -i inventories/sim playbooks/site.yml
	ansible-playbook -i inventories/sim sim/playbooks/demo_request.yml
	@echo
	@$(FLEET) status
	@echo
	@echo "Re-run the service (heals drift):  ansible-playbook -i inventories/sim playbooks/site.yml"
	@echo "A shell on a unit:                 docker exec -it thor-01 bash"
	@echo "Remove the fleet:                  make down"

down: venv
	$(FLEET) down

# Benchmarks print what they compare side by side, with the ratio; they are not part of `make test`.
bench: bench-keys bench-cache bench-converge bench-gateway

bench-keys: setup
	python bench/keys.py

# Leaves its fleet up for a look; remove it with: sim/fleet down --fleet bench-cache
bench-cache: setup
	python bench/cache.py

# Makes and removes its own fleets (bench-converge-N), one size at a time.
bench-converge: setup
	python bench/converge.py

# Makes and removes its own fleet (bench-gateway): three units, the gateway on thor-01.
bench-gateway: setup
	python bench/gateway.py

clean: down
	rm -rf .collections .pytest_cache .ruff_cache sim/.cache
