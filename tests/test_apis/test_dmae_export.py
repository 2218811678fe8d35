"""Export of a DMAE student and loading it downstream.

A tiny :class:`~kdep_mm.models.DMAEDistiller` (MAEViT student, 32-d, 4
blocks, 32 px, patch 8) is saved as a Runner-style checkpoint, exported with
:func:`kdep_mm.apis.export.export_student` and loaded through
``init_cfg=dict(type='Pretrained', prefix='backbone.')`` into

* an mmpretrain ``VisionTransformer`` of the same architecture: no missing,
  no unexpected key, same encoder output as the student's unmasked forward;
* an mmseg segmentor whose backbone is ``type='mmpretrain.VisionTransformer'``
  (the supported path into mmseg: the export uses mmpretrain key names;
  mmseg's own ``VisionTransformer`` names its attention differently, and
  its ``Pretrained`` loading neither strips the prefix nor loads strictly);
* the backbone of ``configs/dmae/vit-b_finetune_in1k.py`` (shrunk), with
  exactly the key differences of an MAE fine-tuning start.

The fine-tuning config itself is built with ``init_cfg`` removed.
"""
import os.path as osp

import pytest
import torch

import kdep_mm  # noqa: F401
from kdep_mm.registry import MODELS
from helpers.paths import REPO

FINETUNE_CFG = osp.join(REPO, 'configs', 'dmae', 'vit-b_finetune_in1k.py')

IMG, PATCH = 32, 8
TINY_ARCH = dict(embed_dims=32, num_layers=4, num_heads=2,
                 feedforward_channels=64)

STUDENT_CFG_TEXT = f"""
model = dict(
    type='kdep_mm.DMAEDistiller',
    student=dict(type='mmpretrain.MAEViT', arch={TINY_ARCH!r},
                 img_size={IMG}, patch_size={PATCH}, mask_ratio=0.75))
"""


