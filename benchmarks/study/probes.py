"""Frozen probes of an exported student backbone.

Every probe builds the backbone as a downstream user would (the student's
CIFARResNet with ``init_cfg=dict(type='Pretrained', prefix='backbone.')``),
checks that the weights it holds are the export's, keeps it frozen in eval
mode, and fits a multinomial logistic regression (L-BFGS, L2, standardised
features) on its features:

* ``cifar``: GAP feature, 5,000 CIFAR-10 train images disjoint from the
  pool -> top-1 on the full test set (or on the validation split: sweeps);
* ``bccd_crops``: GAP feature of 32 px cell crops (3 classes), class-
  weighted -> balanced accuracy (mean per-class recall) on the test images;
* ``camvid_pixels``: the three stages average-pooled to stride 4 and
  concatenated, per 4x4 cell (majority label), class-weighted -> mIoU over
  the 11 classes on the test images;
* ``hymenoptera``: GAP feature at 64 px, 5-fold stratified cross-validation
  over train + val -> top-1 over all images.
"""
import numpy as np
import torch
import torch.nn.functional as F

from . import data as D
from .cellstore import load_result_id

MEAN = [123.675, 116.28, 103.53]
STD = [58.395, 57.12, 57.375]


def build_backbone(ctx, student, export, out_indices=(2, ), seed=0):
    """The student backbone loaded from ``export`` (None: random init with
    ``seed``), frozen, eval mode. Returns (backbone, check): check says
    whether the loaded weights equal the export's tensors."""
    from mmengine.runner import set_random_seed

    from kdep_mm.registry import MODELS
    from kdep_mm.utils.checkpoint import safe_torch_load
    st = ctx.study.students[student]
    cfg = dict(type='kdep_mm.CIFARResNet', depth=st.depth,
               base_channels=st.base_channels, out_indices=out_indices)
    if export is not None:
        cfg['init_cfg'] = dict(type='Pretrained', checkpoint=export,
                               prefix='backbone.')
    set_random_seed(seed)
    bb = MODELS.build(cfg)
    bb.init_weights()
    check = dict(export=export, loaded=None)
    if export is not None:
        sd = safe_torch_load(export, map_location='cpu')
        sd = sd.get('state_dict', sd)
        want = {k[len('backbone.'):]: v for k, v in sd.items()
                if k.startswith('backbone.')}
        got = bb.state_dict()
        same = set(want) == set(got) and all(
            torch.equal(got[k].cpu(), want[k]) for k in want)
        if not same:
            raise RuntimeError(f'the backbone built with init_cfg from '
                               f'{export} does not hold its weights')
        check.update(loaded=True, tensors=len(want))
    bb.eval()
    for p in bb.parameters():
        p.requires_grad_(False)
    return bb.to(ctx.device), check


def normalise(x_uint8_bgr, device):
    """(N, H, W, 3) uint8 BGR -> (N, 3, H, W) float RGB, normalised as the
    study's data preprocessor does."""
    x = torch.from_numpy(np.ascontiguousarray(x_uint8_bgr)).to(device)
    x = x.permute(0, 3, 1, 2).flip(1).float()
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


@torch.no_grad()
def gap_features(bb, x, device, batch=500):
    out = []
    for i in range(0, len(x), batch):
        feats = bb(normalise(x[i:i + batch], device))
        out.append(feats[-1].mean((2, 3)).double().cpu())
    return torch.cat(out)


@torch.no_grad()
def cell_features(bb, x, device, batch=50):
    """Stages 0-2 average-pooled to stride 4, concatenated: (N, h, w, C)."""
    out = []
    for i in range(0, len(x), batch):
        f0, f1, f2 = bb(normalise(x[i:i + batch], device))
        f = torch.cat([F.avg_pool2d(f0, 4), F.avg_pool2d(f1, 2), f2], 1)
        out.append(f.permute(0, 2, 3, 1).float().cpu())
    return torch.cat(out)


def fit_logistic(xtr, ytr, num_classes, l2, max_iter, balanced=False):
    """Multinomial logistic regression on standardised features (full-batch
    L-BFGS, L2 on the weights; with ``balanced`` each class weighs the same
    in the loss). Returns a predict function."""
    xtr = xtr.double()
    mu, sd = xtr.mean(0), xtr.std(0, unbiased=False).clamp_min(1e-6)
    z = (xtr - mu) / sd
    counts = torch.bincount(ytr, minlength=num_classes).double()
    cw = (counts.sum() / (num_classes * counts.clamp_min(1))) if balanced \
        else torch.ones(num_classes, dtype=torch.float64)
    w = torch.zeros(z.shape[1], num_classes, dtype=torch.float64,
                    requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20,
                            line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(z @ w + b, ytr, weight=cw) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)

    def predict(x):
        with torch.no_grad():
            return (((x.double() - mu) / sd) @ w + b).argmax(1)
    return predict


def _probe_args(ctx):
    return ctx.study.probe.l2, ctx.study.probe.max_iter


