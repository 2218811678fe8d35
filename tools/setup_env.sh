#!/usr/bin/env bash
# Set up (or refresh) the project-local environment for kdep_mm in .venv/.
#
# Idempotent: a second run with a warm cache only verifies and finishes fast.
#   bash tools/setup_env.sh
# Environment overrides:
#   PYTHON=python3.11            interpreter used to create .venv
#   KDEP_TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"  another torch pair
#   KDEP_TORCH_INDEX_URL=...     extra index for another CUDA build of torch
#   KDEP_CACHE_DIR=~/.cache/kdep_mm   where the built mmcv wheel is kept
#   KDEP_VENV=.venv              where the environment lives
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
VENV="${KDEP_VENV:-$ROOT/.venv}"
CACHE_DIR="${KDEP_CACHE_DIR:-$HOME/.cache/kdep_mm}"
TORCH_SPEC="${KDEP_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
MMCV_VERSION=2.1.0
OPENMMLAB_SPEC="mmengine==0.10.7 mmpretrain==1.2.0 mmdet==3.3.0 mmsegmentation==1.2.2 ftfy regex"
TEST_SPEC="pytest>=7 matplotlib"
# lint (.ci/run: ruff, then import-linter's `lint-imports` for the layers
# in pyproject.toml), `mim train/test kdep_mm ...`, TensorBoard event files
RUFF_SPEC="ruff==0.17.6"
IMPORT_LINTER_SPEC="import-linter==2.17"
MIM_SPEC="openmim==0.3.9"
# timm teachers (configs/timm): --no-deps, as its huggingface_hub/safetensors
# are needed only to download weights (kdep_mm loads local checkpoints) and
# a plain install would pull setuptools past the <70 that mmcv's build needs
TIMM_SPEC="timm==1.0.31"
# openmim's requirements without opendatalab, whose openxlab pins and
# downgrades setuptools, requests, rich, tqdm, filelock and packaging
MIM_DEPS="click colorama model-index pandas requests rich tabulate"

say() { printf '\033[1m[setup_env]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup_env] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }
t0=$(date +%s)

# ---- 1. prerequisites ---------------------------------------------------
command -v "$PYTHON" >/dev/null 2>&1 || die "'$PYTHON' not found. Install Python 3.11 (e.g. 'pyenv install 3.11' or 'apt-get install python3.11 python3.11-venv') or set PYTHON=/path/to/python3.11."
pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
[ "$pyver" = "3.11" ] || die "kdep_mm's pinned stack needs Python 3.11; '$PYTHON' is Python $pyver. Set PYTHON=/path/to/python3.11."

# ---- 2. virtual environment ---------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV" || die "could not create a venv with '$PYTHON -m venv'. On Debian/Ubuntu: apt-get install python3.11-venv."
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check -q)

have() { "$PY" - "$@" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for spec in sys.argv[1:]:
    name, _, want = spec.partition("==")
    try:
        got = version(name)
    except PackageNotFoundError:
        ok = False; break
    if want and got.split("+")[0] != want:
        ok = False; break
sys.exit(0 if ok else 1)
PYEOF
}

# ---- 3. torch ----------------------------------------------------------
# shellcheck disable=SC2086
if ! have $TORCH_SPEC; then
  say "installing $TORCH_SPEC"
  extra=()
  [ -n "${KDEP_TORCH_INDEX_URL:-}" ] && extra=(--extra-index-url "$KDEP_TORCH_INDEX_URL")
  # shellcheck disable=SC2086
  "${PIP[@]}" install ${extra[@]+"${extra[@]}"} $TORCH_SPEC || die "pip could not install '$TORCH_SPEC'."
fi
build_tools() {
  "${PIP[@]}" install "setuptools<70" wheel ninja packaging >/dev/null || die "could not install build tools (setuptools<70, wheel, ninja)."
}

