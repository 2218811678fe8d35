"""Training-step time and peak memory of TCS from a teacher store vs. the
student alone vs. TCS with the teacher run online.

Three arms, in two settings:

* ``student``    -- the student trained alone: a plain mmpretrain
  ``ImageClassifier`` (the config's student backbone + GAP + linear head,
  cross-entropy), no teacher.
* ``tcs_store``  -- ``kdep_mm.TCSDistiller`` in store mode, exactly as
  configured in ``configs/tcs/`` (``teacher=None``): the teacher's pooled
  features arrive in the batch (``teacher_feat`` numpy arrays in the data
  samples, as ``ApplyStoredView`` + ``PackInputs`` deliver them).
* ``tcs_online`` -- the same TCS model with the teacher built and run on
  every batch (``teacher=...``, the samples carry no ``teacher_feat``).

Settings:

* ``cifar`` -- ``configs/tcs/cifar10_r56_to_r20_tcs.py``: CIFAR ResNet-56
  (64-d) -> ResNet-20 (64-d), k = 64, 32x32 images, batch 128, 10 classes.
* ``in1k``  -- ``configs/tcs/r50_to_r18_in1k_tcs.py`` / ``_online.py``:
  ResNet-50 (2048-d) -> ResNet-18 (512-d), k = 512, 224x224 images, a small
  batch (``--in1k-batch``, default 8), 1000 classes.

A step is what mmengine's train loop does per iteration: ``model.train_step
(batch, optim_wrapper)`` (data preprocessor on uint8 images, forward, loss
parsing, backward, ``SGD.step()`` with momentum and weight decay,
``zero_grad``) plus, for TCS, ``TCSTailoringHook``'s ``after_train_iter``.
Without ``--paired`` the reported time is the median over all timed steps
of all repeats (``--steps`` timed steps after ``--warmup`` untimed ones
per process; defaults 8 after 2 for cifar, 3 after 1 for in1k). Weights
are random (no checkpoint is loaded; timing does not depend on the
values); the online
teacher's BatchNorm statistics are calibrated on one random batch and the
coordinate system is fitted on features of the right scale, so that the
losses stay finite (see :func:`calibrate_bn`).

Every (setting, arm, repeat) runs in a fresh subprocess (this script
re-invoked with ``--setting S --arm A``); the repeats are interleaved
(``student, tcs_store, tcs_online, student, ...``). Memory on CPU is the
peak resident set size during the steps (sampled every 5 ms, and
``ru_maxrss`` once it exceeds its value before the steps) minus the RSS
right before the first step, taken after ``malloc_trim`` (weights
excluded; activations, gradients, optimizer state and allocator overhead
included), the largest over the repeats; on CUDA it is
``torch.cuda.max_memory_allocated`` after the steps minus the memory
allocated after the build.

Paired timing (``--paired N``; PERF_ARGS and GPU_ARGS use it): after the
per-arm processes of a setting, one more process builds all its arms and,
after ``--warmup`` untimed cycles, runs N cycles of one step per arm, the
orders balanced for carry-over (``_step_bench.cycle_order``), recording each step's wall time
(``time.perf_counter``, the CUDA queue drained) and the process's CPU
time (``time.process_time``). The target (store <= 1.10 x student) is then
judged on the median over the cycles of that cycle's store / student wall
ratio, which a slow phase of a shared machine moves far less than arms
timed in separate processes minutes apart (on 2 shared cores those
verdicts moved from 0.99 to 1.13 between two runs); the step-time
columns of the performance table are the paired run's per-arm medians,
its memory column still comes from the fresh per-arm processes (which then
only need a few steps).

Precision and layout: ``--amp bf16`` runs each ``train_step``'s forward
(data preprocessor, the online teacher, the student, the losses) under
``torch.autocast(bfloat16)`` through the optimizer wrapper's
``optim_context``, as mmengine's ``AmpOptimWrapper`` does (without its loss
scaler, which bfloat16 does not need); the backward and the SGD step run
outside it. ``--channels-last`` moves the model to ``channels_last`` and
makes the data preprocessor hand the batch on in it. ``--device cuda``:
models on the GPU, batches handed over as the DataLoader would (uint8 on
the CPU; the data preprocessor moves them), the queue drained after each
step.

Run (the numbers in docs/tcs.md; ~9 min on 2 busy CPU cores)::

    python benchmarks/tcs_step_time.py --threads 1
    python benchmarks/tcs_step_time.py --settings cifar --repeats 3
    # the CPU performance table's run (PERF_ARGS, ~2 min)
    python benchmarks/tcs_step_time.py --settings cifar --repeats 1 \
        --steps 2 --warmup 2 --paired 16
    python benchmarks/tcs_step_time.py --device cuda --in1k-batch 64
    # the GPU table's run (GPU_ARGS), in fp32 and in bf16
    python benchmarks/tcs_step_time.py --device cuda --settings in1k \
        --in1k-batch 128 --repeats 1 --steps 3 --warmup 3 --channels-last \
        --paired 10 --amp bf16

(``--threads 1``: on a small machine shared with other jobs, two OpenMP
threads per process fighting other processes for the cores made single
steps vary by up to 10x; one thread made them comparable.)
"""
import gc
import json
import os
import os.path as osp
import resource
import statistics
import sys
import threading
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _step_bench as sb  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARMS = ('student', 'tcs_store', 'tcs_online')
SETTINGS = ('cifar', 'in1k')
ARM_DESC = {
    'student': '(a) student alone, CE',
    'tcs_store': '(b) TCS, teacher features from the store',
    'tcs_online': '(c) TCS, teacher run online',
}
SETTING_DESC = {
    'cifar': 'CIFAR: ResNet-56 -> ResNet-20, 32 px',
    'in1k': 'ImageNet-like: ResNet-50 -> ResNet-18, 224 px',
}
TARGET = 1.10  # (b) <= 1.10 x (a)
# the arguments of benchmarks/performance_table.py: the CPU table, the GPU
# table (ImageNet setting at batch 128, once per precision) and the GPU
# script's CPU smoke run (benchmarks/gpu_check.sh --smoke)
# (the per-arm processes, for the memory column, run few steps; the step
# times and the verdict come from the paired run)
PERF_ARGS = ['--settings', 'cifar', '--repeats', '1', '--steps', '2',
             '--warmup', '2', '--paired', '16']
