"""tools/model_converters/: the official KDEP and DMAE checkpoints ->
mmpretrain, on state dicts built here with the official key names and shapes
(read from CVMI-Lab/KDEP src/resnet.py, src/mobilenet.py and its
transform_ckpt_custom2{seg,det}.py, and UCSC-VLAA/DMAE models_mae_distill.py,
models_vit.py, pretrain.sh), loading with zero missing and zero unexpected
keys."""
import argparse
import os.path as osp

import pytest
import torch
from helpers.launch import tool_modules
from helpers.paths import REPO

CONVERTERS = osp.join(REPO, 'tools', 'model_converters')


@pytest.fixture(scope='module')
def conv():
    with tool_modules(CONVERTERS, 'kdep_official_to_mmpretrain',
                      'dmae_official_to_mmpretrain') as modules:
        yield modules


def _bare(state):
    return {k[len('backbone.'):]: v for k, v in state.items()
            if k.startswith('backbone.')}


def _load_exactly(module, state):
    missing, unexpected = module.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing[:5], unexpected[:5])


# ----------------------------------------------------------------- KDEP
def _robustness(student, extra_student=None):
    """A robustness-library checkpoint dict as KDEP saves it."""
    student = dict(student, **(extra_student or {}))
    model = {}
    for prefix in ('module.model.model.', 'module.attacker.model.model.'):
        model.update({prefix + k: v for k, v in student.items()})
    for name in ('module.normalizer', 'module.attacker.normalize'):
        model[f'{name}.new_mean'] = torch.rand(3, 1, 1)
        model[f'{name}.new_std'] = torch.rand(3, 1, 1)
    return {'model': model, 'epoch': 90, 'schedule': None}


def _bn(sd, name, c):
    for s in ('weight', 'bias', 'running_mean'):
        sd[f'{name}.{s}'] = torch.randn(c)
    sd[f'{name}.running_var'] = torch.rand(c) + .5
    sd[f'{name}.num_batches_tracked'] = torch.tensor(7)


def tonylins_mobilenetv2_state():
    """KDEP src/mobilenet.py MobileNetV2 (width 1.0, 1000 classes)."""
    sd = {}

    def conv(name, cout, cin, k, groups=1):
        sd[f'{name}.weight'] = torch.randn(cout, cin // groups, k, k)

    conv('features.0.0', 32, 3, 3)
    _bn(sd, 'features.0.1', 32)
    cin, idx = 32, 1
    for t, c, n, _ in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2),
                       (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)):
        for _ in range(n):
            hid, p = round(cin * t), f'features.{idx}.conv'
            if t == 1:
                conv(f'{p}.0', hid, hid, 3, groups=hid)
                _bn(sd, f'{p}.1', hid)
                conv(f'{p}.3', c, hid, 1)
                _bn(sd, f'{p}.4', c)
            else:
                conv(f'{p}.0', hid, cin, 1)
                _bn(sd, f'{p}.1', hid)
                conv(f'{p}.3', hid, hid, 3, groups=hid)
                _bn(sd, f'{p}.4', hid)
                conv(f'{p}.6', c, hid, 1)
                _bn(sd, f'{p}.7', c)
            cin, idx = c, idx + 1
    conv('conv.0', 1280, 320, 1)
    _bn(sd, 'conv.1', 1280)
    sd['classifier.weight'] = torch.randn(1000, 1280)
    sd['classifier.bias'] = torch.randn(1000)
    return sd


def _resnet18_official():
    """KDEP's resnet18 (deep_base=False, BasicBlock [2, 2, 2, 2], fc 1000)
    has torchvision's names and shapes."""
    import torchvision
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=1000).eval()
    for m in net.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(.5, 2.)
    return net


