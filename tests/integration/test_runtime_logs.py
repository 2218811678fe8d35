"""The kdep_mm runtime base (configs/_base_/kdep_runtime.py): a log a person
can read and TensorBoard one ``--cfg-options`` line away.

Each run is tools/train.py on the tiny KDEP config (16 synthetic images,
batch 8: 2 iterations per epoch, 2 epochs = 4 iterations), in a subprocess.
"""
import glob
import json
import os.path as osp
import subprocess
import sys

import pytest

from helpers.launch import tool_env
from tiny_image_folder import make_image_folder
from helpers.paths import REPO

CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
SHORT_RUN = ['train_cfg.max_epochs=2', 'train_dataloader.batch_size=8']
TENSORBOARD_ON = 'visualizer.vis_backends.1.type=TensorboardVisBackend'


def _train(data_root, work_dir, *cfg_options):
    cmd = [sys.executable, TRAIN, CONFIG, '--work-dir', str(work_dir),
           '--cfg-options', *SHORT_RUN, *cfg_options]
    proc = subprocess.run(cmd, cwd=REPO, env=tool_env(data_root),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:]
    (log, ) = glob.glob(osp.join(str(work_dir), '*', '*.log'))
    with open(log) as f:
        return f.read()


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_data')
    make_image_folder(str(root), num_classes=2, per_class=8)
    return root


@pytest.fixture(scope='module')
def tb_run(data_root, tmp_path_factory):
    """The runtime base with TensorBoard switched on."""
    work_dir = tmp_path_factory.mktemp('tb_run')
    return work_dir, _train(data_root, work_dir, TENSORBOARD_ON)


def _lines(log, needle):
    return [line for line in log.splitlines() if needle in line]


def test_exp_name_logged_once_per_run(tb_run):
    _, log = tb_run
    assert len(_lines(log, 'Exp name: ')) == 1, _lines(log, 'Exp name: ')
    # nothing else is lost: every iteration of both epochs is still logged
    for it in ('[1][1/2]', '[1][2/2]', '[2][1/2]', '[2][2/2]'):
        assert _lines(log, f'Epoch(train) {it}') or _lines(
            log, f'Epoch(train)  {it}'), it


def test_stock_logger_hook_repeats_exp_name(data_root, tmp_path):
    """Control: mmengine's LoggerHook logs it at every epoch end (so the test
    above would see the repetition if it came back)."""
    log = _train(data_root, tmp_path, 'default_hooks.logger.type=LoggerHook')
    assert len(_lines(log, 'Exp name: ')) == 2
    # and without the switch TensorBoard is off: no event file
    assert not glob.glob(osp.join(str(tmp_path), '**', 'events.out.*'),
                         recursive=True)


def test_tensorboard_event_files_hold_the_loss_scalars(tb_run):
    event_accumulator = pytest.importorskip(
        'tensorboard.backend.event_processing.event_accumulator')
    work_dir, _ = tb_run
    (vis_data, ) = glob.glob(osp.join(str(work_dir), '*', 'vis_data'))
    events = glob.glob(osp.join(vis_data, 'events.out.tfevents.*'))
    assert len(events) == 1, events
    acc = event_accumulator.EventAccumulator(events[0])
    acc.Reload()
    tags = acc.Tags()['scalars']
    assert {'loss', 'loss_kd', 'lr'} <= set(tags), tags
    # the same numbers as the json log LocalVisBackend still writes
    with open(osp.join(vis_data, 'scalars.json')) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    want = {r['step']: r['loss'] for r in rows if 'loss' in r}
    got = {e.step: e.value for e in acc.Scalars('loss')}
    assert sorted(got) == [1, 2, 3, 4]
    assert got == pytest.approx(want, rel=1e-6)


def test_runtime_base_has_the_tensorboard_slot():
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    types = [b['type'] for b in cfg.visualizer.vis_backends]
    assert types == ['LocalVisBackend', 'kdep_mm.NoVisBackend']
