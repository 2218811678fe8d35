"""Launch helpers shared by tools/train.py and tools/test.py.

The command-line options both tools take (``--cfg-options``, ``--launcher``,
``--local-rank``) and what they do to the config; as mmengine 0.10.7
assumes GPUs for distributed runs, what lets the same ``tools/dist_train.sh``
launch run as CPU processes with gloo, leaving GPU machines untouched; and
the resume of a training attempt that torchrun or Slurm restarted.
"""
import argparse
import contextlib
import copy
import logging
import os
import os.path as osp

import torch
import torch.multiprocessing as mp
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.dist import init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS, RUNNERS
from mmengine.runner import Runner, find_latest_checkpoint
from torch.nn.parallel import DistributedDataParallel

from .pretrained import sync_pretrained


def add_launch_args(parser: argparse.ArgumentParser) -> None:
    """Add the options of both tools: ``--cfg-options``, ``--launcher`` and
    ``--local_rank`` / ``--local-rank``."""
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, key=value pairs; a list is '
        'written as key="[a,b]" or key=a,b, nested lists/tuples as '
        'key="[(a,b),(c,d)]" (quotes needed, no white space)')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes `--local-rank` (torch >= 2.0) or
    # `--local_rank`; torchrun sets the LOCAL_RANK environment variable.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_launch_args(parser: argparse.ArgumentParser, argv=None):
    """``parser.parse_args(argv)``; sets ``LOCAL_RANK`` from
    ``--local-rank`` when the launcher did not set it."""
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def apply_launch_args(cfg: Config, args) -> None:
    """Apply ``--cfg-options`` (``pretrained=X`` reaching the backbone's
    ``init_cfg`` too), the launcher and the work directory: command line >
    config > ``./work_dirs/<config name>``."""
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
        sync_pretrained(cfg)

    cfg.launcher = args.launcher

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])


# set in a restarted attempt's processes: by torchrun (``--max-restarts``)
# and by Slurm (a requeued job)
RESTART_COUNT_VARS = ('TORCHELASTIC_RESTART_COUNT', 'SLURM_RESTART_COUNT')


def resume_after_restart(cfg: Config, environ=None):
    """Resume a restarted attempt from the work directory's last checkpoint.

    torchrun sets ``TORCHELASTIC_RESTART_COUNT`` (0, 1, ...) in the workers
    it starts, Slurm sets ``SLURM_RESTART_COUNT`` in a requeued job. When
    one of them is above 0 and ``cfg.work_dir`` has a ``last_checkpoint``
    (written by the CheckpointHook at every save), the run resumes from it:
    ``cfg.resume = True``, ``cfg.load_from`` = that checkpoint, whatever the
    command line asked, since the newest checkpoint of the work directory is
    the one this job wrote last. The first attempt, and a restart before
    any checkpoint, run as configured (training starts over). The checkpoint
    is a file (Runner, FSDP full state dict) or a folder (DeepSpeed).

    Returns the checkpoint resumed from, or None.
    """
    environ = os.environ if environ is None else environ
    restarts = {}
    for var in RESTART_COUNT_VARS:
        value = environ.get(var, '')
        if value == '':
            continue
        if not value.isdigit():
            raise ValueError(
                f'{var} must be a non-negative integer (the restart count), '
                f'got {value!r}')
        restarts[var] = int(value)
    restarted = {k: v for k, v in restarts.items() if v > 0}
    if not restarted:
        return None
    why = ', '.join(f'{k}={v}' for k, v in restarted.items())
    checkpoint = find_latest_checkpoint(cfg.work_dir)
    if checkpoint is None:
        print_log(
            f'Restarted attempt ({why}) but no checkpoint in {cfg.work_dir} '
            'yet: training starts over.',
            logger='current',
            level=logging.WARNING)
        return None
    if not osp.exists(checkpoint):  # a file, or a DeepSpeed / FSDP folder
        raise FileNotFoundError(
            f'Restarted attempt ({why}): {cfg.work_dir}/last_checkpoint names '
            f'{checkpoint}, which does not exist (is the work directory on a '
            'file system every node sees?)')
    cfg.resume = True
    cfg.load_from = checkpoint
    print_log(
        f'Restarted attempt ({why}): resuming from {checkpoint}.',
        logger='current',
        level=logging.WARNING)
    return checkpoint