def test_kdep_resnet18_loads_exactly_and_computes_the_same(conv):
    from mmpretrain.models import ImageClassifier, ResNet
    net = _resnet18_official()
    emb = {'emb.weight': torch.randn(2048, 512), 'emb.bias': torch.randn(2048)}
    emb.update({f'l2norm.{k}': torch.randn(2048)
                for k in ('weight', 'bias', 'running_mean', 'running_var')})
    ckpt = _robustness(net.state_dict(), emb)
    state, arch = conv['kdep_official_to_mmpretrain'].convert(
        ckpt['model'], keep_head=True)
    assert arch == 'resnet'
    backbone = ResNet(depth=18)
    _load_exactly(backbone, _bare(state))
    clf = ImageClassifier(
        backbone=dict(type='mmpretrain.ResNet', depth=18),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=1000,
                  in_channels=512)).eval()
    _load_exactly(clf, state)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = net(x)
        got = clf(x, mode='tensor')
    assert torch.allclose(got, want, atol=1e-4, rtol=1e-4)


def test_kdep_mobilenetv2_loads_exactly(conv):
    from mmpretrain.models import MobileNetV2
    official = tonylins_mobilenetv2_state()
    state, arch = conv['kdep_official_to_mmpretrain'].convert(
        _robustness(official)['model'])
    assert arch == 'mobilenetv2'
    assert not any(k.startswith('head.') for k in state)
    _load_exactly(MobileNetV2(widen_factor=1.0), _bare(state))
    # the values travel with their names
    assert state['backbone.conv1.conv.weight'] is official[
        'features.0.0.weight']
    assert state['backbone.layer1.0.conv.1.conv.weight'] is official[
        'features.1.conv.3.weight']
    assert state['backbone.layer7.0.conv.2.bn.running_var'] is official[
        'features.17.conv.7.running_var']
    assert state['backbone.conv2.bn.weight'] is official['conv.1.weight']


def test_kdep_converter_command_and_pickled_args(conv, tmp_path, capsys):
    from kdep_mm.utils.checkpoint import safe_torch_load
    src, dst = tmp_path / 'checkpoint.pt.latest', tmp_path / 'r18.pth'
    ckpt = _robustness(_resnet18_official().state_dict())
    ckpt['args'] = argparse.Namespace(arch='resnet18_feat_pre_relu')
    torch.save(ckpt, str(src))
    tool = conv['kdep_official_to_mmpretrain']
    with pytest.raises(SystemExit, match='--trust-pickle'):
        tool.main([str(src), str(dst)])
    tool.main([str(src), str(dst), '--trust-pickle'])
    assert f'-> {dst}: resnet, ' in capsys.readouterr().out
    out = safe_torch_load(str(dst))
    assert out['meta']['arch'] == 'resnet'
    from mmpretrain.models import ResNet
    _load_exactly(ResNet(depth=18), _bare(out['state_dict']))


# ----------------------------------------------------------------- DMAE
def _block(sd, p, dim, hidden):
    for n in ('norm1', 'norm2'):
        sd[f'{p}.{n}.weight'] = torch.randn(dim)
        sd[f'{p}.{n}.bias'] = torch.randn(dim)
    sd[f'{p}.attn.qkv.weight'] = torch.randn(3 * dim, dim)
    sd[f'{p}.attn.qkv.bias'] = torch.randn(3 * dim)
    sd[f'{p}.attn.proj.weight'] = torch.randn(dim, dim)
    sd[f'{p}.attn.proj.bias'] = torch.randn(dim)
    sd[f'{p}.mlp.fc1.weight'] = torch.randn(hidden, dim)
    sd[f'{p}.mlp.fc1.bias'] = torch.randn(hidden)
    sd[f'{p}.mlp.fc2.weight'] = torch.randn(dim, hidden)
    sd[f'{p}.mlp.fc2.bias'] = torch.randn(dim)


