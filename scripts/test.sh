#!/usr/bin/env bash
# Set up (first time), check lint (ruff) and types (mypy), then run every test. Arguments go to pytest.
# Browser tests need Debian's chromium and chromium-driver: installed here when absent (as root, or with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
# lint and types first: a failure fails the run (both run, so one run shows every problem)
failed=""
.venv/bin/ruff check . || failed="$failed ruff"
.venv/bin/mypy -p command -p feeds || failed="$failed mypy"
if [ -n "$failed" ]; then
  echo "error: failed:$failed (ruff check . / mypy -p command -p feeds)" >&2
  exit 1
fi
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
  echo "installing chromium and chromium-driver for the browser tests ..." >&2
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; }; then
    echo "error: could not install chromium and chromium-driver; install them (apt-get install chromium chromium-driver)" >&2
    exit 1
  fi
fi
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest's 5 means "no test collected": that is a failure for us, never a pass
if [ "$status" -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi
exit "$status"
