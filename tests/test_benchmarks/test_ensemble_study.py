"""benchmarks/ensemble_study.py in smoke mode: the four arms (no teacher,
conv only, involution only, both) on a few real CIFAR-10 JPEGs, two seeds,
the teachers' logits cached by tools/cache_teacher.py on the same views,
one JSON per cell, a rerun that runs nothing, and the generated doc
section whose numbers are recomputed here from the cells."""
import json
import os
import os.path as osp
import statistics

import pytest
from mmengine.config import Config

import ensemble_study as es


def test_plan_and_spec():
    spec = es.load_spec(es.SPEC, smoke=False)
    # the study's claim needs these four arms, on 10% of CIFAR-10
    assert sorted(spec.arms) == ['cnn', 'ensemble', 'involution', 'plain']
    assert spec.train_per_class * 10 == 5000 and len(spec.seeds) == 3
    cells = es.plan(spec)
    ids = [c.id for c in cells]
    assert ids[:2] == ['store/cnn', 'store/involution']
    assert len(ids) == 2 + 4 * 3
    by = {c.id: c for c in cells}
    assert by['train/ensemble/s1'].dep_ids == ['store/cnn',
                                              'store/involution']
    assert by['train/plain/s0'].dep_ids == []
    # no teacher needed: no store cell
    assert [c.id for c in es.plan(spec, ['plain'], [0])] == ['train/plain/s0']
    with pytest.raises(SystemExit, match='unknown arm'):
        es.plan(spec, ['dino'])
    # every arm's config is a shipped one; the single-teacher configs
    # distil exactly their teacher
    for arm, a in spec.arms.items():
        cfg = Config.fromfile(osp.normpath(osp.join(
            osp.dirname(es.SPEC), a.config)))
        assert list(cfg.get('teacher_names') or []) == list(a.teachers), arm


def _cells(rdir):
    out = {}
    for f in os.listdir(osp.join(rdir, 'cells')):
        if f.endswith('.json'):
            with open(osp.join(rdir, 'cells', f)) as fh:
                r = json.load(fh)
            out[r['cell']] = r
    return out


@pytest.fixture
def no_yapf(monkeypatch):
    """The Runner formats its config with yapf several times per cell."""
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: self.text))


def test_smoke_study_runs_resumes_and_reports(tmp_path, no_yapf):
    from shared_data import unpack_shared
    try:
        unpack_shared('cifar10_jpeg.tar.gz')
    except FileNotFoundError as err:
        pytest.skip(str(err))
    rdir = tmp_path / 'res'
    argv = ['--smoke', '--seeds', '0,1', '--results-dir', str(rdir)]
    assert es.main(argv) == 0
    cells = _cells(rdir)
    assert sorted(cells) == sorted(
        ['store/cnn', 'store/involution'] +
        [f'train/{a}/s{s}' for a in ('plain', 'cnn', 'involution',
                                     'ensemble') for s in (0, 1)])
    spec = es.load_spec(es.SPEC, smoke=True)
    for cid, r in cells.items():
        if r['kind'] != 'train':
            continue
        assert r['train_images'] == 10 * spec.train_per_class, cid
        assert r['test_images'] == spec.test_images, cid
        assert r['iters'] == spec.epochs * r['iters_per_epoch'], cid
        assert r['student_arch'] == spec.student_arch.to_dict()
        assert 0 <= r['test_top1'] <= 100 and r['train_cpu_s'] > 0
    # the involution store is on the cnn store's views
    man = json.load(open(osp.join(cells['store/involution']['store'],
                                  'manifest.json')))
    assert man['views_from']['root'] == cells['store/cnn']['store']

    # a rerun runs nothing (the cells are kept as they are)
    mtimes = {f: os.stat(osp.join(rdir, 'cells', f)).st_mtime_ns
              for f in os.listdir(osp.join(rdir, 'cells'))}
    assert es.main(argv) == 0
    assert mtimes == {f: os.stat(osp.join(rdir, 'cells', f)).st_mtime_ns
                      for f in os.listdir(osp.join(rdir, 'cells'))}

    # the doc section: table rows and verdicts recomputed from the cells
    doc = rdir / 'ensemble.md'
    doc.write_text('# Ensemble\n\nbefore\n\n' + es.BEGIN + '\nSTALE SECTION\n' +
                   es.END + '\n\nafter\n')
    assert es.main(argv + ['--report']) == 0
    text = doc.read_text()
    assert text.startswith('# Ensemble\n\nbefore\n\n' + es.BEGIN)
    assert text.endswith(es.END + '\n\nafter\n') and 'STALE' not in text

    def scores(arm, key='test_top1'):
        return {s: cells[f'train/{arm}/s{s}'][key] for s in (0, 1)}
    plain = list(scores('plain').values())
    row = [ln for ln in text.splitlines()
           if ln.startswith('| no teacher')][0]
    assert f'{statistics.fmean(plain):.2f} ± {statistics.stdev(plain):.2f}' \
        in row
    val = {a: statistics.fmean(scores(a, 'val_top1').values())
           for a in ('cnn', 'involution')}
    best = max(val, key=val.get)  # ties: the first, as max() in the report
    assert f'validation split: **{best}**' in text
    d = [scores('ensemble')[s] - scores(best)[s] for s in (0, 1)]
    half = 12.706 * statistics.stdev(d) / 2 ** .5  # t_{0.975, 1}
    mean = statistics.fmean(d)
    assert (f'ensemble - {best} = {mean:+.1f} [{mean - half:+.1f}, '
            f'{mean + half:+.1f}]') in text
    assert (rdir / 'images' / 'ensemble_study.png').stat().st_size > 1000


