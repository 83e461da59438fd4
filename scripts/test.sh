#!/usr/bin/env bash
# Set up (first time) and run every test. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh test
set +e
.venv/bin/python -m pytest "$@"
status=$?
set -e
# pytest's 5 means "no test collected": that is a failure for us, never a pass
if [ "$status" -eq 5 ]; then echo "error: no tests ran" >&2; exit 1; fi
exit "$status"
