"""Every distillation config builds; the CIFAR KDEP config trains through
mmengine's Runner with the real ResNet-56 teacher on real CIFAR-10 images."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope
from mmengine.runner import Runner

import kdep_mm  # noqa: F401
from shared_data import unpack_shared
from kdep_mm.utils.checkpoint import safe_torch_load
from helpers.paths import REPO

KDEP_CONFIGS = sorted(
    glob.glob(osp.join(REPO, 'configs', 'kdep', '**', '*.py'),
              recursive=True))


@pytest.mark.parametrize('path', KDEP_CONFIGS,
                         ids=[osp.basename(p) for p in KDEP_CONFIGS])
def test_kdep_config_builds(path):
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'custom_imports' not in cfg  # the kdep_mm. prefix suffices
    model_cfg = cfg.model.copy()
    # no network here: the teacher URL/path is exercised by the CIFAR run
    model_cfg['teacher_ckpt'] = None
    init_default_scope(cfg.default_scope)
    model = ROOT_MODELS.build(model_cfg)
    assert type(model).__name__ in ('KDEPDistiller', 'LogitKDDistiller')
    if 'in1k' in path:
        assert cfg.teacher_ckpt.startswith('https://download.openmmlab.com')
        opt = cfg.optim_wrapper.optimizer
        assert opt.type == 'SGD' and opt.momentum == 0.9
        assert opt.weight_decay == 5e-4
        assert opt.lr == (0.1 if 'mbv2' in path else 0.3)
        assert cfg.train_cfg.max_epochs == 90
        assert cfg.param_scheduler.milestones == [30, 60]
        assert cfg.auto_scale_lr.base_batch_size == 512
    if type(model).__name__ == 'KDEPDistiller':
        x = torch.randn(2, 3, 224 if 'in1k' in path else 32,
                        224 if 'in1k' in path else 32)
        s = model.student_features(x)
        assert s.shape[1] == model.aligner.student_channels
        if path.endswith('_store.py'):  # store mode: no teacher is built
            assert model.teacher is None and model.basis_fit().from_store
            assert cfg.custom_hooks[0].store == cfg.teacher_store
            assert cfg.train_dataloader.dataset.pipeline[1].store.root == \
                cfg.teacher_store
            assert cfg.train_dataloader.dataset.pipeline[1].store.expected \
                .fields.feat[0] == (model.aligner.teacher_channels, )
        else:
            t = model.teacher_features(x)
            assert t.shape[1] == model.aligner.teacher_channels


def test_cifar_kdep_trains_with_real_teacher(tmp_path):
    cifar = unpack_shared('cifar10_jpeg.tar.gz')
    ckpts = unpack_shared('cifar10_resnets')
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'kdep', 'cifar10_r56_to_r20_w8.py'))
    cfg.work_dir = str(tmp_path)
    cfg.model.teacher_ckpt = osp.join(ckpts, 'resnet56-4bfd9763.th')
    # 80 real test images keep the run short; 2 iterations of batch 16
    from kdep_mm.datasets.subset import class_balanced_subset, write_ann_file
    ann = osp.join(tmp_path, 'sub.txt')
    write_ann_file(class_balanced_subset(osp.join(cifar, 'test'),
                                         per_class=8), ann)
    cfg.train_dataloader.dataset.update(data_root=cifar, data_prefix='test',
                                        ann_file=ann)
    cfg.train_dataloader.update(batch_size=16, num_workers=0,
                                persistent_workers=False)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2)
    cfg.param_scheduler = []
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.test_cfg = cfg.test_dataloader = cfg.test_evaluator = None
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.custom_hooks = [dict(type='kdep_mm.FitBasisHook', num_samples=64,
                             basis_file='svd_basis.pth')]
    runner = Runner.from_cfg(cfg)
    fp0 = runner.model.teacher_fingerprint()
    runner.train()
    model = runner.model
    assert model.teacher_fingerprint() == fp0
    assert int(model.aligner.num_fit_samples) == 64
    assert osp.isfile(osp.join(tmp_path, 'svd_basis.pth'))
    ckpt = safe_torch_load(osp.join(tmp_path, 'iter_2.pth'))
    keys = set(ckpt['state_dict'])
    assert any(k.startswith('student.') for k in keys)
    assert {'aligner.mean', 'aligner.basis'} <= keys
    assert not any('teacher' in k for k in keys)
    torch.testing.assert_close(ckpt['state_dict']['aligner.basis'],
                               model.aligner.basis)
    # the fitted basis: 32 orthonormal directions of the real teacher's
    # 64-d features, sorted by variance, none degenerate (64 fit samples
    # > 32 directions); the spectrum is the full 64-d one
    basis, ev = model.aligner.basis.double(), model.aligner.eigenvalues
    assert basis.shape == (64, 32) and ev.shape == (64, )
    torch.testing.assert_close(basis.T @ basis,
                               torch.eye(32, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    assert (ev[:-1] >= ev[1:]).all() and ev[31] > 0

    # export the distilled student and load it into an mmpretrain
    # classifier through init_cfg: zero missing / unexpected keys, and the
    # exported backbone computes exactly what the distilled student computes
    from kdep_mm.apis.export import export_student
    out = osp.join(tmp_path, 'student.pth')
    export_student(osp.join(tmp_path, 'iter_2.pth'), out)
    exported = safe_torch_load(out)
    assert exported['meta']['student_cfg']['type'] == 'kdep_mm.CIFARResNet'
    student_keys = {k[len('student.'):] for k in keys
                    if k.startswith('student.')}
    assert {k[len('backbone.'):]
            for k in exported['state_dict']} == student_keys
    init_default_scope('mmpretrain')
    clf = ROOT_MODELS.build(
        dict(type='mmpretrain.ImageClassifier',
             backbone=dict(exported['meta']['student_cfg'],
                           init_cfg=dict(type='Pretrained', checkpoint=out,
                                         prefix='backbone.')),
             neck=dict(type='mmpretrain.GlobalAveragePooling'),
             head=dict(type='mmpretrain.LinearClsHead', num_classes=10,
                       in_channels=32)))
    clf.init_weights()
    own = clf.backbone.state_dict()
    assert set(own) == student_keys
    for k, v in own.items():
        assert torch.equal(v, ckpt['state_dict']['student.' + k]), k
    x = torch.randn(2, 3, 32, 32)
    clf.eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf.backbone(x)[-1], model.student(x)[-1],
                                   rtol=0, atol=0)


def test_no_config_sets_custom_imports():
    """The ``kdep_mm.`` scope prefix imports kdep_mm's registry (and through
    its ``locations`` the registering module) on demand, so no config needs
    ``custom_imports``; without it, model, teacher and dataset bases can be
    listed beside the runtime base (mmengine refuses a key set by two bases
    of one list)."""
    offenders = []
    for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                          recursive=True):
        code = [ln for ln in open(path).read().splitlines()
                if not ln.lstrip().startswith('#')]
        if any('custom_imports' in ln for ln in code):
            offenders.append(osp.relpath(path, REPO))
    assert offenders == []
