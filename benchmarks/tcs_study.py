#!/usr/bin/env python
"""TCS against KD at equal budget (issue 19, item 2).

CIFAR-10, the real ResNet-56 -> ResNet-20 w8, five arms (CE only, Hinton
logit KD online, FitNets online, TCS from a teacher store, TCS online) on
the same 5,000 labelled images, the same stored views, batch, samples seen
and schedule (the spec: ``configs/tcs/study/tcs_study.py``). Per arm and
seed: top-1 on the full 10,000-image test set, training CPU seconds (1
torch thread, data loaded in the training process; the store's caching
reported apart) and peak RSS growth of a fresh process (``VmHWM`` after
training minus ``VmRSS`` before the Runner is built, the high-water mark
reset first). The learning rate of each arm comes from a sweep judged on a
validation split carved from CIFAR-10 train.

Cells (one JSON each under ``<results>/cells``, written atomically):
``store/v<V>`` (cache the teacher's features of V views per image),
``sweep/<arm>/lr<lr>`` (seed ``sweep_seed``, val top-1) and
``main/<arm>/s<seed>`` (the chosen lr, test top-1). Each cell runs in a
fresh process; ``--jobs N`` runs N at a time; a killed study resumes where
it stopped (claim files of dead processes are taken over). ``--report``
regenerates the results section of ``docs/tcs.md`` and its plot from the
committed cells.

A sixth arm, ``tcs_ssl``, distils a self-supervised teacher (the backbone
of a MoCo v2 ResNet-56) online; its cells need ``--ssl-teacher CKPT`` and
are blocked without it. Its store, ``store/ssl_v<V>``, holds that
teacher's features on ``store/v<V>``'s views, since the store a run reads
is checked against the teacher that runs. ``benchmarks/tcs_ssl_gpu.sh``
pre-trains the teacher and runs the arm on one GPU; the cells record the
checkpoint's sha256, and those made from another one rerun.

    python benchmarks/tcs_study.py --plan
    nice -n 5 python benchmarks/tcs_study.py --jobs 2
    python benchmarks/tcs_study.py --report
"""
import argparse
import os
import os.path as osp
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from shared_data import unpack_shared  # noqa: E402
from study.cellstore import (cell_path, load_result, pick_ready,  # noqa: E402
                             release, retire_lost, write_json)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SPEC = osp.join(REPO, 'configs', 'tcs', 'study', 'tcs_study.py')
CFG_DIR = osp.join(REPO, 'configs', 'tcs')
RESULTS = osp.join(REPO, 'benchmarks', 'tcs_results')
WORK = osp.join(REPO, 'work_dirs', 'tcs_study')
DOC = osp.join(REPO, 'docs', 'tcs.md')
TEACHER_FILE = 'resnet56-4bfd9763.th'
SSL_TEACHER = osp.join(REPO, 'work_dirs', 'tcs_ssl_teacher', 'teacher.pth')


