#!/usr/bin/env bash
# Set up the environment (idempotent) and run the whole KDEP story on the
# embedded synthetic-shapes data, offline on CPU:
#   teacher -> KDEP distillation -> export -> fine-tune, vs. random init.
#   bash tools/run_demo.sh [tools/kdep_demo.py options, e.g. --seed 1]
# Results: work_dirs/kdep_demo/results.md and results.json.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/setup_env.sh
VENV="${KDEP_VENV:-$ROOT/.venv}"
exec "$VENV/bin/python" tools/kdep_demo.py "$@"
