"""The KDEP study's plumbing (benchmarks/kdep_study.py).

Fast tests: the plan, the filters and their dependencies, the claim files,
the verdicts, and a report from hand-written cells (missing cells read
'not run', failed ones 'failed', no number is made up).
Slow test (``--smoke``, 2 images, 1 iteration per Runner): every pre-training
arm and every downstream task of one student and one seed runs through real
mmengine Runners on the shared data; the table and both plots are written;
a rerun skips every finished cell; a report with a cell removed says
'not run' where it was.
"""
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SCRIPT = osp.join(REPO, 'benchmarks', 'kdep_study.py')


@pytest.fixture(scope='module')
def ks():
    spec = importlib.util.spec_from_file_location('kdep_study', SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope='module')
def study(ks):
    return ks.load_study()


def _args(ks, *argv):
    return ks.parse_args(list(argv))


def test_every_arm_and_task_has_a_config(ks, study):
    from mmengine.config import Config
    assert list(study.arms) == list('abcdefgh')
    assert set(study.tasks) == {'probe', 'hymenoptera', 'bccd', 'camvid'}
    for arm in study.arms.values():
        cfg = Config.fromfile(osp.join(ks.STUDY_DIR, arm.config))
        assert cfg.study_arm.kind in ('random', 'supervised', 'logit_kd',
                                      'fitnets', 'kdep', 'tcs')
    for task in study.tasks.values():
        assert osp.isfile(osp.join(ks.STUDY_DIR, task.config))


