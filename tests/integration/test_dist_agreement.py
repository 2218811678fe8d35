"""Two gloo ranks on CPU (``tools/dist_train.sh CONFIG 2``) agree with each
other and with one process on the same global batch.

The tiny KDEP config runs 3 iterations with 2 ranks x 4 images and with
1 process x 8 images, no random augmentation, an unshuffled sampler and no
dataloader workers. Each rank dumps its model, losses, batches and the
teacher fingerprint (``helpers.hooks.DumpRankStateHook``). Checked:

* per step, the union of the ranks' batches is the 1-process batch;
* the SVD basis, the loss averaged over ranks and the student's weights are
  bit-identical on both ranks and equal to the 1-process run (atol 1e-5):
  DDP averages the gradients of equal per-rank batches, which is the
  gradient of the 1-process mean loss;
* the teacher is identical on both ranks, never changes, and none of its
  tensors is in the DDP wrapper.

The student uses GroupNorm here: BatchNorm normalises with per-rank batch
statistics (4 images, not 8), so BN students agree with a 1-process run only
through SyncBN, which torch runs on GPUs only; and with mmengine's
``broadcast_buffers=False`` each rank keeps its own BN running statistics
(the checkpoint holds rank 0's).
"""
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch

from helpers.hooks import CUSTOM_IMPORTS
from helpers.launch import free_port, tool_env
from tiny_image_folder import make_image_folder
from kdep_mm.utils.checkpoint import safe_torch_load
from helpers.paths import REPO

CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')
TRAIN = osp.join(REPO, 'tools', 'train.py')
DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')
ITERS = 3
ATOL = 1e-5


def _write_config(path):
    with open(path, 'w') as f:
        f.write(textwrap.dedent(f'''
            _base_ = [{CONFIG!r}]
            {CUSTOM_IMPORTS}
            model = dict(student=dict(
                norm_cfg=dict(type='GN', num_groups=1, requires_grad=True)))
            # no random augmentation: every run sees the same pixels
            train_pipeline = [
                dict(type='LoadImageFromFile'),
                dict(type='PackInputs'),
            ]
            # the base's 4 images a batch, here in the main process and
            # in order
            train_dataloader = dict(
                num_workers=0,
                sampler=dict(shuffle=False),
                dataset=dict(pipeline=train_pipeline))
            train_cfg = dict(
                _delete_=True, type='IterBasedTrainLoop', max_iters={ITERS})
            param_scheduler = []
            custom_hooks = [
                dict(type='kdep_mm.FitBasisHook', num_samples=None),
                dict(type='kdep_mm.DumpRankStateHook'),
            ]
            default_hooks = dict(
                checkpoint=dict(
                    by_epoch=False, interval={ITERS}, max_keep_ckpts=-1,
                    save_last=True))
        '''))


def _start(cmd, env):
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """(2-rank work dir, 1-process work dir, data root), trained at the same
    time (2 cores; start-up is mostly single-threaded imports)."""
    root = tmp_path_factory.mktemp('dist_agreement')
    data = root / 'data'
    make_image_folder(str(data), num_classes=2, per_class=8, size=32, seed=0)
    config = str(root / 'agree_cfg.py')
    _write_config(config)
    dist_dir, single_dir = root / 'dist', root / 'single'
    cmds = [
        (['bash', DIST_TRAIN, config, '2', '--work-dir',
          str(dist_dir)], tool_env(data, PORT=str(free_port()))),
        ([sys.executable, TRAIN, config, '--work-dir',
          str(single_dir), '--cfg-options',
          'train_dataloader.batch_size=8'], tool_env(data)),
    ]
    procs = [_start(cmd, env) for cmd, env in cmds]
    try:
        for (cmd, _), proc in zip(cmds, procs):
            out, _ = proc.communicate(timeout=300)
            assert proc.returncode == 0, (
                f'{" ".join(cmd)} exited with {proc.returncode}:\n'
                f'{out[-6000:]}')
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return dist_dir, single_dir, data


@pytest.fixture(scope='module')
def dumps(runs):
    dist_dir, single_dir, _ = runs
    r0 = safe_torch_load(str(dist_dir / 'rank0_state.pth'))
    r1 = safe_torch_load(str(dist_dir / 'rank1_state.pth'))
    single = safe_torch_load(str(single_dir / 'rank0_state.pth'))
    assert not osp.exists(single_dir / 'rank1_state.pth')
    return r0, r1, single


def test_ranks_and_wrappers(dumps):
    r0, r1, single = dumps
    assert (r0['rank'], r1['rank'], single['rank']) == (0, 1, 0)
    assert r0['world_size'] == r1['world_size'] == 2
    assert single['world_size'] == 1
    assert r0['is_wrapper'] and r1['is_wrapper']
    assert 'DistributedDataParallel' in r0['wrapper']
    assert not single['is_wrapper']


