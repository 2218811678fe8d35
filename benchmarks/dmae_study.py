#!/usr/bin/env python
"""DMAE at CIFAR-10 scale (issue 19 item 3): does distilling an MAE teacher
into a smaller ViT on the visible patches (DMAE, Bai et al., CVPR 2023)
beat the same student pre-trained as MAE alone at equal budget, and does
95% masking stay within a point or two of 75%?

Cells (one JSON each under ``<results>/cells``, written atomically; a
rerun skips the finished ones, ``--jobs N`` workers share them through
claim files):

* ``teacher``: MAE pre-training of the teacher ViT on the pool (seed 0);
* ``pretrain/<arm>/s<seed>``: the student, ``mae75`` (MAE alone) or
  ``dmae75|95|98`` (DMAE from the truncated teacher), the same epochs;
* ``probe/<arm>/s<seed>``: linear probe of the frozen export (L2 chosen on
  the validation split), top-1 on the full test set;
* ``finetune/<arm>/s<seed>``: end-to-end fine-tuning, top-1 on the test set;
  arm ``scratch`` is the random-init student (probe + fine-tune only).

Models and recipes: ``configs/dmae/cifar/study.py`` (presets ``gpu``,
``cpu``, ``smoke``). The loop is a plain one (the data are uint8 tensors on
the device, augmented there) so that a short GPU budget goes into steps.

    python benchmarks/dmae_study.py --preset gpu --device cuda
    python benchmarks/dmae_study.py --preset cpu --jobs 2
    python benchmarks/dmae_study.py --preset gpu --report   # docs/dmae.md
"""
import argparse
import copy
import json
import math
import os
import os.path as osp
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, REPO)

SPEC = osp.join(REPO, 'configs', 'dmae', 'cifar', 'study.py')
DOC = osp.join(REPO, 'docs', 'dmae.md')
BEGIN, END = '<!-- dmae-study:begin -->', '<!-- dmae-study:end -->'
DMAE_ARMS = ('dmae75', 'dmae95', 'dmae98')


