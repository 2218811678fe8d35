"""benchmarks/kdep_step_time.py: its ratio and verdict math on hand-made
numbers, the plain loop doing the same work as ``KDEPDistiller.loss``,
bf16 losses that are finite and close to fp32's, and a smoke run of the
script (every arm; torchdistill's skipped with a message when .peers/ has
no torchdistill)."""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys

import pytest
import torch

from helpers.paths import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks'))
import kdep_step_time as kst  # noqa: E402

SCRIPT = osp.join(REPO, 'benchmarks', 'kdep_step_time.py')
HAVE_TD = osp.isdir(osp.join(REPO, '.peers', 'torchdistill'))


def test_median_ratios_per_cycle_and_verdicts():
    times = dict(kdep=[1.0, 2.0, 0.9], student=[0.5, 0.5, 0.5],
                 teacher=[0.5, 1.0, 0.5])
    # per cycle: 1.0 / 1.0, 2.0 / 1.5, 0.9 / 1.0 -> median 1.0 (not the
    # ratio of medians, 1.0 / 1.0 either: check with an asymmetric case)
    per = kst.cycle_ratios(times, 'slow', ('kdep', 'student', 'teacher'))
    assert per == pytest.approx([1.0, 2.0 / 1.5, 0.9])
    assert statistics.median(per) == pytest.approx(1.0)
    t2 = dict(a=[1.0, 3.0, 2.0], b=[2.0, 2.0, 3.0])
    # throughput of a over b per cycle: 2/1, 2/3, 3/2 -> median 1.5
    assert statistics.median(kst.cycle_ratios(t2, 'thru', ('a', 'b'))) == \
        pytest.approx(1.5)
    # slow a / b per cycle: 0.5, 1.5, 0.667 -> 0.667
    assert statistics.median(kst.cycle_ratios(t2, 'slow', ('a', 'b'))) == \
        pytest.approx(2 / 3)
    with pytest.raises(ValueError, match='slow or thru'):
        kst.cycle_ratios(t2, 'fast', ('a', 'b'))


def _arm(cpu, mem=None):
    return dict(cpu=list(cpu), wall=list(cpu), median_cpu_s=sorted(cpu)[1],
                median_wall_s=sorted(cpu)[1], mem_mib=mem)


def _setting():
    arms = {
        'student/fp32': _arm([0.4, 0.4, 0.4], 100),
        'teacher/fp32': _arm([0.3, 0.3, 0.3], 20),
        'kdep/fp32': _arm([0.7, 0.8, 0.7], 125),      # 1.0 .. 1.14 -> 1.0
        'kdep_store/fp32': _arm([0.44, 0.4, 0.4], 100),   # 1.0 -> MET
        'plain/fp32': _arm([0.7, 0.7, 0.7], 118),     # 0.875..1 -> 1.0
        'fitnets/fp32': _arm([0.7, 0.7, 0.7], 140),   # mem 140/120 > 1.1
        'td_fitnets/fp32': _arm([0.75, 0.75, 0.75], 120),
        'kdep/bf16': _arm([0.35, 0.4, 0.35], None),   # 2, 2, 2 -> 2.0
    }
    return dict(desc='S', batch=64, amps=['fp32', 'bf16'], clock='cpu',
                arm_list=['student', 'teacher', 'kdep', 'kdep_store',
                          'fitnets', 'plain', 'td_fitnets'],
                skipped=['td_kd'], arms=arms)


