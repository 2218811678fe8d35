import copy
import os.path as osp

import pytest
import torch

import kdep_mm  # noqa: F401
from helpers.models import build_seeded
from kdep_mm.engine import fit_basis_online
from kdep_mm.models import (KDEPDistiller, LogitKDDistiller,
                            power_temperature_scaling)
from kdep_mm.models.utils import FeatureRecorder, default_feature_layer
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import atomic_save, safe_torch_load

TEACHER = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(type='mmpretrain.ResNet', depth=18, base_channels=16,
                  stem_channels=16),
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(type='mmpretrain.LinearClsHead', num_classes=10,
              in_channels=128))
STUDENT = dict(type='mmpretrain.ResNet', depth=18, base_channels=8,
               stem_channels=8, zero_init_residual=False)


def kdep_cfg(**kwargs):
    cfg = dict(
        type='KDEPDistiller',
        student=copy.deepcopy(STUDENT),
        teacher=copy.deepcopy(TEACHER),
        aligner=dict(type='SVDAligner', student_channels=64,
                     teacher_channels=128),
        distill_loss=dict(type='FeatureMSELoss', loss_weight=20.))
    cfg.update(kwargs)
    return cfg


def build_fitted(seed=0, **kwargs):
    model = build_seeded(kdep_cfg(**kwargs), seed)
    x = torch.randn(80, 3, 32, 32)
    model.aligner.fit(model.teacher_features(x))
    return model


def _manual_pre_relu_basic(backbone, x):
    """Last BasicBlock's output before its final ReLU, computed by hand."""
    x = backbone.relu(backbone.norm1(backbone.conv1(x)))
    x = backbone.maxpool(x)
    layers = [getattr(backbone, n) for n in backbone.res_layers]
    for layer in layers[:-1]:
        x = layer(x)
    last = layers[-1]
    for block in list(last)[:-1]:
        x = block(x)
    block = last[-1]
    out = block.relu(block.norm1(block.conv1(x)))
    out = block.norm2(block.conv2(out))
    identity = x if block.downsample is None else block.downsample(x)
    return out + identity


def _capture_default_layer(cfg, layer, size):
    """A seeded backbone of ``cfg`` in eval mode, whose default feature
    layer must be ``layer``; its last output and the feature recorded there
    for a random ``(2, 3, size, size)`` batch ``x``.

    Returns ``(backbone, x, post, pre)``.
    """
    backbone = build_seeded(cfg)
    backbone.eval()
    assert default_feature_layer(backbone) == layer
    rec = FeatureRecorder(backbone, layer)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        post = backbone(x)[-1]
    return backbone, x, post, rec.pop()


def test_pre_relu_capture_resnet():
    backbone, x, post, pre = _capture_default_layer(STUDENT,
                                                    'layer4.1.relu', 32)
    with torch.no_grad():
        manual = _manual_pre_relu_basic(backbone, x)
    torch.testing.assert_close(pre, manual)
    assert (pre < 0).any(), 'captured feature must be pre-ReLU'
    torch.testing.assert_close(post, pre.clamp_min(0))
    # a plain forward hook on the block returns the post-ReLU tensor
    seen = {}
    backbone.layer4[1].register_forward_hook(
        lambda m, i, o: seen.setdefault('o', o))
    with torch.no_grad():
        backbone(x)
    assert (seen['o'] >= 0).all()


def test_pre_relu6_capture_mobilenetv2():
    _, _, post, pre = _capture_default_layer(
        dict(type='mmpretrain.MobileNetV2', widen_factor=0.25),
        'conv2.activate', 64)
    assert pre.shape[1] == 1280  # last conv keeps 1280 channels
    assert (pre < 0).any()
    torch.testing.assert_close(post, pre.clamp(0, 6))


