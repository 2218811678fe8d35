# Copyright (c) kdep_mm contributors.
"""Run a distillation config's teacher over its training set once and store
its outputs (pooled pre-activation features, logits or top-k probabilities)
for V views per image in a teacher store.

Usage::

    python tools/cache_teacher.py CONFIG --store DIR [--views V]
        [--view-mode random|center] [--out-size 224] [--topk K]
        [--fields feat logits] [--shard-size N] [--batch-size B] [--seed S]
        [--split train] [--views-from STORE]
        [--launcher none|pytorch|slurm|mpi]
        [--cfg-options k=v ...]

Distributed (each rank writes its shards)::

    torchrun --nproc_per_node 2 tools/cache_teacher.py CONFIG --store DIR \
        --launcher pytorch

A rerun with the same arguments skips the finished shards and completes the
store.

An ensemble of teachers (``kdep_mm.EnsembleDistiller``) is one store per
teacher on the same views: cache the first teacher, then each other one
with ``--views-from FIRST_STORE`` (its views, shard size, view mode and
seed are copied) and ``--cfg-options`` selecting that teacher (see the
header of ``configs/ensemble/deit-tiny_cifar10_from_r56+rednet26.py``).
"""
import argparse
import logging
import os
import sys

import torch
import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.dist import barrier, get_dist_info, init_dist, is_distributed
from mmengine.logging import print_log
from mmengine.registry import DefaultScope

