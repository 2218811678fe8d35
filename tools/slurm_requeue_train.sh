#!/usr/bin/env bash
# Training as a Slurm batch job that requeues itself before its time limit
# and resumes from the last checkpoint when it starts again.
#   cd <repository> && sbatch [sbatch options] tools/slurm_requeue_train.sh \
#       CONFIG WORK_DIR [train.py args...]
# The #SBATCH lines below are defaults (2 nodes x 8 GPUs); options given to
# sbatch override them. Environment: SRUN_ARGS (""), PYTHON (as
# tools/_launch.sh), KDEP_ROOT (the repository; default: the directory
# sbatch was called from, since Slurm runs a copy of this script).
#
# What happens (docs/multinode.md):
# * --signal=B:USR1@180: 180 s before the time limit Slurm sends SIGUSR1 to
#   this batch shell only (B:), not to the training processes;
# * the trap below runs `scontrol requeue $SLURM_JOB_ID`: Slurm ends the
#   job steps and puts the job back in the queue (--requeue makes it
#   eligible; a node failure, or preemption on a partition with
#   PreemptMode=REQUEUE, requeues it too);
# * the next start has SLURM_RESTART_COUNT > 0, and tools/train.py resumes
#   from WORK_DIR/last_checkpoint (kdep_mm.utils.launch.resume_after_restart):
#   the work since that checkpoint is lost, so pick the checkpoint interval
#   by the time it takes. WORK_DIR must be on a file system all nodes see.
#SBATCH --job-name=kdep_mm
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=5
#SBATCH --time=24:00:00
#SBATCH --requeue
#SBATCH --signal=B:USR1@180
#SBATCH --open-mode=append
#SBATCH --output=slurm-%x-%j.out
set -euo pipefail
KDEP_ROOT=${KDEP_ROOT:-${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}}
source "$KDEP_ROOT/tools/_launch.sh"

kdep_need_args 2 "CONFIG WORK_DIR [train.py args...]" "$@"
CONFIG=$1 WORK_DIR=$2
shift 2
: "${SLURM_JOB_ID:?is not set: submit this script with sbatch}"

requeue() {
  echo "SIGUSR1 (time limit near): requeueing job $SLURM_JOB_ID" >&2
  scontrol requeue "$SLURM_JOB_ID" || \
    echo "scontrol requeue $SLURM_JOB_ID failed: the job ends at its time limit" >&2
}
trap requeue USR1

echo "job $SLURM_JOB_ID, start ${SLURM_RESTART_COUNT:-0}" >&2
# srun in the background: bash runs a trap only between commands, and
# `wait` is interrupted by the signal where a foreground srun is not
# shellcheck disable=SC2086
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
srun --kill-on-bad-exit=1 ${SRUN_ARGS:-} \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" \
    --work-dir="$WORK_DIR" --launcher=slurm "$@" &
srun_pid=$!
# `wait` returns early (status > 128) when a signal is trapped: wait again
# until srun has ended (after a requeue, when Slurm ends the steps)
# a trapped USR1 interrupts `wait` (status 128+10) while srun may still run
# or may just have been ended by the requeue: wait until it is gone, then
# take its own exit status (bash keeps it for a finished background job)
while kill -0 "$srun_pid" 2>/dev/null; do
  wait "$srun_pid" || true
done
status=0
wait "$srun_pid" || status=$?
exit "$status"