def test_missing_involution_teacher_blocks_its_cells(tmp_path):
    """Without the RedNet teacher.pth the involution and ensemble cells are
    reported as blocked (not failed), and nothing runs for them."""
    from shared_data import unpack_shared
    try:
        unpack_shared('cifar10_jpeg.tar.gz')
    except FileNotFoundError as err:
        pytest.skip(str(err))
    args = es.parse_args(['--results-dir', str(tmp_path / 'r'),
                          '--work-dir', str(tmp_path / 'w'),
                          '--doc', str(tmp_path / 'doc.md'),
                          '--involution-teacher', str(tmp_path / 'none.pth'),
                          '--arms', 'involution,ensemble'])
    spec = es.load_spec(es.SPEC, smoke=True)
    ctx = es.Ctx(args, spec)
    cells = es.plan(spec, ['involution', 'ensemble'], [0])
    assert ctx.blocked(cells[0]) is None  # the cnn store can run
    assert 'no involution teacher' in ctx.blocked(cells[1])
    assert es.run_all(cells[1:], ctx) == 0  # blocked: nothing ran or failed
    assert os.listdir(tmp_path / 'r' / 'cells') == []
    section = es.report(ctx)
    assert 'not run: no involution teacher' in section


def test_stale_cells_rerun_when_teacher_or_store_changes(tmp_path):
    """Cell JSONs are committed, stores and the RedNet are not: a cell
    made with another RedNet checkpoint than the one there now reruns
    (the store and every arm that read it, not the conv-only arm); a
    store that is gone reruns only when a cell still needs it, and its
    finished train cells are kept; a cell with no record is kept."""
    from shared_data import unpack_shared
    try:
        unpack_shared('cifar10_jpeg.tar.gz')
    except FileNotFoundError as err:
        pytest.skip(str(err))
    from study.cellstore import write_json
    red = tmp_path / 'rednet.pth'
    red.write_bytes(b'first RedNet')

    def ctx_now():
        args = es.parse_args(['--results-dir', str(tmp_path / 'r'),
                              '--work-dir', str(tmp_path / 'w'),
                              '--doc', str(tmp_path / 'doc.md'),
                              '--involution-teacher', str(red)])
        return es.Ctx(args, es.load_spec(es.SPEC, smoke=False))
    ctx = ctx_now()
    cells = es.plan(ctx.spec, seeds=[0, 1])
    by = {c.id: c for c in cells}
    for t in ('cnn', 'involution'):
        os.makedirs(ctx.store(t))
        (tmp_path / 'w' / 'stores' / f'{t}_v{ctx.spec.views}' /
         'manifest.json').write_text('{}')
    done = ['store/cnn', 'store/involution', 'train/cnn/s0',
            'train/involution/s0', 'train/ensemble/s0', 'train/plain/s0']
    for cid in done:
        c = by[cid]
        r = dict(cell=cid, kind=c.kind, arm=c.arm, seed=c.seed,
                 teacher=c.teacher, cache_cpu_s=1., test_top1=50.,
                 val_top1=50., train_wall_s=1., train_cpu_s=1.)
        if c.kind == 'store':
            r['teacher_sha256'] = {c.teacher: ctx.teacher_sha256(c.teacher)}
        else:
            r['teacher_sha256'] = {t: ctx.teacher_sha256(t)
                                   for t in ctx.spec.arms[c.arm].teachers}
        write_json(osp.join(ctx.rdir, 'cells', c.fname + '.json'), r)
    assert es.retire_stale(cells, ctx) == []  # all as recorded

    red.write_bytes(b'a retrained RedNet')
    ctx = ctx_now()
    assert ctx.other_teachers(es.load_cells(ctx.rdir)['train/ensemble/s0']) == [
        'involution']
    assert 'made with another checkpoint' in es.report(ctx)
    assert sorted(es.retire_stale(cells, ctx)) == [
        'store/involution', 'train/ensemble/s0', 'train/involution/s0']
    left = es.load_cells(ctx.rdir)  # (the stale JSONs are kept beside them)
    assert sorted(left) == ['store/cnn', 'train/cnn/s0', 'train/plain/s0']
    assert osp.isfile(osp.join(ctx.rdir, 'cells',
                               'train__ensemble__s0.stale.json'))

    # the cnn store is gone: rerun, since train/cnn/s1 etc. need it; its
    # finished train cell stays
    os.remove(osp.join(ctx.store('cnn'), 'manifest.json'))
    assert es.retire_stale(cells, ctx) == ['store/cnn']
    assert 'train/cnn/s0' in es.load_cells(ctx.rdir)
    # ... but not when no cell left to run reads it
    c = by['store/cnn']
    write_json(osp.join(ctx.rdir, 'cells', c.fname + '.json'),
               dict(cell=c.id, kind='store', teacher='cnn'))  # no record
    assert es.retire_stale([c, by['train/cnn/s0']], ctx) == []
