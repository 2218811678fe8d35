"""SupervisedKDDistiller (the labelled KD baselines of the TCS study): the
losses against hand computations, predictions, the classifier export
round trip, bad inputs."""
import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import init_default_scope
from mmpretrain.structures import DataSample

from kdep_mm.registry import MODELS

TINY = dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=4)  # 16-d
TEACHER = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=8),
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(type='mmpretrain.LinearClsHead', num_classes=10,
              in_channels=32))


def _build(distill, **kw):
    init_default_scope('mmpretrain')
    torch.manual_seed(0)
    return MODELS.build(dict(type='kdep_mm.SupervisedKDDistiller',
                             student=TINY, teacher=TEACHER, num_classes=10,
                             distill=distill, **kw))


def _batch(n=6):
    torch.manual_seed(1)
    x = torch.randn(n, 3, 32, 32)
    samples = [DataSample().set_gt_label(i % 10) for i in range(n)]
    return x, samples, torch.tensor([i % 10 for i in range(n)])


def test_logit_kd_loss_is_ce_plus_hinton_kl():
    model = _build('logits', cls_weight=0.5)
    x, samples, y = _batch()
    losses = model.loss(x, samples)
    with torch.no_grad():
        f_s = model.student(x)[-1].mean((2, 3))
        z_s = f_s @ model.classifier.weight.T + model.classifier.bias
        z_t = model.teacher(x, mode='tensor')
        t = 4.
        p_t = F.softmax(z_t / t, 1)
        kl = (p_t * (p_t.log() - F.log_softmax(z_s / t, 1))).sum(1).mean()
    torch.testing.assert_close(losses['loss_cls'],
                               0.5 * F.cross_entropy(z_s, y))
    torch.testing.assert_close(losses['loss_kd'], t * t * kl)


def test_fitnets_loss_is_ce_plus_mse_to_the_pooled_teacher_feature():
    model = _build('features')
    assert model.regressor.in_features == 16
    assert model.regressor.out_features == 32
    x, samples, y = _batch()
    losses = model.loss(x, samples)
    with torch.no_grad():
        f_s = model.student(x)[-1].mean((2, 3))
        # the teacher's last block before its final ReLU, pooled
        f_t = model.teacher_features(x)
        ref = ((model.regressor(f_s) - f_t) ** 2).mean()
        z_s = model.classifier(f_s)
    assert f_t.shape == (6, 32)
    # pre-activation: some pooled values are negative, which no pooled
    # post-ReLU output could be
    assert (f_t < 0).any()
    torch.testing.assert_close(losses['loss_cls'], F.cross_entropy(z_s, y))
    torch.testing.assert_close(losses['loss_kd'], ref)


def test_train_step_moves_the_student_not_the_teacher():
    from mmengine.optim import build_optim_wrapper
    model = _build('logits')
    x, samples, _ = _batch()
    opt = build_optim_wrapper(model, dict(optimizer=dict(type='SGD',
                                                         lr=0.1)))
    t0 = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    s0 = {k: v.clone() for k, v in model.student.state_dict().items()}
    model.train_step(dict(inputs=list(x * 50 + 128), data_samples=samples),
                     opt)
    assert all(torch.equal(v, t0[k])
               for k, v in model.teacher.state_dict().items())
    assert any(not torch.equal(v, s0[k])
               for k, v in model.student.state_dict().items())
    assert not any(k.startswith('teacher') or 'frozen' in k
                   for k in model.state_dict())


def test_predict_and_classifier_export_round_trip():
    model = _build('features').eval()
    x, samples, _ = _batch()
    out = model.predict(x, samples)
    logits = model(x, mode='tensor')
    assert [int(s.pred_label) for s in out] == logits.argmax(1).tolist()
    torch.testing.assert_close(torch.stack([s.pred_score for s in out]),
                               F.softmax(logits, 1))
    ckpt = model.classifier_checkpoint()
    clf = MODELS.build(dict(
        type='mmpretrain.ImageClassifier', backbone=TINY,
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=10,
                  in_channels=ckpt['meta']['in_channels']))).eval()
    clf.load_state_dict(ckpt['state_dict'], strict=True)
    with torch.no_grad():
        torch.testing.assert_close(clf(x, mode='tensor'), logits)


def test_bad_inputs_name_the_key():
    with pytest.raises(ValueError, match='model.distill'):
        _build('hints')
    with pytest.raises(ValueError, match='model.teacher_feature'):
        _build('logits', teacher_feature='layer3')
    with pytest.raises(ValueError, match='model.teacher_channels is 8'):
        _build('features', teacher_channels=8)
    init_default_scope('mmpretrain')
    with pytest.raises(ValueError, match='model.teacher_channels is needed'):
        MODELS.build(dict(type='kdep_mm.SupervisedKDDistiller',
                          student=TINY, teacher=None, num_classes=10,
                          distill='features'))
    alone = MODELS.build(dict(type='kdep_mm.SupervisedKDDistiller',
                              student=TINY, teacher=None, num_classes=10))
    x, samples, _ = _batch(2)
    with pytest.raises(ValueError, match='model.teacher is None'):
        alone.loss(x, samples)
    model = _build('logits')
    with pytest.raises(ValueError, match='gt_label'):
        model.loss(torch.randn(2, 3, 32, 32), [DataSample(), DataSample()])
    # a logit teacher must have a head
    with pytest.raises(ValueError, match='head'):
        MODELS.build(dict(type='kdep_mm.SupervisedKDDistiller',
                          student=TINY, teacher=TINY, num_classes=10))


def test_export_from_a_training_checkpoint(tmp_path):
    """tools/export_student.py --as classifier: the model rebuilt from the
    recorded config without its teacher, loaded strictly, written as an
    mmpretrain classifier that gives the same logits."""
    from mmengine.config import Config

    from kdep_mm.apis.export import export_classifier
    from kdep_mm.utils.checkpoint import atomic_save, safe_torch_load
    cfg = Config(dict(model=dict(
        type='kdep_mm.SupervisedKDDistiller', student=TINY, teacher=TEACHER,
        teacher_ckpt='/nowhere/teacher.pth', num_classes=10,
        distill='features', teacher_channels=32)))
    model = _build('features', teacher_channels=32).eval()
    src, dst = str(tmp_path / 'epoch_1.pth'), str(tmp_path / 'clf.pth')
    atomic_save(dict(state_dict=model.state_dict(),
                     meta=dict(cfg=cfg.pretty_text)), src)
    export_classifier(src, dst)
    clf = MODELS.build(dict(
        type='mmpretrain.ImageClassifier', backbone=TINY,
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=10,
                  in_channels=16))).eval()
    clf.load_state_dict(safe_torch_load(dst)['state_dict'], strict=True)
    x, _, _ = _batch()
    with torch.no_grad():
        torch.testing.assert_close(clf(x, mode='tensor'),
                                   model(x, mode='tensor'))
