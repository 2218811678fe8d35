"""Test of tools/train_involution_teacher.py: two training iterations of the
CIFAR-10 involution teacher config on the shared CIFAR-10 JPEG data, the
test-split score and the exported ``teacher.pth``.

Kept apart from ``tests/test_models/test_involution.py`` (the fast operator
and backbone tests): it starts a subprocess and scans the 60,000 images.
"""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from helpers.paths import REPO


TEACHER_CFG = osp.join(REPO, 'configs', 'ensemble', 'teachers',
                       'rednet26_cifar10.py')


def test_train_involution_teacher_tool(tmp_path):
    from shared_data import unpack_shared
    try:
        data_root = unpack_shared('cifar10_jpeg.tar.gz')
    except FileNotFoundError as err:
        pytest.skip(str(err))
    work_dir = tmp_path / 'teacher'
    options = [
        'train_cfg.max_iters=2', 'train_dataloader.batch_size=4',
        'test_dataloader.dataset.indices=8', 'test_dataloader.batch_size=4',
        'model.backbone.stem_channels=16'
    ]
    for split in ('train', 'test'):
        options += [
            f'{split}_dataloader.dataset.data_root={data_root}',
            f'{split}_dataloader.num_workers=0',
            f'{split}_dataloader.persistent_workers=False'
        ]
    proc = subprocess.run(
        [sys.executable,
         osp.join(REPO, 'tools', 'train_involution_teacher.py'),
         TEACHER_CFG, '--work-dir', str(work_dir), '--cfg-options'] +
        options,
        cwd=REPO,
        # one OpenMP thread: two on a busy 2-core machine are far slower
        env=dict(os.environ, OMP_NUM_THREADS='1'),
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary['iters'] == 2
    top1 = summary['test_metrics']['accuracy/top1']
    ckpt_path = work_dir / 'teacher.pth'
    assert summary['teacher'] == str(ckpt_path)
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    assert ckpt['meta']['test_metrics'] == summary['test_metrics']
    assert ckpt['meta']['classes'][0] == 'airplane'

    # loads strictly into the classifier of the config
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    cfg = Config.fromfile(TEACHER_CFG)
    cfg.model.backbone.stem_channels = 16
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PRETRAIN_MODELS.build(cfg.model)
    load_checkpoint(model, str(ckpt_path), map_location='cpu', strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt['state_dict'][k]), k

    # the reported test top-1 is what the saved teacher scores on those 8
    # test images, recomputed here from its predictions
    from mmengine.runner import Runner
    dl_cfg = cfg.test_dataloader.copy()
    dl_cfg.dataset.update(data_root=data_root, indices=8)
    dl_cfg.update(num_workers=0, persistent_workers=False, batch_size=4)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(dl_cfg.to_dict())
        model.eval()
        right = total = 0
        for batch in loader:
            with torch.no_grad():
                out = model.test_step(batch)
            right += sum(int(o.pred_label[0] == o.gt_label[0]) for o in out)
            total += len(out)
    assert total == 8
    assert top1 == pytest.approx(100. * right / total)
