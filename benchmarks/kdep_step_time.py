"""Training-step time and peak memory of online KDEP vs. its parts.

Three arms per setting, each in a fresh subprocess (this script re-invoked
with ``--arm X --setting S``):

* ``student`` -- the KDEP step without the teacher: the student's forward
  (pooled pre-ReLU feature), the SVD aligner + PTS target from a teacher
  feature computed *before* the timer, the MSE loss, backward, SGD step.
* ``teacher`` -- the teacher's forward alone (eval, ``no_grad``), up to the
  distilled feature, as ``KDEPDistiller.teacher_features`` runs it.
* ``kdep``    -- one real ``KDEPDistiller.loss`` step (teacher forward +
  student step), backward, SGD step.

Target (issue 7): ``kdep <= 1.05 x (student + teacher)``, i.e. online KDEP
adds at most 5% over running its two networks.

Settings: ``cifar`` = the study's CIFAR-10 ResNet-56 -> ResNet-20 at 32 px
(``configs/kdep/cifar10_r56_to_r20.py``, batch 64); ``in1k`` = mmpretrain
ResNet-50 -> ResNet-18 at 224 px (``configs/kdep/r50_to_r18_in1k.py``, a
small batch of 8). Weights are random (no checkpoint is loaded; the SVD
basis is fitted on random features): timing does not depend on the values.
A step time is the median of ``--steps`` timed steps after ``--warmup``
untimed ones, as wall clock and as CPU time of the process
(``time.process_time``); with one torch thread the CPU time is what the
step costs on an idle core, and it drifts less with the load of a shared
machine, so the target is judged on it. Memory: growth of the process's
peak RSS (``ru_maxrss``) from right after the build to after the steps
(CPU), or ``torch.cuda.max_memory_allocated`` minus the allocated memory
after the build (CUDA).

Run (about 3 min on 2 busy CPU cores)::

    python benchmarks/kdep_step_time.py
    python benchmarks/kdep_step_time.py --settings cifar --steps 10
"""
import os
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import _step_bench as sb  # noqa: E402

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ARMS = ('student', 'teacher', 'kdep')
SETTINGS = dict(
    cifar=dict(config='configs/kdep/cifar10_r56_to_r20.py', img=32, batch=64,
               desc='CIFAR ResNet-56 -> ResNet-20, 32 px'),
    in1k=dict(config='configs/kdep/r50_to_r18_in1k.py', img=224, batch=8,
              desc='ResNet-50 -> ResNet-18, 224 px'),
)
ARM_DESC = {
    'student': 'student step (KDEP step without the teacher)',
    'teacher': 'teacher forward (no grad)',
    'kdep': 'online KDEP step',
}


def parse_args():
    p = sb.step_parser(
        __doc__, ARMS, steps=5, threads=1,
        threads_help='torch.set_num_threads (0: torch default)')
    p.add_argument('--settings', default=','.join(SETTINGS))
    p.add_argument('--setting', choices=list(SETTINGS),
                   help='(internal) the setting of --arm')
    return p.parse_args()


def build(setting):
    from mmengine.config import Config

    import kdep_mm  # noqa: F401
    from kdep_mm.registry import MODELS
    cfg = Config.fromfile(osp.join(REPO, SETTINGS[setting]['config']))
    m = cfg.model.to_dict()
    m['teacher_ckpt'] = None  # random weights: timing only
    model = MODELS.build(m)
    return model


def run_one(args):
    import torch
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel('ERROR')
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    s = SETTINGS[args.setting]
    model = build(args.setting).to(dev)
    c_t = model.aligner.teacher_channels
    model.aligner.fit(torch.randn(c_t + 64, c_t, device=dev))
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(s['batch'], 3, s['img'], s['img'], device=dev)
    with torch.no_grad():
        t_feat = model.teacher_features(x)  # for the 'student' arm

    def step():
        if args.arm == 'teacher':
            with torch.no_grad():
                model.teacher_features(x)
            return
        if args.arm == 'student':
            f_s, target = model.aligner(model.student_features(x), t_feat)
            loss = model.distill_loss(f_s, target)
        else:
            loss = sum(model.loss(x).values())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return dict(arm=args.arm, setting=args.setting,
                **sb.time_steps(step, args.warmup, args.steps, dev,
                                cpu_times=True))


def main():
    args = parse_args()
    if args.arm is not None:
        sb.emit(run_one(args))
        return
    settings = [x for x in args.settings.split(',') if x]
    results = {}
    t_start, load0 = time.time(), os.getloadavg()[0]
    for st in settings:
        for arm in ARMS:
            res = sb.run_arm(__file__, [
                '--arm', arm, '--setting', st, '--steps', args.steps,
                '--warmup', args.warmup, '--device', args.device,
                '--threads', args.threads
            ], REPO)
            results[(st, arm)] = res
            print(f'# {st:5s} {arm:7s}: median {res["median_s"]:.3f} s '
                  f'(steps {[round(t, 3) for t in res["times"]]}), mem '
                  f'+{res["mem_mib"]:.0f} MiB', file=sys.stderr, flush=True)
    anyr = next(iter(results.values()))
    print(f'Machine: {args.device}, {os.cpu_count()} CPU cores visible, torch '
          f'{anyr["torch"]}, {anyr["threads"]} thread(s), warm-up '
          f'{args.warmup}, median of {args.steps} timed steps (forward + '
          'backward + SGD step; teacher: forward only), random weights, '
          'fresh process per arm.')
    print()
    print('| setting | batch | arm | step wall (s, median) | step CPU (s, '
          'median) | images/s (CPU) | peak mem growth (MiB) |')
    print('|---|---:|---|---:|---:|---:|---:|')
    for st in settings:
        b = SETTINGS[st]['batch']
        for arm in ARMS:
            r = results[(st, arm)]
            print(f'| {SETTINGS[st]["desc"]} | {b} | {ARM_DESC[arm]} | '
                  f'{r["median_s"]:.3f} | {r["median_cpu_s"]:.3f} | '
                  f'{b / r["median_cpu_s"]:.1f} | {r["mem_mib"]:.0f} |')
    print()
    print('| setting | KDEP / (student + teacher), CPU | target <= 1.05 '
          '| same, wall | KDEP / student, CPU |')
    print('|---|---:|---|---:|---:|')
    for st in settings:
        r = {a: results[(st, a)] for a in ARMS}
        ratio = r['kdep']['median_cpu_s'] / (
            r['student']['median_cpu_s'] + r['teacher']['median_cpu_s'])
        wall = r['kdep']['median_s'] / (r['student']['median_s'] +
                                         r['teacher']['median_s'])
        print(f'| {SETTINGS[st]["desc"]} | {ratio:.3f} | '
              f'{"MET" if ratio <= 1.05 else "NOT MET"} | {wall:.3f} | '
              f'{r["kdep"]["median_cpu_s"] / r["student"]["median_cpu_s"]:.2f}'
              ' |')
    sb.print_wall_and_load(t_start, load0)
    sb.dump_json(args.json, results)


if __name__ == '__main__':
    main()
