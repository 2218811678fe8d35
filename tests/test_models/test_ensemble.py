"""EnsembleDistiller (LIB-KD / Co-advise): multi-token ViT student, one
head per teacher, stored vs online teachers, Mixup of stored targets, store
refusals, frozen teachers, export to a plain mmpretrain ViT, configs."""
import copy
import glob
import os.path as osp

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.registry import DefaultScope

import kdep_mm  # noqa: F401
from helpers.models import build_seeded, cifar_resnet_classifier
from helpers.scripts import load_script
from kdep_mm.apis.export import save_classifier
from kdep_mm.models import EnsembleDistiller
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import safe_torch_load

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
NC, SIZE, C = 5, 16, 16  # classes, image size, ViT width
ARCH = dict(embed_dims=C, num_layers=2, num_heads=2, feedforward_channels=32)
PRE = dict(type='kdep_mm.EnsembleDataPreprocessor', num_classes=NC,
           mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
           to_rgb=True)
TEACHERS = dict(
    cnn=cifar_resnet_classifier(num_classes=NC, base_channels=4),
    res=dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='mmpretrain.ResNet', depth=18, stem_channels=8,
                      base_channels=8),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=NC,
                  in_channels=64)))
NAMES = ['cnn', 'res']


def student_cfg(k=2):
    return dict(type='kdep_mm.MultiTokenViT', arch=ARCH, img_size=SIZE,
                patch_size=8, num_teacher_tokens=k)


def model_cfg(online=False, target='per_teacher', **kwargs):
    k = 2 if target == 'per_teacher' else 1
    cfg = dict(type='kdep_mm.EnsembleDistiller', student=student_cfg(k),
               head=dict(type='kdep_mm.MultiTokenClsHead', num_classes=NC,
                         in_channels=C, num_tokens=k + 1),
               teacher_names=list(NAMES), target=target,
               data_preprocessor=copy.deepcopy(PRE))
    if online:
        cfg['teachers'] = copy.deepcopy(TEACHERS)
    cfg.update(kwargs)
    return cfg


def build(seed=0, **kwargs):
    return build_seeded(model_cfg(**kwargs), seed)


def stored_samples(n, seed=0, names=NAMES, mix=None):
    """DataSamples with labels and random full teacher logits."""
    from mmpretrain.structures import DataSample
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        s = DataSample().set_gt_label(int(rng.integers(NC)))
        s.set_field({nm: dict(logits=(3 * rng.standard_normal(NC)).astype(
            np.float32)) for nm in names}, 'teacher_outputs')
        out.append(s)
    return out


def hand_kl(p, s, t=1.0):
    log_q = F.log_softmax(s / t, 1)
    return (p * (p.clamp_min(1e-30).log() - log_q)).sum(1).mean() * t * t


# ------------------------------------------------------------- student
def test_student_tokens_heads_and_predict_average():
    model = build()
    assert model.student.pos_embed.shape == (1, 1 + 4, C)  # plain layout
    x = torch.randn(3, 3, SIZE, SIZE)
    model.eval()
    feats = model.student(x)
    assert len(feats[-1]) == 3 and all(t.shape == (3, C) for t in feats[-1])
    logits = model.student_logits(x)
    # distinct heads on distinct tokens
    assert not torch.allclose(logits[1], logits[2])
    mean = torch.stack(logits).mean(0)
    torch.testing.assert_close(model(x, mode='tensor'), mean)
    out = model.predict(x)
    torch.testing.assert_close(torch.stack([s.pred_score for s in out]),
                               mean.softmax(1))
    # softmax averaging: pred_score = mean of the heads' probabilities
    model.head.average = 'softmax'
    out = model.predict(x)
    torch.testing.assert_close(
        torch.stack([s.pred_score for s in out]),
        torch.stack([lg.softmax(1) for lg in logits]).mean(0))
    # another image size: pos_embed resized for the patches only
    assert model.student(torch.randn(1, 3, 24, 24))[-1][0].shape == (1, C)