@pytest.mark.parametrize('student', ['r20', 'r20w8'])
def test_student_variants_build(ks, study, student):
    """Every pre-training model and every downstream model builds for both
    students, with the student's width everywhere (the smoke test runs
    ResNet-20 only)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from kdep_mm.registry import MODELS
    from kdep_mm.testing.shared_data import unpack_shared
    st = study.students[student]
    dim = 4 * st.base_channels
    x = torch.rand(2, 3, 32, 32)
    init_default_scope('mmpretrain')
    for arm in 'bdefgh':
        cfg = Config.fromfile(osp.join(ks.STUDY_DIR, study.arms[arm].config))
        ks.set_student(cfg.model, st.depth, st.base_channels)
        if 'teacher_ckpt' in cfg.model:
            cfg.model.teacher_ckpt = osp.join(
                unpack_shared('cifar10_resnets'), ks.TEACHER_FILE)
        model = MODELS.build(cfg.model.to_dict())
        bb = model.backbone if arm in 'bc' else model.student
        assert bb(x)[-1].shape[1] == dim, arm
    for task, scope in (('probe', 'mmpretrain'),
                        ('hymenoptera', 'mmpretrain'), ('bccd', 'mmdet'),
                        ('camvid', 'mmseg')):
        cfg = Config.fromfile(osp.join(ks.STUDY_DIR,
                                       study.tasks[task].config))
        ks.set_downstream_backbone(cfg, task, st.depth, st.base_channels,
                                   None)
        assert 'init_cfg' not in cfg.model.backbone
        init_default_scope(scope)
        from mmengine.registry import MODELS as ROOT
        model = ROOT.build(cfg.model.to_dict())
        model.init_weights()
        feats = model.extract_feat(torch.rand(2, 3, 64, 64))
        assert feats[-1].shape[1] in (dim, 64), task  # bccd: FPN 64


def test_plan_order_and_size(ks, study):
    plan = ks.full_plan(study)
    ids = [c.id for c in plan]
    assert len(ids) == len(set(ids))
    n_arms, n_tasks = len(study.arms), len(study.tasks)
    n_runs = len(study.students) * len(study.seeds)
    assert len(plan) == 1 + n_runs * n_arms * (1 + n_tasks)
    assert ids[0] == 'pca'
    # KDEP 10% of ResNet-20 seed 0 first, with its probe and hymenoptera
    assert ids[1:4] == ['pretrain/f/r20/s0', 'probe/f/r20/s0',
                        'hymenoptera/f/r20/s0']
    # detection / segmentation after the probe + hymenoptera of all arms
    first_bccd = ids.index('bccd/f/r20/s0')
    assert ids.index('hymenoptera/a/r20/s0') < first_bccd
    # seeds 1, 2 before the narrow student, TCS (h) last
    assert ids.index('camvid/a/r20/s2') < ids.index('pretrain/f/r20w8/s0')
    assert all(c.arm == 'h' for c in plan[-n_runs * (1 + n_tasks):])
    for c in plan:  # every dependency comes earlier
        for d in c.deps():
            assert ids.index(d.id) < ids.index(c.id)


def test_filters_add_dependencies(ks, study):
    plan = ks.full_plan(study)
    sel = ks.select(plan, _args(ks, '--arms', 'f', '--tasks', 'probe',
                                '--seeds', '1', '--students', 'r20'))
    assert [c.id for c in sel] == ['pca', 'pretrain/f/r20/s1',
                                   'probe/f/r20/s1']
    sel = ks.select(plan, _args(ks, '--only', 'camvid/b/r20w8/s2'))
    assert [c.id for c in sel] == ['pretrain/b/r20w8/s2',
                                   'camvid/b/r20w8/s2']
    sel = ks.select(plan, _args(ks, '--only', 'pretrain/a/*'))
    assert {c.student for c in sel} == set(study.students)
    assert all(c.kind == 'pretrain' for c in sel)


def test_stale_pretrain_cell_is_rerun_only_when_needed(ks, study,
                                                     tmp_path):
    """Cell results are kept in git, exports are not: a finished
    pre-training cell whose export is gone is set aside (``.stale.json``)
    when a downstream cell still needs it, and kept when none does."""
    rdir = str(tmp_path)
    os.makedirs(osp.join(rdir, 'cells'))
    pre = ks.Cell('pretrain', 'f', 'r20', 0)
    probe = ks.Cell('down', 'f', 'r20', 0, 'probe')
    ks.write_json(ks.cell_path(rdir, pre),
                  dict(export=osp.join(rdir, 'gone.pth')))
    ks.write_json(ks.cell_path(rdir, probe), dict(score=1.0))
    ks.retire_stale_pretrain(rdir, [pre, probe])  # probe done: keep
    assert ks.load_result(rdir, pre) is not None
    hym = ks.Cell('down', 'f', 'r20', 0, 'hymenoptera')
    ks.retire_stale_pretrain(rdir, [pre, probe, hym])  # hym needs it
    assert ks.load_result(rdir, pre) is None
    assert osp.isfile(ks.cell_path(rdir, pre, '.stale.json'))
    # an export that exists, or a cell with no export (random init): kept
    ks.write_json(ks.cell_path(rdir, pre),
                  dict(export=ks.cell_path(rdir, probe)))
    a = ks.Cell('pretrain', 'a', 'r20', 0)
    ks.write_json(ks.cell_path(rdir, a), dict(export=None))
    ks.retire_stale_pretrain(
        rdir, [pre, a, hym, ks.Cell('down', 'a', 'r20', 0, 'probe')])
    assert ks.load_result(rdir, pre) is not None
    assert ks.load_result(rdir, a) is not None


def test_claim_files(ks, tmp_path):
    rdir = str(tmp_path)
    cell = ks.Cell('pretrain', 'f', 'r20', 0)
    assert ks.try_claim(rdir, cell)
    assert not ks.claimed_by_other(rdir, cell)  # our own claim
    # a claim of a live other process is respected
    path = osp.join(rdir, 'claims', cell.fname)
    with open(path, 'w') as f:
        f.write(str(os.getppid()))
    assert ks.claimed_by_other(rdir, cell)
    assert not ks.try_claim(rdir, cell)
    # a claim of a dead process is taken over
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    with open(path, 'w') as f:
        f.write(str(proc.pid))
    assert not ks.claimed_by_other(rdir, cell)
    assert ks.try_claim(rdir, cell)
    ks.release(rdir, cell)
    assert not osp.exists(path)


def _fake_results(study, scores, times, seeds=(0, 1, 2)):
    """{cell id: result} for student r20 from {arm: {task: score}}."""
    res = {}
    for arm, per_task in scores.items():
        for s in seeds:
            res[f'pretrain/{arm}/r20/s{s}'] = dict(
                pretrain_s=times[arm], total_s=times[arm], kind='pretrain',
                arm=arm, epochs=10)
            for task, v in per_task.items():
                res[f'{task}/{arm}/r20/s{s}'] = dict(
                    score=v + 0.1 * s, total_s=10., kind='down')
    return res


def test_verdicts(ks, study):
    tasks = list(study.tasks)
    plan = ks.full_plan(study)
    good = {a: {t: v for t in tasks} for a, v in
            dict(a=10., b=50., d=30., e=31., f=49.5).items()}
    times = dict(a=0., b=400., d=80., e=80., f=90.)
    t = ks.Table(study, plan, _fake_results(study, good, times), set())
    verdicts = [v for _, v, _ in ks.claims(t, 'r20')]
    assert verdicts == ['holds', 'holds', 'holds']
    # KDEP worse than logit KD on one task, far behind supervised, equal to
    # scratch on one task
    bad = {a: dict(v) for a, v in good.items()}
    bad['d']['camvid'] = 60.
    bad['f']['probe'] = 10.
    bad['a']['probe'] = 10.
    t = ks.Table(study, plan, _fake_results(study, bad, times), set())
    verdicts = [v for _, v, _ in ks.claims(t, 'r20')]
    assert verdicts[0].startswith('partly holds (5 of 8')
    assert verdicts[1].startswith('partly holds (3 of 4')
    assert verdicts[2].startswith('partly holds (3 of 4')
    # nothing measured for the narrow student
    assert [v for _, v, _ in ks.claims(t, 'r20w8')] == ['not yet measured'] * 3
    # a missing arm makes a claim 'not yet measured', naming the cells
    part = {a: v for a, v in good.items() if a != 'e'}
    t = ks.Table(study, plan, _fake_results(study, part, times), set())
    name, verdict, detail = ks.claims(t, 'r20')[0]
    assert verdict == 'not yet measured' and '(e) probe' in detail


def test_table_text_marks_missing_and_failed(ks, study):
    plan = ks.full_plan(study)
    res = _fake_results(study, {'f': {'probe': 40.}}, {'f': 90.}, seeds=(0,))
    t = ks.Table(study, plan, res, {'probe/b/r20/s0'})
    assert t.text('r20', 'f', 'probe') == '40.0 (n=1)'
    assert t.text('r20', 'b', 'probe') == 'failed'
    assert t.text('r20', 'c', 'probe') == 'not run'
    res = _fake_results(study, {'f': {'probe': 40.}}, {'f': 90.})
    t = ks.Table(study, plan, res, set())
    assert t.text('r20', 'f', 'probe') == '40.1 ± 0.1'


def test_report_from_partial_cells(ks, study, tmp_path, monkeypatch):
    """--report with a few hand-written cells: the rest says 'not run'."""
    rdir = tmp_path / 'res'
    (rdir / 'cells').mkdir(parents=True)
    res = _fake_results(study, {'f': {'probe': 40.}}, {'f': 90.}, seeds=(0,))
    for cid, r in res.items():
        r.update(cpu_s=5., load_start=1.)
        with open(rdir / 'cells' / (cid.replace('/', '__') + '.json'),
                  'w') as f:
            json.dump(r, f)
    docs = tmp_path / 'docs'
    monkeypatch.chdir(REPO)  # main() works from the repository root
    rc = ks.main(['--report', '--results-dir', str(rdir), '--docs-dir',
                  str(docs)])
    assert rc == 0
    md = (docs / 'results.md').read_text()
    assert '| (f) KDEP 10% |' in md
    row_b = next(ln for ln in md.splitlines()
                 if ln.startswith('| (b) supervised 100%'))
    assert row_b.count('not run') == 1 + len(study.tasks)
    assert 'not yet measured' in md
    assert (docs / 'images' / 'study_score_vs_time.png').stat().st_size > 0
    assert (docs / 'images' / 'teacher_pca_spectrum.png').stat().st_size > 0


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
    rdir = tmp_path / 'study'
    cmd = [sys.executable, SCRIPT, '--smoke', '--results-dir', str(rdir),
           '--students', 'r20', '--seeds', '0']
    t0 = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                         timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-5000:]
    first = time.time() - t0
    cells = sorted(os.listdir(rdir / 'cells'))
    assert not [c for c in cells if c.endswith('.error.txt')], cells
    # pca + 8 pre-training cells + 8 arms x 4 tasks
    assert len(cells) == 1 + 8 + 8 * 4, cells
    for name in cells:
        r = json.loads((rdir / 'cells' / name).read_text())
        assert r['smoke'] is True
        assert r['total_s'] >= 0 and 'cpu_s' in r
        if r['kind'] == 'down':
            assert isinstance(r['score'], float), r
        if r['kind'] == 'pretrain' and r['arm'] != 'a':
            assert r['iters'] == 1 and osp.isfile(r['export']), r
    md = (rdir / 'docs' / 'results.md').read_text()
    assert 'SMOKE RUN' in md
    row_f = next(ln for ln in md.splitlines()
                 if ln.startswith('| (f) KDEP 10%'))
    assert 'not run' not in row_f
    assert re.search(r'\| \(h\) TCS 10% \|.*\(n=1\)', md)
    assert 'not run' in md  # the narrow student and seeds 1, 2
    for png in ('study_score_vs_time.png', 'teacher_pca_spectrum.png'):
        assert (rdir / 'docs' / 'images' / png).stat().st_size > 1000
    # the rerun skips every finished cell
    stamps = {c: (rdir / 'cells' / c).stat().st_mtime_ns for c in cells}
    out = subprocess.run(cmd + ['--no-report'], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '0 to run' in out.stdout, out.stdout[-2000:]
    assert 'cell ' not in out.stdout.split('to run;', 1)[1], out.stdout
    assert {c: (rdir / 'cells' / c).stat().st_mtime_ns
            for c in cells} == stamps
    # a missing cell reads 'not run' in the report
    os.remove(rdir / 'cells' / 'camvid__f__r20__s0.json')
    out = subprocess.run(cmd + ['--report'], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    md = (rdir / 'docs' / 'results.md').read_text()
    row_f = next(ln for ln in md.splitlines()
                 if ln.startswith('| (f) KDEP 10%'))
    assert row_f.rstrip(' |').endswith('not run'), row_f
    print(f'smoke study: {first:.0f}s for {len(cells)} cells')
