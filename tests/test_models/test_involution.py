"""Tests of the Involution operator and the RedNet backbones.

Reference: Li et al., "Involution: Inverting the Inherence of Convolution for
Visual Recognition", CVPR 2021. The operator is checked against the loop
reference :func:`helpers.naive_involution.naive_involution` (values
and gradients) and, independently, against a grouped convolution when the
generated kernel does not depend on the position.
"""
import copy
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.registry import DefaultScope
from torch.nn.modules.batchnorm import _BatchNorm

from kdep_mm.models.backbones.rednet import RedBottleneck, RedNet
from kdep_mm.models.utils.involution import Involution
from kdep_mm.registry import MODELS
from helpers.naive_involution import naive_involution

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEACHER_CFG = osp.join(REPO, 'configs', 'ensemble', 'teachers',
                       'rednet26_cifar10.py')


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """One intra-op thread for this module, restored afterwards: on a busy
    2-core machine two OpenMP threads made the small forwards here 30x
    slower (1.8 s instead of 0.05 s for a batch of two 32x32 images)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _build_classifier(backbone, num_classes=10):
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    in_channels = backbone.get('base_channels', 64) * 4 * 2**(
        backbone.get('num_stages', 4) - 1)
    cfg = dict(
        type='ImageClassifier',
        backbone=backbone,
        neck=dict(type='GlobalAveragePooling'),
        head=dict(
            type='LinearClsHead',
            num_classes=num_classes,
            in_channels=in_channels))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        return PRETRAIN_MODELS.build(cfg)


def _calibrate_bn(model, x, seed=0):
    """Random BN affine parameters and running statistics that match ``x``.

    The involution is quadratic in its input (kernel generated from ``x``
    times ``x``), so arbitrary eval-mode statistics make a deep RedNet
    overflow; one train-mode pass with a cumulative average sets them to
    the batch statistics instead. Returns the model in eval mode.
    """
    gen = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    for m in bns:
        n = m.num_features
        m.weight.data.copy_(torch.rand(n, generator=gen) * 0.5 + 0.75)
        m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        model(x)
    for m in bns:
        m.momentum = 0.1
    return model.eval()


# ---------------------------------------------------------------------------
# the operator
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    'channels,kernel_size,stride,group_channels,size',
    [
        (8, 3, 1, 4, 6),  # 2 groups
        (8, 3, 2, 4, 6),
        (8, 5, 1, 2, 5),  # 4 groups, odd size
        (8, 5, 2, 8, 7),  # 1 group, stride 2 on an odd size (ceil)
        (16, 7, 2, 8, 8),  # the RedNet kernel size
        (4, 1, 1, 1, 4),  # 1x1 kernel, one channel per group
    ])
def test_matches_naive_values_and_gradients(channels, kernel_size, stride,
                                            group_channels, size):
    torch.manual_seed(0)
    op = Involution(
        channels,
        kernel_size=kernel_size,
        stride=stride,
        group_channels=group_channels,
        reduction_ratio=2).double()
    op.train()  # BN with batch statistics: gradients flow through them too
    x = torch.randn(2, channels, size, size, dtype=torch.double)
    out_size = -(-size // stride)  # ceil

    x1 = x.clone().requires_grad_(True)
    out = op(x1)
    assert out.shape == (2, channels, out_size, out_size)
    grad_out = torch.randn_like(out)
    params = [p for _, p in op.named_parameters()]
    grads = torch.autograd.grad(out, [x1] + params, grad_out)

    x2 = x.clone().requires_grad_(True)
    kernel = op.generate_kernel(x2)
    assert kernel.shape == (2, channels // group_channels * kernel_size**2,
                            out_size, out_size)
    ref = naive_involution(x2, kernel, kernel_size, stride, group_channels)
    ref_grads = torch.autograd.grad(ref, [x2] + params, grad_out)

    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    names = ['input'] + [n for n, _ in op.named_parameters()]
    assert 'conv1.conv.weight' in names and 'conv2.conv.bias' in names
    for name, g, r in zip(names, grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9, msg=name)
        assert g.abs().sum() > 0, name


@pytest.mark.parametrize('stride', [1, 2])
def test_position_independent_kernel_is_grouped_conv(stride):
    """Independent of the loop reference: a kernel that is the same at every
    position is a convolution whose weight is shared inside each group."""
    torch.manual_seed(0)
    n, c, gc, k, size = 2, 8, 4, 3, 6
    groups = c // gc
    x = torch.randn(n, c, size, size, dtype=torch.double)
    w = torch.randn(groups, k, k, dtype=torch.double)
    out_size = -(-size // stride)
    kernel = w.reshape(1, groups * k * k, 1, 1).expand(
        n, groups * k * k, out_size, out_size)
    conv_w = w.repeat_interleave(gc, dim=0).unsqueeze(1)  # C x 1 x K x K
    expected = F.conv2d(x, conv_w, stride=stride, padding=k // 2, groups=c)
    torch.testing.assert_close(
        naive_involution(x, kernel, k, stride, gc), expected)

    op = Involution(c, kernel_size=k, stride=stride, group_channels=gc,
                    reduction_ratio=2).double().eval()
    op.generate_kernel = lambda inp: kernel  # the unfold path alone
    torch.testing.assert_close(op(x), expected)


def test_naive_center_tap_is_identity_or_subsampling():
    x = torch.arange(2 * 4 * 5 * 5, dtype=torch.float32).view(2, 4, 5, 5)
    kernel = torch.zeros(2, 2 * 9, 3, 3)
    kernel.view(2, 2, 3, 3, 3, 3)[:, :, 1, 1] = 1.  # centre tap only
    out = naive_involution(x, kernel, 3, 2, 2)
    assert torch.equal(out, x[:, :, ::2, ::2])
    kernel = torch.zeros(2, 2 * 9, 5, 5)
    kernel.view(2, 2, 3, 3, 5, 5)[:, :, 1, 1] = 1.
    assert torch.equal(naive_involution(x, kernel, 3, 1, 2), x)


def test_cpu_autocast_bfloat16():
    torch.manual_seed(0)
    op = Involution(32, kernel_size=7, stride=2).eval()
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        ref = op(x)
        assert ref.dtype == torch.float32
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = op(x)  # float32 input
            out_bf16_in = op(x.bfloat16())  # bfloat16 input
    # the autocast dtype, whatever the input dtype
    assert out.dtype == out_bf16_in.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.05)
    assert (out.float() - ref).norm() / ref.norm() < 0.02

    # gradients reach the float32 parameters under autocast
    op.train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = op(x.requires_grad_(True)).float().square().mean()
    loss.backward()
    assert x.grad.dtype == torch.float32
    for name, p in op.named_parameters():
        assert p.grad is not None and p.grad.dtype == torch.float32, name
        assert torch.isfinite(p.grad).all(), name

    # a model cast to bfloat16 (no autocast) stays in bfloat16
    op_bf16 = copy.deepcopy(op).eval().bfloat16()
    with torch.no_grad():
        assert op_bf16(x.bfloat16()).dtype == torch.bfloat16


def test_rednet_cpu_autocast_bfloat16():
    """A whole RedNet under CPU autocast: bfloat16 features at every stage,
    close to float32. The relative error grows with depth in a random
    network (the involution is multiplicative: 0.9% after stage 1, 2.5%
    after stage 2, about 35% after stage 4 here), so the deep stage is only
    checked for direction."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = RedNet(26, stem='cifar', base_channels=16, stem_channels=16,
                   out_indices=(0, 1, 3))
    model.init_weights()
    _calibrate_bn(model, x)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            outs = model(x)
    assert len({out.dtype for out in outs}) == 1
    assert outs[0].dtype == torch.bfloat16
    for out, r in zip(outs, ref):
        assert out.shape == r.shape and torch.isfinite(out).all()
    for out, r in zip(outs[:2], ref[:2]):
        assert (out.float() - r).norm() / r.norm() < 0.05
    cosine = F.cosine_similarity(outs[-1].float().flatten(), ref[-1].flatten(),
                                 dim=0)
    assert cosine > 0.8


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_autocast_float16():
    torch.manual_seed(0)
    op = Involution(32, kernel_size=7, stride=2).cuda().eval()
    x = torch.randn(2, 32, 8, 8, device='cuda')
    with torch.no_grad():
        ref = op(x)
        with torch.autocast('cuda', dtype=torch.float16):
            out = op(x)
    assert out.dtype == torch.float16
    assert (out.float() - ref).norm() / ref.norm() < 0.01