def dmae_vit_b_state(finetuned: bool):
    """DMAE ViT-B/16 at 224: mae_vit_base_patch16_dec512d8b with the fc-1layer
    projection head of pretrain.sh (768 -> 1024), or the fine-tuned
    models_vit.vit_base_patch16(global_pool=True)."""
    d, sd = 768, {}
    sd['patch_embed.proj.weight'] = torch.randn(d, 3, 16, 16)
    sd['patch_embed.proj.bias'] = torch.randn(d)
    sd['cls_token'] = torch.randn(1, 1, d)
    sd['pos_embed'] = torch.randn(1, 197, d)
    for i in range(12):
        _block(sd, f'blocks.{i}', d, 4 * d)
    if finetuned:
        sd['fc_norm.weight'], sd['fc_norm.bias'] = torch.randn(d), torch.randn(d)
        sd['head.weight'], sd['head.bias'] = (torch.randn(1000, d),
                                              torch.randn(1000))
        return sd
    sd['norm.weight'], sd['norm.bias'] = torch.randn(d), torch.randn(d)
    sd['decoder_embed.weight'] = torch.randn(512, d)
    sd['decoder_embed.bias'] = torch.randn(512)
    sd['mask_token'] = torch.randn(1, 1, 512)
    sd['decoder_pos_embed'] = torch.randn(1, 197, 512)
    for j in range(8):
        _block(sd, f'decoder_blocks.{j}', 512, 2048)
    sd['decoder_norm.weight'] = torch.randn(512)
    sd['decoder_norm.bias'] = torch.randn(512)
    sd['decoder_pred.weight'] = torch.randn(16 * 16 * 3, 512)
    sd['decoder_pred.bias'] = torch.randn(16 * 16 * 3)
    sd['aligned_feature_projection_heads.0.weight'] = torch.randn(1024, d)
    sd['aligned_feature_projection_heads.0.bias'] = torch.randn(1024)
    return sd


@pytest.mark.slow
def test_dmae_pretrained_vit_b_loads_exactly(conv):
    from mmpretrain.models import VisionTransformer
    official = dmae_vit_b_state(finetuned=False)
    state, kind = conv['dmae_official_to_mmpretrain'].convert(official)
    assert kind == 'pretrained'
    assert not any('decoder' in k or 'mask_token' in k or 'aligned' in k
                   for k in state)
    vit = VisionTransformer(arch='b', img_size=224, patch_size=16)
    _load_exactly(vit, _bare(state))
    assert state['backbone.ln1.weight'] is official['norm.weight']
    assert state['backbone.layers.11.ffn.layers.1.weight'] is official[
        'blocks.11.mlp.fc2.weight']
    assert torch.equal(vit.layers[3].attn.qkv.weight,
                       official['blocks.3.attn.qkv.weight'])


@pytest.mark.slow
def test_dmae_finetuned_vit_b_loads_exactly_with_its_head(conv):
    from mmpretrain.models import ImageClassifier
    official = dmae_vit_b_state(finetuned=True)
    state, kind = conv['dmae_official_to_mmpretrain'].convert(
        {'module.' + k: v for k, v in official.items()}, keep_head=True)
    assert kind == 'finetuned'
    clf = ImageClassifier(
        backbone=dict(type='mmpretrain.VisionTransformer', arch='b',
                      img_size=224, patch_size=16, out_type='avg_featmap',
                      final_norm=False),
        head=dict(type='mmpretrain.VisionTransformerClsHead',
                  num_classes=1000, in_channels=768))
    _load_exactly(clf, state)
    assert state['backbone.ln2.weight'] is official['fc_norm.weight']
    assert state['head.layers.head.weight'] is official['head.weight']


def test_converters_refuse_other_checkpoints(conv):
    with pytest.raises(SystemExit, match='not a KDEP'):
        conv['kdep_official_to_mmpretrain'].convert({'x.weight': 1})
    with pytest.raises(SystemExit, match='not a DMAE'):
        conv['dmae_official_to_mmpretrain'].convert({'x.weight': 1})
