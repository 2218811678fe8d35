#!/usr/bin/env python
"""One run, one table: training-step time, images/s and peak memory of
every algorithm against its student-only step (issue 7's performance
table, issue 18's GPU table), on the same machine in the same run.

It runs the step-time benchmarks one after the other (each with its arms
in fresh, interleaved subprocesses, or interleaved in one process where
the benchmark says so) and writes their numbers into one markdown page
with their verdicts. What is run and judged comes from each benchmark
module (``benchmarks/<name>_step_time.py``):

* ``PERF_ARGS`` -- its arguments for the CPU table (``docs/performance.md``);
* ``GPU_ARGS`` (or ``gpu_args()``) -- its arguments for the GPU table
  (``--gpu``, ``docs/performance_gpu.md``): realistic batches (ResNet-50 ->
  ResNet-18 at 224 px batch 128, ViT-L -> ViT-B DMAE batch 64, TCS and the
  ensemble at their ImageNet settings). A benchmark whose GPU arguments
  name no ``--amp`` is run once per precision of ``--amps`` (fp32, then
  bf16, each precision's runs in benchmark order, so that a run cut short
  by the time budget costs a bf16 row first);
* ``SMOKE_ARGS`` -- tiny arguments for the GPU script's CPU smoke run
  (``--gpu --smoke``; a benchmark without them is listed as not run);
* ``perf_rows(data, bench_args)`` -- from the ``--json`` it wrote: the
  table rows and its verdicts ``(what, measured, target, comparison,
  verdict)``, comparison ``'<='`` or ``'>='``.

Targets judged today: KDEP (kdep_step_time's verdicts), TCS from the
store / student <= 1.10, ensemble from the store / student <= 1.10, DMAE
truncated / full teacher <= 0.85 at 75 % masking. Weights are random: time
does not depend on values.

``--device``, ``--amp`` and ``--channels-last`` are passed to every
benchmark. ``--budget-s S`` bounds the whole run: each benchmark gets a
timeout, the time left less ``--min-run-s`` (default 30 s) for each run
after it (so that one that hangs does not take the others' time, and one
that needs long is not stopped while there is time for it), capped by
``--timeout NAME=S``; one that runs out of time is stopped with its
subprocesses and the page says so, the others still appear. ``--results-dir DIR`` keeps
each finished run (its JSON and output) there and reuses it when the same
run of the same code is asked for again, so that a rerun after a
time-out only runs what is missing (``benchmarks/gpu_check.sh`` on a still-warm GPU machine).

Run it on an otherwise idle machine (about 20 minutes on 2 CPU cores)::

    python benchmarks/performance_table.py
    python benchmarks/performance_table.py --only kdep,ensemble --out /tmp/p.md
    # on the GPU machine (benchmarks/gpu_check.sh runs this):
    python benchmarks/performance_table.py --gpu --budget-s 420
"""
import argparse
import functools
import importlib
import json
import os
import os.path as osp
import platform
import signal
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HERE = osp.join(REPO, 'benchmarks')
if HERE not in sys.path:
    sys.path.insert(0, HERE)
import _step_bench as sb  # noqa: E402

# name -> (module, the page that explains its arms)
BENCHES = dict(
    kdep=('kdep_step_time', 'docs/kdep.md'),
    tcs=('tcs_step_time', 'docs/tcs.md'),
    ensemble=('ensemble_step_time', 'docs/ensemble.md'),
    dmae=('dmae_step_time', 'docs/dmae.md'),
)


def module(name):
    return importlib.import_module(BENCHES[name][0])


def perf_rows(name, data, bench_args):
    """``(rows, verdicts)`` of benchmark ``name``'s JSON ``data``."""
    mod = module(name)
    fn = getattr(mod, 'perf_rows', None)
    if fn is None:
        raise SystemExit(f'benchmarks/{BENCHES[name][0]}.py has no '
                         'perf_rows(data, bench_args)')
    rows, verdicts = fn(data, list(map(str, bench_args)))
    for v in verdicts:
        if len(v) != 5 or v[3] not in ('<=', '>=') or v[4] not in (
                'MET', 'NOT MET'):
            raise ValueError(f'{name}.perf_rows: a verdict must be (what, '
                             "measured, target, '<=' | '>=', 'MET' | "
                             f"'NOT MET'), got {v!r}")
    return rows, verdicts


def mode_args(name, mode):
    """The benchmark's own arguments in ``mode`` (None: it has none)."""
    mod = module(name)
    if mode == 'cpu':
        args = getattr(mod, 'PERF_ARGS', None)
        return None if args is None else [str(a) for a in args]
    if mode == 'gpu':
        fn = getattr(mod, 'gpu_args', None)
        args = fn() if callable(fn) else getattr(mod, 'GPU_ARGS', None)
    else:
        args = getattr(mod, 'SMOKE_ARGS', None)
    return None if args is None else [str(a) for a in args]


