#!/usr/bin/env python
"""One run, one table: training-step time, images/s and peak memory of
every algorithm against its student-only step (issue 7's performance
table), on the same machine in the same run.

It runs the four step-time benchmarks one after the other, each with its
arms in fresh, interleaved subprocesses, and writes their numbers into one
markdown page (default ``docs/performance.md``) with the targets:

==========  ======================================  =====================
algorithm   ratio judged                            target
==========  ======================================  =====================
KDEP        online KDEP / (student + teacher fwd)   <= 1.05
TCS         TCS from the store / student            <= 1.10
ensemble    ensemble from the store / student       <= 1.10
DMAE        truncated teacher / full teacher        <= 0.85 (75% masking)
==========  ======================================  =====================

Settings: the CIFAR ones for KDEP, TCS and the ensemble (ResNet-56
teacher, ResNet-20 / DeiT-Tiny-width students, 32 px), ViT-B from ViT-L at
224 px for DMAE (no smaller setting tells anything about truncation).
Weights are random: time does not depend on values.

DMAE runs with one torch thread (with two, OpenMP stragglers on a 2-core
machine moved its median ratio between 0.68 and 0.94 from run to run), and
its ratio is the median of per-cycle ratios of a paired run: the three arms
in one process, one step of each per cycle (docs/dmae.md).

Run it on an otherwise idle machine (about 20 minutes on 2 CPU cores)::

    python benchmarks/performance_table.py
    python benchmarks/performance_table.py --only kdep,ensemble --out /tmp/p.md
"""
import argparse
import json
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
HERE = osp.join(REPO, 'benchmarks')

# name -> (script, arguments, target ratio, what the ratio is)
BENCHES = dict(
    kdep=('kdep_step_time.py', ['--settings', 'cifar', '--steps', '5'],
          1.05, 'online KDEP / (student + teacher forward), CPU time'),
    tcs=('tcs_step_time.py', ['--settings', 'cifar'],
         1.10, 'TCS from the store / student'),
    ensemble=('ensemble_step_time.py',
              ['--batch-size', '32', '--steps', '5', '--warmup', '2',
               '--rounds', '3'],
              1.10, 'ensemble from the store / ViT student'),
    dmae=('dmae_step_time.py', ['--batch-size', '16', '--ratios', '75',
                                '--steps', '1', '--threads', '1',
                                '--paired', '10'],
          0.85, 'DMAE truncated teacher / full teacher, 75% masking'),
)


def _row(alg, setting, batch, arm, step_s, mem, base_s, clock):
    ips = batch / step_s if step_s else float('nan')
    return (f'| {alg} | {setting} | {batch} | {arm} | {step_s:.3f} '
            f'({clock}) | {ips:.1f} | {mem:.0f} | {step_s / base_s:.2f} |')


