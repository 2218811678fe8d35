"""End-to-end tests of tools/train.py, tools/test.py and tools/dist_*.sh.

Every tool runs in a subprocess with the test interpreter, on CPU, with the
tiny config ``configs/tiny/tiny_classifier_synthetic.py`` on a synthetic
16-image folder.
"""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers.launch import free_port, run_together, tool_env
from tiny_image_folder import make_image_folder

import kdep_mm  # noqa: F401  (allows mmengine's checkpoint types in _load)
from helpers.paths import REPO
from helpers.scripts import load_script

CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_classifier_synthetic.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
TEST = osp.join(REPO, 'tools', 'test.py')
DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')
DIST_TEST = osp.join(REPO, 'tools', 'dist_test.sh')


def _run(cmd, env, timeout=240):
    proc = subprocess.run(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout)
    assert proc.returncode == 0, (
        f'{" ".join(map(str, cmd))} exited with {proc.returncode}:\n'
        f'{proc.stdout[-6000:]}')
    return proc.stdout


def _train_cmd(work_dir, *extra):
    return [sys.executable, TRAIN, CONFIG, '--work-dir', str(work_dir), *extra]


def _train(data_root, work_dir, *extra):
    return _run(_train_cmd(work_dir, *extra), tool_env(data_root))


def _load(path):
    # plain torch.load: weights_only=True by default, kdep_mm's allow-list
    # is active because this module imports kdep_mm
    return torch.load(path, map_location='cpu')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_data')
    make_image_folder(str(root), num_classes=2, per_class=8, size=32, seed=0)
    return root


@pytest.fixture(scope='module')
def trained_2(data_root, tmp_path_factory):
    """A work directory with a 2-iteration training run (iter_1, iter_2)."""
    work_dir = tmp_path_factory.mktemp('train2')
    out = _train(data_root, work_dir)
    return work_dir, out


@pytest.fixture(autouse=True)
def _no_local_rank(monkeypatch):
    # the tools' parse_args export LOCAL_RANK; keep this process clean
    monkeypatch.delenv('LOCAL_RANK', raising=False)


# --------------------------------------------------------------------------
# the synthetic dataset
# --------------------------------------------------------------------------
def test_make_image_folder_is_deterministic(tmp_path):
    a, b = tmp_path / 'a', tmp_path / 'b'
    classes = make_image_folder(str(a), per_class=3, size=16, seed=1)
    make_image_folder(str(b), per_class=3, size=16, seed=1)
    assert classes == ['class_0', 'class_1']
    files = sorted(
        osp.relpath(osp.join(d, f), a) for d, _, fs in os.walk(a)
        for f in fs)
    assert len(files) == 6
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    make_image_folder(str(tmp_path / 'c'), per_class=3, size=16, seed=2)
    assert (a / files[0]).read_bytes() != (tmp_path / 'c' /
                                           files[0]).read_bytes()


# --------------------------------------------------------------------------
# (a) train then test
# --------------------------------------------------------------------------
def test_train_then_test(trained_2, data_root, tmp_path):
    work_dir, out = trained_2
    # CUDA is not available here: the nccl backend of the config is
    # replaced (and said so) even without a launcher
    if not torch.cuda.is_available():
        assert 'using the "gloo" distributed backend' in out
    for i in (1, 2):
        assert osp.isfile(work_dir / f'iter_{i}.pth')
    assert not osp.exists(work_dir / 'iter_3.pth')
    with open(work_dir / 'last_checkpoint') as f:
        assert f.read().strip().endswith('iter_2.pth')
    ckpt = _load(work_dir / 'iter_2.pth')
    assert ckpt['meta']['iter'] == 2
    assert 'Iter(train) [2/2]' in out

    metrics_file = tmp_path / 'metrics.json'
    out = _run([
        sys.executable, TEST, CONFIG,
        str(work_dir / 'iter_2.pth'), '--work-dir',
        str(tmp_path / 'test'), '--out',
        str(metrics_file)
    ], tool_env(data_root))
    assert 'Load checkpoint from' in out
    assert 'accuracy/top1' in out
    with open(metrics_file) as f:
        metrics = json.load(f)
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0


