"""TCSDistiller: coordinate system, tailoring mask, store/online teacher,
head folding and export."""
import copy

import numpy as np
import pytest
import torch

import kdep_mm  # noqa: F401
from kdep_mm.apis.export import save_classifier
from kdep_mm.engine.hooks import (TCSTailoringHook, fit_basis_from_store,
                                  fit_basis_online)
from kdep_mm.models import TCSDistiller
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import safe_torch_load

C_T, C_S, NUM_CLASSES = 32, 16, 10
TEACHER = dict(
    type='mmpretrain.ImageClassifier',
    backbone=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=8),
    neck=dict(type='mmpretrain.GlobalAveragePooling'),
    head=dict(type='mmpretrain.LinearClsHead', num_classes=NUM_CLASSES,
              in_channels=C_T))
STUDENT = dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=4)


def tcs_cfg(**kwargs):
    cfg = dict(type='kdep_mm.TCSDistiller', student=copy.deepcopy(STUDENT),
               student_channels=C_S, teacher_channels=C_T,
               num_classes=NUM_CLASSES)
    cfg.update(kwargs)
    return cfg


def build(seed=0, fit=True, **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(tcs_cfg(**kwargs))
    model.init_weights()
    if fit:
        model.fit_coordinates(
            torch.randn(64, C_T) * torch.linspace(3, .1, C_T))
    return model


def samples(n, with_feat=True, seed=0):
    from mmpretrain.structures import DataSample
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = DataSample().set_gt_label(int(rng.integers(NUM_CLASSES)))
        if with_feat:
            s.set_field(rng.standard_normal(C_T).astype(np.float32),
                        'teacher_feat')
        out.append(s)
    return out


def test_basis_orthonormal_sorted_from_store(tmp_path):
    from kdep_mm.datasets.store import (TeacherStore, TeacherStoreWriter,
                                        build_manifest)
    rng = np.random.default_rng(0)
    n, V = 30, 2
    feats = (rng.standard_normal((n, V, C_T)) *
             np.linspace(5, .1, C_T)).astype(np.float32)
    writer = TeacherStoreWriter(
        str(tmp_path), build_manifest('fp', dict(length=n)), n, V,
        dict(feat=((C_T, ), 'float32')), shard_size=7)

    def compute(a, b):
        box = np.tile(np.array([0, 0, 1, 1], np.float32), (b - a, V, 1))
        return dict(feat=feats[a:b]), box, np.zeros((b - a, V), np.uint8)

    writer.write_all(compute)
    model = build(fit=False)
    assert isinstance(model, TCSDistiller)
    assert fit_basis_from_store(model.basis_fit(), str(tmp_path)) == n * V
    basis = model.coords.basis.double()
    k = model.num_coords
    assert k == min(C_T, C_S)
    torch.testing.assert_close(basis.T @ basis, torch.eye(k,
                                                          dtype=torch.float64),
                               atol=1e-5, rtol=0)
    ev = model.coords.eigenvalues
    assert torch.all(ev[:-1] >= ev[1:])
    flat = torch.from_numpy(feats.reshape(-1, C_T)).double()
    torch.testing.assert_close(model.coords.mean.double(), flat.mean(0),
                               atol=1e-5, rtol=0)
    # variance of each coordinate = its eigenvalue, descending
    c = model.teacher_coordinates(flat)
    var = (c.double() ** 2).sum(0)
    torch.testing.assert_close(var, ev[:k].double(), rtol=1e-4, atol=1e-3)
    # same basis as an in-memory fit (deterministic signs)
    other = build(fit=False)
    other.fit_coordinates(flat)
    torch.testing.assert_close(other.coords.basis, model.coords.basis,
                               atol=1e-5, rtol=0)

    # fewer features than k: refused, naming the key and the store
    small = build(fit=False, num_coords=16)
    with pytest.raises(ValueError, match='model.num_coords'):
        small.fit_coordinates(torch.randn(16, C_T))
    writer2 = TeacherStoreWriter(
        str(tmp_path / 's'), build_manifest('fp', dict(length=5)), 5, 2,
        dict(feat=((C_T, ), 'float32')))
    writer2.write_all(lambda a, b: (dict(feat=feats[a:b]), np.tile(
        np.array([0, 0, 1, 1], np.float32), (b - a, 2, 1)), np.zeros(
            (b - a, 2), np.uint8)))
    with pytest.raises(ValueError) as err:
        fit_basis_from_store(small.basis_fit(),
                             TeacherStore(str(tmp_path / 's')))
    assert 'model.num_coords = 16' in str(err.value)
    assert "field 'feat'" in str(err.value) and '10 teacher' in str(err.value)
    assert not small.is_fitted


def test_coordinate_loss_zero_at_teacher_coordinates():
    model = build(num_coords=12, teacher=copy.deepcopy(TEACHER))
    f = torch.randn(5, C_T)
    c_t = model.teacher_coordinates(f)
    assert model.coordinate_loss(c_t.clone(), c_t).item() == 0
    model.mask[3:] = 0
    off = c_t.clone()
    off[:, 5] += 10  # inactive coordinate: no loss
    assert model.coordinate_loss(off, c_t).item() == 0
    off[:, 1] += 1
    assert model.coordinate_loss(off, c_t).item() == pytest.approx(
        1 / 3, rel=1e-5)


def test_mask_schedule_and_state_dict():
    model = build(num_coords=16, prune_interval=2, prune_ratio=0.25,
                  min_coords=5)
    counts = []
    for it in range(14):
        model.after_train_iter()
        counts.append(model.num_active)
    # steps at iterations 2, 4, ...: 16 -4-> 12 -3-> 9 -2-> 7 -1-> 6 -1-> 5
    assert counts == [16, 12, 12, 9, 9, 7, 7, 6, 6, 5, 5, 5, 5, 5]
    assert int(model.train_iter) == 14
    model.importance.copy_(torch.arange(16, dtype=torch.float64))
    # restored from a state dict (mask, importance, counter, basis)
    other = build(seed=1, fit=False, num_coords=16, prune_interval=2,
                  prune_ratio=0.25, min_coords=5)
    other.load_state_dict(model.state_dict(), strict=True)
    assert torch.equal(other.mask, model.mask)
    assert int(other.train_iter) == 14 and other.is_fitted
    assert torch.equal(other.importance, model.importance)
    torch.testing.assert_close(other.coords.basis, model.coords.basis)


def test_prune_respects_planted_importance():
    model = build(num_coords=8, prune_interval=1, prune_ratio=0.5,
                  min_coords=2)
    model.importance.copy_(
        torch.tensor([5., 1., 7., 0.5, 9., 3., 8., 2.], dtype=torch.float64))
    assert model.prune_step() == [1, 3, 5, 7]
    assert model.mask.tolist() == [1, 0, 1, 0, 1, 0, 1, 0]
    assert model.importance.abs().sum() == 0
    model.importance.copy_(
        torch.tensor([1., 100., 9., 100., 2., 100., 3., 100.],
                     dtype=torch.float64))
    # dropped coordinates' importance is ignored; 2 of 4 active go
    assert model.prune_step() == [0, 4]
    assert model.prune_step() == []  # at min_coords
    assert model.num_active == 2


def test_train_step_store_mode_no_teacher():
    from mmengine.optim import OptimWrapper
    model = build(prune_interval=2, prune_ratio=0.25, min_coords=4)
    assert model.teacher is None and not len(model.frozen_teachers)
    assert not any('teacher' in n for n, _ in model.named_modules())
    assert not any(n.startswith('teacher') for n in model.state_dict())
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    data = dict(inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                        for _ in range(4)],
                data_samples=samples(4))
    from mmengine.logging import MessageHub
    runner = type('R', (), dict(model=model,
                                message_hub=MessageHub('tcs_test')))()
    hook = TCSTailoringHook()
    model.train()
    # the importance by hand, on a copy before the step: the first-order
    # Taylor score sum_n |c_nj * dCE/dc_nj| of the masked coordinates
    ref = copy.deepcopy(model)
    d = ref.data_preprocessor(data, True)
    masked = ref.student_coordinates(d['inputs']) * ref.mask
    labels = torch.cat([s.gt_label for s in d['data_samples']])
    ce = torch.nn.functional.cross_entropy(ref.classifier(masked), labels)
    grad, = torch.autograd.grad(ce, masked)
    want = (masked * grad).abs().sum(0).double() * ref.mask.double()
    log = model.train_step(data, optim)
    assert set(log) >= {'loss', 'loss_cls', 'loss_coord'}
    assert torch.isfinite(log['loss'])
    # accumulated by the backward hook, from the CE term only
    torch.testing.assert_close(model.importance, want, rtol=1e-5, atol=1e-9)
    assert (want > 0).all()
    hook.after_train_iter(runner, 0)
    assert model.num_active == 16 and int(model.train_iter) == 1
    model.train_step(data, optim)
    hook.after_train_iter(runner, 1)
    assert model.num_active == 12 and int(model.train_iter) == 2
    assert runner.message_hub.get_scalar(
        'train/active_coords').current() == 12
    assert model.importance.sum() == 0  # reset by the prune step
    # the coordinate loss uses exactly the stored teacher features
    d = model.data_preprocessor(data, True)
    feats = torch.stack([torch.as_tensor(s.teacher_feat)
                         for s in data['data_samples']])
    model.eval()
    got = model._teacher_feat(d['inputs'], d['data_samples'])
    torch.testing.assert_close(got, feats)
    # without teacher_feat store mode refuses
    with pytest.raises(ValueError, match='teacher_feat'):
        model.loss(d['inputs'], samples(4, with_feat=False))
    with pytest.raises(ValueError, match='teacher_ckpt'):
        MODELS.build(tcs_cfg(teacher_ckpt='x.pth'))


