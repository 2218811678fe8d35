"""KDEP's training step against the work a user would otherwise run, every
arm timed interleaved in one process.

Arms (same student, teacher, batch, data and thread count; random
weights, the SVD basis fitted on random features: time does not depend on
the values):

* ``student``    -- KDEP's student step alone: the student's pooled
  pre-ReLU feature, the SVD aligner + PTS on a given teacher feature (a
  random (N, C_t) tensor made at build time), the MSE, backward, SGD step.
* ``teacher``    -- the teacher's forward to its distilled feature, as
  ``KDEPDistiller.teacher_features`` runs it (no grad).
* ``kdep``       -- online KDEP: ``KDEPDistiller.loss`` (+ kdep_mm's
  ``parse_losses``, the NaN guard the Runner runs), backward, SGD step.
* ``kdep_store`` -- KDEP from the teacher store: the store-mode model of
  ``configs/kdep/*_store.py`` (``teacher=None``), the teacher feature in
  each data sample's ``teacher_feat`` (a float32 array, as
  ``ApplyStoredView`` + ``PackInputs`` give it).
* ``fitnets`` / ``logit_kd`` -- kdep_mm's FitNets (``KDEPDistiller`` with
  ``ProjectorAligner`` + ``FeatureMSELoss``) and logit KD
  (``LogitKDDistiller`` + ``KDLoss``, T = 4), built as the study's arms
  ``configs/study/pretrain/e_fitnets_10.py`` and ``d_logit_kd_10.py``.
* ``plain``      -- the minimal plain PyTorch KDEP loop
  (``benchmarks/peers/plain_loop.py``), the floor of framework overhead.
* ``td_fitnets`` / ``td_kd`` -- torchdistill 1.1.5's FitNets and KD
  distillation boxes (``benchmarks/peers/torchdistill_arms.py``), when
  ``tools/setup_peers.sh`` has installed it into ``.peers/`` (else skipped,
  with a line saying so).

Method. All arms are built in one process; each cycle runs one step of every
arm (in orders balanced for carry-over: ``_step_bench.cycle_order``, a Williams
design), after ``--warmup`` untimed cycles; ``--steps`` (= ``--cycles``) timed
cycles. Per step: wall seconds (the CUDA queue drained) and the process's CPU
seconds. The clock judged is CPU time on CPU (one torch thread by default: the
cost on an idle core, which drifts less with the load of a shared machine) and
wall time on CUDA. A ratio with a target is the median over cycles of that
cycle's ratio, so a slow phase of the machine moves both sides.

Memory: on CPU a fresh process per arm (this script with ``--arm``) runs
``--memory-steps`` steps and reports its peak RSS growth over the RSS
after the build (the high-water mark reset through
``/proc/self/clear_refs`` after trimming the freed heap: ``ru_maxrss``
would keep the build's peak); on CUDA, after the cycles in the same
process, ``max_memory_allocated`` during an arm's steps minus the memory
allocated before them. The ``teacher`` arm's peak is the teacher's
activations of one batch under no_grad.

Data (``--data``): ``tensors`` = pre-made batches (step cost alone);
``jpeg`` = the real CIFAR-10 JPEG pipeline of the setting's config
(``python benchmarks/shared_data.py cifar10_jpeg.tar.gz`` unpacks it):
the DataLoader alone in images/s for each ``--workers`` count (persistent
workers, no pinned memory on CPU), then the online KDEP step fed by the
config's own loader (its ``num_workers``) and by one with no workers,
with the data preprocessor, in wall seconds. The output says whether the loader is the bottleneck.

Precision (``--amp fp32,bf16``): in bf16 the teacher runs under
``inference_mode`` and autocast, the student's forward under autocast, and
the aligner and losses in float32 (their inputs cast with ``.float()``);
with both precisions every arm runs in both, interleaved in the same
cycles. ``--channels-last``: models and batches in channels_last.

Targets (issue 18): online KDEP <= 1.05 x (student + teacher); KDEP from
the store <= 1.05 x student; kdep_mm's throughput >= 0.95 x the plain
loop's (KDEP) and >= torchdistill's (FitNets, KD); each kdep_mm KD arm's
peak memory <= 1.1 x (student + teacher forward); bf16 KDEP >= 1.8 x fp32
(throughput), when both run.

Settings: ``cifar`` = ResNet-56 -> ResNet-20 at 32 px, batch 64
(``configs/kdep/cifar10_r56_to_r20.py``); ``in1k`` = ResNet-50 ->
ResNet-18 at 224 px (``configs/kdep/r50_to_r18_in1k.py``), batch 8 on CPU,
128 on CUDA.

Run (the performance table's CPU arguments, ``PERF_ARGS``: 264 s measured on
2 cores shared with other work, load 5 to 8; less on an idle machine)::

    python benchmarks/kdep_step_time.py --settings cifar --data tensors,jpeg
    python benchmarks/kdep_step_time.py --settings cifar,in1k --device cuda \\
        --amp fp32,bf16 --channels-last          # GPU_ARGS
"""
import json
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
import _step_bench as sb  # noqa: E402

