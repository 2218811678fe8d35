#!/usr/bin/env bash
# Set up the environment (idempotent) and run the test suite.
#   bash tools/run_tests.sh [extra pytest args]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
# pytest exits 5 when it collects no test: set -e makes that a failure.
exec .venv/bin/python -m pytest tests -q -ra "$@"