def test_online_mode_no_grad_to_teacher():
    model = build(teacher=copy.deepcopy(TEACHER))
    assert model.teacher is not None
    assert not any(n.startswith('teacher') or n.startswith('_teacher')
                   for n in model.state_dict())
    assert all(p is not t for p in model.parameters()
               for t in model.teacher.parameters())
    model.train()
    before = copy.deepcopy(model.teacher.state_dict())
    x = torch.randn(4, 3, 32, 32)
    losses = model.loss(x, samples(4, with_feat=False))
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.projector.weight.grad is not None
    assert not model.teacher.training
    for k, v in model.teacher.state_dict().items():
        assert torch.equal(v, before[k]), k
    # online fit: one teacher pass over batches = the in-memory fit
    fresh = build(fit=False, teacher=copy.deepcopy(TEACHER))
    fresh.teacher.load_state_dict(model.teacher.state_dict())
    imgs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
            for _ in range(24)]
    loader = [dict(inputs=imgs[i:i + 8], data_samples=samples(8))
              for i in range(0, 24, 8)]
    assert fit_basis_online(fresh, fresh.coords, loader, num_samples=20,
                            show_progress=False) == 20
    ref = build(fit=False, teacher=copy.deepcopy(TEACHER))
    ref.fit_coordinates(fresh.teacher_features(
        fresh.data_preprocessor(dict(inputs=imgs[:20]), False)['inputs']))
    # (means and spectra: robust to near-degenerate trailing eigenvectors)
    torch.testing.assert_close(fresh.coords.mean, ref.coords.mean,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fresh.coords.eigenvalues,
                               ref.coords.eigenvalues, atol=1e-4, rtol=1e-4)
    # online teacher features are the pooled pre-activation features
    torch.testing.assert_close(
        model._teacher_feat(x, samples(4, with_feat=False)),
        model.teacher_features(x))