REPO = osp.dirname(HERE)
ARMS = ('student', 'teacher', 'kdep', 'kdep_store', 'fitnets', 'logit_kd',
        'plain', 'td_fitnets', 'td_kd')
TD_ARMS = ('td_fitnets', 'td_kd')
KDMM_KD_ARMS = ('kdep', 'kdep_store', 'fitnets', 'logit_kd')
SETTINGS = dict(
    cifar=dict(config='configs/kdep/cifar10_r56_to_r20.py',
               store_config='configs/kdep/cifar10_r56_to_r20_store.py',
               img=32, batch=64, batch_cuda=64, num_classes=10,
               desc='CIFAR R56->R20, 32 px'),
    in1k=dict(config='configs/kdep/r50_to_r18_in1k.py',
              store_config='configs/kdep/r50_to_r18_in1k_store.py',
              img=224, batch=8, batch_cuda=128, num_classes=1000,
              desc='IN-1k R50->R18, 224 px'),
)
ARM_DESC = {
    'student': 'student step alone (KDEP, teacher feature given)',
    'teacher': 'teacher forward alone (no grad)',
    'kdep': 'kdep_mm online KDEP',
    'kdep_store': 'kdep_mm KDEP from the store',
    'fitnets': 'kdep_mm FitNets',
    'logit_kd': 'kdep_mm logit KD',
    'plain': 'plain PyTorch KDEP loop',
    'td_fitnets': 'torchdistill FitNets',
    'td_kd': 'torchdistill KD',
}
# the targets: (what, kind, arms, target, comparison); kind 'slow' =
# median per-cycle time ratio arms[0] / sum(arms[1:]); 'thru' = median
# per-cycle throughput ratio of arms[0] over arms[1]
TARGETS = (
    ('online KDEP / (student + teacher forward)', 'slow',
     ('kdep', 'student', 'teacher'), 1.05, '<='),
    ('KDEP from the store / student', 'slow', ('kdep_store', 'student'),
     1.05, '<='),
    ('kdep_mm KDEP / plain loop, images/s', 'thru', ('kdep', 'plain'), 0.95,
     '>='),
    ('kdep_mm FitNets / torchdistill FitNets, images/s', 'thru',
     ('fitnets', 'td_fitnets'), 1.0, '>='),
    ('kdep_mm logit KD / torchdistill KD, images/s', 'thru',
     ('logit_kd', 'td_kd'), 1.0, '>='),
)
MEM_TARGET = 1.1
BF16_TARGET = 1.8
PERF_ARGS = ['--settings', 'cifar', '--steps', '18', '--warmup', '2',
             '--data', 'tensors,jpeg']
GPU_ARGS = ['--settings', 'cifar,in1k', '--device', 'cuda', '--amp',
            'fp32,bf16', '--channels-last', '--steps', '20', '--warmup', '5',
            '--threads', '0', '--data', 'tensors']


# the GPU script's CPU smoke run: every arm, one cycle, no memory processes
# (on CUDA the memory readings are taken in the same process)
SMOKE_ARGS = ['--settings', 'cifar', '--steps', '1', '--warmup', '0',
              '--memory-steps', '0', '--data', 'tensors']


def gpu_args() -> list:
    """The arguments of the GPU table's run (``GPU_ARGS``)."""
    return list(GPU_ARGS)


def parse_args(argv=None):
    p = sb.step_parser(
        __doc__, ARMS, steps=8, warmup=2, threads=1,
        steps_help='timed cycles (one step of every arm each; medians '
        'reported) [8]',
        warmup_help='untimed cycles first [2]',
        threads_help='torch.set_num_threads (0: torch default) [1]')
    p.add_argument('--cycles', dest='steps', type=int,
                   help='the same as --steps')
    for action in p._actions:  # --amp takes a list here
        if action.dest == 'amp':
            action.choices = None
            action.help = ('comma-separated precisions of the steps, from '
                           f'{sb.AMP_MODES}; both: the bf16 target [fp32]')
    p.add_argument('--settings', default='cifar',
                   help=f'comma-separated, from {list(SETTINGS)} [cifar]')
    p.add_argument('--arms', default=','.join(ARMS),
                   help='comma-separated subset of the arms [all]')
    p.add_argument('--data', default='tensors',
                   help='comma-separated: tensors (pre-made batches), jpeg '
                   '(the real JPEG loader, CIFAR only) [tensors]')
    p.add_argument('--workers', default='0,1,2',
                   help='DataLoader worker counts timed alone with '
                   "--data jpeg, the config's own added [0,1,2]")
    p.add_argument('--loader-batches', type=int, default=20,
                   help='batches per loader / loader-fed step timing [20]')
    p.add_argument('--memory-steps', type=int, default=2,
                   help='steps of the fresh process per arm that reads '
                   'peak memory (0: no memory column) [2]')
    p.add_argument('--setting', choices=list(SETTINGS),
                   help='(internal) the setting of --arm')
    args = p.parse_args(argv)
    args.amps = [a for a in args.amp.split(',') if a]
    bad = [a for a in args.amps if a not in sb.AMP_MODES]
    if bad or not args.amps:
        p.error(f'--amp: {bad or args.amp!r} not in {sb.AMP_MODES}')
    args.settings_list = [s for s in args.settings.split(',') if s]
    bad = [s for s in args.settings_list if s not in SETTINGS]
    if bad or not args.settings_list:
        p.error(f'--settings: unknown {bad}; choose from {list(SETTINGS)}')
    args.arm_list = [a for a in args.arms.split(',') if a]
    bad = [a for a in args.arm_list if a not in ARMS]
    if bad or not args.arm_list:
        p.error(f'--arms: unknown {bad}; choose from {list(ARMS)}')
    args.data_list = [d for d in args.data.split(',') if d]
    bad = [d for d in args.data_list if d not in ('tensors', 'jpeg')]
    if bad or not args.data_list:
        p.error(f'--data: unknown {bad}; choose from tensors, jpeg')
    try:
        args.worker_list = [int(w) for w in args.workers.split(',') if w]
    except ValueError:
        p.error(f'--workers: integers, got {args.workers!r}')
    if args.steps < 1 or args.warmup < 0 or args.memory_steps < 0:
        p.error('--steps must be >= 1, --warmup and --memory-steps >= 0')
    return args