def test_setting_verdicts_by_hand():
    judged = kst.setting_verdicts(_setting())
    # every timing verdict names the 95% interval of its median (3 cycles:
    # too few for order statistics, so the range of the per-cycle ratios)
    timing = [w for w, *_ in judged if 'peak memory' not in w]
    assert timing and all('(95% CI of the median ' in w for w in timing)
    v = {what.split(' (95% CI')[0]: (m, t, cmp, verdict)
         for what, m, t, cmp, verdict in judged}
    # online KDEP / (student + teacher) per cycle: 1.0, 8/7, 1.0
    assert [w for w in timing if 'online KDEP /' in w][0].endswith(
        '(95% CI of the median 1.000-1.143)')
    m, t, cmp, verdict = v['S, fp32: online KDEP / (student + teacher '
                           'forward)']
    assert (m, t, cmp, verdict) == (pytest.approx(1.0), 1.05, '<=', 'MET')
    assert v['S, fp32: KDEP from the store / student'][0] == \
        pytest.approx(1.0)
    assert v['S, fp32: kdep_mm KDEP / plain loop, images/s'][0] == \
        pytest.approx(1.0)
    m, _, cmp, verdict = v['S, fp32: kdep_mm FitNets / torchdistill '
                           'FitNets, images/s']
    assert (m, cmp, verdict) == (pytest.approx(0.75 / 0.7), '>=', 'MET')
    # td_kd was skipped: no KD comparison; logit_kd did not run either
    assert not [w for w in v if 'torchdistill KD' in w]
    # memory: kdep 125 / (100 + 20) = 1.042 MET; fitnets 140 / 120 = 1.167
    m, t, _, verdict = v['S, fp32: peak memory kdep / (student + teacher '
                         'forward)']
    assert (m, t, verdict) == (pytest.approx(125 / 120), 1.1, 'MET')
    m, _, _, verdict = v['S, fp32: peak memory fitnets / (student + '
                         'teacher forward)']
    assert (m, verdict) == (pytest.approx(140 / 120), 'NOT MET')
    m, t, cmp, verdict = v['S: bf16 KDEP / fp32 KDEP, images/s']
    assert (m, t, cmp, verdict) == (pytest.approx(2.0), 1.8, '>=', 'MET')


def test_perf_rows_format():
    rows, verdicts = kst.perf_rows(dict(settings=dict(s=_setting())),
                                   kst.PERF_ARGS)
    assert len(rows) == 8 and all(r.startswith('| KDEP | S | 64 | ')
                                  for r in rows)
    # the student's row: 0.4 CPU s, 64 / 0.4 = 160 images/s, 100 MiB, 1.00
    assert rows[0].endswith('| 0.400 (CPU s) | 160.0 | 100 | 1.00 |')
    # online KDEP: median 0.7, x student 1.75; bf16 KDEP without memory
    assert '| 0.700 (CPU s) | 91.4 | 125 | 1.75 |' in rows[2]
    assert rows[-1].endswith('| 0.350 (CPU s) | 182.9 |  | nan |')
    assert all(len(v) == 5 and v[3] in ('<=', '>=') and
               v[4] in ('MET', 'NOT MET') for v in verdicts)
    assert kst.gpu_args()[kst.gpu_args().index('--device') + 1] == 'cuda'


def _shapes(cfg):
    from kdep_mm.registry import MODELS
    return {k: tuple(v.shape)
            for k, v in MODELS.build(cfg).state_dict().items()}


def test_fitnets_and_logit_kd_models_are_the_study_arms():
    from mmengine.config import Config
    b = kst.Built('cifar', 'cpu', False)
    mine = kst.fitnets_model(b.model_dict())
    study = Config.fromfile(osp.join(
        REPO, 'configs/study/pretrain/e_fitnets_10.py')).model.to_dict()
    assert mine['aligner']['type'] == study['aligner']['type']
    assert mine['distill_loss'] == study['distill_loss']
    # the same networks (the study states the default base_channels)
    assert _shapes(mine['student']) == _shapes(study['student'])
    assert mine['teacher'] == study['teacher']
    mine = kst.logit_kd_model(b.model_dict(), 10)
    study = Config.fromfile(osp.join(
        REPO, 'configs/study/pretrain/d_logit_kd_10.py')).model.to_dict()
    for k in ('type', 'num_classes', 'distill_loss', 'teacher'):
        assert mine[k] == study[k], k


def _plain(b, amp='fp32'):
    from peers.plain_loop import PlainKDEP
    k = b.kdep
    student, teacher = b.copies()
    return PlainKDEP(student, teacher.backbone, k.student_feature,
                     k.teacher_feature, k.aligner.mean, k.aligner.basis,
                     k.aligner.temperature, k.aligner.power,
                     k.distill_loss.loss_weight, amp=amp)


def test_plain_loop_loss_equals_kdep_distiller_loss():
    torch.set_num_threads(1)
    b = kst.Built('cifar', 'cpu', False)
    x = b.x[:16]
    online = b.kdep.loss(x)['loss_kd']
    plain = _plain(b).loss(x)
    assert online.item() > 0
    assert plain.item() == pytest.approx(online.item(), rel=1e-5)
    # and the same gradients on the student's first conv
    online.backward()
    plain_loop = _plain(b)
    plain_loop.loss(x).backward()
    g_online = b.kdep.student.conv1.weight.grad
    g_plain = plain_loop.student.conv1.weight.grad
    assert torch.allclose(g_plain, g_online, rtol=1e-4, atol=1e-6)


