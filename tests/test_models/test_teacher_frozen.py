"""The teacher never changes, for every distillation algorithm (KDEP with the
SVD aligner, FitNets-style projector, Hinton logit KD, TCS with an online
teacher, DMAE, the ensemble with both teachers online): trained through
mmengine's Runner and its OptimWrapper (SGD with momentum and a large weight
decay, which would move any parameter it reached), the sha256 of every
teacher parameter and buffer (BatchNorm running statistics and counters
included) is identical before and after; the teacher is not among the
optimizer's parameters, not in the model's or the checkpoint's state dict,
and not wrapped by DDP (a 1-process gloo group, further steps through the
DDP wrapper)."""
import copy
import os.path as osp

import pytest
import torch

import kdep_mm  # noqa: F401
from helpers.models import cifar_resnet_classifier
from tiny_image_folder import make_image_folder
from kdep_mm.utils.checkpoint import safe_torch_load

CNN_TEACHER = cifar_resnet_classifier(num_classes=2)
CNN_STUDENT = dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=4)


def _vit_teacher():
    return dict(
        type='mmpretrain.MAE',
        backbone=dict(type='kdep_mm.VisibleMAEViT',
                      arch=dict(embed_dims=48, num_layers=4, num_heads=2,
                                feedforward_channels=96),
                      img_size=32, patch_size=8),
        neck=dict(type='MAEPretrainDecoder', num_patches=16, patch_size=8,
                  embed_dim=48, decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=8,
                  loss=dict(type='PixelReconstructionLoss',
                            criterion='L2')))


ALGORITHMS = {
    'kdep_svd': (dict(
        type='kdep_mm.KDEPDistiller',
        student=dict(CNN_STUDENT, base_channels=2),  # 8-d: 16 images fit
        teacher=CNN_TEACHER,
        aligner=dict(type='kdep_mm.SVDAligner', student_channels=8,
                     teacher_channels=32),
        distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=20.)),
        [dict(type='kdep_mm.FitBasisHook', num_samples=None)]),
    'kdep_fitnets': (dict(
        type='kdep_mm.KDEPDistiller', student=CNN_STUDENT,
        teacher=CNN_TEACHER,
        aligner=dict(type='kdep_mm.ProjectorAligner', student_channels=16,
                     teacher_channels=32),
        distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=1.)),
        []),
    'logit_kd': (dict(
        type='kdep_mm.LogitKDDistiller', student=CNN_STUDENT,
        teacher=CNN_TEACHER, student_channels=16, num_classes=2), []),
    'tcs_online': (dict(
        type='kdep_mm.TCSDistiller', student=CNN_STUDENT,
        teacher=CNN_TEACHER, student_channels=16, teacher_channels=32,
        num_classes=2, num_coords=8, prune_interval=2, prune_ratio=0.25,
        min_coords=4),
        [dict(type='kdep_mm.FitBasisHook', num_samples=12),
         dict(type='kdep_mm.TCSTailoringHook')]),
    'dmae': (dict(
        type='kdep_mm.DMAEDistiller',
        student=dict(type='mmpretrain.MAEViT',
                     arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                               feedforward_channels=64),
                     img_size=32, patch_size=8, mask_ratio=0.75),
        teacher=_vit_teacher(),
        neck=dict(type='mmpretrain.MAEPretrainDecoder', num_patches=16,
                  patch_size=8, embed_dim=32, decoder_embed_dim=32,
                  decoder_depth=1, decoder_num_heads=2),
        head=dict(type='mmpretrain.MAEPretrainHead', norm_pix=True,
                  patch_size=8,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        distill_pairs=[(2, 3)], mask_ratio=0.75), []),
    'ensemble_online': (dict(
        type='kdep_mm.EnsembleDistiller',
        student=dict(type='kdep_mm.MultiTokenViT',
                     arch=dict(embed_dims=16, num_layers=2, num_heads=2,
                               feedforward_channels=32),
                     img_size=32, patch_size=8, num_teacher_tokens=2),
        head=dict(type='kdep_mm.MultiTokenClsHead', num_classes=2,
                  in_channels=16, num_tokens=3),
        teacher_names=['cnn', 'cnn_wide'],
        teachers=dict(
            cnn=CNN_TEACHER,
            cnn_wide=cifar_resnet_classifier(num_classes=2,
                                             base_channels=4))),
        []),
}
# the ensemble student's own (trainable) per-teacher tokens are not teachers
STUDENT_TEACHER_TOKENS = ('student.teacher_tokens',
                          'student.teacher_pos_embed')


def _teachers(model):
    """Every teacher module of a distiller (the ensemble has several)."""
    teachers = getattr(model, 'teachers', None)
    return list(teachers.values()) if teachers else [model.teacher]


