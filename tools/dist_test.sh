#!/usr/bin/env bash
# Distributed testing on one or several nodes with torchrun.
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1),
# PORT (29500), PYTHON (.venv/bin/python if present, else python).
# Without CUDA, tools/test.py switches the backend to gloo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"

kdep_need_args 3 "CONFIG CHECKPOINT GPUS [test.py args...]" "$@"
CONFIG=$1 CHECKPOINT=$2 GPUS=$3
shift 3
kdep_torchrun "$GPUS" test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