# --------------------------------------------------------------- losses
def test_loss_matches_hand_computation_and_routes_per_teacher():
    model = build()
    model.train()
    x = torch.randn(4, 3, SIZE, SIZE)
    samples = stored_samples(4)
    losses = model.loss(x, samples)
    assert set(losses) == {'loss_cls', 'loss_kd_cnn', 'loss_kd_res'}
    logits = model.student_logits(x)
    labels = torch.cat([s.gt_label for s in samples])
    torch.testing.assert_close(losses['loss_cls'],
                               F.cross_entropy(logits[0], labels))
    for i, nm in enumerate(NAMES):
        t = torch.stack([torch.from_numpy(s.teacher_outputs[nm]['logits'])
                         for s in samples])
        torch.testing.assert_close(losses[f'loss_kd_{nm}'],
                                   hand_kl(t.softmax(1), logits[1 + i]))
    # each teacher's term reaches its own head only
    fcs = model.head.fcs
    for i, nm in enumerate(NAMES):
        model.zero_grad()
        model.loss(x, samples)[f'loss_kd_{nm}'].backward()
        for j, fc in enumerate(fcs):
            g = fc.weight.grad
            if j == 1 + i:
                assert g is not None and g.abs().sum() > 0, (nm, j)
            else:
                assert g is None or g.abs().sum() == 0, (nm, j)
    # changing teacher 'res' changes its term only
    other = copy.deepcopy(samples)
    for s in other:
        s.teacher_outputs['res']['logits'] = -s.teacher_outputs['res'][
            'logits']
    changed = model.loss(x, other)
    torch.testing.assert_close(changed['loss_kd_cnn'], losses['loss_kd_cnn'])
    assert not torch.allclose(changed['loss_kd_res'], losses['loss_kd_res'])


def test_averaged_target_temperature_and_weights():
    model = build(target='averaged', temperature=2.0,
                  teacher_weights=dict(cnn=3.0, res=1.0))
    x = torch.randn(4, 3, SIZE, SIZE)
    samples = stored_samples(4, seed=1)
    losses = model.loss(x, samples)
    assert set(losses) == {'loss_cls', 'loss_kd'}
    logits = model.student_logits(x)
    assert len(logits) == 2
    p = {nm: torch.stack([torch.from_numpy(s.teacher_outputs[nm]['logits'])
                          for s in samples]).div(2).softmax(1)
         for nm in NAMES}
    avg = (3 * p['cnn'] + p['res']) / 4
    torch.testing.assert_close(losses['loss_kd'],
                               hand_kl(avg, logits[1], t=2.0))
    # the token count must fit the target mode
    with pytest.raises(ValueError, match='model.student.num_teacher_tokens'):
        MODELS.build(dict(model_cfg(target='averaged'),
                          student=student_cfg(2)))
    with pytest.raises(ValueError, match='model.head.num_tokens'):
        MODELS.build(dict(model_cfg(), head=dict(
            type='kdep_mm.MultiTokenClsHead', num_classes=NC,
            in_channels=C, num_tokens=2)))