def _fingerprints(model):
    from kdep_mm.models.teachers import teacher_fingerprint
    return [teacher_fingerprint(t) for t in _teachers(model)]


def _teacher_keys(state_dict):
    return [k for k in state_dict
            if 'teacher' in k and k not in STUDENT_TEACHER_TOKENS]


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('frozen_data'))
    make_image_folder(root, num_classes=2, per_class=8, size=32)
    return root


def _runner(name, data_root, work_dir):
    from mmengine.runner import Runner
    model, hooks = copy.deepcopy(ALGORITHMS[name])
    model['data_preprocessor'] = dict(
        type=('kdep_mm.EnsembleDataPreprocessor' if name.startswith(
            'ensemble') else 'mmpretrain.ClsDataPreprocessor'),
        mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7], to_rgb=True)
    if name.startswith('ensemble'):
        model['data_preprocessor']['num_classes'] = 2
    return Runner(
        model=model,
        work_dir=work_dir,
        default_scope='mmpretrain',
        train_dataloader=dict(
            batch_size=4, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            dataset=dict(type='CustomDataset', data_root=data_root,
                         pipeline=[dict(type='LoadImageFromFile'),
                                   dict(type='RandomFlip', prob=0.5),
                                   dict(type='PackInputs')])),
        train_cfg=dict(by_epoch=False, max_iters=3),
        # weight decay 0.5: any teacher tensor the optimizer reached would
        # move even with a zero gradient
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.05, momentum=0.9,
                                          weight_decay=0.5)),
        custom_hooks=hooks,
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3,
                            by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        log_level='WARNING')


def _ids(tensors):
    return {id(t) for t in tensors}


@pytest.mark.parametrize('name', sorted(ALGORITHMS))
def test_teacher_never_changes(name, data_root, tmp_path):
    import torch.distributed as tdist
    from mmengine.model import MMDistributedDataParallel

    runner = _runner(name, data_root, str(tmp_path / 'work'))
    model = runner.model
    teachers = _teachers(model)
    assert len(teachers) == (2 if name.startswith('ensemble') else 1)
    t_tensors = set()
    for teacher in teachers:
        t_tensors |= _ids(teacher.parameters()) | _ids(teacher.buffers())
        assert any(True for _ in teacher.buffers()) or name == 'dmae'
    fp0 = _fingerprints(model)
    student0 = {k: v.clone() for k, v in model.student.state_dict().items()}

    runner.train()
    assert _fingerprints(model) == fp0
    for teacher in teachers:
        assert not teacher.training
        assert all(not p.requires_grad and p.grad is None
                   for p in teacher.parameters())
    # the optimizer holds exactly the model's (non-teacher) parameters
    opt_params = [p for g in runner.optim_wrapper.optimizer.param_groups
                  for p in g['params']]
    assert not _ids(opt_params) & t_tensors
    assert _ids(opt_params) == _ids(model.parameters())
    # the student did train (so the check above is not vacuous)
    moved = [k for k, v in model.student.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, student0[k])]
    assert moved
    # no teacher in the state dict nor in the checkpoint
    assert not _teacher_keys(model.state_dict())
    ckpt = safe_torch_load(osp.join(str(tmp_path / 'work'), 'iter_3.pth'))
    assert ckpt['meta']['iter'] == 3
    assert not _teacher_keys(ckpt['state_dict'])
    assert not _ids(ckpt['state_dict'].values()) & t_tensors

    # DDP (one gloo process): the wrapper holds no teacher tensor and two
    # more optimizer steps through it leave the teacher as it was
    tdist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/pg', rank=0, world_size=1)
    try:
        ddp = MMDistributedDataParallel(module=model)
        assert not (_ids(ddp.parameters()) | _ids(ddp.buffers())) & t_tensors
        assert _ids(ddp.parameters()) == _ids(model.parameters())
        for batch in list(runner.train_dataloader)[:2]:
            log = ddp.train_step(batch, runner.optim_wrapper)
            assert torch.isfinite(log['loss'])
    finally:
        tdist.destroy_process_group()
    assert _fingerprints(model) == fp0


def test_a_plain_module_teacher_keeps_its_weights_and_freezes():
    """A plain ``nn.Module`` (no mmengine ``init_weights``, e.g. a timm or
    hand-built network) is taken as it is: its weights untouched, then
    frozen and in eval mode."""
    from kdep_mm.models.teachers import FrozenTeacher
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Dropout(0.5))
    before = copy.deepcopy(net.state_dict())
    t = FrozenTeacher(net)
    assert not t.module.training
    assert not any(p.requires_grad for p in t.module.parameters())
    for k, v in t.module.state_dict().items():
        assert torch.equal(v, before[k])