def say(msg):
    print(f'[tcs_study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


# ------------------------------------------------------------------ plan
class Cell(SimpleNamespace):
    """id, kind ('store' | 'sweep' | 'main'), arm, seed, lr, deps."""

    @property
    def fname(self):
        return self.id.replace('/', '__')


def load_spec(path=SPEC, smoke=False):
    from mmengine.config import Config
    spec = Config.fromfile(path)
    for key in ('arms', 'train_per_class', 'val_per_class', 'views',
                'batch_size', 'epochs', 'seeds', 'sweeps', 'claims'):
        if key not in spec:
            raise KeyError(f'{path}: the study spec has no {key!r}')
    for arm in list(spec.sweeps) + list(spec.get('sweep_from', {})):
        if arm not in spec.arms:
            raise ValueError(f'{path}: sweeps / sweep_from name an unknown '
                             f'arm {arm!r}')
    missing = [a for a in spec.arms
               if a not in spec.sweeps and a not in spec.get('sweep_from', {})]
    if missing:
        raise ValueError(f'{path}: arms {missing} have no sweep and no '
                         'sweep_from: their lr would not be chosen on val')
    if smoke:
        sm = spec.smoke
        spec.merge_from_dict(dict(
            train_per_class=sm.train_per_class,
            val_per_class=sm.val_per_class, views=sm.views, seeds=sm.seeds,
            sweeps={a: dict(sm.sweep) for a in spec.sweeps}))
    return spec


def steps_of(spec, smoke=False):
    """SGD steps of every training cell: epochs x images / batch."""
    if smoke:
        return int(spec.smoke.steps)
    images = 10 * spec.train_per_class
    return int(round(spec.epochs * images / spec.batch_size))


def needs_ssl(spec, cell):
    """Whether ``cell`` needs the self-supervised teacher: the SSL store
    (arm ``'ssl'``) and the cells of an arm with ``teacher='ssl'``."""
    return cell.arm == 'ssl' or (cell.arm in spec.arms and
                                 spec.arms[cell.arm].get('teacher') == 'ssl')


def plan(spec):
    store = Cell(id=f'store/v{spec.views}', kind='store', arm=None,
                 seed=None, lr=None, deps=[])
    cells, sweep_ids = [store], {}
    stores = {None: [store.id]}
    if any(a.get('teacher') == 'ssl' for a in spec.arms.values()):
        ssl = Cell(id=f'store/ssl_v{spec.views}', kind='store', arm='ssl',
                   seed=None, lr=None, deps=[store.id])  # on its views
        cells.append(ssl)
        stores['ssl'] = [store.id, ssl.id]
    for arm, grid in spec.sweeps.items():
        ids = sweep_ids.setdefault(arm, [])
        for lr in grid['lr']:
            c = Cell(id=f'sweep/{arm}/lr{lr:g}', kind='sweep', arm=arm,
                     seed=spec.get('sweep_seed', 100), lr=float(lr),
                     deps=[store.id])
            cells.append(c)
            ids.append(c.id)
    for seed in spec.seeds:
        for arm in spec.arms:
            src = spec.get('sweep_from', {}).get(arm, arm)
            cells.append(Cell(id=f'main/{arm}/s{seed}', kind='main', arm=arm,
                              seed=seed, lr=None,
                              deps=stores[spec.arms[arm].get('teacher')]
                              + sweep_ids[src]))
    return cells


def chosen_lr(results, spec, arm):
    """The lr of ``arm`` (or of its ``sweep_from`` arm) with the best val
    top-1 in the sweep (ties: the smaller lr); RuntimeError until every
    sweep cell has run."""
    src = spec.get('sweep_from', {}).get(arm, arm)
    rows = []
    for lr in spec.sweeps[src]['lr']:
        res = load_result(results, Cell(id=f'sweep/{src}/lr{lr:g}'))
        if res is None:
            raise RuntimeError(f'the sweep of {src} is not complete')
        rows.append((-res['val_top1'], float(lr)))
    return min(rows)[1]


# ------------------------------------------------------------- the data
def write_splits(spec, work, smoke=False):
    """Disjoint class-balanced lists from CIFAR-10 train (seed
    ``split_seed``): train (``train_per_class``) and val
    (``val_per_class``); test: the full test set (a few images in smoke
    runs). Paths relative to the split folder, as ``data_prefix``."""
    from study.data import cifar_parts, every_class

    from kdep_mm.utils.checkpoint import atomic_write_bytes
    cifar = unpack_shared('cifar10_jpeg.tar.gz')
    train, val = cifar_parts(osp.join(cifar, 'train'), spec.split_seed,
                             [spec.train_per_class, spec.val_per_class])
    test = cifar_parts(osp.join(cifar, 'test'), 0, [None])[0]
    if smoke:
        test = every_class(test, spec.smoke.test_images)
    os.makedirs(osp.join(work, 'splits'), exist_ok=True)
    files = {}
    for name, pairs in (('train', train), ('val', val), ('test', test)):
        path = osp.join(work, 'splits', f'{name}.txt')
        data = ''.join(f'{p} {lab}\n' for p, lab in pairs).encode()
        if not osp.isfile(path) or open(path, 'rb').read() != data:
            atomic_write_bytes(data, path)
        files[name] = path
    return cifar, files, len(train)


# ----------------------------------------------------------- one cell
def _status_kib(key):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(key + ':'):
                return int(line.split()[1])
    raise KeyError(key)


def memory_base():
    """Free heap handed back (malloc_trim), the RSS high-water mark reset
    (``/proc/self/clear_refs``); returns VmRSS (KiB)."""
    import ctypes
    import gc
    gc.collect()
    ctypes.CDLL('libc.so.6').malloc_trim(0)
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return _status_kib('VmRSS')


def _teacher_ckpt():
    return osp.join(unpack_shared('cifar10_resnets'), TEACHER_FILE)


def run_store(spec, cell, work, files, ssl_teacher=None):
    """Cache the ResNet-56's pooled pre-ReLU feature of ``views`` random
    views of every training image (the views every arm trains on); for the
    SSL store (``cell.arm == 'ssl'``) the feature of the MoCo v2 backbone
    at ``ssl_teacher`` on the same views. On the GPU when there is one."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from kdep_mm.apis import TeacherCacher
    from kdep_mm.models.teachers import FrozenTeacher
    from kdep_mm.registry import DATASETS, MODELS
    ssl = cell.arm == 'ssl'
    arm = next(a for a, v in spec.arms.items()
               if v.get('teacher') == 'ssl') if ssl else 'tcs_online'
    online = Config.fromfile(osp.join(CFG_DIR, spec.arms[arm].config)).model
    ckpt = ssl_teacher if ssl else _teacher_ckpt()
    views = (dict(num_views=spec.views, out_size=32,
                  views_from=store_root(work, spec)) if ssl else
             dict(num_views=spec.views, view_mode='random', out_size=32))
    base = memory_base()
    c0, t0 = time.process_time(), time.perf_counter()
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        teacher = FrozenTeacher(online.teacher.to_dict(), ckpt,
                                online.teacher_revise_keys)
        preprocessor = MODELS.build(online.data_preprocessor)
        if torch.cuda.is_available():
            teacher.module.cuda()
            preprocessor.cuda()
        dataset = DATASETS.build(dict(
            type='CustomDataset', data_root=files['cifar'],
            data_prefix='train', ann_file=files['train'], with_label=True,
            pipeline=[dict(type='LoadImageFromFile')]))
        TeacherCacher(
            teacher, dataset, store_root(work, spec, cell.arm), views=views,
            outputs=dict(fields=('feat', )),
            run=dict(batch_size=100, progress=False),
            record=dict(teacher_config=online.teacher.to_dict(),
                        teacher_checkpoint=ckpt),
            data_preprocessor=preprocessor).run()
    return dict(images=len(dataset), views=spec.views,
                cache_cpu_s=round(time.process_time() - c0, 2),
                cache_wall_s=round(time.perf_counter() - t0, 2),
                peak_mib=round((_status_kib('VmHWM') - base) / 1024, 1))


def store_root(work, spec, teacher=None):
    """The store of the supervised ResNet-56 (``teacher`` None) or of the
    SSL teacher (``'ssl'``)."""
    return osp.join(work, f'store_{teacher + "_" if teacher else ""}'
                          f'v{spec.views}')


def arm_config(spec, arm, work, files, n_train, steps, lr, seed, run_dir,
               smoke, ssl_teacher=None):
    """The arm's Runner config pointed at the study's lists, store,
    schedule, lr and seed (1 process, no workers); an arm of the SSL
    teacher at ``ssl_teacher`` and its store."""
    from mmengine.config import Config
    from study.runners import finish_runner_cfg, iter_schedule
    cfg = Config.fromfile(osp.join(CFG_DIR, spec.arms[arm].config))
    teacher = spec.arms[arm].get('teacher')
    store = store_root(work, spec, teacher)
    ckpt = ssl_teacher if teacher == 'ssl' else _teacher_ckpt()
    ds = cfg.train_dataloader.dataset
    ds.update(data_root=files['cifar'], ann_file=files['train'])
    for t in ds.pipeline:
        if t['type'].endswith('ApplyStoredView'):
            t['store']['root'] = store
    if cfg.model.get('teacher') is not None:
        cfg.model.teacher_ckpt = ckpt
    for h in cfg.get('custom_hooks', []):
        if h['type'].endswith('FitBasisHook'):
            if h.get('store') is not None:
                h.update(store=store, num_views=spec.views,
                         teacher_checkpoint=ckpt)
            else:
                h.update(num_samples=n_train)
        if h['type'].endswith('CheckTeacherStoresHook'):
            h.update(teacher_checkpoints=ckpt)
    if cfg.model.type.endswith('TCSDistiller'):
        cfg.model.prune_interval = max(
            1, steps // spec.get('prune_steps_per_schedule', 12))
    cfg.train_dataloader.update(batch_size=spec.batch_size, num_workers=0,
                                persistent_workers=False)
    cfg.optim_wrapper.optimizer.lr = lr
    iter_schedule(cfg, steps)
    for split in ('val', 'test'):
        dl = cfg[f'{split}_dataloader']
        dl.update(num_workers=0, persistent_workers=False,
                  batch_size=500)
        dl.dataset.update(data_root=files['cifar'], ann_file=files[split],
                          data_prefix='test' if split == 'test' else 'train')
    cfg.val_evaluator = dict(type='Accuracy', topk=(1, ))
    cfg.test_evaluator = dict(type='Accuracy', topk=(1, ))
    ctx = SimpleNamespace(args=SimpleNamespace(verbose=False), device='cpu')
    finish_runner_cfg(cfg, ctx, run_dir, f'tcs_{arm}', seed)
    return cfg


def run_train(spec, cell, work, files, n_train, results, smoke,
              steps=None, lr=None, ssl_teacher=None):
    """Train one arm and score it; ``steps`` / ``lr`` override the plan
    (cost measurements only, never in the study's results folder)."""
    import torch
    from study.runners import build_runner, close_runner
    torch.set_num_threads(1)
    if lr is None:
        lr = cell.lr if cell.kind == 'sweep' else chosen_lr(results, spec,
                                                            cell.arm)
    steps = steps or steps_of(spec, smoke)
    cfg = arm_config(spec, cell.arm, work, files, n_train, steps, lr,
                     cell.seed, osp.join(work, 'runs', cell.fname), smoke,
                     ssl_teacher)
    base = memory_base()
    c0 = time.process_time()
    runner = build_runner(cfg, SimpleNamespace(
        args=SimpleNamespace(verbose=False)))
    build_cpu = time.process_time() - c0
    c1, t1 = time.process_time(), time.perf_counter()
    runner.train()
    train_cpu, train_wall = time.process_time() - c1, \
        time.perf_counter() - t1
    peak = (_status_kib('VmHWM') - base) / 1024
    n_lines = {k: sum(1 for _ in open(files[k])) for k in ('val', 'test')}
    out = dict(lr=lr, steps=steps, batch=spec.batch_size,
               samples=steps * spec.batch_size, train_images=n_train,
               val_images=n_lines['val'], test_images=n_lines['test'],
               views=spec.views, build_cpu_s=round(build_cpu, 2),
               train_cpu_s=round(train_cpu, 2),
               train_wall_s=round(train_wall, 2), peak_mib=round(peak, 1),
               peak_abs_mib=round(_status_kib('VmHWM') / 1024, 1))
    c2 = time.process_time()
    out['val_top1'] = float(runner.val()['accuracy/top1'])
    if cell.kind == 'main':  # the sweep never looks at the test set
        out['test_top1'] = float(runner.test()['accuracy/top1'])
    out['eval_cpu_s'] = round(time.process_time() - c2, 2)
    model = runner.model
    if hasattr(model, 'num_active'):
        out['active_coords'] = int(model.num_active)
    close_runner(runner)
    return out


def run_cell_here(args, cell_id):
    """The child process of one cell: run it, write its JSON."""
    spec = load_spec(args.spec, args.smoke)
    cell = next(c for c in plan(spec) if c.id == cell_id)
    cifar, files, n_train = write_splits(spec, args.work_dir, args.smoke)
    files = dict(files, cifar=cifar)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    if cell.kind == 'store':
        res = run_store(spec, cell, args.work_dir, files, args.ssl_teacher)
    else:
        res = run_train(spec, cell, args.work_dir, files, n_train,
                        args.results_dir, args.smoke, args.steps, args.lr,
                        args.ssl_teacher)
    import torch
    if needs_ssl(spec, cell):
        from kdep_mm.utils.checkpoint import file_sha256
        res.update(ssl_teacher=args.ssl_teacher,
                   teacher_sha256=dict(ssl=file_sha256(args.ssl_teacher)),
                   ssl_teacher_record=_ssl_record(args.ssl_teacher))
    res.update(device='cuda' if torch.cuda.is_available() else 'cpu')
    res.update(cell=cell.id, kind=cell.kind, arm=cell.arm, seed=cell.seed,
               total_s=round(time.perf_counter() - t0, 2),
               load_start=round(load0, 2),
               load_end=round(os.getloadavg()[0], 2),
               threads=torch.get_num_threads(), smoke=bool(args.smoke),
               torch=torch.__version__,
               finished=time.strftime('%Y-%m-%d %H:%M:%S'))
    write_json(cell_path(args.results_dir, cell), res)


def _ssl_record(ckpt):
    """What the SSL teacher's pre-training left beside its checkpoint
    (``<ckpt>.json``: epochs, times; benchmarks/tcs_ssl_gpu.sh writes
    it), or None."""
    import json
    path = ckpt + '.json'
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------ the loop
def _child(args, cell):
    cmd = [sys.executable, osp.abspath(__file__), '--cell', cell.id,
           '--spec', args.spec, '--results-dir', args.results_dir,
           '--work-dir', args.work_dir, '--ssl-teacher', args.ssl_teacher
           ] + (['--smoke'] if args.smoke else [])
    for opt in ('steps', 'lr'):
        if getattr(args, opt) is not None:
            cmd += [f'--{opt}', str(getattr(args, opt))]
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    log = osp.join(args.work_dir, 'logs', cell.fname + '.log')
    os.makedirs(osp.dirname(log), exist_ok=True)
    with open(log, 'w') as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                            cwd=REPO, env=env).returncode
    return rc, log


def work(args, cells, failed):
    """One worker: take the next runnable cell through a claim file (in
    the work dir), run it in a fresh process, repeat."""
    res_dir, claims = args.results_dir, args.work_dir
    while True:
        pending = [c for c in cells if load_result(res_dir, c) is None
                   and c.id not in failed]
        picked, waiting = pick_ready(
            pending, lambda c: c.deps,
            lambda cid: load_result(res_dir, Cell(id=cid)) is not None,
            claims, failed)
        if picked is None:
            if waiting and any(c.id not in failed for c in pending):
                time.sleep(2)
                continue
            return
        say(f'cell {picked.id}: start (load {os.getloadavg()[0]:.1f})')
        try:
            rc, log = _child(args, picked)
        finally:
            release(claims, picked)
        res = load_result(res_dir, picked)
        if rc or res is None:
            failed.add(picked.id)
            say(f'cell {picked.id}: FAILED (rc {rc}), see {log}')
        else:
            say(f'cell {picked.id}: done in {res["total_s"]:.0f} s'
                + (f', val {res["val_top1"]:.2f}' if 'val_top1' in res
                   else '') + (f', test {res["test_top1"]:.2f}'
                               if 'test_top1' in res else ''))


def retire_missing_stores(args, cells):
    """A finished store cell whose store is gone is rerun when a cell that
    trains from it has not run yet (:func:`study.cellstore.retire_lost`).
    The finished training cells are kept (no cascade): the rerun caches
    the same views (seeded crop boxes and flips) of the same images through
    the same teacher, so only the features' last bits can differ."""
    from kdep_mm.datasets.store.format import MANIFEST
    spec = load_spec(args.spec, args.smoke)
    done = {c.id: c for c in cells
            if load_result(args.results_dir, c) is not None}
    retire_lost([i for i, c in done.items() if c.kind == 'store' and
                 not osp.isfile(osp.join(store_root(args.work_dir, spec,
                                                    c.arm), MANIFEST))],
                [c.deps for c in cells if c.id not in done],
                lambda i: cell_path(args.results_dir, done[i]), say)


def retire_other_ssl(args, cells):
    """A finished cell made from another SSL teacher checkpoint than the
    one at ``--ssl-teacher`` now (its recorded ``teacher_sha256['ssl']``
    differs) reruns, so no result mixes two pre-trainings
    (:func:`study.cellstore.retire_made_with_other`). Returns the retired
    ids."""
    from study.cellstore import retire_made_with_other

    from kdep_mm.utils.checkpoint import file_sha256
    if not osp.isfile(args.ssl_teacher):
        return []
    by_id = {c.id: c for c in cells}
    done = {c.id: r for c in cells
            if (r := load_result(args.results_dir, c)) is not None}
    return retire_made_with_other(
        done, {'ssl': file_sha256(args.ssl_teacher)}.get,
        lambda i: cell_path(args.results_dir, by_id[i]), say)


def ssl_blocked(args, spec, cells):
    """The ids of the cells that cannot run: they need the SSL teacher
    and ``--ssl-teacher`` names no file."""
    if osp.isfile(args.ssl_teacher):
        return set()
    return {c.id for c in cells if needs_ssl(spec, c)}


def run_all(args, cells):
    spec = load_spec(args.spec, args.smoke)
    blocked = ssl_blocked(args, spec, cells)
    todo = [c for c in cells if c.id in blocked
            and load_result(args.results_dir, c) is None]
    if todo:
        say(f'{len(todo)} cell(s) blocked: no SSL teacher at '
            f'{args.ssl_teacher} (benchmarks/tcs_ssl_gpu.sh pre-trains one;'
            ' --ssl-teacher CKPT)')
    cells = [c for c in cells if c.id not in blocked]
    retire_other_ssl(args, cells)
    retire_missing_stores(args, cells)
    failed = set()
    threads = [threading.Thread(target=work, args=(args, cells, failed))
               for _ in range(max(1, args.jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failed


def print_plan(spec, cells, results, smoke):
    """The cells, which have run, and the CPU hours measured or estimated
    (an arm's measured CPU seconds per sample, else '?')."""
    steps = steps_of(spec, smoke)
    per = {}
    for c in cells:
        res = load_result(results, c)
        if res and c.kind != 'store':
            per.setdefault(c.arm, []).append(res['train_cpu_s']
                                             / res['samples'])
    done_s = todo_s = 0.
    unknown = 0
    for c in cells:
        res = load_result(results, c)
        if res is not None:
            done_s += res.get('train_cpu_s', res.get('cache_cpu_s', 0)) + \
                res.get('eval_cpu_s', 0)
            state = 'done'
        elif c.kind != 'store' and c.arm in per:
            est = sum(per[c.arm]) / len(per[c.arm]) * steps * spec.batch_size
            todo_s += est
            state = f'todo (~{est / 60:.0f} CPU min)'
        else:
            unknown += 1
            state = 'todo'
        print(f'{c.id:28s} {state}')
    print(f'{len(cells)} cells, {steps} steps x batch {spec.batch_size} = '
          f'{steps * spec.batch_size} samples per training cell; measured '
          f'{done_s / 3600:.2f} CPU h, left ~{todo_s / 3600:.2f} CPU h'
          + (f' + {unknown} cells not yet estimable' if unknown else ''))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--spec', default=SPEC)
    p.add_argument('--results-dir', default=RESULTS)
    p.add_argument('--work-dir', default=WORK,
                   help='splits, store, runs, logs, claims (not kept)')
    p.add_argument('--jobs', type=int, default=1)
    p.add_argument('--smoke', action='store_true',
                   help='a few images and steps (tests the plumbing)')
    p.add_argument('--only', nargs='+', default=None,
                   help='run only these cells (and what they need)')
    p.add_argument('--plan', action='store_true')
    p.add_argument('--write-splits', action='store_true')
    p.add_argument('--report', action='store_true',
                   help='regenerate the results section of the doc')
    p.add_argument('--doc', default=DOC)
    p.add_argument('--steps', type=int, default=None,
                   help='cost measurement: this many steps per training '
                   'cell instead of the plan (not with the default '
                   '--results-dir)')
    p.add_argument('--lr', type=float, default=None,
                   help='cost measurement: this lr instead of the sweep\'s')
    p.add_argument('--ssl-teacher', default=SSL_TEACHER,
                   help='the MoCo v2 checkpoint of the SSL arm (blocked '
                   'without it) [work_dirs/tcs_ssl_teacher/teacher.pth]')
    p.add_argument('--cell', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    for k in ('spec', 'results_dir', 'work_dir', 'doc', 'ssl_teacher'):
        setattr(args, k, osp.abspath(getattr(args, k)))
    if (args.steps is not None or args.lr is not None) and \
            args.results_dir == RESULTS:
        raise SystemExit('--steps / --lr measure costs: give them another '
                         '--results-dir than the study\'s')
    if args.cell:
        return run_cell_here(args, args.cell)
    spec = load_spec(args.spec, args.smoke)
    cells = plan(spec)
    if args.write_splits:
        _, files, _ = write_splits(spec, args.work_dir, args.smoke)
        print('\n'.join(files.values()))
        return 0
    if args.plan:
        print_plan(spec, cells, args.results_dir, args.smoke)
        return 0
    if args.report:
        from tcs_study_report import write_report
        write_report(spec, cells, args)
        return 0
    if args.only:
        want, by_id = set(), {c.id: c for c in cells}
        stack = list(args.only)
        while stack:
            cid = stack.pop()
            if cid not in by_id:
                raise SystemExit(f'--only: no cell {cid!r}')
            if cid not in want:
                want.add(cid)
                stack += by_id[cid].deps
        cells = [c for c in cells if c.id in want]
    failed = run_all(args, cells)
    if failed:
        say(f'{len(failed)} cell(s) failed: {sorted(failed)}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
