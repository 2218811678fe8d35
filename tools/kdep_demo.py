#!/usr/bin/env python
"""The whole KDEP story on a small embedded dataset, offline, on CPU.

Stages (each an mmengine ``Runner`` built from a config in ``configs/demo``):

  (a) data       the synthetic-shapes dataset (generated, or reused), or an
                 ImageNet-style folder given with --data-root
  (b) teacher    supervised training of a CIFAR ResNet-20 on the labelled
                 train split (skipped with --teacher-ckpt: the given
                 checkpoint is only scored)
  (c) KDEP       feature distillation of a half-width CIFAR ResNet-20 (32-d)
                 from the teacher (64-d; SVD keeps 32 directions) on an
                 unlabelled subset of the train split
  (d) export     the student backbone -> ``student_kdep.pth``
                 (``backbone.*`` keys, for ``init_cfg=dict(type='Pretrained',
                 prefix='backbone.')``)
  (e) fine-tune  the student classifier on a few labelled images per class,
                 from the KDEP export and from random init, same schedule
                 and seed, scored on the val split
  (f) results    a table on stdout, ``results.md`` and ``results.json`` in
                 the work dir

Usage::

    python tools/kdep_demo.py [--work-dir work_dirs/kdep_demo] [--seed 0]
        [--data-root DIR] [--teacher-ckpt PATH] [--smoke] [--readme [PATH]]
        [size knobs]

``--readme`` writes the printed results (a provenance line and the table)
between the ``kdep_demo`` markers of README.md, so the README's figures are
always those of a real run.

Determinism: every stage is seeded (``--seed``: data, subsets, weights,
sampling, augmentation), runs with deterministic algorithms
(``torch.use_deterministic_algorithms``), ``--threads`` torch threads (1 by
default) and ``--num-workers`` dataloader workers (0 by default), so a rerun
on the same machine and software repeats its numbers. Across machines they
can differ: the CPU kernels (oneDNN / MKL, chosen by instruction set and
vendor) and other torch builds round differently, and a few thousand SGD
steps on 100-1500 images amplify those last-bit differences into points of
accuracy. ``tests/integration/test_demo.py`` asserts the margin measured across such
runs, not the exact numbers.

``--teacher-ckpt`` takes an mmpretrain ``ImageClassifier`` checkpoint of a
``kdep_mm.CIFARResNet`` (keys ``backbone.*``, ``head.fc.*``) or a classic
akamaster ``pytorch_resnet_cifar10`` checkpoint (keys ``module.*``,
``module.linear.*``); depth, width and classes are read from the weights.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG_DIR = osp.join(REPO, 'configs', 'demo')
TEACHER_CFG = osp.join(CFG_DIR, 'teacher_cifar_resnet20_shapes.py')
KDEP_CFG = osp.join(CFG_DIR, 'kdep_r20_to_r20w8_shapes.py')
FINETUNE_CFG = osp.join(CFG_DIR, 'finetune_r20w8_shapes.py')
README = osp.join(REPO, 'README.md')

AKAMASTER_REVISE_KEYS = [(r'^module\.linear\.', 'head.fc.'),
                         (r'^module\.', 'backbone.')]

# Defaults, tuned so that the demo finishes well under 10 minutes on 2 CPU
# cores and the KDEP-initialised student clearly beats the random one.
DEFAULTS = dict(
    num_classes=10,
    train_per_class=150,
    val_per_class=50,
    teacher_depth=20,
    teacher_epochs=10,
    kdep_fraction=0.5,
    kdep_epochs=20,
    student_depth=20,
    student_width=8,
    shots=10,
    finetune_epochs=30,
    batch_size=32,
)
SMOKE = dict(
    num_classes=10,
    train_per_class=5,
    val_per_class=2,
    teacher_epochs=1,
    kdep_fraction=1.0,
    kdep_epochs=1,
    shots=2,
    finetune_epochs=1,
    batch_size=25,
)


# the options of the sizes and schedules: (flag, type, help before the
# default, which is DEFAULTS[flag with '_'])
SIZE_ARGS = [
    ('num-classes', int, 'synthetic classes'),
    ('train-per-class', int, 'synthetic train images per class'),
    ('val-per-class', int, 'synthetic val images per class'),
    ('teacher-depth', int, 'teacher CIFARResNet depth 6n+2'),
    ('teacher-epochs', int, ''),
    ('kdep-fraction', float,
     'fraction of the train split distilled on, labels unused'),
    ('kdep-epochs', int, ''),
    ('student-depth', int, ''),
    ('student-width', int, 'student base_channels (pooled dim = 4x)'),
    ('shots', int, 'labelled images per class for the fine-tuning'),
    ('finetune-epochs', int, ''),
    ('batch-size', int, ''),
]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='KDEP end to end: teacher -> KDEP distillation -> '
        'export -> fine-tune, vs. the same student from random init.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--work-dir', default='work_dirs/kdep_demo',
                   help='where logs, checkpoints and results go')
    p.add_argument('--data-root', default=None,
                   help='an ImageNet-style folder with train/<class>/ and '
                   'val/<class>/ (or test/<class>/) to use instead of the '
                   'generated synthetic-shapes data')
    p.add_argument('--teacher-ckpt', default=None,
                   help='a trained teacher (mmpretrain ImageClassifier of a '
                   'kdep_mm.CIFARResNet, or an akamaster CIFAR ResNet '
                   'checkpoint); skips the teacher training')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the data, the subsets and every training')
    p.add_argument('--device', default='cpu', choices=['cpu', 'auto'],
                   help="'cpu' hides GPUs; 'auto' lets mmengine pick")
    p.add_argument('--threads', type=int, default=1,
                   help='torch CPU threads (0: torch default, one per core). '
                   'One thread is the default: on a small shared machine '
                   'several OpenMP threads per process slow down badly under '
                   'contention, and a fixed count keeps runs reproducible')
    p.add_argument('--num-workers', type=int, default=0,
                   help='dataloader workers per stage')
    p.add_argument('--verbose', action='store_true',
                   help="also print each Runner's environment report, "
                   'config and hook table')
    p.add_argument('--smoke', action='store_true',
                   help='a few images and 1-2 iterations per stage (tests)')
    p.add_argument('--readme', nargs='?', const=README, default=None,
                   metavar='PATH',
                   help='write the results table of this run between the '
                   'kdep_demo markers of PATH (default: the repository\'s '
                   'README.md), so that its figures are this run\'s')
    g = p.add_argument_group('sizes and schedules (defaults: the tuned demo)')
    for flag, kind, text in SIZE_ARGS:
        default = f'[{DEFAULTS[flag.replace("-", "_")]}]'
        g.add_argument(f'--{flag}', type=kind,
                       help=f'{text} {default}' if text else default)
    args = p.parse_args(argv)
    if args.smoke and args.readme == README:
        p.error('--smoke --readme would put smoke numbers into README.md; '
                'give another PATH')
    base = dict(DEFAULTS)
    if args.smoke:
        base.update(SMOKE)
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not 0 < args.kdep_fraction <= 1:
        p.error('--kdep-fraction must be in (0, 1]')
    for key in ('teacher_epochs', 'kdep_epochs', 'finetune_epochs', 'shots',
                'batch_size', 'student_width'):
        if getattr(args, key) < 1:
            p.error(f'--{key.replace("_", "-")} must be >= 1')
    return args


# ------------------------------------------------------------------ helpers
def banner(step: str, title: str, detail: str = '') -> None:
    line = '=' * 78
    print(f'\n{line}\n[kdep_demo] {step} {title}', flush=True)
    if detail:
        print(f'[kdep_demo]     {detail}', flush=True)
    print(line, flush=True)


def say(msg: str) -> None:
    print(f'[kdep_demo] {msg}', flush=True)


def _set_data(dl_cfg, data_root: str, prefix: str, ann_file: str = ''):
    dl_cfg.dataset.data_root = data_root
    dl_cfg.dataset.data_prefix = prefix
    dl_cfg.dataset.ann_file = ann_file


def _set_schedule(cfg, epochs: int, batch_size: int, num_workers: int,
                  iters_per_epoch: int) -> None:
    """Epochs, warm-up + cosine, one checkpoint at the end, log interval."""
    train_cfg = dict(by_epoch=True, max_epochs=epochs)
    if cfg.get('val_dataloader') is not None:
        # the config's interval; the last epoch is always validated
        train_cfg['val_interval'] = min(cfg.train_cfg.get('val_interval', 1),
                                        epochs)
    cfg.train_cfg = train_cfg
    eta_min = cfg.param_scheduler[-1].get('eta_min', 0.)
    sched = [
        dict(type='LinearLR', start_factor=0.1, by_epoch=True, begin=0,
             end=1, convert_to_iter_based=True)
    ]
    if epochs > 1:
        sched.append(
            dict(type='CosineAnnealingLR', by_epoch=True, begin=1,
                 end=epochs, eta_min=eta_min, convert_to_iter_based=True))
    cfg.param_scheduler = sched
    cfg.default_hooks.checkpoint.interval = epochs
    # about 3 log lines per epoch
    cfg.default_hooks.logger.interval = max(1, iters_per_epoch // 3)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(key)
        if dl is None:
            continue
        if key == 'train_dataloader':
            dl.batch_size = batch_size
        dl.num_workers = num_workers
        dl.persistent_workers = False


def _runner(cfg, work_dir: str, name: str, seed: int, verbose: bool):
    """An mmengine Runner for one stage.

    Unless ``verbose``, the Runner is built with its logger at WARNING, so
    that the environment report, the full config and the hook table it logs
    while it is built (a few hundred lines per stage) stay out of the demo's
    output; the logger is back at INFO for training and testing. The config
    is still dumped to the stage's work dir.
    """
    import logging

    from mmengine.runner import Runner
    cfg.work_dir = work_dir
    # unique names (mmengine appends a timestamp): loggers, visualizers and
    # default scopes are per experiment
    cfg.experiment_name = f'kdep_demo_{name}'
    # deterministic algorithms (torch.use_deterministic_algorithms, cuDNN
    # deterministic): with the fixed thread count, a rerun on the same
    # machine and software gives the same numbers
    cfg.randomness = dict(seed=seed, deterministic=True)
    cfg.launcher = 'none'
    cfg.log_level = 'INFO' if verbose else 'WARNING'
    runner = Runner.from_cfg(cfg)
    if not verbose:
        runner.logger.setLevel(logging.INFO)
        for handler in runner.logger.handlers:
            handler.setLevel(logging.INFO)
    return runner


def _last_checkpoint(work_dir: str) -> str:
    from mmengine.runner import find_latest_checkpoint
    path = find_latest_checkpoint(work_dir)
    if path is None or not osp.isfile(path):
        raise RuntimeError(f'no checkpoint was written in {work_dir}')
    return path


def _top1(metrics: dict) -> float:
    for key in ('accuracy/top1', 'accuracy/top1_'):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f'no top-1 accuracy among the metrics {metrics}')


def resolve_data(args, work_dir: str):
    """Stage (a): the data root, its val prefix and a description."""
    if args.data_root is not None:
        from kdep_mm.datasets.subset import scan_image_folder
        root = osp.abspath(args.data_root)
        if not osp.isdir(osp.join(root, 'train')):
            raise SystemExit(f'--data-root {root}: no train/ folder')
        val = next((v for v in ('val', 'test')
                    if osp.isdir(osp.join(root, v))), None)
        if val is None:
            raise SystemExit(f'--data-root {root}: no val/ (or test/) folder')
        classes, files = scan_image_folder(osp.join(root, 'train'))
        _, vfiles = scan_image_folder(osp.join(root, val))
        n_train = sum(len(v) for v in files.values())
        n_val = sum(len(v) for v in vfiles.values())
        return dict(root=root, val_prefix=val, classes=classes,
                    train_per_class=min(len(v) for v in files.values()),
                    n_train=n_train, n_val=n_val, generated=False,
                    desc=f'{root}: {len(classes)} classes, {n_train} train / '
                    f'{n_val} {val} images')
    from kdep_mm.datasets.synthetic_shapes import generate_shapes_dataset
    name = (f'shapes_c{args.num_classes}_tr{args.train_per_class}_'
            f'va{args.val_per_class}_seed{args.seed}')
    root = osp.join(work_dir, 'data', name)
    meta = generate_shapes_dataset(
        root, num_classes=args.num_classes,
        train_per_class=args.train_per_class,
        val_per_class=args.val_per_class, size=32, seed=args.seed)
    state = 'reused' if meta['reused'] else 'generated'
    return dict(root=root, val_prefix='val', classes=meta['classes'],
                train_per_class=args.train_per_class,
                n_train=meta['counts']['train'], n_val=meta['counts']['val'],
                generated=True,
                desc=f'synthetic shapes ({state}): {args.num_classes} '
                f'classes x ({args.train_per_class} train, '
                f'{args.val_per_class} val) 32x32 PNGs in {root}')


def inspect_teacher_ckpt(path: str) -> dict:
    """Architecture and key format of a CIFAR ResNet classifier checkpoint."""
    from kdep_mm.utils.checkpoint import safe_torch_load
    if not osp.isfile(path):
        raise SystemExit(f'--teacher-ckpt {path}: no such file')
    ckpt = safe_torch_load(path, map_location='cpu')
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise SystemExit(f'--teacher-ckpt {path}: not a checkpoint dict')
    if 'module.conv1.weight' in state:
        fmt, revise = 'akamaster', AKAMASTER_REVISE_KEYS
        conv1, fc, layer1 = ('module.conv1.weight', 'module.linear.weight',
                             'module.layer1.')
    elif 'backbone.conv1.weight' in state:
        fmt, revise = 'mmpretrain', [(r'^module\.', '')]
        conv1, fc, layer1 = ('backbone.conv1.weight', 'head.fc.weight',
                             'backbone.layer1.')
    else:
        raise SystemExit(
            f'--teacher-ckpt {path}: neither an mmpretrain CIFARResNet '
            'classifier (backbone.conv1.weight) nor an akamaster CIFAR ResNet '
            '(module.conv1.weight) checkpoint')
    if fc not in state:
        raise SystemExit(f'--teacher-ckpt {path}: no classifier weight {fc}')
    blocks = {k[len(layer1):].split('.')[0]
              for k in state if k.startswith(layer1)}
    return dict(format=fmt, revise_keys=revise, depth=6 * len(blocks) + 2,
                base_channels=int(state[conv1].shape[0]),
                num_classes=int(state[fc].shape[0]))


def _teacher_arch(cfg_model, depth: int, base: int, num_classes: int):
    cfg_model.backbone.depth = depth
    cfg_model.backbone.base_channels = base
    cfg_model.head.num_classes = num_classes
    cfg_model.head.in_channels = 4 * base


# ------------------------------------------------------------------ stages
def stage_teacher(args, data, work_dir, n_cls):
    """(b): train (or load and score) the teacher; returns its checkpoint,
    key revisions, architecture and val top-1."""
    from mmengine.config import Config
    cfg = Config.fromfile(TEACHER_CFG)
    out_dir = osp.join(work_dir, 'teacher')
    _set_data(cfg.test_dataloader, data['root'], data['val_prefix'])
    if args.teacher_ckpt is None:
        arch = dict(depth=args.teacher_depth, base_channels=16,
                    num_classes=n_cls)
        _teacher_arch(cfg.model, args.teacher_depth, 16, n_cls)
        cfg.model.data_preprocessor.num_classes = n_cls
        _set_data(cfg.train_dataloader, data['root'], 'train')
        iters = -(-data['n_train'] // args.batch_size)
        _set_schedule(cfg, args.teacher_epochs, args.batch_size,
                      args.num_workers, iters)
        banner('(b) teacher',
               f'supervised CIFARResNet-{args.teacher_depth} '
               f'({4 * 16}-d feature)',
               f'{data["n_train"]} labelled images, {args.teacher_epochs} '
               f'epochs x {iters} iterations, batch {args.batch_size}')
        runner = _runner(cfg, out_dir, 'teacher', args.seed, args.verbose)
        runner.train()
        ckpt = _last_checkpoint(out_dir)
        top1 = _top1(runner.test())
        say(f'teacher top-1 on {data["val_prefix"]}: {top1:.2f} '
            f'(checkpoint {ckpt})')
        return dict(ckpt=ckpt, revise_keys=[(r'^module\.', '')], arch=arch,
                    top1=top1, trained=True)

    info = inspect_teacher_ckpt(args.teacher_ckpt)
    arch = dict(depth=info['depth'], base_channels=info['base_channels'],
                num_classes=info['num_classes'])
    banner('(b) teacher',
           f'given: {args.teacher_ckpt} ({info["format"]} format)',
           f'CIFARResNet-{info["depth"]}, base_channels '
           f'{info["base_channels"]}, {info["num_classes"]} classes; '
           'training skipped')
    top1 = None
    if info['num_classes'] == n_cls:
        _teacher_arch(cfg.model, info['depth'], info['base_channels'],
                      info['num_classes'])
        cfg.model.data_preprocessor.num_classes = n_cls
        for key in ('train_dataloader', 'optim_wrapper', 'param_scheduler',
                    'train_cfg'):
            cfg[key] = None
        cfg.test_dataloader.num_workers = args.num_workers
        runner = _runner(cfg, out_dir, 'teacher_eval', args.seed,
                         args.verbose)
        runner.load_checkpoint(args.teacher_ckpt, map_location='cpu',
                               strict=True,
                               revise_keys=info['revise_keys'])
        top1 = _top1(runner.test())
        say(f'teacher top-1 on {data["val_prefix"]}: {top1:.2f}')
    else:
        say(f'the teacher has {info["num_classes"]} classes, the data '
            f'{n_cls}: its own top-1 is not scored')
    return dict(ckpt=osp.abspath(args.teacher_ckpt),
                revise_keys=info['revise_keys'], arch=arch, top1=top1,
                trained=False)


def stage_kdep(args, data, teacher, work_dir):
    """(c): KDEP distillation on an unlabelled subset; returns the
    checkpoint and the subset size."""
    from mmengine.config import Config

    from kdep_mm.datasets.subset import class_balanced_subset, write_ann_file
    cfg = Config.fromfile(KDEP_CFG)
    out_dir = osp.join(work_dir, 'kdep')
    subset = class_balanced_subset(
        osp.join(data['root'], 'train'), fraction=args.kdep_fraction,
        seed=args.seed)
    ann = osp.join(work_dir, 'splits', 'kdep_unlabelled.txt')
    write_ann_file(subset, ann)
    _set_data(cfg.train_dataloader, data['root'], 'train', ann)
    if cfg.get('val_dataloader') is not None:
        # held out: the val split, never distilled on
        _set_data(cfg.val_dataloader, data['root'], data['val_prefix'])
    t_arch = teacher['arch']
    m = cfg.model
    _teacher_arch(m.teacher, t_arch['depth'], t_arch['base_channels'],
                  t_arch['num_classes'])
    m.teacher_ckpt = teacher['ckpt']
    m.teacher_revise_keys = [list(p) for p in teacher['revise_keys']]
    m.student.depth = args.student_depth
    m.student.base_channels = args.student_width
    c_s, c_t = 4 * args.student_width, 4 * t_arch['base_channels']
    m.aligner.student_channels = c_s
    m.aligner.teacher_channels = c_t
    if len(subset) <= c_s:
        raise SystemExit(
            f'the KDEP subset has {len(subset)} images, the SVD basis needs '
            f'more than {c_s} (the student dim): raise --kdep-fraction or '
            '--train-per-class')
    iters = -(-len(subset) // args.batch_size)
    _set_schedule(cfg, args.kdep_epochs, args.batch_size, args.num_workers,
                  iters)
    banner('(c) KDEP',
           f'CIFARResNet-{args.student_depth} width {args.student_width} '
           f'({c_s}-d) <- teacher ({c_t}-d), SVD {c_t} -> {c_s}, PTS '
           'T=0.1 n=3',
           f'{len(subset)} unlabelled images ({args.kdep_fraction:.0%} of '
           f'train), {args.kdep_epochs} epochs x {iters} iterations')
    runner = _runner(cfg, out_dir, 'kdep', args.seed, args.verbose)
    runner.train()
    explained = None
    key = 'val/distill/explained_var'
    if key in runner.message_hub.log_scalars:
        explained = float(runner.message_hub.get_scalar(key).current())
        say(f'KDEP student explains {explained:.1%} of the aligned '
            f'target\'s variance on {data["val_prefix"]} (last validation)')
    return dict(ckpt=_last_checkpoint(out_dir), n_images=len(subset),
                c_s=c_s, c_t=c_t, explained_var=explained)


def stage_export(args, kdep, work_dir):
    """(d): export the student backbone and check that it loads strictly."""
    from kdep_mm.registry import MODELS
    from kdep_mm.utils.checkpoint import safe_torch_load
    from kdep_mm.apis.export import export_student
    dst = osp.join(work_dir, 'student_kdep.pth')
    banner('(d) export', f'student backbone of {kdep["ckpt"]}',
           f'-> {dst} (student.* -> backbone.*)')
    summary = export_student(kdep['ckpt'], dst)
    backbone = MODELS.build(
        dict(type='kdep_mm.CIFARResNet', depth=args.student_depth,
             base_channels=args.student_width))
    state = safe_torch_load(dst, map_location='cpu')['state_dict']
    backbone.load_state_dict(
        {k[len('backbone.'):]: v for k, v in state.items()}, strict=True)
    n = sum(p.numel() for p in backbone.parameters())
    say(f'exported {summary.get("num_tensors", len(state))} tensors, '
        f'{n / 1e3:.1f}k parameters; loads strictly into '
        f'CIFARResNet-{args.student_depth} (width {args.student_width})')
    return dst


def stage_finetune(args, data, student_ckpt, init, work_dir, n_cls,
                   shots_ann, n_shots):
    """(e): fine-tune the student classifier; returns val top-1."""
    from mmengine.config import Config
    cfg = Config.fromfile(FINETUNE_CFG)
    out_dir = osp.join(work_dir, f'finetune_{init}')
    _set_data(cfg.train_dataloader, data['root'], 'train', shots_ann)
    _set_data(cfg.test_dataloader, data['root'], data['val_prefix'])
    m = cfg.model
    m.backbone.depth = args.student_depth
    m.backbone.base_channels = args.student_width
    m.head.in_channels = 4 * args.student_width
    m.head.num_classes = n_cls
    m.data_preprocessor.num_classes = n_cls
    if init == 'kdep':
        m.backbone.init_cfg = dict(type='Pretrained', checkpoint=student_ckpt,
                                   prefix='backbone.')
    else:
        m.backbone.pop('init_cfg', None)  # the backbone's default init
    batch = min(32, args.batch_size)
    iters = -(-n_shots // batch)
    _set_schedule(cfg, args.finetune_epochs, batch, args.num_workers, iters)
    what = ('from the KDEP export' if init == 'kdep' else 'from random init')
    banner(f'(e) fine-tune {init}',
           f'student classifier {what}',
           f'{n_shots} labelled images ({args.shots}/class), '
           f'{args.finetune_epochs} epochs x {iters} iterations, batch '
           f'{batch}, seed {args.seed}')
    runner = _runner(cfg, out_dir, f'finetune_{init}', args.seed,
                     args.verbose)
    runner.train()
    top1 = _top1(runner.test())
    say(f'{init}-init student top-1 on {data["val_prefix"]}: {top1:.2f}')
    return top1


# ------------------------------------------------------------------ report
def _fmt(v, nd=2):
    return '-' if v is None else f'{v:.{nd}f}'


def _explained(ev) -> str:
    if ev is None:
        return ''
    return f'; explains {ev:.0%} of the target variance on val'


def make_table(res: dict) -> str:
    s = res['settings']
    t = res['stage_seconds']
    teacher_what = (f'CIFARResNet-{s["teacher_depth"]} '
                    f'({s["teacher_dim"]}-d), '
                    + (f'{s["n_train"]} labelled images, '
                       f'{s["teacher_epochs"]} ep'
                       if s['teacher_trained'] else 'given checkpoint'))
    rows = [
        ('(a) data', s['data'], None, t['data']),
        ('(b) teacher', teacher_what, res['teacher_top1'], t['teacher']),
        ('(c) KDEP', f'CIFARResNet-{s["student_depth"]} w{s["student_width"]}'
         f' ({s["student_dim"]}-d) <- teacher, SVD {s["teacher_dim"]}->'
         f'{s["student_dim"]}, {s["kdep_images"]} unlabelled images, '
         f'{s["kdep_epochs"]} ep' + _explained(res.get('kdep_explained_var')),
         None, t['kdep']),
        ('(d) export', osp.basename(res['paths']['student_ckpt']), None,
         t['export']),
        ('(e) fine-tune, KDEP init', f'{s["finetune_images"]} labelled '
         f'images ({s["shots"]}/class), {s["finetune_epochs"]} ep',
         res['kdep_init_top1'], t['finetune_kdep']),
        ('(e) fine-tune, random init', 'same data, schedule and seed',
         res['random_init_top1'], t['finetune_random']),
    ]
    lines = ['| stage | what | val top-1 (%) | time (s) |',
             '|---|---|---:|---:|']
    for name, what, acc, sec in rows:
        lines.append(f'| {name} | {what} | {_fmt(acc)} | {_fmt(sec, 1)} |')
    lines.append(f'| **total** | wall clock of the whole demo | | '
                 f'**{_fmt(res["total_seconds"], 1)}** |')
    gain = res['kdep_gain']
    lines.append('')
    lines.append(f'KDEP init vs random init: {gain:+.2f} top-1 points '
                 f'({_fmt(res["kdep_init_top1"])} vs '
                 f'{_fmt(res["random_init_top1"])}), seed {res["seed"]}.')
    return '\n'.join(lines)


README_BEGIN = ('<!-- kdep_demo:begin (written by `python tools/kdep_demo.py '
                '--readme` from the run\'s own numbers; do not edit) -->')
README_END = '<!-- kdep_demo:end -->'


def environment() -> dict:
    """Where the numbers came from: CPU, cores, load, versions."""
    import platform

    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = round(os.getloadavg()[0], 2)
    except OSError:
        load = None
    return dict(cpu=cpu, cores=os.cpu_count(), load_1min_at_start=load,
                torch=torch.__version__, python=platform.python_version(),
                date=time.strftime('%Y-%m-%d'))


def make_report(res: dict) -> str:
    """What the demo prints at the end, writes to results.md and (with
    --readme) between the README markers: a provenance line and the
    table."""
    env, s = res['environment'], res['settings']
    load = env['load_1min_at_start']
    head = (f'`{res["command"]}` on {env["date"]}: seed {res["seed"]}, '
            f'{s["threads"]} torch thread(s), deterministic algorithms, torch '
            f'{env["torch"]}, {env["cpu"]} ({env["cores"]} cores'
            + (f', 1-min load {load} at the start' if load is not None
               else '') + ').')
    return head + '\n\n' + make_table(res)


def update_readme(path: str, report: str) -> None:
    """Replace the text between :data:`README_BEGIN` and :data:`README_END`
    in ``path`` by ``report`` (atomically); the rest is left as is."""
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    with open(path, encoding='utf-8') as f:
        text = f.read()
    if text.count(README_BEGIN) != 1 or text.count(README_END) != 1 or \
            text.index(README_BEGIN) > text.index(README_END):
        raise SystemExit(
            f'--readme {path}: needs exactly one pair of markers\n  '
            f'{README_BEGIN}\n  {README_END}\n(in this order) around the '
            'demo table')
    head, rest = text.split(README_BEGIN)
    _, tail = rest.split(README_END)
    atomic_write_bytes(
        (head + README_BEGIN + '\n' + report + '\n' + README_END +
         tail).encode('utf-8'), path)


def main(argv=None) -> int:
    t_start = time.perf_counter()
    args = parse_args(argv)
    if args.device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    # deterministic cuBLAS (needed by torch.use_deterministic_algorithms on
    # CUDA; set before torch initialises CUDA)
    os.environ.setdefault('CUBLAS_WORKSPACE_CONFIG', ':4096:8')
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    import torch
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    import kdep_mm  # noqa: F401  (allows mmengine checkpoint types)
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    from kdep_mm import register_all_modules
    register_all_modules(init_default_scope=False)
    from kdep_mm.datasets.subset import class_balanced_subset, write_ann_file

    work_dir = osp.abspath(args.work_dir)
    os.makedirs(work_dir, exist_ok=True)
    times = {}
    env = environment()
    command = 'python tools/kdep_demo.py' + ''.join(
        f' {a}' for a in (sys.argv[1:] if argv is None else argv)
        if not a.startswith('--readme') and a != args.readme)

    say(f'work dir {work_dir}, seed {args.seed}, torch '
        f'{torch.__version__} on {args.device} '
        f'({torch.get_num_threads()} threads)'
        + (', SMOKE mode' if args.smoke else ''))
    t0 = time.perf_counter()
    banner('(a) data', 'ImageNet-style folders' if args.data_root else
           'synthetic shapes (shape x texture, random colour/pose/clutter)')
    data = resolve_data(args, work_dir)
    n_cls = len(data['classes'])
    say(data['desc'])
    times['data'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    teacher = stage_teacher(args, data, work_dir, n_cls)
    times['teacher'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    kdep = stage_kdep(args, data, teacher, work_dir)
    times['kdep'] = time.perf_counter() - t0

    t0 = time.perf_counter()
    student_ckpt = stage_export(args, kdep, work_dir)
    times['export'] = time.perf_counter() - t0

    if args.shots > data['train_per_class']:
        raise SystemExit(f'--shots {args.shots} is more than the smallest '
                         f'class of the train split '
                         f'({data["train_per_class"]} images)')
    # the labelled split: a different draw than the KDEP subset
    shots = class_balanced_subset(
        osp.join(data['root'], 'train'), per_class=args.shots,
        seed=args.seed + 1)
    shots_ann = osp.join(work_dir, 'splits', f'fewshot_{args.shots}.txt')
    write_ann_file(shots, shots_ann)
    top1 = {}
    for init in ('kdep', 'random'):
        t0 = time.perf_counter()
        top1[init] = stage_finetune(args, data, student_ckpt, init, work_dir,
                                    n_cls, shots_ann, len(shots))
        times[f'finetune_{init}'] = time.perf_counter() - t0

    total = time.perf_counter() - t_start
    results = dict(
        seed=args.seed,
        smoke=args.smoke,
        teacher_top1=teacher['top1'],
        kdep_init_top1=top1['kdep'],
        random_init_top1=top1['random'],
        kdep_gain=top1['kdep'] - top1['random'],
        kdep_explained_var=kdep['explained_var'],
        command=command,
        environment=env,
        stage_seconds={k: round(v, 2) for k, v in times.items()},
        total_seconds=round(total, 2),
        settings=dict(
            data=data['desc'].split(' in ')[0] if data['generated'] else
            data['desc'],
            data_root=data['root'],
            num_classes=n_cls,
            n_train=data['n_train'],
            n_val=data['n_val'],
            teacher_trained=teacher['trained'],
            teacher_depth=teacher['arch']['depth'],
            teacher_dim=kdep['c_t'],
            teacher_epochs=args.teacher_epochs if teacher['trained'] else None,
            student_depth=args.student_depth,
            student_width=args.student_width,
            student_dim=kdep['c_s'],
            kdep_fraction=args.kdep_fraction,
            kdep_images=kdep['n_images'],
            kdep_epochs=args.kdep_epochs,
            shots=args.shots,
            finetune_images=len(shots),
            finetune_epochs=args.finetune_epochs,
            batch_size=args.batch_size,
            device=args.device,
            threads=torch.get_num_threads(),
        ),
        paths=dict(
            teacher_ckpt=teacher['ckpt'],
            kdep_ckpt=kdep['ckpt'],
            student_ckpt=student_ckpt,
            work_dir=work_dir,
        ),
    )
    report = make_report(results)
    banner('(f) results', 'KDEP-init vs random-init student', '')
    print(report, flush=True)
    atomic_write_bytes(
        ('# KDEP demo results\n\n' + report + '\n').encode(),
        osp.join(work_dir, 'results.md'))
    atomic_write_bytes((json.dumps(results, indent=2) + '\n').encode(),
                       osp.join(work_dir, 'results.json'))
    say(f'results written to {osp.join(work_dir, "results.md")} and '
        'results.json')
    if args.readme is not None:
        update_readme(args.readme, report)
        say(f'table written between the kdep_demo markers of {args.readme}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
