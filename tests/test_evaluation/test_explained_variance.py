"""kdep_mm.ExplainedVarianceMetric, the in-run collapse signal (issue 15):
the formula against a hand computation, the collapse warning, the aligned
outputs of KDEPDistiller.predict, a real Runner validation, and the KDEP
configs that turn it on by default."""
import copy
import glob
import logging
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import METRICS as ROOT_METRICS

import kdep_mm  # noqa: F401
from kdep_mm.evaluation import ExplainedVarianceMetric
from helpers.paths import REPO

TINY = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')


class _Capture(logging.Handler):

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.records = []

    def emit(self, record):
        self.records.append(record)

    def warnings(self):
        return [r.getMessage() for r in self.records
                if r.levelno >= logging.WARNING
                and 'COLLAPSE WARNING' in r.getMessage()]


@pytest.fixture
def log():
    logger = MMLogger.get_current_instance()
    handler = _Capture()
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _samples(s, t):
    return [dict(aligned_student=torch.as_tensor(a),
                 aligned_target=torch.as_tensor(b)) for a, b in zip(s, t)]


def _run(metric, s, t, batch=3):
    for i in range(0, len(s), batch):
        metric.process(None, _samples(s[i:i + batch], t[i:i + batch]))
    return metric.evaluate(len(s))


def _hand(s, t):
    """The docstring's formula with plain loops."""
    n, c = len(t), len(t[0])
    t_bar = [sum(t[i][j] for i in range(n)) / n for j in range(c)]
    sse = sum((s[i][j] - t[i][j])**2 for i in range(n) for j in range(c))
    sst = sum((t_bar[j] - t[i][j])**2 for i in range(n) for j in range(c))
    return 1 - sse / sst, sse / (n * c), sst / (n * c)


def test_registered_in_kdep_mm_scope():
    from kdep_mm.registry import METRICS
    assert METRICS.get('ExplainedVarianceMetric') is ExplainedVarianceMetric
    m = ROOT_METRICS.build(dict(type='kdep_mm.ExplainedVarianceMetric'))
    assert isinstance(m, ExplainedVarianceMetric)
    assert (m.warn_below, m.patience) == (0.1, 2)


def test_matches_hand_computation():
    t = [[1., 2.], [3., -1.], [0., 0.5], [2., 4.], [-1., 1.]]
    s = [[1.5, 1.], [2., -0.5], [0.5, 0.], [1., 3.], [0., 1.]]
    ev, mse_s, mse_m = _hand(s, t)
    out = _run(ExplainedVarianceMetric(), s, t, batch=2)
    assert set(out) == {'distill/explained_var', 'distill/mse_student',
                        'distill/mse_mean'}
    assert out['distill/explained_var'] == pytest.approx(ev, abs=1e-6)
    assert out['distill/mse_student'] == pytest.approx(mse_s, abs=1e-6)
    assert out['distill/mse_mean'] == pytest.approx(mse_m, abs=1e-6)
    assert 0 < ev < 1


def test_reference_points():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 4)) * [1, 2, 3, 4] + 7
    # perfect student: 1
    out = _run(ExplainedVarianceMetric(), t, t)
    assert out['distill/explained_var'] == pytest.approx(1.0, abs=1e-6)
    # the mean target (a collapsed student): exactly 0
    mean = np.repeat(t.mean(0, keepdims=True), len(t), 0)
    out = _run(ExplainedVarianceMetric(), mean, t)
    assert out['distill/explained_var'] == pytest.approx(0.0, abs=1e-6)
    # a constant elsewhere: negative
    out = _run(ExplainedVarianceMetric(), np.zeros_like(t), t)
    assert out['distill/explained_var'] < -1
    # half the deviations from the mean: 1 - 0.25
    half = mean + 0.5 * (t - mean)
    out = _run(ExplainedVarianceMetric(), half, t)
    assert out['distill/explained_var'] == pytest.approx(0.75, abs=1e-5)


def test_collapse_warning_after_patience(log):
    rng = np.random.default_rng(1)
    t = rng.normal(size=(40, 8))
    collapsed = np.repeat(t.mean(0, keepdims=True), len(t), 0) + \
        0.05 * rng.normal(size=t.shape)
    good = t + 0.1 * rng.normal(size=t.shape)
    m = ExplainedVarianceMetric(warn_below=0.1, patience=2)
    _run(m, collapsed, t)
    assert log.warnings() == []  # one low validation: no warning yet
    out = _run(m, collapsed, t)
    assert out['distill/explained_var'] < 0.1
    msgs = log.warnings()
    assert len(msgs) == 1
    for part in ('warn_below=0.1', '2 validations in a row', 'patience=2',
                 'loss_weight'):
        assert part in msgs[0], msgs[0]
    _run(m, collapsed, t)  # still low: warned again
    assert len(log.warnings()) == 2
    _run(m, good, t)  # recovered: the count restarts
    _run(m, collapsed, t)
    assert len(log.warnings()) == 2 and m.low_streak == 1