def test_fold_export_and_predict(tmp_path):
    model = build(prune_interval=1, prune_ratio=0.25)
    with torch.no_grad():
        model.projector.bias.normal_()
        model.classifier.bias.normal_()
    model.importance.copy_(torch.rand(model.num_coords, dtype=torch.float64))
    model.prune_step()
    assert model.num_active < model.num_coords
    model.eval()
    x = torch.randn(5, 3, 32, 32)
    with torch.no_grad():
        unfolded = model(x, mode='tensor')
        folded = model.fold_head()(model.student_pooled(x))
    torch.testing.assert_close(folded, unfolded, atol=1e-5, rtol=1e-5)

    path = str(tmp_path / 'tcs_cls.pth')
    save_classifier(model, path)
    clf = MODELS.build(dict(
        type='mmpretrain.ImageClassifier', backbone=copy.deepcopy(STUDENT),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=NUM_CLASSES,
                  in_channels=C_S)))
    ckpt = safe_torch_load(path)
    clf.load_state_dict(ckpt['state_dict'], strict=True)
    clf.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(x, mode='tensor'), unfolded,
                                   atol=1e-5, rtol=1e-5)

    # predict: mmpretrain DataSamples that Accuracy can score
    from mmpretrain.evaluation import Accuracy
    out = model.predict(x, samples(5, with_feat=False))
    assert all(s.pred_label.shape == (1, ) for s in out)
    torch.testing.assert_close(torch.stack([s.pred_score for s in out]),
                               unfolded.softmax(1))
    for s in out:  # labels = predictions: top-1 must be 100
        s.set_gt_label(s.pred_label)
    metric = Accuracy()
    metric.process(None, [s.to_dict() for s in out])
    assert metric.compute_metrics(metric.results)['top1'] == 100


@pytest.fixture
def fast_pretty_text(monkeypatch):
    """Skip yapf: the Runner formats the config several times (~2 s each
    on CPU); as in tests/test_configs/test_downstream_configs.py."""
    from mmengine.config import Config
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: self.text))


CIFAR_TCS_CONFIGS = ('cifar10_r56_to_r20_tcs.py', 'cifar10_r56_to_r20_w8_tcs.py',
                     'cifar10_r56_to_r20_tcs_10shot.py')