# ---- 4. mmcv with compiled ops, built once and cached --------------------
torch_ver=$("$PY" -c 'import torch; print(torch.__version__)')
abi=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
key="mmcv-${MMCV_VERSION}_torch-${torch_ver//+/_}_${abi}_$(uname -m)"
wheel_dir="$CACHE_DIR/wheels/$key"
if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
  whl=$(ls "$wheel_dir"/mmcv-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$whl" ]; then
    command -v "${CXX:-g++}" >/dev/null 2>&1 || die "no C++ compiler found; mmcv $MMCV_VERSION must be built from source. Install one: apt-get install build-essential (or set CXX)."
    build_tools
    say "building mmcv $MMCV_VERSION with ops for torch $torch_ver (about 12 minutes on 2 cores; cached in $wheel_dir)"
    build=$(mktemp -d)
    trap 'rm -rf "$build"' EXIT
    "${PIP[@]}" download --no-deps --no-binary :all: "mmcv==$MMCV_VERSION" -d "$build" || die "could not download the mmcv $MMCV_VERSION sdist from PyPI."
    tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
    src="$build/mmcv-$MMCV_VERSION"
    # torch >= 2.4 headers need C++20; mmcv 2.1.0 asks for C++17.
    sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
    log="$CACHE_DIR/mmcv-build.log"
    mkdir -p "$CACHE_DIR"
    if ! (cd "$src" && MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
          "$PY" -m pip wheel --no-deps --no-build-isolation --no-cache-dir -w "$build/dist" . >"$log" 2>&1); then
      tail -n 30 "$log" >&2
      die "the mmcv build failed (full log: $log). Check that g++ supports -std=c++20 (g++ >= 10) and that the Python headers are installed (apt-get install python3.11-dev)."
    fi
    mkdir -p "$wheel_dir"
    cp "$build"/dist/mmcv-*.whl "$wheel_dir.tmp.whl"
    mv "$wheel_dir.tmp.whl" "$wheel_dir/$(basename "$build"/dist/mmcv-*.whl)"
    whl=$(ls "$wheel_dir"/mmcv-*.whl | head -n1)
  else
    say "reusing cached mmcv wheel $whl"
  fi
  "${PIP[@]}" install --no-deps --force-reinstall "$whl" || die "could not install $whl"
fi

# ---- 5. OpenMMLab packages, test tools, kdep_mm itself ------------------
# shellcheck disable=SC2086
if ! have $OPENMMLAB_SPEC pytest kdep_mm; then
  say "installing $OPENMMLAB_SPEC and kdep_mm (editable)"
  build_tools
  # mmcv is already installed from our wheel; --no-build-isolation keeps pip from rebuilding it.
  # shellcheck disable=SC2086
  "${PIP[@]}" install "mmcv==$MMCV_VERSION" $OPENMMLAB_SPEC $TEST_SPEC || die "pip could not install the OpenMMLab packages."
  "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT" || die "could not install kdep_mm in editable mode."
fi

# ---- 6. ruff, import-linter, openmim, tensorboard -----------------------
if ! have $RUFF_SPEC $IMPORT_LINTER_SPEC $MIM_SPEC $TIMM_SPEC tensorboard; then
  say "installing $RUFF_SPEC, $IMPORT_LINTER_SPEC, $MIM_SPEC (without opendatalab/openxlab), $TIMM_SPEC (no deps) and tensorboard"
  # shellcheck disable=SC2086
  "${PIP[@]}" install $RUFF_SPEC $IMPORT_LINTER_SPEC tensorboard $MIM_DEPS || die "pip could not install ruff / import-linter / tensorboard / openmim's requirements."
  "${PIP[@]}" install --no-deps "$MIM_SPEC" "$TIMM_SPEC" || die "pip could not install $MIM_SPEC / $TIMM_SPEC."
fi

# ---- 7. verify -----------------------------------------------------------
"$PY" - <<'PYEOF' || die "the environment does not import cleanly (see above)."
import torch, torchvision, mmengine, mmcv, mmcv.ops, mmpretrain, mmdet, mmseg, kdep_mm
import mim, tensorboard, timm  # noqa: F401
print(f"[setup_env] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmengine {mmengine.__version__}, mmcv {mmcv.__version__} (ops), mmpretrain {mmpretrain.__version__}, "
      f"mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, kdep_mm {kdep_mm.__version__}")
PYEOF
say "ready in $(( $(date +%s) - t0 )) s: $PY"
