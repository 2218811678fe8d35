#!/usr/bin/env bash
# Distributed training on one or several nodes with torchrun.
#   bash tools/dist_train.sh CONFIG GPUS [train.py args...]
# GPUS is the number of processes on this node. Environment (see
# tools/_launch.sh and docs/multinode.md): NNODES (1, or MIN:MAX), NODE_RANK
# (0), MASTER_ADDR (127.0.0.1; required when NNODES > 1), PORT or
# MASTER_PORT (29500), MAX_RESTARTS (0), RDZV_ENDPOINT, RDZV_ID, PYTHON
# (.venv/bin/python if present, else python).
# With MAX_RESTARTS > 0 torchrun restarts all processes after a failure, and
# each restart resumes from the work directory's last checkpoint
# (tools/train.py: kdep_mm.utils.launch.resume_after_restart).
# Without CUDA, tools/train.py switches the backend to gloo, so GPUS is then
# the number of CPU processes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"

kdep_need_args 2 "CONFIG GPUS [train.py args...]" "$@"
CONFIG=$1 GPUS=$2
shift 2
kdep_torchrun "$GPUS" train.py "$CONFIG" --launcher pytorch "$@"
