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
on one random batch. Weights are random (timing does not depend on them).

Method. Paired timing (``--paired N``, what the performance tables run):
all arms of one setting are built in ONE process (this script with
``--paired-run``); after ``--warmup`` untimed cycles each of N cycles runs
one step of every arm, in carry-over-balanced orders. Per step: wall
seconds (the CUDA queue drained) and the process's CPU seconds
(``time.process_time``). The step time of an arm is the median of its
wall times; the target ratio (store / student) is the median over cycles
of that cycle's ratio, so a slow phase of a shared machine moves both
sides of it (arms timed minutes apart in separate processes gave verdicts
that moved from run to run). The per-cycle CPU-time ratio is printed too.

Memory (and, without ``--paired``, the step times): one fresh subprocess
per (setting, arm), ``--rounds`` round-robin rounds, each ``--steps``
timed steps after ``--warmup`` untimed ones (median over the pooled
steps); see ``benchmarks/_step_bench.py`` for the memory reading. With
``--paired`` they serve the memory column only and may run few steps.

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
    # the CPU table's run (PERF_ARGS)
    python benchmarks/ensemble_step_time.py --batch-size 32 --steps 1 \
        --warmup 2 --rounds 1 --paired 20
    # the GPU table's run (GPU_ARGS), in fp32 and in bf16
    python benchmarks/ensemble_step_time.py --device cuda --settings in1k \
        --batch-size 128 --steps 2 --warmup 3 --rounds 1 --paired 10 \
        --channels-last --amp bf16
