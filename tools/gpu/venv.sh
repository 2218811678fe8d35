# Sourced by the GPU scripts (benchmarks/gpu_check.sh, study_gpu.sh,
# dmae_cifar_gpu.sh, ensemble_teacher_gpu.sh); not run on its own.
#
#   gpu_python   -> sets PY to the python of the GPU venv
#                   ($KDEP_GPU_VENV, default /tmp/kdep_gpu_venv), installing
#                   the carried wheelhouse (tools/gpu/install.sh) first unless
#                   that venv already imports mmengine, mmpretrain and
#                   kdep_mm (a rerun on a still-warm machine).
#
# Needs from the caller: REPO, LOG and a `say` function. Exit codes: 2 no
# .whl/ carried, 3 the install failed.
gpu_python() {
  local venv="${KDEP_GPU_VENV:-/tmp/kdep_gpu_venv}"
  if [ ! -x "$venv/bin/python" ] || \
     ! "$venv/bin/python" -c 'import mmengine, mmpretrain, kdep_mm' 2>/dev/null; then
    [ -f "$REPO/.whl/MANIFEST.txt" ] || {
      say "no .whl/: run bash tools/gpu/prepare_wheelhouse.sh here and carry .whl"; exit 2; }
    say "installing the wheelhouse (tools/gpu/install.sh)"
    bash "$REPO/tools/gpu/install.sh" 2>&1 | tee -a "$LOG"
    [ "${PIPESTATUS[0]}" = 0 ] || { say "install failed"; exit 3; }
  fi
  PY="$venv/bin/python"
}
