"""Training-step time and peak memory of ensemble distillation into a ViT
(kdep_mm.EnsembleDistiller) vs. the ViT student alone.

Arms (one fresh subprocess each, the same batch shape and optimizer):

* ``student`` -- plain DeiT with CE: mmpretrain ``ImageClassifier``
  (``VisionTransformer`` + ``VisionTransformerClsHead``), no teacher.
* ``online``  -- ``EnsembleDistiller`` with both teachers built and run in
  the loop (eval, ``no_grad``).
* ``store``   -- ``EnsembleDistiller`` in store mode: the teachers' logits
  arrive in the data samples (``teacher_outputs``, numpy, as
  ``ApplyStoredView(stores=...)`` + ``PackInputs`` deliver them; reading the
  store itself happens in the dataloader workers and is not timed).

Settings:

* ``cifar`` -- configs/ensemble/deit-tiny_cifar10_from_r56+rednet26.py:
  DeiT-Tiny width (192-d, 12 blocks), patch 4 on 32x32, teachers CIFAR
  ResNet-56 + RedNet-26 (cifar stem, base 16).
* ``in1k``  -- configs/ensemble/deit-ti_from_r50+rednet50_in1k.py: DeiT-Ti
  at 224 px, teachers ResNet-50 + RedNet-50 (1000 classes).

A step is forward + backward + ``torch.optim.AdamW.step()`` (+ zero_grad)
on one random batch; the reported time is the median of ``--steps`` timed
steps after ``--warmup`` untimed ones. Weights are random (timing does not
depend on them). Memory: see ``benchmarks/_step_bench.py``.

``--amp bf16``: the forward and the losses (``model.loss``) under
``torch.autocast(bfloat16)`` (the online teachers included: they run under
``no_grad`` inside the model, their softmax in float32); the backward and
the AdamW step outside it. ``--channels-last``: the model and the image
batch in ``channels_last`` (the convolutional teachers and the ViT's patch
embedding). ``--device cuda``: model and batch on the GPU, the queue
drained after each step.

Run::

    python benchmarks/ensemble_step_time.py                     # cifar
    python benchmarks/ensemble_step_time.py --settings cifar,in1k
    # the GPU table's run (GPU_ARGS), in fp32 and in bf16
    python benchmarks/ensemble_step_time.py --device cuda --settings in1k \
        --batch-size 128 --steps 10 --warmup 3 --rounds 1 --channels-last \
        --amp bf16
"""
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _step_bench as sb  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARMS = ('student', 'online', 'store')
CONFIGS = {
    'cifar': 'deit-tiny_cifar10_from_r56+rednet26.py',
    'in1k': 'deit-ti_from_r50+rednet50_in1k.py',
}
SIZES = {'cifar': 32, 'in1k': 224}
TARGET = 1.10  # store <= 1.10 x student
# the arguments of benchmarks/performance_table.py: the CPU table, the GPU
# table (the ImageNet setting at batch 128, once per precision) and the GPU
# script's CPU smoke run (benchmarks/gpu_check.sh --smoke)
PERF_ARGS = ['--batch-size', '32', '--steps', '5', '--warmup', '2',
             '--rounds', '3']
GPU_ARGS = ['--settings', 'in1k', '--batch-size', '128', '--steps', '10',
            '--warmup', '3', '--rounds', '1', '--channels-last']
SMOKE_ARGS = ['--batch-size', '2', '--steps', '1', '--warmup', '0',
              '--rounds', '1', '--threads', '1']
ARM_DESC = {
    'student': 'ViT student alone (plain DeiT, CE)',
    'online': 'ensemble, both teachers online',
    'store': 'ensemble, teacher outputs from the store',
}


def parse_args():
    p = sb.step_parser(__doc__, ARMS, steps=5)
    p.add_argument('--settings', default='cifar')
    p.add_argument('--arms', default=','.join(ARMS))
    p.add_argument('--batch-size', type=int, default=None,
                   help='default: 32 (cifar), 8 (in1k)')
    p.add_argument('--rounds', type=int, default=2,
                   help='arms run round-robin this many times (a fresh '
                   'process each), so that load drift hits all arms alike; '
                   'the timed steps of all rounds are pooled')
    p.add_argument('--setting', choices=tuple(CONFIGS), help='(internal)')
    return p.parse_args()


def build(arm, setting):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from kdep_mm.registry import MODELS
    init_default_scope('mmpretrain')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'ensemble',
                                   CONFIGS[setting]))
    m = cfg.model.to_dict()
    m['data_preprocessor'] = dict(type='kdep_mm.EnsembleDataPreprocessor')
    if arm == 'student':
        s = dict(m['student'])
        s.pop('num_teacher_tokens')
        s['type'] = 'mmpretrain.VisionTransformer'
        # the width as the ensemble head infers it (the configs no longer
        # state in_channels): the ViT's embed_dims
        backbone = MODELS.build(s)
        return MODELS.build(dict(
            type='mmpretrain.ImageClassifier', backbone=backbone,
            head=dict(type='mmpretrain.VisionTransformerClsHead',
                      num_classes=m['head']['num_classes'],
                      in_channels=backbone.embed_dims,
                      loss=m['head']['loss']),
            init_cfg=m.get('init_cfg')))
    if arm == 'online':
        m['teachers'] = cfg.teachers.to_dict()  # random weights
    return MODELS.build(m)