def say(msg):
    print(f'[dmae_study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


# ------------------------------------------------------------------ spec
def load_spec(preset):
    """The study config with ``presets[preset]`` applied: the model dicts
    get the preset's widths/depths, the pairs and the decoder."""
    from mmengine.config import Config
    cfg = Config.fromfile(SPEC)
    if preset not in cfg.presets:
        raise KeyError(f'--preset {preset!r}: {SPEC} has presets '
                       f'{sorted(cfg.presets)}')
    S = cfg.to_dict()
    P = S.pop('presets')[preset]
    for key in ('teacher_arch', 'student_arch', 'decoder', 'distill_pairs',
                'seeds'):
        S[key] = P.pop(key, S[key])
    S.update(P, preset=preset)
    S['distill_pairs'] = [tuple(p) for p in S['distill_pairs']]
    S['teacher'] = _with_arch(S['teacher'], S['teacher_arch'], S['decoder'])
    S['mae_student'] = _with_arch(S['mae_student'], S['student_arch'],
                                  S['decoder'])
    d = S['dmae_student']
    d['student'] = S['mae_student']['backbone']
    d['neck'], d['head'] = S['mae_student']['neck'], S['mae_student']['head']
    d['teacher'], d['distill_pairs'] = S['teacher'], S['distill_pairs']
    S['classifier']['backbone']['arch'] = S['student_arch']
    S['classifier']['head']['in_channels'] = S['student_arch']['embed_dims']
    return S


def _with_arch(mae, arch, decoder):
    mae = copy.deepcopy(mae)
    mae['backbone']['arch'] = arch
    mae['neck'].update(decoder, embed_dim=arch['embed_dims'])
    return mae


def arm_ratio(arm):
    return int(arm[-2:]) / 100.


def plan(S):
    """Cells in run order: the teacher, then seed by seed the four arms
    (pre-train, probe, fine-tune), the random-init baseline last."""
    cells = [dict(id='teacher', kind='teacher', arm='teacher', seed=0,
                  deps=[])]
    for seed in S['seeds']:
        for arm in S['arms']:
            pre = [] if arm == 'scratch' else [f'pretrain/{arm}/s{seed}']
            if pre:
                cells.append(dict(id=pre[0], kind='pretrain', arm=arm,
                                  seed=seed, deps=['teacher'] if
                                  arm.startswith('dmae') else []))
            for kind in ('probe', 'finetune'):
                cells.append(dict(id=f'{kind}/{arm}/s{seed}', kind=kind,
                                  arm=arm, seed=seed, deps=pre))
    return cells


# ------------------------------------------------------------------ data
def load_data(S, cache):
    """uint8 RGB arrays (N, 32, 32, 3): ``pool`` (pre-training and the
    probe's / fine-tuning's training set), ``val`` (val_per_class per class
    of the training images, never trained on), ``test`` (the 10,000 test
    images, or the preset's first ``test``)."""
    from shared_data import unpack_shared
    from study.data import cifar_parts, every_class
    root = unpack_shared('cifar10_jpeg.tar.gz')
    val_n = S.get('val', S['val_per_class'] * 10) // 10
    key = f'v{val_n}_p{S.get("pool")}_t{S.get("test")}_rr'
    path = osp.join(cache, f'cifar_{key}.npz')
    if osp.isfile(path):
        z = np.load(path)
        return {k: (z[f'{k}_x'], z[f'{k}_y']) for k in ('pool', 'val', 'test')}
    val, pool = cifar_parts(osp.join(root, 'train'), 0, [val_n, None])
    test = cifar_parts(osp.join(root, 'test'), 0, [None])[0]
    pool = every_class(pool, S.get('pool') or len(pool))
    if S.get('test'):
        test = every_class(test, S['test'])
    pool = interleave_classes(pool)
    out = {}
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    def read(args):
        split, rel = args
        with Image.open(osp.join(root, split, rel)) as im:
            return np.asarray(im.convert('RGB'))
    with ThreadPoolExecutor(8) as ex:
        for name, pairs, split in (('pool', pool, 'train'),
                                   ('val', val, 'train'),
                                   ('test', test, 'test')):
            x = np.stack(list(ex.map(read, [(split, p) for p, _ in pairs])))
            out[name] = (x, np.array([lab for _, lab in pairs]))
    os.makedirs(cache, exist_ok=True)
    tmp = path + f'.{os.getpid()}.tmp.npz'
    np.savez(tmp, **{f'{k}_{i}': v[j] for k, v in out.items()
                     for j, i in enumerate('xy')})
    os.replace(tmp, path)
    return out


def interleave_classes(pairs):
    """(path, label) pairs reordered as the 1st image of every class, then
    the 2nd, ... (classes ascending): any prefix is class-balanced."""
    counts, order = {}, []
    for pair in pairs:
        counts[pair[1]] = counts.get(pair[1], 0) + 1
        order.append((counts[pair[1]], pair[1], pair))
    return [pair for *_, pair in sorted(order)]


class Batches:
    """The split on the device as uint8 NCHW; ``normalise`` gives floats."""

    def __init__(self, S, arrays, device):
        x, y = arrays
        self.x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(
            device)
        self.y = torch.from_numpy(y).long().to(device)
        self.mean = torch.tensor(S['mean'], device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(S['std'], device=device).view(1, 3, 1, 1)

    def __len__(self):
        return len(self.y)

    def normalise(self, x):
        return (x.float() - self.mean) / self.std

    def epoch(self, batch, gen):
        perm = torch.randperm(len(self), generator=gen,
                              device='cpu').to(self.x.device)
        for i in range(0, len(self) - batch + 1, batch):
            idx = perm[i:i + batch]
            yield self.normalise(self.x[idx]), self.y[idx]


def random_crop_flip(x, gen, scale=(1., 1.), pad=0):
    """Per-sample RandomResizedCrop (area in ``scale``, aspect 3/4-4/3) or,
    with ``scale=(1, 1)``, a random shift of up to ``pad`` pixels (zero =
    mean colour after normalisation), and a horizontal flip, as one affine
    resampling (bilinear)."""
    B, _, H, W = x.shape
    u = torch.rand(B, 5, generator=gen).to(x.device)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    logr = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1]
    if scale == (1., 1.):
        logr = torch.zeros_like(logr)
    sw = torch.sqrt(area * logr.exp()).clamp(max=1.)
    sh = torch.sqrt(area / logr.exp()).clamp(max=1.)
    if pad:
        tx = torch.round((u[:, 2] * 2 - 1) * pad) * 2 / W
        ty = torch.round((u[:, 3] * 2 - 1) * pad) * 2 / H
    else:
        tx, ty = (u[:, 2] * 2 - 1) * (1 - sw), (u[:, 3] * 2 - 1) * (1 - sh)
    flip = torch.where(u[:, 4] < 0.5, -1., 1.)
    theta = torch.zeros(B, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = sw * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = sh, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode='bilinear', padding_mode='zeros',
                         align_corners=False)


# --------------------------------------------------------------- training
def _autocast(device):
    return torch.autocast('cuda', dtype=torch.bfloat16) if \
        device.startswith('cuda') else torch.autocast('cpu', enabled=False)


def _warm_cosine(optimizer, steps, warmup_frac):
    warm = max(1, int(steps * warmup_frac))

    def f(i):
        if i < warm:
            return (i + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (i - warm) / max(1, steps - warm)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def train(model, optimizer, data, epochs, batch, seed, device, loss_fn,
          warmup_frac):
    """``epochs`` passes over ``data`` (dropping the last partial batch);
    returns dict(steps, train_s, cpu_s (this process's CPU time), losses:
    the mean of each loss term over the last epoch)."""
    gen = torch.Generator().manual_seed(seed)
    steps = epochs * (len(data) // batch)
    if steps < 1:
        raise ValueError(f'batch {batch} > {len(data)} training images')
    sched = _warm_cosine(optimizer, steps, warmup_frac)
    model.train()
    _sync(device)
    t0, c0, last = time.perf_counter(), time.process_time(), {}
    for ep in range(epochs):
        sums = {}
        for x, y in data.epoch(batch, gen):
            with _autocast(device):
                losses = loss_fn(x, y, gen)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f'non-finite loss {dict((k, float(v)) for k, v in losses.items())}'
                    f' at epoch {ep}')
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            sched.step()
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.) + v.detach()
        n = len(data) // batch
        last = {k: float(v) / n for k, v in sums.items()}
        say(f'  epoch {ep + 1}/{epochs} ({time.perf_counter() - t0:.0f} s): '
            + ', '.join(f'{k} {v:.4f}' for k, v in last.items()))
    _sync(device)
    return dict(steps=steps, train_s=time.perf_counter() - t0,
                cpu_s=time.process_time() - c0, losses=last)


def build(cfg):
    from kdep_mm.registry import MODELS
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    return model


def pretrain_optimizer(S, model, batch):
    from mmengine.optim import build_optim_wrapper
    p = S['pretrain']
    return build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=p['blr'] * batch / 256,
                       betas=tuple(p['betas']),
                       weight_decay=p['weight_decay']),
        paramwise_cfg=dict(norm_decay_mult=0., bias_decay_mult=0.))).optimizer


