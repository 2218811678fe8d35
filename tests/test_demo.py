"""The end-to-end demo (tools/kdep_demo.py) and its synthetic-shapes data."""
import hashlib
import json
import os
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
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
@pytest.fixture(scope='module')
def smoke_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('kdep_demo')
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    proc = subprocess.run(
        [sys.executable, DEMO, '--smoke', '--work-dir',
         str(work), '--seed', '0'],
        cwd=str(work), env=env, capture_output=True, text=True, timeout=600)
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