# ------------------------------------------------------------------ ratios
def cycle_ratios(times: dict, kind: str, arms) -> list:
    """One ratio per cycle: ``'slow'`` = t[arms[0]] / sum(t[a] for a in
    arms[1:]) (time: lower is better); ``'thru'`` = t[arms[1]] / t[arms[0]]
    (throughput of arms[0] over that of arms[1]: higher is better).
    ``times`` maps arm -> per-cycle seconds, aligned by cycle."""
    n = min(len(times[a]) for a in arms)
    if kind == 'slow':
        return [times[arms[0]][i] / sum(times[a][i] for a in arms[1:])
                for i in range(n)]
    if kind == 'thru':
        return [times[arms[1]][i] / times[arms[0]][i] for i in range(n)]
    raise ValueError(f'kind must be slow or thru, got {kind!r}')


def memory_ratio(mem: dict, arm: str) -> float:
    """Peak memory of ``arm`` / (student's + teacher forward's); NaN when
    that sum is not positive (no verdict then)."""
    base = mem['student'] + mem['teacher']
    return mem[arm] / base if base > 0 else float('nan')


def judge_cycles(what: str, per: list, target: float, cmp: str) -> tuple:
    """The verdict on the median of the per-cycle ratios ``per``, ``what``
    naming its distribution-free 95% interval (:func:`_step_bench.median_ci`):
    a verdict whose interval straddles the target is within the noise."""
    lo, hi = sb.median_ci(per)
    return sb.judge(f'{what} (95% CI of the median {lo:.3f}-{hi:.3f})',
                    statistics.median(per), target, cmp)


def setting_verdicts(sd: dict) -> list:
    """The verdicts of one setting's results ``sd`` (see :func:`run_setting`)
    as ``(what, measured, target, comparison, verdict)``; a target whose
    arms did not run is left out."""
    out = []
    clock = sd['clock']
    for amp in sd['amps']:
        times = {a: sd['arms'][f'{a}/{amp}'][clock] for a in sd['arm_list']
                 if f'{a}/{amp}' in sd['arms']}
        for what, kind, arms, target, cmp in TARGETS:
            if all(a in times for a in arms):
                out.append(judge_cycles(f'{sd["desc"]}, {amp}: {what}',
                                        cycle_ratios(times, kind, arms),
                                        target, cmp))
        mem = {a: sd['arms'][f'{a}/{amp}'].get('mem_mib')
               for a in times}
        if mem.get('student') is not None and mem.get('teacher') is not None:
            for a in KDMM_KD_ARMS:
                m = (memory_ratio(mem, a) if mem.get(a) is not None
                     else float('nan'))
                if m == m:  # not NaN
                    out.append(sb.judge(
                        f'{sd["desc"]}, {amp}: peak memory {a} / (student + '
                        'teacher forward)', m, MEM_TARGET, '<='))
    if 'fp32' in sd['amps'] and 'bf16' in sd['amps'] and \
            'kdep/fp32' in sd['arms'] and 'kdep/bf16' in sd['arms']:
        per = cycle_ratios({'fp32': sd['arms']['kdep/fp32'][clock],
                            'bf16': sd['arms']['kdep/bf16'][clock]}, 'thru',
                           ('bf16', 'fp32'))
        out.append(judge_cycles(f'{sd["desc"]}: bf16 KDEP / fp32 KDEP, '
                                'images/s', per, BF16_TARGET, '>='))
    return out