def mae_loss_fn(model, scale):
    """MAE (mmpretrain) or DMAE (kdep_mm) loss on an augmented batch."""
    def f(x, y, gen):
        x = random_crop_flip(x, gen, scale=scale)
        return model.loss(x, None)
    return f


def _peak_mem(device):
    if device.startswith('cuda'):
        return torch.cuda.max_memory_allocated() / 2 ** 20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _reset_peak(device):
    if device.startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()


def export_path(ctx, arm, seed):
    return osp.join(ctx.work, f'{arm}_s{seed}.pth')


def save_backbone(state, path):
    """{'state_dict': {'backbone.*': ...}}: what a downstream config loads
    with init_cfg Pretrained(prefix='backbone.')."""
    from kdep_mm.utils.checkpoint import atomic_save
    os.makedirs(osp.dirname(path), exist_ok=True)
    atomic_save({'state_dict': {f'backbone.{k}': v.detach().cpu()
                                for k, v in state.items()}}, path)


def run_teacher(cell, ctx):
    S = ctx.S
    torch.manual_seed(cell['seed'])
    model = build(S['teacher']).to(ctx.device)
    opt = pretrain_optimizer(S, model, S['batch'])
    _reset_peak(ctx.device)
    r = train(model, opt, ctx.pool, S['teacher_epochs'], S['batch'],
              cell['seed'], ctx.device,
              mae_loss_fn(model, tuple(S['pretrain']['crop_scale'])),
              S['pretrain']['warmup_frac'])
    from kdep_mm.utils.checkpoint import atomic_save
    atomic_save({'state_dict': {k: v.cpu() for k, v in
                                model.state_dict().items()}},
                osp.join(ctx.work, 'teacher.pth'))
    save_backbone(model.backbone.state_dict(),
                  osp.join(ctx.work, 'teacher_backbone.pth'))
    arch = S['teacher_arch']
    probe = linear_probe(ctx, osp.join(ctx.work, 'teacher_backbone.pth'),
                         arch)
    from kdep_mm.utils.checkpoint import file_sha256
    return dict(r, peak_mib=_peak_mem(ctx.device), probe=probe,
                epochs=S['teacher_epochs'],
                teacher_sha256=file_sha256(osp.join(ctx.work, 'teacher.pth')))


def run_pretrain(cell, ctx):
    S, arm = ctx.S, cell['arm']
    torch.manual_seed(cell['seed'])
    if arm.startswith('dmae'):
        cfg = copy.deepcopy(S['dmae_student'])
        cfg['teacher_ckpt'] = osp.join(ctx.work, 'teacher.pth')
        cfg['mask_ratio'] = cfg['student']['mask_ratio'] = arm_ratio(arm)
    else:
        cfg = copy.deepcopy(S['mae_student'])
        cfg['backbone']['mask_ratio'] = arm_ratio(arm)
    model = build(cfg).to(ctx.device)
    if arm.startswith('dmae'):
        _check_teacher(model, cfg['teacher_ckpt'])
    opt = pretrain_optimizer(S, model, S['batch'])
    _reset_peak(ctx.device)
    r = train(model, opt, ctx.pool, S['student_epochs'], S['batch'],
              1000 + cell['seed'], ctx.device,
              mae_loss_fn(model, tuple(S['pretrain']['crop_scale'])),
              S['pretrain']['warmup_frac'])
    enc = model.student if arm.startswith('dmae') else model.backbone
    save_backbone(enc.state_dict(), export_path(ctx, arm, cell['seed']))
    if arm.startswith('dmae'):
        from kdep_mm.utils.checkpoint import file_sha256
        r['teacher_sha256'] = file_sha256(cfg['teacher_ckpt'])
    return dict(r, peak_mib=_peak_mem(ctx.device), epochs=S['student_epochs'],
                visible=int(enc.num_patches * (1 - arm_ratio(arm))))