@pytest.mark.slow
@pytest.mark.parametrize('name', CIFAR_TCS_CONFIGS)
def test_cifar_store_config_trains(name, tmp_path, fast_pretty_text):
    """The CIFAR TCS configs build (no teacher), and train through
    mmengine's Runner on a store cached (with the config's view count and
    teacher checkpoint name, as the header's command does) from a (random)
    ResNet-56 on a tiny image folder: store checks, fit hook, tailoring
    hook, validation Accuracy, checkpoint with the mask, export."""
    import os.path as osp
    from mmengine.config import Config
    from mmengine.runner import Runner

    from helpers.stores import cache_cifar_r56_store
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, 'configs', 'tcs', name))
    assert cfg.model.teacher is None
    assert cfg.train_dataloader.dataset.pipeline[1].type == \
        'kdep_mm.ApplyStoredView'
    assert cfg.train_dataloader.dataset.pipeline[2].algorithm_keys == (
        'teacher_feat', )
    data = str(tmp_path / 'data')
    store = str(tmp_path / 'store')
    cache_cifar_r56_store(data, store, cfg.num_views, per_class=2)

    cfg.train_dataloader.dataset.pipeline[1].store.root = store
    cfg.custom_hooks[0].store = store
    for split in ('train', 'val', 'test'):
        dl = cfg[f'{split}_dataloader']
        dl.dataset.data_root = data
        dl.dataset.data_prefix = ''
        dl.dataset.pop('ann_file', None)
        dl.update(batch_size=8, num_workers=0, persistent_workers=False)
    # a smaller k than the configs' 64 / 32, for the tiny data
    cfg.model.update(prune_interval=2, num_coords=24, min_coords=12)
    cfg.train_cfg = dict(by_epoch=False, max_iters=4, val_interval=4)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=4,
                                        by_epoch=False)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert model.teacher is None and not model.is_fitted
    runner.train()
    assert model.is_fitted
    assert int(model.coords.num_fit_samples) == 20 * cfg.num_views
    # 24 -2-> 22 -2-> 20 at iterations 2 and 4
    assert model.num_active == 20 and int(model.train_iter) == 4
    metrics = runner.val_loop.run()
    assert 'accuracy/top1' in metrics
    ckpt = safe_torch_load(osp.join(cfg.work_dir, 'iter_4.pth'))
    assert int(ckpt['state_dict']['mask'].sum()) == 20
    assert not any(k.startswith('teacher') for k in ckpt['state_dict'])
    # resume-style restore into a fresh model keeps basis, mask and counter
    fresh = MODELS.build(cfg.model)
    fresh.load_state_dict(ckpt['state_dict'], strict=True)
    assert fresh.num_active == 20 and fresh.is_fitted


# ------------------------------------------------------------ bad inputs
def test_num_coords_above_min_channels_refused():
    # C_S = 16 < C_T = 32: k = 17 cannot be matched by a rank-16 map
    with pytest.raises(ValueError) as err:
        build(fit=False, num_coords=17)
    msg = str(err.value)
    assert 'model.num_coords' in msg and 'model.student_channels=16' in msg
    assert '= 16]' in msg
    # a wider student: k is bounded by the teacher's 32 PCA directions
    wide = dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=16)
    with pytest.raises(ValueError, match=r'model.num_coords.*= 32\]'):
        MODELS.build(tcs_cfg(student=wide, student_channels=64,
                             num_coords=33))
    assert build(fit=False, num_coords=16).num_coords == 16


def test_non_finite_loss_stops_naming_term_and_iteration():
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper
    model = build()
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    MessageHub.get_current_instance().update_info('iter', 6)
    imgs = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
            for _ in range(4)]
    bad = samples(4)
    bad[2].teacher_feat[3] = np.nan  # a corrupted stored teacher feature
    before = model.student.conv1.weight.detach().clone()
    p_before = model.projector.weight.detach().clone()
    model.train()
    with pytest.raises(FloatingPointError,
                       match=r"'loss_coord'.*at iteration 7"):
        model.train_step(dict(inputs=imgs, data_samples=bad), optim)
    # no optimizer step was taken on it
    assert torch.equal(before, model.student.conv1.weight)
    assert torch.equal(p_before, model.projector.weight)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float('inf')
    with pytest.raises(FloatingPointError, match=r"'loss_cls'"):
        model.train_step(dict(inputs=imgs, data_samples=samples(4)), optim)


class _FakeRunner:
    """What FitBasisHook reads from mmengine's Runner."""

    def __init__(self, model, dataset):
        from mmengine.dataset import pseudo_collate
        from mmengine.logging import MMLogger

        class Loader:  # batches of 4, built when iterated

            def __iter__(self):
                for i in range(0, len(dataset), 4):
                    yield pseudo_collate([
                        dataset[j] for j in range(i, min(i + 4, len(dataset)))
                    ])

        self.model = model
        self.train_dataloader = Loader()
        self.train_dataloader.dataset = dataset
        self.logger = MMLogger.get_current_instance()


