"""Config surgery and Runner plumbing shared by pre-training and
fine-tuning cells."""
import logging
import math
import os
import time

from .spec import TEACHER_DIM


def set_student(model_cfg, depth, width):
    """Point a pre-training model config at a CIFARResNet variant: depth,
    base width, and every place that states the pooled width (4 x width)."""
    dim = 4 * width
    t = model_cfg['type'].split('.')[-1]
    if t == 'ImageClassifier':
        model_cfg['backbone'].update(depth=depth, base_channels=width)
        model_cfg['head']['in_channels'] = dim
    elif t == 'LogitKDDistiller':
        model_cfg['student'].update(depth=depth, base_channels=width)
        model_cfg['student_channels'] = dim
    elif t == 'KDEPDistiller':
        model_cfg['student'].update(depth=depth, base_channels=width)
        model_cfg['aligner']['student_channels'] = dim
    elif t == 'TCSDistiller':
        model_cfg['student'].update(depth=depth, base_channels=width)
        k = min(TEACHER_DIM, dim)
        model_cfg.update(student_channels=dim, num_coords=k,
                         min_coords=math.ceil(k / 2))
    else:
        raise ValueError(f'set_student: unknown model type {t}')


def finish_runner_cfg(cfg, ctx, work_dir, name, seed):
    cfg.work_dir = work_dir
    cfg.experiment_name = f'study_{name}_{os.getpid()}_{time.time_ns()}'
    cfg.randomness = dict(seed=seed, deterministic=False)
    cfg.launcher = 'none'
    cfg.log_level = 'INFO' if ctx.args.verbose else 'WARNING'
    if cfg.get('visualizer') is not None:
        cfg.visualizer.name = cfg.experiment_name
    if cfg.get('env_cfg') is not None:
        cfg.env_cfg.cudnn_benchmark = False
    if ctx.device == 'cuda':
        cfg.env_cfg.cudnn_benchmark = True


def build_runner(cfg, ctx):
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    if not ctx.args.verbose:
        runner.logger.setLevel(logging.INFO)
        for h in runner.logger.handlers:
            h.setLevel(logging.INFO)
    return runner


def close_runner(runner):
    for h in list(runner.logger.handlers):
        if isinstance(h, logging.FileHandler):
            h.close()
            runner.logger.removeHandler(h)


def iter_schedule(cfg, steps, warmup_frac=0.05):
    """An iteration-based schedule of ``steps`` SGD steps: linear warm-up
    from 0.1x over the first ``warmup_frac`` of the steps, then cosine to 0;
    no validation loop, no Runner checkpoints (cells export themselves)."""
    warm = max(1, int(round(warmup_frac * steps)))
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=steps,
                         val_interval=steps + 1)
    cfg.param_scheduler = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=warm),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=warm,
             end=max(steps, warm + 1), eta_min=0.),
    ]
    cfg.train_dataloader.sampler = dict(type='InfiniteSampler', shuffle=True)
    cfg.default_hooks.checkpoint = None
    cfg.log_processor = dict(by_epoch=False)
    cfg.default_hooks.logger = dict(type='LoggerHook',
                                    interval=max(1, steps // 20))