def test_healthy_student_never_warns(log):
    rng = np.random.default_rng(2)
    t = rng.normal(size=(30, 4))
    m = ExplainedVarianceMetric(patience=1)
    for _ in range(3):
        out = _run(m, t + 0.3 * rng.normal(size=t.shape), t)
        assert out['distill/explained_var'] > 0.5
    assert log.warnings() == []


def test_constant_target_is_nan_and_counts_as_low(log):
    t = np.ones((5, 3))
    m = ExplainedVarianceMetric(patience=1)
    out = _run(m, t, t)
    assert np.isnan(out['distill/explained_var'])
    assert len(log.warnings()) == 1


def test_refuses_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match='patience'):
        ExplainedVarianceMetric(patience=0)
    with pytest.raises(ValueError, match='warn_below'):
        ExplainedVarianceMetric(warn_below=float('nan'))
    m = ExplainedVarianceMetric()
    with pytest.raises(KeyError, match='aligned_target'):
        m.process(None, [dict(distill_loss=torch.tensor(1.))])
    with pytest.raises(ValueError, match='shape'):
        m.process(None, [dict(aligned_student=torch.zeros(3),
                              aligned_target=torch.zeros(4))])


def test_kdep_predict_attaches_aligned_outputs():
    from kdep_mm.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(dict(
        type='KDEPDistiller',
        student=dict(type='CIFARResNet', depth=8, base_channels=2),
        teacher=dict(type='CIFARResNet', depth=8, base_channels=4),
        aligner=dict(type='SVDAligner', student_channels=8,
                     teacher_channels=16),
        distill_loss=dict(type='FeatureMSELoss', loss_weight=5.)))
    model.init_weights()
    x = torch.randn(24, 3, 16, 16)
    model.aligner.fit(model.teacher_features(x))
    model.eval()
    out = model(x[:5], mode='predict')
    with torch.no_grad():
        s, t = model.aligner(model.student_features(x[:5]),
                             model.teacher_features(x[:5]))
    for i, sample in enumerate(out):
        torch.testing.assert_close(sample.aligned_student, s[i])
        torch.testing.assert_close(sample.aligned_target, t[i])
        # the per-sample loss is the loss of these two vectors
        torch.testing.assert_close(
            sample.distill_loss, 5. * ((s[i] - t[i])**2).mean())


# ------------------------------------------------------- Runner, configs
@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    from tiny_image_folder import make_image_folder
    root = tmp_path_factory.mktemp('tiny')
    make_image_folder(str(root), num_classes=2, per_class=12, size=16)
    return str(root)


def _tiny_runner(tmp_path, data_root):
    from mmengine.runner import Runner
    cfg = Config.fromfile(TINY)
    cfg.work_dir = str(tmp_path)
    cfg.experiment_name = f'ev_{tmp_path.name}'
    cfg.train_dataloader.dataset.data_root = data_root
    cfg.train_dataloader.num_workers = 0
    cfg.train_cfg = dict(by_epoch=True, max_epochs=1, val_interval=1)
    cfg.val_dataloader = dict(
        batch_size=5, num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False),
        dataset=dict(type='CustomDataset', data_root=data_root,
                     pipeline=[dict(type='LoadImageFromFile'),
                               dict(type='PackInputs')]))
    cfg.val_cfg = dict()
    cfg.val_evaluator = [dict(type='kdep_mm.DistillLossMetric'),
                         dict(type='kdep_mm.ExplainedVarianceMetric')]
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1)
    return Runner.from_cfg(cfg)


