"""tools/analysis_tools/: each tool runs on tiny data and writes its PNG.

One tiny KDEP run (tools/train.py, 16 synthetic images, 4 iterations) gives
a real json log and a real checkpoint (exported with export_student), and
tools/cache_teacher.py a real teacher store with 3 random views per image.
The tools run in-process through their ``main(argv)`` (plot_curves also as
a command, and mmpretrain's own analyze_logs.py on the same log).
"""
import glob
import json
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

from helpers.launch import tool_env, tool_modules
from tiny_image_folder import make_image_folder
from helpers.paths import REPO

TOOLS = osp.join(REPO, 'tools', 'analysis_tools')
CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')


@pytest.fixture(scope='module')
def tools():
    with tool_modules(TOOLS, 'feature_spectrum', 'cka', 'store_browser',
                      'plot_curves') as modules:
        yield modules


def _run(cmd, env):
    proc = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:]
    return proc.stdout


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('analysis')
    data = root / 'data'
    make_image_folder(str(data), num_classes=2, per_class=8)
    env = tool_env(data)
    _run([sys.executable, osp.join(REPO, 'tools', 'train.py'), CONFIG,
          '--work-dir', str(root / 'run'), '--cfg-options',
          'train_cfg.max_epochs=2', 'train_dataloader.batch_size=8'], env)
    _run([sys.executable, osp.join(REPO, 'tools', 'cache_teacher.py'), CONFIG,
          '--store', str(root / 'store'), '--views', '3', '--view-mode',
          'random', '--out-size', '24', '--batch-size', '8', '--no-progress'],
         env)
    from kdep_mm.apis.export import export_student
    export_student(str(root / 'run' / 'epoch_2.pth'),
                   str(root / 'student.pth'))
    return dict(root=root, data=data, env=env)


@pytest.fixture
def tiny_data_env(tiny, monkeypatch):
    monkeypatch.setenv('KDEP_TINY_DATA', str(tiny['data']))
    return tiny


def _saved(capsys, png):
    out = capsys.readouterr().out
    assert f'saved {png}' in out, out
    assert osp.getsize(png) > 1000
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    return out


# ------------------------------------------------------- the numbers
def test_spectrum_of_known_covariance(tools):
    g = torch.Generator().manual_seed(0)
    scales = torch.tensor([4., 2., 1., .5])
    x = torch.randn(20000, 4, generator=g, dtype=torch.float64) * scales
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g,
                                       dtype=torch.float64))
    ev = tools['feature_spectrum'].spectrum(x @ q.T + 3.)
    assert torch.allclose(ev, scales.double()**2, rtol=0.05)


def test_linear_cka_properties(tools):
    cka = tools['cka'].linear_cka
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 10, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(10, 10, generator=g,
                                       dtype=torch.float64))
    assert cka(x, x) == pytest.approx(1.0)
    # invariant to rotation, isotropic scaling and a shift
    assert cka(x, 3. * x @ q + 1.) == pytest.approx(1.0)
    # the feature-space formula of Kornblith et al. (2019)
    y = torch.randn(200, 7, generator=g, dtype=torch.float64)
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = (yc.T @ xc).norm()**2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    assert cka(x, y) == pytest.approx(want.item())
    assert cka(x, y) < 0.2


# ------------------------------------------------------- the tools
@pytest.mark.slow
def test_feature_spectrum_writes_png(tools, tiny_data_env, capsys):
    png = str(tiny_data_env['root'] / 'spectrum.png')
    tools['feature_spectrum'].main([CONFIG, '--num-samples', '16', '--out',
                                    png])
    out = _saved(capsys, png)
    assert 'k = 8 of 32 directions keep' in out  # aligner.student_channels


@pytest.mark.slow
def test_cka_of_exported_student_writes_png(tools, tiny_data_env, capsys):
    png = str(tiny_data_env['root'] / 'cka.png')
    tools['cka'].main([CONFIG, str(tiny_data_env['root'] / 'student.pth'),
                       '--split', 'train', '--num-samples', '16', '--out',
                       png])
    out = _saved(capsys, png)
    lines = [ln for ln in out.splitlines() if ln.startswith('stage ')]
    assert len(lines) == 3  # CIFAR ResNet-8: layer1..layer3 on both sides
    for ln in lines:
        assert 0. <= float(ln.rsplit('CKA ', 1)[1]) <= 1.


