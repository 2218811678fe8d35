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

Run (default, ~8 min on 2 busy CPU cores)::

    python benchmarks/dmae_step_time.py
    python benchmarks/dmae_step_time.py --batch-size 8 --steps 5 --device cuda
"""
import argparse
import json
import os
import os.path as osp
import resource
import statistics
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _step_bench as sb  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARMS = ('mae', 'truncated', 'full')
RATIOS = (75, 95, 98)
ARM_DESC = {
    'mae': 'student MAE alone (ViT-B/16 + decoder)',
    'truncated': 'DMAE, teacher ViT-L blocks 1..18 on visible patches',
    'full': 'DMAE, teacher all 24 blocks + norm + MAE decoder',
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--batch-size', type=int, default=4)
    p.add_argument('--steps', type=int, default=3,
                   help='timed steps (median reported)')
    p.add_argument('--warmup', type=int, default=1, help='untimed steps')
    p.add_argument('--threads', type=int, default=None,
                   help='torch.set_num_threads (default: torch default)')
    p.add_argument('--device', default='cpu')
    p.add_argument('--img-size', type=int, default=224)
    p.add_argument('--arms', default=','.join(ARMS))
    p.add_argument('--rounds', type=int, default=1,
                   help='repeat the sweep this many times in fresh '
                   'processes; the timed steps of all rounds are pooled')
    p.add_argument('--ratios', default=','.join(map(str, RATIOS)))
    p.add_argument('--arm', choices=ARMS, help='(internal) run one arm')
    p.add_argument('--ratio', type=int, help='(internal) masking ratio, %%')
    p.add_argument('--json', help='also write the results to this file')
    return p.parse_args()


# ------------------------------------------------------------ models
def _full_teacher_cls():
    import torch

    from kdep_mm.models import DMAEDistiller, vit_forward_visible
    from kdep_mm.models.algorithms.base_distiller import _backbone_of

    class FullTeacherDMAE(DMAEDistiller):
        """Benchmark-only: the teacher runs to the end, as in the authors'
        code, and its decoder too; only the distilled blocks are kept."""

        @torch.no_grad()
        def teacher_visible_features(self, inputs, ids_keep):
            self.teacher.eval()
            bb = _backbone_of(self.teacher)
            wanted = [t for _, t in self.distill_pairs]
            depth = len(bb.layers)
            outs = vit_forward_visible(bb, inputs, ids_keep,
                                       wanted + [depth])
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


def run_one(args):
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model(args.arm, args.ratio, args.img_size).to(dev)
    model.train()
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-4,
        betas=(0.9, 0.95), weight_decay=0.05)
    n_params = sum(p.numel() for p in model.parameters())
    x = torch.randn(args.batch_size, 3, args.img_size, args.img_size,
                    device=dev)
    cuda = dev.type == 'cuda'
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    times = []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        loss = loss_fn(args.arm, model, x)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        if i >= args.warmup:
            times.append(dt)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        mem_mib = (peak - base) / 2**20
        abs_mib = peak / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mem_mib = (peak - base) / 1024
        abs_mib = peak / 1024
    # one more, untimed step under torch's FLOP counter: forward + backward
    # FLOPs (matmuls, attention, convolutions), the optimizer not included
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        loss_fn(args.arm, model, x).backward()
    opt.zero_grad(set_to_none=True)
    return dict(arm=args.arm, ratio=args.ratio, times=times,
                flops=counter.get_total_flops(),
                median_s=statistics.median(times), mem_mib=mem_mib,
                peak_abs_mib=abs_mib, trainable_and_student_params=n_params,
                threads=torch.get_num_threads(), torch=torch.__version__)


# ------------------------------------------------------------ driver
def main():
    args = parse_args()
    if args.arm is not None:
        res = run_one(args)
        print('RESULT ' + json.dumps(res), flush=True)
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
    for r, a in cells:
        cmd = ['--arm', a, '--ratio', r, '--batch-size', args.batch_size,
               '--steps', args.steps, '--warmup', args.warmup,
               '--device', args.device, '--img-size', args.img_size]
        if args.threads:
            cmd += ['--threads', args.threads]
        t0 = time.time()
        res = sb.pool_rounds(results.get((a, r)),
                             sb.run_arm(__file__, cmd, REPO))
        results[(a, r)] = res
        print(f'# {a:9s} {r}%: median {res["median_s"]:.3f} s/step '
              f'(steps {[round(t, 3) for t in res["times"]]}), '
              f'mem +{res["mem_mib"]:.0f} MiB, '
              f'subprocess {time.time() - t0:.0f} s', file=sys.stderr,
              flush=True)

    any_res = next(iter(results.values()))
    cuda = args.device.startswith('cuda')
    mem_what = ('torch.cuda.max_memory_allocated - memory_allocated after '
                'build' if cuda else
                'peak RSS growth: ru_maxrss after the steps - ru_maxrss '
                'after model+optimizer build, fresh process per cell')
    print(f'Machine: {args.device}, {os.cpu_count()} CPU cores visible, '
          f'torch {any_res["torch"]}, {any_res["threads"]} threads, '
          f'batch {args.batch_size}, {args.img_size} px, warm-up '
          f'{args.warmup}, median of {args.steps} timed steps x '
          f'{args.rounds} round(s) (forward + backward + AdamW step), '
          'random weights. GFLOP: forward + backward of one step counted '
          'by torch.utils.flop_counter (matmuls, attention; no optimizer).')
    print(f'Memory column: {mem_what}.')
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
        if 75 in ratios:
            ratio75 = (results[('truncated', 75)]['median_s'] /
                       results[('full', 75)]['median_s'])
            ok = ratio75 <= 0.85
            print()
            print(f'Target "truncated <= 0.85 x full step time at 75%": '
                  f'{ratio75:.3f} -> {"MET" if ok else "NOT MET"}')
    print(f'\n(total benchmark wall time {time.time() - t_start:.0f} s; '
          f'1-min load average at start {load0:.2f}, at end '
          f'{os.getloadavg()[0]:.2f})')
    if args.json:
        with open(args.json, 'w') as fh:
            json.dump({f'{a}@{r}': v for (a, r), v in results.items()}, fh,
                      indent=1)
    del torch


if __name__ == '__main__':
    main()