# ------------------------------------------------------------------ models
class Built:
    """What the arms of one setting share, built on first use: the config,
    the online KDEP model (its aligner fitted on random features), the
    batch and its stored-view data samples."""

    def __init__(self, setting: str, device: str, channels_last: bool):
        import torch
        from mmengine.config import Config

        import kdep_mm  # noqa: F401
        self.s = SETTINGS[setting]
        self.setting, self.device = setting, torch.device(device)
        self.cuda = self.device.type == 'cuda'
        self.fmt = sb.memory_format(channels_last)
        self.cfg = Config.fromfile(osp.join(REPO, self.s['config']))
        self.batch = self.s['batch_cuda' if self.cuda else 'batch']
        torch.manual_seed(0)
        self.x = torch.randn(self.batch, 3, self.s['img'], self.s['img'],
                             device=self.device).to(memory_format=self.fmt)
        self._kdep = None
        self.skip_reason = None  # why an arm was skipped (torchdistill's)

    def model_dict(self, **changes) -> dict:
        m = self.cfg.model.to_dict()
        m['teacher_ckpt'] = None  # random weights: timing only
        m.update(changes)
        return m

    def build(self, m: dict):
        import torch

        from kdep_mm.registry import MODELS
        torch.manual_seed(0)
        model = MODELS.build(m).to(self.device)
        model.to(memory_format=self.fmt)
        model.train()
        return model

    @property
    def kdep(self):
        """The online KDEP model, its basis fitted on random features."""
        if self._kdep is None:
            import torch
            self._kdep = self.build(self.model_dict())
            c_t = self._kdep.aligner.teacher_channels
            torch.manual_seed(1)
            self._kdep.aligner.fit(torch.randn(c_t + 64, c_t,
                                               device=self.device))
        return self._kdep

    def teacher_feat(self):
        """A stand-in f_t (N, C_t) for the arms that take it as given
        (random: time and memory do not depend on its values, and no
        teacher forward runs before a memory reading)."""
        import torch
        torch.manual_seed(2)
        return torch.randn(self.batch, self.kdep.aligner.teacher_channels,
                           device=self.device)

    def stored_samples(self):
        """One data sample per image with its stored view's feature, as
        ``ApplyStoredView`` + ``PackInputs(algorithm_keys=('teacher_feat',
        ))`` give it (a float32 numpy array)."""
        from mmpretrain.structures import DataSample

        from kdep_mm.utils.store_keys import TEACHER_FEAT
        feats = self.teacher_feat().float().cpu().numpy()
        out = []
        for f in feats:
            s = DataSample()
            s.set_field(f.copy(), TEACHER_FEAT)
            out.append(s)
        return out

    def copies(self):
        """Fresh student and teacher modules with the KDEP model's weights
        (and no kdep_mm hooks): the peers' networks."""
        import torch

        from kdep_mm.registry import MODELS
        m = self.model_dict()
        torch.manual_seed(0)
        student = MODELS.build(m['student'])
        student.load_state_dict(self.kdep.student.state_dict())
        teacher = MODELS.build(m['teacher'])
        teacher.load_state_dict(self.kdep.teacher.state_dict())
        student.to(self.device, memory_format=self.fmt)
        teacher.to(self.device, memory_format=self.fmt)
        student.train()  # (mmpretrain's ResNet.train() returns None)
        return student, teacher


# every arm's SGD (momentum 0.9): a small rate, since the same random batch
# every step drove lr 0.01 to a NaN loss within a few dozen steps; the work
# of a step does not depend on the rate
LR = 1e-4


def _sgd(params):
    import torch
    return torch.optim.SGD(params, lr=LR, momentum=0.9)


def kdmm_losses(model, kind, x, samples, amp, device) -> dict:
    """kdep_mm's losses of batch ``x``: in fp32 ``model.loss`` exactly as
    the Runner calls it; in bf16 the same computation with the forwards
    under autocast (the teacher under inference mode) and the aligner and
    loss in float32 (``kind``: ``'logit'`` for ``LogitKDDistiller``, else
    a ``KDEPDistiller``)."""
    import torch
    if amp == 'fp32':
        return model.loss(x, samples)
    with sb.autocast(str(device), amp):
        if kind == 'logit':
            with torch.inference_mode():
                t = model.teacher_logits(x)
            s = model.student_logits(x)
        else:
            if model.frozen_teacher is None:
                t = model._teacher_feat(x, samples)
            else:
                with torch.inference_mode():
                    t = model.teacher_features(x)
            s = model.student_features(x)
    t = t.float().clone()  # an ordinary tensor out of inference mode
    if kind == 'logit':
        return dict(loss_kd=model.distill_loss(s.float(), t))
    s, target = model.aligner(s.float(), t)
    return dict(loss_kd=model.distill_loss(s, target))