@pytest.fixture(scope='module')
def stores(tmp_path_factory):
    """Image folders and teacher stores of (random) tiny teachers, whose
    checkpoints are real files ``a/t0.pth`` (teacher 0) and ``b/t0.pth``
    (teacher 1, the same file name): ``ok`` (12 images, 2 views, teacher 0
    from a/t0.pth), ``views3``, ``other_ckpt`` (teacher 1 from b/t0.pth:
    another "epoch_100.pth"), ``other_teacher`` (teacher 1's outputs
    recorded with a/t0.pth: only the weights fingerprint tells), ``short``
    (10 images), ``other_imgs`` (12 other images)."""
    from mmengine.registry import DefaultScope

    from kdep_mm.apis import TeacherCacher
    from kdep_mm.registry import DATASETS
    from tiny_image_folder import make_image_folder
    root = tmp_path_factory.mktemp('tcs_stores')
    data = str(root / 'data')
    make_image_folder(data, num_classes=2, per_class=6, size=16)
    short = str(root / 'short')
    make_image_folder(short, num_classes=2, per_class=5, size=16)
    other = str(root / 'other')
    make_image_folder(other, num_classes=3, per_class=4, size=16, seed=3)
    out = dict(data=data, root=str(root))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        teachers = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            t = MODELS.build(copy.deepcopy(TEACHER))
            t.init_weights()
            teachers.append(t.eval())
        out['teacher_state'] = teachers[0].state_dict()
        ckpts = []
        for sub, t in (('a', teachers[0]), ('b', teachers[1])):
            path = root / sub / 't0.pth'
            path.parent.mkdir()
            torch.save(dict(state_dict=t.state_dict()), str(path))
            ckpts.append(str(path))
        out['ckpts'] = ckpts
        a, b = ckpts
        for name, folder, views, t, ckpt in (
                ('ok', data, 2, 0, a), ('views3', data, 3, 0, a),
                ('other_ckpt', data, 2, 1, b),
                ('other_teacher', data, 2, 1, a),
                ('short', short, 2, 0, a),
                ('other_imgs', other, 2, 0, a)):
            ds = DATASETS.build(dict(type='CustomDataset', data_root=folder,
                                     pipeline=[dict(type='LoadImageFromFile')]
                                     ))
            out[name] = str(root / name)
            TeacherCacher(
                teachers[t], ds, out[name],
                views=dict(num_views=views, view_mode='random', out_size=16),
                outputs=dict(fields=('feat', )),
                run=dict(batch_size=32, progress=False),
                record=dict(teacher_checkpoint=ckpt)).run()
    return out


def _train_dataset(data, store):
    from mmengine.registry import DefaultScope

    from kdep_mm.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(dict(
            type='CustomDataset', data_root=data,
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='kdep_mm.ApplyStoredView',
                           store=dict(root=store), scale=16),
                      dict(type='PackInputs',
                           algorithm_keys=('teacher_feat', ))]))


def test_fit_hook_refuses_stores_that_do_not_belong(stores):
    """A store of another dataset (length, images), view count or teacher,
    or a pipeline store that is not the hook's, is refused before the
    first iteration, naming the config key."""
    from kdep_mm.engine.hooks import FitBasisHook
    data, ok = stores['data'], stores['ok']

    def run(store, pipeline_store=None, model=None, dataset=None, **kw):
        model = model or build(fit=False, num_coords=8)
        dataset = dataset or _train_dataset(data, pipeline_store or store)
        hook = FitBasisHook(store=store, **kw)
        hook.before_train(_FakeRunner(model, dataset))
        return model

    a, b = stores['ckpts']
    model = run(ok, num_views=2, teacher_checkpoint=a)
    assert model.is_fitted and int(model.coords.num_fit_samples) == 24
    # a resumed (fitted) model is still checked, then not refitted
    basis = model.coords.basis.clone()
    run(ok, model=model, num_views=2)
    assert torch.equal(model.coords.basis, basis)
    with pytest.raises(ValueError, match='num_views'):
        run(ok, model=model, num_views=3)

    cases = [
        # (hook store, pipeline store, hook kwargs, expected in message)
        (ok, stores['short'], {}, r'pipeline\[1\]\.store\.root is'),
        (stores['short'], None, {}, r'holds 10 samples but '
         r'train_dataloader.dataset has 12'),
        (stores['other_imgs'], None, {}, 'other images than '
         'train_dataloader.dataset'),
        (stores['views3'], None, dict(num_views=2),
         r'FitBasisHook.num_views is 2.*has 3 views'),
        # another checkpoint with the same file name (b/t0.pth vs a/t0.pth;
        # the check compared file names before issue 16 and let it pass)
        (stores['other_ckpt'], None, dict(teacher_checkpoint=a),
         r'FitBasisHook.teacher_checkpoint.*another teacher'),
        (stores['other_ckpt'], None, dict(teacher_checkpoint_sha256='0' * 64),
         r'FitBasisHook.teacher_checkpoint.*another teacher'),
        (stores['other_teacher'], None,
         dict(teacher_fingerprint=TeacherStoreFP(ok)),
         r'FitBasisHook.teacher_fingerprint.*another teacher'),
        (ok, None, dict(field='logits'), r'FitBasisHook.field'),
    ]
    for store, pipe, kw, match in cases:
        fresh = build(fit=False, num_coords=8)
        with pytest.raises(ValueError, match=match):
            run(store, pipe, model=fresh, **kw)
        assert not fresh.is_fitted  # refused before any fit
    # a store of another width than model.teacher_channels
    with pytest.raises(ValueError, match=r'model.teacher_channels is 64'):
        run(ok, model=build(fit=False, teacher_channels=64, num_coords=8))
    # online teacher: stored features must come from that very teacher
    online = build(fit=False, num_coords=8, teacher=copy.deepcopy(TEACHER))
    online.teacher.load_state_dict(stores['teacher_state'])
    run(None, pipeline_store=ok, model=online)  # same teacher: fine
    other = build(fit=False, num_coords=8, teacher=copy.deepcopy(TEACHER),
                  seed=7)
    with pytest.raises(ValueError, match=r'model.teacher_ckpt.*another '
                       'teacher'):
        run(None, pipeline_store=ok, model=other)