def test_bf16_losses_finite_and_close_to_fp32():
    torch.set_num_threads(1)
    b = kst.Built('cifar', 'cpu', False)
    x = b.x[:16]
    for arm, kind in (('kdep', 'feat'), ('logit_kd', 'logit')):
        model = b.kdep if arm == 'kdep' else b.build(
            kst.logit_kd_model(b.model_dict(), 10))
        f32 = kst.kdmm_losses(model, kind, x, None, 'fp32', 'cpu')['loss_kd']
        b16 = kst.kdmm_losses(model, kind, x, None, 'bf16', 'cpu')['loss_kd']
        assert b16.dtype == torch.float32 and torch.isfinite(b16)
        assert b16.item() == pytest.approx(f32.item(), rel=0.1), arm
        b16.backward()  # the graph of a bf16 step backpropagates
    p32 = _plain(b).loss(x).item()
    p16 = _plain(b, 'bf16').loss(x)
    assert torch.isfinite(p16) and p16.item() == pytest.approx(p32, rel=0.1)


def _run(tmp_path, *extra, env=None):
    out = tmp_path / 'k.json'
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--settings', 'cifar', '--steps', '1',
         '--warmup', '0', '--memory-steps', '0', '--json', str(out), *extra],
        capture_output=True, text=True, cwd=REPO,
        env=dict(os.environ, **(env or {})), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(out.read_text()), proc


def test_smoke_every_arm(tmp_path):
    data, proc = _run(tmp_path)
    sd = data['settings']['cifar']
    ran = {k.split('/')[0] for k in sd['arms']}
    expected = set(kst.ARMS) if HAVE_TD else set(kst.ARMS) - set(
        kst.TD_ARMS)
    assert ran == expected
    assert sd['skipped'] == ([] if HAVE_TD else sorted(kst.TD_ARMS))
    for r in sd['arms'].values():
        assert len(r['cpu']) == 1 and r['median_cpu_s'] > 0
    whats = [v[0] for v in kst.setting_verdicts(sd)]
    assert any('online KDEP / (student' in w for w in whats)
    assert any('from the store / student' in w for w in whats)
    assert any('plain loop' in w for w in whats)
    assert HAVE_TD == any('torchdistill KD' in w for w in whats)
    assert '| ratio | measured | target | verdict |' in proc.stdout


def test_smoke_torchdistill_skipped_with_a_message(tmp_path):
    data, proc = _run(tmp_path, '--arms', 'student,td_kd',
                      env=dict(KDEP_PEERS_DIR=str(tmp_path / 'none')))
    sd = data['settings']['cifar']
    assert sd['skipped'] == ['td_kd'] and list(sd['arms']) == \
        ['student/fp32']
    assert 'torchdistill arms skipped' in proc.stderr
    assert 'bash tools/setup_peers.sh' in proc.stderr
    assert 'Skipped: td_kd' in proc.stdout


def test_bad_options_name_the_option(tmp_path):
    for args, opt in ((['--amp', 'fp16'], '--amp'),
                      (['--settings', 'mnist'], '--settings'),
                      (['--arms', 'kdep,foo'], '--arms'),
                      (['--data', 'png'], '--data')):
        proc = subprocess.run([sys.executable, SCRIPT, *args],
                              capture_output=True, text=True, cwd=REPO)
        assert proc.returncode == 2 and opt in proc.stderr, args


def test_smoke_memory_column_from_fresh_processes(tmp_path):
    data, proc = _run(tmp_path, '--arms', 'student,teacher,kdep',
                      '--memory-steps', '1')
    sd = data['settings']['cifar']
    for arm in ('student', 'teacher', 'kdep'):
        assert isinstance(sd['arms'][f'{arm}/fp32']['mem_mib'], float)
    whats = [v[0] for v in kst.setting_verdicts(sd)]
    assert any('peak memory kdep / (student + teacher' in w for w in whats)