# ------------------------------------------------------- store vs online
@pytest.fixture(scope='module')
def stores(tmp_path_factory):
    """Two teachers cached with the real cache code on the same views."""
    from kdep_mm.apis import TeacherCacher
    from kdep_mm.registry import DATASETS
    from tiny_image_folder import make_image_folder
    tmp = tmp_path_factory.mktemp('ensemble')
    data = str(tmp / 'data')
    make_image_folder(data, num_classes=NC, per_class=2, size=20)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        online = build(online=True)
        pre = MODELS.build(copy.deepcopy(PRE))
        dataset = DATASETS.build(dict(
            type='CustomDataset', data_root=data,
            pipeline=[dict(type='LoadImageFromFile')]))
        views = dict(num_views=2, out_size=SIZE, seed=3)
        run = dict(shard_size=4, batch_size=8, progress=False)

        def cache(teacher, root, views_from=None, topk=None, **kw):
            return TeacherCacher(
                teacher, dataset, root,
                views=dict(views, views_from=views_from,
                           **kw.pop('views', {})),
                outputs=dict(fields=('logits', ), topk=topk),
                run=dict(run, **kw.pop('run', {})), data_preprocessor=pre,
                **kw).run()
        roots, ckpts = {}, {}
        for nm in NAMES:
            roots[nm] = str(tmp / nm)
            # the teachers' checkpoint files (their sha256 is the identity
            # CheckTeacherStoresHook checks)
            ckpts[nm] = str(tmp / f'{nm}.pth')
            torch.save(dict(state_dict=online.teachers[nm].state_dict()),
                       ckpts[nm])
            cache(online.teachers[nm], roots[nm],
                  views_from=None if nm == 'cnn' else roots['cnn'],
                  record=dict(teacher_checkpoint=ckpts[nm]),
                  run=dict(shard_size=4 if nm == 'cnn' else 1024))
        topk = str(tmp / 'res_top2')
        cache(online.teachers['res'], topk, views_from=roots['cnn'], topk=2)
        full_k = str(tmp / 'res_topall')
        cache(online.teachers['res'], full_k, views_from=roots['cnn'],
              topk=NC)
        other_v = str(tmp / 'res_v3')
        cache(online.teachers['res'], other_v, views=dict(num_views=3))
    return dict(tmp=tmp, data=data, online=online, dataset=dataset,
                roots=roots, topk=topk, full_k=full_k, other_v=other_v,
                ckpts=ckpts)


def _batch(env, stores, view, indices=range(6)):
    from mmcv.transforms import LoadImageFromFile
    from mmpretrain.datasets.transforms import PackInputs

    from kdep_mm.datasets.transforms import ApplyStoredView
    apply = ApplyStoredView(stores=stores, scale=SIZE, view_index=view,
                            teacher_names=sorted(stores))
    load, pack = LoadImageFromFile(), PackInputs(
        algorithm_keys=('teacher_outputs', ))
    items = []
    for i in indices:
        info = env['dataset'].get_data_info(i)
        res = load(dict(img_path=info['img_path'], sample_idx=i,
                        gt_label=info['gt_label']))
        items.append(pack(apply(res)))
    return pseudo_collate(items)


def test_store_and_online_give_the_same_loss(stores):
    from kdep_mm.datasets.store import TeacherStore
    a, b = (TeacherStore(stores['roots'][n]) for n in NAMES)
    assert b.shard_size == a.shard_size == 4  # copied with the views
    assert b.manifest['views_from']['root'] == a.root
    for i in range(len(a)):
        np.testing.assert_array_equal(a.views(i)[0], b.views(i)[0])
        np.testing.assert_array_equal(a.views(i)[1], b.views(i)[1])
    online = stores['online']
    store_model = build(seed=1)
    store_model.student.load_state_dict(online.student.state_dict())
    store_model.head.load_state_dict(online.head.state_dict())
    for view in (0, 1):
        data = _batch(stores, stores['roots'], view)
        d = store_model.data_preprocessor(copy.deepcopy(data), True)
        stored = store_model.loss(d['inputs'], d['data_samples'])
        # online: the teachers run on the pixel-equal stored view
        d2 = online.data_preprocessor(copy.deepcopy(data), True)
        for s in d2['data_samples']:
            del s.teacher_outputs
        live = online.loss(d2['inputs'], d2['data_samples'])
        assert set(stored) == set(live)
        for k in stored:
            torch.testing.assert_close(stored[k], live[k], atol=1e-5,
                                       rtol=1e-5)
    # top-k fp16: k = all classes and renorm gives the full target back
    # (up to fp16 rounding); k = 2 still a normalised, finite target
    full = store_model.teacher_probs(d['inputs'], d['data_samples'])
    for root, tol in ((stores['full_k'], 2e-3), (stores['topk'], None)):
        data = _batch(stores, dict(cnn=stores['roots']['cnn'], res=root), 1)
        d = store_model.data_preprocessor(data, True)
        probs = store_model.teacher_probs(d['inputs'], d['data_samples'])
        torch.testing.assert_close(probs['cnn'], full['cnn'])
        torch.testing.assert_close(probs['res'].sum(1), torch.ones(6),
                                   atol=2e-3, rtol=0)
        if tol is not None:
            torch.testing.assert_close(probs['res'], full['res'], atol=tol,
                                       rtol=0)
        else:
            assert ((probs['res'] > 0).sum(1) == 2).all()
            assert torch.isfinite(
                store_model.loss(d['inputs'], d['data_samples'])[
                    'loss_kd_res'])