def test_involution_bad_args_and_registry():
    with pytest.raises(ValueError, match='group_channels'):
        Involution(24, group_channels=16)
    with pytest.raises(ValueError, match='kernel_size'):
        Involution(16, kernel_size=4)
    with pytest.raises(ValueError, match='reduction_ratio'):
        Involution(16, reduction_ratio=3)
    op = MODELS.build(dict(type='kdep_mm.Involution', channels=16))
    assert isinstance(op, Involution) and op.groups == 1
    assert op.kernel_size == 7 and not hasattr(op, 'avgpool')
    # the two 1x1 convs: reduce (+ BN + ReLU, no bias) and span (bias)
    assert dict((n, tuple(p.shape)) for n, p in op.named_parameters()) == {
        'conv1.conv.weight': (4, 16, 1, 1),
        'conv1.bn.weight': (4, ),
        'conv1.bn.bias': (4, ),
        'conv2.conv.weight': (49, 4, 1, 1),
        'conv2.conv.bias': (49, ),
    }


# ---------------------------------------------------------------------------
# RedNet
# ---------------------------------------------------------------------------
# Parameters with GlobalAveragePooling + a 2048 -> 1000 linear head, counted
# in closed form from the architecture (not from the implementation), and
# the paper's (Table 2) / official model zoo's 9.23M / 12.39M / 15.54M /
# 25.65M / 33.99M. RedNet-152 comes out 33.98M (33,984,582): the official
# configs differ from the other depths only in the stage blocks, so the
# 0.01M gap is taken to be a rounding of the official table.
OFFICIAL_M = {26: 9.23, 38: 12.39, 50: 15.54, 101: 25.65, 152: 33.99}
STAGE_BLOCKS = {26: (1, 2, 4, 1), 38: (2, 3, 5, 2), 50: (3, 4, 6, 3),
                101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}


