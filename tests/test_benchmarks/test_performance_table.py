"""benchmarks/performance_table.py and the benchmarks' ``perf_rows``: the
rows, ratios and verdicts derived from each step-time benchmark's JSON,
checked by hand; the run plan of the GPU table, the time budget's
timeouts, and a benchmark stopped at its time limit (the benchmarks'
own runs are in test_gpu_check.py)."""
import os.path as osp
import sys

import pytest

from helpers.paths import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks'))
import _step_bench as sb  # noqa: E402
import performance_table as pt  # noqa: E402


def test_judge_both_comparisons():
    assert sb.judge('a', 1.04, 1.05) == ('a', 1.04, 1.05, '<=', 'MET')
    assert sb.judge('a', 1.06, 1.05)[4] == 'NOT MET'
    # e.g. bf16 step >= 1.8 x fp32 (speed-up), throughput >= 0.95 x plain
    assert sb.judge('b', 1.9, 1.8, '>=')[3:] == ('>=', 'MET')
    assert sb.judge('b', 1.7, 1.8, '>=')[4] == 'NOT MET'
    assert sb.judge('', 1.05, 1.05)[4] == 'MET'  # the bounds are targets
    assert sb.judge('', 1.8, 1.8, '>=')[4] == 'MET'
    with pytest.raises(ValueError, match='comparison'):
        sb.judge('c', 1.0, 1.0, '<')


def test_arg_value_takes_the_last():
    args = ['--amp', 'fp32', '--batch-size', '16', '--amp', 'bf16']
    assert sb.arg_value(args, '--amp') == 'bf16'
    assert sb.arg_value(args + ['--img-size=32'], '--img-size') == '32'
    assert sb.arg_value(args, '--steps', 3) == 3


def test_kdep_perf_rows_through_the_table():
    # kdep_step_time's own perf_rows (Helper K), on a hand-made setting:
    # per-cycle CPU seconds of three interleaved arms in fp32 and bf16
    import kdep_step_time as ks
    assert ks.gpu_args() == ks.GPU_ARGS and '--amp' in ks.GPU_ARGS

    def arm(cpu, mem):
        return dict(cpu=cpu, median_cpu_s=sorted(cpu)[1],
                    median_wall_s=sorted(cpu)[1], mem_mib=mem)

    sd = dict(desc='CIFAR', batch=64, clock='cpu', amps=['fp32', 'bf16'],
              arm_list=['student', 'teacher', 'kdep'], skipped=[], arms={
                  'student/fp32': arm([0.4, 0.4, 0.4], 10),
                  'teacher/fp32': arm([0.2, 0.2, 0.2], 5),
                  'kdep/fp32': arm([0.6, 0.66, 0.63], 15),
                  'student/bf16': arm([0.2, 0.2, 0.2], 10),
                  'teacher/bf16': arm([0.1, 0.1, 0.1], 5),
                  'kdep/bf16': arm([0.3, 0.3, 0.36], 18)})
    rows, verdicts = pt.perf_rows('kdep', dict(settings=dict(cifar=sd)),
                                  ks.PERF_ARGS)
    assert len(rows) == 6
    # the timing verdicts name their median's interval (3 cycles: the range)
    got = {what.split(' (95% CI')[0]: (m, t, c, v)
           for what, m, t, c, v in verdicts}
    assert any(w.endswith('(95% CI of the median 1.000-1.100)')
               for w, *_ in verdicts)
    # per cycle 0.6/0.6, 0.66/0.6, 0.63/0.6 -> median 1.05
    online = ': online KDEP / (student + teacher forward)'
    assert got['CIFAR, fp32' + online][0] == pytest.approx(1.05)
    assert got['CIFAR, bf16' + online] == (pytest.approx(1.0), 1.05, '<=',
                                           'MET')
    # peak memory: 15 / (10 + 5) and 18 / 15
    mem = ': peak memory kdep / (student + teacher forward)'
    assert got['CIFAR, fp32' + mem][0] == pytest.approx(1.0)
    assert got['CIFAR, bf16' + mem][0] == pytest.approx(1.2)
    assert got['CIFAR, bf16' + mem][3] == 'NOT MET'
    # bf16 / fp32 throughput per cycle 2.0, 2.2, 1.75 -> 2.0 >= 1.8
    [bf16] = [v for v in verdicts if 'bf16 KDEP / fp32 KDEP' in v[0]]
    assert bf16[1:] == (pytest.approx(2.0), 1.8, '>=', 'MET')


