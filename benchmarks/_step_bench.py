"""Helpers shared by the step-time benchmarks: time forward + backward +
optimizer steps with a peak-memory reading, and run each arm in a fresh
subprocess (so that the peak resident set size of one arm is not inflated
by another) that prints one ``RESULT {json}`` line."""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def step_parser(doc: str,
                arms,
                *,
                steps,
                warmup=1,
                threads=None,
                steps_help='timed steps (median reported)',
                warmup_help='untimed steps',
                threads_help='torch.set_num_threads (default: torch '
                'default)') -> argparse.ArgumentParser:
    """A parser described by the first line of ``doc`` with the options
    every step-time benchmark takes: ``--steps`` and ``--warmup`` (timed and
    untimed steps of one process), ``--threads``, ``--device``, ``--amp``,
    ``--channels-last``, ``--json`` (a copy of the results) and the internal
    ``--arm`` (one of ``arms``, run in a subprocess)."""
    p = argparse.ArgumentParser(description=doc.split('\n')[0])
    p.add_argument('--steps', type=int, default=steps, help=steps_help)
    p.add_argument('--warmup', type=int, default=warmup, help=warmup_help)
    p.add_argument('--threads', type=int, default=threads, help=threads_help)
    p.add_argument('--device', default='cpu',
                   help='torch device of the models and batches: cpu, cuda, '
                   'cuda:N [cpu]')
    p.add_argument('--amp', choices=AMP_MODES, default='fp32',
                   help='fp32, or bf16 autocast of the forward passes '
                   '(teachers under inference mode) [fp32]')
    p.add_argument('--channels-last', action='store_true',
                   help='models and image batches in channels_last memory '
                   'format (4-d tensors)')
    p.add_argument('--arm', choices=arms, help='(internal) run one arm')
    p.add_argument('--json', help='also write the results to this file')
    return p


def add_paired(p: argparse.ArgumentParser, per: str, choices,
               help: str) -> None:
    """The paired-timing options of a benchmark that also times its arms
    interleaved in one process per ``per`` (``'setting'``, ``'ratio'``):
    ``--paired N`` (cycles; 0: off; ``help`` says what it decides), the
    internal ``--paired-run`` and ``--<per>`` (one of ``choices``; ``int``
    values when ``choices`` is ``int``). Check them with
    :func:`parse_paired`."""
    p.add_argument('--paired', type=int, default=0, metavar='N',
                   help=help + ' [0: off]')
    p.add_argument('--paired-run', action='store_true',
                   help=f'(internal) run the paired timing of --{per}')
    if choices is int:
        p.add_argument(f'--{per}', type=int, help='(internal)')
    else:
        p.add_argument(f'--{per}', choices=tuple(choices),
                       help='(internal)')


def parse_paired(p: argparse.ArgumentParser, argv=None):
    """``p.parse_args(argv)``, refusing a negative ``--paired`` and a
    paired run of no cycles."""
    args = p.parse_args(argv)
    if args.paired < 0 or (args.paired_run and args.paired < 1):
        p.error(f'--paired: expected a number of cycles >= 1 (0: no paired '
                f'run), got {args.paired}')
    return args


AMP_MODES = ('fp32', 'bf16')


def check_device(device: str) -> None:
    """Refuse a CUDA ``--device`` on a machine without CUDA, naming the
    option, before any model is built."""
    import torch
    if str(device).startswith('cuda') and not torch.cuda.is_available():
        raise SystemExit(f'--device {device}: CUDA is not available on this '
                         'machine (torch.cuda.is_available() is False)')


def autocast(device: str, amp: str):
    """The context of one forward pass: ``torch.autocast`` in bfloat16 on
    ``device``'s type for ``amp='bf16'``, a no-op context for ``'fp32'``.
    Callers keep precision-critical parts (the SVD aligner, the losses) in
    float32 by casting their inputs with ``.float()`` inside it."""
    import contextlib

    import torch
    if amp not in AMP_MODES:
        raise ValueError(f'--amp must be one of {AMP_MODES}, got {amp!r}')
    if amp == 'fp32':
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def memory_format(channels_last: bool):
    """``torch.channels_last`` or ``torch.contiguous_format``: apply it
    with ``model.to(memory_format=...)`` and ``x.to(memory_format=...)``
    (4-d image batches only)."""
    import torch
    return torch.channels_last if channels_last else torch.contiguous_format


def setup_line(args) -> str:
    """How the steps ran, for the header of a benchmark's output."""
    return (f'device {args.device}, precision {args.amp}'
            f'{", channels_last" if args.channels_last else ""}')


