"""A KDEP run killed by SIGKILL in the middle of an epoch and resumed with
``--resume`` ends with exactly the weights of an uninterrupted run, and the
fitted SVD basis comes back from the checkpoint instead of being refitted."""
import os.path as osp
import subprocess
import sys
import textwrap

import torch

from helpers.hooks import CUSTOM_IMPORTS
from helpers.launch import helpers_env, run_log_text
from tiny_image_folder import make_image_folder

from kdep_mm.utils.checkpoint import safe_torch_load
from helpers.paths import REPO

CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')


def _train(config, work_dir, data, *extra):
    cmd = [
        sys.executable,
        osp.join(REPO, 'tools', 'train.py'), config, '--work-dir', work_dir,
        '--cfg-options', f'train_dataloader.dataset.data_root={data}', *extra
    ]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO,
                          env=helpers_env(), timeout=600)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    data = str(tmp_path / 'data')
    make_image_folder(data, num_classes=2, per_class=8, size=32, seed=0)

    full = str(tmp_path / 'full')
    out = _train(CONFIG, full, data)
    assert out.returncode == 0, out.stderr[-3000:]

    # same config plus a hook that SIGKILLs the process after iteration 6,
    # in the middle of epoch 2 (4 iterations per epoch)
    killed_cfg = str(tmp_path / 'killed_cfg.py')
    with open(killed_cfg, 'w') as f:
        f.write(textwrap.dedent(f'''
            _base_ = [{CONFIG!r}]
            {CUSTOM_IMPORTS}
            custom_hooks = [
                dict(type='kdep_mm.FitBasisHook', num_samples=None),
                dict(type='kdep_mm.SigkillAtIterHook', at_iter=6),
            ]
        '''))
    run = str(tmp_path / 'run')
    out = _train(killed_cfg, run, data)
    assert out.returncode == -9, (out.returncode, out.stderr[-3000:])
    assert osp.isfile(osp.join(run, 'epoch_1.pth'))
    assert not osp.exists(osp.join(run, 'epoch_2.pth'))

    out = _train(CONFIG, run, data, '--resume')
    assert out.returncode == 0, out.stderr[-3000:]
    log = run_log_text(run)
    assert 'resumed epoch: 1, iter: 4' in log.replace('Resumed', 'resumed')
    assert 'aligner basis restored from the checkpoint' in log

    a = safe_torch_load(osp.join(full, 'epoch_3.pth'))
    b = safe_torch_load(osp.join(run, 'epoch_3.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 12
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    # the basis in the resumed run's final checkpoint is the one fitted
    # before the kill (bit-identical)
    c = safe_torch_load(osp.join(run, 'epoch_1.pth'))
    assert torch.equal(c['state_dict']['aligner.basis'],
                       b['state_dict']['aligner.basis'])
