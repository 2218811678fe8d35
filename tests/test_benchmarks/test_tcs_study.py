"""The TCS-vs-KD study's plumbing (benchmarks/tcs_study.py and its report).

Fast: the spec and its arms (every arm config, as the study rewrites it,
builds; all arms share data, views, batch and schedule), the plan and its
dependencies, the sweep's choice (on val; ties to the smaller lr), the
claims' statistics against hand computations, the doc section replaced in
place. Slow (``--smoke``): the store cell, a sweep cell and a main cell run
as fresh processes through real Runners on the shared data, a rerun skips
them, the report is written.
"""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
from helpers.paths import REPO

SCRIPT = osp.join(REPO, 'benchmarks', 'tcs_study.py')
sys.path.insert(0, osp.join(REPO, 'benchmarks'))

import tcs_study as T  # noqa: E402
import tcs_study_report as R  # noqa: E402
from study.cellstore import cell_path, write_json  # noqa: E402


@pytest.fixture(scope='module')
def spec():
    return T.load_spec()


def test_the_spec_states_the_budget(spec):
    assert list(spec.arms) == ['ce', 'logit_kd', 'fitnets', 'tcs_store',
                               'tcs_online', 'tcs_ssl']
    # the SSL arm is not one of the claims' methods
    assert 'tcs_ssl' not in spec.claims.methods
    assert 10 * spec.train_per_class == 5000
    assert T.steps_of(spec) == round(spec.epochs * 5000 / 128)
    assert spec.claims.reference == 'logit_kd'
    assert spec.claims.max_ratio == 0.6
    assert spec.sweep_seed not in spec.seeds
    assert len(spec.seeds) == 3


def test_every_arm_builds_on_the_same_data_and_schedule(spec, tmp_path):
    from mmengine.registry import init_default_scope

    from kdep_mm.registry import MODELS
    files = dict(cifar='/data/cifar', train='/s/train.txt',
                 val='/s/val.txt', test='/s/test.txt')
    shared = None
    for arm in spec.arms:
        cfg = T.arm_config(spec, arm, str(tmp_path), files, 5000, 469,
                           0.1, 0, str(tmp_path / arm), False,
                           ssl_teacher='/ssl/moco.pth')
        ds = cfg.train_dataloader.dataset
        views = [t for t in ds.pipeline
                 if t['type'].endswith('ApplyStoredView')]
        assert len(views) == 1
        ssl = spec.arms[arm].get('teacher') == 'ssl'
        assert views[0].store.root == T.store_root(
            str(tmp_path), spec, 'ssl' if ssl else None)
        same = (ds.ann_file, ds.data_root, cfg.train_dataloader.batch_size,
                cfg.train_dataloader.num_workers, cfg.train_cfg,
                cfg.param_scheduler, cfg.optim_wrapper.optimizer,
                cfg.test_dataloader.dataset.ann_file,
                cfg.test_dataloader.dataset.data_prefix)
        shared = shared or same
        assert same == shared, arm
        packed = ds.pipeline[-1].get('algorithm_keys', ())
        # only the store arm receives the stored teacher features (TCS
        # online would use them instead of its teacher)
        assert ('teacher_feat' in packed) == (arm == 'tcs_store')
        m = cfg.model.copy()
        if ssl:  # the SSL checkpoint, its store checked against it
            assert m.teacher_ckpt == '/ssl/moco.pth'
            check = next(h for h in cfg.custom_hooks
                         if h.type.endswith('CheckTeacherStoresHook'))
            assert check.teacher_checkpoints == '/ssl/moco.pth'
            m.teacher_ckpt = None
        elif m.get('teacher') is not None:
            assert m.teacher_ckpt.endswith(T.TEACHER_FILE)
            m.teacher_ckpt = None  # random weights: no file needed here
        else:
            assert arm in ('ce', 'tcs_store')
        if arm.startswith('tcs'):
            assert m.prune_interval == 469 // 12
            hook = next(h for h in cfg.custom_hooks
                        if h.type.endswith('FitBasisHook'))
            if arm in ('tcs_online', 'tcs_ssl'):
                assert hook.num_samples == 5000
            else:
                assert hook.store == views[0].store.root
        init_default_scope('mmpretrain')
        MODELS.build(m.to_dict())


