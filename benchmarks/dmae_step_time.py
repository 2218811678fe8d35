"""Training-step time and peak memory of DMAE vs. plain MAE.

Three arms, each at 75 / 95 / 98 % masking (49 / 9 / 3 visible patches of
196 at 224 px, patch 16):

* ``mae``       -- the student trained as a plain MAE (mmpretrain ``MAEViT``
  ViT-B/16 + ``MAEPretrainDecoder`` + ``MAEPretrainHead``), no teacher.
* ``truncated`` -- ``kdep_mm.DMAEDistiller`` as configured in
  ``configs/dmae/vit-b_from_mae-vit-l_in1k_{75,95,98}.py``: the ViT-L/16
  teacher runs blocks 1..18 on the visible patches only.
* ``full``      -- a benchmark-only variant (:class:`FullTeacherDMAE`, defined
  here, not in the library) that runs the teacher "the authors' way": all 24
  ViT-L blocks + final norm + the teacher's MAE decoder on the same visible
  patches, under ``no_grad``; every output except block 18 is discarded.

A step is forward + backward + ``torch.optim.AdamW.step()`` (+ zero_grad) on a
random batch; the reported time is the median of ``--steps`` timed steps after
``--warmup`` untimed ones. Weights are random (no checkpoint is loaded):
timing does not depend on the values.

Memory: each (arm, ratio) runs in a fresh subprocess (this script re-invoked
with ``--arm X --ratio R``). On CPU it reports the growth of the process's
peak resident set size, ``ru_maxrss`` (``resource.getrusage(RUSAGE_SELF)``)
after the last step minus ``ru_maxrss`` right after the model and optimizer
were built (so weights are excluded; activations, gradients, AdamW state and
allocator overhead are included). On CUDA it reports
``torch.cuda.max_memory_allocated`` after the steps minus the allocated
memory after the build (``reset_peak_memory_stats`` in between).

``--amp bf16``: each step's forward and loss under
``torch.autocast(bfloat16)`` (the teacher too: it runs under ``no_grad``
inside the model), the backward and the AdamW step outside it.
``--channels-last``: models and the image batch in ``channels_last`` (it
only concerns the patch embeddings' convolutions). ``--device cuda``:
models and batch on the GPU, the queue drained after each step.

Paired timing (``--paired N``): after the per-arm processes, one more
process per ratio holds all arms and runs N cycles of one step per arm,
in carry-over-balanced orders; the target (truncated <= 0.85 x full at 75 %)
is then judged on the median of the per-cycle ratios, which a slow phase
of a shared machine moves far less than arms timed minutes apart.

Run (default, ~8 min on 2 busy CPU cores)::

    python benchmarks/dmae_step_time.py
    # what docs/dmae.md reports (~19 min on 2 idle cores)
    python benchmarks/dmae_step_time.py --batch-size 16 --ratios 75 \
        --steps 1 --threads 1 --paired 12
    python benchmarks/dmae_step_time.py --batch-size 8 --steps 5 --device cuda
    # the GPU table's run (GPU_ARGS): ViT-L -> ViT-B at batch 64, per precision
    python benchmarks/dmae_step_time.py --device cuda --batch-size 64 \
        --ratios 75 --steps 5 --warmup 2 --paired 10 --amp bf16
"""
import json
import os
import os.path as osp
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _step_bench as sb  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARMS = ('mae', 'truncated', 'full')
RATIOS = (75, 95, 98)
TARGET = 0.85  # truncated <= 0.85 x full at 75 % masking
# the arguments of benchmarks/performance_table.py: the CPU table, the GPU
# table (ViT-L -> ViT-B at batch 64, once per precision) and the GPU
# script's CPU smoke run (benchmarks/gpu_check.sh --smoke: 32 px, i.e. 4
# patches, so that the ViT-L steps take a CPU moment)
PERF_ARGS = ['--batch-size', '16', '--ratios', '75', '--steps', '1',
             '--threads', '1', '--paired', '10']
GPU_ARGS = ['--batch-size', '64', '--ratios', '75', '--steps', '5',
            '--warmup', '2', '--paired', '10']
SMOKE_ARGS = ['--batch-size', '2', '--img-size', '32', '--ratios', '75',
              '--steps', '1', '--warmup', '0', '--paired', '2',
              '--threads', '1']
ARM_DESC = {
    'mae': 'student MAE alone (ViT-B/16 + decoder)',
    'truncated': 'DMAE, teacher ViT-L blocks 1..18 on visible patches',
    'full': 'DMAE, teacher all 24 blocks + norm + MAE decoder',
}