def test_loss_zero_at_aligned_teacher_target():
    model = build_fitted()
    x = torch.randn(4, 3, 32, 32)

    def student_outputs_target(inputs):
        t = model.teacher_features(inputs)
        z = (t - model.aligner.mean) @ model.aligner.basis
        return power_temperature_scaling(z, 0.1, 3)

    model.student_features = student_outputs_target
    assert model.loss(x)['loss_kd'].item() == 0.0


def test_gradients_reach_student_never_teacher_and_teacher_unchanged():
    model = build_fitted()
    fp0 = model.teacher_fingerprint()
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    assert not any(k.startswith('teacher') or '_teacher' in k
                   for k in model.state_dict())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    from mmengine.optim import OptimWrapper
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1,
                                         momentum=0.9))
    model.train()
    assert not model.teacher.training
    model.loss(torch.randn(4, 3, 32, 32))['loss_kd'].backward()
    for name, p in model.student.named_parameters():
        assert p.grad is not None, name
    assert any(p.grad.abs().sum() > 0 for p in model.student.parameters())
    assert all(p.grad is None for p in model.teacher.parameters())
    before = {k: v.clone() for k, v in model.student.state_dict().items()}
    for _ in range(3):
        x = torch.randn(4, 3, 32, 32)
        log = model.train_step(dict(inputs=x, data_samples=None), optim)
        assert torch.isfinite(log['loss'])
    assert not torch.equal(before['conv1.weight'],
                           model.student.state_dict()['conv1.weight'])
    assert all(p.grad is None for p in model.teacher.parameters())
    # teacher parameters and BN buffers bit-identical after SGD steps
    assert model.teacher_fingerprint() == fp0


def test_checkpoint_roundtrip_gives_identical_loss(tmp_path):
    model = build_fitted()
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    ref = model.loss(x)['loss_kd']
    path = osp.join(tmp_path, 'ckpt.pth')
    atomic_save({'state_dict': model.state_dict()}, path)
    torch.manual_seed(123)  # different random init of the student
    other = MODELS.build(kdep_cfg())
    # the teacher is random in this test, so copy it (real runs load
    # teacher_ckpt)
    other.teacher.load_state_dict(model.teacher.state_dict())
    assert not other.aligner.is_fitted
    other.load_state_dict(safe_torch_load(path)['state_dict'])
    other.eval()
    assert other.aligner.is_fitted
    torch.testing.assert_close(other.loss(x)['loss_kd'], ref, rtol=0, atol=0)


def test_teacher_checkpoint_loaded_strictly_and_errors(tmp_path):
    torch.manual_seed(0)
    teacher = MODELS.build(TEACHER)
    teacher.init_weights()
    path = osp.join(tmp_path, 'teacher.pth')
    torch.save({'state_dict': {('module.' + k): v
                               for k, v in teacher.state_dict().items()}},
               path)
    model = MODELS.build(kdep_cfg(teacher_ckpt=path))
    for k, v in teacher.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v)

    with pytest.raises(FileNotFoundError, match='model.teacher_ckpt'):
        MODELS.build(kdep_cfg(teacher_ckpt=osp.join(tmp_path, 'none.pth')))
    # another architecture: ResNet-34 keys do not match a ResNet-18
    other = copy.deepcopy(TEACHER)
    other['backbone']['depth'] = 34
    with pytest.raises(ValueError, match=r'model.teacher_ckpt.*missing'):
        MODELS.build(kdep_cfg(teacher=other, teacher_ckpt=path))
    bad = osp.join(tmp_path, 'bad.pth')
    with open(bad, 'wb') as f:
        f.write(b'not a checkpoint')
    with pytest.raises(RuntimeError, match='model.teacher_ckpt'):
        MODELS.build(kdep_cfg(teacher_ckpt=bad))


def test_bad_feature_layer_names_config_key():
    with pytest.raises(ValueError, match='model.student_feature'):
        MODELS.build(kdep_cfg(student_feature='layer9.0.relu'))
    with pytest.raises(ValueError, match='model.teacher_feature'):
        MODELS.build(kdep_cfg(teacher_feature='nope'))