def test_plan_and_dependencies(spec):
    cells = T.plan(spec)
    ids = [c.id for c in cells]
    assert ids[:2] == ['store/v8', 'store/ssl_v8']
    assert len(ids) == len(set(ids)) == 2 + 4 * 3 + 6 * 3
    by = {c.id: c for c in cells}
    sweep = [f'sweep/tcs_store/lr{lr:g}' for lr in (0.05, 0.1, 0.2)]
    assert by['main/tcs_online/s1'].deps == ['store/v8'] + sweep
    # the SSL store holds that teacher's features on store/v8's views
    assert by['store/ssl_v8'].deps == ['store/v8']
    assert by['main/tcs_ssl/s2'].deps == ['store/v8', 'store/ssl_v8'] + sweep
    assert [c.id for c in cells if T.needs_ssl(spec, c)] == [
        'store/ssl_v8'] + [f'main/tcs_ssl/s{s}' for s in (0, 1, 2)]
    assert by['main/ce/s0'].deps[1:] == [
        f'sweep/ce/lr{lr:g}' for lr in (0.05, 0.1, 0.2)]
    assert all(by[d].kind in ('store', 'sweep') for c in cells
               for d in c.deps)


def test_sweep_choice_on_val(spec, tmp_path):
    with pytest.raises(RuntimeError, match='not complete'):
        T.chosen_lr(str(tmp_path), spec, 'ce')
    for lr, val in ((0.05, 61.0), (0.1, 63.5), (0.2, 63.5)):
        write_json(cell_path(str(tmp_path), T.Cell(id=f'sweep/ce/lr{lr:g}')),
                   dict(val_top1=val, test_top1=99. - lr))  # test unused
    assert T.chosen_lr(str(tmp_path), spec, 'ce') == 0.1  # tie: smaller
    for lr in (0.05, 0.1, 0.2):
        write_json(cell_path(str(tmp_path),
                             T.Cell(id=f'sweep/tcs_store/lr{lr:g}')),
                   dict(val_top1=50 + 10 * lr))
    assert T.chosen_lr(str(tmp_path), spec, 'tcs_online') == 0.2


def test_a_store_cell_whose_store_is_gone_is_rerun(spec, tmp_path):
    """Cell JSONs are committed, stores are not: on another clone the
    finished store cell must run again before a cell trains from it."""
    import types
    rdir, work = str(tmp_path / 'res'), str(tmp_path / 'work')
    cells = T.plan(spec)
    store = cells[0]
    write_json(cell_path(rdir, store), dict(views=8))
    args = types.SimpleNamespace(spec=T.SPEC, smoke=False, results_dir=rdir,
                                 work_dir=work)
    T.retire_missing_stores(args, cells)
    assert not osp.isfile(cell_path(rdir, store))
    assert osp.isfile(cell_path(rdir, store, '.stale.json'))
    # with its store in place (a manifest) the cell stays done
    write_json(cell_path(rdir, store), dict(views=8))
    root = T.store_root(work, spec)
    os.makedirs(root)
    open(osp.join(root, 'manifest.json'), 'w').close()
    T.retire_missing_stores(args, cells)
    assert osp.isfile(cell_path(rdir, store))
    # and so it does, store gone, once every cell that needs it has run
    os.remove(osp.join(root, 'manifest.json'))
    for c in cells[1:]:
        write_json(cell_path(rdir, c), dict(done=True))
    T.retire_missing_stores(args, cells)
    assert osp.isfile(cell_path(rdir, store))


def test_ssl_cells_blocked_without_the_teacher_rerun_for_another(
        spec, tmp_path):
    """The SSL arm and its store need --ssl-teacher: without the file they
    are blocked (not failed); a cell made from another checkpoint than the
    one there now reruns, one that records none (not an SSL cell) stays."""
    import types
    rdir = str(tmp_path / 'res')
    ckpt = tmp_path / 'moco.pth'
    args = types.SimpleNamespace(results_dir=rdir, ssl_teacher=str(ckpt))
    cells = T.plan(spec)
    assert T.ssl_blocked(args, spec, cells) == {
        'store/ssl_v8', 'main/tcs_ssl/s0', 'main/tcs_ssl/s1',
        'main/tcs_ssl/s2'}
    assert T.retire_other_ssl(args, cells) == []  # no checkpoint: kept
    ckpt.write_bytes(b'MoCo v2, 30 epochs')
    assert T.ssl_blocked(args, spec, cells) == set()
    from kdep_mm.utils.checkpoint import file_sha256
    by = {c.id: c for c in cells}
    write_json(cell_path(rdir, by['main/tcs_ssl/s0']),
               dict(teacher_sha256=dict(ssl=file_sha256(str(ckpt)))))
    write_json(cell_path(rdir, by['main/ce/s0']), dict(test_top1=40.))
    assert T.retire_other_ssl(args, cells) == []
    ckpt.write_bytes(b'MoCo v2, 60 epochs')
    assert T.retire_other_ssl(args, cells) == ['main/tcs_ssl/s0']
    assert osp.isfile(cell_path(rdir, by['main/tcs_ssl/s0'], '.stale.json'))
    assert osp.isfile(cell_path(rdir, by['main/ce/s0']))


