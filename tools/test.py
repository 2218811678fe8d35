# Copyright (c) kdep_mm contributors.
"""Evaluate a checkpoint on the test set of an OpenMMLab config.

Usage::

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE]
        [--out-item metrics|pred] [--show-dir DIR] [--cfg-options k=v ...]
        [--launcher none|pytorch|slurm|mpi]

The metrics are logged (and printed by the Runner); ``--out`` dumps them
(``--out-item metrics``, the default) or the raw predictions
(``--out-item pred``, a pickle) to a file.
"""
import argparse
import inspect
import os.path as osp

import mmengine
from mmengine.config import Config
from mmengine.evaluator import DumpResults
from mmengine.logging import print_log
from mmengine.registry import HOOKS

import kdep_mm  # noqa: F401  (allows mmengine's checkpoint types)
from kdep_mm.utils import launch


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump the metrics (or predictions, see --out-item) to this '
        'file (.json/.yaml/.pkl for metrics, .pkl for predictions)')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        default='metrics',
        help='what --out holds: the metrics (default) or the predictions')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images are saved (needs a '
        'visualization hook in `default_hooks`)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='the interval of show (s)')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='visualize every `interval` samples')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='do not pin memory in the dataloaders')
    launch.add_launch_args(parser)
    return launch.parse_launch_args(parser, argv)


def _hook_params(hook_type, default_scope):
    """The ``__init__`` parameters of the hook class ``hook_type``."""
    if isinstance(hook_type, str):
        # the registry of the config's scope (imported through the
        # registry's `locations` if needed)
        with HOOKS.switch_scope_and_registry(default_scope) as registry:
            hook_type = registry.get(hook_type)
    if hook_type is None:
        return set()
    return set(inspect.signature(hook_type).parameters)


def trigger_visualization_hook(cfg: Config, args) -> None:
    """Turn on the visualization hook for ``--show`` / ``--show-dir``.

    The hooks of mmpretrain (``enable``/``out_dir``), mmdet
    (``draw``/``test_out_dir``) and mmseg (``draw``, images saved by the
    visualizer's ``save_dir``) name their switches differently; the hook's
    signature decides which are set.
    """
    default_hooks = cfg.get('default_hooks') or {}
    hook = default_hooks.get('visualization')
    if hook is None:
        raise RuntimeError(
            '--show / --show-dir need a `visualization` hook in '
            '`default_hooks` of the config, which has none.')
    params = _hook_params(hook.get('type'), cfg.get('default_scope'))
    if 'enable' in params:
        hook['enable'] = True
    if 'draw' in params:
        hook['draw'] = True
    if args.show:
        hook['show'] = True
        if 'wait_time' in params:
            hook['wait_time'] = args.wait_time
    if 'interval' in params:
        hook['interval'] = args.interval
    if args.show_dir:
        if 'out_dir' in params:
            hook['out_dir'] = args.show_dir
        elif 'test_out_dir' in params:
            hook['test_out_dir'] = args.show_dir
        else:
            visualizer = cfg.get('visualizer')
            if visualizer is None:
                raise RuntimeError(
                    '--show-dir needs a `visualizer` in the config for the '
                    f'hook {hook.get("type")}, which has none.')
            visualizer['save_dir'] = args.show_dir


def merge_args(cfg: Config, args) -> Config:
    """Apply the command-line options to the config."""
    launch.apply_launch_args(cfg, args)

    cfg.load_from = args.checkpoint
    cfg.resume = False

    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)

    if args.no_pin_memory and isinstance(cfg.get('test_dataloader'), dict):
        cfg.test_dataloader['pin_memory'] = False

    if args.out is not None and args.out_item == 'pred' and \
            not args.out.endswith(('.pkl', '.pickle')):
        raise ValueError('--out-item pred dumps a pickle: --out must end '
                         f'with .pkl or .pickle, got {args.out}')

    launch.use_gloo_without_cuda(cfg)
    return cfg


def main(argv=None):
    args = parse_args(argv)

    kdep_mm.register_all_modules(init_default_scope=False)

    cfg = merge_args(Config.fromfile(args.config), args)
    for key in ('test_dataloader', 'test_cfg', 'test_evaluator'):
        if cfg.get(key) is None:
            raise RuntimeError(f'the config has no `{key}`; cannot test')

    runner = launch.build_runner(cfg)

    if args.out is not None and args.out_item == 'pred':
        runner.test_evaluator.metrics.append(
            DumpResults(out_file_path=args.out))

    metrics = runner.test()

    if args.out is not None and args.out_item == 'metrics':
        if runner.rank == 0:
            out_dir = osp.dirname(osp.abspath(args.out))
            mmengine.mkdir_or_exist(out_dir)
            mmengine.dump(metrics, args.out)
            print_log(f'metrics written to {args.out}', logger='current')
    launch.shutdown_distributed()
    return metrics


if __name__ == '__main__':
    main()
