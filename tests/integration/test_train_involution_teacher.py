"""Test of tools/train_involution_teacher.py, run by the smoke mode of
benchmarks/ensemble_teacher_gpu.sh: training iterations of the CIFAR-10
involution teacher config on the shared CIFAR-10 JPEG data, the epochs
planned from the probe, the test-split score and the exported
``teacher.pth``.

Kept apart from ``tests/test_models/test_involution.py`` (the fast operator
and backbone tests): it starts a subprocess and scans the 60,000 images.
"""
import json
import os
import os.path as osp
import subprocess

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import load_checkpoint
from helpers.paths import REPO


TEACHER_CFG = osp.join(REPO, 'configs', 'ensemble', 'teachers',
                       'rednet26_cifar10.py')


def test_train_involution_teacher_tool(tmp_path):
    """The GPU script's smoke mode (benchmarks/ensemble_teacher_gpu.sh
    --smoke): the same two runs of the tool as on the GPU (a probe, then the
    epochs that fit), here a few iterations at batch 8 on the CPU."""
    from shared_data import unpack_shared
    try:
        data_root = unpack_shared('cifar10_jpeg.tar.gz')
    except FileNotFoundError as err:
        pytest.skip(str(err))
    out, rdir = tmp_path / 'out', tmp_path / 'res'
    proc = subprocess.run(
        ['bash', osp.join(REPO, 'benchmarks', 'ensemble_teacher_gpu.sh'),
         '--smoke'],
        cwd=REPO,
        env=dict(os.environ, OUT=str(out), KDEP_GPU_RESULTS=str(rdir)),
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == [
        'env.txt', 'gpu_run.json', 'teacher.pth', 'teacher_gpu.log',
        'teacher_metrics.json']
    plan = json.loads((out / 'gpu_run.json').read_text())
    # smoke: 3-iteration "epochs", at most 2 of them; the epochs fill what
    # the budget leaves: floor(budget / epoch time), capped
    assert plan['iters_per_epoch'] == 3 and plan['epochs_max'] == 2
    assert plan['epoch_s'] == pytest.approx(3 * plan['iter_s'])
    assert plan['epochs'] == min(2, int(plan['train_budget_s'] //
                                        plan['epoch_s']))
    assert plan['max_iters'] == 3 * plan['epochs'] > 0
    work_dir = rdir / 'teacher'
    summary = json.loads((out / 'teacher_metrics.json').read_text())
    assert summary['iters'] == plan['max_iters']
    top1 = summary['test_metrics']['accuracy/top1']
    ckpt_path = work_dir / 'teacher.pth'
    assert summary['teacher'] == str(ckpt_path)
    assert (out / 'teacher.pth').read_bytes() == ckpt_path.read_bytes()
    ckpt = torch.load(ckpt_path, map_location='cpu', weights_only=True)
    assert ckpt['meta']['test_metrics'] == summary['test_metrics']
    assert ckpt['meta']['classes'][0] == 'airplane'

    # loads strictly into the classifier of the config
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    cfg = Config.fromfile(TEACHER_CFG)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PRETRAIN_MODELS.build(cfg.model)
    load_checkpoint(model, str(ckpt_path), map_location='cpu', strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt['state_dict'][k]), k

    # the reported test top-1 is what the saved teacher scores on those 16
    # test images, recomputed here from its predictions
    from mmengine.runner import Runner
    dl_cfg = cfg.test_dataloader.copy()
    dl_cfg.dataset.update(data_root=data_root, indices=16)
    dl_cfg.update(num_workers=0, persistent_workers=False, batch_size=8)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(dl_cfg.to_dict())
        model.eval()
        right = total = 0
        for batch in loader:
            with torch.no_grad():
                preds = model.test_step(batch)
            right += sum(int(p.pred_label[0] == p.gt_label[0])
                         for p in preds)
            total += len(preds)
    assert total == 16
    assert top1 == pytest.approx(100. * right / total)
