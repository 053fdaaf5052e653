# The two commands a newcomer needs: `make demo` and `make test`.
# Both bootstrap everything on a fresh Debian machine first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: demo test test-quick lint typecheck unit bench fuzz load camera-faults storage-faults crash bootstrap clean test-install purge-bench site-chaos test-install-arm64 province-dashboard-bench province-chaos province-lag province-uplink

demo: $(STAMP)
	$(BIN)/gatekiosk demo

test: $(TEST_STAMP) lint typecheck unit

lint: $(TEST_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(TEST_STAMP)
	$(BIN)/mypy

# The tests spread over every core (pytest-xdist; WORKERS=0: one process),
# except the browser tests, which share one Chromium in one process.
WORKERS ?= auto
unit: $(TEST_STAMP)
	$(BIN)/pytest -n $(WORKERS) --dist worksteal -m "not browser"
	$(BIN)/pytest -m browser

# Everything but the slow and browser tests (markers in pyproject.toml): the
# loop while working; `make test` before committing.
test-quick: $(TEST_STAMP)
	$(BIN)/pytest -n $(WORKERS) --dist worksteal -m "not slow and not browser"

# Several minutes: decoders, per-frame cost, glass-to-light latency, store and a
# 1,000,000-event export. Writes bench/report.md and bench/report.json.
bench: $(TEST_STAMP)
	$(BIN)/python -m bench.run

# Coverage-guided fuzzing of every payload parser and verifier (atheris),
# 200,000 runs per target; writes bench/report-fuzz.md.
fuzz: $(TEST_STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	$(BIN)/python bench/fuzz_codes.py --runs-per-target 200000

# The gate, the web and a 1,000,000-row database under load for 3 minutes:
# 30 fps with a visitor every 3 s, 50 live dashboards, a CSV and an XLSX
# export at once. Writes bench/report-load.md.
load: $(TEST_STAMP)
	$(BIN)/python -m bench.load

# A camera that stalls, errors, vanishes and returns, and a decoder that
# throws, in real time: seconds to the fault pattern, to the dashboard, and
# back after the camera returns. About 6 minutes; writes bench/report-camera.md.
camera-faults: $(TEST_STAMP)
	$(BIN)/python -m bench.camera_faults

# A long lock, a full disk and a read-only file system under a real gate:
# decision and override times, and how soon the overrides are recorded once
# the database is back. About a minute; writes bench/report-storage-faults.md.
storage-faults: $(TEST_STAMP)
	$(BIN)/python -m bench.storage_faults --runs 3

# SIGKILL the kiosk 200 times while it decides and the web reads, then kill
# the web and the CLI mid-export: integrity, every signalled decision has its
# row, no duplicates, relay off on restart, no files left. About 6 minutes;
# writes bench/report-crash.md.
crash: $(TEST_STAMP)
	$(BIN)/python -m bench.crash_harness --kills 200

# The installer, end to end in a fresh Debian chroot (root, ~1.5 minutes;
# not part of `make test`).
test-install: $(TEST_STAMP)
	bash deploy/test-install.sh

bootstrap: $(STAMP)

$(STAMP): pyproject.toml deploy/dev-bootstrap.sh
	PYTHON="$(PYTHON)" VENV="$(VENV)" sh deploy/dev-bootstrap.sh
	touch $@

$(TEST_STAMP): pyproject.toml deploy/dev-bootstrap.sh
	PYTHON="$(PYTHON)" VENV="$(VENV)" sh deploy/dev-bootstrap.sh test
	touch $(STAMP) $@

clean:
	rm -rf $(VENV) demo-data .pytest_cache .mypy_cache .ruff_cache

# 1,000,000 events purged under the real loop at 30 fps, batched and as one DELETE; writes bench/report-purge.md.
purge-bench: $(TEST_STAMP)
	$(BIN)/python -m bench.purge_bench

# Gates, broker and hub on loopback with random SIGKILLs: lost/doubled events, gate-to-site
# latency, catch-up of a 600,000-event backlog, hub RSS. Writes bench/report-site-chaos.md.
site-chaos: $(TEST_STAMP)
	$(BIN)/python -m bench.site_chaos --gates 3 --rate 20 --chaos-s 300 --broker-kills 50 --hub-kills 10 --sync-kills 10 --backlog 600000

# The province dashboard's queries over 10,000,000 events on a temporary PostgreSQL: the fill
# rate with the hourly trigger, p50/p95 of each page's queries beside the same answer from the
# raw events. Several minutes; writes bench/report-province-dashboard.md.
province-dashboard-bench: $(TEST_STAMP)
	$(BIN)/python -m bench.province_dashboard --events 10000000 --sites 200 --runs 100

# Hubs uploading to a real PostgreSQL on loopback while it is crashed 20 times
# (pg_ctl stop -m immediate) and hubs' uplinks are killed 20 times: lost and
# doubled events, hourly counts, catch-up. A few minutes; writes
# bench/report-province-chaos.md.
province-chaos: $(TEST_STAMP)
	$(BIN)/python -m bench.province_chaos --hubs 4 --rate 50 --pg-crashes 20 --hub-kills 20

# 50 sites at 100x a busy market's rate (55.6 events/s each), 50 uplink
# processes: upload lag p50/p95/p99 (target p99 <= 60 s). About 4 minutes;
# writes bench/report-province-lag.md.
province-lag: $(TEST_STAMP)
	$(BIN)/python -m bench.province_lag --sites 50 --duration-s 120

# A 30-day backlog of one site (600,000 events) up to the province, in events/s
# (target >= 20,000).
province-uplink: $(TEST_STAMP)
	$(BIN)/python -m bench.province_uplink --events 600000

# The installer and the installed program on arm64 (Debian bookworm and
# trixie) under qemu-user emulation: root, debootstrap, qemu-user-static;
# tens of minutes; not part of `make test` or CI. Debian's archive only:
# no picamera2, libcamera or lgpio (see deploy/test-install-arm64.sh).
test-install-arm64:
	bash deploy/test-install-arm64.sh
