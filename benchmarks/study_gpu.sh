#!/usr/bin/env bash
# The KDEP study on one GPU (issue 15 item 9), one prepared command:
#
#   bash benchmarks/study_gpu.sh            # ON the GPU machine (docs/gpu.md)
#   bash benchmarks/study_gpu.sh --smoke    # here, on CPU: the same code path,
#                                           # a few images, 8 steps per run
#
# Needs, carried with the working tree: .whl/ (tools/gpu/prepare_wheelhouse.sh)
# and data/gpu_study/ (tools/gpu/prepare_study_data.sh). On the GPU machine it
# first runs tools/gpu/install.sh (a venv over the machine's torch) unless
# $KDEP_GPU_PY names a python to use. Then benchmarks/kdep_study.py runs
# --study configs/study/study_gpu.py --device cuda: the teacher PCA, the arms
# a b c d e f g (ResNet-20 w8 student, seed 0, batch 256) and the four frozen
# probes on each arm's final export, with an internal time guard (a cell is
# skipped when its predicted time would pass the budget; `timeout` kills
# what is left 15 s before the end), then writes the table.
#
# Design (configs/study/study_gpu.py): pool = all of CIFAR-10 train but the
# probe's 7,000 images (43,000; "10%" = 4,300), decoded once into memory and
# served with the same RandomCrop (mean-colour padding) + flip. Budgets:
# 1,000 steps for each 10% arm (c d e f), 4,000 for (b) supervised 100%,
# 2,000 for (g) KDEP 100% (the CPU study's 1 : 4 : 2).
#
# Expected time on one H200. FLOPs per 32x32 image (torch.utils.flop_counter):
# student ResNet-20 w8 0.0205 G forward, 0.061 G forward + backward; teacher
# ResNet-56 0.251 G forward. A KD step at batch 256 (d e f g: teacher forward
# + student forward/backward) is 80 GFLOP, a supervised one (b c) 15.6 GFLOP:
# 4 ms and 0.8 ms at an assumed 20 TFLOP/s on convolutions of 8-64 channels.
# Such small steps are bound instead by the per-step overhead of the mmengine
# loop (hooks, the loss's .item() sync, collating 256 samples, ~500 kernel
# launches): assumed 20 ms per KD step and 15 ms per supervised step, so
# 5,000 KD steps (100 s) + 5,000 supervised steps (75 s) = 175 s of training,
# plus about 160 s of fixed costs (install 20, unpack + decode CIFAR 20,
# imports 10, PCA 5, six Runner builds 30, seven probe cells of ~10 s: L-BFGS
# on the CPU, mostly CamVid's 60,000 pixels): about 5.6 minutes. The guard's
# budget is KDEP_GPU_BUDGET_S (default 400 s, 6.7 min, for the whole script):
# if the steps are slower than assumed, the last arms in the order a f b d e
# c g are skipped, and the table says which.
#
# Writes (results in $KDEP_GPU_RESULTS, default work_dirs/study_gpu, which is
# git-ignored: a rerun on a still-warm machine resumes there) and copies into
# $OUT (the device tool brings it back; default work_dirs/study_gpu_out):
#   table.md         the GPU table (the report puts it beside the CPU one)
#   cells.tar.gz     cells/*.json + skipped.json
#   study_gpu.log    everything printed
#   env.txt          nvidia-smi, python, torch and the venv's packages
# and, not in smoke mode, benchmarks/study_results_gpu/{table.md,cells/}.
# Here: tools/gpu/fetch_study_results.sh FILES_AT puts the returned files
# into benchmarks/study_results_gpu/ to be committed.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SMOKE=0
[ "${1:-}" = --smoke ] && SMOKE=1
T0=$(date +%s)
export KDEP_GPU_T0=$T0 PYTHONUNBUFFERED=1
DATA="${KDEP_GPU_DATA:-$REPO/data/gpu_study}"
OUTDIR="${OUT:-$REPO/work_dirs/study_gpu_out}"
if [ $SMOKE = 1 ]; then
  BUDGET="${KDEP_GPU_BUDGET_S:-1200}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/study_gpu_smoke}"
  DEVICE=cpu; THREADS=1; FLAGS=(--smoke)
  PY="${KDEP_GPU_PY:-$REPO/.venv/bin/python}"
else
  BUDGET="${KDEP_GPU_BUDGET_S:-400}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/study_gpu}"
  DEVICE=cuda; THREADS=8; FLAGS=()
  PY="${KDEP_GPU_PY:-}"
fi
mkdir -p "$OUTDIR" "$RDIR"
LOG="$OUTDIR/study_gpu.log"
: > "$LOG"
say() { echo "[study_gpu $(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

for f in probe_arrays.npz probe_arrays.json cifar10_jpeg.tar.gz \
         cifar10_resnets/resnet56-4bfd9763.th; do
  [ -f "$DATA/$f" ] || { say "missing $DATA/$f: run tools/gpu/prepare_study_data.sh (and carry data/gpu_study)"; exit 2; }
done
# shellcheck source=../tools/gpu/venv.sh
. "$REPO/tools/gpu/venv.sh"
[ -n "$PY" ] || gpu_python
say "python $PY, device $DEVICE, budget ${BUDGET}s, results $RDIR"

export KDEP_SHARED_DATA="$DATA"
export KDEP_DATA_CACHE="${KDEP_DATA_CACHE:-/tmp/kdep_gpu_data}"
STUDY=(benchmarks/kdep_study.py --study configs/study/study_gpu.py
       --results-dir "$RDIR" --device "$DEVICE" --data-pack "$DATA"
       --only 'pca,pretrain/*,probe/*/m3' "${FLAGS[@]}")
now=$(date +%s)
DEADLINE=$((T0 + BUDGET - 30))         # the guard: predicted cells must end here
HARD=$((T0 + BUDGET - 15 - now))        # then timeout kills what runs
[ $HARD -gt 10 ] || { say "no time left (budget ${BUDGET}s)"; exit 4; }
timeout --kill-after=5 "$HARD" "$PY" "${STUDY[@]}" --threads "$THREADS" \
  --deadline-at "$DEADLINE" --no-report --gpu-table "$RDIR/table.md" \
  2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
[ "$rc" = 124 ] || [ "$rc" = 137 ] && say "the study was stopped at the budget (rc $rc)"
say "study exit code $rc"
if [ "$rc" = 124 ] || [ "$rc" = 137 ] || [ ! -f "$RDIR/table.md" ]; then
  say "writing the table from the cells that finished"
  "$PY" "${STUDY[@]}" --report --gpu-table "$RDIR/table.md" 2>&1 | tee -a "$LOG"
fi

gpu_env_txt "$OUTDIR/env.txt"
cp "$RDIR/table.md" "$OUTDIR/table.md" 2>/dev/null || say "no table written"
(cd "$RDIR" && tar czf "$OUTDIR/cells.tar.gz" cells/*.json $( [ -f skipped.json ] && echo skipped.json ) 2>/dev/null) \
  || say "no cells to pack"
if [ $SMOKE = 0 ]; then
  mkdir -p benchmarks/study_results_gpu/cells
  cp "$RDIR"/cells/*.json benchmarks/study_results_gpu/cells/ 2>/dev/null
  cp "$RDIR/table.md" benchmarks/study_results_gpu/table.md 2>/dev/null
fi
say "done in $(( $(date +%s) - T0 ))s; in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
[ -f "$OUTDIR/table.md" ] && cat "$OUTDIR/table.md"
exit $([ "$rc" = 0 ] && echo 0 || echo 1)
