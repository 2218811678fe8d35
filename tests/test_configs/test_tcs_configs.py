"""Every TCS config builds (no network, no teacher download, no store):
dimensions, the store path as one variable reaching the pipeline and the
fit hook, the header's caching command agreeing with the config, and the
ImageNet recipe."""
import glob
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope

import kdep_mm  # noqa: F401
from helpers.paths import REPO

# not here: bases, the TCS-vs-KD study's spec and arms (*_5k.py, built in
# tests/test_benchmarks/test_tcs_study.py) and the SSL teacher's configs
# (tests/test_configs/test_tcs_ssl_teacher.py)
TCS_CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', 'tcs', '**', '*.py'),
                         recursive=True)
    if not p.endswith('_5k.py') and not any(
        f'{osp.sep}{d}{osp.sep}' in p for d in ('_base_', 'study', 'ssl')))
NAMES = [osp.relpath(p, osp.join(REPO, 'configs', 'tcs'))
         for p in TCS_CONFIGS]


def _stored_view(cfg):
    steps = [t for t in cfg.train_dataloader.dataset.pipeline
             if t.type == 'kdep_mm.ApplyStoredView']
    assert len(steps) <= 1
    return steps[0] if steps else None


def _fit_hook(cfg):
    hooks = [h for h in cfg.get('custom_hooks', [])
             if h.type == 'kdep_mm.FitBasisHook']
    assert len(hooks) <= 1
    return hooks[0] if hooks else None


def test_all_tcs_configs_listed():
    assert {'cifar10_r56_to_r20_tcs.py', 'cifar10_r56_to_r20_w8_tcs.py',
            'cifar10_r56_to_r20_tcs_10shot.py', 'r50_to_r18_in1k_tcs.py',
            'r50_to_r18_in1k_tcs_online.py',
            'baselines/cifar10_r20_ce_10shot.py',
            'baselines/cifar10_r56_to_r20_logit_kd_10shot.py'} <= set(NAMES)