def TeacherStoreFP(root):
    from kdep_mm.datasets.store import TeacherStore
    return TeacherStore(root).manifest['teacher_fingerprint']


def test_online_fit_sample_not_above_num_coords_refused(stores):
    from kdep_mm.engine.hooks import FitBasisHook
    model = build(fit=False, num_coords=8, teacher=copy.deepcopy(TEACHER))
    model.teacher.load_state_dict(stores['teacher_state'])
    dataset = _train_dataset(stores['data'], stores['ok'])
    hook = FitBasisHook(num_samples=8)
    with pytest.raises(ValueError, match=r'FitBasisHook.num_samples'
                       r' = 8.*model.num_coords = 8'):
        hook.before_train(_FakeRunner(model, dataset))
    assert not model.is_fitted
    FitBasisHook(num_samples=9).before_train(
        _FakeRunner(model, dataset))
    assert int(model.coords.num_fit_samples) == 9


# ------------------------------------------------------ issue 16 refusals
def _hook_run(hook, model, dataset):
    hook.before_train(_FakeRunner(model, dataset))
    return model


def test_teacher_checkpoint_checked_by_file_sha256(stores, tmp_path):
    """Issue 16, item 3: the teacher is identified by the sha256 of its
    checkpoint file (recorded at caching time), not by its file name: a
    store of another ``t0.pth`` is refused, the same bytes elsewhere pass,
    and an unreadable checkpoint is refused naming the key."""
    import shutil

    from kdep_mm.datasets.store import TeacherStore
    from kdep_mm.engine.hooks import FitBasisHook
    from kdep_mm.utils.checkpoint import checkpoint_sha256
    a, b = stores['ckpts']
    assert osp_basename(a) == osp_basename(b)
    man = TeacherStore(stores['ok']).manifest
    assert man['teacher_checkpoint_sha256'] == checkpoint_sha256(a)
    assert man['teacher_checkpoint'] == a
    dataset = _train_dataset(stores['data'], stores['other_ckpt'])
    with pytest.raises(ValueError) as err:
        _hook_run(FitBasisHook(store=stores['other_ckpt'],
                                        teacher_checkpoint=a),
                  build(fit=False, num_coords=8), dataset)
    msg = str(err.value)
    assert 'FitBasisHook.teacher_checkpoint' in msg
    assert checkpoint_sha256(a) in msg and checkpoint_sha256(b) in msg
    # the same file copied under another name is the same teacher
    copy_path = str(tmp_path / 'renamed.pth')
    shutil.copy(b, copy_path)
    _hook_run(FitBasisHook(store=stores['other_ckpt'],
                                    teacher_checkpoint=copy_path),
              build(fit=False, num_coords=8), dataset)
    # or its sha256 given directly (no file on the training machine)
    _hook_run(FitBasisHook(
        store=stores['other_ckpt'],
        teacher_checkpoint_sha256=checkpoint_sha256(b)),
        build(fit=False, num_coords=8), dataset)
    with pytest.raises(FileNotFoundError,
                       match='FitBasisHook.teacher_checkpoint is'):
        _hook_run(FitBasisHook(
            store=stores['other_ckpt'],
            teacher_checkpoint=str(tmp_path / 'missing.pth')),
            build(fit=False, num_coords=8), dataset)


def osp_basename(path):
    import os.path as osp
    return osp.basename(path)


