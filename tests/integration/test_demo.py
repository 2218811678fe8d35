"""The end-to-end demo (tools/kdep_demo.py) and its synthetic-shapes data."""
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from helpers.paths import REPO
from helpers.scripts import load_script

DEMO = osp.join(REPO, 'tools', 'kdep_demo.py')

pytest.importorskip('cv2')


def _digest(root):
    """sha256 over every file's relative path and bytes under ``root``."""
    h = hashlib.sha256()
    for dirpath, dirnames, files in os.walk(root):
        dirnames.sort()
        for name in sorted(files):
            path = osp.join(dirpath, name)
            h.update(osp.relpath(path, root).encode())
            with open(path, 'rb') as f:
                h.update(f.read())
    return h.hexdigest()


# ------------------------------------------------------------- generator
def test_generator_layout_and_counts(tmp_path):
    import cv2

    from kdep_mm.datasets.synthetic_shapes import (generate_shapes_dataset,
                                                   shape_classes)
    root = tmp_path / 'shapes'
    meta = generate_shapes_dataset(str(root), num_classes=10,
                                   train_per_class=3, val_per_class=2,
                                   seed=0)
    classes = [c[0] for c in shape_classes(10)]
    assert meta['classes'] == classes == sorted(classes)
    assert meta['counts'] == {'train': 30, 'val': 20}
    assert meta['reused'] is False
    for split, n in (('train', 3), ('val', 2)):
        assert sorted(os.listdir(root / split)) == classes
        for cls in classes:
            files = sorted(os.listdir(root / split / cls))
            assert len(files) == n
            assert all(f.endswith('.png') for f in files)
    img = cv2.imread(str(root / 'train' / classes[0] / '00000.png'))
    assert img.shape == (32, 32, 3)
    # no temporary folder is left next to the dataset
    assert sorted(os.listdir(tmp_path)) == ['shapes']
    # the 5 shapes x {solid, striped} of the default 10 classes
    assert {c.split('_', 1)[1] for c in classes} == {
        f'{s}_{t}'
        for s in ('circle', 'square', 'triangle', 'star', 'cross')
        for t in ('solid', 'striped')
    }


def test_generator_deterministic(tmp_path):
    from kdep_mm.datasets.synthetic_shapes import generate_shapes_dataset
    kw = dict(num_classes=4, train_per_class=3, val_per_class=2)
    generate_shapes_dataset(str(tmp_path / 'a'), seed=0, **kw)
    generate_shapes_dataset(str(tmp_path / 'b'), seed=0, **kw)
    generate_shapes_dataset(str(tmp_path / 'c'), seed=1, **kw)
    a, b, c = (_digest(str(tmp_path / n)) for n in 'abc')
    assert a == b
    assert a != c
    # images differ from one another within a class
    d = tmp_path / 'a' / 'train'
    cls = sorted(os.listdir(d))[0]
    blobs = {(d / cls / f).read_bytes() for f in os.listdir(d / cls)}
    assert len(blobs) == 3


def test_generator_reuses_complete_folder(tmp_path):
    from kdep_mm.datasets.synthetic_shapes import generate_shapes_dataset
    root = str(tmp_path / 'shapes')
    kw = dict(num_classes=3, train_per_class=2, val_per_class=1, seed=0)
    generate_shapes_dataset(root, **kw)
    probe = osp.join(root, 'train', sorted(os.listdir(
        osp.join(root, 'train')))[0], '00000.png')
    mtime = os.stat(probe).st_mtime_ns
    meta = generate_shapes_dataset(root, **kw)
    assert meta['reused'] is True
    assert os.stat(probe).st_mtime_ns == mtime
    # other parameters: refused, never overwritten
    with pytest.raises(FileExistsError, match='other parameters'):
        generate_shapes_dataset(root, **dict(kw, train_per_class=5))
    # a foreign folder without meta.json: refused
    os.makedirs(tmp_path / 'foreign' / 'train')
    with pytest.raises(FileExistsError, match='not a complete'):
        generate_shapes_dataset(str(tmp_path / 'foreign'), **kw)


def test_generator_bad_arguments(tmp_path):
    from kdep_mm.datasets.synthetic_shapes import generate_shapes_dataset
    with pytest.raises(ValueError, match='num_classes'):
        generate_shapes_dataset(str(tmp_path / 'x'), num_classes=1)
    with pytest.raises(ValueError, match='train_per_class'):
        generate_shapes_dataset(str(tmp_path / 'x'), train_per_class=0)
    assert not osp.exists(tmp_path / 'x')


# ------------------------------------------------------------- the demo
def _demo_module():
    return load_script(DEMO, 'kdep_demo_tool')


