#!/usr/bin/env python
"""The KDEP study (issue 7): do the papers' claims hold at small scale on
real data?

One command runs every cell of the study, resumably, and writes the table
(``docs/results.md``) and the plots (``docs/images/``)::

    python benchmarks/kdep_study.py                  # everything not yet done
    python benchmarks/kdep_study.py --jobs 2         # 2 worker processes
    python benchmarks/kdep_study.py --arms f,b --tasks probe --seeds 0
    python benchmarks/kdep_study.py --only 'pretrain/f/*'
    python benchmarks/kdep_study.py --report         # table + plots only
    python benchmarks/kdep_study.py --list           # the plan and its state
    python benchmarks/kdep_study.py --smoke --results-dir /tmp/s   # 2 images

What is run is set by ``configs/study/study.py`` (arms, students, tasks,
seeds, pool sizes) and one Runner config per experiment:
``configs/study/pretrain/{a..h}_*.py`` (pre-training arms) and
``configs/study/downstream/*.py`` (downstream tasks).

Cells (each one JSON file in ``<results-dir>/cells/``, written atomically
when the cell finishes; a rerun skips finished cells):

* ``pca``                         the teacher's PCA on the 10% pool: KDEP's
                                  SVD basis for each student, TCS's
                                  coordinates, the spectrum plot
* ``pretrain/<arm>/<student>/s<seed>``   pre-train + export the backbone
* ``<task>/<arm>/<student>/s<seed>``     fine-tune / probe the export

The default results dir is ``benchmarks/study_results``: its ``cells/``
are committed (so the table can be regenerated and a study can grow across
machines), the exported backbones, runs and splits are not. A finished
pre-training cell whose export is gone is rerun when a downstream cell
still needs it (its old JSON is kept as ``*.stale.json``).

A downstream cell of seed s uses the pre-training of seed s and the same
seed for its own randomness. Failed cells leave ``<cell>.error.txt`` and
are retried by the next run; the report marks them 'failed', cells never
run 'not run'; no number is ever filled in.

Parallelism: ``--jobs N`` starts N worker processes that take cells in plan
order through claim files (``<results-dir>/claims/``; a claim of a dead
process is taken over), so a killed study resumes where it stopped. Each
process uses ``--threads`` torch threads (default 1: on a small shared
machine one thread per process is several times faster than two).
"""
import argparse
import copy
import fnmatch
import glob
import json
import math
import os
import os.path as osp
import statistics
import sys
import time
import traceback

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
STUDY_DIR = osp.join(REPO, 'configs', 'study')
STUDY_CFG = osp.join(STUDY_DIR, 'study.py')
TEACHER_FILE = 'resnet56-4bfd9763.th'
TEACHER_DIM = 64
ARM_PRIORITY = 'fgbcdea'  # the order cells are run in (h last)


