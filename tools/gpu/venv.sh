# Sourced by the GPU scripts (benchmarks/gpu_check.sh, study_gpu.sh,
# dmae_cifar_gpu.sh, ensemble_teacher_gpu.sh, tcs_ssl_gpu.sh); not run on
# its own.
#
#   gpu_env_txt FILE -> writes what ran: nvidia-smi, the python, torch and
#                   CUDA of $PY, its kdep_mm / mmcv / mmengine / mmpretrain
#                   (versions, paths) and their pip versions
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

gpu_env_txt() {
  { nvidia-smi 2>/dev/null || echo "no nvidia-smi"
    "$PY" -c 'import sys, torch; print("python", sys.version); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
    "$PY" -c 'import kdep_mm, mmcv, mmengine, mmpretrain; [print(m.__name__, m.__version__, m.__file__) for m in (kdep_mm, mmcv, mmengine, mmpretrain)]'
    "$PY" -m pip list 2>/dev/null | grep -i -E "^(mm|kdep|torch|numpy|opencv)" || true
  } > "$1" 2>&1
}
