"""benchmarks/performance_table.py: the ratios and verdicts it derives
from each step-time benchmark's JSON, checked by hand (the benchmarks
themselves run outside the tests)."""
import os.path as osp
import sys

import pytest

from helpers.paths import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks'))
import performance_table as pt  # noqa: E402


def test_kdep_ratio_is_kdep_over_student_plus_teacher_cpu():
    data = {'cifar@student': dict(median_cpu_s=0.4, mem_mib=10),
            'cifar@teacher': dict(median_cpu_s=0.2, mem_mib=2),
            'cifar@kdep': dict(median_cpu_s=0.66, mem_mib=12)}
    rows, (ratio, target, verdict) = pt.rows_and_verdict(
        'kdep', data, pt.BENCHES['kdep'][1])
    assert ratio == pytest.approx(1.1) and target == 1.05
    assert verdict == 'NOT MET'
    assert len(rows) == 3
    # images/s = batch 64 / step; x student = 0.66 / 0.4
    assert '| 0.660 (CPU s) | 97.0 | 12 | 1.65 |' in rows[2]


def test_store_ratios_and_dmae_truncated_over_full():
    tcs = {f'cifar/{a}': dict(summary=dict(median_s=t, mem_mib=5, batch=128))
           for a, t in (('student', 1.0), ('tcs_store', 1.04),
                        ('tcs_online', 2.0))}
    _, (ratio, _, verdict) = pt.rows_and_verdict('tcs', tcs, [])
    assert ratio == pytest.approx(1.04) and verdict == 'MET'
    ens = {f'cifar@{a}': dict(median_s=t, mem_mib=5, batch=32)
           for a, t in (('student', 0.5), ('online', 0.6), ('store', 0.56))}
    rows, (ratio, target, verdict) = pt.rows_and_verdict('ensemble', ens,
                                                         [])
    assert ratio == pytest.approx(1.12) and target == 1.10
    assert verdict == 'NOT MET'
    assert '| 0.560 (wall s) | 57.1 | 5 | 1.12 |' in rows[2]
    dmae = {f'{a}@75': dict(median_s=t, mem_mib=5)
            for a, t in (('mae', 10.0), ('truncated', 13.0),
                         ('full', 20.0))}
    rows, (ratio, _, verdict) = pt.rows_and_verdict(
        'dmae', dmae, ['--batch-size', '16', '--ratios', '75'])
    assert ratio == pytest.approx(0.65) and verdict == 'MET'
    assert '| 16 |' in rows[0] and rows[1].endswith('| 1.30 |')
    assert rows[2].endswith('| 2.00 |')


def test_dmae_paired_run_gives_step_times_and_the_ratio():
    # memory from the per-arm processes, times from the paired run; the
    # verdict is the median of the per-cycle truncated/full ratios
    dmae = {f'{a}@75': dict(median_s=99.0, mem_mib=m)
            for a, m in (('mae', 1), ('truncated', 2), ('full', 3))}
    dmae['paired@75'] = dict(cycles=3, times=dict(
        mae=[10.0, 12.0, 11.0], truncated=[12.0, 18.0, 13.0],
        full=[16.0, 20.0, 13.0]))
    rows, (ratio, _, verdict) = pt.rows_and_verdict(
        'dmae', dmae, pt.BENCHES['dmae'][1])
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


def test_unknown_benchmark_refused(capsys):
    with pytest.raises(SystemExit):
        pt.parse_args(['--only', 'kdep,nope'])
    assert "unknown benchmark(s) ['nope']" in capsys.readouterr().err