def _check_teacher(model, path):
    """The distiller's frozen teacher holds the teacher cell's weights."""
    want = torch.load(path, map_location='cpu', weights_only=True)
    got = model.teacher.state_dict()
    bad = [k for k, v in want['state_dict'].items()
           if k not in got or not torch.equal(got[k].cpu(), v)]
    if bad or len(got) != len(want['state_dict']):
        raise RuntimeError(f'the DMAE teacher does not hold {path}: {bad[:3]}')


def measure(S, ctx, steps):
    """Seconds per training step of each kind at the preset's size (random
    weights: the time does not depend on them; an untrained teacher), the
    probe's wall time (the random-init student, a real cell's work), and
    the plan's predicted total."""
    gen = torch.Generator().manual_seed(0)
    b = S['batch']
    x = ctx.pool.normalise(ctx.pool.x[:b])
    y = ctx.pool.y[:b]
    cfgs = dict(teacher=S['teacher'], mae75=S['mae_student'],
                dmae75=S['dmae_student'], dmae95=dict(
                    S['dmae_student'], mask_ratio=0.95,
                    student=dict(S['dmae_student']['student'],
                                 mask_ratio=0.95)),
                finetune=S['classifier'])
    per_step, cpu_step = {}, {}
    for name, cfg in cfgs.items():
        model = build(cfg).to(ctx.device)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def one():
            with _autocast(ctx.device):
                if name == 'finetune':
                    loss = F.cross_entropy(model(random_crop_flip(
                        x, gen, pad=4), mode='tensor'), y)
                else:
                    loss = sum(model.loss(random_crop_flip(
                        x, gen, scale=(0.2, 1.)), None).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
        one()
        _sync(ctx.device)
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            one()
        _sync(ctx.device)
        per_step[name] = (time.perf_counter() - t0) / steps
        cpu_step[name] = (time.process_time() - c0) / steps
        say(f'{name}: {per_step[name]:.3f} s per step, '
            f'{cpu_step[name]:.3f} CPU s (batch {b})')
    t0, c0 = time.perf_counter(), time.process_time()
    linear_probe(ctx, student_export(ctx, dict(arm='scratch', seed=99)),
                 S['student_arch'])
    probe_s = time.perf_counter() - t0
    cpu_step['probe'] = time.process_time() - c0
    say(f'probe: {probe_s:.1f} s, {cpu_step["probe"]:.1f} CPU s')
    ep = len(ctx.pool) // b
    cost = dict(teacher=per_step['teacher'] * ep * S['teacher_epochs'])
    for arm in ('mae75', 'dmae75', 'dmae95', 'dmae98'):
        cost[arm] = per_step[arm if arm != 'dmae98' else 'dmae95'] * ep * \
            S['student_epochs']
    cost['finetune'] = per_step['finetune'] * ep * S['finetune_epochs']
    n_seeds = len(S['seeds'])
    total = cost['teacher'] + n_seeds * (
        sum(cost[a] for a in ('mae75', 'dmae75', 'dmae95', 'dmae98'))
        + 5 * (cost['finetune'] + probe_s))
    out = dict(per_step_s=per_step, cpu_s=cpu_step, probe_s=probe_s,
               steps_per_epoch=ep, load_avg=os.getloadavg(),
               cell_s=cost, total_s=total, seeds=n_seeds, batch=b,
               timed_steps=steps, device=ctx.device,
               threads=torch.get_num_threads())
    say(f'predicted plan: {total / 60:.1f} min ({json.dumps(cost)})')
    return out


def student_export(ctx, cell):
    """The arm's export; ``scratch``: a freshly initialised student."""
    path = export_path(ctx, cell['arm'], cell['seed'])
    if cell['arm'] == 'scratch' and not osp.isfile(path):
        torch.manual_seed(1000 + cell['seed'])
        save_backbone(build(ctx.S['mae_student']).backbone.state_dict(), path)
    return path


def _load_backbone(bb, path, expect_unexpected=(), expect_missing=()):
    sd = torch.load(path, map_location='cpu', weights_only=True)['state_dict']
    sd = {k[len('backbone.'):]: v for k, v in sd.items()}
    missing, unexpected = bb.load_state_dict(sd, strict=False)
    bad = [k for k in missing if not k.startswith(tuple(expect_missing))] + \
        [k for k in unexpected if not k.startswith(tuple(expect_unexpected))]
    if bad:
        raise RuntimeError(f'{path}: unexpected key mismatch {bad}')
    return dict(missing=sorted(missing), unexpected=sorted(unexpected))


@torch.no_grad()
def features(bb, data, device, batch=500, n=None):
    """Mean patch token after the final norm, (N, C) on the CPU, of the
    first ``n`` images (all by default; the pool's order is class-sorted,
    so a prefix is taken class-balanced by :func:`load_data`)."""
    bb.eval()
    out, n = [], n or len(data)
    for i in range(0, n, batch):
        with _autocast(device):
            f = bb(data.normalise(data.x[i:min(i + batch, n)]))[-1]
        out.append(f.float().mean((2, 3)).cpu())
    return torch.cat(out)


def linear_probe(ctx, path, arch):
    """Frozen backbone (mmpretrain VisionTransformer, final norm, patch
    tokens) -> standardised mean patch token -> L-BFGS logistic regression
    (benchmarks/study/probes.fit_logistic); L2 from ``probe.l2_grid`` by
    validation top-1, then top-1 on the test set. The fit uses the first
    ``probe_train`` pool images (all when unset)."""
    from study.probes import fit_logistic

    from kdep_mm.registry import MODELS
    S = ctx.S
    bb = MODELS.build(dict(S['classifier']['backbone'], arch=arch,
                           final_norm=True, out_type='featmap',
                           drop_path_rate=0.)).to(ctx.device)
    check = _load_backbone(bb, path)
    if check['missing'] or check['unexpected']:
        raise RuntimeError(f'{path} does not load strictly: {check}')
    n = S.get('probe_train') or len(ctx.pool)
    xs = {k: features(bb, d, ctx.device, n=m) for k, d, m in
          (('pool', ctx.pool, n), ('val', ctx.val, None),
           ('test', ctx.test, None))}
    ys = dict(pool=ctx.pool.y[:n].cpu(), val=ctx.val.y.cpu(),
              test=ctx.test.y.cpu())

    def top1(pred, k):
        return 100. * float((pred(xs[k]) == ys[k]).double().mean())
    sweep = {}
    for l2 in S['probe']['l2_grid']:
        pred = fit_logistic(xs['pool'], ys['pool'], 10, l2,
                            S['probe']['max_iter'])
        sweep[str(l2)] = dict(val=top1(pred, 'val'), test=top1(pred, 'test'),
                              train=top1(pred, 'pool'))
    best = max(sweep, key=lambda k: sweep[k]['val'])
    return dict(score=sweep[best]['test'], val=sweep[best]['val'], l2=best,
                sweep=sweep, n_train=n, n_val=len(ys['val']),
                n_test=len(ys['test']))


def run_probe(cell, ctx):
    t0 = time.perf_counter()
    r = linear_probe(ctx, student_export(ctx, cell), ctx.S['student_arch'])
    return dict(r, wall_s=time.perf_counter() - t0)


def run_finetune(cell, ctx):
    """mmpretrain ImageClassifier (VisionTransformer, global average pool,
    no final norm) from the export; AdamW with layer-wise lr decay; top-1
    on the validation split and the test set after the last epoch."""
    from mmengine.optim import build_optim_wrapper
    S, ft = ctx.S, ctx.S['finetune']
    torch.manual_seed(2000 + cell['seed'])
    model = build(S['classifier']).to(ctx.device)
    check = _load_backbone(model.backbone, student_export(ctx, cell),
                           expect_unexpected=('ln1.', ), expect_missing=(
                               'ln2.', ))
    opt = build_optim_wrapper(model, dict(
        optimizer=dict(type='AdamW', lr=ft['blr'] * S['batch'] / 256,
                       weight_decay=ft['weight_decay']),
        constructor='mmpretrain.LearningRateDecayOptimWrapperConstructor',
        paramwise_cfg=dict(layer_decay_rate=ft['layer_decay'],
                           custom_keys={'.ln': dict(decay_mult=0.),
                                        '.bias': dict(decay_mult=0.),
                                        '.cls_token': dict(decay_mult=0.),
                                        '.pos_embed': dict(decay_mult=0.)})
    )).optimizer

    def loss_fn(x, y, gen):
        x = random_crop_flip(x, gen, pad=ft['pad'])
        logits = model(x, mode='tensor')
        return dict(loss_cls=F.cross_entropy(
            logits, y, label_smoothing=ft['label_smoothing']))
    _reset_peak(ctx.device)
    r = train(model, opt, ctx.pool, S['finetune_epochs'], S['batch'],
              3000 + cell['seed'], ctx.device, loss_fn, ft['warmup_frac'])
    model.eval()
    acc = {}
    with torch.no_grad():
        for k, d in (('val', ctx.val), ('test', ctx.test)):
            hit = 0
            for i in range(0, len(d), 500):
                with _autocast(ctx.device):
                    logits = model(d.normalise(d.x[i:i + 500]), mode='tensor')
                hit += int((logits.argmax(1) == d.y[i:i + 500]).sum())
            acc[k] = 100. * hit / len(d)
    return dict(r, score=acc['test'], val=acc['val'], load=check,
                peak_mib=_peak_mem(ctx.device), epochs=S['finetune_epochs'])


RUN = dict(teacher=run_teacher, pretrain=run_pretrain, probe=run_probe,
           finetune=run_finetune)


# ------------------------------------------------------------ scheduling
class Ctx:

    def __init__(self, S, rdir, device, work):
        self.S, self.rdir, self.device, self.work = S, rdir, device, work
        arrays = load_data(S, osp.join(work, 'cache'))
        self.pool, self.val, self.test = (Batches(S, arrays[k], device)
                                          for k in ('pool', 'val', 'test'))


class _Cell:
    """A plan dict as the claim files and the picker see a cell."""

    def __init__(self, c):
        self.c, self.id, self.fname = c, c['id'], c['id'].replace('/', '__')


def retire_lost_artefacts(cells, ctx):
    """Rerun a finished cell whose file in the work dir is gone (the
    teacher's checkpoint, a student's export) when a cell that needs it has
    not run, and the finished cells made from it (a rerun does not repeat
    a run bit for bit: :func:`study.cellstore.retire_lost`): cell JSONs are
    in git, work dirs are not."""
    from study.cellstore import retire_lost

    def made(c):
        return (osp.join(ctx.work, 'teacher.pth') if c['kind'] == 'teacher'
                else export_path(ctx, c['arm'], c['seed'])
                if c['kind'] == 'pretrain' else None)
    done_ = [c for c in cells if done(ctx.rdir, c['id'])]
    lost = [c['id'] for c in done_ if made(c) and not osp.isfile(made(c))]
    retire_lost(lost, [c['deps'] for c in cells
                       if not done(ctx.rdir, c['id'])],
                lambda cid: cell_file(ctx.rdir, cid), say,
                done_deps={c['id']: c['deps'] for c in done_})


def cell_file(rdir, cid):
    return osp.join(rdir, 'cells', cid.replace('/', '__') + '.json')


def done(rdir, cid):
    return osp.isfile(cell_file(rdir, cid))


def _predict_s(cell, rdir, cells):
    """The wall time of the last finished cell of the same kind (and arm
    family), None when none finished yet."""
    fam = cell['arm'][:4]
    for c in reversed(cells):
        if c['kind'] == cell['kind'] and c['arm'][:4] == fam and \
                done(rdir, c['id']):
            with open(cell_file(rdir, c['id'])) as f:
                return json.load(f).get('wall_s')
    return None


def work(cells, ctx, deadline=None, threads=None):
    """Run the cells this process can claim, in order, deps first; a cell
    whose predicted time would pass ``deadline`` is skipped (skipped.json).
    Returns the number of failed cells."""
    from study.cellstore import pick_ready, release, write_json
    if threads:
        torch.set_num_threads(threads)
    failed, skipped = 0, {}

    def past_deadline(c):
        pred = _predict_s(c, ctx.rdir, cells)
        if deadline and pred and time.time() + pred > deadline:
            skipped[c['id']] = f'predicted {pred:.0f} s past the deadline'
            say(f'skip {c["id"]}: {skipped[c["id"]]}')
            return True
        return False
    while True:
        todo = [_Cell(c) for c in cells if not done(ctx.rdir, c['id'])
                and c['id'] not in skipped]
        dead = set(skipped)
        cell, waiting = pick_ready(todo, lambda k: k.c['deps'],
                                   lambda cid: done(ctx.rdir, cid), ctx.rdir,
                                   dead, skip=lambda k: past_deadline(k.c))
        for cid in dead - set(skipped):
            skipped[cid] = 'a dependency did not finish'
        if cell is None:
            if not waiting:
                for k in todo:  # their dependencies are not in this plan
                    if k.id not in skipped and not done(ctx.rdir, k.id):
                        skipped[k.id] = 'a dependency did not finish'
                break
            time.sleep(2)  # the ready ones run in another worker
            continue
        c = cell.c
        say(f'start {c["id"]}')
        t0 = time.perf_counter()
        try:
            res = RUN[c['kind']](c, ctx)
        except Exception as e:  # noqa: BLE001 - recorded, others go on
            failed += 1
            skipped[c['id']] = f'failed: {type(e).__name__}: {e}'
            say(f'FAILED {c["id"]}: {e}')
            os.makedirs(osp.join(ctx.rdir, 'cells'), exist_ok=True)
            with open(cell_file(ctx.rdir, c['id'])[:-5] + '.error.txt',
                      'w') as f:
                import traceback
                traceback.print_exc(file=f)
            release(ctx.rdir, cell)
            continue
        res.update(id=c['id'], kind=c['kind'], arm=c['arm'],
                   seed=c['seed'], preset=ctx.S['preset'],
                   device=ctx.device, wall_s=time.perf_counter() - t0,
                   torch=torch.__version__)
        write_json(cell_file(ctx.rdir, c['id']), res)
        release(ctx.rdir, cell)
        say(f'done {c["id"]} in {res["wall_s"]:.1f} s'
            + (f': top-1 {res["score"]:.2f}' if 'score' in res else ''))
    if skipped:
        write_json(osp.join(ctx.rdir, f'skipped_{os.getpid()}.json'), skipped)
    return failed


# ---------------------------------------------------------------- report
def load_cells(rdir):
    out = {}
    cdir = osp.join(rdir, 'cells')
    for name in sorted(os.listdir(cdir)) if osp.isdir(cdir) else []:
        if name.endswith('.json') and not name.endswith('.stale.json'):
            with open(osp.join(cdir, name)) as f:
                r = json.load(f)
            out[r['id']] = r
    return out


def report(S, rdir, command):
    """Markdown: the setup, the table (mean +- sd over seeds), the paired
    differences with 95% t-intervals and the verdict of each claim."""
    from study.stats import paired, summary, verdict
    R = load_cells(rdir)

    def scores(kind, arm):
        return {r['seed']: r['score'] for r in R.values()
                if r['kind'] == kind and r['arm'] == arm}

    def fmt(st):
        return '-' if st is None else \
            f'{st["mean"]:.2f} ± {st["sd"]:.2f} (n={st["n"]})'

    def ci(c):
        return 'n < 2' if c is None else \
            f'{c["mean"]:+.2f} [{c["lo"]:+.2f}, {c["hi"]:+.2f}] (n={c["n"]})'
    ta, sa = S['teacher_arch'], S['student_arch']
    lines = [f'Preset `{S["preset"]}`: teacher ViT {ta["embed_dims"]}-d x '
             f'{ta["num_layers"]} blocks, student ViT {sa["embed_dims"]}-d x '
             f'{sa["num_layers"]} blocks, 32 px, patch 4 (64 patches), pair '
             f'{S["distill_pairs"]}; pool {S.get("pool") or 45000} images, '
             f'probe fitted on {S.get("probe_train") or "all"} of them; '
             f'teacher {S["teacher_epochs"]} epochs, '
             f'each student {S["student_epochs"]} pre-training epochs, '
             f'fine-tuning {S["finetune_epochs"]} epochs, batch {S["batch"]}.',
             '']
    t = R.get('teacher')
    if t:
        cpu = f', {t["cpu_s"]:.0f} CPU s' if 'cpu_s' in t else ''
        lines += [f'Teacher: MAE loss {t["losses"]["loss"]:.4f} after '
                  f'{t["epochs"]} epochs ({t["steps"]} steps), linear probe '
                  f'top-1 {t["probe"]["score"]:.2f} (validation '
                  f'{t["probe"]["val"]:.2f}); {t["train_s"]:.0f} s{cpu} on '
                  f'{t["device"]}.', '']
    other = sorted(r['id'] for r in R.values() if r['kind'] == 'pretrain'
                   and r['arm'].startswith('dmae') and t and
                   r.get('teacher_sha256') != t.get('teacher_sha256'))
    if other:
        lines += ['Distilled from another run of the teacher cell (or one '
                  'that recorded no checksum; the teacher was retrained '
                  'after its checkpoint was lost): ' + ', '.join(other)
                  + '.', '']
    lines += ['| arm | visible patches | pre-train s, wall / CPU (mean) | '
              'linear probe top-1 | fine-tune top-1 |', '|---|---|---|---|---|']
    for arm in S['arms']:
        pre = [r for r in R.values() if r['kind'] == 'pretrain'
               and r['arm'] == arm]
        vis = pre[0]['visible'] if pre else '-'
        secs = '-' if not pre else f'{np.mean([r["train_s"] for r in pre]):.0f}'
        if pre and all('cpu_s' in r for r in pre):
            secs += f' / {np.mean([r["cpu_s"] for r in pre]):.0f}'
        lines.append(f'| {arm} | {vis} | {secs} | '
                     f'{fmt(summary(list(scores("probe", arm).values())))} | '
                     f'{fmt(summary(list(scores("finetune", arm).values())))}'
                     ' |')
    lines += ['', '| claim | protocol | paired difference [95% CI] | '
              'verdict |', '|---|---|---|---|']
    for kind in ('probe', 'finetune'):
        c = paired(scores(kind, 'dmae75'), scores(kind, 'mae75'))
        lines.append(f'| DMAE 75% > MAE alone 75% | {kind} | {ci(c)} | '
                     f'{verdict(c)} |')
    for kind in ('probe', 'finetune'):
        c = paired(scores(kind, 'dmae95'), scores(kind, 'dmae75'))
        lines.append(f'| DMAE 95% within 2 points of 75% (95 - 75 > -2) | '
                     f'{kind} | {ci(c)} | {verdict(c, margin=-2.)} |')
    for kind in ('probe', 'finetune'):
        c = paired(scores(kind, 'dmae98'), scores(kind, 'dmae75'))
        lines.append(f'| (98% against 75%, for the record) | {kind} | '
                     f'{ci(c)} | - |')
    lines += ['', '"holds": the whole interval is above the margin; '
              '"reversed": below it; else "inconclusive".', '',
              f'Command: `{command}`']
    return '\n'.join(lines) + '\n'


def write_doc_section(text, doc=DOC, key='cpu'):
    """Replace the ``key`` block between the study's markers in ``doc``."""
    b, e = f'{BEGIN[:-4]}:{key} -->', f'{END[:-4]}:{key} -->'
    with open(doc) as f:
        s = f.read()
    if b not in s or e not in s:
        raise KeyError(f'{doc} has no {b} ... {e} block')
    head, rest = s.split(b, 1)
    s = head + b + '\n' + text + rest[rest.index(e):]
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    atomic_write_bytes(s.encode(), doc)


def make_plot(S, rdir, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    R = load_cells(rdir)
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, kind in zip(axes, ('probe', 'finetune')):
        for i, arm in enumerate(S['arms']):
            v = [r['score'] for r in R.values()
                 if r['kind'] == kind and r['arm'] == arm]
            if v:
                ax.scatter([i] * len(v), v, s=12)
                ax.errorbar(i, np.mean(v), yerr=np.std(v), fmt='_k',
                            capsize=4)
        ax.set_xticks(range(len(S['arms'])), S['arms'])
        ax.set_title(f'{kind} top-1 (%), CIFAR-10 test')
    fig.tight_layout()
    os.makedirs(osp.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------ main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--preset', default='cpu', help='gpu | cpu | smoke')
    p.add_argument('--smoke', action='store_true', help='= --preset smoke')
    p.add_argument('--device', default='cpu')
    p.add_argument('--results-dir', default=None,
                   help='default benchmarks/dmae_results/<preset>')
    p.add_argument('--work-dir', default=None, help='exports, teacher, '
                   'decoded data (default work_dirs/dmae_study/<preset>)')
    p.add_argument('--jobs', type=int, default=1)
    p.add_argument('--threads', type=int, default=None)
    p.add_argument('--only', default=None,
                   help='comma-separated cell-id prefixes (deps still needed)')
    p.add_argument('--seeds', default=None, help='e.g. 0,1,2')
    p.add_argument('--deadline-at', type=float, default=None,
                   help='epoch seconds; cells predicted to end later are '
                   'skipped')
    p.add_argument('--report', action='store_true',
                   help='write the results section of docs/dmae.md')
    p.add_argument('--doc', default=DOC)
    p.add_argument('--print-report', action='store_true')
    p.add_argument('--measure', type=int, default=0, metavar='STEPS',
                   help='time STEPS steps of each kind and predict the '
                   'plan (writes <results>/measure.json); runs no cell')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    preset = 'smoke' if args.smoke else args.preset
    S = load_spec(preset)
    if args.seeds:
        S['seeds'] = [int(s) for s in args.seeds.split(',')]
    rdir = args.results_dir or osp.join(HERE, 'dmae_results', preset)
    wdir = args.work_dir or osp.join(REPO, 'work_dirs', 'dmae_study', preset)
    cells = plan(S)
    if args.report or args.print_report:
        cmd = ('bash benchmarks/dmae_cifar_gpu.sh' if preset == 'gpu' else
               f'python benchmarks/dmae_study.py --preset {preset} --jobs 2')
        text = report(S, rdir, cmd)
        img = osp.join(REPO, 'docs', 'images', f'dmae_cifar_{preset}.png')
        if args.report:
            make_plot(S, rdir, img)
            text += f'\n![{preset} results](images/{osp.basename(img)})\n'
            write_doc_section(text, args.doc, preset)
        print(text)
        return 0
    if args.only:
        want = tuple(args.only.split(','))
        cells = [c for c in cells if c['id'].startswith(want)]
    import mmpretrain.engine  # noqa: F401 - registers the optim constructor
    from mmengine.registry import init_default_scope

    import kdep_mm  # noqa: F401
    init_default_scope('mmpretrain')  # kdep_mm types carry their scope
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine').setLevel('WARNING')
    os.makedirs(osp.join(rdir, 'cells'), exist_ok=True)
    with open(osp.join(rdir, 'spec.json'), 'w') as f:
        json.dump(S, f, indent=1, default=str)
    ctx = Ctx(S, rdir, args.device, wdir)
    say(f'preset {preset}: pool {len(ctx.pool)}, val {len(ctx.val)}, test '
        f'{len(ctx.test)}; {len(cells)} cells, {args.jobs} job(s)')
    if args.measure:
        if args.threads:
            torch.set_num_threads(args.threads)
        from study.cellstore import write_json
        write_json(osp.join(rdir, 'measure.json'),
                   measure(S, ctx, args.measure))
        return 0
    retire_lost_artefacts(cells, ctx)
    if args.jobs > 1:
        import multiprocessing as mp
        with mp.get_context('fork').Pool(args.jobs) as pool:
            fails = pool.starmap(work, [(cells, ctx, args.deadline_at,
                                         args.threads)] * args.jobs)
        return int(sum(fails) > 0)
    return int(work(cells, ctx, args.deadline_at, args.threads) > 0)


if __name__ == '__main__':
    sys.exit(main())