def _tcs(times, settings=('cifar', )):
    return {f'{s}/{a}': dict(summary=dict(median_s=t * (1 + i), mem_mib=5,
                                          batch=128))
            for i, s in enumerate(settings)
            for a, t in zip(('student', 'tcs_store', 'tcs_online'), times)}


def test_tcs_store_over_student_one_verdict_per_setting():
    rows, verdicts = pt.perf_rows('tcs', _tcs((1.0, 1.04, 2.0)), [])
    [(what, ratio, target, cmp, verdict)] = verdicts
    assert ratio == pytest.approx(1.04) and verdict == 'MET'
    assert (target, cmp) == (1.10, '<=') and 'cifar, fp32' in what
    # images/s = 128 / 1.04; x student = 1.04 / 1.0
    assert rows[1].endswith('| 1.040 (wall s) | 123.1 | 5 | 1.04 |')
    # two settings (in1k's times doubled: same ratios), bf16 in the labels
    rows, verdicts = pt.perf_rows('tcs', _tcs((1.0, 1.2, 2.0),
                                              ('cifar', 'in1k')),
                                  ['--settings', 'cifar,in1k', '--amp',
                                   'bf16'])
    assert len(rows) == 6 and len(verdicts) == 2
    assert [v[4] for v in verdicts] == ['NOT MET', 'NOT MET']
    assert verdicts[1][1] == pytest.approx(1.2)
    assert 'ImageNet R50->R18, 224 px, bf16' in rows[3]
    assert rows[5].endswith('| 4.000 (wall s) | 32.0 | 5 | 2.00 |')


def test_tcs_paired_run_gives_step_times_and_the_ratio():
    # memory and batch from the per-arm processes, step times from the
    # paired run (per-arm medians), the verdict the median of the per-cycle
    # store / student ratios (the ratio of the medians, 1.2, would fail)
    import tcs_step_time as ts
    assert '--paired' in ts.PERF_ARGS and '--paired' in ts.GPU_ARGS
    assert '--paired' in ts.SMOKE_ARGS
    data = {f'cifar/{a}': dict(summary=dict(median_s=99.0, mem_mib=m,
                                            batch=128))
            for a, m in (('student', 1), ('tcs_store', 2),
                         ('tcs_online', 3))}
    data['cifar/paired'] = dict(cycles=3, times=dict(
        student=[1.0, 1.0, 1.2], tcs_store=[1.05, 1.2, 1.2],
        tcs_online=[2.0, 2.2, 2.4]))
    rows, [(what, ratio, target, cmp, verdict)] = pt.perf_rows(
        'tcs', data, ts.PERF_ARGS)
    # per cycle 1.05, 1.2, 1.0 -> median 1.05
    assert ratio == pytest.approx(1.05) and verdict == 'MET'
    assert (target, cmp) == (1.10, '<=') and 'cifar, fp32' in what
    assert rows[0].endswith('| 1.000 (wall s) | 128.0 | 1 | 1.00 |')
    assert rows[1].endswith('| 1.200 (wall s) | 106.7 | 2 | 1.20 |')
    assert rows[2].endswith('| 2.200 (wall s) | 58.2 | 3 | 2.20 |')
    pr = ts.paired_ratio(data['cifar/paired']['times'])
    assert (pr['min'], pr['max']) == (pytest.approx(1.0), pytest.approx(1.2))
    assert pr['of_sums'] == pytest.approx(3.45 / 3.2)