def test_union_of_rank_batches_is_the_single_process_batch(dumps):
    r0, r1, single = dumps
    for d in (r0, r1, single):
        assert [r['iter'] for r in d['records']] == list(range(1, ITERS + 1))
    for a, b, s in zip(r0['records'], r1['records'], single['records']):
        assert len(a['img_paths']) == len(b['img_paths']) == 4
        assert len(s['img_paths']) == 8
        assert not set(a['img_paths']) & set(b['img_paths'])
        assert sorted(a['img_paths'] + b['img_paths']) == sorted(
            s['img_paths'])
    # 16 images, 8 a step: step 3 starts the data over
    assert sorted(single['records'][0]['img_paths']) == sorted(
        single['records'][2]['img_paths'])


def test_basis_identical_on_ranks_and_equal_to_one_process(dumps):
    r0, r1, single = dumps
    keys = [k for k in r0['state_dict'] if k.startswith('aligner.')]
    assert {'aligner.basis', 'aligner.mean', 'aligner.eigenvalues',
            'aligner.num_fit_samples'} <= set(keys)
    for k in keys:
        assert torch.equal(r0['state_dict'][k], r1['state_dict'][k]), k
    # fitted on all 16 images in both runs
    assert int(r0['state_dict']['aligner.num_fit_samples']) == 16
    assert int(single['state_dict']['aligner.num_fit_samples']) == 16
    for k in keys:
        torch.testing.assert_close(
            r0['state_dict'][k].double(),
            single['state_dict'][k].double(),
            atol=ATOL,
            rtol=1e-4,
            msg=k)


def test_loss_agrees(dumps):
    r0, r1, single = dumps
    for a, b, s in zip(r0['records'], r1['records'], single['records']):
        # each rank's own loss is on its own 4 images ...
        assert a['loss'] != b['loss']
        # ... their mean is the same number on both ranks, and the
        # 1-process loss on the 8 images
        assert a['global_loss'] == b['global_loss']
        assert a['global_loss'] == pytest.approx((a['loss'] + b['loss']) / 2,
                                                 abs=1e-6)
        assert a['global_loss'] == pytest.approx(s['loss'], rel=1e-6)
        assert s['global_loss'] == s['loss']
        assert a['lr'] == b['lr'] == s['lr']


def test_student_weights_identical_on_ranks_and_equal_to_one_process(
        runs, dumps):
    dist_dir, single_dir, _ = runs
    r0, r1, single = dumps
    sd0, sd1, sds = r0['state_dict'], r1['state_dict'], single['state_dict']
    assert sd0.keys() == sd1.keys() == sds.keys()
    student = [k for k in sd0 if k.startswith('student.')]
    assert student and not any(k.startswith('teacher') for k in sd0)
    for k in sd0:
        assert torch.equal(sd0[k], sd1[k]), k
    for k in student:
        torch.testing.assert_close(sd0[k], sds[k], atol=ATOL, rtol=0, msg=k)
    # both runs started from the same student, and training moved it far
    # more than the tolerance: the comparison is not vacuous
    before = r0['state_dict_before']
    for k in student:
        assert torch.equal(before[k], r1['state_dict_before'][k]), k
        assert torch.equal(before[k], single['state_dict_before'][k]), k
    moved = max((sd0[k] - before[k]).abs().max().item() for k in student)
    assert moved > 100 * ATOL, moved
    # rank 0's checkpoint is what rank 0 (and so rank 1) holds, and it
    # matches the 1-process checkpoint
    ckpt = safe_torch_load(str(dist_dir / f'iter_{ITERS}.pth'))
    assert ckpt['meta']['iter'] == ITERS
    for k in sd0:
        assert torch.equal(ckpt['state_dict'][k], sd0[k]), k
    ckpt_single = safe_torch_load(str(single_dir / f'iter_{ITERS}.pth'))
    assert ckpt_single['meta']['iter'] == ITERS
    for k in student:
        torch.testing.assert_close(
            ckpt['state_dict'][k], ckpt_single['state_dict'][k], atol=ATOL,
            rtol=0, msg=k)


def test_teacher_unchanged_identical_and_outside_ddp(dumps):
    r0, r1, single = dumps
    for d in (r0, r1, single):
        assert d['fingerprint_before'] == d['fingerprint_after']
        assert d['num_teacher_params'] > 0
        assert d['teacher_in_wrapper'] is False
    # the randomly initialised teacher (teacher_ckpt=None, seed 0) is the
    # same on both ranks and in the 1-process run
    assert r0['fingerprint_after'] == r1['fingerprint_after'] == \
        single['fingerprint_after']
    # the DDP wrapper's parameters are the student's (the aligner has only
    # buffers)
    n_student = sum(1 for k in r0['state_dict']
                    if k.startswith('student.')
                    and not k.endswith(('running_mean', 'running_var',
                                        'num_batches_tracked')))
    assert r0['num_wrapper_params'] == r1['num_wrapper_params'] == n_student
