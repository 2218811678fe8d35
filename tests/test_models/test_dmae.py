import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F

import kdep_mm  # noqa: F401
from helpers.models import build_seeded
from kdep_mm.models import DMAEDistiller, num_visible_patches
from kdep_mm.registry import MODELS


def student_cfg(img=32, patch=8):
    return dict(
        type='mmpretrain.MAEViT',
        arch=dict(embed_dims=32, num_layers=4, num_heads=2,
                  feedforward_channels=64),
        img_size=img, patch_size=patch, mask_ratio=0.75)


def teacher_cfg(img=32, patch=8, depth=6):
    """A whole tiny mmpretrain MAE (backbone + decoder), like the zoo's."""
    return dict(
        type='mmpretrain.MAE',
        backbone=dict(
            type='kdep_mm.VisibleMAEViT',
            arch=dict(embed_dims=48, num_layers=depth, num_heads=2,
                      feedforward_channels=96),
            img_size=img, patch_size=patch),
        neck=dict(type='MAEPretrainDecoder', num_patches=(img // patch)**2,
                  patch_size=patch, embed_dim=48, decoder_embed_dim=32,
                  decoder_depth=1, decoder_num_heads=2),
        head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=patch,
                  loss=dict(type='PixelReconstructionLoss',
                            criterion='L2')))