def _env():
    return dict(os.environ, PYTHONPATH=REPO + os.pathsep +
                os.environ.get('PYTHONPATH', ''))


README_TEMPLATE = 'intro\n{begin}\nold table\n{end}\noutro\n'


@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('kdep_demo')
    demo = _demo_module()
    (work / 'README.md').write_text(README_TEMPLATE.format(
        begin=demo.README_BEGIN, end=demo.README_END))
    proc = subprocess.run(
        [sys.executable, DEMO, '--smoke', '--work-dir',
         str(work), '--seed', '0', '--readme',
         str(work / 'README.md')],
        cwd=str(work), env=_env(), capture_output=True, text=True,
        timeout=600)
    return work, proc


def test_demo_smoke_runs(smoke_run):
    work, proc = smoke_run
    assert proc.returncode == 0, (proc.stdout[-4000:] + proc.stderr[-4000:])
    out = proc.stdout
    for header in ('(a) data', '(b) teacher', '(c) KDEP', '(d) export',
                   '(e) fine-tune kdep', '(e) fine-tune random',
                   '(f) results'):
        assert f'[kdep_demo] {header}' in out, header
    # the table
    assert '| stage | what | val top-1 (%) | time (s) |' in out
    assert '(e) fine-tune, KDEP init' in out
    assert '(e) fine-tune, random init' in out
    assert '**total**' in out
    # mmengine's own log lines come through
    assert 'Epoch(train)' in out or 'Iter(train)' in out


def test_demo_smoke_outputs(smoke_run):
    work, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    with open(work / 'results.json') as f:
        res = json.load(f)
    for key in ('teacher_top1', 'kdep_init_top1', 'random_init_top1',
                'kdep_gain', 'stage_seconds', 'total_seconds', 'settings',
                'paths', 'seed'):
        assert key in res, key
    assert set(res['stage_seconds']) == {
        'data', 'teacher', 'kdep', 'export', 'finetune_kdep',
        'finetune_random'
    }
    for key in ('teacher_top1', 'kdep_init_top1', 'random_init_top1'):
        assert 0. <= res[key] <= 100.
    assert res['seed'] == 0 and res['smoke'] is True
    assert res['settings']['student_dim'] == 32
    assert res['settings']['teacher_dim'] == 64
    assert (work / 'results.md').read_text().startswith('# KDEP demo')

    # the exported student: backbone.* keys only, loads into the student
    from kdep_mm.registry import MODELS
    from kdep_mm.utils.checkpoint import safe_torch_load
    ckpt = res['paths']['student_ckpt']
    assert osp.isfile(ckpt)
    assert ckpt == str(work / 'student_kdep.pth')
    state = safe_torch_load(ckpt, map_location='cpu')['state_dict']
    assert state and all(k.startswith('backbone.') for k in state)
    import kdep_mm.models  # noqa: F401
    backbone = MODELS.build(
        dict(type='CIFARResNet', depth=20, base_channels=8))
    backbone.load_state_dict(
        {k[len('backbone.'):]: v for k, v in state.items()}, strict=True)
    # the SVD basis was fitted and saved in the KDEP work dir
    assert (work / 'kdep' / 'svd_basis.pth').is_file()


# ------------------------------------------------ README from the run
def test_demo_readme_block_is_the_printed_report(smoke_run):
    """--readme writes exactly the report the run printed (and results.md
    holds) between the markers, and leaves the rest of the file alone."""
    work, proc = smoke_run
    assert proc.returncode == 0, proc.stderr[-4000:]
    demo = _demo_module()
    report = (work / 'results.md').read_text()[len('# KDEP demo results\n\n'):]
    assert report.strip() and report.strip() in proc.stdout
    assert (work / 'README.md').read_text() == (
        f'intro\n{demo.README_BEGIN}\n{report}{demo.README_END}\noutro\n')
    res = json.loads((work / 'results.json').read_text())
    assert f'{res["kdep_init_top1"]:.2f}' in report
    assert f'{res["random_init_top1"]:.2f}' in report
    assert res['command'] == (f'python tools/kdep_demo.py --smoke --work-dir '
                              f'{work} --seed 0')
    assert res['command'] in report
    # the KDEP stage validated with the collapse signal
    assert isinstance(res['kdep_explained_var'], float)


def test_update_readme_refuses_missing_markers(tmp_path):
    demo = _demo_module()
    path = tmp_path / 'R.md'
    path.write_text('no markers here\n')
    with pytest.raises(SystemExit, match='markers'):
        demo.update_readme(str(path), 'table')
    assert path.read_text() == 'no markers here\n'
    path.write_text(f'{demo.README_END}\n{demo.README_BEGIN}\n')
    with pytest.raises(SystemExit, match='markers'):
        demo.update_readme(str(path), 'table')