@pytest.mark.parametrize('path', TCS_CONFIGS, ids=NAMES)
def test_tcs_config_builds(path, monkeypatch):
    monkeypatch.delenv('KDEP_TCS_STORE', raising=False)
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    assert 'custom_imports' not in cfg  # the kdep_mm. prefix suffices
    in1k = 'in1k' in path
    size = 224 if in1k else 32
    model_cfg = cfg.model.copy()
    if model_cfg.get('teacher') is not None:
        # no network here: random teacher weights of the same architecture
        assert model_cfg.teacher_ckpt == cfg.teacher_ckpt
        model_cfg['teacher_ckpt'] = None
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    model = ROOT_MODELS.build(model_cfg)
    model.eval()
    x = torch.randn(2, 3, size, size)
    text = open(path).read()
    store_view = _stored_view(cfg)
    hook = _fit_hook(cfg)

    # the 10-shot baselines: CE only, and logit KD with an online teacher
    baseline = type(model).__name__ in ('ImageClassifier',
                                        'SupervisedKDDistiller')
    if baseline:
        with torch.no_grad():
            assert model(x, mode='tensor').shape == (2, 10)
    else:
        assert type(model).__name__ == 'TCSDistiller'
        k = model.num_coords
        assert k == min(model.teacher_channels, model.student_channels)
        assert 1 <= model.min_coords <= k
        with torch.no_grad():
            assert model.student_pooled(x).shape == (
                2, model.student_channels)
            if model.teacher is not None:
                assert model.teacher_features(x).shape == (
                    2, model.teacher_channels)
        assert hook is not None
        assert any(h.type == 'kdep_mm.TCSTailoringHook'
                   for h in cfg.custom_hooks)

    if store_view is not None:
        # store mode: the store path is one variable, reaching both the
        # pipeline and the fit hook; the header's caching command writes
        # exactly that store with the config's views and crop size
        root = cfg.teacher_store
        assert store_view.store.root == root
        assert store_view.scale == size
        # verified data only (issue 16)
        assert store_view.store.get('verify', True) is True
        if baseline:
            # the baselines read the views of the TCS config's store,
            # checked against its dataset, decoder and teacher
            checks = [h for h in cfg.custom_hooks
                      if h.type == 'kdep_mm.CheckTeacherStoresHook']
            assert len(checks) == 1
            assert checks[0].teacher_checkpoints == cfg.teacher_ckpt
            tcs = Config.fromfile(osp.join(
                REPO, 'configs', 'tcs', 'cifar10_r56_to_r20_tcs_10shot.py'))
            assert root == tcs.teacher_store
            assert cfg.train_dataloader.dataset.ann_file == \
                tcs.train_dataloader.dataset.ann_file
            for key in ('batch_size', ):
                assert cfg.train_dataloader[key] == tcs.train_dataloader[key]
            assert cfg.optim_wrapper == tcs.optim_wrapper
            assert cfg.param_scheduler == tcs.param_scheduler
            assert cfg.train_cfg == tcs.train_cfg
            # no stored features reach an online baseline
            assert 'algorithm_keys' not in cfg.train_dataloader.dataset \
                .pipeline[-1]
            return
        m = re.search(r'--store (\S+) --views (\d+)', text)
        assert m, 'no cache_teacher command in the header'
        assert m.group(1) == root
        assert int(m.group(2)) == cfg.num_views
        assert f'--out-size {size}' in text
        if type(model).__name__ == 'TCSDistiller':
            assert model.teacher is None
            assert store_view.store.expected.fields.feat[0] == (
                model.teacher_channels, )
            assert hook.store == root
            assert hook.num_views == cfg.num_views
            # the teacher is checked by the checkpoint file's sha256
            assert hook.teacher_checkpoint == cfg.teacher_ckpt
            # the caching config holds the same teacher checkpoint
            cache_cfg = re.search(r'tools/cache_teacher\.py[\s\\#]*'
                                  r'(configs/\S+\.py)', text).group(1)
            src = Config.fromfile(osp.join(REPO, cache_cfg))
            assert src.model.teacher_ckpt == cfg.teacher_ckpt
            assert src.model.teacher is not None
    if '10shot' in path:
        assert cfg.train_dataloader.dataset.ann_file == \
            'meta/train_10shot.txt'
        assert 'train_dataloader.dataset.ann_file=meta/train_10shot.txt' \
            in text.replace('\\\n', '').replace('  ', ' ')
        assert '--per-class 10' in text
    if in1k:
        assert cfg.teacher_ckpt.startswith('https://download.openmmlab.com')
        opt = cfg.optim_wrapper.optimizer
        assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == (
            'SGD', 0.1, 0.9, 1e-4)
        assert cfg.train_cfg.max_epochs == 100
        assert cfg.param_scheduler.milestones == [30, 60, 90]
        assert cfg.auto_scale_lr.base_batch_size == 256
        assert cfg.train_dataloader.batch_size * 8 == 256
        # a prune step every 5 epochs of 1,281,167 images at batch 256
        assert model.prune_interval == 5 * -(-1281167 // 256)
        assert cfg.val_evaluator.topk == (1, 5)


@pytest.mark.parametrize('name', ['cifar10_r56_to_r20_tcs.py',
                                  'cifar10_r56_to_r20_tcs_10shot.py',
                                  'r50_to_r18_in1k_tcs.py'])
def test_store_variable_from_the_environment(name, monkeypatch):
    """KDEP_TCS_STORE moves the pipeline's store and the fit hook's
    together (one variable, no two keys to keep in sync)."""
    monkeypatch.setenv('KDEP_TCS_STORE', '/elsewhere/store')
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'tcs', name))
    assert cfg.teacher_store == '/elsewhere/store'
    assert _stored_view(cfg).store.root == '/elsewhere/store'
    assert _fit_hook(cfg).store == '/elsewhere/store'


def test_no_config_reads_unverified_stores():
    """Issue 16, item 2: no shipped config opens a teacher store with
    ``verify=False`` (the ImageNet TCS config did)."""
    offenders = []
    for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                          recursive=True):
        with open(path) as f:
            if 'verify=False' in f.read().replace(' ', ''):
                offenders.append(osp.relpath(path, REPO))
    assert offenders == []