def _conv_bn(cin, cout, k=1):
    """k x k conv without bias + BN (weight, bias)."""
    return cin * cout * k * k + 2 * cout


def _involution(c, k=7, r=4, gc=16):
    """reduce 1x1 conv C -> C/r + BN, span 1x1 conv C/r -> K*K*G + bias."""
    red, groups = c // r, c // gc
    return c * red + 2 * red + red * k * k * groups + k * k * groups


def _bottleneck(cin, cout):
    """1x1 conv + BN, 7x7 involution + BN, 1x1 conv + BN (expansion 4),
    and a 1x1 conv + BN projection where the width changes."""
    mid = cout // 4
    n = _conv_bn(cin, mid) + _involution(mid) + 2 * mid + _conv_bn(mid, cout)
    return n + (_conv_bn(cin, cout) if cin != cout else 0)


def rednet_params(depth, num_classes=1000):
    """Stem (conv3x3 3->32 + BN, involution 3x3 + BN, conv3x3 32->64 +
    BN), four stages of widths 256 * 2**i, the linear head."""
    n = _conv_bn(3, 32, 3) + _involution(32, k=3) + 2 * 32 + \
        _conv_bn(32, 64, 3)
    cin = 64
    for i, blocks in enumerate(STAGE_BLOCKS[depth]):
        for _ in range(blocks):
            n += _bottleneck(cin, 256 * 2**i)
            cin = 256 * 2**i
    return n + cin * num_classes + num_classes


def test_closed_form_counts():
    assert rednet_params(26) == 9_233_166
    assert rednet_params(152) == 33_984_582


@pytest.mark.parametrize('depth', sorted(OFFICIAL_M))
def test_parameter_count(depth):
    model = _build_classifier(dict(type='kdep_mm.RedNet', depth=depth),
                              num_classes=1000)
    count = sum(p.numel() for p in model.parameters())
    assert count == rednet_params(depth)
    assert abs(count / 1e6 - OFFICIAL_M[depth]) <= (
        0.0051 if depth != 152 else 0.011)
    assert model.backbone.stage_blocks == STAGE_BLOCKS[depth]