def cifar_probe(ctx, student, export, test_split='test', seed=0):
    bb, check = build_backbone(ctx, student, export, seed=seed)
    tr, te = ctx.cifar_arrays('probe_train'), ctx.cifar_arrays(test_split)
    xtr = gap_features(bb, tr['x'], ctx.device)
    xte = gap_features(bb, te['x'], ctx.device)
    ytr, yte = torch.from_numpy(tr['y']), torch.from_numpy(te['y'])
    pred = fit_logistic(xtr, ytr, 10, *_probe_args(ctx))
    return dict(score=100. * float((pred(xte) == yte).double().mean()),
                train_top1=100. * float((pred(xtr) == ytr).double().mean()),
                n_train=len(ytr), n_test=len(yte), check=check)


def balanced_accuracy(pred, y, num_classes):
    rec = [float((pred[y == c] == c).double().mean())
           for c in range(num_classes) if (y == c).any()]
    return 100. * float(np.mean(rec))


def bccd_probe(ctx, student, export, seed=0):
    bb, check = build_backbone(ctx, student, export, seed=seed)
    tr, te = D.bccd_crops(ctx, 'trainval'), D.bccd_crops(ctx, 'test')
    xtr = gap_features(bb, tr['x'], ctx.device)
    xte = gap_features(bb, te['x'], ctx.device)
    ytr, yte = torch.from_numpy(tr['y']), torch.from_numpy(te['y'])
    pred = fit_logistic(xtr, ytr, 3, *_probe_args(ctx), balanced=True)
    return dict(score=balanced_accuracy(pred(xte), yte, 3),
                n_train=len(ytr), n_test=len(yte), check=check)


def miou(pred, y, num_classes):
    """Mean IoU over the classes present in ``y`` (pred, y: 1-d)."""
    cm = torch.bincount(y * num_classes + pred,
                        minlength=num_classes ** 2).view(num_classes,
                                                         num_classes)
    tp = cm.diag().double()
    iou = tp / (cm.sum(0) + cm.sum(1) - cm.diag()).double().clamp_min(1)
    present = cm.sum(1) > 0
    return 100. * float(iou[present].mean())


def camvid_probe(ctx, student, export, seed=0):
    bb, check = build_backbone(ctx, student, export, out_indices=(0, 1, 2),
                               seed=seed)
    tr, te = D.camvid_arrays(ctx, 'train'), D.camvid_arrays(ctx, 'test')
    ftr = cell_features(bb, tr['x'], ctx.device)
    fte = cell_features(bb, te['x'], ctx.device)
    ytr = torch.from_numpy(tr['y'].astype(np.int64)).reshape(-1)
    yte = torch.from_numpy(te['y'].astype(np.int64)).reshape(-1)
    ftr, fte = ftr.reshape(len(ytr), -1), fte.reshape(len(yte), -1)
    keep = torch.nonzero(ytr != 255).squeeze(1)
    g = torch.Generator().manual_seed(0)  # the same pixels for every arm
    n = min(ctx.study.probe.camvid_train_pixels, len(keep))
    keep = keep[torch.randperm(len(keep), generator=g)[:n]]
    pred = fit_logistic(ftr[keep], ytr[keep], 11, *_probe_args(ctx),
                        balanced=True)
    ok = yte != 255
    return dict(score=miou(pred(fte[ok]), yte[ok], 11), n_train=n,
                n_test=int(ok.sum()), check=check)


def hymenoptera_probe(ctx, student, export, seed=0):
    bb, check = build_backbone(ctx, student, export, seed=seed)
    arr = D.hymenoptera_arrays(ctx)
    x = gap_features(bb, arr['x'], ctx.device)
    y = torch.from_numpy(arr['y'])
    k = ctx.study.probe.hymenoptera_folds
    folds = torch.from_numpy(D.stratified_folds(arr['y'], k, seed=0))
    correct = 0
    for f in range(k):
        tr, te = folds != f, folds == f
        pred = fit_logistic(x[tr], y[tr], 2, *_probe_args(ctx))
        correct += int((pred(x[te]) == y[te]).sum())
    return dict(score=100. * correct / len(y), n=len(y), folds=k,
                check=check)


PROBES = dict(cifar=cifar_probe, bccd_crops=bccd_probe,
              camvid_pixels=camvid_probe, hymenoptera=hymenoptera_probe)


def run_probe_cell(cell, ctx):
    """Every frozen probe of one milestone export."""
    import time
    pre = load_result_id(ctx.rdir, cell.dep_ids[0])
    ms = pre['milestones']
    m = ms[-1] if len(ms) == 1 else ms[cell.milestone]
    export = m['export']
    if export is not None:
        import os.path as osp
        if not osp.isfile(export):
            raise FileNotFoundError(
                f'{cell.id}: the export {export} is gone; delete '
                f'{cell.dep_ids[0]} to rerun it')
    scores, details = {}, {}
    for name in ctx.study.probes:
        t0 = time.process_time()
        r = PROBES[name](ctx, cell.student, export, seed=cell.seed)
        r['cpu_s'] = round(time.process_time() - t0, 2)
        scores[name] = round(r.pop('score'), 3)
        details[name] = r
    return dict(scores=scores, details=details, export=export,
                fraction=m['fraction'], steps=m['steps'],
                samples=m['samples'], pretrain_cpu_s=m.get('pretrain_cpu_s',
                                                           0.))