def test_reordered_dataset_refused(tmp_path):
    """Issue 16, item 1: a store cached from an annotation file, then the
    same images listed in another order under the same ann_file: refused
    naming train_dataloader.dataset (before issue 16 the sorted paths
    matched and every image got another image's features); another
    ann_file is refused too."""
    import os

    from mmengine.registry import DefaultScope

    from kdep_mm.apis import TeacherCacher
    from kdep_mm.engine.hooks import FitBasisHook
    from kdep_mm.registry import DATASETS
    from tiny_image_folder import make_image_folder
    data = str(tmp_path / 'data')
    make_image_folder(data, num_classes=2, per_class=6, size=16)
    names = sorted(
        os.path.relpath(os.path.join(d, f), data)
        for d, _, fs in os.walk(data) for f in fs if f.endswith('.png'))
    assert len(names) == 12
    ann = tmp_path / 'data' / 'train.txt'
    ann.write_text(''.join(f'{n} {int(n.split(os.sep)[0][-1]) % 2}\n'
                           for n in names))

    def dataset(ann_file, with_store=None):
        pipeline = [dict(type='LoadImageFromFile')]
        if with_store is not None:
            pipeline += [dict(type='kdep_mm.ApplyStoredView',
                              store=dict(root=with_store), scale=16),
                         dict(type='PackInputs',
                              algorithm_keys=('teacher_feat', ))]
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return DATASETS.build(dict(type='CustomDataset', data_root=data,
                                       ann_file=ann_file, pipeline=pipeline))

    store = str(tmp_path / 'store')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        teacher = MODELS.build(copy.deepcopy(TEACHER)).eval()
        TeacherCacher(teacher, dataset('train.txt'), store,
                      views=dict(num_views=2, out_size=16),
                      outputs=dict(fields=('feat', )),
                      run=dict(batch_size=32, progress=False)).run()
    _hook_run(FitBasisHook(store=store, num_views=2),
              build(fit=False, num_coords=8), dataset('train.txt', store))
    # the same images, the same ann_file name, another order
    ann.write_text(''.join(reversed(ann.read_text().splitlines(True))))
    model = build(fit=False, num_coords=8)
    with pytest.raises(ValueError) as err:
        _hook_run(FitBasisHook(store=store, num_views=2), model,
                  dataset('train.txt', store))
    msg = str(err.value)
    assert 'train_dataloader.dataset' in msg and 'ANOTHER ORDER' in msg
    assert 'paths_sha256' in msg and not model.is_fitted
    # another annotation file (same images, same order as cached)
    ann.write_text(''.join(reversed(ann.read_text().splitlines(True))))
    (tmp_path / 'data' / 'other.txt').write_text(ann.read_text())
    with pytest.raises(ValueError, match=r'train_dataloader\.dataset\.'
                       r"ann_file='train.txt'.*ann_file='other.txt'"):
        _hook_run(FitBasisHook(store=store, num_views=2),
                  build(fit=False, num_coords=8),
                  dataset('other.txt', store))


def test_unverified_corruption_never_read(stores, tmp_path):
    """Issue 16, item 2: a same-size corruption of a shard written after
    the store was verified is refused by the fit hook and by
    fit_basis_from_store (which opened stores with verify=False
    before issue 16 and read the corrupted features silently)."""
    import os
    import shutil

    from kdep_mm.datasets.store import TeacherStore
    from kdep_mm.engine.hooks import FitBasisHook
    root = str(tmp_path / 'store')
    shutil.copytree(stores['ok'], root)
    TeacherStore(root)  # verified once (markers written)
    path = os.path.join(root, 'shards', '00000.feat.npy')
    size = os.path.getsize(path)
    with open(path, 'r+b') as f:
        f.seek(-5, os.SEEK_END)
        byte = f.read(1)
        f.seek(-5, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x40]))
    assert os.path.getsize(path) == size
    model = build(fit=False, num_coords=8)
    with pytest.raises(ValueError, match='corrupted') as err:
        fit_basis_from_store(model.basis_fit(), root)
    assert path in str(err.value) and not model.is_fitted
    from mmengine.registry import DefaultScope

    from kdep_mm.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        plain = DATASETS.build(dict(
            type='CustomDataset', data_root=stores['data'],
            pipeline=[dict(type='LoadImageFromFile'),
                      dict(type='PackInputs')]))
    with pytest.raises(ValueError, match='corrupted'):
        _hook_run(FitBasisHook(store=root), model, plain)
    assert not model.is_fitted


def test_decoder_of_the_training_pipeline_checked(stores):
    """Issue 16, item 7: the manifest records the caching side's decoder;
    a training pipeline decoding otherwise (another backend, float32) or
    with a transform between the loading and ApplyStoredView is refused
    naming the pipeline entry."""
    from mmengine.registry import DefaultScope

    from kdep_mm.datasets.store import TeacherStore
    from kdep_mm.engine.hooks import FitBasisHook
    from kdep_mm.registry import DATASETS
    ok = stores['ok']
    assert TeacherStore(ok).manifest['decoder'] == dict(
        type='LoadImageFromFile', imdecode_backend='cv2', color_type='color',
        to_float32=False)

    def dataset(*head):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return DATASETS.build(dict(
                type='CustomDataset', data_root=stores['data'],
                pipeline=list(head) + [
                    dict(type='kdep_mm.ApplyStoredView',
                         store=dict(root=ok), scale=16),
                    dict(type='PackInputs',
                         algorithm_keys=('teacher_feat', ))]))

    # kdep_mm.LoadImageOrSkip decodes as LoadImageFromFile: accepted
    _hook_run(FitBasisHook(store=ok),
              build(fit=False, num_coords=8),
              dataset(dict(type='kdep_mm.LoadImageOrSkip')))
    cases = [
        ((dict(type='LoadImageFromFile', imdecode_backend='pillow'), ),
         r"pipeline\[0\]\.imdecode_backend is 'pillow'.*'cv2'"),
        ((dict(type='LoadImageFromFile', to_float32=True), ),
         r'pipeline\[0\]\.to_float32 is True'),
        ((dict(type='LoadImageFromFile', color_type='grayscale'), ),
         r"pipeline\[0\]\.color_type is 'grayscale'"),
        ((dict(type='LoadImageFromFile'), dict(type='RandomFlip', prob=0.5)),
         r'pipeline\[2\] \(ApplyStoredView\) must come right after the '
         r'image loading.*pipeline\[1\] is RandomFlip'),
    ]
    for head, match in cases:
        model = build(fit=False, num_coords=8)
        with pytest.raises(ValueError, match=match):
            _hook_run(FitBasisHook(store=ok), model, dataset(*head))
        assert not model.is_fitted


