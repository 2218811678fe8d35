"""The teacher PCA cell and the pre-training cells (main and sweep).

A pre-training cell runs one arm's Runner config for ``samples / batch``
SGD steps and, through :class:`StudyRecorderHook`, records

* the training loss (mean of each window of steps),
* for arms with an aligner (KDEP, its ablations, FitNets) the fraction of
  the aligned target's variance the student explains on held-out images,
  EV = 1 - E||s - t||^2 / E||t - mean(t)||^2  (0: the constant predictor),
* at each milestone (fraction of the schedule) an export of the student
  backbone with the samples, steps and CPU seconds spent up to there.

CPU seconds are those of the training process with 1 torch thread (about
the wall clock of an idle core; it does not move with the load of a shared
machine as the wall clock does, which is recorded too). The recorder's own
evaluations are excluded.
"""
import copy
import glob
import os
import os.path as osp
import time

import numpy as np
import torch
from mmengine.hooks import Hook

from .cellstore import load_result_id
from .runners import (build_runner, close_runner, finish_runner_cfg,
                      iter_schedule, set_student)
from .spec import TEACHER_FILE, arm_cfg, setting_id, sweep_settings
from .stores import store_path, store_split, use_store


# ----------------------------------------------------------------- PCA
def run_pca(cell, ctx):
    """The teacher's pooled pre-ReLU features (training pipeline, one pass)
    over the 10% pool: float64 moments -> every student's SVD basis
    (FitBasisHook's basis file format) and the eigen-spectrum."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, set_random_seed

    from kdep_mm.engine.hooks.fit_basis_hook import save_basis
    from kdep_mm.models.aligners.svd_aligner import SVDAligner
    from kdep_mm.registry import MODELS
    from kdep_mm.utils.checkpoint import atomic_save
    init_default_scope('mmpretrain')
    set_random_seed(0)
    t0, c0 = time.perf_counter(), time.process_time()
    cfg = arm_cfg(ctx.study, 'f')
    models = {}
    for name, st in ctx.study.students.items():
        m = copy.deepcopy(cfg.model)
        set_student(m, st.depth, st.base_channels)
        m.teacher_ckpt = ctx.teacher_ckpt
        models[name] = MODELS.build(m.to_dict())
    model = next(iter(models.values()))
    dl_cfg = cfg.train_dataloader.copy()
    dl_cfg.dataset.data_root = ctx.cifar
    dl_cfg.dataset.ann_file = ctx.files['pca']
    dl_cfg.batch_size = 100
    gpu_loader(ctx, dl_cfg, 'pca')
    total, n = None, 0
    with torch.no_grad():
        for batch in Runner.build_dataloader(dl_cfg.to_dict(), seed=0):
            data = model.data_preprocessor(batch, False)
            s, o, k = SVDAligner.moments(model.teacher_features(data['inputs']))
            total = [s, o] if total is None else [total[0] + s, total[1] + o]
            n += k
    fit_s, fit_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    atomic_save(dict(feat_sum=total[0], feat_outer=total[1], count=n,
                     source=ctx.files['pca']), moments_path(ctx))
    kept = {}
    for name, m in models.items():
        m.aligner.fit_from_moments(total[0], total[1], n)
        save_basis(m.aligner, basis_path(ctx, name), m.basis_identity())
        ev = m.aligner.eigenvalues.double()
        k = m.aligner.student_channels
        kept[name] = dict(k=k, variance_kept=float(ev[:k].sum() / ev.sum()))
    ev = model.aligner.eigenvalues.double().clamp_min(0)
    return dict(n_features=n, fit_s=round(fit_s, 2),
                fit_cpu_s=round(fit_cpu_s, 2),
                eigenvalues=[float(v) for v in ev.tolist()],
                explained_variance_ratio=(ev / ev.sum()).tolist(), kept=kept,
                teacher=TEACHER_FILE, feature='pre-ReLU output of the last '
                'block, global-average-pooled (64-d)')


def basis_path(ctx, student):
    return osp.join(ctx.rdir, 'pca', f'svd_basis_{student}.pth')


def moments_path(ctx):
    return osp.join(ctx.rdir, 'pca', 'teacher_moments.pth')


class PrefitTCSHook(Hook):
    """Fits the TCS coordinate system from the study's teacher moments
    (registered before the TCS fit hook, which then finds it fitted), so
    that KDEP and TCS use the same teacher PCA."""

    priority = 'HIGHEST'

    def __init__(self, path):
        self.path = path

    def before_train(self, runner):
        from kdep_mm.utils.checkpoint import safe_torch_load
        mom = safe_torch_load(self.path)
        runner.model.check_fit_count(mom['count'], self.path)
        runner.model.coords.fit_from_moments(
            mom['feat_sum'], mom['feat_outer'], mom['count'])


class FitClockHook(Hook):
    """Stamps the process CPU time when training starts, before the fit
    hooks run (``'HIGHEST'``), so that a run that fits its own basis can
    report the fit's CPU seconds (the recorder's start minus this stamp)."""

    priority = 'HIGHEST'

    def before_train(self, runner):
        self.c0 = time.process_time()


# ------------------------------------------------------------ recorder
def explained_variance(model, x, per_dim=False, teacher_features=None):
    """EV of the aligned target on a batch (model in eval mode, no grad):
    1 - sum||s - t||^2 / sum||t - mean(t)||^2; with ``per_dim`` also the
    list of each target coordinate's own EV (SVD coordinates come sorted by
    teacher variance). ``teacher_features`` (x -> f_t) stands in for the
    model's own teacher (a store-mode model has none)."""
    was = model.training
    model.eval()
    with torch.no_grad():
        t = (teacher_features or model.teacher_features)(x)
        s, tgt = model.aligner(model.student_features(x), t)
        err = (s - tgt).pow(2).sum(0)
        var = (tgt - tgt.mean(0, keepdim=True)).pow(2).sum(0)
    model.train(was)
    ev = float(1. - err.sum() / var.sum().clamp_min(1e-12))
    if not per_dim:
        return ev
    return ev, (1. - err / var.clamp_min(1e-12)).tolist()


