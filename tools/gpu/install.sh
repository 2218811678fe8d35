#!/usr/bin/env bash
# Install the GPU wheelhouse (tools/gpu/prepare_wheelhouse.sh) ON the GPU
# machine: no registry there, so everything comes from the carried `.whl/`.
#
#   bash tools/gpu/install.sh [WHEELDIR]         # WHEELDIR defaults to .whl
#   -> a venv at $KDEP_GPU_VENV (default /tmp/kdep_gpu_venv); its python is
#      what the GPU scripts run (benchmarks/study_gpu.sh finds it there)
#
# How the venv sees the machine's torch. The machine's `python3` is itself a
# venv (/opt/torch/.venv/bin/python3, per KINDS.md), and `python3 -m venv
# --system-site-packages` links a new venv to the BASE interpreter's
# site-packages, not to the parent venv's, where torch lives. So, besides
# --system-site-packages, the new venv gets a .pth file that runs
# `site.addsitedir(D)` for each site-packages folder D of the interpreter it
# was made from (which also honours the .pth files in D). sys.path is then:
# the new venv's site-packages (the wheelhouse) first, then the machine's
# (torch, numpy, cv2, ...), so nothing of the machine is shadowed except by
# the wheels we carry, and nothing is installed into the machine's own env.
# (The alternative, `pip install --target DIR` + PYTHONPATH=DIR, puts DIR
# ahead of the standard library's own path entries for every child process;
# the venv keeps the usual order.)
#
# pip: `--no-index --no-deps` (no registry, the closure was checked when the
# wheelhouse was built), `--ignore-installed` (never touch the machine's
# packages), `--ignore-requires-python` (kdep_mm's pyproject says
# `>=3.11,<3.12`, the only Python its pinned stack is tested on; the machine
# has 3.12.3). The wheels' sha256s are checked against MANIFEST.txt first.
#
# Environment: PYTHON (the machine's interpreter, default python3),
# KDEP_GPU_VENV, KDEP_GPU_SYSTEM_SITE=0 (tests: no --system-site-packages).
# Takes about 10-20 s.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
WHL="$(cd "${1:-$REPO/.whl}" && pwd)"
PY="${PYTHON:-python3}"
VENV="${KDEP_GPU_VENV:-/tmp/kdep_gpu_venv}"
t0=$SECONDS

"$PY" "$REPO/tools/gpu/wheelhouse.py" verify "$WHL"
rm -rf "$VENV"
sys_site=(--system-site-packages)
[ "${KDEP_GPU_SYSTEM_SITE:-1}" = 0 ] && sys_site=()
"$PY" -m venv "${sys_site[@]}" --without-pip "$VENV"
VPY="$VENV/bin/python"
purelib="$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
"$PY" - "$purelib/_kdep_machine_site.pth" <<'EOF'
import site, sys
dirs = site.getsitepackages()
with open(sys.argv[1], 'w') as f:
    for d in dirs:
        f.write(f'import site; site.addsitedir({d!r})\n')
EOF
"$VPY" -c 'import torch' || { echo "[install] the venv does not see torch" >&2; exit 1; }

pip_install=("$VPY" -m pip)
"$VPY" -c 'import pip' 2>/dev/null || pip_install=("$PY" -m pip --python "$VPY")
"${pip_install[@]}" install --no-index --no-deps --ignore-installed \
  --ignore-requires-python --no-compile --disable-pip-version-check -q \
  "$WHL"/*.whl

(cd / && "$VPY" - "$VENV") <<'EOF'
import importlib.util
import os.path as osp
import sys

import mmcv
import mmengine
import mmpretrain
import torch

import kdep_mm

venv = osp.realpath(sys.argv[1])
for m in (mmengine, mmcv, mmpretrain, kdep_mm):
    where = osp.realpath(m.__file__)
    assert where.startswith(venv + '/'), f'{m.__name__} from {where}, not the venv'
assert importlib.util.find_spec('mmcv._ext') is None, 'mmcv has compiled ops?'
try:  # mmengine's Runner (collect_env) imports distutils: on Python 3.12
    from distutils import errors  # noqa: F401  only setuptools' shim has it
except ImportError as e:
    raise SystemExit(f'[install] distutils cannot be imported ({e}); the '
                     "mmengine Runner needs it (setuptools' shim on 3.12)")
print(f'[install] python {sys.version.split()[0]}, torch {torch.__version__} '
      f'(cuda available: {torch.cuda.is_available()}) from '
      f'{osp.dirname(torch.__file__)}; mmengine {mmengine.__version__}, mmcv '
      f'{mmcv.__version__} (no ops), mmpretrain {mmpretrain.__version__}, '
      f'kdep_mm {kdep_mm.__version__}')
EOF
echo "[install] venv $VENV ready in $((SECONDS - t0)) s: run with $VPY"