def test_smoke_never_writes_the_real_readme():
    demo = _demo_module()
    with pytest.raises(SystemExit):
        demo.parse_args(['--smoke', '--readme'])
    assert demo.parse_args(['--readme']).readme == osp.join(REPO,
                                                             'README.md')


def test_repo_readme_table_comes_from_the_default_command():
    """README.md's demo table was written by a run of the plain default
    command (seed 0), not typed in."""
    demo = _demo_module()
    with open(osp.join(REPO, 'README.md')) as f:
        text = f.read()
    assert text.count(demo.README_BEGIN) == 1
    assert text.count(demo.README_END) == 1
    block = text.split(demo.README_BEGIN)[1].split(demo.README_END)[0]
    assert block.strip().startswith('`python tools/kdep_demo.py` on ')
    assert 'seed 0, 1 torch thread(s)' in block
    assert '| (e) fine-tune, KDEP init |' in block
    assert 'KDEP init vs random init:' in block


# --------------------------------------------- the claim, on the real demo
#: KDEP-init minus random-init val top-1 (points) that the default demo
#: (seed 0) must reach, and the fraction of the target's variance the KDEP
#: student must explain at its last validation; measured runs in
#: test_demo_kdep_beats_random_init.
KDEP_MARGIN = 5.0
MIN_EXPLAINED_VAR = 0.2


@pytest.mark.slow
def test_demo_kdep_beats_random_init():
    """The demo's claim on its fixed seed: the KDEP-initialised student
    beats the same student from random init by at least KDEP_MARGIN points
    of val top-1, and KDEP did not collapse.

    Measured runs of `python tools/kdep_demo.py` (seed 0, 1 thread; val
    top-1 of teacher / KDEP init / random init, gain, explained variance of
    the KDEP student), 2026-12-01, AMD EPYC, torch 2.14.1 (CPU):

    ====================================  ====  ====  ====  =====  =====
    run (CPU kernels)                     T     KDEP  rand  gain   EV
    ====================================  ====  ====  ====  =====  =====
    1 native (ATen AVX-512, oneDNN auto)  73.0  45.2  13.6  +31.6  0.511
    2 rerun of 1                          73.0  45.2  13.6  +31.6  0.511
    3 ATEN_CPU_CAPABILITY=avx2,           65.0  34.0  12.8  +21.2  0.473
      ONEDNN_MAX_CPU_ISA=AVX2
    4 ATEN_CPU_CAPABILITY=default,        71.4  30.8  14.4  +16.4  0.431
      ONEDNN_MAX_CPU_ISA=SSE41
    5 ONEDNN_MAX_CPU_ISA=AVX2             72.0  42.0  11.8  +30.2  0.482
    6 issue 15's fresh machine            59.0  24.0  12.8  +11.2  -
    ====================================  ====  ====  ====  =====  =====

    Run 2 is bit-identical to run 1 (same checkpoints): on one machine the
    demo is deterministic. Runs 3-5 emulate other CPUs by restricting the
    instruction sets of torch's kernels; run 3 reproduces the numbers the
    README had before issue 15 exactly, i.e. they came from an AVX2
    machine. The rounding differences of other kernels move KDEP init by up
    to 21 points, yet the gain stayed >= 11.2 in all six runs.
    KDEP_MARGIN = 5 is under half the smallest gain and about two standard
    deviations of the difference of two accuracies on the 500 val images
    (binomial, about 2.5 points) above zero; MIN_EXPLAINED_VAR = 0.2 is
    twice the collapse warning's threshold and under half the smallest
    measured value. About 4 minutes on 2 idle cores.
    """
    import tempfile
    # not pytest's tmp_path: on a shared machine, other pytest sessions
    # prune old /tmp/pytest-of-<user>/pytest-N folders, which deleted the
    # data of a 4-minute run under it
    with tempfile.TemporaryDirectory(prefix='kdep_demo_claim_') as work:
        proc = subprocess.run(
            [sys.executable, DEMO, '--work-dir', work, '--seed', '0'],
            cwd=work, env=_env(), capture_output=True, text=True,
            timeout=3600)
        assert proc.returncode == 0, (proc.stdout[-3000:] +
                                      proc.stderr[-3000:])
        with open(osp.join(work, 'results.json')) as f:
            res = json.load(f)
    gain = res['kdep_init_top1'] - res['random_init_top1']
    assert gain >= KDEP_MARGIN, (
        f'KDEP init {res["kdep_init_top1"]:.2f} vs random init '
        f'{res["random_init_top1"]:.2f}: {gain:+.2f} < {KDEP_MARGIN}')
    # the student learnt its target (the collapse signal of the KDEP stage)
    assert res['kdep_explained_var'] > MIN_EXPLAINED_VAR
