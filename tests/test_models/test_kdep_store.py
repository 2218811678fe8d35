"""KDEPDistiller in store mode (``teacher=None``): f_t is the stored view's
pooled teacher feature, the SVD basis is fitted from the store."""
import copy

import numpy as np
import pytest
import torch
from mmengine.structures import BaseDataElement

import kdep_mm  # noqa: F401
from helpers.models import build_seeded
from kdep_mm.datasets.store import TeacherStoreWriter, build_manifest
from kdep_mm.engine import fit_basis_from_store
from kdep_mm.engine.hooks import FitBasisHook
from kdep_mm.models.utils import fit_principal_basis
from kdep_mm.utils.store_keys import TEACHER_FEAT
from test_kdep import STUDENT, kdep_cfg

C_T, C_S = 128, 64


def store_cfg(**kwargs):
    cfg = kdep_cfg(teacher=None, **kwargs)
    return cfg


def samples_with(feats):
    out = []
    for f in feats:
        s = BaseDataElement()
        s.set_field(f.numpy(), TEACHER_FEAT)
        out.append(s)
    return out


def write_store(root, feats):
    n, views = feats.shape[:2]
    writer = TeacherStoreWriter(
        str(root), build_manifest('fp-of-the-teacher', dict(length=n)), n,
        views, dict(feat=((C_T, ), 'float32')), shard_size=7)

    def compute(a, b):
        box = np.tile(np.array([0, 0, 1, 1], np.float32), (b - a, views, 1))
        return dict(feat=feats[a:b]), box, np.zeros((b - a, views), np.uint8)

    writer.write_all(compute)


def test_store_mode_has_no_teacher():
    model = build_seeded(store_cfg(), 0)
    assert model.teacher is None and model.frozen_teacher is None
    assert not any(k.startswith('teacher') for k in model.state_dict())
    assert model.basis_fit().from_store
    assert model.basis_identity()['teacher_fingerprint'] is None
    with pytest.raises(ValueError, match='teacher_feature does not apply'):
        build_seeded(store_cfg(teacher_feature='layer4'), 0)
    with pytest.raises(ValueError, match='aligner.teacher_channels is '
                       'needed in store mode'):
        build_seeded(store_cfg(aligner=dict(type='SVDAligner')), 0)
    # without stored features the loss refuses, naming the pipeline fix
    with pytest.raises(ValueError, match=f'needs {TEACHER_FEAT}'):
        model.loss(torch.randn(2, 3, 32, 32), [BaseDataElement()] * 2)


def test_store_loss_equals_online_loss_on_the_stored_view():
    online = build_seeded(kdep_cfg(), 0)
    x = torch.randn(80, 3, 32, 32)
    online.aligner.fit(online.teacher_features(x))
    store = build_seeded(store_cfg(), 1)
    store.load_state_dict(online.state_dict())  # student + aligner
    view = torch.randn(6, 3, 32, 32)
    feats = online.teacher_features(view)
    want = online.loss(view)['loss_kd']
    got = store.loss(view, samples_with(feats))['loss_kd']
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-7)
    assert got.item() > 0
    got.backward()  # the student trains without a teacher
    assert store.student.conv1.weight.grad is not None
    # predict reads the stored feature too
    pred = store.predict(view, samples_with(feats))
    ref = online.predict(view)
    for a, b in zip(pred, ref):
        torch.testing.assert_close(a.distill_loss, b.distill_loss,
                                   rtol=1e-6, atol=1e-7)


def test_basis_from_store_equals_online_fit_on_the_same_views(tmp_path):
    online = build_seeded(kdep_cfg(), 0)
    n, views = 30, 3
    images = torch.randn(n * views, 3, 32, 32)
    feats = online.teacher_features(images)
    fit_principal_basis(online.aligner, iter([feats[:40], feats[40:]]),
                        across_ranks=False)
    write_store(tmp_path, feats.reshape(n, views, C_T).numpy())
    store = build_seeded(store_cfg(), 0)
    assert fit_basis_from_store(store.basis_fit(), str(tmp_path),
                                chunk=17) == n * views
    for key in ('mean', 'basis'):
        torch.testing.assert_close(getattr(store.aligner, key),
                                   getattr(online.aligner, key),
                                   rtol=1e-5, atol=1e-6)


def test_online_kdep_still_refuses_a_store(tmp_path):
    online = build_seeded(kdep_cfg(), 0)
    assert not online.basis_fit().from_store
    with pytest.raises(ValueError, match='fitted online'):
        FitBasisHook(store=str(tmp_path)).check_options(
            online, online.basis_fit())


def test_student_config_unchanged():
    assert store_cfg()['student'] == copy.deepcopy(STUDENT)


@pytest.fixture
def fast_pretty_text(monkeypatch):
    """Skip yapf: the Runner formats the config several times."""
    from mmengine.config import Config
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: self.text))


@pytest.mark.slow
def test_cifar_store_config_trains(tmp_path, fast_pretty_text):
    """configs/kdep/cifar10_r56_to_r20_store.py trains through mmengine's
    Runner on a store cached from a (random) ResNet-56 on a tiny image
    folder: store checks, the basis fitted from the store into a basis file
    carrying the store's teacher fingerprint, no teacher in the checkpoint,
    and a rerun that reloads the basis file."""
    import os.path as osp
    from mmengine.config import Config
    from mmengine.runner import Runner

    from helpers.paths import REPO
    from helpers.stores import cache_cifar_r56_store
    from kdep_mm.datasets.store import TeacherStore
    from kdep_mm.utils.checkpoint import safe_torch_load
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'kdep',
                                   'cifar10_r56_to_r20_store.py'))
    data = str(tmp_path / 'data')
    store = str(tmp_path / 'store')
    cache_cifar_r56_store(data, store, cfg.num_views, per_class=10)
    fingerprint = TeacherStore(store).manifest['teacher_fingerprint']

    cfg.train_dataloader.dataset.pipeline[1].store.root = store
    cfg.custom_hooks[0].store = store
    dl = cfg.train_dataloader
    dl.dataset.data_root = data
    dl.dataset.data_prefix = ''
    dl.dataset.pop('ann_file', None)
    dl.update(batch_size=8, num_workers=0, persistent_workers=False)
    cfg.train_cfg = dict(by_epoch=False, max_iters=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=2,
                                        by_epoch=False)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    model = runner.model
    assert model.teacher is None and not model.aligner.is_fitted
    runner.train()
    assert int(model.aligner.num_fit_samples) == 100 * cfg.num_views
    basis = safe_torch_load(osp.join(cfg.work_dir, 'svd_basis.pth'))
    assert basis['meta']['teacher_fingerprint'] == fingerprint
    ckpt = safe_torch_load(osp.join(cfg.work_dir, 'iter_2.pth'))
    assert not any(k.startswith('teacher') for k in ckpt['state_dict'])
    # a fresh run in the same work dir loads the basis file
    cfg.work_dir = str(tmp_path / 'work')
    again = Runner.from_cfg(cfg)
    again.call_hook('before_train')
    torch.testing.assert_close(again.model.aligner.basis,
                               model.aligner.basis.cpu())
