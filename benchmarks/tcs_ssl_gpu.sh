#!/usr/bin/env bash
# TCS from a self-supervised teacher (the paper's premise; issue 19 item 2)
# on one GPU, one prepared command:
#   1. MoCo v2 pre-training of a CIFAR ResNet-56 on the 50,000 CIFAR-10
#      training images without labels (configs/tcs/ssl/
#      mocov2_cifar_resnet56_cifar10.py, mmpretrain's recipe), as many
#      epochs as fit;
#   2. the TCS study's SSL arm from its backbone (benchmarks/tcs_study.py
#      --ssl-teacher: TCS online, ResNet-20 w8, the study's 5,000 labelled
#      images, views, schedule and lr; seeds 0 1 2), with the SSL store
#      (that teacher's features on the study's views) it needs.
#
#   bash benchmarks/tcs_ssl_gpu.sh --prepare  # HERE: .whl + data/gpu_study
#   bash benchmarks/tcs_ssl_gpu.sh            # ON the GPU machine
#   bash benchmarks/tcs_ssl_gpu.sh --smoke    # here, on CPU: the same code
#                      path, batch 8 on 16 images, the study's --smoke
#
# --prepare builds the wheelhouse (tools/gpu/prepare_wheelhouse.sh -> .whl)
# and data/gpu_study (tools/gpu/prepare_study_data.sh: CIFAR-10 JPEGs and
# the ResNet-56 of the study's views store); a device run carries both:
# carry [".whl", "data/gpu_study"]. On the GPU machine the script installs
# the wheelhouse (tools/gpu/install.sh, a venv over the machine's torch)
# unless $KDEP_GPU_PY names a python.
#
# Budget: KDEP_GPU_BUDGET_S (default 450 s) for the whole script. MoCo first
# runs a probe of PROBE_ITERS (40) iterations (one epoch over 40 x 256
# images); its mean iteration time (mmengine's logged `time`, last window)
# prices an epoch (195 iterations of batch 256), and the real run trains E =
# min(EPOCHS_MAX (200), the epochs that fit in what is left after RESERVE
# (170 s) for step 2) epochs, its cosine schedule set to E. Expected (an
# estimate, no GPU was lent when this was written): ~40 ms per MoCo step ->
# 8 s per epoch -> ~25-30 epochs; step 2 about 2 minutes (two stores, three
# seeds in parallel). `timeout` stops each step before the budget.
#
# Writes in $KDEP_GPU_RESULTS (default work_dirs/tcs_ssl_gpu) and copies
# into $OUT (default work_dirs/tcs_ssl_gpu_out):
#   cells/*.json          the SSL store cell and main/tcs_ssl/s{0,1,2}
#   teacher.pth, teacher.pth.json   the MoCo checkpoint, its epochs / times
#   tcs_ssl_gpu.log, env.txt
# Here, afterwards (FILES_AT: the returned folder):
#   cp FILES_AT/cells/*.json benchmarks/tcs_results/cells/
#   mkdir -p work_dirs/tcs_ssl_teacher
#   cp FILES_AT/teacher.pth FILES_AT/teacher.pth.json work_dirs/tcs_ssl_teacher/
#   python benchmarks/tcs_study.py --report      # docs/tcs.md; then commit
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
MODE=gpu
case "${1:-}" in
  --smoke) MODE=smoke ;;
  --prepare) MODE=prepare ;;
  '') ;;
  *) echo "usage: $0 [--smoke | --prepare]" >&2; exit 2 ;;
esac
DATA="${KDEP_GPU_DATA:-$REPO/data/gpu_study}"
CONFIG=configs/tcs/ssl/mocov2_cifar_resnet56_cifar10.py

if [ $MODE = prepare ]; then
  set -e
  bash "$REPO/tools/gpu/prepare_wheelhouse.sh" "$REPO/.whl"
  bash "$REPO/tools/gpu/prepare_study_data.sh" "$DATA"
  echo "[tcs ssl] ready: carry [\".whl\", \"data/gpu_study\"]"
  exit 0
fi

T0=$(date +%s)
export PYTHONUNBUFFERED=1
OUTDIR="${OUT:-$REPO/work_dirs/tcs_ssl_gpu_out}"
if [ $MODE = smoke ]; then
  BUDGET="${KDEP_GPU_BUDGET_S:-1200}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/tcs_ssl_smoke}"
  PY="${KDEP_GPU_PY:-$REPO/.venv/bin/python}"
  export OMP_NUM_THREADS=1
  DATA="${KDEP_SHARED_DATA:-$(dirname "$REPO")/shared/data}"
  BATCH=8; PROBE_ITERS=2; ITERS_PER_EPOCH=2; EPOCHS_MAX=1; RESERVE=300
  MOCO_OPTS=(train_dataloader.batch_size=8 train_dataloader.num_workers=0
             train_dataloader.persistent_workers=False
             default_hooks.logger.interval=1)
  STUDY=(--smoke --jobs 1)
  SEEDS=(0)
else
  BUDGET="${KDEP_GPU_BUDGET_S:-450}"
  RDIR="${KDEP_GPU_RESULTS:-$REPO/work_dirs/tcs_ssl_gpu}"
  PY="${KDEP_GPU_PY:-}"
  BATCH=256; PROBE_ITERS=40; ITERS_PER_EPOCH=195; EPOCHS_MAX=200; RESERVE=170
  MOCO_OPTS=(optim_wrapper.type=AmpOptimWrapper optim_wrapper.dtype=bfloat16
             env_cfg.cudnn_benchmark=True train_dataloader.num_workers=12
             train_dataloader.persistent_workers=True
             train_dataloader.pin_memory=True default_hooks.logger.interval=10)
  STUDY=(--jobs 3)
  SEEDS=(0 1 2)
