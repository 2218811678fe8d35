#!/usr/bin/env bash
# DMAE at CIFAR-10 scale on one GPU (issue 19 item 3), one prepared command:
#
#   bash benchmarks/dmae_cifar_gpu.sh           # ON the GPU machine
#   bash benchmarks/dmae_cifar_gpu.sh --smoke   # here, on CPU: the same code
#                                               # path, preset smoke
# (further arguments go to benchmarks/dmae_study.py)
#
# Carried with the working tree (the device tool's `carry`): .whl/
# (tools/gpu/prepare_wheelhouse.sh) and data/gpu_study/ (only its
# cifar10_jpeg.tar.gz is read; tools/gpu/prepare_study_data.sh). On the GPU
# machine it installs the wheelhouse (tools/gpu/install.sh, a venv over the
# machine's torch) unless $KDEP_GPU_PY names a python, then runs
# benchmarks/dmae_study.py --preset gpu --device cuda (configs/dmae/cifar/
# study.py: MAE teacher ViT 192-d x 12, student ViT 128-d x 8, 32 px, patch 4;
# teacher 60 epochs, then per seed mae75 / dmae75 / dmae95 / dmae98, 20
# pre-training epochs each, linear probe + 10 fine-tuning epochs each; the
# random-init baseline; seeds 0 1 2; batch 512) with a time guard: a cell predicted (from
# the last finished cell of its kind) to end past the budget is skipped, and
# `timeout` stops what is left 20 s before the end. Seeds run one after the
# other, so a short budget loses seed 2 first, never an arm of seed 0.
#
# Budget: KDEP_GPU_BUDGET_S, default 450 s for the whole script (install ~20
# s, unpack + decode CIFAR-10 ~20 s, then the cells), under the issue's 8
# minutes. Expected (an estimate, not a measurement: no GPU was lent when
# this was written): steps of these small ViTs at batch 512 are bound by
# kernel launches on an H200 (~1,000-1,200 kernels per pre-training step,
# ~8 ms; ~5 ms per fine-tuning step), 88 steps per epoch of the 45,000-image
# pool: teacher ~45 s, each student ~15 s (x 12), each fine-tuning ~5 s
# (x 15), each probe ~5 s (x 15, L-BFGS on the CPU): ~6.5 min for 3 seeds.
#
# Writes (results in $KDEP_GPU_RESULTS, default work_dirs/dmae_cifar_gpu;
# a rerun on a warm machine resumes there) and copies into $OUT (default
# work_dirs/dmae_cifar_gpu_out):
#   cells.tar.gz   cells/*.json (+ skipped_*.json, measure.json)
#   report.md      the results table (dmae_study.py --print-report)
#   dmae_gpu.log   everything printed;  env.txt  nvidia-smi, python, torch
# Here: tar xzf FILES_AT/cells.tar.gz -C benchmarks/dmae_results/gpu, then
# python benchmarks/dmae_study.py --preset gpu --report (docs/dmae.md).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SMOKE=0
if [ "${1:-}" = --smoke ]; then SMOKE=1; shift; fi
EXTRA=("$@")   # passed on to dmae_study.py (e.g. --seeds 0 --only ...)
T0=$(date +%s)
export PYTHONUNBUFFERED=1
DATA="${KDEP_GPU_DATA:-$REPO/data/gpu_study}"
OUTDIR="${OUT:-$REPO/work_dirs/dmae_cifar_gpu_out}"
if [ $SMOKE = 1 ]; then
  BUDGET="${KDEP_GPU_BUDGET_S:-600}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/dmae_cifar_gpu_smoke}"
  FLAGS=(--preset smoke --device cpu --threads 1)
  PY="${KDEP_GPU_PY:-$REPO/.venv/bin/python}"
else
  BUDGET="${KDEP_GPU_BUDGET_S:-450}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/dmae_cifar_gpu}"
  FLAGS=(--preset gpu --device cuda --threads 8)
  PY="${KDEP_GPU_PY:-}"
fi
mkdir -p "$OUTDIR" "$RDIR"
LOG="$OUTDIR/dmae_gpu.log"
: > "$LOG"
say() { echo "[dmae_gpu $(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

[ -f "$DATA/cifar10_jpeg.tar.gz" ] || { say "missing $DATA/cifar10_jpeg.tar.gz: run tools/gpu/prepare_study_data.sh (and carry data/gpu_study)"; exit 2; }
# shellcheck source=../tools/gpu/venv.sh
. "$REPO/tools/gpu/venv.sh"
[ -n "$PY" ] || gpu_python
say "python $PY, budget ${BUDGET}s, results $RDIR"

export KDEP_SHARED_DATA="$DATA"
export KDEP_DATA_CACHE="${KDEP_DATA_CACHE:-/tmp/kdep_gpu_data}"
STUDY=(benchmarks/dmae_study.py "${FLAGS[@]}" --results-dir "$RDIR"
       --work-dir "$RDIR/work" "${EXTRA[@]}")
now=$(date +%s)
DEADLINE=$((T0 + BUDGET - 30))
HARD=$((T0 + BUDGET - 20 - now))
[ $HARD -gt 10 ] || { say "no time left (budget ${BUDGET}s)"; exit 4; }
timeout --kill-after=5 "$HARD" "$PY" "${STUDY[@]}" --deadline-at "$DEADLINE" \
  2>&1 | grep -v 'is skipped since its requires_grad=False' | tee -a "$LOG"
rc=${PIPESTATUS[0]}
{ [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && say "stopped at the budget (rc $rc)"
say "study exit code $rc"
"$PY" "${STUDY[@]}" --print-report > "$OUTDIR/report.md" 2>>"$LOG" \
  || say "no report"
gpu_env_txt "$OUTDIR/env.txt"
(cd "$RDIR" && tar czf "$OUTDIR/cells.tar.gz" cells/*.json $(ls skipped_*.json 2>/dev/null)) \
  || say "no cells to pack"
say "done in $(( $(date +%s) - T0 ))s; in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
cat "$OUTDIR/report.md" 2>/dev/null
exit $([ "$rc" = 0 ] && echo 0 || echo 1)