def rows_and_verdict(name, data, bench_args):
    """Table rows (student first) and (ratio, target, verdict) of one
    benchmark's JSON."""
    _, _, target, _ = BENCHES[name]
    rows = []
    if name == 'kdep':
        r = {a: data[f'cifar@{a}'] for a in ('student', 'teacher', 'kdep')}
        b = 64
        base = r['student']['median_cpu_s']
        for arm, label in (('student', 'student step alone'),
                           ('teacher', 'teacher forward alone'),
                           ('kdep', 'online KDEP step')):
            rows.append(_row('KDEP', 'CIFAR R56->R20, 32 px', b, label,
                             r[arm]['median_cpu_s'], r[arm]['mem_mib'], base,
                             'CPU s'))
        ratio = r['kdep']['median_cpu_s'] / (
            r['student']['median_cpu_s'] + r['teacher']['median_cpu_s'])
    elif name == 'tcs':
        r = {a: data[f'cifar/{a}']['summary']
             for a in ('student', 'tcs_store', 'tcs_online')}
        base = r['student']['median_s']
        for arm, label in (('student', 'student step alone (CE)'),
                           ('tcs_store', 'TCS, teacher features stored'),
                           ('tcs_online', 'TCS, teacher online')):
            rows.append(_row('TCS', 'CIFAR R56->R20, 32 px',
                             r[arm]['batch'], label, r[arm]['median_s'],
                             r[arm]['mem_mib'], base, 'wall s'))
        ratio = r['tcs_store']['median_s'] / base
    elif name == 'ensemble':
        r = {a: data[f'cifar@{a}'] for a in ('student', 'online', 'store')}
        base = r['student']['median_s']
        for arm, label in (('student', 'ViT student alone (DeiT, CE)'),
                           ('online', 'ensemble, 2 teachers online'),
                           ('store', 'ensemble, teacher logits stored')):
            rows.append(_row('ensemble', 'CIFAR DeiT-Ti width, 32 px',
                             r[arm]['batch'], label, r[arm]['median_s'],
                             r[arm]['mem_mib'], base, 'wall s'))
        ratio = r['store']['median_s'] / base
    else:
        # step times and the ratio from the paired run (all arms in one
        # process, steps interleaved) when there is one; memory from the
        # fresh process of each arm
        r = {a: data[f'{a}@75'] for a in ('mae', 'truncated', 'full')}
        paired = data.get('paired@75')
        step = {a: (statistics.median(paired['times'][a]) if paired
                    else r[a]['median_s']) for a in r}
        b = int(bench_args[bench_args.index('--batch-size') + 1])
        for arm, label in (('mae', 'ViT-B MAE alone'),
                           ('truncated', 'DMAE, ViT-L truncated (18 blocks)'),
                           ('full', 'DMAE, full ViT-L + decoder')):
            rows.append(_row('DMAE', 'ViT-B from ViT-L, 224 px, 75%', b,
                             label, step[arm], r[arm]['mem_mib'],
                             step['mae'], 'wall s'))
        if paired:
            from dmae_step_time import paired_ratio
            ratio = paired_ratio(paired['times'])['median']
        else:
            ratio = step['truncated'] / step['full']
    return rows, (ratio, target, 'MET' if ratio <= target else 'NOT MET')


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    p.add_argument('--only', help='comma-separated subset of '
                   + ','.join(BENCHES) + ' (default: all)')
    p.add_argument('--out', default=osp.join(REPO, 'docs', 'performance.md'),
                   help='markdown page to write [docs/performance.md]')
    args = p.parse_args(argv)
    names = args.only.split(',') if args.only else list(BENCHES)
    bad = [n for n in names if n not in BENCHES]
    if bad:
        p.error(f'--only: unknown benchmark(s) {bad}; choose from '
                f'{list(BENCHES)}')
    args.names = names
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    t0, load0 = time.time(), os.getloadavg()
    rows, verdicts, logs = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.names:
            script, bargs, target, what = BENCHES[name]
            jpath = osp.join(tmp, f'{name}.json')
            cmd = [sys.executable, osp.join(HERE, script), *bargs,
                   '--json', jpath]
            print(f'[performance_table] {name}: {" ".join(cmd[1:])}',
                  flush=True)
            t1 = time.time()
            proc = subprocess.run(cmd, cwd=REPO, capture_output=True,
                                  text=True)
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout + proc.stderr)
                raise SystemExit(f'{script} failed (exit {proc.returncode})')
            with open(jpath) as fh:
                data = json.load(fh)
            r, v = rows_and_verdict(name, data, bargs)
            rows += r
            verdicts.append((name, what, *v))
            logs.append((name, ' '.join(['python', f'benchmarks/{script}',
                                         *bargs]), proc.stdout.strip(),
                         time.time() - t1))
            print(f'[performance_table] {name}: {v[0]:.3f} (target '
                  f'<= {v[1]:.2f}) -> {v[2]}, {time.time() - t1:.0f} s',
                  flush=True)
    load1 = os.getloadavg()
    import torch
    L = ['# Performance: every algorithm against its student step', '',
         'Generated by `python benchmarks/performance_table.py` '
         f'({time.strftime("%Y-%m-%d %H:%M")}, {time.time() - t0:.0f} s). '
         f'Machine: {platform.machine()}, {os.cpu_count()} CPU cores '
         f'visible, torch {torch.__version__}, CPU; 1-min load average '
         f'{load0[0]:.2f} at the start, {load1[0]:.2f} at the end. '
         'One training step = forward + backward + optimizer step; '
         'medians over the timed steps of fresh, interleaved processes per '
         'arm (DMAE: medians of a paired run, the arms\' steps interleaved '
         'in one process); random weights. Peak memory = growth of the '
         'process\'s peak RSS over its value after the build. KDEP is timed in CPU seconds '
         'of a 1-thread process (its target adds two arms measured apart, '
         'which the load of a shared machine would skew), the others in '
         'wall seconds.', '',
         '| algorithm | setting | batch | arm | step (s) | images/s | '
         'peak mem (MiB) | x student step |',
         '|---|---|---:|---|---:|---:|---:|---:|', *rows, '',
         '| algorithm | ratio | measured | target | verdict |',
         '|---|---|---:|---:|---|']
    for name, what, ratio, target, verdict in verdicts:
        L.append(f'| {name} | {what} | {ratio:.3f} | <= {target:.2f} | '
                 f'**{verdict}** |')
    L += ['', 'Each benchmark\'s own output (the per-algorithm pages '
          'explain the arms: docs/kdep.md, docs/tcs.md, docs/ensemble.md, '
          'docs/dmae.md):', '']
    for name, cmd, out, secs in logs:
        L += [f'<details><summary>{name}: <code>{cmd}</code> '
              f'({secs:.0f} s)</summary>', '', out, '', '</details>', '']
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    atomic_write_bytes(('\n'.join(L) + '\n').encode(), args.out)
    print(f'[performance_table] wrote {args.out}')
    return 0 if all(v[4] == 'MET' for v in verdicts) else 1


if __name__ == '__main__':
    if REPO not in sys.path:
        sys.path.insert(0, REPO)
    sys.exit(main())
