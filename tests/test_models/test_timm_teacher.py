"""Teachers from timm through mmpretrain's TimmClassifier (configs/timm/):
the pre-ReLU feature capture of a timm ResNet, a local checkpoint with
timm's keys loaded strictly, and a tiny KDEP run. Skipped without timm
(``pip install --no-deps timm``: its own requirements are only for
downloading weights)."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers.paths import REPO

timm = pytest.importorskip('timm')

from helpers.launch import tool_env  # noqa: E402
from tiny_image_folder import make_image_folder  # noqa: E402

TINY = osp.join(REPO, 'configs', 'timm', 'tiny_timm_kdep_synthetic.py')
R50 = osp.join(REPO, 'configs', 'timm', 'timm-resnet50_to_r18_in1k.py')


def _build(config, **model_overrides):
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    import kdep_mm  # noqa: F401
    cfg = Config.fromfile(config)
    cfg.model.update(model_overrides)
    init_default_scope('mmpretrain')
    return MODELS.build(cfg.model).eval()


def _tiny_timm(seed=1):
    torch.manual_seed(seed)
    return timm.create_model('resnet18', pretrained=False, num_classes=2,
                             channels=(8, 16, 32, 64), stem_width=8)


def _pre_relu_map(timm_model, block, x):
    seen = {}

    def hook(module, args):  # returns None: the input is not replaced
        seen['x'] = args[0].clone()

    act = block.act3 if hasattr(block, 'act3') else block.act2
    handle = act.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            post = timm_model.forward_features(x)
    finally:
        handle.remove()
    return seen['x'], post


@pytest.mark.parametrize('config,block,dim,size', [
    (TINY, lambda m: m.layer4[1], 64, 32),
    (R50, lambda m: m.layer4[2], 2048, 64),
])
def test_teacher_feature_is_timm_resnets_pre_relu(config, block, dim, size):
    model = _build(config, teacher_ckpt=None)
    assert type(model.teacher).__name__ == 'TimmClassifier'
    timm_model = model.teacher.model
    # timm zero-initialises the last BN of each block (the residual branch
    # is then 0 and the sum >= 0): trained-like BN values instead
    torch.manual_seed(0)
    for m in timm_model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.normal_()
            m.bias.data.normal_()
    x = torch.randn(2, 3, size, size)
    feats = model.teacher_features(x)
    assert feats.shape == (2, dim)
    pre, post = _pre_relu_map(timm_model, block(timm_model), x)
    assert torch.allclose(feats, pre.mean((2, 3)), atol=1e-6)
    assert (pre < 0).any()  # before the ReLU
    assert torch.allclose(torch.relu(pre), post, atol=1e-6)


def test_local_timm_checkpoint_loads_strictly(tmp_path):
    src = _tiny_timm(seed=3)
    ckpt = tmp_path / 'timm_resnet18_tiny.pth'
    torch.save(src.state_dict(), str(ckpt))  # timm's own keys
    model = _build(TINY, teacher_ckpt=str(ckpt))
    got = model.teacher.model.state_dict()
    for k, v in src.state_dict().items():
        assert torch.equal(got[k], v), k
    # another timm architecture is refused, naming the config key
    other = tmp_path / 'other.pth'
    torch.save(timm.create_model('resnet18', num_classes=2).state_dict(),
               str(other))
    with pytest.raises(ValueError, match='model.teacher_ckpt: .* does not '
                       'match the teacher architecture'):
        _build(TINY, teacher_ckpt=str(other))


@pytest.mark.slow
def test_tiny_kdep_run_with_a_timm_teacher(tmp_path):
    data = tmp_path / 'data'
    make_image_folder(str(data), num_classes=2, per_class=8)
    ckpt = tmp_path / 'teacher.pth'
    torch.save(_tiny_timm(seed=5).state_dict(), str(ckpt))
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'), TINY,
         '--work-dir', str(tmp_path / 'run'), '--cfg-options',
         'train_cfg.max_epochs=1', f'model.teacher_ckpt={ckpt}'],
        cwd=REPO, env=tool_env(data), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert 'aligner basis fitted on 16 teacher features' in proc.stdout
    assert 'Epoch(train) [1][4/4]' in proc.stdout.replace('  ', ' ')
    assert (tmp_path / 'run' / 'epoch_1.pth').exists()