def paired_ratio(times: dict, num: str, den: str) -> dict:
    """Per-cycle ratios ``num / den`` of a paired run's step times
    (``times[arm]``, one per cycle): their median (the verdict), min, max,
    quartiles, and the ratio of the summed step times."""
    import statistics
    per = [a / b for a, b in zip(times[num], times[den])]
    q = statistics.quantiles(per, n=4) if len(per) > 1 else per * 3
    return dict(median=statistics.median(per), min=min(per), max=max(per),
                q1=q[0], q3=q[2], of_sums=sum(times[num]) / sum(times[den]),
                per_cycle=per)


def timed_call(step, cuda: bool) -> float:
    """Wall seconds of one ``step()``, the CUDA queue drained after it."""
    t0 = time.perf_counter()
    step()
    if cuda:
        import torch
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_steps(step, warmup: int, steps: int, device: str = 'cpu',
               cpu_times: bool = False) -> dict:
    """Call ``step()`` ``warmup + steps`` times; the median and all timed
    step times, and the memory the steps added: on CPU the growth of
    ``ru_maxrss`` (peak RSS) over its value before the first step, on CUDA
    ``max_memory_allocated`` minus the memory allocated before. With
    ``cpu_times`` also the process CPU seconds of each timed step
    (``cpu_times``, ``median_cpu_s``)."""
    import torch
    cuda = str(device).startswith('cuda')
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB
    times, cpu = [], []
    for i in range(warmup + steps):
        c0 = time.process_time()
        dt = timed_call(step, cuda)
        if i >= warmup:
            times.append(dt)
            cpu.append(time.process_time() - c0)
    if cuda:
        peak = torch.cuda.max_memory_allocated()
        mem_mib, abs_mib = (peak - base) / 2**20, peak / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        mem_mib, abs_mib = (peak - base) / 1024, peak / 1024
    res = dict(times=times, median_s=statistics.median(times),
               mem_mib=mem_mib, peak_abs_mib=abs_mib,
               threads=torch.get_num_threads(), torch=torch.__version__)
    if cpu_times:
        res.update(cpu_times=cpu, median_cpu_s=statistics.median(cpu))
    return res


def run_arm(script: str, args, cwd: str) -> dict:
    """Run ``python script *args`` and return its ``RESULT`` json."""
    out = subprocess.run([sys.executable, os.path.abspath(script),
                          *map(str, args)], capture_output=True, text=True,
                         cwd=cwd)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith('RESULT ')]
    if out.returncode or not line:
        sys.stderr.write(out.stdout[-4000:] + out.stderr[-4000:])
        raise SystemExit(f'{script} {args} failed (rc={out.returncode})')
    return json.loads(line[-1][len('RESULT '):])


def pool_rounds(prev, res: dict) -> dict:
    """Merge a later round's result of one arm into the earlier ones: the
    timed steps are pooled (median over all), memory is the largest."""
    if prev is not None:
        res['times'] = prev['times'] + res['times']
        res['mem_mib'] = max(prev['mem_mib'], res['mem_mib'])
        res['median_s'] = statistics.median(res['times'])
    return res


def print_wall_and_load(t_start: float, load0: float) -> None:
    """The closing line: the benchmark's wall time since ``t_start`` and
    the 1-min load average at the start (``load0``) and now."""
    print(f'\n(total benchmark wall time {time.time() - t_start:.0f} s; '
          f'1-min load average at start {load0:.2f}, at end '
          f'{os.getloadavg()[0]:.2f})')


def dump_json(path, results: dict) -> None:
    """``results`` keyed ``(x, y)`` as ``{"x@y": ...}`` in the json file
    ``path`` (nothing when ``path`` is None)."""
    if path:
        with open(path, 'w') as fh:
            json.dump({f'{x}@{y}': v for (x, y), v in results.items()}, fh,
                      indent=1)


def emit(result: dict) -> None:
    print('RESULT ' + json.dumps(result), flush=True)


def run_worker_mode(args, run_paired, run_one) -> bool:
    """The worker modes of the interleaved benchmarks: after the device
    check, ``--paired-run`` emits ``run_paired(args)`` and ``--arm`` emits
    ``run_one(args)`` (one fresh process each). True when one of them ran;
    False leaves the parent's work to the caller."""
    check_device(args.device)
    if args.paired_run:
        emit(run_paired(args))
        return True
    if args.arm is not None:
        emit(run_one(args))
        return True
    return False


def memory_note(device: str) -> str:
    if str(device).startswith('cuda'):
        return ('torch.cuda.max_memory_allocated - memory_allocated after '
                'build')
    return ('peak RSS growth: ru_maxrss after the steps - ru_maxrss after '
            'model+optimizer build, fresh process per arm')