def test_official_layout():
    model = RedNet(26)
    blocks = [m for m in model.modules() if isinstance(m, RedBottleneck)]
    assert len(blocks) == 8
    for block in blocks:
        assert isinstance(block.conv2, Involution)
        assert block.conv2.kernel_size == 7
        assert block.conv2.stride == block.stride
        assert block.conv2.group_channels == 16
    assert [b.stride for b in blocks] == [1, 2, 1, 2, 1, 1, 1, 2]
    assert isinstance(model.stem[1], Involution)
    assert model.stem[1].kernel_size == 3 and model.stem[1].channels == 32
    keys = set(model.state_dict())
    for key in [
            'stem.0.conv.weight', 'stem.0.bn.weight',
            'stem.1.conv1.conv.weight', 'stem.1.conv2.conv.bias',
            'stem.2.weight', 'stem.4.conv.weight',
            'layer1.0.conv1.weight', 'layer1.0.bn1.weight',
            'layer1.0.conv2.conv1.conv.weight',
            'layer1.0.conv2.conv1.bn.running_mean',
            'layer1.0.conv2.conv2.conv.weight',
            'layer1.0.conv2.conv2.conv.bias', 'layer1.0.bn2.weight',
            'layer1.0.conv3.weight', 'layer1.0.bn3.weight',
            'layer1.0.downsample.0.weight', 'layer1.0.downsample.1.weight',
            'layer4.0.conv2.conv1.conv.weight'
    ]:
        assert key in keys, key
    assert not any('layer1.0.conv2.weight' == k for k in keys)


def test_output_shapes_imagenet_stem():
    model = RedNet(26, out_indices=(0, 1, 2, 3)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 64, 64))
    assert isinstance(outs, tuple)
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 16),
                                              (1, 512, 8, 8),
                                              (1, 1024, 4, 4),
                                              (1, 2048, 2, 2)]
    assert model.stage_channels == (256, 512, 1024, 2048)
    assert model.feat_dim == 2048
    # default: the last stage only, still a tuple
    outs = RedNet(38, base_channels=16, stem_channels=32).eval()(
        torch.rand(1, 3, 64, 64))
    assert isinstance(outs, tuple) and len(outs) == 1
    assert outs[0].shape == (1, 512, 2, 2)


def test_output_shapes_cifar_stem():
    model = RedNet(
        26, stem='cifar', base_channels=16, stem_channels=16,
        out_indices=(0, 1, 2, 3)).eval()
    assert len(model.stem) == 1 and isinstance(model.maxpool, torch.nn.Identity)
    assert not any(isinstance(m, Involution) for m in model.stem.modules())
    with torch.no_grad():
        outs = model(torch.rand(2, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 32, 32),
                                              (2, 128, 16, 16),
                                              (2, 256, 8, 8),
                                              (2, 512, 4, 4)]
    # the teacher's strides and fewer stages; negative out_indices
    model = RedNet(
        26, stem='cifar', base_channels=16, num_stages=3, strides=(2, 2, 1),
        out_indices=(-1, 0)).eval()
    with torch.no_grad():
        outs = model(torch.rand(1, 3, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 64, 16, 16),
                                              (1, 256, 8, 8)]


def test_classifier_from_config_loss_and_predict():
    """mmpretrain ImageClassifier + kdep_mm.RedNet built from the teacher
    config (mmpretrain default scope), one loss and one predict call."""
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    from mmpretrain.structures import DataSample
    cfg = Config.fromfile(TEACHER_CFG)
    assert cfg.model.backbone.type == 'kdep_mm.RedNet'
    assert cfg.default_scope == 'mmpretrain'
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = PRETRAIN_MODELS.build(cfg.model)
    assert isinstance(model.backbone, RedNet)
    model.init_weights()
    torch.manual_seed(0)
    data = dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
                for _ in range(4)],
        data_samples=[DataSample().set_gt_label(i % 10) for i in range(4)])
    model.train()
    batch = model.data_preprocessor(data, training=True)
    losses = model(**batch, mode='loss')
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert model.backbone.layer1[0].conv2.conv2.conv.weight.grad is not None
    model.eval()
    with torch.no_grad():
        preds = model(**model.data_preprocessor(data), mode='predict')
    assert len(preds) == 4
    assert preds[0].pred_score.shape == (10, )
    assert 0 <= int(preds[0].pred_label) < 10


def test_build_from_other_toolboxes():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    for registry in (DET_MODELS, SEG_MODELS):
        model = registry.build(
            dict(type='kdep_mm.RedNet', depth=26, base_channels=16,
                 stem_channels=32, out_indices=(0, 1, 2, 3)))
        assert isinstance(model, RedNet)