def _kdmm_step(model, kind, x, samples, amp, device, opt):
    """One kdep_mm training step: :func:`kdmm_losses`, kdep_mm's
    ``parse_losses`` (its NaN guard), backward, SGD step."""
    loss, _ = model.parse_losses(
        kdmm_losses(model, kind, x, samples, amp, device))
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def make_arm(b: Built, arm: str, amp: str):
    """The step function of ``arm`` in precision ``amp`` (None: skipped,
    the reason printed)."""
    import torch
    x, dev = b.x, b.device
    if arm == 'teacher':
        model = b.kdep

        def step():
            if amp == 'fp32':
                with torch.no_grad():
                    model.teacher_features(x)
            else:
                with torch.inference_mode(), sb.autocast(str(dev), amp):
                    model.teacher_features(x)
        return step
    if arm == 'student':
        model = b.build(b.model_dict())
        model.aligner.load_state_dict(b.kdep.aligner.state_dict())
        t_feat = b.teacher_feat()
        opt = _sgd(model.parameters())

        def step():
            with sb.autocast(str(dev), amp):
                f_s = model.student_features(x)
            s, target = model.aligner(f_s.float(), t_feat)
            loss, _ = model.parse_losses(
                dict(loss_kd=model.distill_loss(s, target)))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return step
    if arm in ('kdep', 'kdep_store', 'fitnets', 'logit_kd'):
        samples = None
        kind = 'logit' if arm == 'logit_kd' else 'feat'
        if arm == 'kdep':
            model = b.build(b.model_dict())
            model.aligner.load_state_dict(b.kdep.aligner.state_dict())
        elif arm == 'kdep_store':
            from mmengine.config import Config
            m = Config.fromfile(osp.join(REPO, b.s['store_config']))
            m = m.model.to_dict()
            model = b.build(m)
            model.aligner.load_state_dict(b.kdep.aligner.state_dict())
            samples = b.stored_samples()
        elif arm == 'fitnets':
            model = b.build(fitnets_model(b.model_dict()))
        else:
            model = b.build(logit_kd_model(b.model_dict(),
                                           b.s['num_classes']))
        opt = _sgd(model.parameters())
        return lambda: _kdmm_step(model, kind, x, samples, amp, dev, opt)
    if arm == 'plain':
        from peers.plain_loop import PlainKDEP
        student, teacher = b.copies()
        k = b.kdep
        loop = PlainKDEP(student, teacher.backbone, k.student_feature,
                         k.teacher_feature, k.aligner.mean, k.aligner.basis,
                         k.aligner.temperature, k.aligner.power,
                         k.distill_loss.loss_weight, lr=LR, amp=amp)
        return lambda: loop.step(x)
    if arm in TD_ARMS:
        from peers import torchdistill_arms as tda
        td, why = tda.load()
        if td is None:
            print(f'# {why}', file=sys.stderr, flush=True)
            b.skip_reason = why
            return None
        student, teacher = b.copies()
        if arm == 'td_fitnets':
            box = tda.fitnets_box(
                teacher.backbone, student,
                teacher.backbone.res_layers[-1], student.res_layers[-1],
                b.kdep.aligner.teacher_channels,
                b.kdep.aligner.student_channels, dev, lr=LR)
        else:
            head = torch.nn.Linear(b.kdep.aligner.student_channels,
                                   b.s['num_classes']).to(dev)
            box = tda.kd_box(teacher, tda.StudentClassifier(student, head),
                             4., dev, lr=LR)
        return lambda: tda.box_step(box, x, amp)
    raise ValueError(f'--arm: unknown arm {arm!r}')


def fitnets_model(kdep_model: dict) -> dict:
    """kdep_mm's FitNets (study arm e): the KDEP model with a learned
    linear projector (``ProjectorAligner``, student -> teacher width) on the
    raw teacher feature and ``FeatureMSELoss`` of weight 1."""
    m = dict(kdep_model)
    m['aligner'] = dict(type='kdep_mm.ProjectorAligner',
                        student_channels=None, teacher_channels=None)
    m['distill_loss'] = dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.)
    return m


def logit_kd_model(kdep_model: dict, num_classes: int) -> dict:
    """kdep_mm's logit KD (study arm d): ``LogitKDDistiller`` (student +
    linear head) with ``KDLoss`` at T = 4, the same student and teacher."""
    keep = ('data_preprocessor', 'student', 'teacher', 'teacher_ckpt',
            'teacher_revise_keys')
    m = {k: kdep_model[k] for k in keep if k in kdep_model}
    m.update(type='kdep_mm.LogitKDDistiller', num_classes=num_classes,
             distill_loss=dict(type='kdep_mm.KDLoss', temperature=4.,
                               loss_weight=1.))
    return m


# --------------------------------------------------------------- running
def _setup_torch(args):
    import torch
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel('ERROR')
    sb.check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch


def _proc_status_kib(field: str) -> int:
    with open('/proc/self/status') as fh:
        for line in fh:
            if line.startswith(field + ':'):
                return int(line.split()[1])
    raise KeyError(field)


