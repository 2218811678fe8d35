#!/usr/bin/env bash
# Prepare the data the GPU study (benchmarks/study_gpu.sh) reads, in a
# git-ignored folder that a device run carries (`carry: ["data/gpu_study"]`;
# `data/` is in .gitignore). ../shared does not travel, and its CamVid and
# hymenoptera archives (100 MB) would not fit the 64 MiB a run carries, so:
#
#   bash tools/gpu/prepare_study_data.sh [DEST]     # DEST: data/gpu_study
#
#   DEST/cifar10_jpeg.tar.gz            ../shared/data's, sha256-checked
#                                       (19.8 MB; unpacked and decoded once
#                                       on the GPU machine)
#   DEST/cifar10_resnets/resnet56-4bfd9763.th   the teacher (+ LICENSE)
#   DEST/probe_arrays.{npz,json}        the frozen probes' downstream arrays
#                                       (BCCD crops, CamVid 128x96 + labels
#                                       at stride 4, hymenoptera 64 px) built
#                                       by the CPU study's own functions and
#                                       stored as lossless WebP (~19 MB), with
#                                       the sha256 of every decoded array
#   DEST/MANIFEST.txt                   sha256 and bytes of every file
#
# DEST keeps the layout of ../shared/data, so the study reads it through
# KDEP_SHARED_DATA=DEST. Checks that DEST + .whl + the working tree stay
# under the 64 MiB a device run carries. Takes about 30 s.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${1:-$REPO/data/gpu_study}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
SHARED="${KDEP_SHARED_DATA:-$(dirname "$REPO")/shared/data}"
LIMIT=$((64 * 1024 * 1024))

mkdir -p "$DEST/cifar10_resnets"
DEST="$(cd "$DEST" && pwd)"
for f in cifar10_jpeg.tar.gz cifar10_resnets/resnet56-4bfd9763.th; do
  want="$(grep "  $f\$" "$SHARED/SHA256SUMS" | cut -d' ' -f1)"
  [ -n "$want" ] || { echo "[study data] $f not in $SHARED/SHA256SUMS" >&2; exit 1; }
  if [ ! -f "$DEST/$f" ] || [ "$(sha256sum "$DEST/$f" | cut -d' ' -f1)" != "$want" ]; then
    cp "$SHARED/$f" "$DEST/$f.tmp" && mv "$DEST/$f.tmp" "$DEST/$f"
  fi
  [ "$(sha256sum "$DEST/$f" | cut -d' ' -f1)" = "$want" ] || {
    echo "[study data] $f: sha256 differs from SHA256SUMS" >&2; exit 1; }
done
cp "$SHARED/cifar10_resnets/LICENSE" "$DEST/cifar10_resnets/LICENSE"

echo "[study data] probe arrays -> $DEST"
(cd "$REPO/benchmarks" && KDEP_SHARED_DATA="$SHARED" "$PY" - "$DEST" <<'EOF'
import sys
sys.path.insert(0, '.')
from study.data import build_probe_pack
from study.spec import STUDY_DIR, load_study
meta = build_probe_pack(sys.argv[1], load_study(f'{STUDY_DIR}/study_gpu.py'))
for name, m in meta['sets'].items():
    print(f"  {name:14s} {m['n']:5d} x {m['shape'][1:]}")
EOF
)

(cd "$DEST" && find . -type f ! -name MANIFEST.txt -printf '%P\n' | sort | \
  while read -r f; do printf '%s\t%s\t%s\n' "$(sha256sum "$f" | cut -d' ' -f1)" \
    "$(stat -c %s "$f")" "$f"; done > MANIFEST.txt)
data=$(du -cb "$DEST" | tail -1 | cut -f1)
whl=0; [ -d "$REPO/.whl" ] && whl=$(du -cb "$REPO/.whl" | tail -1 | cut -f1)
tree=$(cd "$REPO" && git ls-files -co --exclude-standard -z | \
  xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
total=$((data + whl + tree))
echo "[study data] $DEST: $data bytes; with .whl ($whl) and the working tree ($tree): $total of $LIMIT"
[ "$total" -lt "$LIMIT" ] || { echo "[study data] over the 64 MiB a run carries" >&2; exit 1; }
