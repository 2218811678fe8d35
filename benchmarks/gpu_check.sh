#!/usr/bin/env bash
# The GPU performance table (issue 18 item 4), one prepared command:
#
#   bash benchmarks/gpu_check.sh            # ON the GPU machine (docs/gpu.md)
#   bash benchmarks/gpu_check.sh --smoke    # here, on CPU: the same code path
#                                           # with each benchmark's SMOKE_ARGS
#
# Needs, carried with the working tree: .whl/ (bash
# tools/gpu/prepare_wheelhouse.sh). On the GPU machine (Python 3.12, its own
# torch + CUDA, no package registry) it first runs tools/gpu/install.sh (a
# venv made with --system-site-packages over the machine's torch, the wheels
# installed with --no-index --no-deps) unless $KDEP_GPU_PY names a python to
# use, or the venv is already there and imports (a rerun on a warm machine).
# kdep_mm is then imported from this working tree (PYTHONPATH), so a
# wheelhouse built before the last commit cannot run stale benchmark code.
# Then
#
#   benchmarks/performance_table.py --gpu --device cuda --budget-s LEFT
#
# runs every step-time benchmark with its GPU_ARGS (KDEP and TCS ResNet-50 ->
# ResNet-18 at 224 px batch 128, DMAE ViT-L -> ViT-B at batch 64, the
# ensemble at its ImageNet setting at batch 128; fp32 and bf16), each with a
# timeout (the time left less 30 s per run to come), and writes the page. A
# benchmark that runs out of time is stopped (with its subprocesses) and the
# page says so;
# the others still appear. Finished runs are kept in $KDEP_GPU_RESULTS
# (default work_dirs/gpu_check, git-ignored): a rerun on the still-warm
# machine reuses them and only runs what is missing.
#
# Time: the whole script stops within $KDEP_GPU_BUDGET_S (default 420 s,
# 7 min; `timeout` kills what is left 10 s after the table's own budget), so
# a device call with timeout_s 450 leaves, of 15 minutes of device time, room
# for the machine's start and one rerun that resumes from the kept runs.
# Not measured yet (no GPU run so far): the benchmarks start about 50 fresh
# python processes in all (KDEP's memory arms are most of them), each paying
# imports and CUDA initialisation (assumed 5-8 s) before a few seconds of
# steps, so expect most of the budget to be used.
#
# After the table, 3-iteration runs of the tiny KDEP model under Runner +
# bf16, FlexibleRunner + FSDP and FlexibleRunner + DeepSpeed (issue 21,
# benchmarks/strategy_check.py) are appended to the page; the table's budget
# keeps $KDEP_GPU_STRATEGY_S (default 90 s, smoke 150 s) for them.
#
# Environment: KDEP_GPU_BUDGET_S, KDEP_GPU_PY, KDEP_GPU_VENV (install.sh),
# KDEP_GPU_RESULTS, KDEP_GPU_ONLY (e.g. tcs,dmae: --only), KDEP_GPU_AMPS
# (--amps, default fp32,bf16), KDEP_GPU_TIMEOUTS ("dmae=60 tcs=90":
# --timeout caps), OUT (default work_dirs/gpu_check_out).
#
# Writes into $OUT (the device tool brings it back):
#   performance_gpu.md   the page: copy it to docs/performance_gpu.md here
#                        and commit it (docs/performance_gpu.md says how)
#   gpu_check.log        everything printed
#   env.txt              nvidia-smi, python, torch and the venv's packages
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SMOKE=0
[ "${1:-}" = --smoke ] && SMOKE=1
T0=$(date +%s)
export PYTHONUNBUFFERED=1
OUTDIR="${OUT:-$REPO/work_dirs/gpu_check_out}"
if [ $SMOKE = 1 ]; then
  BUDGET="${KDEP_GPU_BUDGET_S:-600}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/gpu_check_smoke}"
  DEVICE=cpu; MODE=(--gpu --smoke)
  PY="${KDEP_GPU_PY:-$REPO/.venv/bin/python}"
else
  BUDGET="${KDEP_GPU_BUDGET_S:-420}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/gpu_check}"
  DEVICE=cuda; MODE=(--gpu)
  PY="${KDEP_GPU_PY:-}"
fi
mkdir -p "$OUTDIR" "$RDIR"
LOG="$OUTDIR/gpu_check.log"
: > "$LOG"
say() { echo "[gpu_check $(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }

# shellcheck source=../tools/gpu/venv.sh
. "$REPO/tools/gpu/venv.sh"
[ -n "$PY" ] || gpu_python
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
say "python $PY, device $DEVICE, budget ${BUDGET}s, kept runs in $RDIR"

EXTRA=()
[ -n "${KDEP_GPU_ONLY:-}" ] && EXTRA+=(--only "$KDEP_GPU_ONLY")
[ -n "${KDEP_GPU_AMPS:-}" ] && EXTRA+=(--amps "$KDEP_GPU_AMPS")
for t in ${KDEP_GPU_TIMEOUTS:-}; do EXTRA+=(--timeout "$t"); done
PAGE="$OUTDIR/performance_gpu.md"
rm -f "$PAGE"
# kept for the runner/strategy runs after the table (issue 21)
STRAT_S="${KDEP_GPU_STRATEGY_S:-$([ $SMOKE = 1 ] && echo 150 || echo 90)}"
LEFT=$((T0 + BUDGET - $(date +%s) - 25 - STRAT_S))   # 25 s: env.txt, copy
[ $LEFT -gt 20 ] || { say "no time left (budget ${BUDGET}s)"; exit 4; }
timeout --kill-after=5 $((LEFT + 10)) "$PY" benchmarks/performance_table.py \
  "${MODE[@]}" --device "$DEVICE" --budget-s "$LEFT" --results-dir "$RDIR" \
  --out "$PAGE" "${EXTRA[@]}" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
case $rc in
  0) say "every benchmark finished and every target is MET" ;;
  1) say "the table is written; a target is NOT MET or a benchmark did not finish (see the page)" ;;
  124|137) say "performance_table.py itself was stopped at the budget (rc $rc)" ;;
  *) say "performance_table.py failed (rc $rc)" ;;
esac

# Runner + bf16, FlexibleRunner + FSDP (1 GPU), FlexibleRunner + DeepSpeed:
# 3 iterations each of the tiny KDEP model, appended to the page after the
# table (benchmarks/strategy_check.py; a run without deepspeed says skipped;
# the smoke run does the FSDP one only)
if [ -f "$PAGE" ]; then
  SLEFT=$((T0 + BUDGET - $(date +%s) - 20))
  if [ $SLEFT -gt 20 ]; then
    say "runner/strategy runs (benchmarks/strategy_check.py, ${SLEFT}s)"
    timeout --kill-after=5 $((SLEFT + 5)) "$PY" benchmarks/strategy_check.py \
      --device "$DEVICE" --budget-s "$SLEFT" --work-dir "$RDIR/strategies" \
      $([ $SMOKE = 1 ] && echo "--per-run-s 120 --only fsdp" || echo "--per-run-s 60") \
      >> "$PAGE" 2>> "$LOG"
    say "runner/strategy runs: rc $? (1: one failed; the page says which)"
  else
    say "no time left for the runner/strategy runs"
  fi
fi

gpu_env_txt "$OUTDIR/env.txt"
if [ -f "$PAGE" ]; then
  say "done in $(( $(date +%s) - T0 ))s; in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
  sed -n '1,/^Each benchmark/p' "$PAGE"
else
  say "no page written; see $LOG"
fi
[ -f "$PAGE" ] && [ "$rc" -le 1 ] && exit "$rc"
exit 5
