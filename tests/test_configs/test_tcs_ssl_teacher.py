"""A self-supervised teacher for TCS: an mmpretrain MoCo v2 model (built
from configs/tcs/ssl/mocov2_cifar_resnet56_cifar10.py, i.e. mmpretrain's
MoCo v2 recipe, shrunk), trained one step by mmengine's Runner, which saves
its checkpoint as mmpretrain does; the TCS config
configs/tcs/cifar10_mocov2_r56_to_r20_w8_tcs_online_5k.py loads its
backbone as the teacher (teacher_revise_keys drop the rest), the teacher's
weights equal the saved backbone's, and one TCS training step runs."""
import copy
import glob
import os.path as osp

import pytest
import torch
from helpers.paths import REPO

SSL_CFG = osp.join(REPO, 'configs', 'tcs', 'ssl',
                   'mocov2_cifar_resnet56_cifar10.py')
TCS_CFG = osp.join(REPO, 'configs', 'tcs',
                   'cifar10_mocov2_r56_to_r20_w8_tcs_online_5k.py')
TINY = dict(depth=8, base_channels=4)  # 16-d pooled feature


@pytest.fixture(scope='module')
def ssl_checkpoint(tmp_path_factory):
    """A tiny MoCo v2 trained one iteration on 8 CIFAR-10 images by the
    Runner; returns (checkpoint path, the model's state dict)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    import sys
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    from shared_data import unpack_shared
    cifar = unpack_shared('cifar10_jpeg.tar.gz')
    tmp = tmp_path_factory.mktemp('mocov2')
    ann = tmp / 'ann.txt'
    ann.write_text(''.join(f'{p}\n' for p in sorted(
        osp.relpath(f, osp.join(cifar, 'train')) for f in glob.glob(
            osp.join(cifar, 'train', '*', '*.jpg')))[:8]))
    cfg = Config.fromfile(SSL_CFG)
    cfg.model.backbone.update(TINY)
    cfg.model.neck.update(in_channels=16, hid_channels=32, out_channels=8)
    cfg.model.update(queue_len=16, feat_dim=8)
    cfg.train_dataloader.update(batch_size=4, num_workers=0,
                                persistent_workers=False)
    cfg.train_dataloader.dataset.update(data_root=cifar,
                                        ann_file=str(ann))
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=1)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook',
                                        by_epoch=False, interval=1)
    cfg.log_processor = dict(by_epoch=False)
    cfg.work_dir = str(tmp)
    cfg.experiment_name = 'tiny_mocov2'
    runner = Runner.from_cfg(cfg)
    runner.train()
    ckpt = tmp / 'iter_1.pth'
    assert ckpt.is_file()
    from mmengine.runner.checkpoint import CheckpointLoader

    from kdep_mm.utils.checkpoint import allow_mmengine_checkpoint_types
    allow_mmengine_checkpoint_types()
    saved = CheckpointLoader.load_checkpoint(str(ckpt), map_location='cpu')
    return str(ckpt), saved['state_dict']


def _tcs_model_cfg(ckpt):
    from mmengine.config import Config
    cfg = Config.fromfile(TCS_CFG)
    m = copy.deepcopy(cfg.model)
    m.teacher.update(TINY)
    m.student.update(TINY)
    m.update(teacher_ckpt=ckpt, teacher_channels=16, student_channels=16,
             num_coords=16, min_coords=8, prune_interval=0)
    return cfg, m


def test_the_configs_share_one_backbone():
    from mmengine.config import Config
    ssl, tcs = Config.fromfile(SSL_CFG), Config.fromfile(TCS_CFG)
    assert ssl.model.type == 'MoCo'  # mmpretrain's model, by reference
    assert ssl.model.backbone == tcs.model.teacher
    assert ssl.model.neck.in_channels == tcs.model.teacher_channels == 64
    hooks = {h['type']: h for h in tcs.custom_hooks}
    assert hooks['kdep_mm.CheckTeacherStoresHook']['teacher_checkpoints'] \
        == tcs.model.teacher_ckpt


def test_ssl_backbone_is_the_tcs_teacher(ssl_checkpoint):
    from kdep_mm.registry import MODELS
    ckpt, saved = ssl_checkpoint
    # the checkpoint really is a whole MoCo model, not a backbone
    assert any(k.startswith('neck.') for k in saved)
    assert any(k.startswith('encoder_k.') for k in saved)
    assert 'queue' in saved
    cfg, m = _tcs_model_cfg(ckpt)
    model = MODELS.build(m.to_dict())
    teacher = model.teacher.state_dict()
    backbone = {k[len('backbone.'):]: v for k, v in saved.items()
                if k.startswith('backbone.')}
    assert set(teacher) == set(backbone)
    for k, v in teacher.items():
        assert torch.equal(v, backbone[k]), k
    # one TCS training step: coordinates fitted from the teacher, CE +
    # coordinate loss, the student moves, the teacher does not
    from mmengine.optim import build_optim_wrapper
    torch.manual_seed(0)
    x = torch.rand(40, 3, 32, 32) * 255
    with torch.no_grad():
        model.fit_coordinates(model.teacher_features(
            model.data_preprocessor(dict(inputs=list(x)), False)['inputs']))
    from mmpretrain.structures import DataSample
    batch = dict(inputs=list(x[:8]),
                 data_samples=[DataSample().set_gt_label(i % 10)
                               for i in range(8)])
    optim = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=0.1, momentum=0.9)))
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    losses = model.train_step(batch, optim)
    assert set(losses) >= {'loss_cls', 'loss_coord'}
    assert all(torch.isfinite(v) for v in losses.values())
    assert any(not torch.equal(before[k], v)
               for k, v in model.student.state_dict().items())
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, backbone[k]), k


def test_without_dropping_the_rest_the_load_is_refused(ssl_checkpoint):
    from kdep_mm.registry import MODELS
    ckpt, _ = ssl_checkpoint
    _, m = _tcs_model_cfg(ckpt)
    m.teacher_revise_keys = [(r'^backbone\.', '')]
    with pytest.raises(ValueError, match='unexpected keys .encoder_k'):
        MODELS.build(m.to_dict())