# --------------------------------------------------------------------------
# (b) distributed training with 2 CPU processes (gloo)
# --------------------------------------------------------------------------
def test_dist_train_two_processes(data_root, tmp_path):
    work_dir = tmp_path / 'dist'
    env = tool_env(data_root, PORT=str(free_port()))
    out = _run(['bash', DIST_TRAIN, CONFIG, '2', '--work-dir',
                str(work_dir)], env, timeout=300)
    if not torch.cuda.is_available():
        # both ranks switched to gloo before the runner was built
        assert out.count('using the "gloo" distributed backend') == 2, out
    assert osp.isfile(work_dir / 'iter_2.pth')
    logs = [
        osp.join(d, f) for d, _, fs in os.walk(work_dir) for f in fs
        if f.endswith('.log')
    ]
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        log = f.read()
    assert 'Distributed training: True' in log
    assert 'GPU number: 2' in log or 'World size: 2' in log, log[:3000]
    assert "backend='gloo'" in log or 'backend="gloo"' in log or \
        torch.cuda.is_available()
    assert 'Iter(train) [2/2]' in log
    ckpt = _load(work_dir / 'iter_2.pth')
    assert ckpt['meta']['iter'] == 2


def test_dist_test_two_processes(trained_2, data_root, tmp_path):
    """tools/dist_test.sh, 2 CPU processes, dumping the predictions
    gathered from both ranks."""
    work_dir, _ = trained_2
    preds_file = tmp_path / 'preds.pkl'
    env = tool_env(data_root, PORT=str(free_port()))
    out = _run([
        'bash', DIST_TEST, CONFIG,
        str(work_dir / 'iter_2.pth'), '2', '--work-dir',
        str(tmp_path / 'dist_test'), '--out',
        str(preds_file), '--out-item', 'pred'
    ], env, timeout=300)
    assert 'accuracy/top1' in out
    import mmengine
    preds = mmengine.load(str(preds_file))
    assert len(preds) == 16
    assert sorted(int(p['gt_label'][0]) for p in preds) == [0] * 8 + [1] * 8


# --------------------------------------------------------------------------
# (c) --resume continues exactly where the run stopped
# --------------------------------------------------------------------------
def test_resume_matches_uninterrupted_run(trained_2, data_root, tmp_path):
    src, _ = trained_2
    # a copy of the 2-iteration run, its last_checkpoint pointing into it
    work_dir = tmp_path / 'resumed'
    shutil.copytree(src, work_dir)
    with open(work_dir / 'last_checkpoint', 'w') as f:
        f.write(str(work_dir / 'iter_2.pth'))

    ckpt2 = _load(work_dir / 'iter_2.pth')
    momentum = [
        s['momentum_buffer'] for s in ckpt2['optimizer']['state'].values()
    ]
    # the optimizer state is worth restoring: SGD momentum is non-zero
    assert momentum and any(m.abs().sum() > 0 for m in momentum)

    # the resumed 2+2 run and an uninterrupted 4-iteration run
    full_dir = tmp_path / 'full'
    env = tool_env(data_root)
    out, _ = run_together([
        (_train_cmd(work_dir, '--resume', '--cfg-options',
                    'train_cfg.max_iters=4'), env),
        (_train_cmd(full_dir, '--cfg-options', 'train_cfg.max_iters=4'), env)
    ])
    assert 'Auto resumed from the latest checkpoint' in out
    assert 'resumed epoch: 0, iter: 2' in out
    assert 'Iter(train) [3/4]' in out and 'Iter(train) [4/4]' in out
    assert 'Iter(train) [1/4]' not in out
    assert 'Iter(train) [2/4]' not in out
    resumed = _load(work_dir / 'iter_4.pth')
    assert resumed['meta']['iter'] == 4

    full = _load(full_dir / 'iter_4.pth')
    assert full['meta']['iter'] == 4

    assert full['state_dict'].keys() == resumed['state_dict'].keys()
    for k, v in full['state_dict'].items():
        assert torch.equal(v, resumed['state_dict'][k]), k
    fs, rs = full['optimizer']['state'], resumed['optimizer']['state']
    assert fs.keys() == rs.keys()
    for k in fs:
        assert torch.equal(fs[k]['momentum_buffer'],
                           rs[k]['momentum_buffer']), k
    # the MultiStepLR milestone (iter 3) was passed in both runs
    assert full['param_schedulers'] == resumed['param_schedulers']
    assert full['optimizer']['param_groups'][0]['lr'] == pytest.approx(
        resumed['optimizer']['param_groups'][0]['lr'])
    assert resumed['optimizer']['param_groups'][0]['lr'] == pytest.approx(
        0.005)