def use_gloo_without_cuda(cfg: Config) -> None:
    """Use the gloo backend when CUDA is not available.

    Most configs ask for ``nccl`` (also mmengine's default), which cannot run
    without GPUs. On GPU machines the config is left alone.
    """
    if torch.cuda.is_available():
        return
    # (assigning a dict to a Config stores a converted copy: re-read it)
    if cfg.get('env_cfg') is None:
        cfg.env_cfg = ConfigDict()
    if cfg.env_cfg.get('dist_cfg') is None:
        cfg.env_cfg.dist_cfg = ConfigDict()
    dist_cfg = cfg.env_cfg.dist_cfg
    backend = dist_cfg.get('backend', 'nccl')
    if backend in ('nccl', None):
        dist_cfg.backend = 'gloo'
        print_log(
            f'CUDA is not available: using the "gloo" distributed backend '
            f'instead of "{backend}" (env_cfg.dist_cfg.backend).',
            logger='current',
            level=logging.WARNING)


@contextlib.contextmanager
def _cuda_set_device_disabled():
    """mmengine's ``init_dist`` calls ``torch.cuda.set_device`` whatever the
    backend; without CUDA that raises, so it is a no-op for the duration."""
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = original


def prepare_cpu_distributed(cfg: Config) -> None:
    """Let a distributed launch run on CPU processes (no-op with CUDA).

    mmengine 0.10.7 assumes GPUs for distributed runs in two places, both
    handled here before the Runner is built:

    * ``init_dist`` calls ``torch.cuda.set_device(local_rank)``: the process
      group is initialised here (with ``env_cfg.dist_cfg``, gloo by then),
      so the Runner finds it initialised and skips ``init_dist``;
    * ``Runner.wrap_model`` gives DDP wrappers ``device_ids=[LOCAL_RANK]``,
      which DDP refuses for a CPU module: ``device_ids=None`` is set in
      ``model_wrapper_cfg``.
    """
    if torch.cuda.is_available() or cfg.get('launcher', 'none') == 'none':
        return
    env_cfg = cfg.get('env_cfg') or {}
    if not is_distributed():
        mp_cfg = env_cfg.get('mp_cfg') or {}
        if mp.get_start_method(allow_none=True) is None:
            mp.set_start_method(mp_cfg.get('mp_start_method', 'fork'))
        dist_cfg = copy.deepcopy(dict(env_cfg.get('dist_cfg') or {}))
        with _cuda_set_device_disabled():
            init_dist(cfg.launcher, **dist_cfg)

    wrapper_cfg = cfg.get('model_wrapper_cfg')
    if wrapper_cfg is None:
        # what the Runner builds by default, minus the GPU id
        cfg.model_wrapper_cfg = ConfigDict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False),
            device_ids=None)
        return
    wrapper_type = wrapper_cfg.get('type', 'MMDistributedDataParallel')
    if isinstance(wrapper_type, str):
        with MODEL_WRAPPERS.switch_scope_and_registry(
                cfg.get('default_scope')) as registry:
            wrapper_type = registry.get(wrapper_type)
    if isinstance(wrapper_type, type) and issubclass(
            wrapper_type, DistributedDataParallel):
        wrapper_cfg.setdefault('device_ids', None)


def build_runner(cfg: Config):
    """The Runner of ``cfg`` (built by ``RUNNERS`` when the config names a
    ``runner_type``), after :func:`prepare_cpu_distributed`."""
    prepare_cpu_distributed(cfg)
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    return RUNNERS.build(cfg)


def shutdown_distributed() -> None:
    """End a distributed run cleanly: a barrier, then destroy the default
    process group. Without it a gloo rank can abort at interpreter exit
    ("terminate called without an active exception", exit code -6) while
    its communication threads are still alive, failing a run that
    finished."""
    import torch.distributed as torch_dist
    if torch_dist.is_available() and torch_dist.is_initialized():
        torch_dist.barrier()
        torch_dist.destroy_process_group()