def test_store_refusals(stores):
    from kdep_mm.datasets.transforms import ApplyStoredView
    roots = stores['roots']
    # wrong teacher set: a store missing, or one the config does not know
    with pytest.raises(ValueError) as e:
        ApplyStoredView(stores=dict(cnn=roots['cnn']), scale=SIZE,
                        teacher_names=NAMES)
    assert 'teacher_names' in str(e.value) and "['res']" in str(e.value)
    # wrong teacher: the fingerprint the config expects is not the store's
    with pytest.raises(ValueError) as e:
        ApplyStoredView(stores=dict(cnn=roots['cnn'], res=dict(
            root=roots['res'], expected=dict(teacher_fingerprint='0' * 64))),
            scale=SIZE)
    assert 'stores.res' in str(e.value)
    assert 'teacher_fingerprint' in str(e.value)
    # the same teacher twice
    with pytest.raises(ValueError, match='same teacher'):
        ApplyStoredView(stores=dict(cnn=roots['res'],
                                    res=stores['full_k']), scale=SIZE)
    # wrong view count: against the config, and between the stores
    with pytest.raises(ValueError, match=r'num_views is 4 .*2'):
        ApplyStoredView(stores=roots, scale=SIZE, num_views=4)
    with pytest.raises(ValueError, match='different numbers of views'):
        ApplyStoredView(stores=dict(cnn=roots['cnn'],
                                    res=stores['other_v']), scale=SIZE)
    with pytest.raises(ValueError, match='scale'):
        ApplyStoredView(stores=roots, scale=24)
    # the model refuses samples of another teacher set
    model = build()
    with pytest.raises(ValueError) as e:
        model.loss(torch.randn(2, 3, SIZE, SIZE),
                   stored_samples(2, names=['cnn', 'other']))
    assert 'model.teacher_names' in str(e.value)
    assert "['res']" in str(e.value) and "['other']" in str(e.value)
    # store mode without stored outputs: refused with the pipeline fix
    from mmpretrain.structures import DataSample
    with pytest.raises(ValueError, match='ApplyStoredView'):
        model.loss(torch.randn(2, 3, SIZE, SIZE),
                   [DataSample().set_gt_label(0) for _ in range(2)])


# ---------------------------------------------------------------- mixup
@pytest.mark.parametrize('aug', ['Mixup', 'CutMix'])
def test_batch_mix_mixes_stored_targets_alike(aug):
    pre_cfg = dict(copy.deepcopy(PRE), batch_augments=dict(
        augments=[dict(type=aug, alpha=0.8)]))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = build(data_preprocessor=pre_cfg)
    n = 6
    samples = stored_samples(n, seed=2)
    imgs = [torch.randint(0, 256, (3, SIZE, SIZE), dtype=torch.uint8)
            for _ in range(n)]
    np.random.seed(5)
    torch.manual_seed(5)
    d = model.data_preprocessor(dict(inputs=imgs,
                                     data_samples=copy.deepcopy(samples)),
                                True)
    # the same lambda and permutation, drawn again from the same seeds
    np.random.seed(5)
    torch.manual_seed(5)
    # RandomBatchAugment's choice of augment
    np.random.choice(1, p=model.data_preprocessor.batch_augments.probs)
    lam = np.random.beta(0.8, 0.8)
    index = torch.randperm(n)
    mix = torch.stack([s.teacher_mix for s in d['data_samples']])
    if aug == 'CutMix':  # lambda corrected to the pasted box area
        x = model.data_preprocessor(dict(inputs=imgs), False)['inputs']
        i = int((index != torch.arange(n)).nonzero()[0])
        lam = float((d['inputs'][i] == x[i]).all(0).float().mean())
    expected = lam * torch.eye(n) + (1 - lam) * torch.eye(n)[index]
    torch.testing.assert_close(mix, expected, atol=1e-5, rtol=0)
    # labels were mixed by the same matrix
    onehot = F.one_hot(torch.cat([s.gt_label for s in samples]), NC).float()
    torch.testing.assert_close(
        torch.stack([s.gt_score for s in d['data_samples']]), mix @ onehot)
    # and so are the stored teacher targets
    probs = model.teacher_probs(d['inputs'], d['data_samples'])
    for nm in NAMES:
        p = torch.stack([torch.from_numpy(s.teacher_outputs[nm]['logits'])
                         for s in samples]).softmax(1)
        torch.testing.assert_close(probs[nm], mix @ p)
        torch.testing.assert_close(probs[nm],
                                   lam * p + (1 - lam) * p[index])
    losses = model.loss(d['inputs'], d['data_samples'])  # soft-label CE
    assert all(torch.isfinite(v) for v in losses.values())
    # batch augments without the recorder: refused for stored targets
    with pytest.raises(ValueError, match='EnsembleDataPreprocessor'):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            MODELS.build(model_cfg(data_preprocessor=dict(
                pre_cfg, type='mmpretrain.ClsDataPreprocessor')))


