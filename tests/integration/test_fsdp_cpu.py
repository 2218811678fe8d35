"""FSDP on the CPU: ``tools/dist_train.sh`` with 2 gloo ranks trains the tiny
KDEP model for 3 iterations under ``kdep_mm.FlexibleRunner`` +
``FSDPStrategy`` (configs/tiny/tiny_kdep_synthetic_fsdp.py: FSDP1 with
``device_id='cpu'``, ``use_orig_params=True``, a full state dict).

Checked: the loss goes down; the hidden teacher ran on every rank (the
basis is fitted) yet is in no checkpoint; the checkpoint is published
atomically; its student equals, within float tolerance, the student of one
process training on the union of the two ranks' batches (the same runner
without a strategy, batch 8: FSDP's reduce-scatter averages the gradients as DDP does); and
``tools/export_student.py`` exports it into a backbone that loads strictly.
The student uses GroupNorm and the pipeline no random flips, so both runs
see the same numbers (as tests/integration/test_dist_agreement.py). And the
tiny DMAE model under FSDP1 (one gloo process): ``use_orig_params`` and the
teacher's dtype under bf16 mixed precision.
"""
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import pytest
import torch

import kdep_mm  # noqa: F401
from helpers.launch import free_port, run_together, tool_env
from helpers.paths import REPO
from tiny_image_folder import make_image_folder
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import safe_torch_load

BASE = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')
FSDP = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic_fsdp.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')
EXPORT = osp.join(REPO, 'tools', 'export_student.py')
STUDENT = dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=2,
               norm_cfg=dict(type='GN', num_groups=1, requires_grad=True))
ATOL = 1e-5

COMMON = f'''
model = dict(student={STUDENT!r})
train_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackInputs')]
train_dataloader = dict(num_workers=0, sampler=dict(shuffle=False),
                        dataset=dict(pipeline=train_pipeline))
train_cfg = dict(_delete_=True, by_epoch=False, max_iters=3)
param_scheduler = []
optim_wrapper = dict(optimizer=dict(lr=0.005))
log_processor = dict(by_epoch=False)
default_hooks = dict(checkpoint=dict(by_epoch=False, interval=3,
                                     max_keep_ckpts=-1, save_last=False))
'''


def _config(path, base):
    with open(path, 'w') as f:
        f.write(f'_base_ = [{base!r}]\n' + textwrap.dedent(COMMON))
    return str(path)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp('fsdp_cpu')
    data = root / 'data'
    make_image_folder(str(data), num_classes=2, per_class=8, size=32, seed=0)
    fsdp_dir, single_dir = root / 'fsdp', root / 'single'
    cmds = [
        (['bash', DIST_TRAIN, _config(root / 'fsdp_cfg.py', FSDP), '2',
          '--work-dir', str(fsdp_dir)], tool_env(data, PORT=str(free_port()))),
        # one process, the same runner (which builds the model after the
        # data, unlike Runner: the same seed gives another init otherwise)
        ([sys.executable, TRAIN, _config(root / 'single_cfg.py', BASE),
          '--work-dir', str(single_dir), '--cfg-options',
          'train_dataloader.batch_size=8',
          'runner_type=kdep_mm.FlexibleRunner'], tool_env(data)),
    ]
    outs = run_together(cmds)
    return root, fsdp_dir, single_dir, outs[0]


def test_fsdp_trains_and_publishes_atomically(runs):
    _, fsdp_dir, _, log = runs
    losses = [float(v) for v in re.findall(r'Iter\(train\) \[\d/3\].*? '
                                           r'loss: ([0-9.]+)', log)]
    assert len(losses) == 3, log[-3000:]
    assert losses[-1] < losses[0], losses
    assert 'FSDPStrategy' in log and 'written atomically' in log
    assert not [d for d in os.listdir(fsdp_dir) if d.startswith('.')]
    ckpt = safe_torch_load(str(fsdp_dir / 'iter_3.pth'))
    keys = list(ckpt['state_dict'])
    assert not any('teacher' in k for k in keys)
    assert int(ckpt['state_dict']['aligner.num_fit_samples']) == 16


def test_fsdp_student_equals_one_process_on_the_union(runs):
    _, fsdp_dir, single_dir, _ = runs
    got = safe_torch_load(str(fsdp_dir / 'iter_3.pth'))['state_dict']
    want = safe_torch_load(str(single_dir / 'iter_3.pth'))['state_dict']
    assert sorted(got) == sorted(want)
    for k, v in want.items():
        torch.testing.assert_close(got[k].double(), v.double(), rtol=0,
                                   atol=ATOL, msg=k)


def test_fsdp_checkpoint_exports_and_loads_strictly(runs):
    root, fsdp_dir, _, _ = runs
    out = root / 'backbone.pth'
    proc = subprocess.run([sys.executable, EXPORT, str(fsdp_dir / 'iter_3.pth'),
                           str(out)], cwd=REPO, capture_output=True, text=True,
                          env=tool_env(root / 'data'), timeout=120)
    assert proc.returncode == 0, proc.stderr
    exported = safe_torch_load(str(out))['state_dict']
    student = MODELS.build(STUDENT)
    student.load_state_dict(
        {k[len('backbone.'):]: v for k, v in exported.items()}, strict=True)
    ckpt = safe_torch_load(str(fsdp_dir / 'iter_3.pth'))['state_dict']
    for k, v in student.state_dict().items():
        assert torch.equal(v, ckpt['student.' + k])


DMAE_UNDER_FSDP = '''
import os, sys, torch, torch.distributed as dist
sys.path[:0] = [{tests!r}, {models!r}]
os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT={port!r}, RANK='0',
                  WORLD_SIZE='1')
dist.init_process_group('gloo')
import kdep_mm  # noqa
from test_dmae import build
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
from torch.distributed.fsdp import MixedPrecision
bf16 = MixedPrecision(param_dtype=torch.bfloat16, reduce_dtype=torch.float32,
                      buffer_dtype=torch.float32)
for orig in (False, True):
    model = build()
    try:
        f = FSDP(model, device_id=torch.device('cpu'), use_orig_params=orig,
                 mixed_precision=bf16)
        losses = f(torch.randn(2, 3, 32, 32), mode='loss')
        sum(losses.values()).backward()
        print('RESULT', orig, 'ok', next(model.teacher.parameters()).dtype,
              all(torch.isfinite(v) for v in losses.values()))
    except ValueError as e:
        print('RESULT', orig, 'refused', str(e))
dist.destroy_process_group()
'''


def test_dmae_needs_use_orig_params_under_fsdp():
    """DMAE's frozen pos_embed beside trainable weights: FSDP1 refuses to
    flatten them with ``use_orig_params=False`` and trains them with
    ``True`` (configs/_base_/strategies/fsdp_bf16.py); under bf16 mixed
    precision the hidden teacher follows the student to bf16."""
    code = DMAE_UNDER_FSDP.format(
        tests=osp.join(REPO, 'tests'),
        models=osp.join(REPO, 'tests', 'test_models'), port=str(free_port()))
    proc = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          capture_output=True, text=True, timeout=240,
                          env=tool_env(REPO))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith('RESULT')]
    assert proc.returncode == 0 and len(lines) == 2, proc.stderr[-3000:]
    assert lines[0].startswith('RESULT False refused Must flatten tensors '
                               'with uniform `requires_grad`'), lines[0]
    assert lines[1] == 'RESULT True ok torch.bfloat16 True', lines[1]
