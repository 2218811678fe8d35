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
    # the GPU path (configs/study/study_gpu.py, benchmarks/study_gpu.sh)
    p.add_argument('--data-pack', default=None,
                   help='folder with probe_arrays.{npz,json} (tools/gpu/'
                   'prepare_study_data.sh): the downstream arrays from it, '
                   'not from the archives in ../shared')
    p.add_argument('--deadline-at', type=float, default=None,
                   help='a time (seconds since the epoch): run the cells in '
                   "the spec's time_guard order and skip each one whose "
                   'predicted time would pass it')
    p.add_argument('--gpu-table', default=None,
                   help='write the GPU table (markdown) of the selected '
                   'cells here; with --report only that, not docs/')
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
    if args.data_pack:
        argv += ['--data-pack', args.data_pack]
    return argv


def register_modules():
    """kdep_mm's modules, all of them: without mmcv's compiled ops
    (mmcv-lite, the GPU machine, which has no mmdet / mmseg either)
    ``kdep_mm.datasets`` still imports, with stand-ins for its BCCD / CamVid
    datasets that the study does not use. Returns the datasets that are
    stand-ins (name -> reason), to be said in the log."""
    from kdep_mm import register_all_modules
    from kdep_mm.datasets import DOWNSTREAM_IMPORT_ERRORS
    register_all_modules(init_default_scope=False)
    return DOWNSTREAM_IMPORT_ERRORS


def _predict_s(c, cells, ctx, kinds):
    """Predicted seconds of one cell: the measured times of the cells of
    its kind that have run, else the spec's time_guard guesses."""
    from .cellstore import load_result
    from .spec import KD_KINDS
    g, study = ctx.study.get('time_guard', {}), ctx.study
    done = [(d, load_result(ctx.rdir, d)) for d in cells]
    done = [(d, r) for d, r in done if r is not None]
    if c.kind == 'pca':
        return g.get('pca_s', 15.)
    if c.kind == 'probe':
        ts = [r['total_s'] for d, r in done if d.kind == 'probe']
        return max(ts) if ts else g.get('probe_s', 20.)
    if c.kind not in ('pretrain', 'sweep'):
        return g.get('build_s', 10.)
    if kinds[c.arm] == 'random':
        return 5.
    cls = 'teacher' if kinds[c.arm] in KD_KINDS else 'student'
    steps = (study.smoke.steps if ctx.smoke else
             study.arms[c.arm].samples // study.batch_size)
    per_step, build = [], []
    for d, r in done:
        if d.kind in ('pretrain', 'sweep') and r.get('steps') and \
                ('teacher' if kinds[d.arm] in KD_KINDS else 'student') == cls:
            wall = r['milestones'][-1]['train_wall_s']
            per_step.append(wall / r['steps'])
            build.append(r['total_s'] - wall)
    step_s = max(per_step) if per_step else g.get('step_s', {}).get(cls, .02)
    return steps * step_s + (max(build) if build else g.get('build_s', 10.))


def guarded_work(cells, ctx, deadline):
    """Run ``cells`` one at a time in the spec's ``time_guard.order`` (pca
    first; a pre-training before its probes) and skip a cell whose
    predicted time would pass ``deadline`` or whose dependencies did not
    run; the skipped cells and why go to ``<results>/skipped.json``."""
    from .cellstore import load_result, load_result_id, write_json
    from .plan import arm_kinds
    from .scheduler import work
    order = ctx.study.get('time_guard', {}).get('order', '')

    def rank(c):
        return (0 if c.kind == 'pca' else 1,
                order.index(c.arm) if c.arm and c.arm in order else len(order))
    kinds = arm_kinds(ctx.study)
    skipped, done, failed = [], 0, 0
    for c in sorted(cells, key=rank):  # stable: the plan's order within
        if load_result(ctx.rdir, c) is not None:
            continue
        missing = [d for d in c.dep_ids if load_result_id(ctx.rdir, d) is None]
        if missing:
            skipped.append(dict(cell=c.id, reason='needs ' + ', '.join(
                missing) + ', which did not run'))
            continue
        need, left = _predict_s(c, cells, ctx, kinds), deadline - time.time()
        if need > left:
            skipped.append(dict(cell=c.id, reason=f'time guard: predicted '
                                f'{need:.0f} s, {max(0., left):.0f} s left'))
            say(f'cell {c.id}: skipped, {skipped[-1]["reason"]}')
            continue
        d, f = work([c], ctx)
        done, failed = done + d, failed + f
    write_json(osp.join(ctx.rdir, 'skipped.json'),
               dict(deadline=deadline, skipped=skipped,
                    written=time.strftime('%Y-%m-%d %H:%M:%S')))
    return done, failed


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.device == 'cpu':
        os.environ.setdefault('CUDA_VISIBLE_DEVICES', '')
    os.chdir(REPO)  # configs name ../shared and mmdet:: paths from here
    import torch
    if args.threads > 0 and not (args.report or args.list):
        torch.set_num_threads(args.threads)
    import kdep_mm  # noqa: F401  (mmengine checkpoint types)
    unavailable = register_modules()

    from .cellstore import cell_path, claimed_by_other, load_result
    from .data import Ctx
    from .plan import full_plan, select
    from .scheduler import retire_stale, work
    from .spec import STUDY_CFG, load_study
    study = load_study(args.study or STUDY_CFG)
    plan = full_plan(study)
    for opt, given, known in (('--arms', _csv(args.arms), study.arms),
                              ('--students', _csv(args.students),
                               study.students)):
        bad = sorted(set(given or ()) - set(known))
        if bad:
            raise SystemExit(f'{opt}: unknown {bad} (comma-separated, from '
                             f'{",".join(known)})')
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
    if args.report and args.gpu_table:
        from .gpu_table import write_gpu_table
        say('GPU table: ' + write_gpu_table(
            args.gpu_table, study, cells, rdir, device=args.device,
            smoke=args.smoke))
        return 0
    if not args.report:
        ctx = Ctx(args, study)
        if unavailable:
            say('kdep_mm datasets not available here: '
                + ', '.join(sorted(unavailable)))
        t0 = time.perf_counter()
        if not args.worker:
            from .pretrain import chosen_setting
            retire_stale(rdir, cells,
                         chosen=lambda arm: chosen_setting(ctx, arm)[0])
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
        elif args.deadline_at is not None and not args.worker:
            done, failed = guarded_work(cells, ctx, args.deadline_at)
            say(f'this process: {done} cells done, {failed} failed, '
                f'{time.perf_counter() - t0:.0f}s (time guard)')
        else:
            done, failed = work(cells, ctx)
            say(f'this process: {done} cells done, {failed} failed, '
                f'{time.perf_counter() - t0:.0f}s')
        if args.worker:
            return 0
        if args.gpu_table:
            from .gpu_table import write_gpu_table
            say('GPU table: ' + write_gpu_table(
                args.gpu_table, study, cells, rdir, device=args.device,
                smoke=args.smoke))
    if args.report or not args.no_report:
        from .report import write_report
        write_report(args, study, plan, rdir)
    failed = [c for c in cells if osp.isfile(cell_path(rdir, c, '.error.txt'))]
    return 1 if failed and not args.report else 0