# ------------------------------------------------------ frozen teachers
def test_teachers_frozen_hidden_and_unchanged():
    from mmengine.optim import OptimWrapper
    model = build(online=True)
    assert set(model.teachers) == set(NAMES)
    assert not any('teacher' in k and not k.startswith('student.teacher_')
                   for k in model.state_dict())
    teacher_params = {id(p) for t in model.teachers.values()
                      for p in t.parameters()}
    assert not teacher_params & {id(p) for p in model.parameters()}
    before = {nm: copy.deepcopy(t.state_dict())
              for nm, t in model.teachers.items()}
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    model.train()
    assert not any(t.training for t in model.teachers.values())
    from mmpretrain.structures import DataSample
    for step in range(3):
        data = dict(inputs=[torch.randint(0, 256, (3, SIZE, SIZE),
                                          dtype=torch.uint8)
                            for _ in range(4)],
                    data_samples=[DataSample().set_gt_label(i % NC)
                                  for i in range(4)])
        log = model.train_step(data, optim)
        assert torch.isfinite(log['loss'])
    for nm, t in model.teachers.items():
        assert all(p.grad is None and not p.requires_grad
                   for p in t.parameters())
        for k, v in t.state_dict().items():
            assert torch.equal(v, before[nm][k]), (nm, k)
        assert not t.training


# ----------------------------------------------- checkpoints and export
def test_checkpoint_round_trip_and_export(tmp_path):
    from mmpretrain.models import VisionTransformer

    from kdep_mm.apis.export import export_student
    model = build(seed=3)
    with torch.no_grad():
        model.student.teacher_tokens.normal_()
    ckpt = str(tmp_path / 'iter_1.pth')
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(cfg=dict(model=model_cfg()))), ckpt)
    fresh = build(seed=4)
    fresh.load_state_dict(safe_torch_load(ckpt)['state_dict'], strict=True)
    x = torch.randn(2, 3, SIZE, SIZE)
    model.eval()
    fresh.eval()
    torch.testing.assert_close(fresh(x, mode='tensor'), model(x,
                                                              mode='tensor'))

    # the plain ViT: teacher tokens dropped, loads with no missing key
    out = str(tmp_path / 'vit.pth')
    info = export_student(ckpt, out)
    assert info['dropped_keys'] == ['teacher_pos_embed', 'teacher_tokens']
    exported = safe_torch_load(out)
    assert exported['meta']['dropped_keys'] == info['dropped_keys']
    vit = VisionTransformer(arch=ARCH, img_size=SIZE, patch_size=8)
    state = {k[len('backbone.'):]: v
             for k, v in exported['state_dict'].items()}
    result = vit.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    vit.eval()
    with torch.no_grad():
        torch.testing.assert_close(vit(x)[-1],
                                   model.student.forward_plain(x)[-1],
                                   rtol=0, atol=1e-6)
    # the whole student as an ImageClassifier: same ensemble prediction
    path = str(tmp_path / 'cls.pth')
    save_classifier(model, path)
    clf = MODELS.build(dict(type='mmpretrain.ImageClassifier',
                            backbone=student_cfg(),
                            head=model_cfg()['head']))
    clf.load_state_dict(safe_torch_load(path)['state_dict'], strict=True)
    clf.eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(x, mode='tensor'),
                                   model(x, mode='tensor'))