class StudyRecorderHook(Hook):
    """Loss windows, EV points and milestone exports of one run."""

    priority = 'LOW'

    def __init__(self, steps, milestones, export_fn, ev_inputs=None,
                 ev_points=0, window=None, ev_teacher=None):
        self.steps = steps
        self.ev_teacher = ev_teacher
        self.marks = sorted({max(1, int(round(f * steps))): f
                             for f in milestones}.items())
        if len(self.marks) != len(milestones):
            raise ValueError(f'{steps} steps are too few for the milestones '
                             f'{list(milestones)}: two fall on one step')
        self.export_fn, self.ev_inputs = export_fn, ev_inputs
        n = min(ev_points, steps) if ev_inputs is not None else 0
        self.ev_at = {max(1, int(round((i + 1) * steps / n)))
                      for i in range(n)} if n else set()
        self.window = window or max(1, steps // 50)
        self.losses, self.curve, self.ev, self.milestones = [], [], [], []
        self.ev_dims = None
        self.excluded = 0.

    def before_train(self, runner):
        self.c0, self.t0 = time.process_time(), time.perf_counter()
        if self.ev_inputs is not None:
            self._ev(runner, 0)

    def _cpu(self):
        return time.process_time() - self.c0 - self.excluded

    def _ev(self, runner, step):
        c = time.process_time()
        model = runner.model
        x = model.data_preprocessor(dict(inputs=self.ev_inputs),
                                    False)['inputs']
        ev, dims = explained_variance(model, x, per_dim=True,
                                      teacher_features=self.ev_teacher)
        self.ev.append(dict(step=step, ev=round(ev, 5)))
        self.ev_dims = [round(d, 4) for d in dims]  # the latest point's
        self.excluded += time.process_time() - c

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        step = runner.iter + 1
        if outputs is not None and 'loss' in outputs:
            loss = outputs['loss']  # a tensor that may still need grad
            self.losses.append(float(getattr(loss, 'detach', lambda: loss)()))
        if len(self.losses) == self.window or step == self.steps:
            if self.losses:
                self.curve.append(dict(step=step,
                                       loss=round(float(np.mean(self.losses)),
                                                  6)))
            self.losses = []
        if step in self.ev_at:
            self._ev(runner, step)
        for mark, frac in self.marks:
            if mark == step:
                cpu, wall = self._cpu(), time.perf_counter() - self.t0
                c = time.process_time()
                path = self.export_fn(runner, frac)
                self.excluded += time.process_time() - c
                self.milestones.append(dict(
                    fraction=frac, steps=step,
                    samples=step * runner.train_dataloader.batch_size,
                    train_cpu_s=round(cpu, 2), train_wall_s=round(wall, 2),
                    export=path))


def plateau(curve, rel):
    """(mean loss over the last 10% of steps, mean over the 10% ending at
    75%, relative change, plateaued?) from a loss curve."""
    if not curve:
        return None
    steps = np.array([c['step'] for c in curve])
    loss = np.array([c['loss'] for c in curve])
    n = steps[-1]
    late = loss[steps > 0.9 * n]
    mid = loss[(steps > 0.65 * n) & (steps <= 0.75 * n)]
    if not len(late) or not len(mid):
        return None
    change = float((mid.mean() - late.mean()) / max(abs(mid.mean()), 1e-12))
    return dict(late=float(late.mean()), mid=float(mid.mean()),
                rel_change=round(change, 4), plateau=bool(change < rel))


# ------------------------------------------------------------- settings
def chosen_setting(ctx, arm):
    """The sweep's choice for ``arm`` (its own sweep or ``sweep_from``'s):
    the best validation score, ties to the first in grid order; None when
    the arm is not swept."""
    study = ctx.study
    fixed = study.get('fixed_settings') or {}
    if arm in fixed:  # a spec without sweeps (study_gpu.py) states them
        return dict(fixed[arm]), 'fixed'
    src = study.get('sweep_from', {}).get(arm, arm)
    if src not in study.sweeps:
        return None, None
    best = None
    for s in sweep_settings(study, src):
        cid = f'sweep/{src}/{study.sweep_student}/{setting_id(s)}'
        r = load_result_id(ctx.rdir, cid)
        if r is None:
            raise RuntimeError(f'{cid} has not run; the sweep decides '
                               f"arm {arm}'s setting")
        if best is None or r['val_score'] > best[1]:
            best = (s, r['val_score'])
    return best[0], src


def apply_setting(cfg, kind, setting):
    if not setting:
        return
    if 'lr' in setting:
        cfg.optim_wrapper.optimizer.lr = setting['lr']
    if 'loss_weight' in setting:
        if kind == 'tcs':
            cfg.model.coord_weight = setting['loss_weight']
        else:
            cfg.model.distill_loss.loss_weight = setting['loss_weight']


def gpu_loader(ctx, dl_cfg, split):
    """The GPU spec's data loading (configs/study/study_gpu.py): with
    ``in_memory`` the split's images come from their decoded array (no
    per-step JPEG decode), and ``loader`` sets the workers (at most one in
    smoke runs) and pinned memory (CUDA only). No-op for the CPU spec."""
    if getattr(ctx, 'in_memory', False):
        dl_cfg.dataset = ctx.array_dataset_cfg(split, dl_cfg.dataset.pipeline)
    lo = ctx.study.get('loader')
    if lo:
        n = int(lo.get('num_workers', 0))
        n = min(n, 1) if ctx.smoke else n
        dl_cfg.num_workers = n
        dl_cfg.persistent_workers = bool(lo.get('persistent_workers')) and n > 0
        dl_cfg.pin_memory = bool(lo.get('pin_memory')) and \
            ctx.device == 'cuda'


# ---------------------------------------------------------------- cells
def ev_teacher(ctx):
    """The online arm's teacher (strictly loaded), x -> f_t, for the EV
    points of a store-mode run (which has no teacher of its own)."""
    from mmengine.registry import DefaultScope

    from kdep_mm.models.teachers import FrozenTeacher
    online = arm_cfg(ctx.study, 'f').model
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        t = FrozenTeacher(online.teacher.to_dict(), ctx.teacher_ckpt,
                          online.get('teacher_revise_keys'))
    t.watch_pooled(online.get('teacher_feature'), 'model.teacher_feature')
    return t.pooled_features


def run_pretrain(cell, ctx):
    from kdep_mm.utils.checkpoint import atomic_save
    from kdep_mm.apis.export import export_student
    study = ctx.study
    st = study.students[cell.student]
    cfg = arm_cfg(study, cell.arm)
    info = dict(cfg.study_arm)
    kind = info['kind']
    if kind == 'random':
        return dict(milestones=[dict(fraction=1.0, steps=0, samples=0,
                                     train_cpu_s=0., train_wall_s=0.,
                                     export=None)],
                    pretrain_cpu_s=0., **info)
    if cell.kind == 'sweep':
        setting, source = cell.setting, cell.arm
    else:
        setting, source = chosen_setting(ctx, cell.arm)
    apply_setting(cfg, kind, setting)
    set_student(cfg.model, st.depth, st.base_channels)
    if cfg.model.get('teacher') is not None:
        cfg.model.teacher_ckpt = ctx.teacher_ckpt
    split = 'pool_10' if info['data'] == '10%' else 'pool_100'
    own_fit = info.get('basis') == 'own' or kind == 'kdep_store'
    if own_fit:  # fits its basis on its own training data
        split = store_split(ctx)
    ds = cfg.train_dataloader.dataset
    ds.data_root, ds.ann_file = ctx.cifar, ctx.files[split]
    gpu_loader(ctx, cfg.train_dataloader, split)
    batch = study.batch_size
    if ctx.smoke and study.smoke.get('batch_size'):  # study_gpu.py's smoke
        batch = study.smoke.batch_size
    samples = study.arms[cell.arm].samples
    if ctx.smoke:
        samples = study.smoke.steps * batch
    steps = samples // batch
    cfg.train_dataloader.batch_size = batch
    iter_schedule(cfg, steps)
    if kind == 'tcs':  # a prune step per pass over the pool
        cfg.model.prune_interval = max(1, ctx.n(split) // batch)
    fit_cpu_s = 0.
    if kind == 'kdep_store':  # caching is the store arms' teacher cost
        views = int(info['views'])
        use_store(cfg, store_path(ctx, views), views)
        for h in cfg.custom_hooks:
            h.teacher_checkpoint = ctx.teacher_ckpt
        fit_cpu_s = load_result_id(ctx.rdir,
                                   f'store/v{views}')['cache_cpu_s']
    elif kind in ('kdep', 'tcs') and not own_fit:
        for h in cfg.get('custom_hooks', []):
            if kind == 'kdep' and h.type.endswith('FitBasisHook'):
                h.basis_file = basis_path(ctx, cell.student)
        fit_cpu_s = load_result_id(ctx.rdir, 'pca')['fit_cpu_s']
    work_dir = osp.join(ctx.runs, cell.fname)
    finish_runner_cfg(cfg, ctx, work_dir, cell.fname,
                      cell.seed if cell.seed is not None else 0)
    prefix = 'backbone.' if cfg.model.type.endswith('ImageClassifier') \
        else 'student.'

    def export(runner, frac):
        src = osp.join(work_dir, f'student_{frac:g}.pth')
        sd = {k: v.detach().cpu() for k, v in runner.model.state_dict().items()
              if k.startswith(prefix)}
        atomic_save(sd, src)
        tag = f'{cell.fname}_m{frac:g}'
        dst = osp.join(ctx.exports, f'{tag}.pth')
        export_student(src, dst, student_prefix=prefix)
        os.remove(src)
        return dst

    ev_inputs = None
    if 'aligner' in cfg.model:
        arr = ctx.cifar_arrays('probe_val')['x'][:study.ev_images]
        ev_inputs = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    for f in glob.glob(osp.join(work_dir, '*.pth')):
        os.remove(f)  # a killed attempt's basis file: fit (and time) anew
    t0 = time.perf_counter()
    runner = build_runner(cfg, ctx)
    if kind == 'tcs':
        runner.register_hook(PrefitTCSHook(moments_path(ctx)),
                             priority='HIGHEST')
    clock = FitClockHook()
    runner.register_hook(clock, priority='HIGHEST')
    rec = StudyRecorderHook(steps, study.milestones, export,
                            ev_inputs=ev_inputs, ev_points=study.ev_points,
                            ev_teacher=ev_teacher(ctx) if kind == 'kdep_store'
                            else None)
    runner.register_hook(rec, priority='LOW')
    build_s = time.perf_counter() - t0
    runner.train()
    if own_fit:  # the basis fit ran between the clock and the recorder
        fit_cpu_s = round(fit_cpu_s + rec.c0 - clock.c0, 2)
    close_runner(runner)
    del runner
    for f in glob.glob(osp.join(work_dir, '*.pth')):
        os.remove(f)
    for m in rec.milestones:
        m['pretrain_cpu_s'] = round(m['train_cpu_s'] + fit_cpu_s, 2)
    res = dict(milestones=rec.milestones, loss_curve=rec.curve, ev=rec.ev,
               ev_dims=rec.ev_dims,
               plateau=plateau(rec.curve, study.plateau_rel),
               pretrain_cpu_s=rec.milestones[-1]['pretrain_cpu_s'],
               fit_cpu_s=fit_cpu_s, build_s=round(build_s, 2),
               images=ctx.n(split), batch=batch, steps=steps,
               samples=steps * batch, chosen=setting, chosen_from=source,
               lr=float(cfg.optim_wrapper.optimizer.lr), **info)
    if 'distill_loss' in cfg.model:
        res['loss_weight'] = float(cfg.model.distill_loss.get('loss_weight',
                                                              1.))
    if cell.kind == 'sweep':
        from .probes import cifar_probe
        final = rec.milestones[-1]['export']
        res['val_score'] = cifar_probe(ctx, cell.student, final,
                                       test_split='probe_val')['score']
        for m in rec.milestones:  # sweep exports are not kept
            if m['export'] and osp.isfile(m['export']):
                os.remove(m['export'])
            m['export'] = None
    return res