import kdep_mm
from kdep_mm.apis import TeacherCacher
from kdep_mm.apis.cache_teacher import FIELDS
from kdep_mm.datasets.store import VIEW_MODES, TeacherStore
from kdep_mm.models.teachers import FrozenTeacher
from kdep_mm.registry import DATASETS, MODELS
from kdep_mm.utils.checkpoint import checkpoint_sha256
from kdep_mm.utils.launch import (prepare_cpu_distributed,
                                  use_gloo_without_cuda)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Cache a teacher\'s outputs on stored views of a '
        'dataset (the dataset of <split>_dataloader.dataset, with its '
        'pipeline REPLACED by [LoadImageFromFile]: the views are cropped '
        'by the tool, and ApplyStoredView repeats the crops at training '
        'time).')
    parser.add_argument('config', help='distillation config (model.teacher, '
                        'model.teacher_ckpt, model.data_preprocessor, '
                        '<split>_dataloader.dataset)')
    parser.add_argument('--store', required=True, help='store directory')
    parser.add_argument('--views', type=int, default=1,
                        help='views per image (V)')
    parser.add_argument('--view-mode', choices=list(VIEW_MODES),
                        default='random')
    parser.add_argument('--out-size', type=int, nargs='+', default=[224],
                        help='crop size: S or H W')
    parser.add_argument('--fields', nargs='+', default=list(FIELDS),
                        choices=list(FIELDS))
    parser.add_argument('--topk', type=int, default=None,
                        help='store top-k float16 probabilities + exact '
                        'indices instead of the full logits')
    parser.add_argument('--shard-size', type=int, default=1024)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the views (and of a random teacher)')
    parser.add_argument('--split', default='train',
                        help='use <split>_dataloader.dataset')
    parser.add_argument('--views-from', default=None, metavar='STORE',
                        help='copy the views (boxes, flips), shard size, '
                        'view mode and seed of this store, so that several '
                        'teachers are cached on the same views')
    parser.add_argument('--teacher', default=None, metavar='NAME',
                        help='ensemble configs: cache the teacher NAME of '
                        'model.teachers (online configs) or of the '
                        'top-level teachers / teacher_ckpts / '
                        'teacher_revise_keys dicts (store-mode configs)')
    parser.add_argument('--no-progress', action='store_true')
    parser.add_argument('--max-shards', type=int, default=None,
                        help=argparse.SUPPRESS)  # tests of resuming
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override settings of the config, key=value pairs')
    parser.add_argument('--launcher',
                        choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_teacher(cfg, seed: int = 0) -> FrozenTeacher:
    """The frozen teacher of ``cfg.model``, loaded strictly from
    ``model.teacher_ckpt`` (random weights from ``seed`` if None)."""
    model_cfg = cfg.model
    module = MODELS.build(model_cfg.teacher)
    ckpt = model_cfg.get('teacher_ckpt')
    if ckpt is None:
        torch.manual_seed(seed)
        print_log('model.teacher_ckpt is None: caching a RANDOMLY '
                  f'initialised teacher (torch seed {seed})',
                  logger='current', level=logging.WARNING)
    return FrozenTeacher(module, ckpt, model_cfg.get('teacher_revise_keys'))


def select_teacher(cfg, name: str) -> None:
    """Point ``model.teacher`` / ``teacher_ckpt`` / ``teacher_revise_keys``
    at teacher ``name`` of an ensemble config (``model.teachers`` if it is
    a dict, else the config's top-level ``teachers``)."""
    def pick(key):
        value = cfg.model.get(key)
        if not isinstance(value, dict):
            value = cfg.get(key)
        return value if isinstance(value, dict) else {}

    teachers = pick('teachers')
    if name not in teachers:
        raise SystemExit(f'--teacher {name}: the config defines the teachers '
                         f'{sorted(teachers)} (model.teachers or teachers)')
    cfg.model.teacher = teachers[name]
    cfg.model.teacher_ckpt = pick('teacher_ckpts').get(name)
    revise = pick('teacher_revise_keys').get(name)
    if revise is not None:
        cfg.model.teacher_revise_keys = revise


def build_preprocessor(cfg):
    pre = cfg.model.get('data_preprocessor') or dict(
        type='mmpretrain.ClsDataPreprocessor')
    return MODELS.build(pre)


def build_dataset(cfg, split: str):
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not loader.get('dataset'):
        raise ValueError(f'the config has no {split}_dataloader.dataset')
    ds_cfg = loader.dataset.copy()
    ds_cfg.pipeline = [dict(type='LoadImageFromFile')]
    return DATASETS.build(ds_cfg)


def main(argv=None):
    args = parse_args(argv)
    kdep_mm.register_all_modules(init_default_scope=False)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.teacher is not None:
        select_teacher(cfg, args.teacher)
    cfg.launcher = args.launcher
    use_gloo_without_cuda(cfg)
    prepare_cpu_distributed(cfg)  # inits gloo without CUDA
    if args.launcher != 'none' and torch.cuda.is_available() and \
            not is_distributed():
        init_dist(args.launcher,
                  **dict((cfg.get('env_cfg') or {}).get('dist_cfg') or {}))
    rank, world_size = get_dist_info()

    scope = cfg.get('default_scope', 'kdep_mm')
    DefaultScope.get_instance(f'cache_teacher-{os.getpid()}',
                              scope_name=scope)
    teacher = build_teacher(cfg, args.seed)
    preprocessor = build_preprocessor(cfg)
    if torch.cuda.is_available():  # the launcher set the rank's device
        teacher.module.cuda()
        preprocessor.cuda()
    out_size = args.out_size[0] if len(args.out_size) == 1 else tuple(
        args.out_size[:2])
    teacher_cfg = cfg.model.teacher
    ckpt = cfg.model.get('teacher_ckpt')
    # the teacher identity store-mode runs check without building it
    ckpt_sha256 = checkpoint_sha256(ckpt) if ckpt is not None else None
    result = TeacherCacher(
        teacher, build_dataset(cfg, args.split), args.store,
        views=dict(num_views=args.views, view_mode=args.view_mode,
                   out_size=out_size, seed=args.seed,
                   views_from=args.views_from),
        outputs=dict(fields=args.fields, topk=args.topk,
                     teacher_feature=cfg.model.get('teacher_feature')),
        run=dict(shard_size=args.shard_size, batch_size=args.batch_size,
                 rank=rank, world_size=world_size,
                 progress=not args.no_progress and rank == 0,
                 max_shards=args.max_shards),
        record=dict(teacher_config=teacher_cfg.to_dict() if hasattr(
            teacher_cfg, 'to_dict') else teacher_cfg,
                    teacher_checkpoint=ckpt,
                    teacher_checkpoint_sha256=ckpt_sha256),
        data_preprocessor=preprocessor).run()
    print(f'rank {rank}: wrote shards {result["written"]}, skipped '
          f'{result["skipped"]}', flush=True)
    images = torch.tensor([result['images']], dtype=torch.float64)
    seconds = torch.tensor([result['seconds']], dtype=torch.float64)
    if world_size > 1:
        dist.all_reduce(images)
        dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        barrier()
    if rank == 0:
        if args.max_shards is None:
            # hashes every shard once and records it as verified, so that
            # training runs open the store without re-hashing it
            store = TeacherStore(args.store, dict(
                teacher_fingerprint=result['fingerprint']))
            state = (f'complete and verified: {store.num_samples} images, '
                     f'{store.num_shards} shards')
        else:
            state = 'partial (--max-shards)'
        n, t = int(images.item()), float(seconds.item())
        rate = n / t if t > 0 else float('inf')
        print(f'teacher store {result["root"]} {state}; this run cached {n} '
              f'images x {args.views} views in {t:.2f} s ({rate:.1f} '
              f'images/s) on {world_size} process(es); fields '
              f'{sorted(result["fields"])}; teacher fingerprint '
              f'{result["fingerprint"]}; teacher checkpoint sha256 '
              f'{ckpt_sha256}', flush=True)
    if world_size > 1:
        dist.destroy_process_group()


if __name__ == '__main__':
    sys.exit(main())