# ---------------------------------------------------------------- configs
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'ensemble', '*.py')))


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.basename(p) for p in CONFIGS])
def test_ensemble_config_builds(path):
    from mmengine.registry import MODELS as ROOT_MODELS
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(path)
    assert cfg.default_scope == 'mmpretrain'
    init_default_scope('mmpretrain')
    m = cfg.model.copy()
    online = isinstance(m.get('teachers'), dict)
    if online:  # no network / no trained checkpoints here
        m['teacher_ckpts'] = None
    model = ROOT_MODELS.build(m)
    assert isinstance(model, EnsembleDistiller)
    assert model.teacher_names == list(cfg.teacher_names)
    assert sorted(cfg.teachers) == sorted(cfg.teacher_names)
    assert sorted(cfg.teacher_ckpts) == sorted(cfg.teacher_names)
    pipe = cfg.train_dataloader.dataset.pipeline
    if not online:
        assert cfg.model.get('teachers') is None
        view = [p for p in pipe
                if p['type'] == 'kdep_mm.ApplyStoredView'][0]
        assert sorted(view.stores) == sorted(cfg.teacher_names)
        assert view.teacher_names == cfg.teacher_names
        assert [p for p in pipe if p['type'] == 'PackInputs'][0][
            'algorithm_keys'] == ('teacher_outputs', )
        assert view.get('stores') and all(
            not isinstance(v, dict) or v.get('verify', True) is True
            for v in view.stores.values())
        # issue 16: the stores are checked against the dataset and the
        # teacher checkpoints, on start and on resume
        checks = [h for h in cfg.custom_hooks
                  if h.type == 'kdep_mm.CheckTeacherStoresHook']
        assert len(checks) == 1
        assert checks[0].teacher_checkpoints == cfg.teacher_ckpts
    augs = cfg.model.data_preprocessor.batch_augments.augments
    assert [a['type'] for a in augs] == ['Mixup', 'CutMix']
    assert [a['alpha'] for a in augs] == [0.8, 1.0]
    assert cfg.model.head.loss == dict(
        type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW' and opt.weight_decay == 0.05
    batch = cfg.auto_scale_lr.base_batch_size  # the total batch
    assert opt.lr == pytest.approx(5e-4 * batch / 512)
    assert cfg.train_cfg.max_epochs == 300
    if 'in1k' in path:
        assert batch == 1024
        assert cfg.teacher_ckpts.cnn.startswith(
            'https://download.openmmlab.com')
        assert [p['type'] for p in cfg.param_scheduler] == [
            'LinearLR', 'CosineAnnealingLR']
        assert cfg.param_scheduler[0]['end'] == 5
        assert any(p['type'] == 'RandAugment' for p in pipe)
        assert [p for p in pipe if p['type'] == 'RandomErasing'][0][
            'erase_prob'] == 0.25
        size = 224
    else:
        size = 32
        # the involution teacher is the one configs/ensemble/teachers
        # trains (its architecture comes from the same base,
        # configs/ensemble/_base_/cifar10_teachers.py, and its work dir
        # holds the teacher.pth named here); the conv-only baseline has none
        if 'involution' in cfg.teacher_names:
            assert cfg.teacher_ckpts.involution == \
                'work_dirs/ensemble/rednet26_cifar10/teacher.pth'
    x = torch.randn(1, 3, size, size)
    model.eval()
    with torch.no_grad():
        logits = model.student_logits(x)
    assert len(logits) == 1 + len(cfg.teacher_names)
    assert logits[0].shape == (1, cfg.model.head.num_classes)
    if size == 32:  # the teachers build and give matching logits
        for nm, t_cfg in cfg.teachers.items():
            t = ROOT_MODELS.build(t_cfg)
            t.eval()
            with torch.no_grad():
                assert t(x, mode='tensor').shape == logits[0].shape, nm


def test_cache_tool_selects_an_ensemble_teacher():
    """tools/cache_teacher.py --teacher NAME reads the store-mode config's
    top-level teachers / teacher_ckpts / teacher_revise_keys."""
    tool = load_script(osp.join(REPO, 'tools', 'cache_teacher.py'),
                       'cache_teacher_tool')
    cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'ensemble', 'deit-tiny_cifar10_from_r56+rednet26.py'))
    tool.select_teacher(cfg, 'involution')
    assert cfg.model.teacher.backbone.type == 'kdep_mm.RedNet'
    assert cfg.model.teacher_ckpt == \
        'work_dirs/ensemble/rednet26_cifar10/teacher.pth'
    tool.select_teacher(cfg, 'cnn')
    assert cfg.model.teacher.backbone.depth == 56
    assert cfg.model.teacher_revise_keys[0][1] == 'head.fc.'
    with pytest.raises(SystemExit, match='involution'):
        tool.select_teacher(cfg, 'vit')
    args = tool.parse_args([
        'x.py', '--store', 'd', '--teacher', 'cnn', '--views-from', 'a'])
    assert args.teacher == 'cnn' and args.views_from == 'a'


