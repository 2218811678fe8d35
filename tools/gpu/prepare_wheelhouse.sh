#!/usr/bin/env bash
# Build the GPU wheelhouse: everything of OpenMMLab + kdep_mm that the GPU
# machine (Python 3.12.3, torch 2.11 + CUDA 13, no package registry, no
# OpenMMLab; its package list: tools/gpu/gpu_machine_packages.txt) lacks, as
# wheels in a git-ignored folder that a device run carries (`carry: [".whl"]`).
#
#   bash tools/gpu/prepare_wheelhouse.sh [DEST]      # DEST defaults to .whl
#
# Run HERE (on the development machine, with the package registry), from any
# directory. It puts into DEST:
#   * mmengine 0.10.7, mmpretrain 1.2.0 and every dependency of theirs that
#     the GPU machine lacks (addict, yapf, platformdirs, termcolor, mat4py,
#     modelindex, model-index, ordered-set, importlib-metadata,
#     lazy-importer): pure-Python wheels from the registry, pinned to the
#     versions of the project venv;
#   * mmcv 2.1.0 built from its sdist with MMCV_WITH_OPS=0 (its dist name is
#     then mmcv-lite; the package is `mmcv`, pure Python, py2.py3-none-any);
#   * kdep_mm itself, built as tests/integration/test_packaging.py builds it: from a copy
#     of the working tree (tracked + untracked-not-ignored files), so the
#     source tree is never written to;
#   * MANIFEST.txt: name, version, tag, bytes and sha256 of every wheel.
# Not carried (tools/gpu/wheelhouse.py: NOT_CARRIED): mmdet and mmseg import
# mmcv.ops at module level, so they cannot be imported with mmcv-lite; the
# GPU scripts do not import them (kdep_mm.datasets does; see docs/gpu.md).
# It then checks the dependency closure against the GPU machine's package
# list, that every wheel is pure Python, and that DEST is under 64 MiB.
# Takes about 20 s (mmcv-lite builds in ~10 s: no C++).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
DEST="${1:-$REPO/.whl}"
PY="${PYTHON:-$REPO/.venv/bin/python}"
LIMIT=$((64 * 1024 * 1024))

# the pure-Python dependencies, pinned (the project venv's versions)
PURE=(
  mmengine==0.10.7 mmpretrain==1.2.0
  addict==2.4.0 yapf==0.43.0 platformdirs==4.14.9 termcolor==3.3.0
  mat4py==0.6.0 modelindex==0.0.2 model-index==0.1.11 ordered-set==4.1.0
  importlib-metadata==10.2.0 lazy-importer==0.1.0
)

mkdir -p "$DEST"
DEST="$(cd "$DEST" && pwd)"
rm -f "$DEST"/*.whl "$DEST/MANIFEST.txt"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
PIP=("$PY" -m pip --disable-pip-version-check -q)

echo "[wheelhouse] pure-Python wheels for CPython 3.12 -> $DEST"
"${PIP[@]}" download --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation py -d "$DEST" "${PURE[@]}" 2>&1 | grep -v "is ignored" || true
for spec in "${PURE[@]}"; do  # pip download's exit code hides nothing, but check
  name="${spec%%==*}"; ver="${spec##*==}"
  pat="$(echo "$name" | tr '-' '_')"
  ls "$DEST" | grep -qi "^${pat}-${ver}-" || { echo "[wheelhouse] missing $spec" >&2; exit 1; }
done

echo "[wheelhouse] mmcv 2.1.0 from its sdist, MMCV_WITH_OPS=0"
"${PIP[@]}" download --no-deps --no-binary=:all: -d "$TMP/sdist" mmcv==2.1.0 \
  2>&1 | grep -v "is ignored" || true
MMCV_WITH_OPS=0 "${PIP[@]}" wheel --no-deps --no-build-isolation \
  -w "$DEST" "$TMP"/sdist/mmcv-2.1.0.tar.gz
ls "$DEST"/mmcv_lite-2.1.0-*-none-any.whl >/dev/null

echo "[wheelhouse] kdep_mm from a copy of the working tree"
mkdir -p "$TMP/src"
(cd "$REPO" && git ls-files -co --exclude-standard -z | \
  while IFS= read -r -d '' f; do [ -f "$f" ] && cp --parents "$f" "$TMP/src/"; done)
"${PIP[@]}" wheel --no-deps --no-build-isolation --no-index -w "$DEST" "$TMP/src"
ls "$DEST"/kdep_mm-*-py3-none-any.whl >/dev/null

"$PY" "$REPO/tools/gpu/wheelhouse.py" closure "$DEST"
"$PY" "$REPO/tools/gpu/wheelhouse.py" manifest "$DEST"
total=$(du -cb "$DEST"/* | tail -1 | cut -f1)
if [ "$total" -ge "$LIMIT" ]; then
  echo "[wheelhouse] $DEST is $total bytes: over 64 MiB" >&2; exit 1
fi
echo "[wheelhouse] done: $DEST, $total bytes"
