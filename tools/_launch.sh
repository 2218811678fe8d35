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

# kdep_fail VAR MESSAGE: exit 2 with "SCRIPT: VAR MESSAGE".
kdep_fail() {
  echo "$0: $1 $2" >&2
  exit 2
}

# kdep_int VAR VALUE MIN [MAX]: exit 2 naming VAR unless VALUE is an integer
# in [MIN, MAX].
kdep_int() {
  local var=$1 value=$2 min=$3 max=${4:-}
  if ! [[ $value =~ ^[0-9]+$ ]] || (( 10#$value < min )) || \
      { [ -n "$max" ] && (( 10#$value > max )); }; then
    kdep_fail "$var" "must be an integer in [$min, ${max:-inf}], got '$value'"
  fi
}

# kdep_torchrun NPROC TOOL ARGS...: tools/TOOL under torchrun on this node.
#   NNODES       nodes: N (static) or MIN:MAX (elastic)            (1)
#   NODE_RANK    this node's rank, static rendezvous only          (0)
#   MASTER_ADDR  node 0's address; needed when NNODES > 1    (127.0.0.1)
#   PORT or MASTER_PORT  node 0's port                           (29500)
#   MAX_RESTARTS restarts of the whole worker group after a failure  (0)
#   RDZV_ENDPOINT host:port of the c10d rendezvous (MASTER_ADDR:PORT)
#   RDZV_ID      job id shared by all nodes ($SLURM_JOB_ID, else kdep_mm)
# MAX_RESTARTS > 0, NNODES=MIN:MAX or RDZV_ENDPOINT use torchrun's c10d
# rendezvous (ranks assigned on arrival, NODE_RANK unused); otherwise the
# static one (--node_rank, --master_addr, --master_port). Bad values exit 2
# naming the variable, before torchrun starts.
kdep_torchrun() {
  local nproc=$1 tool=$2
  shift 2
  kdep_int GPUS "$nproc" 1
  local nnodes=${NNODES:-1} min_nodes max_nodes
  if [[ $nnodes =~ ^([0-9]+):([0-9]+)$ ]]; then
    min_nodes=${BASH_REMATCH[1]} max_nodes=${BASH_REMATCH[2]}
    kdep_int "NNODES (MIN)" "$min_nodes" 1
    kdep_int "NNODES (MAX)" "$max_nodes" "$min_nodes"
  elif [[ $nnodes =~ ^[0-9]+$ ]]; then
    kdep_int NNODES "$nnodes" 1
    min_nodes=$nnodes max_nodes=$nnodes
  else
    kdep_fail NNODES "must be a node count N or a range MIN:MAX, got '$nnodes'"
  fi
  local port=${PORT:-${MASTER_PORT:-29500}}
  if [ -n "${PORT:-}" ] && [ -n "${MASTER_PORT:-}" ] && \
      [ "$PORT" != "$MASTER_PORT" ]; then
    kdep_fail PORT "($PORT) and MASTER_PORT ($MASTER_PORT) differ: set one"
  fi
  kdep_int "PORT/MASTER_PORT" "$port" 1 65535
  local max_restarts=${MAX_RESTARTS:-0}
  kdep_int MAX_RESTARTS "$max_restarts" 0
  if (( max_nodes > 1 )) && [ -z "${MASTER_ADDR:-}" ] && \
      [ -z "${RDZV_ENDPOINT:-}" ]; then
    kdep_fail MASTER_ADDR "is not set: NNODES=$nnodes needs the address of \
node 0 (MASTER_ADDR, with PORT) or RDZV_ENDPOINT=host:port"
  fi
  local addr=${MASTER_ADDR:-127.0.0.1}
  local rdzv
  if (( max_restarts > 0 || min_nodes != max_nodes )) || \
      [ -n "${RDZV_ENDPOINT:-}" ]; then
    # A restarted worker group must not share the agent's TCPStore: its
    # keys outlive the round, and the new ranks can read the dead ranks'
    # addresses (gloo: "connectFullMesh failed ... Connection refused";
    # NCCL: a stale unique id). pytorch/pytorch#135712, #167288.
    export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=${TORCH_DISABLE_SHARE_RDZV_TCP_STORE:-1}
    rdzv=(--rdzv-backend=c10d
          --rdzv-endpoint="${RDZV_ENDPOINT:-$addr:$port}"
          --rdzv-id="${RDZV_ID:-${SLURM_JOB_ID:-kdep_mm}}")
  else
    local node_rank=${NODE_RANK:-0}
    kdep_int NODE_RANK "$node_rank" 0 $((max_nodes - 1))
    rdzv=(--node_rank="$node_rank" --master_addr="$addr"
          --master_port="$port")
  fi
  PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
  exec "$PYTHON" -m torch.distributed.run \
      --nnodes="$nnodes" \
      --nproc_per_node="$nproc" \
      --max-restarts="$max_restarts" \
      "${rdzv[@]}" \
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