def parse_args():
    p = sb.step_parser(__doc__, ARMS, steps=3)
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--arms', default=','.join(ARMS))
    p.add_argument('--rounds', type=int, default=1,
                   help='repeat the sweep this many times in fresh '
                   'processes; the timed steps of all rounds are pooled')
    p.add_argument('--ratios', default=','.join(map(str, RATIOS)))
    sb.add_paired(p, 'ratio', int,
                  'also time the arms in one process per ratio, steps '
                  'interleaved for N cycles; the target is then judged on '
                  'the median per-cycle truncated/full ratio')
    args = sb.parse_paired(p)
    return args


# ------------------------------------------------------------ models
def _full_teacher_cls():
    import torch

    from kdep_mm.models import DMAEDistiller

    class FullTeacherDMAE(DMAEDistiller):
        """Benchmark-only: the teacher runs to the end, as in the authors'
        code, and its decoder too; only the distilled blocks are kept."""

        @torch.no_grad()
        def teacher_visible_features(self, inputs, ids_keep):
            self.teacher.eval()
            bb = self.frozen_teacher.backbone
            wanted = [t for _, t in self.distill_pairs]
            depth = len(bb.layers)
            outs = bb.forward_visible(inputs, ids_keep, wanted + [depth])
            latent = bb.ln1(outs[-1])
            # the ids_restore of that mask: visible first, then the rest
            B, L = inputs.shape[0], bb.num_patches
            n_keep = ids_keep.shape[1]
            keep = torch.ones(B, L, device=inputs.device)
            keep.scatter_(1, ids_keep, 0.)
            rest = torch.argsort(keep, dim=1, stable=True)[:, n_keep:]
            ids_restore = torch.argsort(torch.cat([ids_keep, rest], 1), 1)
            _ = self.teacher.neck(latent, ids_restore)  # discarded
            return outs[:len(wanted)]

    return FullTeacherDMAE