"""
import os
import os.path as osp
import statistics
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
# script's CPU smoke run (benchmarks/gpu_check.sh --smoke); all of them
# time the arms paired (--paired: the per-arm processes give memory only)
PERF_ARGS = ['--batch-size', '32', '--steps', '1', '--warmup', '2',
             '--rounds', '1', '--paired', '20']
GPU_ARGS = ['--settings', 'in1k', '--batch-size', '128', '--steps', '2',
            '--warmup', '3', '--rounds', '1', '--paired', '10',
            '--channels-last']
SMOKE_ARGS = ['--batch-size', '2', '--steps', '1', '--warmup', '0',
              '--rounds', '1', '--paired', '2', '--threads', '1']
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
    sb.add_paired(p, 'setting', CONFIGS,
                  'also time the arms of each setting in one process, one '
                  'step of each arm per cycle (carry-over-balanced orders) '
                  'for N cycles after --warmup ones; step times and the '
                  'target ratio (median per-cycle store / student) then '
                  'come from it, the per-arm processes give memory')
    args = sb.parse_paired(p)
    return args


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


def _setup(args, arm, n_steps):
    """The model of ``arm`` in ``args.setting``, its AdamW and one training
    step as a closure over ``n_steps`` pre-made batches of data samples
    (the image batch is one random tensor); the same seeds for every arm.
    Returns ``(model, step, last_loss)``: ``step()`` appends its loss to
    the list ``last_loss``."""
    import numpy as np
    import torch
    from mmpretrain.structures import DataSample
    dev = torch.device(args.device)
    fmt = sb.memory_format(args.channels_last)
    torch.manual_seed(0)
    model = build(arm, args.setting)
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
            if arm == 'store':
                s.set_field({name: dict(logits=rng.standard_normal(
                    num_classes).astype(np.float32))
                    for name in model.teacher_names}, 'teacher_outputs')
            out.append(s)
        return out

    batches = [samples() for _ in range(n_steps)]
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

    return model, step, last_loss


def run_one(args):
    import torch
    sb.check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, step, last_loss = _setup(args, args.arm,
                                    args.warmup + args.steps)
    res = sb.time_steps(step, args.warmup, args.steps, args.device)
    res.update(arm=args.arm, setting=args.setting, batch=args.batch_size,
               student_params=sum(p.numel() for p in model.parameters()),
               losses=[float(v) for v in last_loss], device=args.device,
               amp=args.amp, channels_last=args.channels_last)
    return res


def run_paired(args):
    """All arms of ``args.setting`` in one process, their steps
    interleaved: ``--warmup`` untimed cycles, then ``--paired`` cycles;
    cycle ``c`` runs one step of each arm in the order ``_step_bench.cycle_order(arms, c)``.
    Per arm and timed cycle: wall seconds (``times``) and process CPU
    seconds (``cpu_times``)."""
    import torch
    sb.check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = [a for a in args.arms.split(',') if a]
    built = {a: _setup(args, a, args.warmup + args.paired) for a in arms}
    cuda = str(args.device).startswith('cuda')
    times = {a: [] for a in arms}
    cpu = {a: [] for a in arms}
    for c in range(args.warmup + args.paired):
        for a in sb.cycle_order(arms, c):
            c0 = time.process_time()
            dt = sb.timed_call(built[a][1], cuda)
            if c >= args.warmup:
                times[a].append(dt)
                cpu[a].append(time.process_time() - c0)
    return dict(setting=args.setting, arms=arms, cycles=args.paired,
                warmup=args.warmup, batch=args.batch_size, times=times,
                cpu_times=cpu,
                losses={a: float(built[a][2][-1]) for a in arms},
                threads=torch.get_num_threads(), torch=torch.__version__,
                device=args.device, amp=args.amp,
                channels_last=args.channels_last)


def paired_ratio(times: dict, num: str = 'store',
                 den: str = 'student') -> dict:
    """:func:`_step_bench.paired_ratio`, store / student by default."""
    return sb.paired_ratio(times, num, den)


def perf_rows(data: dict, bench_args: list):
    """The performance table's rows (student first) and verdicts
    (``(what, measured, target, '<=', verdict)``, one per setting:
    ensemble from the store / ViT student step) of this benchmark's
    ``--json`` ``data``, run with ``bench_args``. Step times (median wall
    seconds) and the ratio (median of the per-cycle store / student wall
    ratios) from the setting's paired run (``{setting}@paired``) when
    there is one, else the medians of the per-arm processes; memory from
    the per-arm processes."""
    amp = sb.arg_value(bench_args, '--amp', 'fp32')
    rows, verdicts = [], []
    for s in [s for s in CONFIGS if f'{s}@student' in data]:
        label = ('CIFAR DeiT-Ti width, 32 px' if s == 'cifar' else
                 'ImageNet DeiT-Ti from R50+RedNet-50, 224 px') + f', {amp}'
        r = {a: data[f'{s}@{a}'] for a in ARMS if f'{s}@{a}' in data}
        paired = data.get(f'{s}@paired')
        if paired:
            r = {a: dict(v, median_s=statistics.median(paired['times'][a]))
                 for a, v in r.items() if a in paired['times']}
        what = f'ensemble from the store / ViT student step ({s}, {amp})'
        rs, v = sb.setting_rows(
            'ensemble', label, r,
            (('student', 'ViT student alone (DeiT, CE)'),
             ('online', 'ensemble, 2 teachers online'),
             ('store', 'ensemble, teacher logits stored')), 'store', TARGET,
            what)
        if v and paired:
            v = sb.judge(what, paired_ratio(paired['times'])['median'],
                         TARGET)
        rows += rs
        verdicts += [v] if v else []
    return rows, verdicts


def print_paired(paired: dict, arms) -> None:
    """The paired runs' table: per setting and arm the median wall and CPU
    step, and store (and online) / student per cycle: median (min-max)."""
    any_p = next(iter(paired.values()))
    print()
    print(f'Paired timing (the step times and the target): one process per '
          f'setting holding all arms, {any_p["warmup"]} warm-up cycles, '
          f'then {any_p["cycles"]} cycles of one step per arm (order '
          f'carry-over-balanced orders), {any_p["threads"]} threads. Ratios: median '
          'over cycles of that cycle\'s ratio (min - max).')
    print()
    print('| setting | batch | arm | step (wall s, median) | step (CPU s, '
          'median) | / student per cycle, wall: median (min - max) | '
          '/ student per cycle, CPU: median |')
    print('|---|---|---|---|---|---|---|')
    for s, p in paired.items():
        for a in [a for a in arms if a in p['times']]:
            if a != 'student' and 'student' in p['times']:
                w = paired_ratio(p['times'], a)
                c = paired_ratio(p['cpu_times'], a)
                rel = (f'{w["median"]:.3f} ({w["min"]:.3f} - '
                       f'{w["max"]:.3f}) | {c["median"]:.3f}')
            else:
                rel = '- | -'
            print(f'| {s} ({SIZES[s]} px) | {p["batch"]} | {ARM_DESC[a]} | '
                  f'{statistics.median(p["times"][a]):.3f} | '
                  f'{statistics.median(p["cpu_times"][a]):.3f} | {rel} |')


def main():
    args = parse_args()
    if sb.run_worker_mode(args, run_paired, run_one):
        return
    settings = [s for s in args.settings.split(',') if s]
    arms = [a for a in args.arms.split(',') if a]
    results, paired = {}, {}
    t_start, load0 = time.time(), os.getloadavg()[0]
    for setting in settings:
        batch = args.batch_size or (16 if setting == 'cifar' else 8)
        common = ['--setting', setting, '--batch-size', batch, '--warmup',
                  args.warmup, '--device', args.device, '--amp', args.amp]
        if args.channels_last:
            common.append('--channels-last')
        if args.threads:
            common += ['--threads', args.threads]
        for rnd in range(args.rounds):
            for arm in arms:
                t0 = time.time()
                res = sb.pool_rounds(results.get((setting, arm)),
                                     sb.run_arm(__file__, [
                                         '--arm', arm, '--steps', args.steps,
                                         *common], REPO))
                results[(setting, arm)] = res
                print(f'# {setting} {arm:8s} round {rnd}: steps '
                      f'{[round(t, 3) for t in res["times"]]}, mem '
                      f'+{res["mem_mib"]:.0f} MiB, subprocess '
                      f'{time.time() - t0:.0f} s', file=sys.stderr,
                      flush=True)
        if args.paired:
            t0 = time.time()
            paired[setting] = sb.run_arm(__file__, [
                '--paired-run', '--paired', args.paired, '--arms',
                ','.join(arms), *common], REPO)
            print(f'# {setting} paired: {args.paired} cycles, subprocess '
                  f'{time.time() - t0:.0f} s', file=sys.stderr, flush=True)
    any_res = next(iter(results.values()))
    print(f'Machine: {args.device}, {os.cpu_count()} CPU cores visible, '
          f'torch {any_res["torch"]}, {any_res["threads"]} threads, '
          f'{sb.setup_line(args)}, random weights; a step is forward + '
          'backward + AdamW step.')
    print(f'Per-arm processes ({"the memory column; " if paired else ""}'
          f'warm-up {args.warmup}, median of {args.steps} timed steps x '
          f'{args.rounds} round(s), a fresh process each). Memory column: '
          f'{sb.memory_note(args.device)}.')
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
    if paired:
        print_paired(paired, arms)
    print()
    for setting in settings:
        if 'store' in arms and 'student' in arms:
            if setting in paired:
                ratio = paired_ratio(paired[setting]['times'])['median']
                how = 'median per-cycle ratio of the paired run'
            else:
                ratio = (results[(setting, 'store')]['median_s'] /
                         results[(setting, 'student')]['median_s'])
                how = 'ratio of the per-arm medians'
            print(f'Target "store <= {TARGET:.2f} x student step time" '
                  f'({setting}, {how}): {ratio:.3f} -> '
                  f'{"MET" if ratio <= TARGET else "NOT MET"}')
    sb.print_wall_and_load(t_start, load0)
    results.update({(s, 'paired'): p for s, p in paired.items()})
    sb.dump_json(args.json, results)


if __name__ == '__main__':
    main()