def test_wrong_aligner_dims_name_the_key():
    model = MODELS.build(
        kdep_cfg(aligner=dict(type='SVDAligner', student_channels=32,
                              teacher_channels=128)))
    model.aligner.fit(model.teacher_features(torch.randn(40, 3, 32, 32)))
    with pytest.raises(ValueError, match='aligner.student_channels'):
        model.loss(torch.randn(2, 3, 32, 32))


class _Loader(list):
    """A list of batches with a .dataset of the right length."""

    def __init__(self, batches, n):
        super().__init__(batches)
        self.dataset = range(n)


def test_fit_aligner_uses_num_samples_and_refuses_too_few():
    model = build_fitted()
    imgs = torch.randint(0, 255, (80, 3, 32, 32), dtype=torch.uint8)
    loader = _Loader([dict(inputs=list(imgs[i:i + 20]))
                      for i in range(0, 80, 20)], 80)
    n = fit_basis_online(model, model.aligner, loader, num_samples=65,
                         show_progress=False)
    assert n == 65 and int(model.aligner.num_fit_samples) == 65
    # k = 64 student channels need more than 64 features
    with pytest.raises(ValueError, match='num_samples'):
        fit_basis_online(model, model.aligner, loader, num_samples=64,
                         show_progress=False)


def test_fit_aligner_one_pass_of_an_endless_loader():
    # num_samples=None is one pass over the dataset, also when the loader
    # never ends (InfiniteSampler of an iteration-based schedule): the
    # same basis as the finite pass
    import itertools
    imgs = torch.randint(0, 255, (80, 3, 32, 32), dtype=torch.uint8)
    batches = [dict(inputs=list(imgs[i:i + 20])) for i in range(0, 80, 20)]

    class Endless:
        dataset = range(80)

        def __iter__(self):
            return itertools.cycle(batches)

    finite, endless = build_fitted(), build_fitted()
    assert fit_basis_online(finite, finite.aligner, _Loader(batches, 80),
                            show_progress=False) == 80
    assert fit_basis_online(endless, endless.aligner, Endless(),
                            show_progress=False) == 80
    torch.testing.assert_close(endless.aligner.basis, finite.aligner.basis)


def test_fit_from_an_infinite_sampler_leaves_the_training_iterator_working():
    # the training loop holds an iterator of its InfiniteSampler loader
    # before FitBasisHook runs; fitting through that loader closed the
    # sampler's shared index generator and the next training batch raised
    # StopIteration. The fit now iterates a one-pass loader of its own.
    from mmengine.dataset import InfiniteSampler, pseudo_collate
    from torch.utils.data import DataLoader

    from kdep_mm.engine.hooks.fit_basis_hook import one_pass_loader
    imgs = torch.randint(0, 255, (80, 3, 32, 32), dtype=torch.uint8)
    data = [dict(inputs=img) for img in imgs]
    train = DataLoader(data, batch_size=16, collate_fn=pseudo_collate,
                       sampler=InfiniteSampler(data, shuffle=True, seed=0))
    train_iter = iter(train)
    next(train_iter)
    fit_loader = one_pass_loader(train)
    assert fit_loader is not train and len(fit_loader) == 5
    model = build_fitted()
    assert fit_basis_online(model, model.aligner, fit_loader,
                            show_progress=False) == 80
    for _ in range(10):  # still endless
        assert len(next(train_iter)['inputs']) == 16
    finite = DataLoader(data, batch_size=16, collate_fn=pseudo_collate)
    assert one_pass_loader(finite) is finite


def test_predict_sets_per_sample_loss_matching_batch_loss():
    model = build_fitted()
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    samples = model.predict(x)
    per = torch.stack([s.distill_loss for s in samples])
    torch.testing.assert_close(per.mean(), model.loss(x)['loss_kd'])