def plan_runs(args):
    """``[(name, precision label, benchmark arguments | None, why not)]``
    in the order they run."""
    per_amp, single = {}, []
    for name in args.names:
        base = mode_args(name, args.mode)
        if base is None:
            what = dict(cpu='PERF_ARGS', gpu='GPU_ARGS',
                        smoke='SMOKE_ARGS')[args.mode]
            single.append((name, '-', None, f'benchmarks/'
                           f'{BENCHES[name][0]}.py has no {what}'))
            continue
        extra = ['--device', args.device]
        if args.channels_last:
            extra.append('--channels-last')
        if args.mode == 'cpu' or '--amp' in base:
            amp = args.amp or sb.arg_value(base, '--amp')
            a = base + extra + (['--amp', args.amp] if args.amp else [])
            single.append((name, amp or 'default', a, None))
        else:
            for amp in args.amps:
                per_amp.setdefault(amp, []).append(
                    (name, amp, base + extra + ['--amp', amp], None))
    # runs that hold all their precisions first, then fp32, then bf16
    runs = [r for r in single if r[2] is not None]
    for amp in args.amps:
        runs += per_amp.get(amp, [])
    return runs + [r for r in single if r[2] is None]


def run_bench(cmd, timeout):
    """Run ``cmd`` in its own process group; on timeout the whole group
    (the benchmark and its arm subprocesses) is killed. Returns ``(rc,
    stdout, stderr, timed_out)``."""
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err, False
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, err = proc.communicate()
        return proc.returncode, out, err, True


def run_timeout(name, later, deadline, caps, floor=30.0, reserve=5.0):
    """The timeout of the next run: the time left before ``deadline``
    (minus ``reserve`` s for writing the page) less ``floor`` s for each of
    the ``later`` runs, but at least ``floor`` (or what is left, if less),
    capped by ``caps[name]``; None when there is neither a deadline nor a
    cap."""
    t = None
    if deadline is not None:
        left = deadline - time.time() - reserve
        t = max(left - floor * later, min(floor, left), 1.0)
    if name in caps:
        t = caps[name] if t is None else min(t, caps[name])
    return t


def _kept_path(results_dir, name, amp):
    return osp.join(results_dir, f'{name}__{amp.replace(",", "+")}.json')


@functools.lru_cache(maxsize=None)
def code_digest() -> str:
    """sha256 of the code a benchmark run executes: every ``.py`` file
    under benchmarks/, kdep_mm/ and configs/ (a kept run of other code is
    not reused)."""
    import glob
    import hashlib
    h = hashlib.sha256()
    for top in ('benchmarks', 'kdep_mm', 'configs'):
        for f in sorted(glob.glob(osp.join(REPO, top, '**', '*.py'),
                                  recursive=True)):
            with open(f, 'rb') as fh:
                h.update(osp.relpath(f, REPO).encode() + b'\0' + fh.read())
    return h.hexdigest()


def keep(results_dir, name, amp, bargs, data, stdout, secs) -> None:
    """A finished run into ``results_dir`` (atomically; nothing when
    None), with its arguments and :func:`code_digest`."""
    if not results_dir:
        return
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    os.makedirs(results_dir, exist_ok=True)
    atomic_write_bytes(json.dumps(dict(
        argv=list(bargs), code=code_digest(), data=data, stdout=stdout,
        secs=secs)).encode(), _kept_path(results_dir, name, amp))


def load_kept(results_dir, name, amp, bargs):
    """The run kept by :func:`keep` with the same arguments and the same
    code, else None."""
    if not results_dir:
        return None
    path = _kept_path(results_dir, name, amp)
    if not osp.isfile(path):
        return None
    with open(path) as fh:
        kept = json.load(fh)
    same = (kept.get('argv') == list(bargs) and
            kept.get('code') == code_digest())
    return kept if same else None