fi
mkdir -p "$OUTDIR/cells" "$RDIR"
LOG="$OUTDIR/tcs_ssl_gpu.log"
: > "$LOG"
say() { echo "[tcs ssl $(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET - $(date +%s) + T0 - $1)); }

[ -f "$DATA/cifar10_jpeg.tar.gz" ] || {
  say "missing $DATA/cifar10_jpeg.tar.gz: run $0 --prepare (and carry data/gpu_study)"; exit 2; }
# shellcheck source=../tools/gpu/venv.sh
. "$REPO/tools/gpu/venv.sh"
[ -n "$PY" ] || gpu_python
export KDEP_SHARED_DATA="$DATA"
[ $MODE = gpu ] && export KDEP_DATA_CACHE="${KDEP_DATA_CACHE:-/tmp/kdep_gpu_data}"
ROOT="$("$PY" benchmarks/shared_data.py cifar10_jpeg.tar.gz | tail -1)"
[ -d "$ROOT/train" ] || { say "CIFAR-10 not unpacked ($ROOT)"; exit 2; }
MOCO_OPTS+=("train_dataloader.dataset.data_root=$ROOT")
say "python $PY, mode $MODE, budget ${BUDGET}s, data $ROOT, results $RDIR"

moco() {  # moco(work_dir, epochs, images or 0 for all, timeout_s)
  local opts=("${MOCO_OPTS[@]}" "train_cfg.max_epochs=$2"
              "param_scheduler.0.T_max=$2" "param_scheduler.0.end=$2"
              "default_hooks.checkpoint.interval=$2")
  [ "$3" = 0 ] || opts+=("train_dataloader.dataset.indices=$3")
  timeout --kill-after=5 "$4" "$PY" tools/train.py "$CONFIG" \
    --work-dir "$1" --cfg-options "${opts[@]}" 2>&1 | tee -a "$LOG"
  return "${PIPESTATUS[0]}"
}

# 1. MoCo v2: a probe, then as many epochs as fit
rm -rf "$RDIR/probe" "$RDIR/moco"
say "probe: $PROBE_ITERS iterations of batch $BATCH"
moco "$RDIR/probe" 1 $((PROBE_ITERS * BATCH)) "$(left 15)"
rc=$?
[ $rc = 0 ] || { say "the probe failed (rc $rc)"; exit 4; }
PLAN="$("$PY" tools/gpu/plan_epochs.py "$RDIR/probe" "$ITERS_PER_EPOCH" "$EPOCHS_MAX" \
  "$(left "$RESERVE")" "$RDIR/plan.json")"
read -r EPOCHS ITER_S EPOCH_S <<< "$PLAN"
say "probe: ${ITER_S}s per iteration, ${EPOCH_S}s per epoch -> $EPOCHS epochs"
[ "${EPOCHS:-0}" -ge 1 ] || { say "not one epoch fits the budget"; exit 5; }
IMAGES=0
[ $MODE = smoke ] && IMAGES=$((ITERS_PER_EPOCH * BATCH))
t1=$(date +%s)
moco "$RDIR/moco" "$EPOCHS" "$IMAGES" "$(left $((RESERVE - 30)))"
rc=$?
CKPT="$RDIR/moco/epoch_$EPOCHS.pth"
[ $rc = 0 ] && [ -f "$CKPT" ] || { say "MoCo v2 run failed (rc $rc)"; exit 6; }
cp "$CKPT" "$RDIR/teacher.pth"
"$PY" - "$RDIR/plan.json" "$RDIR/teacher.pth.json" "$(( $(date +%s) - t1 ))" \
  "$MODE" <<'EOF'
import json, sys
plan = json.load(open(sys.argv[1]))
json.dump(dict(plan, train_wall_s=float(sys.argv[3]), mode=sys.argv[4],
               config='configs/tcs/ssl/mocov2_cifar_resnet56_cifar10.py'),
          open(sys.argv[2], 'w'), indent=1)
EOF
say "MoCo v2: $EPOCHS epochs in $(( $(date +%s) - t1 ))s -> $RDIR/teacher.pth"

# 2. the TCS study's SSL arm, in a scratch results folder seeded with the
# committed cells it reads (the tcs_store sweep, whose lr it takes)
RES="$RDIR/results"
rm -rf "$RES"
mkdir -p "$RES/cells"
[ $MODE = gpu ] && cp benchmarks/tcs_results/cells/*.json "$RES/cells/"
ONLY=()
for s in "${SEEDS[@]}"; do ONLY+=("main/tcs_ssl/s$s"); done
timeout --kill-after=5 "$(left 10)" "$PY" benchmarks/tcs_study.py "${STUDY[@]}" \
  --results-dir "$RES" --work-dir "$RDIR/work" \
  --ssl-teacher "$RDIR/teacher.pth" --only "${ONLY[@]}" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
say "TCS study exit code $rc"

gpu_env_txt "$OUTDIR/env.txt"
cp "$RDIR/teacher.pth" "$RDIR/teacher.pth.json" "$OUTDIR/"
for f in "$RES"/cells/store__ssl_v*.json "$RES"/cells/main__tcs_ssl__s*.json; do
  [ -f "$f" ] && cp "$f" "$OUTDIR/cells/"
done
say "done in $(( $(date +%s) - T0 ))s; in $OUTDIR: $(ls "$OUTDIR" "$OUTDIR/cells" | tr '\n' ' ')"
exit $([ "$rc" = 0 ] && echo 0 || echo 1)