def _cifar_jpegs():
    """The CIFAR-10 JPEGs where the config reads them
    (``data/shared/cifar10_jpeg``), unpacked from ``../shared/data`` if
    needed; skip only when the archive is not there or is unpacked
    elsewhere (``KDEP_DATA_CACHE``)."""
    from shared_data import shared_data_root, unpack_shared
    if not osp.isfile(osp.join(shared_data_root(), 'cifar10_jpeg.tar.gz')):
        pytest.skip('no ../shared/data/cifar10_jpeg.tar.gz')
    root = unpack_shared('cifar10_jpeg.tar.gz')
    if osp.realpath(root) != osp.realpath(
            osp.join(REPO, 'data', 'shared', 'cifar10_jpeg')):
        pytest.skip(f'the CIFAR-10 JPEGs are unpacked at {root} '
                    '(KDEP_DATA_CACHE), not where the config reads them')


def test_smoke_jpeg_loader_vs_step(tmp_path):
    _cifar_jpegs()
    data, proc = _run(tmp_path, '--arms', 'kdep', '--data', 'tensors,jpeg',
                      '--loader-batches', '2', '--workers', '0,1')
    ld = data['settings']['cifar']['loader']
    # the config's worker count (2) is timed alone too
    assert ld['config_workers'] == 2
    assert set(ld['loader_ips']) == {'0', '1', '2'}
    assert all(v > 0 for v in ld['loader_ips'].values())
    # the config's own loader (2 workers) and one with none fed the step
    assert set(ld['fed']) == {str(ld['config_workers']), '0'}
    assert 'data pipeline IS the bottleneck' in proc.stdout or \
        'data pipeline is not the bottleneck' in proc.stdout
    rows, _ = kst.perf_rows(data, [])
    assert sum('JPEG loader alone' in r for r in rows) == 3


@pytest.mark.parametrize('n', [2, 3, 4, 5, 9])
def test_cycle_order_balances_position_and_carry_over(n):
    """Over one block of rows (n for even n, 2n for odd) every arm runs
    once per position per row-set and right after every other arm equally
    often; a rotation of one order would put each arm after the same one
    every time."""
    from collections import Counter

    import _step_bench as sb
    keys = [f'arm{i}' for i in range(n)]
    rows = n if n % 2 == 0 else 2 * n
    orders = [sb.cycle_order(keys, c) for c in range(rows)]
    assert all(sorted(o) == keys for o in orders)
    assert sb.cycle_order(keys, rows) == orders[0]  # the block repeats
    pos = Counter((p, k) for o in orders for p, k in enumerate(o))
    after = Counter(pair for o in orders for pair in zip(o, o[1:]))
    assert set(pos.values()) == {rows // n}
    assert len(after) == n * (n - 1)  # every ordered pair occurs
    assert set(after.values()) == {rows // n}
    assert sb.cycle_order(['only'], 3) == ['only']


def test_median_ci_order_statistics_by_hand():
    import _step_bench as sb
    # n = 18: P(B(18, .5) <= 4) = 4048 / 2^18 = 0.0154 <= 0.025 and
    # P(B <= 5) = 0.048 > 0.025, so j = 5: the 5th and 14th values
    assert sb.median_ci(range(18, 0, -1)) == (5, 14)
    # n = 10: P(B <= 1) = 0.0107, P(B <= 2) = 0.0547 -> j = 2
    assert sb.median_ci(range(1, 11)) == (2, 9)
    assert sb.median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)  # too few: range
    with pytest.raises(ValueError, match='no values'):
        sb.median_ci([])


def test_paired_options_refuse_no_cycles(capsys):
    """The paired-timing options the TCS, ensemble and DMAE benchmarks
    share: a paired run needs >= 1 cycle; the internal --<per> option
    takes the benchmark's choices (or an int)."""
    import _step_bench as sb
    p = sb.step_parser('x', ('a', ), steps=1)
    sb.add_paired(p, 'setting', ('cifar', 'in1k'), 'paired timing')
    args = sb.parse_paired(p, ['--paired', '3', '--setting', 'in1k'])
    assert (args.paired, args.paired_run, args.setting) == (3, False, 'in1k')
    for argv in (['--paired', '-1'], ['--paired-run']):
        with pytest.raises(SystemExit):
            sb.parse_paired(p, argv)
        assert 'expected a number of cycles >= 1' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sb.parse_paired(p, ['--setting', 'mars'])
    q = sb.step_parser('x', ('a', ), steps=1)
    sb.add_paired(q, 'ratio', int, 'paired timing')
    assert sb.parse_paired(q, ['--ratio', '95']).ratio == 95