def test_state_dict_round_trip():
    torch.manual_seed(0)
    cfg = dict(type='kdep_mm.RedNet', depth=26, stem='cifar',
               base_channels=16, stem_channels=16, out_indices=(1, 3))
    x = torch.randn(2, 3, 32, 32)
    src = _calibrate_bn(MODELS.build(cfg), x, seed=0)
    torch.manual_seed(1)
    dst = _calibrate_bn(MODELS.build(cfg), x, seed=1)
    with torch.no_grad():
        before = dst(x)
        expected = src(x)
        assert all(torch.isfinite(e).all() for e in expected)
        assert not torch.allclose(before[-1], expected[-1])
        missing = dst.load_state_dict(src.state_dict(), strict=True)
        assert not missing.missing_keys and not missing.unexpected_keys
        after = dst(x)
    for a, e in zip(after, expected):
        assert torch.equal(a, e)


def test_frozen_stages():
    model = RedNet(
        26, stem='cifar', base_channels=16, stem_channels=16,
        frozen_stages=1)
    model.train()
    for module in (model.stem, model.layer1):
        assert not module.training
        assert all(not p.requires_grad for p in module.parameters())
        assert all(not m.training for m in module.modules())
    for module in (model.layer2, model.layer3, model.layer4):
        assert module.training
        assert all(p.requires_grad for p in module.parameters())
    # a training step leaves the frozen part untouched (BN stats included)
    frozen = {k: v.clone() for k, v in model.state_dict().items()
              if k.startswith(('stem.', 'layer1.'))}
    model(torch.randn(2, 3, 32, 32))[0].sum().backward()
    for k, v in model.state_dict().items():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k
    assert model.layer2[0].conv2.conv1.bn.num_batches_tracked == 1

    model = RedNet(26, frozen_stages=0, base_channels=16, stem_channels=32)
    model.train()
    assert not model.stem.training and model.layer1.training
    # stem involution's kernel generation is frozen too
    assert not model.stem[1].conv1.bn.weight.requires_grad
    with pytest.raises(ValueError, match='frozen_stages'):
        RedNet(26, frozen_stages=5)


def test_norm_eval():
    model = RedNet(
        26, stem='cifar', base_channels=16, stem_channels=16, norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    # block BNs, stem BN and the BNs inside the involutions' kernel generation
    assert len(bns) == 1 + 8 * 4 + 4
    assert all(not m.training for m in bns)
    assert model.layer1.training  # the rest stays in training mode
    stats = [m.running_mean.clone() for m in bns]
    model(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bns))
    model = RedNet(26, stem='cifar', base_channels=16, stem_channels=16)
    model.train()
    assert all(m.training for m in model.modules()
               if isinstance(m, _BatchNorm))


def test_init_weights_zero_init_residual():
    model = RedNet(26, base_channels=16, stem_channels=32)
    model.init_weights()
    blocks = [m for m in model.modules() if isinstance(m, RedBottleneck)]
    assert all((b.norm3.weight == 0).all() for b in blocks)
    assert all((b.conv2.conv2.conv.bias == 0).all() for b in blocks)
    assert all((b.norm2.weight == 1).all() for b in blocks)
    model = RedNet(26, base_channels=16, stem_channels=32,
                   zero_init_residual=False)
    model.init_weights()
    assert all((m.norm3.weight == 1).all() for m in model.modules()
               if isinstance(m, RedBottleneck))


@pytest.mark.parametrize('depth', [18, 34, 0, 27, '26', True])
def test_bad_depth_raises(depth):
    with pytest.raises(ValueError, match=r'depth.*26, 38, 50, 101'):
        RedNet(depth)


def test_other_bad_args():
    with pytest.raises(ValueError, match='stem'):
        RedNet(26, stem='deep')
    with pytest.raises(ValueError, match='base_channels'):
        RedNet(26, base_channels=24)
    with pytest.raises(ValueError, match='stem_channels'):
        RedNet(26, stem_channels=48)
    with pytest.raises(ValueError, match='strides'):
        RedNet(26, strides=(1, 2, 2))
    with pytest.raises(ValueError, match='out_indices'):
        RedNet(26, out_indices=(4, ))