GPU_ARGS = ['--settings', 'in1k', '--in1k-batch', '128', '--repeats', '1',
            '--steps', '3', '--warmup', '3', '--channels-last', '--paired',
            '10']
SMOKE_ARGS = ['--settings', 'cifar', '--cifar-batch', '4', '--repeats', '1',
              '--steps', '1', '--warmup', '0', '--threads', '1', '--paired',
              '2']


def parse_args():
    p = sb.step_parser(
        __doc__, ARMS, steps=None, warmup=None,
        steps_help='timed steps per process (default: 8 cifar, 3 in1k)',
        warmup_help='untimed steps per process (default: 2 cifar, 1 in1k)')
    p.add_argument('--settings', default=','.join(SETTINGS))
    p.add_argument('--arms', default=','.join(ARMS))
    p.add_argument('--cifar-batch', type=int, default=128)
    p.add_argument('--in1k-batch', type=int, default=8)
    p.add_argument('--repeats', type=int, default=2,
                   help='fresh processes per (setting, arm), interleaved')
    sb.add_paired(p, 'setting', SETTINGS,
                  'also time the arms in one process per setting, steps '
                  'interleaved for N cycles (after --warmup cycles); step '
                  'times and the target are then taken from it, the '
                  'per-arm processes give the memory')
    args = sb.parse_paired(p)
    return args


# ------------------------------------------------------------ models
def torch_no_grad(fn):
    def wrapped(*args, **kwargs):
        import torch
        with torch.no_grad():
            return fn(*args, **kwargs)
    return wrapped