def build_model(arm, ratio, img_size=224):
    """The model of one arm from the DMAE config of ``ratio``; at another
    ``img_size`` the ViTs and decoders get the matching patch count."""
    from mmengine.config import Config

    import kdep_mm  # noqa: F401
    from kdep_mm.registry import MODELS
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'dmae',
                 f'vit-b_from_mae-vit-l_in1k_{ratio}.py'))
    m = cfg.model.to_dict()
    m.pop('teacher_ckpt', None)  # random weights: timing only
    m.pop('data_preprocessor', None)
    m.pop('init_cfg', None)
    if img_size != 224:
        teacher = m['teacher']
        for vit in (m['student'], teacher.get('backbone', teacher)):
            vit['img_size'] = img_size
        n = (img_size // m['student'].get('patch_size', 16))**2
        for neck in (m['neck'], teacher.get('neck')):
            if neck is not None:
                neck['num_patches'] = n
    if arm == 'mae':
        mae = dict(type='mmpretrain.MAE', backbone=m['student'],
                   neck=m['neck'], head=m['head'])
        return MODELS.build(mae)
    if arm == 'truncated':
        return MODELS.build(m)
    m.pop('type')
    return _full_teacher_cls()(**m)


def loss_fn(arm, model, x):
    if arm == 'mae':
        losses = model.loss(x, None)
    else:
        losses = model.forward_train(x)[0]
    return sum(losses.values())


def _setup(args, arm):
    """The model of ``arm`` at ``args.ratio``, its AdamW, and one training
    step as a closure; the same seed for every arm."""
    import torch
    sb.check_device(args.device)
    dev = torch.device(args.device)
    fmt = sb.memory_format(args.channels_last)
    torch.manual_seed(0)
    model = build_model(arm, args.ratio, args.img_size).to(
        dev, memory_format=fmt)
    model.train()
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4,
        betas=(0.9, 0.95), weight_decay=0.05)
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size,
                    device=dev).contiguous(memory_format=fmt)

    def step():
        with sb.autocast(args.device, args.amp):
            loss = loss_fn(arm, model, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return model, opt, x, step


def run_one(args):
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    model, opt, x, step = _setup(args, args.arm)
    n_params = sum(p.numel() for p in model.parameters())
    res = sb.time_steps(step, args.warmup, args.steps, args.device)
    # one more, untimed step under torch's FLOP counter: forward + backward
    # FLOPs (matmuls, attention, convolutions), the optimizer not included
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        with sb.autocast(args.device, args.amp):
            loss = loss_fn(args.arm, model, x)
        loss.backward()
    opt.zero_grad(set_to_none=True)
    res.update(arm=args.arm, ratio=args.ratio,
               flops=counter.get_total_flops(),
               trainable_and_student_params=n_params,
               loss=float(loss.detach()), device=args.device, amp=args.amp,
               channels_last=args.channels_last)
    return res


def run_paired(args):
    """All arms in one process, their steps interleaved: cycle ``c`` runs one
    step of each arm, in the order ``_step_bench.cycle_order(arms, c)`` (a
    Williams design). A slow phase of a shared machine then hits the arms
    of one cycle alike, and the ratio of two arms is judged per cycle (the
    median of the per-cycle ratios)."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = [a for a in args.arms.split(',') if a]
    steps = {a: _setup(args, a)[3] for a in arms}
    cuda = args.device.startswith('cuda')
    for _ in range(args.warmup):
        for a in arms:
            sb.timed_call(steps[a], cuda)
    times = {a: [] for a in arms}
    for c in range(args.paired):
        for a in sb.cycle_order(arms, c):
            times[a].append(sb.timed_call(steps[a], cuda))
    return dict(ratio=args.ratio, times=times, cycles=args.paired,
                threads=torch.get_num_threads(), torch=torch.__version__,
                amp=args.amp)


def paired_ratio(times: dict, num: str = 'truncated',
                 den: str = 'full') -> dict:
    """:func:`_step_bench.paired_ratio`, truncated / full by default."""
    return sb.paired_ratio(times, num, den)


# ------------------------------------------------------------ driver
def print_paired(paired: dict, arms) -> None:
    print()
    n = next(iter(paired.values()))['cycles']
    print(f'Paired timing: one process per ratio holding all arms, {n} '
          'cycles of one step per arm (carry-over-balanced orders).')
    print()
    print('| masking | ' + ' | '.join(f'{a} (s, median)' for a in arms) +
          ' | truncated / full per cycle: median | (quartiles) | '
          'ratio of summed times |')
    print('|---|' + '---|' * len(arms) + '---|---|---|')
    for r, res in paired.items():
        pr = paired_ratio(res['times'])
        meds = ' | '.join(f'{statistics.median(res["times"][a]):.3f}'
                          for a in arms)
        print(f'| {r}% | {meds} | {pr["median"]:.3f} | '
              f'{pr["q1"]:.3f} - {pr["q3"]:.3f} | {pr["of_sums"]:.3f} |')


def perf_rows(data: dict, bench_args: list):
    """The performance table's rows (MAE first) and verdict (``(what,
    measured, target, '<=', verdict)``: truncated / full teacher at 75 %
    masking) of this benchmark's ``--json`` ``data``, run with
    ``bench_args``. Step times and the ratio from the paired run (all arms
    in one process, steps interleaved) when there is one, else the
    medians of the per-arm processes; memory from the per-arm processes."""
    amp = sb.arg_value(bench_args, '--amp', 'fp32')
    b = int(sb.arg_value(bench_args, '--batch-size', 4))
    px = int(sb.arg_value(bench_args, '--img-size', 224))
    r = {a: data[f'{a}@75'] for a in ARMS if f'{a}@75' in data}
    paired = data.get('paired@75')
    step = {a: (statistics.median(paired['times'][a]) if paired
                else r[a]['median_s']) for a in r}
    rows = []
    for arm, desc in (('mae', 'ViT-B MAE alone'),
                      ('truncated', 'DMAE, ViT-L truncated (18 blocks)'),
                      ('full', 'DMAE, full ViT-L + decoder')):
        if arm in r:
            rows.append(sb.perf_row(
                'DMAE', f'ViT-B from ViT-L, {px} px, 75%, {amp}', b, desc,
                step[arm], r[arm]['mem_mib'], step.get('mae')))
    verdicts = []
    if 'truncated' in step and 'full' in step:
        ratio = (paired_ratio(paired['times'])['median'] if paired else
                 step['truncated'] / step['full'])
        verdicts.append(sb.judge(
            f'DMAE truncated teacher / full teacher, 75% masking ({amp})',
            ratio, TARGET))
    return rows, verdicts


def main():
    args = parse_args()
    if sb.run_worker_mode(args, run_paired, run_one):
        return

    import torch
    arms = [a for a in args.arms.split(',') if a]
    ratios = [int(r) for r in args.ratios.split(',') if r]
    results = {}
    t_start = time.time()
    load0 = os.getloadavg()[0]
    # ratio-major within a round; rounds repeat the whole sweep in fresh
    # processes, so that drift in machine load hits all arms alike
    cells = [(r, a) for _ in range(args.rounds) for r in ratios
             for a in arms]
    common = ['--batch-size', args.batch_size, '--warmup', args.warmup,
              '--device', args.device, '--img-size', args.img_size,
              '--amp', args.amp]
    if args.channels_last:
        common.append('--channels-last')
    if args.threads:
        common += ['--threads', args.threads]
    for r, a in cells:
        cmd = ['--arm', a, '--ratio', r, '--steps', args.steps, *common]
        t0 = time.time()
        res = sb.pool_rounds(results.get((a, r)),
                             sb.run_arm(__file__, cmd, REPO))
        results[(a, r)] = res
        print(f'# {a:9s} {r}%: median {res["median_s"]:.3f} s/step '
              f'(steps {[round(t, 3) for t in res["times"]]}), '
              f'mem +{res["mem_mib"]:.0f} MiB, '
              f'subprocess {time.time() - t0:.0f} s', file=sys.stderr,
              flush=True)

    paired = {}
    for r in ratios if args.paired else ():
        t0 = time.time()
        paired[r] = sb.run_arm(
            __file__, ['--paired-run', '--ratio', r, '--paired',
                       args.paired, '--arms', ','.join(arms), *common], REPO)
        print(f'# paired {r}%: {args.paired} cycles, subprocess '
              f'{time.time() - t0:.0f} s', file=sys.stderr, flush=True)

    any_res = next(iter(results.values()))
    print(f'Machine: {args.device}, {os.cpu_count()} CPU cores visible, '
          f'torch {any_res["torch"]}, {any_res["threads"]} threads, '
          f'{sb.setup_line(args)}, batch {args.batch_size}, {args.img_size} px, warm-up '
          f'{args.warmup}, median of {args.steps} timed steps x '
          f'{args.rounds} round(s) (forward + backward + AdamW step), '
          'random weights. GFLOP: forward + backward of one step counted '
          'by torch.utils.flop_counter (matmuls, attention; no optimizer).')
    print(f'Memory column: {sb.memory_note(args.device)}.')
    print()
    from kdep_mm.models import num_visible_patches
    n_patches = (args.img_size // 16)**2
    print(f'| masking (visible/{n_patches}) | arm | step time (s, median) | '
          'step time (s, min) | peak mem (MiB) | GFLOP |')
    print('|---|---|---|---|---|---|')
    vis = {r: num_visible_patches(n_patches, r / 100) for r in ratios}
    for r in ratios:
        for a in arms:
            res = results[(a, r)]
            print(f'| {r}% ({vis.get(r, "?")}) | {ARM_DESC[a]} | '
                  f'{res["median_s"]:.3f} | {min(res["times"]):.3f} | '
                  f'{res["mem_mib"]:.0f} | {res["flops"] / 1e9:.0f} |')
    print()
    if 'truncated' in arms and 'full' in arms:
        print('| masking | truncated / full time (median) | '
              'truncated / full time (min) | truncated / full mem | '
              'DMAE-truncated / MAE time (median) | truncated / full '
              'GFLOP |')
        print('|---|---|---|---|---|---|')
        for r in ratios:
            t = results[('truncated', r)]
            f = results[('full', r)]
            m = results.get(('mae', r))
            print(f'| {r}% | {t["median_s"] / f["median_s"]:.3f} | '
                  f'{min(t["times"]) / min(f["times"]):.3f} | '
                  f'{t["mem_mib"] / max(f["mem_mib"], 1e-9):.3f} | ' +
                  (f'{t["median_s"] / m["median_s"]:.3f} |' if m else '- |')
                  + f' {t["flops"] / f["flops"]:.3f} |')
        if paired:
            print_paired(paired, arms)
        if 75 in ratios:
            if 75 in paired:
                ratio75 = paired_ratio(paired[75]['times'])['median']
                how = 'median per-cycle ratio of the paired run'
            else:
                ratio75 = (results[('truncated', 75)]['median_s'] /
                           results[('full', 75)]['median_s'])
                how = 'ratio of the medians'
            ok = ratio75 <= TARGET
            print()
            print(f'Target "truncated <= {TARGET:.2f} x full step time at '
                  '75%" '
                  f'({how}): {ratio75:.3f} -> '
                  f'{"MET" if ok else "NOT MET"}')
    sb.print_wall_and_load(t_start, load0)
    if args.json:
        with open(args.json, 'w') as fh:
            out = {f'{a}@{r}': v for (a, r), v in results.items()}
            out.update({f'paired@{r}': v for r, v in paired.items()})
            json.dump(out, fh, indent=1)
    del torch


if __name__ == '__main__':
    main()