def test_report_of_the_ssl_arm(spec, tmp_path):
    """Not run: a line says where its teacher comes from. Run (on a GPU):
    its table row says so, it is left off the CPU-time plot, and it is
    compared with TCS online and CE, paired by seed."""
    rdir = str(tmp_path)
    write_json(cell_path(rdir, T.Cell(id='store/v8')),
               dict(images=5000, views=8, cache_cpu_s=100., cache_wall_s=120.,
                    peak_mib=50.))
    for s, (ce, onl) in enumerate(((40., 38.), (41., 37.), (39., 38.5))):
        _main_cell(rdir, 'ce', s, ce, 90., 400.)
        _main_cell(rdir, 'tcs_online', s, onl, 235., 420.)
    cells = T.plan(spec)
    arms, _, _ = R.collect(spec, cells, rdir)
    assert arms['tcs_ssl']['devices'] == []
    assert 'not run (its teacher is pre-trained on a GPU' in '\n'.join(
        R.ssl_lines(spec, arms, None))
    ssl = (41., 42.5, 40.)
    for s, top1 in enumerate(ssl):
        write_json(cell_path(rdir, T.Cell(id=f'main/tcs_ssl/s{s}')),
                   dict(test_top1=top1, val_top1=top1, train_cpu_s=20.,
                        peak_mib=900., samples=39936, device='cuda'))
    arms, _, _ = R.collect(spec, cells, rdir)
    assert arms['tcs_ssl']['devices'] == ['cuda']
    lines = R.ssl_lines(spec, arms, dict(ssl_teacher_record=dict(
        epochs=30, train_wall_s=300.)))
    text = '\n'.join(lines)
    assert 'MoCo v2 pre-training 30 epochs in 300 s wall' in text
    d = [41. - 38., 42.5 - 37., 40. - 38.5]  # SSL - TCS online per seed
    m = sum(d) / 3
    half = 4.303 * math.sqrt(sum((v - m) ** 2 for v in d) / 2) / math.sqrt(3)
    assert (f'TCS, teacher online: {m:+.2f} [{m - half:+.2f}, '
            f'{m + half:+.2f}]') in text
    row = R.section(spec, arms, [], None, [], False, 312, None)
    assert '| TCS online, MoCo v2 teacher (self-supervised) (on cuda) |' in row


def _main_cell(rdir, arm, seed, top1, cpu, mib):
    write_json(cell_path(rdir, T.Cell(id=f'main/{arm}/s{seed}')),
               dict(test_top1=top1, val_top1=top1, train_cpu_s=cpu,
                    peak_mib=mib, samples=60000, test_images=10000))


def test_claims_against_hand_computations(spec, tmp_path):
    rdir = str(tmp_path)
    write_json(cell_path(rdir, T.Cell(id='store/v8')),
               dict(images=5000, views=8, cache_cpu_s=100., cache_wall_s=120.,
                    peak_mib=50.))
    kd = {0: (60., 1000., 400.), 1: (61., 1100., 410.), 2: (62., 900., 390.)}
    tcs = {0: (61., 300., 200.), 1: (63., 330., 210.), 2: (62.5, 270., 190.)}
    for s in kd:
        _main_cell(rdir, 'logit_kd', s, *kd[s])
        _main_cell(rdir, 'tcs_store', s, *tcs[s])
    arms, _, store = R.collect(spec, T.plan(spec), rdir)
    assert store['cache_cpu_s'] == 100.
    assert arms['tcs_store']['cpu_with_cache'] == {0: 400., 1: 430.,
                                                    2: 370.}
    assert arms['logit_kd']['cpu_with_cache'] == arms['logit_kd'][
        'train_cpu_s']
    out = {c['arm']: c for c in R.claims(spec, arms)}
    c = out['tcs_store']
    d = [1., 2., 0.5]  # TCS - KD per seed
    m = sum(d) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in d) / 2)
    half = 4.303 * sd / math.sqrt(3)
    assert c['accuracy']['mean'] == pytest.approx(m)
    assert c['accuracy']['lo'] == pytest.approx(m - half)
    assert c['accuracy_verdict'] == ('holds' if m - half > 0
                                     else 'inconclusive')
    # CPU ratio 0.3 exactly on every seed: an interval of zero width
    assert c['time']['mean'] == pytest.approx(0.3)
    assert c['time_verdict'] == 'holds'
    r = [400 / 1000, 430 / 1100, 370 / 900]
    assert c['time_with_cache']['mean'] == pytest.approx(sum(r) / 3)
    assert c['time_with_cache_verdict'] == 'holds'
    rm = [200 / 400, 210 / 410, 190 / 390]
    assert c['memory']['mean'] == pytest.approx(sum(rm) / 3)
    assert c['memory_verdict'] == 'holds'
    assert out['tcs_online']['accuracy_verdict'] == 'not enough seeds'
    assert R.ratio_verdict(dict(mean=.7, lo=.65, hi=.75), .6) == 'fails'
    assert R.ratio_verdict(dict(mean=.6, lo=.5, hi=.7), .6) == \
        'inconclusive'