def machine_line(device):
    """What ran the table: CPU model and cores, or the GPU's name."""
    import torch
    cpu = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as fh:
            names = [ln.split(':', 1)[1].strip() for ln in fh
                     if ln.startswith('model name')]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    line = f'{cpu}, {os.cpu_count()} CPU cores visible'
    if str(device).startswith('cuda'):
        gpu = (torch.cuda.get_device_name(torch.device(device))
               if torch.cuda.is_available() else 'no CUDA device')
        line = (f'GPU {gpu} (CUDA {torch.version.cuda}), host {line}')
    return f'{line}; torch {torch.__version__}, Python ' + \
        platform.python_version()


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--only', help='comma-separated subset of '
                   + ','.join(BENCHES) + ' (default: all)')
    p.add_argument('--out', help='markdown page to write [docs/'
                   'performance.md; with --gpu docs/performance_gpu.md]')
    p.add_argument('--gpu', action='store_true',
                   help="every benchmark with its GPU arguments (GPU_ARGS), "
                   'once per precision of --amps; --device defaults to cuda')
    p.add_argument('--smoke', action='store_true',
                   help='with --gpu: the tiny SMOKE_ARGS instead (the GPU '
                   "script's plumbing on a CPU); --device defaults to cpu")
    p.add_argument('--device', help='passed to every benchmark [cpu; cuda '
                   'with --gpu]')
    p.add_argument('--amp', choices=sb.AMP_MODES,
                   help='precision passed to every benchmark (CPU table; '
                   "default: each benchmark's own)")
    p.add_argument('--amps', default='fp32,bf16',
                   help='with --gpu: the precisions each benchmark whose '
                   'GPU arguments name none runs in [fp32,bf16]')
    p.add_argument('--channels-last', action='store_true',
                   help='passed to every benchmark')
    p.add_argument('--budget-s', type=float,
                   help='seconds for all the runs together (each gets a '
                   'timeout: what is left less --min-run-s per later run)')
    p.add_argument('--results-dir',
                   help='keep each finished run here and reuse it when the '
                   'same run (same arguments) is asked for again')
    p.add_argument('--min-run-s', type=float, default=30.0,
                   help='with --budget-s: seconds kept for each run still to '
                   'come [30]')
    p.add_argument('--timeout', action='append', default=[],
                   metavar='NAME=S', help='cap one benchmark\'s runs at S '
                   'seconds each (repeatable)')
    args = p.parse_args(argv)
    names = args.only.split(',') if args.only else list(BENCHES)
    bad = [n for n in names if n not in BENCHES]
    if bad:
        p.error(f'--only: unknown benchmark(s) {bad}; choose from '
                f'{list(BENCHES)}')
    args.names = names
    if args.smoke and not args.gpu:
        p.error('--smoke: only with --gpu (the GPU table in smoke mode)')
    args.mode = 'smoke' if args.smoke else 'gpu' if args.gpu else 'cpu'
    if args.device is None:
        args.device = 'cuda' if args.mode == 'gpu' else 'cpu'
    if args.gpu and args.amp:
        p.error('--amp: with --gpu use --amps (each benchmark runs once per '
                'precision)')
    args.amps = [a for a in args.amps.split(',') if a]
    bad = [a for a in args.amps if a not in sb.AMP_MODES]
    if bad or not args.amps:
        p.error(f'--amps: expected a comma-separated subset of '
                f'{list(sb.AMP_MODES)}, got {bad or args.amps}')
    args.caps = {}
    for t in args.timeout:
        name, _, secs = t.partition('=')
        try:
            args.caps[name] = float(secs)
        except ValueError:
            p.error(f'--timeout: expected NAME=SECONDS, got {t!r}')
        if name not in BENCHES:
            p.error(f'--timeout: unknown benchmark {name!r}; choose from '
                    f'{list(BENCHES)}')
    if args.budget_s is not None and args.budget_s <= 0:
        p.error(f'--budget-s: expected seconds > 0, got {args.budget_s}')
    if args.out is None:
        args.out = osp.join(REPO, 'docs', 'performance_gpu.md' if args.gpu
                            else 'performance.md')
    return args