def cpu_peak_growth_mib(step, steps: int):
    """Peak RSS growth (MiB) of ``steps`` calls of ``step`` over the RSS
    right before them: the freed heap handed back to the OS
    (``malloc_trim``), the process's RSS high-water mark reset (Linux
    ``/proc/self/clear_refs`` = 5), then ``VmHWM - VmRSS`` from
    ``/proc/self/status``. None where the mark cannot be reset (then
    ``ru_maxrss``, a high-water mark since the process started, would
    include the build)."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as fh:
            fh.write('5')
    except OSError:
        return None
    base = _proc_status_kib('VmRSS')
    for _ in range(steps):
        step()
    return (_proc_status_kib('VmHWM') - base) / 1024


def cuda_peak_growth_mib(step, steps: int) -> float:
    """``max_memory_allocated`` during ``steps`` calls of ``step`` minus
    the memory allocated before them (MiB), the peak statistics reset
    first: on CUDA the arms' readings need no fresh process (what the
    other arms hold is allocated before and counted in neither)."""
    import torch
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def run_one(args) -> dict:
    """(internal, fresh process) peak memory of one arm's steps: on CPU
    :func:`cpu_peak_growth_mib`, on CUDA :func:`cuda_peak_growth_mib`."""
    _setup_torch(args)
    b = Built(args.setting, args.device, args.channels_last)
    step = make_arm(b, args.arm, args.amps[0])
    if step is None:
        return dict(arm=args.arm, skipped=True)
    if b.cuda:
        mem = cuda_peak_growth_mib(step, args.memory_steps)
    else:
        mem = cpu_peak_growth_mib(step, args.memory_steps)
    return dict(arm=args.arm, setting=args.setting, amp=args.amps[0],
                mem_mib=mem)


def interleaved(steps: dict, warmup: int, cycles: int, cuda: bool) -> dict:
    """Run ``steps`` (key -> step function) interleaved: per cycle one step
    of each, in the order ``sb.cycle_order(keys, c)``; ``warmup`` untimed
    cycles first. key -> dict(wall=[...], cpu=[...]) per timed cycle."""
    keys = list(steps)
    out = {k: dict(wall=[], cpu=[]) for k in keys}
    for c in range(warmup + cycles):
        for k in sb.cycle_order(keys, c):
            c0 = time.process_time()
            dt = sb.timed_call(steps[k], cuda)
            if c >= warmup:
                out[k]['wall'].append(dt)
                out[k]['cpu'].append(time.process_time() - c0)
    return out


def loader_numbers(b: Built, args) -> dict:
    """--data jpeg: the DataLoader alone (images/s per worker count) and
    the online KDEP step fed by the config's own loader and by one with no
    workers (wall seconds, data preprocessor included)."""
    import copy

    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    init_default_scope(b.cfg.get('default_scope', 'mmpretrain'))
    root = b.cfg.train_dataloader.dataset.data_root
    if not osp.isabs(root):
        root = osp.join(REPO, root)
    if not osp.isdir(osp.join(root, 'train')):
        raise SystemExit(
            f'--data jpeg: no JPEG data at {root} (setting {b.setting}); '
            'for CIFAR run `python benchmarks/shared_data.py '
            'cifar10_jpeg.tar.gz`, or use --data tensors')
    n = args.loader_batches

    def loader(workers):
        cfg = copy.deepcopy(b.cfg.train_dataloader.to_dict())
        cfg['dataset']['data_root'] = root
        cfg.update(batch_size=b.batch, num_workers=workers,
                   persistent_workers=workers > 0, pin_memory=b.cuda)
        return Runner.build_dataloader(cfg, seed=0)

    def batches(dl, count):
        it = iter(dl)
        next(it)  # worker start-up and the first batch untimed
        t0 = time.perf_counter()
        for _ in range(count):
            next(it)
        return count * b.batch / (time.perf_counter() - t0)

    out = dict(loader_ips={}, config_workers=b.cfg.train_dataloader.get(
        'num_workers', 0), config_persistent=b.cfg.train_dataloader.get(
            'persistent_workers', False))
    # the config's own worker count always among those timed alone
    for w in dict.fromkeys(args.worker_list + [out['config_workers']]):
        out['loader_ips'][str(w)] = batches(loader(w), n)
    model = b.build(b.model_dict())
    model.aligner.load_state_dict(b.kdep.aligner.state_dict())
    opt = _sgd(model.parameters())
    amp = args.amps[0]
    out['fed'] = {}
    held = {}

    def fed_step():
        data = model.data_preprocessor(next(held['it']), True)
        _kdmm_step(model, 'feat', data['inputs'].to(memory_format=b.fmt),
                   data['data_samples'], amp, b.device, opt)

    for w in dict.fromkeys([out['config_workers'], 0]):
        held['dl'] = loader(w)
        held['it'] = iter(held['dl'])
        fed_step()  # start-up untimed
        wall = statistics.median(
            [sb.timed_call(fed_step, b.cuda) for _ in range(n)])
        out['fed'][str(w)] = dict(wall_s=wall, ips=b.batch / wall)
        held.clear()  # the workers shut down before the next loader
    cw = out['fed'][str(out['config_workers'])]
    out['fed_step_wall_s'], out['fed_step_ips'] = cw['wall_s'], cw['ips']
    return out


def run_setting(setting: str, args) -> dict:
    """All arms of one setting: the interleaved cycles, then each arm's
    memory (on CPU in a fresh process per arm, on CUDA in this one after
    the cycles), then the loader with --data jpeg."""
    torch = _setup_torch(args)
    b = Built(setting, args.device, args.channels_last)
    steps, skipped = {}, []
    for amp in args.amps:
        for arm in args.arm_list:
            fn = make_arm(b, arm, amp)
            if fn is None:
                skipped.append(arm)
            else:
                steps[f'{arm}/{amp}'] = fn
    t0 = time.time()
    res = {}
    if 'tensors' in args.data_list:
        res = interleaved(steps, args.warmup, args.steps, b.cuda)
    print(f'# {setting}: {len(steps)} arms x {args.steps} cycles in '
          f'{time.time() - t0:.0f} s', file=sys.stderr, flush=True)
    arm_list = [a for a in args.arm_list if a not in skipped]
    if 'tensors' in args.data_list and args.memory_steps and b.cuda:
        for key, fn in steps.items():
            res[key]['mem_mib'] = cuda_peak_growth_mib(fn, args.memory_steps)
    del steps
    if 'tensors' in args.data_list and args.memory_steps and not b.cuda:
        for amp in args.amps:
            for arm in arm_list:
                r = sb.run_arm(__file__, [
                    '--arm', arm, '--setting', setting, '--memory-steps',
                    args.memory_steps, '--device', args.device, '--threads',
                    args.threads, '--amp', amp
                ] + (['--channels-last'] if args.channels_last else []), REPO)
                res[f'{arm}/{amp}']['mem_mib'] = r['mem_mib']
    for r in res.values():
        r['median_wall_s'] = statistics.median(r['wall'])
        r['median_cpu_s'] = statistics.median(r['cpu'])
    sd = dict(desc=SETTINGS[setting]['desc'], batch=b.batch,
              amps=list(args.amps), arm_list=arm_list, skipped=sorted(
                  set(skipped)), skip_reason=b.skip_reason, arms=res,
              clock='wall' if b.cuda else 'cpu', threads=torch.get_num_threads())
    if 'jpeg' in args.data_list:
        sd['loader'] = loader_numbers(b, args)
    return sd


# ---------------------------------------------------------------- output
def _fmt_mem(v):
    return '' if v is None else f'{v:.0f}'


def arm_rows(sd: dict) -> list:
    """(arm key, label, step s on the judged clock, wall s, images/s, mem,
    x student) of one setting, in arm order."""
    out = []
    clock = 'median_cpu_s' if sd['clock'] == 'cpu' else 'median_wall_s'
    for amp in sd['amps']:
        base = sd['arms'].get(f'student/{amp}')
        for arm in sd['arm_list']:
            r = sd['arms'].get(f'{arm}/{amp}')
            if r is None:
                continue
            rel = r[clock] / base[clock] if base else float('nan')
            out.append((f'{arm}/{amp}', f'{ARM_DESC[arm]} ({amp})', r[clock],
                        r['median_wall_s'], sd['batch'] / r[clock],
                        r.get('mem_mib'), rel))
    return out


def report(data: dict) -> str:
    """The markdown tables of a run's results ``data``."""
    lines = [data['meta']['line'], '']
    for name, sd in data['settings'].items():
        lines += [f'**{sd["desc"]}, batch {sd["batch"]}** (step clock: '
                  f'{sd["clock"]} s)', '']
        if sd['skipped']:
            lines += [f'Skipped: {", ".join(sd["skipped"])} '
                      f'({sd.get("skip_reason")})', '']
        if sd['arms']:
            lines += ['| arm | step (s, median) | wall (s, median) | '
                      'images/s | peak mem (MiB) | x student step |',
                      '|---|---:|---:|---:|---:|---:|']
            for _, label, t, w, ips, mem, rel in arm_rows(sd):
                lines.append(f'| {label} | {t:.3f} | {w:.3f} | {ips:.1f} | '
                             f'{_fmt_mem(mem)} | {rel:.2f} |')
            lines.append('')
        if 'loader' in sd:
            ld = sd['loader']
            lines += ['| JPEG loader alone, workers | images/s |',
                      '|---|---:|']
            for w, ips in ld['loader_ips'].items():
                lines.append(f'| {w} | {ips:.0f} |')
            lines.append('')
            for w, f in ld['fed'].items():
                lines.append(
                    f'Online KDEP fed by the JPEG loader with {w} workers'
                    + (' (the config\'s, persistent_workers='
                       f'{ld["config_persistent"]})'
                       if w == str(ld['config_workers']) else '')
                    + f': {f["wall_s"]:.3f} s wall per step, '
                    f'{f["ips"]:.1f} images/s.')
            lines.append(loader_verdict(sd))
            lines.append('')
    vs = [v for sd in data['settings'].values() for v in setting_verdicts(sd)]
    if vs:
        lines += ['| ratio | measured | target | verdict |',
                  '|---|---:|---:|---|']
        for what, m, t, cmp, v in vs:
            lines.append(f'| {what} | {m:.3f} | {cmp} {t:.2f} | **{v}** |')
    return '\n'.join(lines)


