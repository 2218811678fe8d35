#!/usr/bin/env bash
# Distributed training on one or several nodes with torchrun.
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# Environment: NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1),
# PORT (29500), PYTHON (.venv/bin/python if present, else python).
# Without CUDA, tools/train.py switches the backend to gloo, so GPUS is then
# the number of CPU processes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"

kdep_need_args 2 "CONFIG GPUS [train.py args...]" "$@"
CONFIG=$1 GPUS=$2
shift 2
kdep_torchrun "$GPUS" train.py "$CONFIG" --launcher pytorch "$@"
