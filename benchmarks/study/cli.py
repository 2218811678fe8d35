"""The command line of the study (``benchmarks/kdep_study.py``)."""
import argparse
import os
import os.path as osp
import subprocess
import sys
import time

from .spec import REPO, say

USAGE = """\
    python benchmarks/kdep_study.py --jobs 2        # everything not yet done
    python benchmarks/kdep_study.py --kinds pca,sweep
    python benchmarks/kdep_study.py --arms f,b --seeds 0
    python benchmarks/kdep_study.py --only 'pretrain/f/*'
    python benchmarks/kdep_study.py --report        # docs/results.md + plots
    python benchmarks/kdep_study.py --list          # the plan and its state
    python benchmarks/kdep_study.py --smoke --results-dir /tmp/s  # plumbing
    python benchmarks/kdep_study.py --device cuda --full-pool   # GPU study
"""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='The KDEP study v2: pre-training arms at budgets in '
        'samples, milestone exports, frozen probes and fine-tuning, '
        'resumable cell by cell, with a generated report.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=USAGE)
    p.add_argument('--results-dir', default=None,
                   help='cell results, exports, logs [benchmarks/'
                   'study_results (its cells/ are tracked by git), or '
                   'work_dirs/study_smoke with --smoke]')
    p.add_argument('--docs-dir', default=None,
                   help='where results.md and images/ go [docs, or '
                   '<results-dir>/docs with --smoke]')
    p.add_argument('--study', default=None,
                   help='the study spec [configs/study/study.py]')
    p.add_argument('--arms', help='e.g. f,b (default: all)')
    p.add_argument('--students', help='e.g. r20w8 (default: all)')
    p.add_argument('--seeds', help='e.g. 0 or 0,1,2 (default: all)')
    p.add_argument('--kinds', help='cell kinds: pca,sweep,pretrain,probe,ft '
                   'or ft_bccd,ft_camvid (default: all)')
    p.add_argument('--only', help="glob(s) over cell ids, e.g. "
                   "'pretrain/f/*,probe/*/r20w8/s0/*'")
    p.add_argument('--report', action='store_true',
                   help='only regenerate the report and plots')
    p.add_argument('--no-report', action='store_true',
                   help='do not write the report after running')
    p.add_argument('--list', action='store_true',
                   help='print the selected cells and their state')
    p.add_argument('--jobs', type=int, default=1,
                   help='worker processes (each --threads threads)')
    p.add_argument('--threads', type=int, default=1,
                   help='torch threads per process')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--smoke', action='store_true',
                   help='a few images and steps per cell (tests)')
    p.add_argument('--verbose', action='store_true')
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


def _csv(v, cast=str):
    return None if v is None else [cast(x) for x in v.split(',') if x]


def _child_argv(args):
    argv = [sys.executable, osp.join(REPO, 'benchmarks', 'kdep_study.py'),
            '--worker', '--results-dir', args.results_dir, '--threads',
            str(args.threads), '--device', args.device]
    for k in ('study', 'arms', 'students', 'seeds', 'kinds', 'only'):
        v = getattr(args, k)
        if v is not None:
            argv += [f'--{k}', v]
    argv += [f for f in ('--smoke', '--verbose') if getattr(args, f[2:])]
    return argv


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == 'cpu':
        os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
    os.chdir(REPO)  # configs name ../shared and mmdet:: paths from here
    import torch
    if args.threads > 0 and not (args.report or args.list):
        torch.set_num_threads(args.threads)
    import kdep_mm  # noqa: F401  (mmengine checkpoint types)
    from kdep_mm.utils.setup_env import register_all_modules
    register_all_modules(init_default_scope=False)

    from .cellstore import cell_path, claimed_by_other, load_result
    from .data import Ctx
    from .plan import full_plan, select
    from .scheduler import retire_stale, work
    from .spec import STUDY_CFG, load_study
    study = load_study(args.study or STUDY_CFG)
    plan = full_plan(study)
    cells = select(plan, arms=_csv(args.arms), students=_csv(args.students),
                   seeds=_csv(args.seeds, int), kinds=_csv(args.kinds),
                   only=_csv(args.only))
    rdir = osp.abspath(args.results_dir)
    os.makedirs(osp.join(rdir, 'cells'), exist_ok=True)
    if args.list:
        for c in cells:
            r = load_result(rdir, c)
            state = ('done' if r is not None else 'failed' if osp.isfile(
                cell_path(rdir, c, '.error.txt')) else 'claimed' if
                claimed_by_other(rdir, c.id) else 'todo')
            print(f'{c.id:48s} {state}')
        return 0
    if not args.report:
        ctx = Ctx(args, study)
        t0 = time.perf_counter()
        if not args.worker:
            retire_stale(rdir, cells)
        todo = [c for c in cells if load_result(rdir, c) is None]
        say(f'{len(cells)} cells selected, {len(cells) - len(todo)} done, '
            f'{len(todo)} to run; results in {rdir}; {args.jobs} process(es)'
            f' x {torch.get_num_threads()} thread(s) on {args.device}')
        if args.jobs > 1 and not args.worker:
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
        from .report import write_report
        write_report(args, study, plan, rdir)
    failed = [c for c in cells if osp.isfile(cell_path(rdir, c, '.error.txt'))]
    return 1 if failed and not args.report else 0