def loader_verdict(sd: dict) -> str:
    """Whether the loader at the config's worker count keeps up with the
    tensor-fed online KDEP step, and what feeding the step from it costs
    (all wall clock)."""
    ld = sd['loader']
    w = str(ld['config_workers'])
    kd = sd['arms'].get(f'kdep/{sd["amps"][0]}')
    if kd is None or w not in ld['loader_ips']:
        return ('(the loader and the tensor-fed step were not both timed: '
                'no bottleneck verdict)')
    step_ips = sd['batch'] / kd['median_wall_s']
    lips = ld['loader_ips'][w]
    fed = (f' Fed by that loader the step runs at {ld["fed_step_ips"]:.0f} '
           f'images/s, {ld["fed_step_ips"] / step_ips:.2f} x the '
           'tensor-fed step (the workers share the cores with it).')
    best = max(ld['loader_ips'], key=ld['loader_ips'].get)
    fed += (f' Fastest loader alone: {best} workers, '
            f'{ld["loader_ips"][best]:.0f} images/s.')
    if lips < step_ips:
        return (f'The data pipeline IS the bottleneck: {lips:.0f} images/s '
                f'from the loader with {w} workers < {step_ips:.0f} images/s '
                'of the tensor-fed online KDEP step.' + fed)
    return (f'The data pipeline is not the bottleneck: {lips:.0f} images/s '
            f'from the loader with {w} workers >= {step_ips:.0f} images/s of '
            'the tensor-fed online KDEP step.' + fed)


