#!/usr/bin/env bash
# After a device run of benchmarks/study_gpu.sh: put the files it returned
# (the run's files_at folder: table.md, cells.tar.gz, study_gpu.log,
# env.txt) into benchmarks/study_results_gpu/, to be committed.
#   bash tools/gpu/fetch_study_results.sh FILES_AT
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
SRC="${1:?usage: fetch_study_results.sh FILES_AT}"
DST="$REPO/benchmarks/study_results_gpu"
mkdir -p "$DST/cells"
tar xzf "$SRC/cells.tar.gz" -C "$DST"
cp "$SRC/table.md" "$DST/table.md"
for f in study_gpu.log env.txt; do [ -f "$SRC/$f" ] && cp "$SRC/$f" "$DST/$f"; done
echo "in $DST: $(ls "$DST" | tr '\n' ' '); cells: $(ls "$DST/cells" | wc -l)"
echo "commit: git add benchmarks/study_results_gpu && git commit -m '...' -- benchmarks/study_results_gpu"