def test_runner_validation_logs_explained_variance(tmp_path, tiny_data,
                                                   log):
    runner = _tiny_runner(tmp_path, tiny_data)
    MMLogger.get_current_instance().addHandler(log)
    runner.train()
    hub = runner.message_hub
    ev = hub.get_scalar('val/distill/explained_var').current()
    # the same number by hand from the model's own outputs on the val set
    model = runner.model
    model.eval()
    s_all, t_all = [], []
    for batch in runner.val_dataloader:
        data = model.data_preprocessor(batch, False)
        with torch.no_grad():
            s, t = model.aligner(model.student_features(data['inputs']),
                                 model.teacher_features(data['inputs']))
        s_all.append(s)
        t_all.append(t)
    s, t = torch.cat(s_all).double(), torch.cat(t_all).double()
    assert len(t) == 24
    hand = 1 - ((s - t)**2).mean() / ((t - t.mean(0))**2).mean()
    assert ev == pytest.approx(float(hand), abs=1e-5)
    text = '\n'.join(r.getMessage() for r in log.records)
    assert 'distill/explained_var' in text  # in the validation log line

    # a perfect student (its feature replaced by the target): 1, and the
    # low-validation count restarts
    c_s = model.aligner.student_channels

    def perfect(x):
        return model.aligner(torch.zeros(len(x), c_s),
                             model.teacher_features(x))[1]

    model.student_features = perfect
    runner.val()
    assert hub.get_scalar('val/distill/explained_var').current() == \
        pytest.approx(1.0, abs=1e-6)
    # a collapsed student (a constant feature): no warning at the first low
    # validation, the warning at the second one in a row
    model.student_features = lambda x: torch.zeros(len(x), c_s)
    before = len(log.warnings())
    runner.val()
    assert hub.get_scalar('val/distill/explained_var').current() < 0.1
    assert len(log.warnings()) == before
    runner.val()
    assert len(log.warnings()) == before + 1
    assert 'COLLAPSE WARNING' in log.warnings()[-1]


KDEP_CONFIGS = sorted(
    osp.relpath(p, REPO) for p in glob.glob(
        osp.join(REPO, 'configs', 'kdep', '**', '*.py'), recursive=True)) + [
            'configs/demo/kdep_r20_to_r20w8_shapes.py']


@pytest.mark.parametrize('rel', KDEP_CONFIGS)
def test_on_by_default_in_the_kdep_configs(rel):
    """Every online KDEP feature-distillation config validates with the
    metric (and has a val split); logit KD, which has no aligned target, does
    not; a store-mode config (``model.teacher=None``) has no validation at
    all: held-out images have no stored teacher features."""
    cfg = Config.fromfile(osp.join(REPO, rel))
    if cfg.model.get('teacher', 'online') is None:
        assert cfg.val_cfg is None and cfg.val_dataloader is None, rel
        return
    evaluators = cfg.val_evaluator
    evaluators = evaluators if isinstance(evaluators, list) else [evaluators]
    types = [e['type'] for e in evaluators]
    if cfg.model.type == 'kdep_mm.LogitKDDistiller':
        assert 'kdep_mm.ExplainedVarianceMetric' not in types
    else:
        assert cfg.model.type == 'kdep_mm.KDEPDistiller'
        assert 'kdep_mm.ExplainedVarianceMetric' in types, rel
    assert cfg.val_dataloader is not None and cfg.val_cfg is not None
    assert cfg.train_cfg.val_interval <= 10
    # held out: the val data is not the training data
    val_ds = cfg.val_dataloader.dataset
    train_ds = cfg.train_dataloader.dataset
    assert (val_ds.get('data_prefix'), val_ds.get('ann_file')) != (
        train_ds.get('data_prefix'), train_ds.get('ann_file'))
    # the evaluators build
    for e in evaluators:
        ROOT_METRICS.build(copy.deepcopy(e))


def test_imagenet_heldout_val_builds_and_is_capped(tmp_path):
    """The ImageNet configs' val split: ImageNet-1K val through meta/val.txt,
    capped at its first 10,000 images (here: all 3 of a fake val set)."""
    from mmengine.registry import DATASETS, init_default_scope
    from tiny_image_folder import make_image_folder
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'kdep',
                                   'r50_to_r18_in1k.py'))
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    assert ds_cfg.indices == 10000
    assert (ds_cfg.ann_file, ds_cfg.data_prefix) == ('meta/val.txt', 'val')
    assert cfg.train_dataloader.dataset.data_prefix == 'train'
    make_image_folder(str(tmp_path / 'img'), num_classes=1, per_class=3,
                      size=40)
    (tmp_path / 'val').mkdir()
    (tmp_path / 'meta').mkdir()
    lines = []
    for i, name in enumerate(sorted((tmp_path / 'img' / 'class_0').iterdir())):
        dst = f'ILSVRC2012_val_{i + 1:08d}.png'
        name.rename(tmp_path / 'val' / dst)
        lines.append(f'{dst} {7 * i}')
    (tmp_path / 'meta' / 'val.txt').write_text('\n'.join(lines) + '\n')
    ds_cfg.data_root = str(tmp_path)
    init_default_scope('mmpretrain')
    ds = DATASETS.build(ds_cfg)
    assert len(ds) == 3
    item = ds[2]
    assert tuple(item['inputs'].shape) == (3, 224, 224)
    assert int(item['data_samples'].gt_label) == 14