def render(args, results, t0, load0, load1) -> str:
    """The markdown page of ``results`` (one dict per planned run)."""
    gpu = args.mode != 'cpu'
    cuda = args.device.startswith('cuda')
    cmd = ' '.join(['python benchmarks/performance_table.py',
                    *getattr(args, 'argv', [])])
    L = []
    if args.mode == 'smoke':
        L += ['**SMOKE RUN** (tiny settings on the CPU: it tests the GPU '
              "script's plumbing; its numbers mean nothing)", '']
    L += [('# Performance on a GPU: every algorithm against its student '
           'step' if gpu else
           '# Performance: every algorithm against its student step'), '',
          f'Generated by `{cmd}` ({time.strftime("%Y-%m-%d %H:%M")}, '
          f'{time.time() - t0:.0f} s). Machine: '
          f'{machine_line(args.device)}. Device: {args.device}. '
          'Precision: '
          + (', '.join(args.amps) + ' (each row names its own)' if gpu
             else (args.amp or "each benchmark's default (fp32)"))
          + (', channels_last' if args.channels_last else '')
          + f'. 1-min load average {load0[0]:.2f} at the start, '
          f'{load1[0]:.2f} at the end.', '',
          'One training step = forward + backward + optimizer step; '
          'random weights; each benchmark\'s own output (below) says how '
          'it timed its arms (fresh interleaved processes per arm, or the '
          'arms\' steps interleaved in one process). Peak memory: '
          + ('`torch.cuda.max_memory_allocated` of the steps minus the '
             'memory allocated after the build.' if cuda else
             'growth of the peak resident set size during the steps over '
             'the size after the build (each benchmark\'s output says how '
             'it reads it).'), '',
          sb.PERF_HEADER, '|---|---|---:|---|---:|---:|---:|---:|']
    for r in results:
        L += r['rows']
    L += ['', '| benchmark | ratio | measured | target | verdict |',
          '|---|---|---:|---:|---|']
    for r in results:
        for what, measured, target, cmp, verdict in r['verdicts']:
            L.append(f'| {r["name"]} | {what} | {measured:.3f} | {cmp} '
                     f'{target:.2f} | **{verdict}** |')
    missing = [r for r in results if r['status'] != 'ok']
    if missing:
        L += ['', 'Not in the table:', '']
        for r in missing:
            L.append(f'- **{r["name"]} ({r["amp"]})**: {r["why"]}')
    L += ['', 'Each benchmark\'s own output (the per-algorithm pages '
          'explain the arms: '
          + ', '.join(BENCHES[n][1] for n in args.names) + '):', '']
    for r in results:
        if r['cmd'] is None:
            continue
        out = r['stdout'].strip() or '(no output)'
        if r['status'] != 'ok' and r['stderr'].strip():
            out += '\n\nstderr (last lines):\n\n' + '\n'.join(
                '    ' + ln for ln in r['stderr'].strip().splitlines()[-15:])
        status = r['status'] + (', kept from an earlier run'
                                if r.get('reused') else '')
        L += [f'<details><summary>{r["name"]} ({r["amp"]}): <code>'
              f'{r["cmd"]}</code> ({r["secs"]:.0f} s, {status})'
              '</summary>', '', out, '', '</details>', '']
    return '\n'.join(L) + '\n'


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    args.argv = argv
    t0, load0 = time.time(), os.getloadavg()
    deadline = t0 + args.budget_s if args.budget_s else None
    runs = plan_runs(args)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, amp, bargs, why) in enumerate(runs):
            res = dict(name=name, amp=amp, rows=[], verdicts=[], cmd=None,
                       stdout='', stderr='', secs=0.0, status='not run',
                       why=why)
            results.append(res)
            if bargs is None:
                print(f'[performance_table] {name}: not run ({why})',
                      flush=True)
                continue
            script = f'{BENCHES[name][0]}.py'
            jpath = osp.join(tmp, f'{name}_{i}.json')
            cmd = [sys.executable, osp.join(HERE, script), *bargs, '--json',
                   jpath]
            res['cmd'] = ' '.join(['python', f'benchmarks/{script}', *bargs])
            kept = load_kept(args.results_dir, name, amp, bargs)
            if kept is not None:
                res.update(status='ok', stdout=kept['stdout'],
                           secs=kept['secs'], reused=True)
                res['rows'], res['verdicts'] = perf_rows(name, kept['data'],
                                                         bargs)
                print(f'[performance_table] {name} ({amp}): reused from '
                      f'{args.results_dir}', flush=True)
                continue
            later = sum(a is not None for _, _, a, _ in runs[i + 1:])
            timeout = run_timeout(name, later, deadline, args.caps,
                                  args.min_run_s)
            print(f'[performance_table] {name} ({amp}): {res["cmd"]}'
                  + (f' (timeout {timeout:.0f} s)' if timeout else ''),
                  flush=True)
            t1 = time.time()
            rc, out, err, timed_out = run_bench(cmd, timeout)
            res.update(stdout=out, stderr=err, secs=time.time() - t1)
            if timed_out:
                res.update(status='timed out', why=(
                    f'stopped at its time limit ({timeout:.0f} s) before it '
                    'finished'))
            elif rc != 0 or not osp.isfile(jpath):
                res.update(status='failed', why=f'the benchmark failed '
                           f'(exit {rc}); its stderr is below')
            else:
                with open(jpath) as fh:
                    data = json.load(fh)
                rows, verdicts = perf_rows(name, data, bargs)
                res.update(status='ok', rows=rows, verdicts=verdicts)
                keep(args.results_dir, name, amp, bargs, data, out,
                     res['secs'])
            summary = '; '.join(f'{v[1]:.3f} {v[3]} {v[2]:.2f} -> {v[4]}'
                                for v in res['verdicts']) or res['why']
            print(f'[performance_table] {name} ({amp}): {summary}, '
                  f'{res["secs"]:.0f} s', flush=True)
    page = render(args, results, t0, load0, os.getloadavg())
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    atomic_write_bytes(page.encode(), args.out)
    print(f'[performance_table] wrote {args.out}')
    ok = all(r['status'] == 'ok' for r in results) and all(
        v[4] == 'MET' for r in results for v in r['verdicts'])
    return 0 if ok else 1


if __name__ == '__main__':
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    sys.exit(main())
