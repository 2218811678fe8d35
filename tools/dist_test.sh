#!/usr/bin/env bash
# Distributed testing on one or several nodes with torchrun.
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args...]
# Environment: as tools/dist_train.sh (NNODES, NODE_RANK, MASTER_ADDR, PORT
# or MASTER_PORT, RDZV_ENDPOINT, PYTHON; see tools/_launch.sh).
# Without CUDA, tools/test.py switches the backend to gloo.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"

kdep_need_args 3 "CONFIG CHECKPOINT GPUS [test.py args...]" "$@"
CONFIG=$1 CHECKPOINT=$2 GPUS=$3
shift 3
kdep_torchrun "$GPUS" test.py "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
