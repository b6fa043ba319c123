# Two commands on a fresh machine: `make demo` and `make test`.  Both build .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo bench chaos clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

# Then the journal and core suites once more on PostgreSQL (a throwaway cluster the tests start).
PG_SUITES := tests/test_journal.py tests/test_outbound.py tests/test_inbound.py tests/test_inbound_crash.py \
	tests/test_relay.py tests/test_callbacks.py tests/test_service.py tests/test_daemon_smoke.py tests/test_nodes.py

test: $(STAMP)
	bash .ci/system-deps
	$(BIN)/python -m pytest -q
	FAXBRIDGE_TEST_JOURNAL=postgresql $(BIN)/python -m pytest -q $(PG_SUITES)

demo: $(STAMP)
	$(BIN)/python -m faxbridge.demo

# The long crash campaign of issues 8 and 14 (the quick one is part of `make test`): 200 kills with 30 %
# of FAX.de calls failing, FAX.de's duplicate window a minute and a 75 s crash loop; a minute of
# provider faults; memory and file descriptors over 1000 jobs.
# Prints its figures; what it leaves (logs, folders, journal) stays in $TMPDIR/faxbridge-chaos.
# FAXBRIDGE_CHAOS_SEED=N repeats a run's choices.
chaos: $(STAMP)
	FAXBRIDGE_CHAOS_KILLS=$${FAXBRIDGE_CHAOS_KILLS:-200} FAXBRIDGE_CHAOS_FAULTS=$${FAXBRIDGE_CHAOS_FAULTS:-0.3} \
	FAXBRIDGE_CHAOS_FAULT_SECONDS=$${FAXBRIDGE_CHAOS_FAULT_SECONDS:-60} FAXBRIDGE_CHAOS_JOBS=$${FAXBRIDGE_CHAOS_JOBS:-1000} \
	FAXBRIDGE_CHAOS_WINDOW=$${FAXBRIDGE_CHAOS_WINDOW:-60} FAXBRIDGE_CHAOS_CRASH_LOOP=$${FAXBRIDGE_CHAOS_CRASH_LOOP:-75} \
		$(BIN)/python -m pytest -q -s --basetemp=$${TMPDIR:-/tmp}/faxbridge-chaos tests/chaos

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[test,bench]'
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache demo-data