def test_fit_refused_before_any_work_when_too_small(stores):
    """Issue 16, fail before the work: the TCS fit is refused at once when
    the dataset (online) or the store (samples x views) cannot give more
    than model.num_coords features; the teacher never runs."""
    from kdep_mm.engine.hooks import FitBasisHook
    model = build(fit=False, num_coords=16, teacher=copy.deepcopy(TEACHER))
    model.teacher.load_state_dict(stores['teacher_state'])
    calls = []
    model.teacher.register_forward_hook(lambda *a: calls.append(1))
    dataset = _train_dataset(stores['data'], stores['ok'])  # 12 images
    with pytest.raises(ValueError) as err:
        FitBasisHook().before_train(_FakeRunner(model, dataset))
    msg = str(err.value)
    assert 'FitBasisHook.num_samples' in msg
    assert 'train_dataloader.dataset has 12 images' in msg
    assert 'model.num_coords = 16' in msg
    assert 'model.student_channels = 16' in msg
    assert calls == [] and not model.is_fitted
    # store mode: 12 samples x 1 view = 12 features, not more than k = 16:
    # refused before any shard is read
    from kdep_mm.datasets.store import TeacherStore
    st = TeacherStore(stores['ok'])
    st.num_views = 1  # as a 1-view store of the same 12 samples
    read = []
    st.shard_arrays = lambda shard: read.append(shard)
    small = build(fit=False, num_coords=16)
    with pytest.raises(ValueError, match=r'12 samples x 1 views.*'
                       r'model.num_coords = 16'):
        fit_basis_from_store(small.basis_fit(), st)
    assert read == [] and not small.is_fitted


def test_channel_widths_inferred_when_omitted():
    online = MODELS.build(dict(type='kdep_mm.TCSDistiller',
                               student=copy.deepcopy(STUDENT),
                               teacher=copy.deepcopy(TEACHER),
                               num_classes=NUM_CLASSES))
    assert (online.student_channels, online.teacher_channels) == (C_S, C_T)
    assert online.num_coords == min(C_S, C_T)
    store = MODELS.build(dict(type='kdep_mm.TCSDistiller',
                              student=copy.deepcopy(STUDENT),
                              teacher_channels=C_T, num_classes=NUM_CLASSES))
    assert store.student_channels == C_S
    with pytest.raises(ValueError, match='model.teacher_channels'):
        MODELS.build(dict(type='kdep_mm.TCSDistiller',
                          student=copy.deepcopy(STUDENT),
                          num_classes=NUM_CLASSES))


def test_fit_hook_warns_without_tailoring_hook_refuses_basis_file(stores):
    """The one fit hook warns when no TCSTailoringHook drives the tailoring
    schedule (the model's BasisFit.driven_by), and refuses a basis_file
    (TCS's coordinate system lives in its checkpoints only)."""
    from kdep_mm.engine.hooks import FitBasisHook
    model = build(fit=False, num_coords=8, prune_interval=2,
                  teacher=copy.deepcopy(TEACHER))
    model.teacher.load_state_dict(stores['teacher_state'])
    runner = _FakeRunner(model, _train_dataset(stores['data'], stores['ok']))
    with pytest.raises(ValueError, match=r"FitBasisHook.basis_file: "
                       r"TCSDistiller's TCS coordinate system is not saved"):
        FitBasisHook(basis_file='b.pth').before_train(runner)
    warnings = []

    class Log:
        info = staticmethod(lambda msg: None)
        warning = staticmethod(warnings.append)

    runner.logger = Log
    FitBasisHook(num_samples=9).before_train(runner)
    assert model.is_fitted and len(warnings) == 1
    assert 'no TCSTailoringHook drives the tailoring schedule ' \
        '(model.prune_interval is 2)' in warnings[0]
    runner.hooks = [TCSTailoringHook()]
    FitBasisHook(num_samples=9).before_train(runner)  # fitted: kept
    assert len(warnings) == 1
