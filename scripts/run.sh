#!/usr/bin/env bash
# Set up (first time) and run the main job: `python app.py` on the sample data. Arguments go to app.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python app.py "$@"
