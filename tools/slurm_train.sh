#!/usr/bin/env bash
# Training on a Slurm cluster.
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] \
#   bash tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]
# A batch job that requeues itself before its time limit and resumes:
# tools/slurm_requeue_train.sh (docs/multinode.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/_launch.sh"

kdep_need_args 4 "PARTITION JOB_NAME CONFIG WORK_DIR [train.py args...]" "$@"
PARTITION=$1 JOB_NAME=$2 CONFIG=$3 WORK_DIR=$4
shift 4
kdep_srun "$PARTITION" "$JOB_NAME" train.py "$CONFIG" \
    --work-dir="$WORK_DIR" --launcher="slurm" "$@"
