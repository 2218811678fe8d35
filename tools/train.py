# Copyright (c) kdep_mm contributors.
"""Train a model from an OpenMMLab config with mmengine's Runner (or, for
``runner_type='kdep_mm.FlexibleRunner'``, FlexibleRunner with an FSDP or
DeepSpeed ``strategy``: docs/scaling.md).

Usage::

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--auto-scale-lr] [--cfg-options k=v ...] [--launcher none|pytorch|...]

The config may use any default scope (``mmpretrain``, ``mmdet``, ``mmseg``,
``kdep_mm``); kdep_mm's modules are registered either way, and kdep_mm types
are reached with the ``kdep_mm.`` prefix or through ``custom_imports``.
"""
import argparse
import logging

from mmengine.config import Config
from mmengine.logging import print_log

import kdep_mm  # noqa: F401  (allows mmengine's checkpoint types)
from kdep_mm.engine.runners import check_runner_type
from kdep_mm.utils import launch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint; without a value, resume '
        'from the latest checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='enable automatic mixed precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual total batch size '
        '(needs `auto_scale_lr` with `base_batch_size` in the config)')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='do not pin memory in the dataloaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='do not use persistent workers in the dataloaders')
    launch.add_launch_args(parser)
    return launch.parse_launch_args(parser, argv)


def _set_dataloader_flag(cfg, key, value):
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if isinstance(loader, dict):
            loader[key] = value


def merge_args(cfg: Config, args) -> Config:
    """Apply the command-line options to the config."""
    launch.apply_launch_args(cfg, args)

    # automatic mixed precision
    if args.amp:
        optim_wrapper = cfg.get('optim_wrapper', None)
        if optim_wrapper is None:
            raise RuntimeError(
                '--amp needs an `optim_wrapper` in the config, which has '
                'none (is it a test-only config?)')
        wrapper_type = optim_wrapper.get('type', 'OptimWrapper')
        if wrapper_type in ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper'):
            print_log(
                'AMP training is already enabled in the config.',
                logger='current',
                level=logging.WARNING)
        else:
            if wrapper_type not in ('OptimWrapper', 'mmengine.OptimWrapper'):
                raise RuntimeError(
                    '--amp is only supported with `optim_wrapper.type` '
                    f'OptimWrapper, but the config uses {wrapper_type}')
            optim_wrapper.type = 'AmpOptimWrapper'
            optim_wrapper.setdefault('loss_scale', 'dynamic')

    # learning rate scaled by the total batch size
    if args.auto_scale_lr:
        auto_scale_lr = cfg.get('auto_scale_lr', None)
        if not isinstance(auto_scale_lr, dict) or \
                'base_batch_size' not in auto_scale_lr:
            raise RuntimeError(
                '--auto-scale-lr needs `auto_scale_lr = dict('
                'base_batch_size=..., enable=False)` in the config, which '
                'has none.')
        auto_scale_lr.enable = True

    # resume: `--resume` alone resumes from the latest checkpoint in
    # work_dir (mmengine does that when load_from is None), `--resume CKPT`
    # from the given one.
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    if args.no_pin_memory:
        _set_dataloader_flag(cfg, 'pin_memory', False)
    if args.no_persistent_workers:
        _set_dataloader_flag(cfg, 'persistent_workers', False)

    # a run torchrun (--max-restarts) or Slurm (requeue) restarted resumes
    # from the work directory's last checkpoint
    launch.resume_after_restart(cfg)
    launch.use_gloo_without_cuda(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)

    # Register kdep_mm's modules without touching the default scope: the
    # Runner sets it from the config's `default_scope`.
    kdep_mm.register_all_modules(init_default_scope=False)

    cfg = merge_args(Config.fromfile(args.config), args)
    check_runner_type(cfg)
    runner = launch.build_runner(cfg)
    runner.train()
    launch.shutdown_distributed()


if __name__ == '__main__':
    main()