def dmae_cfg():
    """As tests/test_models/test_dmae.py: tiny student, tiny MAE teacher."""
    n = (IMG // PATCH)**2
    return dict(
        type='DMAEDistiller',
        student=dict(type='mmpretrain.MAEViT', arch=dict(TINY_ARCH),
                     img_size=IMG, patch_size=PATCH, mask_ratio=0.75),
        teacher=dict(
            type='mmpretrain.MAE',
            backbone=dict(
                type='kdep_mm.VisibleMAEViT',
                arch=dict(embed_dims=48, num_layers=6, num_heads=2,
                          feedforward_channels=96),
                img_size=IMG, patch_size=PATCH),
            neck=dict(type='MAEPretrainDecoder', num_patches=n,
                      patch_size=PATCH, embed_dim=48, decoder_embed_dim=32,
                      decoder_depth=1, decoder_num_heads=2),
            head=dict(type='MAEPretrainHead', norm_pix=True,
                      patch_size=PATCH,
                      loss=dict(type='PixelReconstructionLoss',
                                criterion='L2'))),
        neck=dict(type='mmpretrain.MAEPretrainDecoder', num_patches=n,
                  patch_size=PATCH, embed_dim=32, decoder_embed_dim=32,
                  decoder_depth=1, decoder_num_heads=2),
        head=dict(type='mmpretrain.MAEPretrainHead', norm_pix=True,
                  patch_size=PATCH,
                  loss=dict(type='PixelReconstructionLoss', criterion='L2')),
        distill_pairs=[(3, 4)],
        mask_ratio=0.75)


@pytest.fixture(scope='module')
def dmae():
    torch.manual_seed(0)
    model = MODELS.build(dmae_cfg())
    model.init_weights()
    with torch.no_grad():  # no parameter left at a constant init
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
        model.student.pos_embed.add_(
            0.02 * torch.randn_like(model.student.pos_embed))
    model.eval()
    return model


@pytest.fixture(scope='module')
def exported(tmp_path_factory, dmae):
    from kdep_mm.apis.export import export_student
    d = tmp_path_factory.mktemp('dmae_export')
    src = str(d / 'epoch_100.pth')
    torch.save(
        {
            'state_dict': dmae.state_dict(),
            'meta': {'cfg': STUDENT_CFG_TEXT, 'epoch': 100, 'iter': 1000,
                     'seed': 0},
        }, src)
    dst = str(d / 'student_vit-b.pth')
    summary = export_student(src, dst)
    return dst, summary


def _student_sd(dmae):
    return dmae.student.state_dict()


def _exported_backbone_sd(dst):
    sd = torch.load(dst, weights_only=True)['state_dict']
    return {k[len('backbone.'):]: v for k, v in sd.items()}


def test_export_holds_exactly_the_student(dmae, exported):
    from kdep_mm.apis.export import verify_exported
    dst, summary = exported
    ckpt = verify_exported(dst)
    student = _student_sd(dmae)
    assert set(ckpt['state_dict']) == {'backbone.' + k for k in student}
    for k, v in student.items():
        torch.testing.assert_close(ckpt['state_dict']['backbone.' + k], v,
                                   rtol=0, atol=0)
    # neck / head / projectors of the distiller are dropped
    full = set(dmae.state_dict())
    assert any(k.startswith('projectors.') for k in full)
    assert any(k.startswith('neck.') for k in full)
    assert summary['num_tensors'] == len(student)
    assert ckpt['meta']['source_epoch'] == 100
    assert ckpt['meta']['student_cfg']['type'] == 'mmpretrain.MAEViT'


def _tiny_vit(registry, dst, **kwargs):
    cfg = dict(type='mmpretrain.VisionTransformer', arch=dict(TINY_ARCH),
               img_size=IMG, patch_size=PATCH,
               init_cfg=dict(type='Pretrained', checkpoint=dst,
                             prefix='backbone.'))
    cfg.update(kwargs)
    vit = registry.build(cfg)
    vit.init_weights()
    vit.eval()  # mmpretrain's ViT.train() returns None: no chaining
    return vit


def _assert_same_weights(module, exported_sd):
    sd = module.state_dict()
    missing = set(sd) - set(exported_sd)
    unexpected = set(exported_sd) - set(sd)
    assert not missing and not unexpected, (missing, unexpected)
    for k, v in exported_sd.items():
        torch.testing.assert_close(sd[k], v, rtol=0, atol=0, msg=k)


def test_load_into_mmpretrain_vit(dmae, exported):
    dst, _ = exported
    exp_sd = _exported_backbone_sd(dst)
    # MAEViT's defaults: final norm (ln1) on, raw CLS + patch tokens out
    vit = _tiny_vit(MODELS, dst, final_norm=True, out_type='raw')
    _assert_same_weights(vit, exp_sd)
    # a strict load of the stripped export reports nothing either
    res = vit.load_state_dict(exp_sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    # encoder with every patch visible: the distiller's tensor mode is
    # MAEViT(x, mask=None) -> (B, 1 + L, C) after the final norm
    torch.manual_seed(1)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        ref = dmae(x, mode='tensor')
        got = vit(x)
    assert ref[0].shape == got[0].shape == (2, 1 + (IMG // PATCH)**2, 32)
    torch.testing.assert_close(got[0], ref[0])
    # and the pooled features of a classifier-style backbone agree too
    vit_pool = _tiny_vit(MODELS, dst, final_norm=True, out_type='cls_token')
    with torch.no_grad():
        torch.testing.assert_close(vit_pool(x)[0], ref[0][:, 0])


def test_load_into_mmseg_via_mmpretrain_vit(dmae, exported):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as SEG_MODELS
    dst, _ = exported
    exp_sd = _exported_backbone_sd(dst)
    init_default_scope('mmseg')
    seg = SEG_MODELS.build(
        dict(
            type='EncoderDecoder',
            data_preprocessor=dict(type='SegDataPreProcessor',
                                   size=(IMG, IMG)),
            backbone=dict(
                type='mmpretrain.VisionTransformer', arch=dict(TINY_ARCH),
                img_size=IMG, patch_size=PATCH, out_type='featmap',
                out_indices=(1, 3), final_norm=True,
                init_cfg=dict(type='Pretrained', checkpoint=dst,
                              prefix='backbone.')),
            decode_head=dict(type='FCNHead', in_channels=32, in_index=1,
                             channels=16, num_convs=1, num_classes=3,
                             norm_cfg=dict(type='BN', requires_grad=True)),
            train_cfg=dict(), test_cfg=dict(mode='whole')))
    seg.init_weights()
    seg.eval()
    assert type(seg.backbone).__module__.startswith('mmpretrain.')
    _assert_same_weights(seg.backbone, exp_sd)
    torch.manual_seed(1)
    x = torch.randn(2, 3, IMG, IMG)
    with torch.no_grad():
        feats = seg.backbone(x)
        ref = dmae(x, mode='tensor')[0]  # CLS + 16 patches, final norm
        out = seg(x, mode='tensor')
    assert [f.shape for f in feats] == [(2, 32, 4, 4)] * 2
    # last block's feature map = the student's normed patch tokens
    torch.testing.assert_close(
        feats[1], ref[:, 1:].transpose(1, 2).reshape(2, 32, 4, 4))
    assert out.shape == (2, 3, 4, 4)


def test_mmseg_native_vit_uses_other_key_names(exported):
    """Why the mmseg path goes through mmpretrain.VisionTransformer: mmseg's
    own ViT holds its attention in nn.MultiheadAttention (``attn.attn.*``)
    where mmpretrain (and the export) use ``attn.qkv`` / ``attn.proj``."""
    from mmseg.models.backbones import VisionTransformer as SegViT
    dst, _ = exported
    seg_keys = set(
        SegViT(img_size=IMG, patch_size=PATCH, embed_dims=32, num_layers=4,
               num_heads=2, mlp_ratio=2, final_norm=True).state_dict())
    exp_keys = set(_exported_backbone_sd(dst))
    assert 'layers.0.attn.attn.in_proj_weight' in seg_keys
    assert 'layers.0.attn.qkv.weight' in exp_keys
    assert seg_keys != exp_keys


def test_finetune_config():
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(FINETUNE_CFG)
    assert cfg.default_scope == 'mmpretrain'
    assert 'custom_imports' not in cfg
    assert cfg.pretrained == 'work_dirs/dmae/student_vit-b.pth'
    bb = cfg.model.backbone
    assert bb.init_cfg == dict(type='Pretrained',
                               checkpoint=cfg.pretrained, prefix='backbone.')
    # MAE's ViT-B fine-tuning recipe with the authors' finetune.sh defaults
    # (drop path 0.15, layer decay 0.75, 20 warm-up epochs)
    assert (bb.type, bb.arch, bb.patch_size, bb.img_size) == (
        'VisionTransformer', 'base', 16, 224)
    assert (bb.out_type, bb.final_norm, bb.drop_path_rate) == (
        'avg_featmap', False, 0.15)
    assert cfg.optim_wrapper.optimizer.lr == 2e-3
    assert cfg.optim_wrapper.paramwise_cfg.layer_decay_rate == 0.75
    warm, cos = cfg.param_scheduler
    assert (warm.end, cos.begin, cos.end, cos.T_max, cos.eta_min) == (
        20, 20, 100, 80, 1e-6)
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.train_dataloader.batch_size == 128
    # builds (no checkpoint needed with init_cfg removed)
    init_default_scope(cfg.default_scope)
    from mmpretrain.registry import MODELS as CLS_MODELS
    model_cfg = cfg.model.copy()
    model_cfg.backbone = dict(model_cfg.backbone, init_cfg=None)
    model = CLS_MODELS.build(model_cfg)
    assert len(model.backbone.layers) == 12
    assert model.head.fc.out_features == 1000
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, 224, 224), mode='tensor')
    assert out.shape == (1, 1000)


def test_finetune_backbone_loads_export(exported):
    """The fine-tuning backbone (shrunk to the tiny arch) loads the export
    with MAE's usual differences only: MAEViT's final norm ``ln1`` is not
    used (final_norm=False) and the pooled-feature norm ``ln2`` is new."""
    from mmengine.config import Config
    dst, _ = exported
    exp_sd = _exported_backbone_sd(dst)
    bb = Config.fromfile(FINETUNE_CFG).model.backbone.to_dict()
    bb.update(type='mmpretrain.VisionTransformer', arch=dict(TINY_ARCH),
              img_size=IMG, patch_size=PATCH)
    bb['init_cfg']['checkpoint'] = dst
    vit = MODELS.build(bb)
    vit.init_weights()
    sd = vit.state_dict()
    assert set(sd) - set(exp_sd) == {'ln2.weight', 'ln2.bias'}
    assert set(exp_sd) - set(sd) == {'ln1.weight', 'ln1.bias'}
    for k in set(sd) & set(exp_sd):
        torch.testing.assert_close(sd[k], exp_sd[k], rtol=0, atol=0, msg=k)