def test_tcs_smoke_run_writes_the_paired_timing(tmp_path):
    # SMOKE_ARGS: the per-arm processes (memory) and one paired process of
    # 2 cycles; perf_rows judges the paired run's per-cycle median
    import json
    import subprocess

    import tcs_step_time as ts
    out = tmp_path / 'tcs.json'
    r = subprocess.run([sys.executable, osp.join(REPO, 'benchmarks',
                                                 'tcs_step_time.py'),
                        *ts.SMOKE_ARGS, '--json', str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    data = json.loads(out.read_text())
    p = data['cifar/paired']
    assert p['cycles'] == 2 and p['batch'] == 4 and p['threads'] == 1
    for a in ts.ARMS:
        assert len(p['times'][a]) == 2 and len(p['cpu_times'][a]) == 2
        assert all(t > 0 for t in p['times'][a])
        assert data[f'cifar/{a}']['summary']['mem_mib'] >= 0
    rows, [v] = pt.perf_rows('tcs', data, ts.SMOKE_ARGS)
    assert len(rows) == 3
    assert v[1] == pytest.approx(ts.paired_ratio(p['times'])['median'])
    assert 'Paired timing: one process per setting' in r.stdout
    assert 'median per-cycle ratio of the paired run' in r.stdout


def test_ensemble_store_over_student():
    ens = {f'cifar@{a}': dict(median_s=t, mem_mib=5, batch=32)
           for a, t in (('student', 0.5), ('online', 0.6), ('store', 0.56))}
    rows, [(_, ratio, target, _, verdict)] = pt.perf_rows('ensemble', ens,
                                                          [])
    assert ratio == pytest.approx(1.12) and target == 1.10
    assert verdict == 'NOT MET'
    assert '| 0.560 (wall s) | 57.1 | 5 | 1.12 |' in rows[2]


def test_ensemble_paired_run_gives_step_times_and_the_ratio():
    # memory from the per-arm processes, step times from the paired run;
    # the verdict is the median of the per-cycle store/student ratios
    import ensemble_step_time as es
    assert '--paired' in es.PERF_ARGS and '--paired' in es.GPU_ARGS
    assert sb.arg_value(es.GPU_ARGS, '--batch-size') == '128'
    ens = {f'cifar@{a}': dict(median_s=99.0, mem_mib=m, batch=32)
           for a, m in (('student', 1), ('online', 2), ('store', 3))}
    ens['cifar@paired'] = dict(cycles=3, times=dict(
        student=[0.5, 0.6, 0.4], online=[0.6, 0.7, 0.5],
        store=[0.52, 0.69, 0.5]))
    rows, [(what, ratio, target, cmp, verdict)] = pt.perf_rows(
        'ensemble', ens, es.PERF_ARGS)
    # per cycle 1.04, 1.15, 1.25 -> 1.15 (the medians' ratio: 1.04)
    assert ratio == pytest.approx(1.15) and verdict == 'NOT MET'
    assert (target, cmp) == (1.10, '<=') and '(cifar, fp32)' in what
    assert rows[0].endswith('| 0.500 (wall s) | 64.0 | 1 | 1.00 |')
    assert rows[1].endswith('| 0.600 (wall s) | 53.3 | 2 | 1.20 |')
    assert rows[2].endswith('| 0.520 (wall s) | 61.5 | 3 | 1.04 |')
    pr = es.paired_ratio(ens['cifar@paired']['times'])
    assert (pr['min'], pr['max']) == (pytest.approx(1.04),
                                      pytest.approx(1.25))
    # faster cycles of the store arm: MET
    ens['cifar@paired']['times']['store'] = [0.5, 0.63, 0.6]
    [v] = pt.perf_rows('ensemble', ens, es.PERF_ARGS)[1]
    assert v[1] == pytest.approx(1.05) and v[4] == 'MET'


@pytest.mark.slow
def test_ensemble_smoke_run_times_the_arms_paired(tmp_path):
    import json
    import math
    import subprocess
    import ensemble_step_time as es
    out = tmp_path / 'ens.json'
    r = subprocess.run([sys.executable,
                        osp.join(REPO, 'benchmarks', 'ensemble_step_time.py'),
                        *es.SMOKE_ARGS, '--json', str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    data = json.loads(out.read_text())
    p = data['cifar@paired']
    n = int(sb.arg_value(es.SMOKE_ARGS, '--paired'))
    assert p['cycles'] == n and p['arms'] == list(es.ARMS)
    for a in es.ARMS:
        assert len(p['times'][a]) == len(p['cpu_times'][a]) == n
        assert min(p['times'][a]) > 0 and math.isfinite(p['losses'][a])
        assert data[f'cifar@{a}']['mem_mib'] >= 0  # the per-arm process
    assert 'Paired timing' in r.stdout
    assert 'median per-cycle ratio of the paired run' in r.stdout
    [v] = pt.perf_rows('ensemble', data, es.SMOKE_ARGS)[1]
    assert v[1] == pytest.approx(es.paired_ratio(p['times'])['median'])


def test_dmae_truncated_over_full_per_arm_processes():
    dmae = {f'{a}@75': dict(median_s=t, mem_mib=5)
            for a, t in (('mae', 10.0), ('truncated', 13.0),
                         ('full', 20.0))}
    rows, [(_, ratio, target, _, verdict)] = pt.perf_rows(
        'dmae', dmae, ['--batch-size', '16', '--ratios', '75'])
    assert ratio == pytest.approx(0.65) and verdict == 'MET'
    assert target == 0.85
    assert '| 16 |' in rows[0] and rows[1].endswith('| 1.30 |')
    assert rows[2].endswith('| 2.00 |') and '224 px, 75%, fp32' in rows[0]


def test_dmae_paired_run_gives_step_times_and_the_ratio():
    # memory from the per-arm processes, times from the paired run; the
    # verdict is the median of the per-cycle truncated/full ratios
    import dmae_step_time as ds
    dmae = {f'{a}@75': dict(median_s=99.0, mem_mib=m)
            for a, m in (('mae', 1), ('truncated', 2), ('full', 3))}
    dmae['paired@75'] = dict(cycles=3, times=dict(
        mae=[10.0, 12.0, 11.0], truncated=[12.0, 18.0, 13.0],
        full=[16.0, 20.0, 13.0]))
    rows, [(_, ratio, _, _, verdict)] = pt.perf_rows('dmae', dmae,
                                                     ds.PERF_ARGS)
    # per cycle 0.75, 0.9, 1.0 -> median 0.9
    assert ratio == pytest.approx(0.9) and verdict == 'NOT MET'
    assert '| 13.000 (wall s) | 1.2 | 2 | 1.18 |' in rows[1]
    assert rows[0].endswith('| 11.000 (wall s) | 1.5 | 1 | 1.00 |')


def test_paired_ratio_median_quartiles_and_sums():
    import dmae_step_time as ds
    t = dict(truncated=[8.0, 9.0, 10.0, 30.0], full=[10.0, 10.0, 10.0, 10.0])
    pr = ds.paired_ratio(t)
    assert pr['per_cycle'] == pytest.approx([0.8, 0.9, 1.0, 3.0])
    assert pr['median'] == pytest.approx(0.95)
    assert pr['of_sums'] == pytest.approx(57 / 40)
    assert pr['q1'] <= pr['median'] <= pr['q3']


def test_a_malformed_verdict_is_refused(monkeypatch):
    import tcs_step_time as ts
    monkeypatch.setattr(ts, 'perf_rows',
                        lambda d, a: ([], [('x', 1.0, 1.1, '<', 'MET')]))
    with pytest.raises(ValueError, match='verdict must be'):
        pt.perf_rows('tcs', {}, [])


def test_gpu_plan_fp32_first_and_kdep_with_its_own_precisions(monkeypatch):
    import kdep_step_time as ks
    monkeypatch.setattr(ks, 'GPU_ARGS', ['--settings', 'in1k', '--amp',
                                         'fp32,bf16'], raising=False)
    monkeypatch.setattr(ks, 'gpu_args', None, raising=False)
    args = pt.parse_args(['--gpu'])
    assert args.device == 'cuda' and args.out.endswith(
        'docs/performance_gpu.md')
    plan = pt.plan_runs(args)
    assert [(n, a) for n, a, _, _ in plan] == [
        ('kdep', 'fp32,bf16'), ('tcs', 'fp32'), ('ensemble', 'fp32'),
        ('dmae', 'fp32'), ('tcs', 'bf16'), ('ensemble', 'bf16'),
        ('dmae', 'bf16')]
    kdep_args = plan[0][2]
    assert kdep_args[-2:] == ['--device', 'cuda'] and '--amp' in kdep_args
    dmae_bf16 = plan[-1][2]
    assert sb.arg_value(dmae_bf16, '--batch-size') == '64'
    assert dmae_bf16[-4:] == ['--device', 'cuda', '--amp', 'bf16']
    tcs = plan[1][2]
    assert sb.arg_value(tcs, '--settings') == 'in1k'
    assert sb.arg_value(tcs, '--in1k-batch') == '128'
    ens = plan[2][2]
    assert sb.arg_value(ens, '--settings') == 'in1k'
    assert sb.arg_value(ens, '--batch-size') == '128'


def test_cpu_plan_passes_device_amp_and_channels_last():
    args = pt.parse_args(['--only', 'tcs,dmae', '--amp', 'bf16',
                          '--channels-last'])
    plan = pt.plan_runs(args)
    assert [(n, a) for n, a, _, _ in plan] == [('tcs', 'bf16'),
                                               ('dmae', 'bf16')]
    import dmae_step_time as ds
    assert plan[1][2] == ds.PERF_ARGS + ['--device', 'cpu',
                                         '--channels-last', '--amp', 'bf16']


def test_smoke_plan_lists_a_benchmark_without_smoke_args(monkeypatch):
    import kdep_step_time as ks
    monkeypatch.delattr(ks, 'SMOKE_ARGS', raising=False)
    plan = pt.plan_runs(pt.parse_args(['--gpu', '--smoke', '--amps',
                                       'bf16']))
    assert plan[-1][:3] == ('kdep', '-', None)
    assert 'has no SMOKE_ARGS' in plan[-1][3]
    assert [(n, a) for n, a, _, _ in plan[:-1]] == [
        ('tcs', 'bf16'), ('ensemble', 'bf16'), ('dmae', 'bf16')]
    assert all(p[2][p[2].index('--device') + 1] == 'cpu' for p in plan[:-1])


def test_timeouts_keep_a_floor_for_each_later_run(monkeypatch):
    monkeypatch.setattr(pt.time, 'time', lambda: 1000.0)
    # 205 s left, 5 s reserve, 2 runs after this one, 30 s each -> 140 s
    assert pt.run_timeout('kdep', 2, 1205.0, {}) == pytest.approx(140.0)
    assert pt.run_timeout('tcs', 0, 1205.0, {}) == pytest.approx(200.0)
    # 45 s left for 3 later runs: this one still gets its 30 s floor
    assert pt.run_timeout('tcs', 3, 1050.0, {}) == pytest.approx(30.0)
    assert pt.run_timeout('tcs', 3, 1050.0, {}, floor=10.0) == \
        pytest.approx(15.0)
    assert pt.run_timeout('tcs', 0, 1205.0, {'tcs': 30.0}) == 30.0
    assert pt.run_timeout('tcs', 1, None, {}) is None
    assert pt.run_timeout('tcs', 0, 1010.0, {}) == pytest.approx(5.0)
    assert pt.run_timeout('tcs', 0, 1002.0, {}) == 1.0  # overdue


def test_render_shows_ge_verdicts_and_what_did_not_run(monkeypatch):
    monkeypatch.setattr(pt, 'machine_line', lambda device: 'M')
    args = pt.parse_args(['--gpu', '--only', 'kdep,tcs'])
    args.argv = ['--gpu', '--only', 'kdep,tcs']
    res = [dict(name='kdep', amp='fp32,bf16', rows=['| KDEP | row |'],
                verdicts=[sb.judge('bf16 / fp32 KDEP throughput', 1.9, 1.8,
                                   '>=')],
                cmd='python benchmarks/kdep_step_time.py', stdout='out',
                stderr='', secs=3.0, status='ok', why=None),
           dict(name='tcs', amp='bf16', rows=[], verdicts=[], cmd='c',
                stdout='', stderr='Traceback\nboom', secs=9.0,
                status='timed out', why='stopped at its time limit (9 s) '
                'before it finished')]
    page = pt.render(args, res, pt.time.time(), (1.0, ), (2.0, ))
    assert page.startswith('# Performance on a GPU')
    assert 'Machine: M. Device: cuda. Precision: fp32, bf16' in page
    assert ('| kdep | bf16 / fp32 KDEP throughput | 1.900 | >= 1.80 | '
            '**MET** |') in page
    assert '- **tcs (bf16)**: stopped at its time limit (9 s)' in page
    assert '    boom' in page and '| KDEP | row |' in page
    assert 'max_memory_allocated' in page


def test_a_benchmark_past_its_time_is_stopped_and_listed(tmp_path):
    out = tmp_path / 'p.md'
    rc = pt.main(['--gpu', '--smoke', '--only', 'tcs', '--amps', 'fp32',
                  '--timeout', 'tcs=2', '--out', str(out)])
    assert rc == 1
    page = out.read_text()
    assert page.startswith('**SMOKE RUN**')
    assert '- **tcs (fp32)**: stopped at its time limit (2 s)' in page
    assert ' s, timed out)</summary>' in page


def test_a_kept_run_is_reused_not_rerun(tmp_path, monkeypatch):
    argv = ['--gpu', '--smoke', '--only', 'tcs', '--amps', 'fp32',
            '--results-dir', str(tmp_path / 'kept'), '--timeout', 'tcs=1',
            '--out', str(tmp_path / 'p.md')]
    [(name, amp, bargs, _)] = pt.plan_runs(pt.parse_args(argv))
    pt.keep(str(tmp_path / 'kept'), name, amp, bargs,
            _tcs((1.0, 1.05, 2.0)), 'the earlier output', 12.0)
    # a kept run of other arguments, or of other code, is not reused
    assert pt.load_kept(str(tmp_path / 'kept'), name, amp, bargs[:-1]) is None
    assert pt.load_kept(str(tmp_path / 'kept'), name, amp, bargs)
    monkeypatch.setattr(pt, 'code_digest', lambda: 'other code')
    assert pt.load_kept(str(tmp_path / 'kept'), name, amp, bargs) is None
    monkeypatch.undo()
    assert pt.main(argv) == 0  # not rerun: a 1 s timeout would stop it
    page = (tmp_path / 'p.md').read_text()
    assert '| TCS from the store / student step (cifar, fp32) | 1.050 |' \
        in page
    assert '(12 s, ok, kept from an earlier run)' in page
    assert 'the earlier output' in page


def test_bad_options_refused(capsys):
    for argv, msg in ((['--only', 'kdep,nope'],
                       "unknown benchmark(s) ['nope']"),
                      (['--smoke'], '--smoke: only with --gpu'),
                      (['--gpu', '--amps', 'fp16'], '--amps'),
                      (['--gpu', '--amp', 'bf16'], 'use --amps'),
                      (['--timeout', 'tcs'], 'NAME=SECONDS'),
                      (['--timeout', 'foo=3'], "unknown benchmark 'foo'"),
                      (['--budget-s', '0'], '--budget-s')):
        with pytest.raises(SystemExit):
            pt.parse_args(argv)
        assert msg in capsys.readouterr().err, argv