def test_logit_kd_distiller_trains_head_and_student():
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type='LogitKDDistiller', student=copy.deepcopy(STUDENT),
             teacher=copy.deepcopy(TEACHER), student_channels=64,
             num_classes=10))
    model.init_weights()
    x = torch.randn(4, 3, 32, 32)
    loss = model.loss(x)['loss_kd']
    loss.backward()
    assert model.student_head.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    assert 'student_head.weight' in model.state_dict()
    assert isinstance(model, LogitKDDistiller) and not isinstance(
        model, KDEPDistiller)
    with pytest.raises(ValueError, match='model.num_classes'):
        bad = MODELS.build(
            dict(type='LogitKDDistiller', student=copy.deepcopy(STUDENT),
                 teacher=copy.deepcopy(TEACHER), student_channels=64,
                 num_classes=7))
        bad.loss(x)


def test_the_hidden_teacher_follows_the_student_dtype():
    model = build_fitted()
    model.to(torch.float64)
    # the teacher moves at its next call, to the student's dtype
    feats = model.teacher_features(torch.randn(2, 3, 32, 32))
    assert feats.dtype == torch.float64
    assert next(model.teacher.parameters()).dtype == torch.float64
    assert all(b.dtype == torch.float64 for b in model.teacher.buffers()
               if b.is_floating_point())
    model.to(torch.float32)
    model.loss(torch.randn(2, 3, 32, 32))
    assert next(model.teacher.parameters()).dtype == torch.float32
    # still hidden: moving it did not register it
    own = {id(p) for p in model.parameters()}
    assert not any(id(p) in own for p in model.teacher.parameters())


def test_non_finite_loss_stops_with_term_and_iteration():
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper
    model = build_fitted()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    MessageHub.get_current_instance().update_info('iter', 41)
    before = model.student.conv1.weight.detach().clone()
    x = torch.randn(2, 3, 32, 32)
    x[0, 0, 0, 0] = float('nan')
    with pytest.raises(FloatingPointError,
                       match=r"'loss_kd'.*at iteration 42"):
        model.train_step(dict(inputs=x), optim)
    assert torch.equal(before, model.student.conv1.weight)  # no step taken


def test_basis_file_reuse_and_refusal(tmp_path):
    from kdep_mm.engine import load_basis, save_basis
    model = build_fitted()
    meta = model.basis_identity()
    path = osp.join(tmp_path, 'basis.pth')
    save_basis(model.aligner, path, meta)
    fresh = MODELS.build(kdep_cfg())
    fresh.teacher.load_state_dict(model.teacher.state_dict())
    load_basis(fresh.aligner, path, fresh.basis_identity())
    for k in ('mean', 'basis', 'eigenvalues', 'num_fit_samples'):
        assert torch.equal(getattr(fresh.aligner, k),
                           getattr(model.aligner, k))
    other = build_fitted(seed=5)  # another (random) teacher
    with pytest.raises(ValueError, match='basis_file.*teacher_fingerprint'):
        load_basis(other.aligner, path, other.basis_identity())


def test_channel_widths_inferred_when_omitted():
    """aligner.student_channels / teacher_channels and LogitKD's
    student_channels default to the widths measured on one image: the same
    model (same parameters, same loss) as with the widths written out."""
    torch.manual_seed(0)
    explicit = MODELS.build(kdep_cfg(aligner=dict(
        type='ProjectorAligner', student_channels=64, teacher_channels=128)))
    torch.manual_seed(0)
    inferred = MODELS.build(kdep_cfg(aligner=dict(type='ProjectorAligner')))
    assert (inferred.aligner.student_channels,
            inferred.aligner.teacher_channels) == (64, 128)
    assert inferred.student.training  # the probe restored the mode
    for (k, a), (_, b) in zip(explicit.state_dict().items(),
                              inferred.state_dict().items()):
        assert torch.equal(a, b), k
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(explicit.loss(x)['loss_kd'], inferred.loss(x)['loss_kd'])
    logit = MODELS.build(dict(type='LogitKDDistiller',
                              student=copy.deepcopy(STUDENT),
                              teacher=copy.deepcopy(TEACHER), num_classes=10))
    assert logit.student_head.in_features == 64