def perf_rows(data: dict, bench_args: list):
    """The rows of the performance table (``| algorithm | setting | batch
    | arm | step (s) | images/s | peak mem (MiB) | x student step |``) and
    the verdicts ``(what, measured, target, comparison, verdict)`` of a
    ``--json`` file's contents ``data`` (``bench_args``: the arguments it
    ran with, unused: the file records its settings)."""
    del bench_args
    rows = []
    for sd in data['settings'].values():
        unit = 'CPU s' if sd['clock'] == 'cpu' else 'wall s'
        for _, label, t, _, ips, mem, rel in arm_rows(sd):
            rows.append(f'| KDEP | {sd["desc"]} | {sd["batch"]} | {label} | '
                        f'{t:.3f} ({unit}) | {ips:.1f} | {_fmt_mem(mem)} | '
                        f'{rel:.2f} |')
        if 'loader' in sd:
            ld = sd['loader']
            for w, ips in ld['loader_ips'].items():
                rows.append(f'| KDEP | {sd["desc"]} | {sd["batch"]} | JPEG '
                            f'loader alone, {w} workers | | {ips:.1f} | | |')
            for w, f in ld['fed'].items():
                rows.append(f'| KDEP | {sd["desc"]} | {sd["batch"]} | online'
                            f' KDEP fed by the JPEG loader ({w} workers) | '
                            f'{f["wall_s"]:.3f} (wall s) | {f["ips"]:.1f} | '
                            '| |')
    verdicts = [v for sd in data['settings'].values()
                for v in setting_verdicts(sd)]
    return rows, verdicts


def memory_note(device: str) -> str:
    if str(device).startswith('cuda'):
        return ('torch.cuda.max_memory_allocated during the steps - '
                'memory_allocated before them, peak statistics reset')
    return ('a fresh process per arm, peak RSS growth over the RSS after '
            'the build (VmHWM reset through /proc/self/clear_refs, freed '
            'heap trimmed first)')


def write_json(path: str, data: dict) -> None:
    """``data`` to ``path`` atomically (a temporary file renamed)."""
    d = osp.dirname(osp.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix='.kdep_step_time.',
                               suffix='.json')
    with os.fdopen(fd, 'w') as fh:
        json.dump(data, fh, indent=1)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    if args.arm is not None:
        if args.setting is None:
            raise SystemExit('--arm needs --setting')
        sb.emit(run_one(args))
        return
    sb.check_device(args.device)
    t_start, load0 = time.time(), os.getloadavg()[0]
    settings = {s: run_setting(s, args) for s in args.settings_list}
    import torch
    threads = next(iter(settings.values()))['threads']
    line = (f'Machine: {sb.setup_line(args)}, {os.cpu_count()} CPU cores '
            f'visible, torch {torch.__version__}, {threads} thread(s); '
            f'{args.warmup} untimed + {args.steps} timed cycles, every arm '
            'interleaved in one process (one step of each per cycle, order '
            'balanced for carry-over); ratios = medians of per-cycle '
            'ratios; peak memory: '
            f'{memory_note(args.device)}; '
            'random weights.')
    data = dict(meta=dict(line=line, argv=sys.argv[1:] if argv is None
                          else list(argv), torch=torch.__version__),
                settings=settings)
    print(report(data))
    sb.print_wall_and_load(t_start, load0)
    if args.json:
        write_json(args.json, data)


if __name__ == '__main__':
    main()