def dmae_cfg(img=32, patch=8, **kwargs):
    cfg = dict(
        type='DMAEDistiller',
        student=student_cfg(img, patch),
        teacher=teacher_cfg(img, patch),
        neck=dict(type='mmpretrain.MAEPretrainDecoder',
                  num_patches=(img // patch)**2, patch_size=patch,
                  embed_dim=32, decoder_embed_dim=32, decoder_depth=1,
                  decoder_num_heads=2),
        head=dict(type='mmpretrain.MAEPretrainHead', norm_pix=True,
                  patch_size=patch,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        distill_pairs=[(3, 4)],
        mask_ratio=0.75)
    cfg.update(kwargs)
    return cfg


def build(seed=0, **kwargs):
    return build_seeded(dmae_cfg(**kwargs), seed)


def _embed_visible(backbone, x, ids_keep):
    """Patch tokens + patch pos-embed at ids_keep, by hand."""
    tok = backbone.patch_embed(x)[0] + backbone.pos_embed[:, 1:]
    return torch.stack([t[i] for t, i in zip(tok, ids_keep)])


# ------------------------------------------------------------- masking
def test_visible_count_rule():
    assert num_visible_patches(196, 0.75) == 49
    assert num_visible_patches(196, 0.95) == 9
    assert num_visible_patches(196, 0.98) == 3
    assert num_visible_patches(16, 0.75) == 4
    assert num_visible_patches(16, 0.95) == 0


@pytest.mark.parametrize('ratio,n', [(0.75, 49), (0.95, 9), (0.98, 3)])
def test_visible_count_196_patches(ratio, n):
    # 112 px / patch 8 = 14 x 14 = 196 patches, as ViT-B/16 at 224 px
    model = build(img=112, patch=8, mask_ratio=ratio)
    assert model.student.num_patches == 196
    assert model.num_visible == n
    assert model.student.mask_ratio == ratio
    x = torch.randn(2, 3, 112, 112)
    _, extras = model.forward_train(x)
    assert extras['ids_keep'].shape == (2, n)
    assert (extras['mask'] == 0).sum(1).tolist() == [n, n]
    for s in extras['student_feats'].values():
        assert s.shape == (2, 1 + n, 32)  # CLS + visible
    for t in extras['targets']:
        assert t.shape == (2, 1 + n, 48)


def test_config_errors():
    with pytest.raises(ValueError, match='model.mask_ratio'):
        build(mask_ratio=0.95)  # int(16 * 0.05) = 0 visible patches
    with pytest.raises(ValueError, match='model.mask_ratio'):
        build(mask_ratio=1.0)
    with pytest.raises(ValueError, match=r'model.distill_pairs.*teacher'):
        build(distill_pairs=[(3, 7)])  # teacher has 6 blocks
    with pytest.raises(ValueError, match=r'model.distill_pairs.*student'):
        build(distill_pairs=[(5, 4)])  # student has 4 blocks
    with pytest.raises(ValueError, match=r'model.distill_pairs.*student'):
        build(distill_pairs=[(0, 4)])
    with pytest.raises(ValueError, match='model.distill_pairs'):
        build(distill_pairs=[])
    with pytest.raises(ValueError, match='model.distill_distance'):
        build(distill_distance='cos')


# ------------------------------------------------------- shared masks
def test_teacher_sees_exactly_student_visible_tokens():
    model = build(distill_pairs=[(2, 3), (4, 6)])
    model.train()
    teacher_bb = model.teacher.backbone
    seen = {}
    h1 = model.student.layers[0].register_forward_pre_hook(
        lambda m, a: seen.__setitem__('student', a[0].detach().clone()))
    h2 = teacher_bb.layers[0].register_forward_pre_hook(
        lambda m, a: seen.__setitem__('teacher', a[0].detach().clone()))
    x = torch.randn(3, 3, 32, 32)
    _, extras = model.forward_train(x)
    h1.remove()
    h2.remove()
    ids_keep, mask = extras['ids_keep'], extras['mask']
    n = model.num_visible
    assert n == 4 and ids_keep.shape == (3, n)
    # ids_keep are exactly the unmasked patches ...
    for b in range(3):
        assert sorted(ids_keep[b].tolist()) == torch.nonzero(
            mask[b] == 0).flatten().tolist()
    with torch.no_grad():
        # ... in the order of the student's visible tokens
        torch.testing.assert_close(
            seen['student'][:, 1:],
            _embed_visible(model.student, x, ids_keep))
        # the teacher's input is its own embedding of those same patches
        torch.testing.assert_close(
            seen['teacher'][:, 1:], _embed_visible(teacher_bb, x, ids_keep))
        cls = teacher_bb.cls_token + teacher_bb.pos_embed[:, :1]
        torch.testing.assert_close(seen['teacher'][:, :1],
                                   cls.expand(3, -1, -1))
    assert seen['teacher'].shape == (3, 1 + n, 48)
    # a second batch draws a new mask
    _, extras2 = model.forward_train(x)
    assert not torch.equal(extras2['ids_keep'], ids_keep)


def test_teacher_truncated_after_block_k():
    model = build(distill_pairs=[(2, 2), (4, 3)])
    bb = model.teacher.backbone
    calls = []
    handles = [
        layer.register_forward_hook(
            lambda m, a, o, i=i: calls.append(f'layer{i}'))
        for i, layer in enumerate(bb.layers)
    ]
    handles.append(bb.ln1.register_forward_hook(
        lambda m, a, o: calls.append('ln1')))
    handles.append(model.teacher.neck.register_forward_hook(
        lambda m, a, o: calls.append('neck')))
    x = torch.randn(2, 3, 32, 32)
    _, extras = model.forward_train(x)
    for h in handles:
        h.remove()
    assert calls == ['layer0', 'layer1', 'layer2']  # blocks 1..3, once
    # targets are the outputs of block 2 and block 3 (1-based), no norm
    with torch.no_grad():
        tok = _embed_visible(bb, x, extras['ids_keep'])
        cls = (bb.cls_token + bb.pos_embed[:, :1]).expand(2, -1, -1)
        h = torch.cat([cls, tok], 1)
        h = bb.layers[1](bb.layers[0](h))
        torch.testing.assert_close(extras['targets'][0], h)
        torch.testing.assert_close(extras['targets'][1], bb.layers[2](h))


def test_student_feature_is_block_output_before_norm():
    model = build(distill_pairs=[(3, 4)])
    model.eval()
    out = {}
    h = model.student.layers[2].register_forward_hook(
        lambda m, a, o: out.__setitem__('s', o))
    with torch.no_grad():
        _, extras = model.forward_train(torch.randn(2, 3, 32, 32))
    h.remove()
    assert extras['student_feats'][3] is out['s']


def test_forward_visible_plain_vit_all_patches():
    """With every patch kept in natural order, VisibleViT.forward_visible
    matches its own (mmpretrain VisionTransformer) forward (final norm
    off)."""
    torch.manual_seed(0)
    vit = MODELS.build(
        dict(type='kdep_mm.VisibleViT',
             arch=dict(embed_dims=32, num_layers=3, num_heads=2,
                       feedforward_channels=64),
             img_size=32, patch_size=8, final_norm=False, out_type='raw',
             out_indices=[1, 2]))
    vit.init_weights()
    vit.eval()
    x = torch.randn(2, 3, 32, 32)
    ids = torch.arange(16).expand(2, -1)
    with torch.no_grad():
        ref = vit(x)
        got = vit.forward_visible(x, ids, [2, 3])
    torch.testing.assert_close(got[0], ref[0])
    torch.testing.assert_close(got[1], ref[1])
    with pytest.raises(ValueError):
        vit.forward_visible(x, ids, [4])


@pytest.mark.parametrize('plain,visible', [
    ('mmpretrain.VisionTransformer', 'kdep_mm.VisibleViT'),
    ('mmpretrain.MAEViT', 'kdep_mm.VisibleMAEViT')])
def test_visible_vits_are_the_mmpretrain_vits(plain, visible):
    """Same state-dict keys both ways (strict loads) and the same forward:
    the visible-patch ViTs only add forward_visible."""
    arch = dict(embed_dims=32, num_layers=2, num_heads=2,
                feedforward_channels=64)
    cfg = dict(arch=arch, img_size=32, patch_size=8)
    torch.manual_seed(0)
    a = MODELS.build(dict(cfg, type=plain))
    a.init_weights()
    torch.manual_seed(0)
    b = MODELS.build(dict(cfg, type=visible))
    b.init_weights()
    assert list(a.state_dict()) == list(b.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    b.load_state_dict(a.state_dict(), strict=True)
    a.load_state_dict(b.state_dict(), strict=True)
    a.eval(), b.eval()
    x = torch.randn(2, 3, 32, 32)
    kw = dict(mask=None) if plain.endswith('MAEViT') else {}
    with torch.no_grad():
        fa, fb = a(x, **kw), b(x, **kw)
    for u, v in zip(fa, fb):
        torch.testing.assert_close(u, v, rtol=0, atol=0)


def test_teacher_without_forward_visible_refused():
    teacher = teacher_cfg()
    teacher['backbone']['type'] = 'MAEViT'  # mmpretrain's, no method
    with pytest.raises(TypeError, match=r'model.teacher.backbone must run '
                       r'on visible patches.*VisibleMAEViT.*got MAEViT'):
        MODELS.build(dmae_cfg(teacher=teacher))


# ------------------------------------------------------------- losses
def test_feature_distance_by_hand():
    model = build()
    s = torch.tensor([[[3., 4., 0.], [1., 0., 0.]]])
    t = torch.tensor([[[0., 0., 2.], [2., 0., 0.]]])
    # n(s) = [.6, .8, 0], [1, 0, 0]; n(t) = [0, 0, 1], [1, 0, 0]
    l1 = (0.6 + 0.8 + 1.0 + 0 + 0 + 0) / 6
    l2 = (0.36 + 0.64 + 1.0) / 6
    torch.testing.assert_close(model.feature_distance(s, t),
                               torch.tensor(l1))
    from kdep_mm.models import NormalizedDistanceLoss
    torch.testing.assert_close(NormalizedDistanceLoss('l2')(s, t),
                               torch.tensor(l2))
    assert build(distill_distance='l2').feature_distance.distance == 'l2'


@pytest.mark.parametrize('distance', ['l1', 'l2'])
def test_losses_recomputed(distance):
    model = build(distill_pairs=[(2, 3), (4, 6)], alpha=0.5,
                  distill_distance=distance)
    x = torch.randn(2, 3, 32, 32)
    losses, ex = model.forward_train(x)
    assert set(losses) == {'loss_rec', 'loss_distill'}
    d = []
    for (s, _), proj, t in zip(model.distill_pairs, model.projectors,
                               ex['targets']):
        a = F.normalize(proj(ex['student_feats'][s]), dim=-1)
        b = F.normalize(t, dim=-1)
        d.append((a - b).abs().mean() if distance == 'l1' else
                 ((a - b)**2).mean())
    torch.testing.assert_close(losses['loss_distill'], 0.5 * (d[0] + d[1]) /
                               2)
    # MAE pixel loss on the masked patches, mmpretrain's head
    latent = ex['student_feats'][4]
    latent = model.student.ln1(latent)
    pred = model.neck(latent, ex['ids_restore'])
    target = model.head.construct_target(x)
    per_patch = ((pred - target)**2).mean(-1)
    rec = (per_patch * ex['mask']).sum() / ex['mask'].sum()
    torch.testing.assert_close(losses['loss_rec'], rec)
    # via the mmengine entry point too
    out = model(x, mode='loss')
    assert set(out) == {'loss_rec', 'loss_distill'}


# ------------------------------------------------- teacher is frozen
def test_gradients_and_teacher_frozen():
    model = build(distill_pairs=[(2, 3), (4, 6)])
    model.train()
    assert not model.teacher.training
    x = torch.randn(2, 3, 32, 32)
    losses = model(x, mode='loss')
    (losses['loss_rec'] + losses['loss_distill']).backward()
    for p in model.projectors.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert model.student.layers[0].attn.qkv.weight.grad.abs().sum() > 0
    assert model.student.patch_embed.projection.weight.grad.abs().sum() > 0
    for p in model.teacher.parameters():
        assert p.grad is None and not p.requires_grad
    # distill loss alone reaches the student through the projection
    model.zero_grad()
    model(x, mode='loss')['loss_distill'].backward()
    assert model.student.layers[0].attn.qkv.weight.grad.abs().sum() > 0


def test_teacher_unchanged_by_optimizer_step():
    model = build()
    fp = model.teacher_fingerprint()
    before = copy.deepcopy(model.student.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
    x = torch.randn(2, 3, 32, 32)
    losses = model(x, mode='loss')
    (losses['loss_rec'] + losses['loss_distill']).backward()
    opt.step()
    assert model.teacher_fingerprint() == fp
    after = model.student.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_state_dict_and_parameters_hold_no_teacher():
    model = build(distill_pairs=[(2, 3), (4, 6)])
    keys = list(model.state_dict())
    assert not any('teacher' in k for k in keys)
    assert {k.split('.')[0] for k in keys} <= {
        'student', 'neck', 'head', 'projectors', 'data_preprocessor'}
    assert len(model.projectors) == 2
    assert model.projectors[0].weight.shape == (48, 32)
    teacher_ids = {id(p) for p in model.teacher.parameters()}
    assert not teacher_ids & {id(p) for p in model.parameters()}
    # the teacher follows the student's dtype at its next call
    model.double()
    model.loss(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    assert next(model.teacher.parameters()).dtype == torch.float64


def test_teacher_checkpoint_strict(tmp_path):
    """A checkpoint of a plain mmpretrain MAE (backbone MAEViT, as in the
    zoo) loads strictly into the teacher (backbone VisibleMAEViT)."""
    torch.manual_seed(1)
    plain = teacher_cfg()
    plain['backbone']['type'] = 'MAEViT'
    teacher = MODELS.build(plain)
    teacher.init_weights()
    path = osp.join(tmp_path, 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), path)
    model = build(teacher_ckpt=path)
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(model.teacher.state_dict()[k], v)
    with pytest.raises(ValueError, match=r'model.teacher_ckpt.*missing'):
        build(teacher=teacher_cfg(depth=7), teacher_ckpt=path)
    with pytest.raises(FileNotFoundError, match='model.teacher_ckpt'):
        build(teacher_ckpt=osp.join(tmp_path, 'none.pth'))


def test_tensor_mode_is_unmasked_student():
    model = build()
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32), mode='tensor')
    assert out[0].shape == (2, 17, 32)  # raw: CLS + all 16 patches
    assert isinstance(model, DMAEDistiller)


# ------------------------------------------------------------ configs
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DMAE_CFG = osp.join(REPO, 'configs', 'dmae', 'vit-b_from_mae-vit-l_in1k_{}.py')


@pytest.mark.parametrize('ratio,visible', [(75, 49), (95, 9), (98, 3)])
def test_dmae_configs(ratio, visible):
    from mmengine.config import Config
    cfg = Config.fromfile(DMAE_CFG.format(ratio))
    assert cfg.default_scope == 'mmpretrain'
    assert 'custom_imports' not in cfg
    assert cfg.model.mask_ratio == cfg.model.student.mask_ratio == ratio / 100
    assert num_visible_patches(196, cfg.model.mask_ratio) == visible
    assert cfg.model.teacher_ckpt == (
        'https://download.openmmlab.com/mmselfsup/1.x/mae/'
        'mae_vit-large-p16_8xb512-fp16-coslr-1600e_in1k/'
        'mae_vit-large-p16_8xb512-fp16-coslr-1600e_in1k_20220825-cc7e98c9.pth')
    assert cfg.model.distill_pairs == [(9, 18)]
    opt = cfg.optim_wrapper.optimizer
    assert opt.type == 'AdamW' and opt.betas == (0.9, 0.95)
    assert opt.lr == pytest.approx(1.5e-4 * 4096 / 256)
    assert opt.weight_decay == 0.05
    assert cfg.optim_wrapper.paramwise_cfg.norm_decay_mult == 0.
    assert cfg.optim_wrapper.paramwise_cfg.bias_decay_mult == 0.
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.auto_scale_lr.base_batch_size == 4096
    # the authors' main_distill.py: 20 warm-up epochs, half-cosine to 0,
    # no norm_pix, the CLS and mask tokens decayed (timm add_weight_decay)
    warm, cos = cfg.param_scheduler
    assert (warm.type, warm.end, warm.convert_to_iter_based) == ('LinearLR',
                                                                 20, True)
    assert (cos.type, cos.begin, cos.end, cos.T_max, cos.eta_min,
            cos.convert_to_iter_based) == ('CosineAnnealingLR', 20, 100, 80,
                                           0., True)
    assert cfg.model.head.norm_pix is False
    assert set(cfg.optim_wrapper.paramwise_cfg.custom_keys) == {'ln', 'bias'}
    crop = cfg.train_dataloader.dataset.pipeline[1]
    assert crop.type == 'RandomResizedCrop' and crop.scale == 224
    assert tuple(crop.crop_ratio_range) == (0.2, 1.0)
    assert cfg.train_dataloader.dataset.pipeline[2].type == 'RandomFlip'


@pytest.mark.slow
def test_dmae_config_builds_vit_l_to_vit_b():
    """The real ViT-L teacher / ViT-B student build (10-25 s on a shared CPU,
    most of it weight init); dims are checked statically, the forward
    itself is covered by the tiny models above."""
    from mmengine.config import Config
    cfg = Config.fromfile(DMAE_CFG.format(98))
    cfg.model.teacher_ckpt = None  # no network here
    model = MODELS.build(cfg.model)
    assert isinstance(model, DMAEDistiller)
    assert len(model.student.layers) == 12
    assert model.student.embed_dims == 768
    assert model.student.num_patches == 196
    assert len(model.teacher.backbone.layers) == 24
    assert model.teacher.backbone.embed_dims == 1024
    assert model.num_visible == 3 and model.student.mask_ratio == 0.98
    assert model.projectors[0].weight.shape == (1024, 768)
    assert model.neck.decoder_embed.in_features == 768
    assert model.neck.num_patches == 196
    assert model.neck.decoder_pred.out_features == 16 * 16 * 3
    assert model.head.patch_size == 16 and not model.head.norm_pix
    assert not any('teacher' in k for k in model.state_dict())


def test_non_finite_loss_stops_naming_term_and_iteration():
    """A NaN in the teacher's features (a bad teacher checkpoint) stops
    training at the distillation term, before any optimizer step."""
    from mmengine.logging import MessageHub
    from mmengine.optim import OptimWrapper
    model = build()
    with torch.no_grad():
        model.teacher.backbone.pos_embed.fill_(float('nan'))
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    MessageHub.get_current_instance().update_info('iter', 6)
    before = copy.deepcopy(model.student.state_dict())
    with pytest.raises(FloatingPointError,
                       match=r"'loss_distill'.*at iteration 7"):
        model.train_step(dict(inputs=torch.randn(2, 3, 32, 32)), optim)
    after = model.student.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
