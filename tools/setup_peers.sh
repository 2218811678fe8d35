#!/usr/bin/env bash
# Install the peer KD toolkit the KDEP step benchmark compares against
# (benchmarks/kdep_step_time.py, arms td_fitnets / td_kd) into a
# git-ignored folder, NOT into the project's venv:
#
#   bash tools/setup_peers.sh            # -> .peers/ (PEERS_DIR overrides)
#
# torchdistill 1.1.5 pins torch>=2.12, torchvision, numpy, pyyaml, scipy and
# cython. All but cython are already in the project's venv, so torchdistill
# goes in with --no-deps (pip must not replace our torch) and the missing
# ones are added next to it; the benchmark puts the folder on sys.path
# when it exists. The last step imports torchdistill's distillation box and
# losses from the folder with the venv's python: the install is verified,
# not assumed.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
DEST="${PEERS_DIR:-$REPO/.peers}"
TD_VERSION="1.1.5"
mkdir -p "$DEST"
"$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$DEST" --upgrade "torchdistill==$TD_VERSION"
# torchdistill's dependencies the venv lacks (checked, not guessed)
missing=()
for mod_pkg in torch:torch torchvision:torchvision numpy:numpy yaml:pyyaml \
               scipy:scipy Cython:cython; do
    mod="${mod_pkg%%:*}"; pkg="${mod_pkg##*:}"
    if ! PYTHONPATH="$DEST" "$PY" -c "import $mod" 2>/dev/null; then
        missing+=("$pkg")
    fi
done
for pkg in torch torchvision; do
    for m in "${missing[@]:-}"; do
        if [ "$m" = "$pkg" ]; then
            echo "setup_peers: $pkg is missing from $PY's environment;" \
                 "install the project first (it must not come from here)" >&2
            exit 1
        fi
    done
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup_peers: adding torchdistill's missing dependencies: ${missing[*]}"
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
        --target "$DEST" --upgrade "${missing[@]}"
fi
PYTHONPATH="$DEST" "$PY" - "$TD_VERSION" <<'PYEOF'
import sys
import torchdistill
from torchdistill.core.distillation import get_distillation_box  # noqa
from torchdistill.losses.registry import get_mid_level_loss  # noqa
assert torchdistill.__version__ == sys.argv[1], torchdistill.__version__
print(f'setup_peers: torchdistill {torchdistill.__version__} importable '
      f'from {torchdistill.__file__}')
PYEOF