def test_non_finite_loss_stops_naming_term_and_iteration():
    """A NaN among a teacher's stored logits stops training at that
    teacher's term, before any optimizer step."""
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper
    model = build()
    samples = stored_samples(4)
    samples[2].teacher_outputs['res']['logits'][1] = np.nan
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    MessageHub.get_current_instance().update_info('iter', 11)
    before = copy.deepcopy(model.state_dict())
    data = dict(inputs=[torch.randint(0, 256, (3, SIZE, SIZE),
                                      dtype=torch.uint8) for _ in range(4)],
                data_samples=samples)
    with pytest.raises(FloatingPointError,
                       match=r"'loss_kd_res'.*at iteration 12"):
        model.train_step(data, optim)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------- issue 16: dataset / teachers
def _ensemble_dataset(data, roots, head=None, **kwargs):
    from kdep_mm.registry import DATASETS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return DATASETS.build(dict(
            type='CustomDataset', data_root=data, **kwargs,
            pipeline=[head or dict(type='LoadImageFromFile'),
                      dict(type='kdep_mm.ApplyStoredView',
                           stores=dict(roots), teacher_names=list(NAMES),
                           num_views=2, scale=SIZE),
                      dict(type='PackInputs',
                           algorithm_keys=('teacher_outputs', ))]))


class _Runner:

    def __init__(self, model, dataset):
        self.model = model
        self.train_dataloader = type('L', (), dict(dataset=dataset))()


