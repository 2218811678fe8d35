#!/usr/bin/env bash
# Shared by tools/dist_{train,test}.sh and tools/slurm_{train,test}.sh
# (sourced, not run): the argument check, the interpreter and the two
# launchers. Sets ROOT (the repository) and PYTHON ($PYTHON, else
# .venv/bin/python if present, else python).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$ROOT/.venv/bin/python" ]; then
    PYTHON="$ROOT/.venv/bin/python"
  else
    PYTHON=python
  fi
fi

# kdep_need_args MIN USAGE "$@": exit 2 with "usage: SCRIPT USAGE" when fewer
# than MIN arguments follow.
kdep_need_args() {
  local min=$1 usage=$2
  shift 2
  if [ $# -lt "$min" ]; then
    echo "usage: $0 $usage" >&2
    exit 2
  fi
}

# kdep_torchrun NPROC TOOL ARGS...: tools/TOOL under torchrun on this node;
# NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1), PORT (29500).
kdep_torchrun() {
  local nproc=$1 tool=$2
  shift 2
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
  exec "$PYTHON" -m torch.distributed.run \
      --nnodes="${NNODES:-1}" \
      --node_rank="${NODE_RANK:-0}" \
      --master_addr="${MASTER_ADDR:-127.0.0.1}" \
      --nproc_per_node="$nproc" \
      --master_port="${PORT:-29500}" \
      "$ROOT/tools/$tool" "$@"
}

# kdep_srun PARTITION JOB_NAME TOOL ARGS...: tools/TOOL as a Slurm job;
# GPUS (8), GPUS_PER_NODE (8), CPUS_PER_TASK (5), SRUN_ARGS ("").
kdep_srun() {
  local partition=$1 job_name=$2 tool=$3
  shift 3
  local gpus_per_node=${GPUS_PER_NODE:-8}
  # shellcheck disable=SC2086
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
  srun -p "$partition" \
      --job-name="$job_name" \
      --gres=gpu:"$gpus_per_node" \
      --ntasks="${GPUS:-8}" \
      --ntasks-per-node="$gpus_per_node" \
      --cpus-per-task="${CPUS_PER_TASK:-5}" \
      --kill-on-bad-exit=1 \
      ${SRUN_ARGS:-} \
      "$PYTHON" -u "$ROOT/tools/$tool" "$@"
}