def test_cka_refuses_a_checkpoint_of_another_student(tools, tiny_data_env,
                                                     tmp_path):
    bad = tmp_path / 'bad.pth'
    torch.save({'state_dict': {'backbone.conv1.weight': torch.zeros(1)}},
               str(bad))
    with pytest.raises(SystemExit, match='does not fit the student'):
        tools['cka'].main([CONFIG, str(bad), '--split', 'train',
                           '--num-samples', '4'])


@pytest.mark.slow
def test_store_browser_draws_the_stored_views(tools, tiny_data_env, capsys):
    from kdep_mm.datasets.store import TeacherStore
    store_dir = str(tiny_data_env['root'] / 'store')
    png = str(tiny_data_env['root'] / 'views.png')
    tools['store_browser'].main([CONFIG, store_dir, '--index', '0', '5',
                                 '--out', png])
    out = _saved(capsys, png)
    boxes, flips = TeacherStore(store_dir).views(5)
    line = [ln for ln in out.splitlines() if ln.startswith('sample 5 ')][0]
    for v, (box, flip) in enumerate(zip(boxes, flips)):
        want = f'v{v} box {tuple(round(float(b), 4) for b in box)}'
        assert want + (' flip' if flip else '') in line


def test_pixel_box(tools):
    assert tools['store_browser'].pixel_box(
        np.array([0., .25, .5, 1.]), 32, 16) == (0, 4, 16, 16)


@pytest.mark.slow
def test_plot_curves_of_a_real_run(tools, tiny, capsys):
    png = str(tiny['root'] / 'curves.png')
    tools['plot_curves'].main([str(tiny['root'] / 'run'), '--out', png])
    out = _saved(capsys, png)
    assert 'loss: 4 points' in out and 'loss_kd: 4 points' in out


def test_plot_curves_default_keys_with_validation(tools, tmp_path, capsys):
    """An epoch-based log with validation, in mmengine's json format."""
    log = tmp_path / 'run' / '20260101_000000' / 'vis_data'
    log.mkdir(parents=True)
    rows = [dict(lr=0.1, loss=2. - i / 4, loss_kd=1., time=.1, epoch=i // 2
                 + 1, iter=i + 1, step=i + 1) for i in range(4)]
    rows.insert(2, {'accuracy/top1': 40., 'data_time': 0., 'step': 1})
    rows.append({'accuracy/top1': 55., 'data_time': 0., 'step': 2})
    with open(log / '20260101_000000.json', 'w') as f:
        f.writelines(json.dumps(r) + '\n' for r in rows)
    (log / 'scalars.json').write_text('')
    png = str(tmp_path / 'c.png')
    tools['plot_curves'].main([str(tmp_path / 'run'), '--out', png])
    out = _saved(capsys, png)
    assert 'run: loss: 4 points, last 1.25' in out
    assert 'run: accuracy/top1: 2 points, last 55' in out
    assert 'lr' not in out.replace('loss', '')


@pytest.mark.slow
def test_plot_curves_command_and_mmpretrain_analyze_logs(tiny):
    """The command line, and mmpretrain's analyze_logs.py on our log."""
    png = str(tiny['root'] / 'cli_curves.png')
    out = _run([sys.executable, osp.join(TOOLS, 'plot_curves.py'),
                str(tiny['root'] / 'run'), '--keys', 'loss', '--out', png],
               tiny['env'])
    assert f'saved {png}' in out and osp.getsize(png) > 1000
    import mmpretrain
    script = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools',
                      'analysis_tools', 'analyze_logs.py')
    (json_log, ) = [
        p for p in glob.glob(str(tiny['root'] / 'run' / '*' / 'vis_data' /
                                 '*.json'))
        if not p.endswith('scalars.json')
    ]
    png = str(tiny['root'] / 'mmpretrain_curves.png')
    env = dict(tiny['env'], MPLBACKEND='Agg')
    _run([sys.executable, script, 'plot_curve', json_log, '--keys', 'loss',
          'loss_kd', '--out', png], env)
    assert osp.getsize(png) > 1000