def run_one(args):
    import numpy as np
    import torch
    from mmpretrain.structures import DataSample
    sb.check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    fmt = sb.memory_format(args.channels_last)
    torch.manual_seed(0)
    model = build(args.arm, args.setting)
    model.init_weights()
    model = model.to(dev, memory_format=fmt)
    model.train()
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3,
        weight_decay=0.05)
    size, n = SIZES[args.setting], args.batch_size
    num_classes = 10 if args.setting == 'cifar' else 1000
    x = torch.randn(n, 3, size, size, device=dev).contiguous(
        memory_format=fmt)
    rng = np.random.default_rng(0)

    def samples():
        out = []
        for i in range(n):
            s = DataSample().set_gt_label(int(rng.integers(num_classes)))
            if args.arm == 'store':
                s.set_field({name: dict(logits=rng.standard_normal(
                    num_classes).astype(np.float32))
                    for name in model.teacher_names}, 'teacher_outputs')
            out.append(s)
        return out

    batches = [samples() for _ in range(args.warmup + args.steps)]
    it = iter(batches)
    last_loss = []

    def step():
        with sb.autocast(args.device, args.amp):
            losses = model.loss(x, next(it))
            loss = sum(losses.values())
        loss.backward()
        last_loss.append(loss.detach())
        opt.step()
        opt.zero_grad(set_to_none=True)

    res = sb.time_steps(step, args.warmup, args.steps, args.device)
    res.update(arm=args.arm, setting=args.setting, batch=n,
               student_params=sum(p.numel() for p in model.parameters()),
               losses=[float(v) for v in last_loss], device=args.device,
               amp=args.amp, channels_last=args.channels_last)
    return res


def perf_rows(data: dict, bench_args: list):
    """The performance table's rows (student first) and verdicts
    (``(what, measured, target, '<=', verdict)``, one per setting:
    ensemble from the store / ViT student step) of this benchmark's
    ``--json`` ``data``, run with ``bench_args``."""
    amp = sb.arg_value(bench_args, '--amp', 'fp32')
    rows, verdicts = [], []
    for s in [s for s in CONFIGS if f'{s}@student' in data]:
        label = ('CIFAR DeiT-Ti width, 32 px' if s == 'cifar' else
                 'ImageNet DeiT-Ti from R50+RedNet-50, 224 px') + f', {amp}'
        r = {a: data[f'{s}@{a}'] for a in ARMS if f'{s}@{a}' in data}
        rs, v = sb.setting_rows(
            'ensemble', label, r,
            (('student', 'ViT student alone (DeiT, CE)'),
             ('online', 'ensemble, 2 teachers online'),
             ('store', 'ensemble, teacher logits stored')), 'store', TARGET,
            f'ensemble from the store / ViT student step ({s}, {amp})')
        rows += rs
        verdicts += [v] if v else []
    return rows, verdicts


def main():
    args = parse_args()
    sb.check_device(args.device)
    if args.arm is not None:
        sb.emit(run_one(args))
        return
    settings = [s for s in args.settings.split(',') if s]
    arms = [a for a in args.arms.split(',') if a]
    results = {}
    t_start, load0 = time.time(), os.getloadavg()[0]
    for setting in settings:
        batch = args.batch_size or (16 if setting == 'cifar' else 8)
        for rnd in range(args.rounds):
            for arm in arms:
                cmd = ['--arm', arm, '--setting', setting, '--batch-size',
                       batch, '--steps', args.steps, '--warmup',
                       args.warmup, '--device', args.device, '--amp',
                       args.amp]
                if args.channels_last:
                    cmd.append('--channels-last')
                if args.threads:
                    cmd += ['--threads', args.threads]
                t0 = time.time()
                res = sb.pool_rounds(results.get((setting, arm)),
                                     sb.run_arm(__file__, cmd, REPO))
                results[(setting, arm)] = res
                print(f'# {setting} {arm:8s} round {rnd}: steps '
                      f'{[round(t, 3) for t in res["times"]]}, mem '
                      f'+{res["mem_mib"]:.0f} MiB, subprocess '
                      f'{time.time() - t0:.0f} s', file=sys.stderr,
                      flush=True)
    any_res = next(iter(results.values()))
    print(f'Machine: {args.device}, {os.cpu_count()} CPU cores visible, '
          f'torch {any_res["torch"]}, {any_res["threads"]} threads, '
          f'{sb.setup_line(args)}, warm-up '
          f'{args.warmup}, median of {args.steps} timed steps x '
          f'{args.rounds} rounds (fresh process each; forward + '
          'backward + AdamW step), random weights.')
    print(f'Memory column: {sb.memory_note(args.device)}.')
    print()
    print('| setting | batch | arm | step time (s, median) | step time (s, '
          'min) | x student (median) | peak mem (MiB) |')
    print('|---|---|---|---|---|---|---|')
    for setting in settings:
        base = results.get((setting, 'student'))
        for arm in arms:
            r = results[(setting, arm)]
            rel = (f'{r["median_s"] / base["median_s"]:.2f}' if base
                   else '-')
            print(f'| {setting} ({SIZES[setting]} px) | {r["batch"]} | '
                  f'{ARM_DESC[arm]} | {r["median_s"]:.3f} | '
                  f'{min(r["times"]):.3f} | {rel} | {r["mem_mib"]:.0f} |')
    print()
    for setting in settings:
        if (setting, 'store') in results and (setting,
                                              'student') in results:
            ratio = (results[(setting, 'store')]['median_s'] /
                     results[(setting, 'student')]['median_s'])
            print(f'Target "store <= {TARGET:.2f} x student step time" '
                  f'({setting}): {ratio:.3f} -> '
                  f'{"MET" if ratio <= TARGET else "NOT MET"}')
    sb.print_wall_and_load(t_start, load0)
    sb.dump_json(args.json, results)


if __name__ == '__main__':
    main()