def test_ensemble_stores_checked_against_dataset_and_teachers(stores):
    """Issue 16, item 4: CheckTeacherStoresHook gives the ensemble's stores
    the checks of TCS (before issue 16 nothing compared them with the
    training dataset or the configured teachers): the dataset (length,
    ann_file, image paths in index order), the decoder, each teacher's
    checkpoint (file sha256), online teachers' fingerprints."""
    from kdep_mm.engine.hooks.check_stores_hook import CheckTeacherStoresHook
    roots, ckpts, data = stores['roots'], stores['ckpts'], stores['data']
    model = build()
    dataset = _ensemble_dataset(data, roots)
    CheckTeacherStoresHook(teacher_checkpoints=ckpts).before_train(
        _Runner(model, dataset))
    # the two checkpoints swapped: each store is of another teacher
    with pytest.raises(ValueError) as e:
        CheckTeacherStoresHook(teacher_checkpoints=dict(
            cnn=ckpts['res'], res=ckpts['cnn'])).before_train(
                _Runner(model, dataset))
    msg = str(e.value)
    assert 'CheckTeacherStoresHook.teacher_checkpoints.cnn' in msg
    assert 'pipeline[1].stores.cnn' in msg and 'another teacher' in msg
    with pytest.raises(ValueError, match=r'teacher_checkpoints names the '
                       r"teachers \['cnn'\]"):
        CheckTeacherStoresHook(teacher_checkpoints=dict(
            cnn=ckpts['cnn'])).before_train(_Runner(model, dataset))
    # the same images in another order
    reordered = _ensemble_dataset(data, roots, serialize_data=False)
    reordered.data_list.reverse()
    with pytest.raises(ValueError) as e:
        CheckTeacherStoresHook(teacher_checkpoints=ckpts).before_train(
            _Runner(model, reordered))
    assert 'train_dataloader.dataset' in str(e.value)
    assert 'ANOTHER ORDER' in str(e.value)
    # other images (fewer)
    short = _ensemble_dataset(data, roots, indices=8)
    with pytest.raises(ValueError, match=r'stores.cnn: .*holds 10 samples '
                       r'but train_dataloader.dataset has 8'):
        CheckTeacherStoresHook().before_train(_Runner(model, short))
    # another decoder
    pillow = _ensemble_dataset(data, roots, head=dict(
        type='LoadImageFromFile', imdecode_backend='pillow'))
    with pytest.raises(ValueError, match=r'pipeline\[0\]\.imdecode_backend'):
        CheckTeacherStoresHook().before_train(_Runner(model, pillow))
    # online teachers: their weights must be the stores'
    online = stores['online']
    CheckTeacherStoresHook().before_train(_Runner(online, dataset))
    other = build(seed=5, online=True)
    with pytest.raises(ValueError, match=r'stores.cnn: .*another teacher'):
        CheckTeacherStoresHook().before_train(_Runner(other, dataset))


def test_ensemble_store_checks_on_start_and_on_resume(stores, tmp_path):
    """Issue 16, item 4: through mmengine's Runner, the store checks run on
    a fresh start and again on ``resume`` (a resumed run pointed at another
    teacher checkpoint, or another dataset, is refused before its first
    iteration)."""
    from mmengine.config import Config
    from mmengine.runner import Runner
    roots, ckpts, data = stores['roots'], stores['ckpts'], stores['data']

    def cfg(work, iters, hook_ckpts, **over):
        pipeline = [dict(type='LoadImageFromFile'),
                    dict(type='kdep_mm.ApplyStoredView',
                         stores=dict(roots), teacher_names=list(NAMES),
                         num_views=2, scale=SIZE),
                    dict(type='PackInputs',
                         algorithm_keys=('teacher_outputs', ))]
        c = dict(
            default_scope='mmpretrain', work_dir=str(work),
            model=model_cfg(),
            train_dataloader=dict(
                batch_size=4, num_workers=0,
                sampler=dict(type='DefaultSampler', shuffle=False),
                dataset=dict(type='CustomDataset', data_root=data,
                             pipeline=pipeline, **over)),
            train_cfg=dict(by_epoch=False, max_iters=iters),
            optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
            custom_hooks=[dict(type='kdep_mm.CheckTeacherStoresHook',
                               teacher_checkpoints=hook_ckpts)],
            default_hooks=dict(checkpoint=dict(
                type='CheckpointHook', interval=2, by_epoch=False)),
            log_level='WARNING')
        return Config(c)

    work = tmp_path / 'work'
    Runner.from_cfg(cfg(work, 2, dict(ckpts))).train()
    assert osp.isfile(str(work / 'iter_2.pth'))
    swapped = dict(cnn=ckpts['res'], res=ckpts['cnn'])
    for hook_ckpts, over, match in (
            (swapped, {}, 'teacher_checkpoints.cnn.*another teacher'),
            (dict(ckpts), dict(indices=8), 'train_dataloader.dataset has 8')):
        c = cfg(work, 4, hook_ckpts, **over)
        c.resume = True
        runner = Runner.from_cfg(c)
        with pytest.raises(ValueError, match=match):
            runner.train()
        assert runner.iter == 2  # resumed, refused before iteration 3
    c = cfg(work, 4, dict(ckpts))
    c.resume = True
    runner = Runner.from_cfg(c)
    runner.train()
    assert runner.iter == 4


def test_head_width_inferred_when_omitted():
    cfg = model_cfg()
    del cfg['head']['in_channels']
    model = MODELS.build(cfg)
    assert model.head.in_channels == C