# --------------------------------------------------------------------------
# (d) weights_only stays on: checkpoints load, arbitrary classes do not
# --------------------------------------------------------------------------
def test_weights_only_allow_list(trained_2, tmp_path):
    work_dir, _ = trained_2
    script = textwrap.dedent('''
        import pickle, sys
        import torch
        import mmengine.runner  # noqa: F401  (mmengine alone: no allow-list)

        ckpt_path, evil_path = sys.argv[1], sys.argv[2]

        class Evil:
            def __init__(self):
                self.x = 1

        try:
            torch.load(ckpt_path)
        except pickle.UnpicklingError as e:
            print('REFUSED_BEFORE', str(e).splitlines()[0][:200])
        else:
            print('LOADED_BEFORE')

        import kdep_mm  # noqa: F401

        ckpt = torch.load(ckpt_path)  # weights_only defaults to True
        assert ckpt['meta']['iter'] == 2
        hub = ckpt['message_hub']
        print('LOADED_AFTER', type(hub['log_scalars']['train/loss']).__name__)

        # the getattr that HistoryBuffer needs resolves nothing else
        from mmengine.logging.history_buffer import HistoryBuffer

        class Sneaky:
            def __reduce__(self):
                return (getattr, (HistoryBuffer, '__init__'))

        torch.save({'x': Sneaky()}, evil_path)
        try:
            torch.load(evil_path)
        except pickle.UnpicklingError as e:
            print('REFUSED_GETATTR', 'not allowed' in str(e))
        else:
            print('LOADED_GETATTR')

        torch.save({'state_dict': {}, 'evil': Evil()}, evil_path)
        try:
            torch.load(evil_path)
        except pickle.UnpicklingError as e:
            print('REFUSED_EVIL', str(e).splitlines()[0][:200])
        else:
            print('LOADED_EVIL')
        # and with weights_only=False it does load: the file is fine, the
        # refusal above is the allow-list at work
        obj = torch.load(evil_path, weights_only=False)
        print('UNSAFE_OK', type(obj['evil']).__name__)
    ''')
    proc = subprocess.run(
        [sys.executable, '-c', script,
         str(work_dir / 'iter_2.pth'),
         str(tmp_path / 'evil.pth')],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out
    # torch's default really is weights_only=True: mmengine's checkpoint
    # is refused before kdep_mm adds its types
    assert 'REFUSED_BEFORE' in out, out
    assert 'LOADED_AFTER HistoryBuffer' in out, out
    assert 'REFUSED_GETATTR True' in out, out
    assert 'REFUSED_EVIL' in out and 'Evil' in out, out
    assert 'LOADED_EVIL' not in out, out
    assert 'UNSAFE_OK Evil' in out, out


# --------------------------------------------------------------------------
# command-line handling (in process, no training)
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def train_tool():
    return load_script(TRAIN, 'kdep_tools_train')


@pytest.fixture(scope='module')
def test_tool():
    return load_script(TEST, 'kdep_tools_test')


def _cfg(without=()):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    if without:
        cfg = Config({k: v for k, v in cfg.to_dict().items()
                      if k not in without})
    return cfg


def test_train_args(train_tool):
    args = train_tool.parse_args([CONFIG])
    assert args.resume is None and args.launcher == 'none'
    cfg = train_tool.merge_args(_cfg(), args)
    assert cfg.work_dir == osp.join('./work_dirs', 'tiny_classifier_synthetic')
    assert cfg.resume is False and cfg.load_from is None
    assert cfg.launcher == 'none'
    if not torch.cuda.is_available():
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'

    args = train_tool.parse_args([CONFIG, '--resume', '--work-dir', 'w'])
    cfg = train_tool.merge_args(_cfg(), args)
    assert args.resume == 'auto' and cfg.resume is True
    assert cfg.load_from is None and cfg.work_dir == 'w'

    args = train_tool.parse_args([CONFIG, '--resume', 'a.pth'])
    cfg = train_tool.merge_args(_cfg(), args)
    assert cfg.resume is True and cfg.load_from == 'a.pth'

    args = train_tool.parse_args(
        [CONFIG, '--amp', '--auto-scale-lr', '--cfg-options',
         'train_cfg.max_iters=7', 'optim_wrapper.optimizer.lr=0.2'])
    cfg = train_tool.merge_args(_cfg(), args)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.optimizer.lr == 0.2
    assert cfg.auto_scale_lr.enable is True
    assert cfg.train_cfg.max_iters == 7

    os.environ.pop('LOCAL_RANK', None)  # parse_args set it to 0 above
    args = train_tool.parse_args([CONFIG, '--local-rank', '3'])
    assert args.local_rank == 3 and os.environ['LOCAL_RANK'] == '3'


def test_train_flags_need_config_entries(train_tool):
    cfg = _cfg(without=['auto_scale_lr'])
    with pytest.raises(RuntimeError, match='auto_scale_lr'):
        train_tool.merge_args(cfg,
                              train_tool.parse_args([CONFIG,
                                                     '--auto-scale-lr']))
    cfg = _cfg(without=['optim_wrapper'])
    with pytest.raises(RuntimeError, match='optim_wrapper'):
        train_tool.merge_args(cfg, train_tool.parse_args([CONFIG, '--amp']))


def test_gloo_switch_only_without_cuda(train_tool, monkeypatch):
    cfg = _cfg()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    train_tool.launch.use_gloo_without_cuda(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'nccl'
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    train_tool.launch.use_gloo_without_cuda(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    # a config without env_cfg (mmengine's default is nccl) gets one
    cfg = _cfg(without=['env_cfg'])
    train_tool.launch.use_gloo_without_cuda(cfg)
    assert cfg.env_cfg.dist_cfg.backend == 'gloo'


def test_test_args(test_tool, tmp_path):
    args = test_tool.parse_args(
        [CONFIG, 'c.pth', '--show-dir',
         str(tmp_path / 'vis'), '--cfg-options', 'test_dataloader.batch_size=2'])
    cfg = test_tool.merge_args(_cfg(), args)
    assert cfg.load_from == 'c.pth' and cfg.resume is False
    assert cfg.work_dir == osp.join('./work_dirs', 'tiny_classifier_synthetic')
    assert cfg.test_dataloader.batch_size == 2
    vis = cfg.default_hooks.visualization
    assert vis.enable is True and vis.out_dir == str(tmp_path / 'vis')

    cfg = _cfg()
    del cfg.default_hooks['visualization']
    with pytest.raises(RuntimeError, match='visualization'):
        test_tool.merge_args(cfg, args)

    with pytest.raises(ValueError, match='pkl'):
        test_tool.merge_args(
            _cfg(),
            test_tool.parse_args(
                [CONFIG, 'c.pth', '--out', 'x.json', '--out-item', 'pred']))