def _configs(setting):
    from mmengine.config import Config
    if setting == 'cifar':
        store = Config.fromfile(osp.join(REPO, 'configs', 'tcs',
                                         'cifar10_r56_to_r20_tcs.py'))
        kdep = Config.fromfile(osp.join(REPO, 'configs', 'kdep',
                                        'cifar10_r56_to_r20.py'))
        online = store.model.to_dict()
        online.update(teacher=kdep.model.teacher.to_dict(),
                      teacher_ckpt=None)
        return store, store.model.to_dict(), online, 32
    store = Config.fromfile(osp.join(REPO, 'configs', 'tcs',
                                     'r50_to_r18_in1k_tcs.py'))
    on = Config.fromfile(osp.join(REPO, 'configs', 'tcs',
                                  'r50_to_r18_in1k_tcs_online.py'))
    online = on.model.to_dict()
    online['teacher_ckpt'] = None  # random weights: timing only
    return store, store.model.to_dict(), online, 224


@torch_no_grad
def calibrate_bn(teacher, x):
    """Give a randomly initialised teacher the BatchNorm statistics of
    its inputs (one forward in train mode, cumulative averages), so that in
    eval mode its activations do not grow layer after layer (with the
    initial running statistics, mean 0 and variance 1, a random ResNet-56's
    features reach ~1e5 and the coordinate loss diverges). Timing is not
    affected; only the values become those of a sane network."""
    import torch.nn as nn
    bns = [m for m in teacher.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    backbone = teacher.backbone if hasattr(teacher, 'backbone') else teacher
    backbone.train()
    backbone(x)
    teacher.eval()


def build_model(setting, arm):
    """The arm's model (random weights) and its image size."""
    import torch
    from mmengine.registry import init_default_scope

    from kdep_mm.registry import MODELS
    cfg, store_model, online_model, size = _configs(setting)
    init_default_scope('mmpretrain')
    if arm == 'student':
        # the student's width as the TCS model infers it (the configs no
        # longer state student_channels)
        channels = MODELS.build(store_model).student_channels
        pre = dict(store_model['data_preprocessor'])
        pre['type'] = 'mmpretrain.ClsDataPreprocessor'
        model = MODELS.build(dict(
            type='mmpretrain.ImageClassifier',
            data_preprocessor=pre,
            backbone=store_model['student'],
            neck=dict(type='mmpretrain.GlobalAveragePooling'),
            head=dict(type='mmpretrain.LinearClsHead',
                      num_classes=store_model['num_classes'],
                      in_channels=channels,
                      loss=dict(type='mmpretrain.CrossEntropyLoss'))))
        model.init_weights()
        return model, size, cfg
    model = MODELS.build(store_model if arm == 'tcs_store' else
                         online_model)
    model.init_weights()
    # The coordinate system, fitted on features of the scale the arm's
    # teacher features have (timing only): the store arm's are standard
    # normal; the online arm's come from its random teacher on 8 random
    # images, jittered to the 2k + 8 rows a k-coordinate PCA needs (a
    # random deep teacher's features are far from unit scale, and a basis
    # fitted on other data would make the coordinate loss diverge).
    g = torch.Generator().manual_seed(0)
    c_t, n = model.teacher_channels, 2 * model.num_coords + 8
    if model.teacher is None:
        feats = torch.randn(n, c_t, generator=g)
    else:
        imgs = torch.randint(0, 256, (8, 3, size, size), generator=g)
        with torch.no_grad():
            x = model.data_preprocessor(dict(inputs=list(imgs.to(
                torch.uint8))), False)['inputs']
            calibrate_bn(model.teacher, x)
            f = model.teacher_features(x).double()
        jitter = torch.randn(n, c_t, generator=g).double() * f.std(0).mean()
        feats = f.repeat(-(-n // 8), 1)[:n] + 0.5 * jitter
    model.fit_coordinates(feats)
    return model, size, cfg


def make_batch(arm, model, batch, size, num_classes, seed=0):
    """A batch as mmengine's DataLoader hands it to ``train_step``: uint8
    CHW images and DataSamples (with ``teacher_feat`` numpy arrays for the
    store arm)."""
    import numpy as np
    import torch
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    inputs = [torch.randint(0, 256, (3, size, size), dtype=torch.uint8,
                            generator=g) for _ in range(batch)]
    samples = []
    for _ in range(batch):
        s = DataSample().set_gt_label(int(rng.integers(num_classes)))
        if arm == 'tcs_store':
            s.set_field(rng.standard_normal(model.teacher_channels).astype(
                np.float32), 'teacher_feat')
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def _rss_kib():
    """Current resident set size of this process, KiB (Linux)."""
    with open('/proc/self/statm') as f:
        pages = int(f.read().split()[1])
    return pages * (os.sysconf('SC_PAGE_SIZE') // 1024)


def release_free_memory():
    """Collect garbage and hand the allocator's free heap back to the OS
    (glibc ``malloc_trim``), so that the RSS before the first step does not
    count memory freed by the build (the PCA fit, the online teacher's
    calibration pass), which the steps would then reuse unseen."""
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


class RSSSampler:
    """Peak resident set size while the steps run: ``base`` is the RSS
    right before the first step, a daemon thread samples the RSS every
    ``interval`` s, and ``ru_maxrss`` covers a peak between two samples
    once it exceeds its value at the start (the build's own peak, e.g. the
    PCA fit, is not counted)."""

    def __init__(self, interval=0.005):
        self.base = _rss_kib()
        self.maxrss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval, ),
                                        daemon=True)
        self._thread.start()

    def _run(self, interval):
        while not self._stop.wait(interval):
            self.peak = max(self.peak, _rss_kib())

    def stop(self):
        self._stop.set()
        self._thread.join()
        peak = max(self.peak, _rss_kib())
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if maxrss > self.maxrss0:
            peak = max(peak, maxrss)
        return peak


def autocast_optim_wrapper(optimizer, device: str, amp: str):
    """An mmengine ``OptimWrapper`` whose ``optim_context`` (the context
    ``BaseModel.train_step`` runs the data preprocessor and the forward
    in) also enters ``_step_bench.autocast(device, amp)``."""
    import contextlib

    from mmengine.optim import OptimWrapper

    class AutocastOptimWrapper(OptimWrapper):

        def optim_context(self, model):
            stack = contextlib.ExitStack()
            stack.enter_context(super().optim_context(model))
            stack.enter_context(sb.autocast(device, amp))
            return stack

    return AutocastOptimWrapper(optimizer)


def to_channels_last(model) -> None:
    """``model`` and the batches its data preprocessor hands on in
    ``channels_last`` (a forward hook on the preprocessor)."""
    import torch
    model.to(memory_format=torch.channels_last)

    def hook(module, inputs, out):
        x = out['inputs']
        if x.dim() == 4:
            out = dict(out, inputs=x.contiguous(
                memory_format=torch.channels_last))
        return out

    model.data_preprocessor.register_forward_hook(hook)


def _setup(args, setting, arm):
    """The model of ``arm`` in ``setting`` (random weights, the same seed
    for every arm) with its SGD optimizer wrapper, and one training step
    as a closure (the batches cycled; for TCS the tailoring hook's
    ``after_train_iter`` included) that returns the step's loss."""
    import torch
    dev = torch.device(args.device)
    torch.manual_seed(0)
    model, size, cfg = build_model(setting, arm)
    model = model.to(dev)
    if args.channels_last:
        to_channels_last(model)
    model.train()
    batch = args.cifar_batch if setting == 'cifar' else args.in1k_batch
    opt_cfg = cfg.optim_wrapper.optimizer
    optim = autocast_optim_wrapper(torch.optim.SGD(
        model.parameters(), lr=opt_cfg.lr, momentum=opt_cfg.momentum,
        weight_decay=opt_cfg.weight_decay), args.device, args.amp)
    num_classes = cfg.model.num_classes
    # a few different batches, cycled (data loading is not timed)
    batches = [make_batch(arm, model, batch, size, num_classes, seed=s)
               for s in range(2)]
    tcs = arm != 'student'
    count = [0]

    def step():
        data = batches[count[0] % len(batches)]
        count[0] += 1
        log = model.train_step(data, optim)
        if tcs:
            model.after_train_iter()  # what TCSTailoringHook does
        return log['loss']

    return model, step, batch, size


def _defaults(args, setting):
    """``(steps, warmup)`` of ``setting``: the options, else 8 after 2
    (cifar), 3 after 1 (in1k)."""
    cifar = setting == 'cifar'
    steps = args.steps or (8 if cifar else 3)
    warmup = args.warmup if args.warmup is not None else (2 if cifar else 1)
    return steps, warmup


def run_one(args):
    import torch
    sb.check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    model, step, batch, size = _setup(args, args.setting, args.arm)
    steps, warmup = _defaults(args, args.setting)
    tcs = args.arm != 'student'
    n_trainable = sum(p.numel() for p in model.parameters())
    n_teacher = sum(p.numel() for p in model.teacher.parameters()) if (
        tcs and model.teacher is not None) else 0
    cuda = dev.type == 'cuda'
    sampler = None
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        release_free_memory()
        sampler = RSSSampler()
        base = sampler.base
    times, losses = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        losses.append(float(loss.detach()))
        if i >= warmup:
            times.append(dt)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        mem_mib, abs_mib = (peak - base) / 2**20, peak / 2**20
    else:
        peak = sampler.stop()
        mem_mib, abs_mib = (peak - base) / 1024, peak / 1024
    return dict(setting=args.setting, arm=args.arm, batch=batch, size=size,
                warmup=warmup, times=times, median_s=statistics.median(times),
                mem_mib=mem_mib, peak_abs_mib=abs_mib,
                model_params=n_trainable, teacher_params=n_teacher,
                losses=losses, threads=torch.get_num_threads(),
                torch=torch.__version__, device=args.device, amp=args.amp,
                channels_last=args.channels_last)


def run_paired(args):
    """All arms of ``args.setting`` in one process, their steps
    interleaved: after ``warmup`` untimed cycles, cycle ``c`` runs one
    step of each arm in the order ``sb.cycle_order(arms, c)``; each step's wall
    seconds (the CUDA queue drained) and process CPU seconds. A slow phase
    of a shared machine then hits the arms of one cycle alike, and the
    store / student ratio is judged per cycle (:func:`paired_ratio`)."""
    import torch
    sb.check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    arms = [a for a in args.arms.split(',') if a]
    built = {a: _setup(args, args.setting, a) for a in arms}
    _, warmup = _defaults(args, args.setting)
    cuda = args.device.startswith('cuda')
    losses = {a: [] for a in arms}
    for _ in range(warmup):
        for a in arms:
            losses[a].append(float(built[a][1]().detach()))
    times = {a: [] for a in arms}
    cpu = {a: [] for a in arms}
    for c in range(args.paired):
        for a in sb.cycle_order(arms, c):
            c0 = time.process_time()
            t0 = time.perf_counter()
            loss = built[a][1]()
            if cuda:
                torch.cuda.synchronize()
            times[a].append(time.perf_counter() - t0)
            cpu[a].append(time.process_time() - c0)
            losses[a].append(float(loss.detach()))
    _, _, batch, size = built[arms[0]]
    return dict(setting=args.setting, arms=arms, cycles=args.paired,
                warmup=warmup, times=times, cpu_times=cpu, losses=losses,
                batch=batch, size=size, threads=torch.get_num_threads(),
                torch=torch.__version__, device=args.device, amp=args.amp,
                channels_last=args.channels_last)


def paired_ratio(times: dict, num: str = 'tcs_store',
                 den: str = 'student') -> dict:
    """:func:`_step_bench.paired_ratio`, store / student by default."""
    return sb.paired_ratio(times, num, den)


# ------------------------------------------------------------ driver
def _child_args(args, setting) -> list:
    """The options an arm process and the paired process share."""
    cmd = ['--setting', setting, '--cifar-batch', args.cifar_batch,
           '--in1k-batch', args.in1k_batch, '--device', args.device,
           '--amp', args.amp]
    if args.channels_last:
        cmd.append('--channels-last')
    if args.warmup is not None:
        cmd += ['--warmup', args.warmup]
    if args.threads:
        cmd += ['--threads', args.threads]
    return cmd


def print_paired(paired: dict) -> None:
    """The paired runs' table: per setting and arm the median wall and CPU
    step time, and the per-cycle store / student ratio (median, min - max;
    wall and CPU)."""
    print()
    any_p = next(iter(paired.values()))
    print(f'Paired timing: one process per setting holding all arms, '
          f'{any_p["warmup"]} untimed then {any_p["cycles"]} timed cycles of '
          'one step per arm (carry-over-balanced orders); wall = '
          'time.perf_counter, CPU = time.process_time of the process.')
    print()
    print('| setting | batch | arm | step (s, median, wall) | step (s, '
          'median, CPU) | / (a) per cycle, wall: median | (min - max) | '
          '/ (a) per cycle, CPU: median |')
    print('|---|---|---|---|---|---|---|---|')
    for s, p in paired.items():
        for a in p['arms']:
            wall = statistics.median(p['times'][a])
            cpu = statistics.median(p['cpu_times'][a])
            if 'student' in p['times'] and a != 'student':
                pw = paired_ratio(p['times'], a)
                pc = paired_ratio(p['cpu_times'], a)
                rel = (f'{pw["median"]:.3f} | {pw["min"]:.3f} - '
                       f'{pw["max"]:.3f} | {pc["median"]:.3f}')
            else:
                rel = '- | - | -'
            print(f'| {SETTING_DESC[s]} | {p["batch"]} | {ARM_DESC[a]} | '
                  f'{wall:.3f} | {cpu:.3f} | {rel} |')


def perf_rows(data: dict, bench_args: list):
    """The performance table's rows (student first) and verdicts
    (``(what, measured, target, '<=', verdict)``, one per setting: TCS
    from the store / student step) of this benchmark's ``--json``
    ``data``, run with ``bench_args``. Step times and the ratio from the
    setting's paired run (``{setting}/paired``: all arms in one process,
    steps interleaved; the ratio is the median of the per-cycle ratios)
    when there is one, else the medians of the per-arm processes; memory
    and batch from the per-arm processes."""
    amp = sb.arg_value(bench_args, '--amp', 'fp32')
    rows, verdicts = [], []
    for s in [s for s in SETTINGS if f'{s}/student' in data]:
        label = ('CIFAR R56->R20, 32 px' if s == 'cifar' else
                 'ImageNet R50->R18, 224 px') + f', {amp}'
        r = {a: data[f'{s}/{a}']['summary'] for a in ARMS
             if f'{s}/{a}' in data}
        paired = data.get(f'{s}/paired')
        if paired:
            r = {a: dict(v, median_s=statistics.median(paired['times'][a]))
                 for a, v in r.items() if a in paired['times']}
        rs, v = sb.setting_rows(
            'TCS', label, r, (('student', 'student step alone (CE)'),
                              ('tcs_store', 'TCS, teacher features stored'),
                              ('tcs_online', 'TCS, teacher online')),
            'tcs_store', TARGET,
            f'TCS from the store / student step ({s}, {amp})')
        if v and paired:
            v = sb.judge(v[0], paired_ratio(paired['times'])['median'],
                         TARGET)
        rows += rs
        verdicts += [v] if v else []
    return rows, verdicts


def main():
    args = parse_args()
    if sb.run_worker_mode(args, run_paired, run_one):
        return

    settings = [s for s in args.settings.split(',') if s]
    arms = [a for a in args.arms.split(',') if a]
    runs, paired = {}, {}
    t_start = time.time()
    load0 = os.getloadavg()
    for s in settings:
        for rep in range(args.repeats):
            for a in arms:
                cmd = ['--arm', a, *_child_args(args, s)]
                if args.steps:
                    cmd += ['--steps', args.steps]
                t0 = time.time()
                res = sb.run_arm(__file__, cmd, REPO)
                runs.setdefault((s, a), []).append(res)
                print(f'# {s:5s} {a:10s} repeat {rep}: median '
                      f'{res["median_s"]:.3f} s/step (steps '
                      f'{[round(t, 3) for t in res["times"]]}), mem '
                      f'+{res["mem_mib"]:.0f} MiB, subprocess '
                      f'{time.time() - t0:.0f} s, load '
                      f'{os.getloadavg()[0]:.2f}', file=sys.stderr,
                      flush=True)
        if args.paired:
            cmd = ['--paired-run', '--paired', args.paired, '--arms',
                   ','.join(arms), *_child_args(args, s)]
            t0 = time.time()
            paired[s] = sb.run_arm(__file__, cmd, REPO)
            print(f'# {s:5s} paired: {args.paired} cycles, subprocess '
                  f'{time.time() - t0:.0f} s, load '
                  f'{os.getloadavg()[0]:.2f}', file=sys.stderr, flush=True)

    summary = {}
    for key, rs in runs.items():
        times = [t for r in rs for t in r['times']]
        summary[key] = dict(median_s=statistics.median(times),
                            min_s=min(times),
                            per_repeat=[r['median_s'] for r in rs],
                            mem_mib=max(r['mem_mib'] for r in rs),
                            batch=rs[0]['batch'], size=rs[0]['size'],
                            model_params=rs[0]['model_params'],
                            teacher_params=rs[0]['teacher_params'],
                            threads=rs[0]['threads'], torch=rs[0]['torch'])
    any_res = next(iter(summary.values()))
    cuda = args.device.startswith('cuda')
    mem_what = ('torch.cuda.max_memory_allocated - memory_allocated after '
                'build' if cuda else 'peak RSS during the steps - RSS before '
                'the first step, fresh process, largest over the repeats')
    print(f'Machine: {args.device}, {os.cpu_count()} CPU cores visible, '
          f'torch {any_res["torch"]}, {any_res["threads"]} threads, '
          f'{sb.setup_line(args)}; '
          f'warm-up steps {sorted({r["warmup"] for rs in runs.values() for r in rs})}, '
          f'timed steps per process '
          f'{sorted({len(r["times"]) for rs in runs.values() for r in rs})}, '
          f'{args.repeats} interleaved fresh '
          f'processes per arm; step = train_step (preprocess + forward + '
          f'backward + SGD step) + tailoring hook; random weights.')
    print(f'Memory column: {mem_what}.')
    print()
    print('| setting | batch | arm | step time (s, median) | '
          'step time (s, min) | per-process medians (s) | '
          'peak mem growth (MiB) | / (a) time (median) |')
    print('|---|---|---|---|---|---|---|---|')
    for s in settings:
        base = summary.get((s, 'student'))
        for a in arms:
            r = summary[(s, a)]
            rel = (f'{r["median_s"] / base["median_s"]:.3f}' if base
                   else '-')
            print(f'| {SETTING_DESC[s]} | {r["batch"]} | {ARM_DESC[a]} | '
                  f'{r["median_s"]:.3f} | {r["min_s"]:.3f} | '
                  f'{", ".join(f"{t:.3f}" for t in r["per_repeat"])} | '
                  f'{r["mem_mib"]:.0f} | {rel} |')
    if paired:
        print_paired(paired)
    print()
    for s in settings:
        if (s, 'student') in summary and (s, 'tcs_store') in summary:
            if s in paired:
                t = {a: statistics.median(v)
                     for a, v in paired[s]['times'].items()}
                ratio = paired_ratio(paired[s]['times'])['median']
                how = 'median per-cycle ratio of the paired run'
            else:
                t = {a: summary[(s, a)]['median_s'] for a in arms}
                ratio = t['tcs_store'] / t['student']
                how = 'ratio of the per-arm processes\' medians'
            ok = ratio <= TARGET
            line = (f'{s}: target "(b) store <= {TARGET:.2f} x (a) student '
                    f'step time" ({how}): {ratio:.3f} -> '
                    f'{"MET" if ok else "NOT MET"}')
            if 'tcs_online' in t:
                line += (f'; (c) online / (b) store = '
                         f'{t["tcs_online"] / t["tcs_store"]:.2f}')
            print(line)
    print(f'\n(total benchmark wall time {time.time() - t_start:.0f} s; '
          f'load average (1/5/15 min) at start '
          f'{"/".join(f"{v:.2f}" for v in load0)}, at end '
          f'{"/".join(f"{v:.2f}" for v in os.getloadavg())})')
    if args.json:
        out = {f'{s}/{a}': dict(summary=v, runs=runs[(s, a)])
               for (s, a), v in summary.items()}
        out.update({f'{s}/paired': p for s, p in paired.items()})
        with open(args.json, 'w') as fh:
            json.dump(out, fh, indent=1)


if __name__ == '__main__':
    main()