def test_report_replaces_its_section_only(tmp_path):
    doc = tmp_path / 'doc.md'
    doc.write_text(f'# t\n\nbefore\n\n{R.BEGIN}\nold\n{R.END}\n\nafter\n')
    R.replace_section(str(doc), f'{R.BEGIN}\nnew\n{R.END}')
    assert doc.read_text() == f'# t\n\nbefore\n\n{R.BEGIN}\nnew\n{R.END}' \
        '\n\nafter\n'


def test_measurement_options_never_write_the_study_results():
    out = subprocess.run([sys.executable, SCRIPT, '--steps', '5', '--plan'],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode != 0
    assert 'another --results-dir' in out.stderr


@pytest.mark.slow
def test_smoke_runs_cells_in_fresh_processes_and_reports(tmp_path):
    res, work, doc = tmp_path / 'res', tmp_path / 'work', tmp_path / 'd.md'
    doc.write_text('# d\n')
    base = [sys.executable, SCRIPT, '--smoke', '--results-dir', str(res),
            '--work-dir', str(work)]
    out = subprocess.run(base + ['--only', 'main/tcs_store/s0'],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
    cells = sorted(p.name for p in (res / 'cells').iterdir())
    assert cells == ['main__tcs_store__s0.json', 'store__v2.json',
                     'sweep__tcs_store__lr0.1.json']
    main = json.loads((res / 'cells' / 'main__tcs_store__s0.json')
                      .read_text())
    assert main['lr'] == 0.1 and main['steps'] == 3 and main['threads'] == 1
    assert main['samples'] == 3 * 128 and main['train_images'] == 40
    assert main['test_images'] == 20
    assert 0 <= main['test_top1'] <= 100 and main['peak_mib'] > 0
    assert main['train_cpu_s'] > 0 and main['active_coords'] <= 32
    sweep = json.loads((res / 'cells' / 'sweep__tcs_store__lr0.1.json')
                       .read_text())
    assert 'test_top1' not in sweep  # the sweep never sees the test set
    store = json.loads((res / 'cells' / 'store__v2.json').read_text())
    assert store['images'] == 40 and store['views'] == 2
    again = subprocess.run(base + ['--only', 'main/tcs_store/s0'],
                           capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and 'start' not in again.stdout
    # the SSL arm without its teacher: blocked, not failed, nothing runs
    ssl = subprocess.run(base + ['--only', 'main/tcs_ssl/s0', '--ssl-teacher',
                                 str(tmp_path / 'none.pth')],
                         capture_output=True, text=True, cwd=REPO)
    assert ssl.returncode == 0, ssl.stdout + ssl.stderr
    assert '2 cell(s) blocked: no SSL teacher' in ssl.stdout
    assert 'start' not in ssl.stdout and len(cells) == len(
        list((res / 'cells').iterdir()))
    rep = subprocess.run(base + ['--report', '--doc', str(doc)],
                         capture_output=True, text=True, cwd=REPO)
    assert rep.returncode == 0, rep.stdout + rep.stderr
    text = doc.read_text()
    assert R.BEGIN in text and 'TCS, teacher store' in text
    assert 'not run (its teacher is pre-trained on a GPU' in text
    assert (tmp_path / R.PLOT).is_file()
