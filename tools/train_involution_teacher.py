# Copyright (c) kdep_mm contributors.
"""Train the CIFAR-10 involution teacher, score it on the test split, export.

Usage::

    python tools/train_involution_teacher.py \
        [CONFIG] [--work-dir DIR] [--cfg-options k=v ...]

``CONFIG`` defaults to ``configs/ensemble/teachers/rednet26_cifar10.py``.
It trains with the same runner and options as ``tools/train.py`` (without
validation during training), then runs ``runner.test()`` once on the
config's test split and writes, in the work directory:

* ``teacher.pth``: ``{'state_dict': <ImageClassifier weights>, 'meta':
  {...}}`` at a stable path, with the test accuracy, the number of training
  iterations, the wall time and the config in ``meta``; plain Python values
  and tensors only, so it loads with ``torch.load(weights_only=True)`` and
  with ``load_checkpoint(model, path, strict=True)`` into the classifier of
  the config;
* ``teacher_metrics.json``: the test metrics and wall times.

It prints the test metrics as one JSON line at the end.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import time

import torch
from mmengine.config import Config, DictAction

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join('configs', 'ensemble', 'teachers',
                          'rednet26_cifar10.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train, test and export the involution teacher')
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', help='where to save logs and models')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config (as in tools/train.py)')
    return parser.parse_args(argv)


def _load_train_tool():
    """``tools/train.py`` as a module (``tools`` is not a package)."""
    spec = importlib.util.spec_from_file_location(
        'kdep_mm_tools_train', osp.join(REPO, 'tools', 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None):
    args = parse_args(argv)
    import kdep_mm
    from kdep_mm.utils.launch import build_runner

    train_tool = _load_train_tool()
    kdep_mm.register_all_modules(init_default_scope=False)
    train_argv = [args.config, '--no-validate']
    if args.work_dir:
        train_argv += ['--work-dir', args.work_dir]
    train_args = train_tool.parse_args(train_argv)
    train_args.cfg_options = args.cfg_options
    cfg = train_tool.merge_args(Config.fromfile(args.config), train_args)
    runner = build_runner(cfg)

    start = time.time()
    runner.train()
    train_s = time.time() - start
    metrics = runner.test()
    test_s = time.time() - start - train_s

    model = runner.model.module if hasattr(runner.model,
                                           'module') else runner.model
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    metrics = {k: float(v) for k, v in metrics.items()}
    meta = dict(
        config=cfg.pretty_text,
        config_file=osp.abspath(args.config),
        iters=int(runner.iter),
        test_metrics=metrics,
        train_wall_s=round(train_s, 1),
        test_wall_s=round(test_s, 1),
        torch_threads=torch.get_num_threads(),
        classes=list(
            runner.train_dataloader.dataset.metainfo.get('classes', ())),
    )
    out = osp.join(cfg.work_dir, 'teacher.pth')
    tmp = out + '.tmp'
    torch.save(dict(state_dict=state_dict, meta=meta), tmp)
    os.replace(tmp, out)
    summary = dict(
        teacher=osp.abspath(out),
        test_metrics=metrics,
        iters=meta['iters'],
        train_wall_s=meta['train_wall_s'],
        test_wall_s=meta['test_wall_s'])
    with open(osp.join(cfg.work_dir, 'teacher_metrics.json'), 'w') as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary))
    return summary


if __name__ == '__main__':
    main()