def say(msg: str) -> None:
    print(f'[kdep_study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


# ====================================================================== plan
class Cell:
    """One unit of work with a result file."""

    def __init__(self, kind, arm=None, student=None, seed=None, task=None):
        self.kind, self.arm, self.student = kind, arm, student
        self.seed, self.task = seed, task

    @property
    def id(self) -> str:
        if self.kind == 'pca':
            return 'pca'
        head = 'pretrain' if self.kind == 'pretrain' else self.task
        return f'{head}/{self.arm}/{self.student}/s{self.seed}'

    @property
    def fname(self) -> str:
        return self.id.replace('/', '__')

    def deps(self):
        if self.kind == 'pca':
            return []
        if self.kind == 'pretrain':
            return [Cell('pca')] if self.arm in 'fgh' else []
        return [Cell('pretrain', self.arm, self.student, self.seed)]

    def __repr__(self):
        return self.id


def load_study():
    from mmengine.config import Config
    return Config.fromfile(STUDY_CFG)


def full_plan(study):
    """Every cell of the study, in the order they are run: the PCA; then,
    per (student, seed) -- ResNet-20 seeds first, then the narrow student --
    pre-training + linear probe + hymenoptera for arms f, g, b, c, d, e, a,
    then BCCD + CamVid for the same arms; TCS (h) cells last."""
    cells = [Cell('pca')]
    tail = []
    students = list(study.students)
    for student in students:
        allowed = study.students[student].get('arms', 'abcdefgh')
        for seed in study.seeds:
            arms = [a for a in ARM_PRIORITY
                    if a in allowed and a in study.arms]
            for arm in arms:
                cells.append(Cell('pretrain', arm, student, seed))
                for task in ('probe', 'hymenoptera'):
                    if task in study.tasks:
                        cells.append(Cell('down', arm, student, seed, task))
            for arm in arms:
                for task in study.tasks:
                    if task not in ('probe', 'hymenoptera'):
                        cells.append(Cell('down', arm, student, seed, task))
            for arm in study.arms:
                if arm in allowed and arm not in ARM_PRIORITY:
                    tail.append(Cell('pretrain', arm, student, seed))
                    tail += [Cell('down', arm, student, seed, t)
                             for t in study.tasks]
    return cells + tail


def select(plan, args):
    """The cells the filters pick, plus the cells they depend on."""
    def csv(v):
        return None if v is None else [x for x in v.split(',') if x]
    arms, tasks = csv(args.arms), csv(args.tasks)
    students = csv(args.students)
    seeds = None if args.seeds is None else [int(s) for s in csv(args.seeds)]
    only = csv(args.only)
    picked = []
    for c in plan:
        if c.kind != 'pca':
            if arms is not None and c.arm not in arms:
                continue
            if students is not None and c.student not in students:
                continue
            if seeds is not None and c.seed not in seeds:
                continue
            if tasks is not None and c.kind == 'down' and c.task not in tasks:
                continue
            if tasks is not None and c.kind == 'pretrain' and \
                    'pretrain' not in tasks:
                continue
        if only is not None and not any(
                fnmatch.fnmatchcase(c.id, pat) for pat in only):
            continue
        picked.append(c)
    ids = {c.id for c in picked}
    stack = list(picked)
    while stack:
        for d in stack.pop().deps():
            if d.id not in ids:
                ids.add(d.id)
                stack.append(d)
    return [c for c in plan if c.id in ids]


# ============================================================ results files
def cell_path(rdir, cell, suffix='.json'):
    return osp.join(rdir, 'cells', cell.fname + suffix)


def load_result(rdir, cell):
    path = cell_path(rdir, cell)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_json(path, obj):
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    atomic_write_bytes((json.dumps(obj, indent=1) + '\n').encode(), path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def try_claim(rdir, cell) -> bool:
    """Claim a cell for this process (O_EXCL file); a claim left by a dead
    process is taken over."""
    cdir = osp.join(rdir, 'claims')
    os.makedirs(cdir, exist_ok=True)
    path = osp.join(cdir, cell.fname)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                return False
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return True
    return False


def release(rdir, cell):
    try:
        os.remove(osp.join(rdir, 'claims', cell.fname))
    except FileNotFoundError:
        pass


def claimed_by_other(rdir, cell) -> bool:
    path = osp.join(rdir, 'claims', cell.fname)
    try:
        with open(path) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return False
    return pid != os.getpid() and _pid_alive(pid)


# ================================================================= settings
class Ctx:
    """Everything a cell needs: the study spec, data paths, flags."""

    def __init__(self, args, study):
        from kdep_mm.testing.shared_data import unpack_shared
        self.args, self.study = args, study
        self.smoke = args.smoke
        self.rdir = osp.abspath(args.results_dir)
        self.cifar = unpack_shared('cifar10_jpeg.tar.gz')
        self.hym = unpack_shared('hymenoptera.tar')
        self.bccd = unpack_shared('bccd_voc.tar')
        self.camvid = unpack_shared('camvid_jpeg.tar.gz')
        self.teacher_ckpt = osp.join(unpack_shared('cifar10_resnets'),
                                     TEACHER_FILE)
        self.splits = osp.join(self.rdir, 'splits')
        self.exports = osp.join(self.rdir, 'exports')
        self.runs = osp.join(self.rdir, 'runs')
        for d in (self.splits, self.exports, self.runs):
            os.makedirs(d, exist_ok=True)
        self._write_splits()

    # ------------------------------------------------------------ splits
    def _write(self, name, lines):
        from kdep_mm.utils.checkpoint import atomic_write_bytes
        path = osp.join(self.splits, name)
        data = ''.join(f'{ln}\n' for ln in lines).encode()
        if not osp.isfile(path) or open(path, 'rb').read() != data:
            atomic_write_bytes(data, path)
        return path

    def _write_splits(self):
        from kdep_mm.datasets.subset import class_balanced_subset
        st = self.study
        train = osp.join(self.cifar, 'train')
        test = osp.join(self.cifar, 'test')
        if self.smoke:
            sm = st.smoke
            one = class_balanced_subset(train, per_class=1, seed=st.pool_seed)
            pool = one[:sm.train_images]
            pool10 = pool
            pca = class_balanced_subset(
                train, per_class=math.ceil(sm.pca_images / 10),
                seed=st.pool_seed)
            probe_tr = class_balanced_subset(train, per_class=1, seed=1)
            probe_tr = probe_tr[:sm.train_images]
            probe_te = class_balanced_subset(test, per_class=1, seed=1)
            probe_te = probe_te[:sm.eval_images]
        else:
            pool = class_balanced_subset(train, per_class=st.pool_per_class,
                                         seed=st.pool_seed)
            pool10 = self._tenth(pool, st.pool_fraction, st.pool_seed)
            pca = pool10
            from mmengine.config import Config
            pcfg = Config.fromfile(osp.join(
                STUDY_DIR, st.tasks.probe.config)).probe
            probe_tr = class_balanced_subset(
                train, per_class=pcfg.train_per_class, seed=0)
            probe_te = class_balanced_subset(
                test, per_class=pcfg.test_per_class, seed=0)
        fmt = [f'{p} {lab}' for p, lab in pool]
        self.pool_100 = self._write('cifar10_pool_100.txt', fmt)
        self.n_pool_100 = len(pool)
        self.pool_10 = self._write('cifar10_pool_10.txt',
                                   [f'{p} {lab}' for p, lab in pool10])
        self.n_pool_10 = len(pool10)
        self.pca_list = self._write('cifar10_pca.txt',
                                    [f'{p} {lab}' for p, lab in pca])
        self.n_pca = len(pca)
        self.probe_train = self._write(
            'cifar10_probe_train.txt', [f'{p} {lab}' for p, lab in probe_tr])
        self.n_probe_train = len(probe_tr)
        self.probe_test = self._write(
            'cifar10_probe_test.txt', [f'{p} {lab}' for p, lab in probe_te])
        self.n_probe_test = len(probe_te)
        if self.smoke:
            from kdep_mm.datasets.subset import scan_image_folder
            n, m = self.study.smoke.train_images, self.study.smoke.eval_images
            _, tr = scan_image_folder(osp.join(self.hym, 'train'),
                                      ('.jpg', '.jpeg', '.png'))
            _, va = scan_image_folder(osp.join(self.hym, 'val'),
                                      ('.jpg', '.jpeg', '.png'))
            cls = sorted(tr)
            self.hym_train = self._write(
                'hym_train.txt', [f'{tr[c][0]} {i}' for i, c in
                                  enumerate(cls)][:n])
            self.hym_val = self._write(
                'hym_val.txt', [f'{va[c][0]} {i}' for i, c in
                                enumerate(cls)][:m])
            ids = open(osp.join(self.bccd, 'ImageSets/Main/train.txt')).read()
            self.bccd_train = self._write('bccd_train.txt',
                                          ids.split()[:n])
            ids = open(osp.join(self.bccd, 'ImageSets/Main/test.txt')).read()
            self.bccd_test = self._write('bccd_test.txt', ids.split()[:m])
            lines = open(osp.join(self.camvid, 'train.txt')).read()
            self.camvid_train = self._write('camvid_train.txt',
                                            lines.strip().split('\n')[:n])
            lines = open(osp.join(self.camvid, 'val.txt')).read()
            self.camvid_val = self._write('camvid_val.txt',
                                          lines.strip().split('\n')[:m])

    @staticmethod
    def _tenth(pool, fraction, seed):
        """A class-balanced ``fraction`` of ``pool`` (a list of (path,
        label)), deterministic in ``seed``."""
        import random
        by = {}
        for p, lab in pool:
            by.setdefault(lab, []).append((p, lab))
        rng = random.Random(seed + 1)
        out = []
        for lab in sorted(by):
            items = sorted(by[lab])
            n = max(1, round(fraction * len(items)))
            out += sorted(rng.sample(items, n))
        return out

    # ----------------------------------------------------------- helpers
    def student(self, name):
        return self.study.students[name]

    def arm_cfg(self, arm):
        from mmengine.config import Config
        return Config.fromfile(osp.join(STUDY_DIR,
                                        self.study.arms[arm].config))

    def task_cfg(self, task):
        from mmengine.config import Config
        return Config.fromfile(osp.join(STUDY_DIR,
                                        self.study.tasks[task].config))

    def export_path(self, cell):
        return osp.join(self.exports,
                        f'{cell.arm}_{cell.student}_s{cell.seed}.pth')

    def basis_path(self, student):
        return osp.join(self.rdir, 'pca', f'svd_basis_{student}.pth')

    def moments_path(self):
        return osp.join(self.rdir, 'pca', 'teacher_moments.pth')


# ============================================================ config edits
def set_student(model_cfg, depth, width):
    """Point a pre-training model config at the student variant."""
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


def set_downstream_backbone(cfg, task, depth, width, init_ckpt):
    """Width, depth and init of the downstream model's backbone."""
    dim = 4 * width
    bb = cfg.model.backbone
    bb.update(depth=depth, base_channels=width)
    if init_ckpt is None:
        bb.pop('init_cfg', None)  # the backbone's own random init
    else:
        bb.init_cfg = dict(type='Pretrained', checkpoint=init_ckpt,
                           prefix='backbone.')
    if task in ('probe', 'hymenoptera'):
        cfg.model.head.in_channels = dim
    elif task == 'bccd':
        cfg.model.neck.in_channels = [dim]
    elif task == 'camvid':
        cfg.model.decode_head.in_channels = dim


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


def build_runner(cfg, ctx):
    import logging

    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    if not ctx.args.verbose:
        runner.logger.setLevel(logging.INFO)
        for h in runner.logger.handlers:
            h.setLevel(logging.INFO)
    return runner


def close_runner(runner):
    import logging
    for h in list(runner.logger.handlers):
        if isinstance(h, logging.FileHandler):
            h.close()
            runner.logger.removeHandler(h)


def smoke_schedule(cfg, ctx, by_epoch):
    """One iteration, no LR schedule (the configs' warm-up + decay need more
    than one step)."""
    if by_epoch:
        cfg.train_cfg = dict(by_epoch=True, max_epochs=ctx.study.smoke.epochs)
    else:
        cfg.train_cfg = dict(type='IterBasedTrainLoop',
                             max_iters=ctx.study.smoke.iters,
                             val_interval=ctx.study.smoke.iters + 1)
    cfg.param_scheduler = None


# ================================================================ the cells
def run_pca(cell, ctx):
    """The teacher's pooled pre-ReLU features (training pipeline, one pass)
    over the 10% pool: float64 moments -> the SVD basis of each student
    (KDEP's FitAlignerHook file format) and the eigen-spectrum."""
    import torch
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, set_random_seed

    from kdep_mm.engine.hooks.fit_aligner_hook import (FitAlignerHook,
                                                       save_basis)
    from kdep_mm.models.aligners.svd_aligner import SVDAligner
    from kdep_mm.registry import MODELS
    from kdep_mm.utils.checkpoint import atomic_save
    init_default_scope('mmpretrain')
    set_random_seed(0)
    t0 = time.perf_counter()
    c0 = time.process_time()
    cfg = ctx.arm_cfg('f')
    models = {}
    for name in ctx.study.students:
        st = ctx.student(name)
        m = copy.deepcopy(cfg.model)
        set_student(m, st.depth, st.base_channels)
        m.teacher_ckpt = ctx.teacher_ckpt
        models[name] = MODELS.build(m.to_dict())
    model = next(iter(models.values()))
    dl_cfg = cfg.train_dataloader.copy()
    dl_cfg.dataset.data_root = ctx.cifar
    dl_cfg.dataset.ann_file = ctx.pca_list
    dl_cfg.batch_size = 100
    dl = Runner.build_dataloader(dl_cfg.to_dict(), seed=0)
    total = None
    n = 0
    with torch.no_grad():
        for batch in dl:
            data = model.data_preprocessor(batch, False)
            f = model.teacher_features(data['inputs'])
            s, o, k = SVDAligner.moments(f)
            total = [s, o] if total is None else [total[0] + s, total[1] + o]
            n += k
    fit_s = time.perf_counter() - t0
    fit_cpu_s = time.process_time() - c0
    os.makedirs(osp.join(ctx.rdir, 'pca'), exist_ok=True)
    atomic_save(dict(feat_sum=total[0], feat_outer=total[1], count=n,
                     source=ctx.pca_list), ctx.moments_path())
    kept = {}
    for name, m in models.items():
        m.aligner.fit_from_moments(total[0], total[1], n)
        save_basis(m.aligner, ctx.basis_path(name),
                   FitAlignerHook.basis_meta(m))
        ev = m.aligner.eigenvalues.double()
        k = m.aligner.student_channels
        kept[name] = dict(k=k, variance_kept=float(ev[:k].sum() / ev.sum()))
    ev = models[next(iter(models))].aligner.eigenvalues.double().clamp_min(0)
    ratio = (ev / ev.sum()).tolist()
    return dict(n_features=n, fit_s=round(fit_s, 2),
                fit_cpu_s=round(fit_cpu_s, 2),
                eigenvalues=[float(v) for v in ev.tolist()],
                explained_variance_ratio=ratio, kept=kept,
                teacher=TEACHER_FILE, feature='pre-ReLU output of the last '
                'block, global-average-pooled (64-d)')


class _PrefitTCS:
    """Hook (registered at the HIGHEST priority, before the TCS fit hook):
    fit the TCS coordinate system from the study's teacher moments, so that
    FitTCSCoordinatesHook finds it fitted and every method uses the same
    teacher PCA."""

    def __new__(cls, moments_path):
        from mmengine.hooks import Hook

        class PrefitTCSHook(Hook):

            def before_train(self, runner):
                from kdep_mm.utils.checkpoint import safe_torch_load
                mom = safe_torch_load(moments_path)
                runner.model.fit_coordinates_from_moments(
                    mom['feat_sum'], mom['feat_outer'], mom['count'],
                    source=moments_path)
                runner.logger.info(f'TCS coordinates fitted from '
                                   f'{moments_path} ({mom["count"]} '
                                   'teacher features)')

        return PrefitTCSHook()


def run_pretrain(cell, ctx):
    from mmengine.runner import find_latest_checkpoint

    from kdep_mm.utils.export import export_student
    st = ctx.student(cell.student)
    cfg = ctx.arm_cfg(cell.arm)
    info = dict(cfg.study_arm)
    if info['kind'] == 'random':
        return dict(pretrain_s=0.0, pretrain_wall_s=0.0, train_s=0.0,
                    train_cpu_s=0.0, fit_s=0.0, fit_cpu_s=0.0, export=None,
                    images=0, epochs=0, iters=0, **info)
    set_student(cfg.model, st.depth, st.base_channels)
    if 'teacher_ckpt' in cfg.model:
        cfg.model.teacher_ckpt = ctx.teacher_ckpt
    ds = cfg.train_dataloader.dataset
    ds.data_root = ctx.cifar
    ds.ann_file = ctx.pool_10 if info['data'] == '10%' else ctx.pool_100
    n_images = ctx.n_pool_10 if info['data'] == '10%' else ctx.n_pool_100
    if ctx.smoke:
        cfg.train_dataloader.batch_size = ctx.study.smoke.train_images
        smoke_schedule(cfg, ctx, by_epoch=True)
    fit_s = fit_cpu_s = 0.0
    if info['kind'] == 'kdep':
        for h in cfg.custom_hooks:
            if h.type.endswith('FitAlignerHook'):
                h.basis_file = ctx.basis_path(cell.student)
    if info['kind'] in ('kdep', 'tcs'):
        pca = load_result(ctx.rdir, Cell('pca'))
        fit_s, fit_cpu_s = pca['fit_s'], pca['fit_cpu_s']
    work_dir = osp.join(ctx.runs, cell.fname)
    finish_runner_cfg(cfg, ctx, work_dir, cell.fname, cell.seed)
    t0 = time.perf_counter()
    runner = build_runner(cfg, ctx)
    if info['kind'] == 'tcs':
        runner.register_hook(_PrefitTCS(ctx.moments_path()),
                             priority='HIGHEST')
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    c0 = time.process_time()
    runner.train()
    train_s = time.perf_counter() - t0
    train_cpu_s = time.process_time() - c0
    iters = runner.iter
    logs = runner.message_hub.log_scalars
    last = {k: float(v.current()) for k, v in logs.items()
            if k.startswith('train/loss')}
    close_runner(runner)
    del runner
    ckpt = find_latest_checkpoint(work_dir)
    prefix = 'backbone.' if cfg.model.type.endswith('ImageClassifier') \
        else 'student.'
    dst = ctx.export_path(cell)
    t0 = time.perf_counter()
    summary = export_student(ckpt, dst, student_prefix=prefix)
    export_s = time.perf_counter() - t0
    # the Runner checkpoint (with the optimizer) is not needed any more
    for f in glob.glob(osp.join(work_dir, '*.pth')):
        os.remove(f)
    # pre-training time = CPU seconds of the training run (+ the teacher
    # PCA fit for KDEP / TCS): with 1 torch thread that is the wall clock
    # of an idle core, and it does not move with the load of a shared
    # machine as the wall clock does (also recorded)
    return dict(pretrain_s=round(train_cpu_s + fit_cpu_s, 2),
                pretrain_wall_s=round(train_s + fit_s, 2),
                train_s=round(train_s, 2), train_cpu_s=round(train_cpu_s, 2),
                fit_s=fit_s, fit_cpu_s=fit_cpu_s,
                build_s=round(build_s, 2), export_s=round(export_s, 2),
                export=dst, export_params=summary['num_params'],
                images=n_images, epochs=cfg.train_cfg.get('max_epochs'),
                iters=iters, final_losses=last, **info)


def _probe_classes():
    """The model + metric of the linear probe, defined lazily (mmengine)."""
    import torch
    from mmengine.evaluator import BaseMetric
    from mmengine.model import BaseModel

    class ProbeFeatures(BaseModel):
        """Frozen backbone + neck of an ImageClassifier; ``predict`` puts
        the pooled feature of each sample into its data sample."""

        def __init__(self, classifier):
            super().__init__(data_preprocessor=classifier.data_preprocessor)
            self.classifier = classifier

        def forward(self, inputs, data_samples=None, mode='tensor'):
            with torch.no_grad():
                feats = self.classifier.extract_feat(inputs)[-1]
            if mode == 'predict':
                for s, f in zip(data_samples, feats):
                    s.set_field(f.detach().cpu(), 'feat')
                return data_samples
            return feats

    class CollectFeatures(BaseMetric):
        default_prefix = 'probe'

        def process(self, data_batch, data_samples):
            for s in data_samples:
                self.results.append((s['feat'], int(s['gt_label'][0])))

        def compute_metrics(self, results):
            self.features = torch.stack([r[0] for r in results])
            self.labels = torch.tensor([r[1] for r in results])
            return dict(num_samples=len(results))

    return ProbeFeatures, CollectFeatures


def fit_linear_probe(xtr, ytr, xte, yte, num_classes, l2, max_iter):
    """Multinomial logistic regression on standardised features
    (full-batch L-BFGS, L2 on the weights); returns test top-1 (%)."""
    import torch
    import torch.nn.functional as F
    xtr, xte = xtr.double(), xte.double()
    mu, sd = xtr.mean(0), xtr.std(0, unbiased=False).clamp_min(1e-6)
    xtr, xte = (xtr - mu) / sd, (xte - mu) / sd
    w = torch.zeros(xtr.shape[1], num_classes, dtype=torch.float64,
                    requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter,
                            history_size=20, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(xtr @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        pred = (xte @ w + b).argmax(1)
        train_acc = ((xtr @ w + b).argmax(1) == ytr).double().mean().item()
    return 100. * (pred == yte).double().mean().item(), 100. * train_acc


def run_probe(cell, ctx, init_ckpt):
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner, set_random_seed

    from kdep_mm.registry import MODELS
    st = ctx.student(cell.student)
    cfg = ctx.task_cfg('probe')
    set_downstream_backbone(cfg, 'probe', st.depth, st.base_channels,
                            init_ckpt)
    init_default_scope('mmpretrain')
    set_random_seed(cell.seed)
    t0 = time.perf_counter()
    classifier = MODELS.build(cfg.model.to_dict())
    classifier.init_weights()
    ProbeFeatures, CollectFeatures = _probe_classes()
    model = ProbeFeatures(classifier)
    metric = CollectFeatures()
    tr = cfg.probe_train_dataloader.to_dict()
    te = cfg.test_dataloader.to_dict()
    tr['dataset'].update(data_root=ctx.cifar, ann_file=ctx.probe_train)
    te['dataset'].update(data_root=ctx.cifar, ann_file=ctx.probe_test)
    loader = dict(te)
    loader['dataset'] = dict(type='ConcatDataset',
                             datasets=[tr['dataset'], te['dataset']])
    work_dir = osp.join(ctx.runs, cell.fname)
    name = f'study_{cell.fname}_{os.getpid()}_{time.time_ns()}'
    runner = Runner(
        model=model, work_dir=work_dir, experiment_name=name,
        test_dataloader=loader, test_cfg=dict(), test_evaluator=[metric],
        default_scope='mmpretrain', randomness=dict(seed=cell.seed),
        env_cfg=dict(cudnn_benchmark=False,
                     mp_cfg=dict(mp_start_method='fork',
                                 opencv_num_threads=0),
                     dist_cfg=dict(backend='gloo')),
        log_level='INFO' if ctx.args.verbose else 'WARNING',
        default_hooks=dict(logger=dict(type='LoggerHook', interval=5)))
    runner.test()
    close_runner(runner)
    feat_s = time.perf_counter() - t0
    n = ctx.n_probe_train
    x, y = metric.features, metric.labels
    t0 = time.perf_counter()
    top1, train_top1 = fit_linear_probe(x[:n], y[:n], x[n:], y[n:], 10,
                                        cfg.probe.l2, cfg.probe.max_iter)
    fit_s = time.perf_counter() - t0
    return dict(score=round(top1, 2), metric='top-1 (%)',
                train_top1=round(train_top1, 2), feat_s=round(feat_s, 2),
                fit_s=round(fit_s, 2), n_train=n, n_test=len(y) - n)


TASK_METRIC = {
    'hymenoptera': ('accuracy/top1', 1.0),
    'bccd': ('pascal_voc/mAP', 100.0),
    'camvid': ('mIoU', 1.0),
}


def run_finetune(cell, ctx, init_ckpt):
    """Hymenoptera / BCCD / CamVid: the task config's own Runner trains and
    then tests once."""
    st = ctx.student(cell.student)
    task = cell.task
    cfg = ctx.task_cfg(task)
    set_downstream_backbone(cfg, task, st.depth, st.base_channels, init_ckpt)
    trd, ted = cfg.train_dataloader.dataset, cfg.test_dataloader.dataset
    if task == 'hymenoptera':
        trd.data_root = ted.data_root = ctx.hym
        if ctx.smoke:
            trd.ann_file, ted.ann_file = ctx.hym_train, ctx.hym_val
    elif task == 'bccd':
        trd.data_root = ted.data_root = ctx.bccd
        if ctx.smoke:
            trd.ann_file, ted.ann_file = ctx.bccd_train, ctx.bccd_test
    elif task == 'camvid':
        trd.data_root = ted.data_root = ctx.camvid
        if ctx.smoke:
            trd.ann_file, ted.ann_file = ctx.camvid_train, ctx.camvid_val
    if ctx.smoke:
        cfg.train_dataloader.batch_size = ctx.study.smoke.train_images
        smoke_schedule(cfg, ctx, by_epoch=(task == 'hymenoptera'))
    work_dir = osp.join(ctx.runs, cell.fname)
    finish_runner_cfg(cfg, ctx, work_dir, cell.fname, cell.seed)
    t0 = time.perf_counter()
    runner = build_runner(cfg, ctx)
    build_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    runner.train()
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = runner.test()
    test_s = time.perf_counter() - t0
    iters = runner.iter
    close_runner(runner)
    key, scale = TASK_METRIC[task]
    if key not in metrics:
        raise KeyError(f'{task}: no {key!r} among the test metrics '
                       f'{sorted(metrics)}')
    score = float(metrics[key]) * scale
    return dict(score=round(score, 2), metric=ctx.study.tasks[task].metric,
                metrics={k: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float))},
                build_s=round(build_s, 2), train_s=round(train_s, 2),
                test_s=round(test_s, 2), iters=iters)


def run_cell(cell, ctx):
    """Run one cell and return its result dict (timings, loads included)."""
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    c0 = time.process_time()
    if cell.kind == 'pca':
        res = run_pca(cell, ctx)
    elif cell.kind == 'pretrain':
        res = run_pretrain(cell, ctx)
    else:
        pre = load_result(ctx.rdir, Cell('pretrain', cell.arm, cell.student,
                                         cell.seed))
        init = pre.get('export')
        if init is not None and not osp.isfile(init):
            raise FileNotFoundError(
                f'{cell.id}: the export {init} of the pre-training cell is '
                'gone; delete that cell\'s JSON to rerun it')
        if cell.task == 'probe':
            res = run_probe(cell, ctx, init)
        else:
            res = run_finetune(cell, ctx, init)
    import torch
    res.update(cell=cell.id, kind=cell.kind, arm=cell.arm,
               student=cell.student, seed=cell.seed, task=cell.task,
               total_s=round(time.perf_counter() - t0, 2),
               cpu_s=round(time.process_time() - c0, 2),
               load_start=round(load0, 2),
               load_end=round(os.getloadavg()[0], 2),
               threads=torch.get_num_threads(), smoke=ctx.smoke,
               finished=time.strftime('%Y-%m-%d %H:%M:%S'))
    return res


def retire_stale_pretrain(rdir, cells):
    """A finished pre-training cell whose exported backbone is gone (cell
    results are kept in git, exports are not) is rerun when a selected
    downstream cell still needs it: its JSON is moved to ``*.stale.json``."""
    for c in cells:
        if c.kind != 'pretrain':
            continue
        res = load_result(rdir, c)
        exp = res.get('export') if res else None
        if exp is None or osp.isfile(exp):
            continue
        waiting = [d for d in cells if d.kind not in ('pca', 'pretrain')
                   and (d.arm, d.student, d.seed) == (c.arm, c.student, c.seed)
                   and load_result(rdir, d) is None]
        if waiting:
            os.replace(cell_path(rdir, c), cell_path(rdir, c, '.stale.json'))
            say(f'cell {c.id}: its export {exp} is gone and '
                f'{len(waiting)} downstream cell(s) need it: rerunning it')


# ================================================================ scheduler
def work(cells, ctx):
    """Run the given cells in order through claim files; returns
    (done, failed) counts of this process."""
    rdir = ctx.rdir
    failed_here = set()
    n_done = n_failed = 0
    while True:
        pending = [c for c in cells
                   if load_result(rdir, c) is None and c.id not in failed_here]
        if not pending:
            break
        picked = None
        waiting = False
        for c in pending:
            deps = c.deps()
            if any(d.id in failed_here for d in deps):
                failed_here.add(c.id)
                continue
            if any(load_result(rdir, d) is None for d in deps):
                if any(claimed_by_other(rdir, d) for d in deps):
                    waiting = True
                continue
            if claimed_by_other(rdir, c):
                waiting = True
                continue
            if try_claim(rdir, c):
                if load_result(rdir, c) is not None:  # finished meanwhile
                    release(rdir, c)
                    continue
                picked = c
                break
        if picked is None:
            if waiting:
                time.sleep(3)
                continue
            break
        say(f'cell {picked.id}: start (load {os.getloadavg()[0]:.1f})')
        err = cell_path(rdir, picked, '.error.txt')
        try:
            res = run_cell(picked, ctx)
        except Exception:  # noqa: BLE001 - a failed cell must not stop us
            from kdep_mm.utils.checkpoint import atomic_write_bytes
            tb = traceback.format_exc()
            atomic_write_bytes(tb.encode(), err)
            say(f'cell {picked.id}: FAILED, see {err}\n{tb[-2000:]}')
            failed_here.add(picked.id)
            n_failed += 1
        else:
            write_json(cell_path(rdir, picked), res)
            if osp.isfile(err):
                os.remove(err)
            score = res.get('score')
            say(f'cell {picked.id}: done in {res["total_s"]:.1f}s'
                + (f', score {score}' if score is not None else '')
                + (f', pre-training {res["pretrain_s"]:.1f}s'
                   if 'pretrain_s' in res else ''))
            n_done += 1
        finally:
            release(rdir, picked)
            import gc
            gc.collect()
    return n_done, n_failed


# =================================================================== report
def _stats(values):
    if not values:
        return None
    m = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return dict(mean=m, sd=sd, n=len(values))


def _fmt(st, nd=1, want=3):
    if st is None:
        return None
    if st['n'] == 1:
        txt = f'{st["mean"]:.{nd}f}'
    else:
        txt = f'{st["mean"]:.{nd}f} ± {st["sd"]:.{nd}f}'
    if st['n'] < want:
        txt += f' (n={st["n"]})'
    return txt


def collect(rdir, plan):
    """Results and failures of the planned cells."""
    res, failed = {}, set()
    for c in plan:
        r = load_result(rdir, c)
        if r is not None:
            res[c.id] = r
        elif osp.isfile(cell_path(rdir, c, '.error.txt')):
            failed.add(c.id)
    return res, failed


class Table:
    """Per (student, arm, column) statistics over seeds."""

    def __init__(self, study, plan, res, failed):
        self.study, self.plan, self.res, self.failed = \
            study, plan, res, failed
        self.seeds = list(study.seeds)

    def values(self, student, arm, col):
        out = []
        for s in self.seeds:
            if col == 'pretrain':
                r = self.res.get(f'pretrain/{arm}/{student}/s{s}')
                if r is not None:
                    out.append(r['pretrain_s'])
            else:
                r = self.res.get(f'{col}/{arm}/{student}/s{s}')
                if r is not None:
                    out.append(r['score'])
        return out

    def stat(self, student, arm, col):
        return _stats(self.values(student, arm, col))

    def any_failed(self, student, arm, col):
        head = 'pretrain' if col == 'pretrain' else col
        return any(f'{head}/{arm}/{student}/s{s}' in self.failed
                   for s in self.seeds)

    def text(self, student, arm, col, nd=1):
        st = self.stat(student, arm, col)
        if st is None:
            return 'failed' if self.any_failed(student, arm, col) \
                else 'not run'
        return _fmt(st, nd, len(self.seeds))


def _diff_line(t, student, task, a, b):
    sa, sb = t.stat(student, a, task), t.stat(student, b, task)
    d = sa['mean'] - sb['mean']
    return d, (f'{task}: ({a}) {sa["mean"]:.1f} vs ({b}) {sb["mean"]:.1f} '
               f'({d:+.1f})')


def claims(t, student):
    """The three claims of the issue, each with the verdict the numbers of
    ``student`` give (or 'not yet measured')."""
    tasks = list(t.study.tasks)
    out = []

    def missing(arms, cols):
        miss = [f'({a}) {c}' for a in arms for c in cols
                if t.stat(student, a, c) is None]
        return miss

    def n_note(arms, cols):
        ns = [t.stat(student, a, c)['n'] for a in arms for c in cols]
        low = min(ns)
        return ('' if low >= len(t.seeds) else
                f' Preliminary: some cells have only {low} of '
                f'{len(t.seeds)} seeds.')

    # 1. KDEP > logit KD and > FitNets
    name = 'KDEP (f) > logit KD (d) and > FitNets (e), on every task'
    miss = missing('fde', tasks)
    if miss:
        out.append((name, 'not yet measured', 'missing: ' + ', '.join(miss)))
    else:
        wins, clear, lines = 0, 0, []
        for task in tasks:
            for other in 'de':
                d, line = _diff_line(t, student, task, 'f', other)
                sf, so = t.stat(student, 'f', task), t.stat(student, other,
                                                           task)
                wins += d > 0
                clear += d > sf['sd'] + so['sd'] and min(sf['n'],
                                                         so['n']) > 1
                lines.append(line)
        total = 2 * len(tasks)
        verdict = ('holds' if wins == total else 'does not hold'
                   if wins == 0 else f'partly holds ({wins} of {total} '
                   'comparisons)')
        out.append((name, verdict,
                     f'KDEP ahead in {wins} of {total} comparisons, by more '
                     f'than the two sds summed in {clear}. '
                     + '; '.join(lines) + '.' + n_note('fde', tasks)))

    # 2. KDEP 10% ~ supervised 100% at a fraction of the time
    name = ('KDEP on 10% (f) ≈ supervised on 100% (b), at a fraction of '
            'the pre-training time')
    miss = missing('fb', tasks + ['pretrain'])
    if miss:
        out.append((name, 'not yet measured', 'missing: ' + ', '.join(miss)))
    else:
        ok, lines = 0, []
        for task in tasks:
            d, line = _diff_line(t, student, task, 'f', 'b')
            sf, sb = t.stat(student, 'f', task), t.stat(student, 'b', task)
            tol = max(1.0, sf['sd'] + sb['sd'])
            match = d >= -tol
            ok += match
            lines.append(line + (' match' if match else ' behind') +
                         f' (tolerance {tol:.1f})')
        tf = t.stat(student, 'f', 'pretrain')['mean']
        tb = t.stat(student, 'b', 'pretrain')['mean']
        ratio = tf / tb if tb > 0 else float('inf')
        fast = ratio < 0.5
        if ok == len(tasks) and fast:
            verdict = 'holds'
        elif ok == 0:
            verdict = 'does not hold'
        else:
            verdict = (f'partly holds ({ok} of {len(tasks)} tasks within '
                       'tolerance' + ('' if fast else
                                      ', not at a fraction of the time')
                       + ')')
        out.append((name, verdict,
                     f'"≈" = KDEP 10% at most max(1 point, sd_f + sd_b) '
                     f'below supervised 100%. Pre-training time: '
                     f'{tf:.0f} s vs {tb:.0f} s (ratio {ratio:.2f}). '
                     + '; '.join(lines) + '.' + n_note('fb', tasks)))

    # 3. KDEP > scratch on every task
    name = 'KDEP (f, 10%; g, 100%) > random init (a) on every task'
    miss = missing('fa', tasks)
    if miss:
        out.append((name, 'not yet measured', 'missing: ' + ', '.join(miss)))
    else:
        wins, lines = 0, []
        for task in tasks:
            d, line = _diff_line(t, student, task, 'f', 'a')
            wins += d > 0
            lines.append(line)
        g_note = ''
        if not missing('g', tasks):
            gw = sum(_diff_line(t, student, task, 'g', 'a')[0] > 0
                     for task in tasks)
            g_note = f' KDEP 100% (g) ahead of (a) on {gw} of {len(tasks)}.'
        verdict = ('holds' if wins == len(tasks) else 'does not hold'
                   if wins == 0 else
                   f'partly holds ({wins} of {len(tasks)} tasks)')
        out.append((name, verdict,
                     f'KDEP 10% ahead on {wins} of {len(tasks)} tasks: '
                     + '; '.join(lines) + '.' + g_note
                     + n_note('fa', tasks)))
    return out


def runtime_estimate(plan, res, study):
    """Expected time of the whole plan in one process, as wall clock (at the
    load measured) and as CPU seconds (1 torch thread: about the wall clock
    on an idle core). Measured cells count at their time, the others at the
    mean of measured cells of the same type (task, or pre-training arm) and
    student, else of the same type for any student, else not at all."""
    def key(c):
        return ('pretrain', c.arm) if c.kind == 'pretrain' else (
            (c.task, None) if c.kind == 'down' else ('pca', None))

    by = {}
    for c in plan:
        r = res.get(c.id)
        if r is not None:
            v = (r['total_s'], r.get('cpu_s', r['total_s']))
            by.setdefault((key(c), c.student), []).append(v)
            by.setdefault((key(c), '*'), []).append(v)
    out = dict(wall=0., cpu=0., wall_meas=0., cpu_meas=0., n_meas=0,
               n_est=0, n_unknown=0)
    for c in plan:
        r = res.get(c.id)
        if r is not None:
            out['wall'] += r['total_s']
            out['cpu'] += r.get('cpu_s', r['total_s'])
            out['wall_meas'] += r['total_s']
            out['cpu_meas'] += r.get('cpu_s', r['total_s'])
            out['n_meas'] += 1
            continue
        vals = by.get((key(c), c.student)) or by.get((key(c), '*'))
        if vals:
            out['wall'] += statistics.fmean(v[0] for v in vals)
            out['cpu'] += statistics.fmean(v[1] for v in vals)
            out['n_est'] += 1
        else:
            out['n_unknown'] += 1
    rows = []
    for (k, student), vals in sorted(by.items(), key=lambda kv: str(kv[0])):
        if student == '*':
            continue
        n_plan = sum(1 for c in plan if key(c) == k and c.student == student)
        rows.append((k, student, statistics.fmean(v[0] for v in vals),
                     statistics.fmean(v[1] for v in vals), len(vals),
                     n_plan))
    out['rows'] = rows
    return out


def _pretrain_desc(study, arm, n100, n10, res):
    """Data and labels of an arm's pre-training; the epochs are those of a
    finished cell of that arm when there is one, else the config's."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(STUDY_DIR, study.arms[arm].config))
    info = cfg.study_arm
    if info.kind == 'random':
        return '-', '-'
    n = n10 if info.data == '10%' else n100
    ep = next((r['epochs'] for r in res.values()
               if r.get('kind') == 'pretrain' and r.get('arm') == arm
               and r.get('epochs')), cfg.train_cfg.max_epochs)
    return f'{info.data} ({n} img, {ep} ep)', 'yes' if info.labels else 'no'


def make_plots(t, res, images_dir, smoke):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    os.makedirs(images_dir, exist_ok=True)
    study = t.study
    paths = {}
    # ---- downstream score vs pre-training time (Fig. 1 at small scale)
    tasks = list(study.tasks)
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.1))
    colors = plt.get_cmap('tab10')
    markers = {s: m for s, m in zip(study.students, ('o', '^', 's', 'D'))}
    for ax, task in zip(axes, tasks):
        n_pts = 0
        for si, student in enumerate(study.students):
            for ai, arm in enumerate(study.arms):
                sy = t.stat(student, arm, task)
                sx = t.stat(student, arm, 'pretrain')
                if sy is None or sx is None:
                    continue
                ax.errorbar(sx['mean'], sy['mean'], xerr=sx['sd'],
                            yerr=sy['sd'], marker=markers[student],
                            color=colors(ai), ms=6, capsize=2,
                            mfc=colors(ai) if si == 0 else 'white',
                            linestyle='none')
                ax.annotate(arm, (sx['mean'], sy['mean']),
                            textcoords='offset points', xytext=(4, 3),
                            fontsize=8)
                n_pts += 1
        ax.set_title(study.tasks[task].label, fontsize=9)
        ax.set_xlabel('pre-training time (s)', fontsize=8)
        ax.set_ylabel(study.tasks[task].metric, fontsize=8)
        ax.tick_params(labelsize=7)
        if n_pts == 0:
            ax.text(0.5, 0.5, 'not run', ha='center', va='center',
                    transform=ax.transAxes, color='grey')
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], color=colors(i), marker='o',
                          linestyle='none',
                          label=f'({a}) {study.arms[a].label}')
               for i, a in enumerate(study.arms)]
    handles += [plt.Line2D([], [], color='k', marker=markers[s],
                           mfc='k' if i == 0 else 'white', linestyle='none',
                           label=study.students[s].label)
                for i, s in enumerate(study.students)]
    fig.legend(handles=handles, loc='lower center', ncol=5, fontsize=7,
               frameon=False)
    fig.suptitle('Downstream score vs pre-training time (mean ± sd over '
                 'seeds)' + (' [SMOKE]' if smoke else ''), fontsize=10)
    fig.tight_layout(rect=(0, 0.14, 1, 0.95))
    p = osp.join(images_dir, 'study_score_vs_time.png')
    fig.savefig(p, dpi=80)
    plt.close(fig)
    paths['score_vs_time'] = p
    # ---- teacher PCA spectrum
    pca = res.get('pca')
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if pca is None:
        ax.text(0.5, 0.5, 'not run', ha='center', va='center',
                transform=ax.transAxes, color='grey')
    else:
        ratio = pca['explained_variance_ratio']
        cum = [sum(ratio[:i + 1]) for i in range(len(ratio))]
        idx = list(range(1, len(ratio) + 1))
        ax.bar(idx, ratio, color='tab:blue', alpha=0.7,
               label='explained variance ratio')
        ax.plot(idx, cum, color='tab:orange', marker='.', ms=3,
                label='cumulative')
        for i, (student, kept) in enumerate(pca['kept'].items()):
            ax.axvline(kept['k'] + 0.5, color=('tab:red', 'tab:green',
                                               'tab:purple')[i % 3],
                       linestyle='--',
                       label=f'k = {kept["k"]} '
                       f'({study.students[student].label}): '
                       f'{100 * kept["variance_kept"]:.1f}% kept')
        ax.set_xlabel('principal direction of the teacher feature', fontsize=8)
        ax.set_ylabel('fraction of variance', fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc='center right')
        ax.tick_params(labelsize=7)
        ax.set_title(f'ResNet-56 teacher: PCA of its pooled pre-ReLU feature '
                     f'({pca["n_features"]} images)'
                     + (' [SMOKE]' if smoke else ''), fontsize=9)
    fig.tight_layout()
    p = osp.join(images_dir, 'teacher_pca_spectrum.png')
    fig.savefig(p, dpi=80)
    plt.close(fig)
    paths['pca'] = p
    return paths


def report(args, study, ctx_info):
    rdir = osp.abspath(args.results_dir)
    plan = full_plan(study)
    res, failed = collect(rdir, plan)
    t = Table(study, plan, res, failed)
    docs = osp.abspath(args.docs_dir)
    images = osp.join(docs, 'images')
    md_path = osp.join(docs, 'results.md')
    plots = make_plots(t, res, images, args.smoke)
    rel = {k: osp.relpath(v, docs) for k, v in plots.items()}
    tasks = list(study.tasks)
    n100, n10 = ctx_info['n_pool_100'], ctx_info['n_pool_10']
    L = []
    L.append('# KDEP study: the papers\' claims at small scale\n')
    shown = osp.relpath(rdir, REPO) if rdir.startswith(REPO) else rdir
    L.append('Generated by `python benchmarks/kdep_study.py --report` from '
             f'the cell results in `{shown}`'
             f' ({len(res)} of {len(plan)} planned cells finished'
             + (f', {len(failed)} failed' if failed else '') + ', report '
             f'written {time.strftime("%Y-%m-%d %H:%M")}). Cells that have '
             'not run say so; no number here is filled in or copied.'
             + (' **SMOKE RUN: 2 images, 1 iteration per cell; the numbers '
                'are meaningless.**' if args.smoke else '') + '\n')
    L.append('Setup: teacher = the real CIFAR-10 ResNet-56 (akamaster '
             'checkpoint, 64-d pooled feature). Students = CIFAR ResNet-20 '
             '(64-d) and ResNet-20 with 8 base channels (32-d). Pre-training '
             f'pool ("100%") = {n100} CIFAR-10 train images (class-balanced, '
             f'seed 0); "10%" = {n10} of them. Every arm trains the same '
             'number of epochs. Commands, sizes and the reasons for them: '
             '[docs/kdep.md](kdep.md#the-small-scale-study-issue-7).\n')
    L.append(f'![score vs time]({rel["score_vs_time"]})\n')
    for student in study.students:
        L.append(f'## {study.students[student].label}\n')
        head = ['arm', 'pre-training data', 'labels',
                'pre-training time (CPU s)'] + [
                    f'{study.tasks[k].label}: {study.tasks[k].metric}'
                    for k in tasks]
        L.append('| ' + ' | '.join(head) + ' |')
        L.append('|' + '---|' * 3 + '---:|' * (1 + len(tasks)))
        allowed = study.students[student].get('arms', 'abcdefgh')
        for arm in study.arms:
            if arm not in allowed:
                continue
            data, labels = _pretrain_desc(study, arm, n100, n10, res)
            row = [f'({arm}) {study.arms[arm].label}', data, labels]
            row.append('0' if arm == 'a' and t.stat(student, 'a', 'pretrain')
                       else t.text(student, arm, 'pretrain', nd=0))
            row += [t.text(student, arm, k) for k in tasks]
            L.append('| ' + ' | '.join(row) + ' |')
        L.append('')
        L.append(f'Mean ± sd over the seeds {list(study.seeds)} (n shown '
                 'when fewer finished). Pre-training time = CPU seconds of '
                 'the training run with 1 torch thread (about its wall clock '
                 'on an idle core; the wall clock on this shared machine is '
                 'in the cell files), plus the teacher PCA fit for the KDEP '
                 'and TCS arms.\n')
        L.append(f'### Claims, {study.students[student].label}\n')
        for name, verdict, detail in claims(t, student):
            L.append(f'- **{name}**: **{verdict}**. {detail}')
        L.append('')
    # ---- PCA
    L.append('## The teacher\'s feature spectrum\n')
    pca = res.get('pca')
    if pca is None:
        L.append('not run\n')
    else:
        kept = ', '.join(
            f'k = {v["k"]} ({study.students[s].label}) keeps '
            f'{100 * v["variance_kept"]:.1f}%'
            for s, v in pca['kept'].items())
        ratio = pca['explained_variance_ratio']
        n90 = next(i + 1 for i in range(len(ratio))
                   if sum(ratio[:i + 1]) >= 0.9)
        L.append(f'PCA of the ResNet-56 feature on {pca["n_features"]} '
                 f'images (training pipeline): {kept} of the variance; '
                 f'{n90} directions hold 90%. Fitted in {pca["fit_s"]:.1f} s.'
                 '\n')
        L.append(f'![teacher PCA spectrum]({rel["pca"]})\n')
    # ---- runtime
    est = runtime_estimate(plan, res, study)
    L.append('## Runtime\n')
    loads = [r['load_start'] for r in res.values() if 'load_start' in r]
    if loads:
        L.append('Measured per cell (1 process, 1 torch thread): wall clock '
                 'on this shared machine (1-min load average at the cells\' '
                 f'start: median {statistics.median(loads):.1f} on 2 cores) '
                 'and CPU seconds of the process (with one thread, about the '
                 'wall clock on an idle core).\n')
        L.append('| cell type | student | wall s / cell | CPU s / cell '
                 '| measured | planned |')
        L.append('|---|---|---:|---:|---:|---:|')
        for k, student, wall, cpu, n_meas, n_plan in est['rows']:
            name = (f'pre-train ({k[1]}) {study.arms[k[1]].label}'
                    if k[0] == 'pretrain' else k[0])
            L.append(f'| {name} | {student or "-"} | {wall:.1f} | {cpu:.1f} '
                     f'| {n_meas} | {n_plan} |')
        L.append('')
        L.append(
            f'Expected full study ({len(plan)} cells; {est["n_meas"]} '
            f'measured, {est["n_est"]} estimated from measured cells of the '
            'same type and student, or, where that student has none yet, of '
            'the other student (for the narrow student an overestimate)'
            + (f', {est["n_unknown"]} of a type not measured yet and not '
               'counted' if est['n_unknown'] else '')
            + f'): **{est["cpu"] / 3600:.2f} CPU hours**, i.e. about '
            f'**{est["cpu"] / 7200:.2f} h with `--jobs 2` on 2 idle cores** '
            f'({est["cpu"] / 3600:.2f} h in one process); at the load '
            f'measured here, {est["wall"] / 3600:.2f} h of wall clock in '
            'one process. Measured so far: '
            f'{est["cpu_meas"] / 3600:.2f} CPU hours, '
            f'{est["wall_meas"] / 3600:.2f} h wall.\n')
    else:
        L.append('No cell has run yet.\n')
    L.append('## Reproduce\n')
    L.append('```bash\npython benchmarks/kdep_study.py --jobs 2   '
             '# resumable; reruns skip finished cells\n'
             'python benchmarks/kdep_study.py --report    '
             '# this page and the plots\n```\n')
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    atomic_write_bytes('\n'.join(L).encode(), md_path)
    say(f'report: {md_path} ({len(res)}/{len(plan)} cells), plots '
        f'{", ".join(plots.values())}')
    return md_path


# ===================================================================== main
def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='The KDEP study: pre-training arms x downstream tasks, '
        'resumable cell by cell, with a generated table and plots.',
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--results-dir', default=None,
                   help='cell results, exports, logs '
                   '[benchmarks/study_results (its cells/ are tracked by '
                   'git, the rest is ignored), or '
                   'work_dirs/study_smoke with --smoke]')
    p.add_argument('--docs-dir', default=None,
                   help='where results.md and images/ go [docs, or '
                   '<results-dir>/docs with --smoke]')
    p.add_argument('--arms', help='e.g. f,g,b (default: all)')
    p.add_argument('--students', help='r20,r20w8 (default: all)')
    p.add_argument('--tasks', help='probe,hymenoptera,bccd,camvid and/or '
                   'pretrain (default: all)')
    p.add_argument('--seeds', help='e.g. 0 or 0,1,2 (default: all)')
    p.add_argument('--only', help='comma-separated glob(s) over cell ids, '
                   "e.g. 'pretrain/f/*,probe/*/r20/s0'")
    p.add_argument('--report', action='store_true',
                   help='only regenerate the table and plots')
    p.add_argument('--no-report', action='store_true',
                   help='do not write the report after running')
    p.add_argument('--list', action='store_true',
                   help='print the selected cells and their state')
    p.add_argument('--jobs', type=int, default=1,
                   help='worker processes (each --threads threads)')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads per process')
    p.add_argument('--smoke', action='store_true',
                   help='2 images and 1 iteration per cell (tests)')
    p.add_argument('--verbose', action='store_true',
                   help="also print each Runner's config and environment")
    p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.results_dir is None:
        args.results_dir = ('work_dirs/study_smoke' if args.smoke
                            else osp.join(REPO, 'benchmarks', 'study_results'))
    if args.docs_dir is None:
        args.docs_dir = (osp.join(args.results_dir, 'docs') if args.smoke
                         else osp.join(REPO, 'docs'))
    if args.jobs < 1:
        p.error('--jobs must be >= 1')
    return args


def _child_argv(args):
    argv = [sys.executable, osp.abspath(__file__), '--worker',
            '--results-dir', args.results_dir, '--threads',
            str(args.threads)]
    for k in ('arms', 'students', 'tasks', 'seeds', 'only'):
        v = getattr(args, k)
        if v is not None:
            argv += [f'--{k}', v]
    if args.smoke:
        argv.append('--smoke')
    if args.verbose:
        argv.append('--verbose')
    return argv


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    os.chdir(REPO)  # configs name ../shared and mmdet:: paths from here
    import torch
    if args.threads > 0 and not (args.report or args.list):
        torch.set_num_threads(args.threads)
    import kdep_mm  # noqa: F401  (mmengine checkpoint types)
    from kdep_mm.utils.setup_env import register_all_modules
    register_all_modules(init_default_scope=False)
    study = load_study()
    plan = full_plan(study)
    cells = select(plan, args)
    rdir = osp.abspath(args.results_dir)
    os.makedirs(osp.join(rdir, 'cells'), exist_ok=True)

    if args.list:
        for c in cells:
            r = load_result(rdir, c)
            state = ('done' if r is not None else 'failed' if osp.isfile(
                cell_path(rdir, c, '.error.txt')) else 'claimed' if
                claimed_by_other(rdir, c) else 'todo')
            extra = f' {r.get("score", r.get("pretrain_s", ""))}' if r else ''
            print(f'{c.id:40s} {state}{extra}')
        return 0

    ctx = None
    if not args.report:
        ctx = Ctx(args, study)
        t0 = time.perf_counter()
        if not args.worker:
            retire_stale_pretrain(rdir, cells)
        todo = [c for c in cells if load_result(rdir, c) is None]
        say(f'{len(cells)} cells selected, {len(cells) - len(todo)} already '
            f'done, {len(todo)} to run; results in {rdir}; '
            f'{args.jobs} process(es) x {torch.get_num_threads()} thread(s)')
        if args.jobs > 1 and not args.worker:
            import subprocess
            procs = [subprocess.Popen(_child_argv(args))
                     for _ in range(args.jobs)]
            codes = [pr.wait() for pr in procs]
            if any(codes):
                say(f'worker exit codes {codes}')
        else:
            done, failed = work(cells, ctx)
            say(f'this process: {done} cells done, {failed} failed, '
                f'{time.perf_counter() - t0:.0f}s')
        if args.worker:
            return 0
    if args.report or not args.no_report:
        if ctx is None:
            ctx = Ctx(args, study)
        report(args, study, dict(n_pool_100=ctx.n_pool_100,
                                 n_pool_10=ctx.n_pool_10))
    res, failed = collect(rdir, cells)
    return 1 if failed and not args.report else 0


if __name__ == '__main__':
    sys.exit(main())