# ------------------------------------------------ the performance table
# What benchmarks/performance_table.py gets from each benchmark module's
# ``perf_rows(data, bench_args)``: rows of the table below and verdicts
# ``(what, measured, target, comparison, verdict)``.
PERF_HEADER = ('| algorithm | setting | batch | arm | step (s) | images/s | '
               'peak mem (MiB) | x student step |')


def perf_row(alg: str, setting: str, batch: int, arm: str, step_s: float,
             mem_mib: float, base_s: float, clock: str = 'wall s') -> str:
    """One row of the performance table: images/s = ``batch / step_s``,
    the last column ``step_s / base_s`` (the student step's time)."""
    ips = batch / step_s if step_s else float('nan')
    rel = step_s / base_s if base_s else float('nan')
    return (f'| {alg} | {setting} | {batch} | {arm} | {step_s:.3f} '
            f'({clock}) | {ips:.1f} | {mem_mib:.0f} | {rel:.2f} |')


def judge(what: str, measured: float, target: float,
          comparison: str = '<=') -> tuple:
    """``(what, measured, target, comparison, 'MET' | 'NOT MET')``: MET
    when ``measured <= target`` (comparison ``'<='``) or ``measured >=
    target`` (``'>='``)."""
    if comparison not in ('<=', '>='):
        raise ValueError(f"comparison must be '<=' or '>=', got "
                         f'{comparison!r}')
    ok = measured <= target if comparison == '<=' else measured >= target
    return (what, float(measured), float(target), comparison,
            'MET' if ok else 'NOT MET')


def arg_value(args, option: str, default=None):
    """The value that follows the last ``option`` in the argument list
    ``args`` (as argparse would take it), else ``default``."""
    args = [str(a) for a in args]
    for i in range(len(args) - 1, -1, -1):
        if args[i] == option and i + 1 < len(args):
            return args[i + 1]
        if args[i].startswith(option + '='):
            return args[i].split('=', 1)[1]
    return default


def setting_rows(alg: str, label: str, r: dict, arms, judged: str,
                 target: float, what: str):
    """Rows and verdict of one setting of a benchmark whose arms are
    judged against its student: ``r[arm]`` holds ``median_s``, ``mem_mib``
    and ``batch``; ``arms`` is ``((arm, description), ...)``, the student
    first; the verdict (None when ``judged`` did not run) is
    ``r[judged] / r[student] <= target``."""
    base = r[arms[0][0]]['median_s']
    rows = [perf_row(alg, label, r[a]['batch'], desc, r[a]['median_s'],
                     r[a]['mem_mib'], base) for a, desc in arms if a in r]
    verdict = (judge(what, r[judged]['median_s'] / base, target)
               if judged in r else None)
    return rows, verdict


def cycle_order(keys, c: int) -> list:
    """The arms' order in interleaved cycle ``c``: the rows of a Williams
    design (a Latin square balanced for first-order carry-over; Williams,
    1949), taken in turn. Row ``r`` of ``n`` arms is
    ``(base[j] + r) mod n`` with ``base = 0, 1, n-1, 2, n-2, ...``; for odd
    ``n`` the reversed rows follow, 2n rows in all. Over every full block
    of rows each arm runs once in every position and right after every
    other arm equally often, so that the state one arm leaves behind
    (caches, allocator) does not always fall on the same next arm, as it
    does when one order is only rotated."""
    keys = list(keys)
    n = len(keys)
    if n < 2:
        return keys
    base, lo, hi = [0], 1, n - 1
    while len(base) < n:
        base.append(lo)
        lo += 1
        if len(base) < n:
            base.append(hi)
            hi -= 1
    rows = [[(b + r) % n for b in base] for r in range(n)]
    if n % 2:
        rows += [row[::-1] for row in rows]
    return [keys[i] for i in rows[c % len(rows)]]


def median_ci(values, level: float = 0.95) -> tuple:
    """A distribution-free confidence interval of the median of
    ``values``: the order statistics ``(x_(j), x_(n+1-j))`` (1-based, sorted)
    with the largest ``j`` such that ``P(Binomial(n, 1/2) < j) <= (1 -
    level) / 2``; their coverage is at least ``level``. With too few values
    for that (n < 6 at 95 %) the whole range ``(min, max)``."""
    import math
    x = sorted(values)
    n = len(x)
    if not n:
        raise ValueError('median_ci: no values')
    tail = (1 - level) / 2
    j, cum = 0, 0.0  # cum = P(B < j + 1) as j grows
    while j < n // 2:
        cum += math.comb(n, j) / 2 ** n
        if cum > tail:
            break
        j += 1
    if j == 0:
        return x[0], x[-1]
    return x[j - 1], x[n - j]
