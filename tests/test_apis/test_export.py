"""Export of the student backbone and loading it downstream.

A distillation checkpoint is fabricated from a randomly initialised
mmpretrain ResNet-18 (with perturbed batch-norm statistics, so that a wrong
load would change the outputs), exported, and loaded back through the
downstream configs' ``init_cfg`` into an mmpretrain classifier, an mmdet
detector and an mmseg segmentor.
"""
import copy
import os
import os.path as osp
import subprocess
import sys
import uuid

import pytest
import torch
from helpers.paths import REPO
from helpers.logs import MessageCapture

CFG_DIR = osp.join(REPO, 'configs', 'downstream')

STUDENT_CFG_TEXT = """
model = dict(
    type='KDEPDistiller',
    student=dict(
        type='mmpretrain.ResNet',
        depth=18,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True)),
    teacher=dict(type='mmpretrain.ResNet', depth=50),
    aligner=dict(type='SVDAligner', out_channels=512))
work_dir = 'work_dirs/kdep_r18'
"""


def _make_student():
    from mmpretrain.models import ResNet
    torch.manual_seed(0)
    student = ResNet(depth=18, out_indices=(0, 1, 2, 3))
    student.init_weights()
    with torch.no_grad():
        for name, p in student.named_parameters():
            p.add_(0.05 * torch.randn_like(p))
        for name, b in student.named_buffers():
            if name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn_like(b))
            elif name.endswith('running_var'):
                b.copy_(0.5 + torch.rand_like(b))
            elif name.endswith('num_batches_tracked'):
                b.fill_(123)
    # mmpretrain's ResNet.train() returns None, so no `return student.eval()`
    student.eval()
    return student


def _message_hub_state():
    """A Runner checkpoint's message hub (HistoryBuffers pickle functions
    through ``getattr``, which safe_torch_load must accept)."""
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance(f'export-test-{uuid.uuid4().hex}')
    hub.update_scalar('train/loss', 1.5)
    hub.update_scalar('train/lr', 0.1)
    return hub.state_dict()


def _fake_distill_ckpt(student):
    sd = {'student.' + k: v.clone() for k, v in student.state_dict().items()}
    sd['aligner.mu'] = torch.randn(512)
    sd['aligner.sigma'] = torch.rand(512)
    sd['aligner.proj'] = torch.randn(512, 2048)
    sd['student_head.fc.weight'] = torch.randn(10, 512)
    sd['projector.0.weight'] = torch.randn(512, 512)
    return {
        'meta': {
            'cfg': STUDENT_CFG_TEXT,
            'epoch': 3,
            'iter': 300,
            'seed': 0,
            'mmengine_version': '0.10.7'
        },
        'state_dict': sd,
        'message_hub': _message_hub_state(),
        'optimizer': {
            'state': {},
            'param_groups': [{
                'lr': 0.1,
                'params': [0, 1]
            }]
        },
    }


@pytest.fixture(scope='module')
def student():
    return _make_student()


@pytest.fixture(scope='module')
def distill_ckpt(tmp_path_factory, student):
    path = tmp_path_factory.mktemp('distill') / 'epoch_3.pth'
    torch.save(_fake_distill_ckpt(student), str(path))
    return str(path)


@pytest.fixture(scope='module')
def exported(tmp_path_factory, distill_ckpt):
    from kdep_mm.apis.export import export_student
    dst = str(tmp_path_factory.mktemp('export') / 'student_backbone.pth')
    info = export_student(distill_ckpt, dst)
    return dst, info


@pytest.fixture
def log_capture():
    """A fresh current MMLogger with a handler recording every message."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_instance(f'kdep-export-test-{uuid.uuid4().hex}',
                                   log_level='DEBUG')
    cap = MessageCapture()
    logger.addHandler(cap)
    yield cap
    logger.removeHandler(cap)


def _assert_no_mismatch_logged(cap):
    text = '\n'.join(cap.messages)
    assert 'load backbone. in model from: ' in text, (
        'the Pretrained init did not run: ' + text[-2000:])
    for needle in ('missing keys', 'unexpected key', 'do not match',
                   'size mismatch'):
        assert needle not in text, text


def _assert_backbone_equals_student(backbone, student, exported_sd,
                                    input_size=64):
    bsd = backbone.state_dict()
    keys = {k[len('backbone.'):] for k in exported_sd}
    assert set(bsd) == keys, (
        f'missing: {sorted(keys - set(bsd))[:5]} '
        f'unexpected: {sorted(set(bsd) - keys)[:5]}')
    ssd = student.state_dict()
    for k, v in bsd.items():
        assert torch.equal(v, ssd[k]), k
    x = torch.randn(2, 3, input_size, input_size)
    backbone.eval()
    student.eval()
    with torch.no_grad():
        got = backbone(x)
        want = student(x)
    got = got if isinstance(got, (tuple, list)) else (got, )
    # compare the last stage (every downstream config outputs it)
    assert torch.allclose(got[-1], want[-1], atol=1e-5)


def _cfg(name, pretrained):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    cfg.model.backbone.init_cfg.checkpoint = pretrained
    return cfg


def _build_model(cfg):
    """Build ``cfg.model`` the way mmengine's Runner does."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS, init_default_scope
    import kdep_mm  # noqa: F401  (custom_imports)
    init_default_scope(cfg.default_scope)
    model_cfg = copy.deepcopy(cfg.model)
    if cfg.get('data_preprocessor') is not None:
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    return revert_sync_batchnorm(MODELS.build(model_cfg))


# ---------------------------------------------------------------- export


def test_export_content(exported, student, distill_ckpt):
    from kdep_mm.apis.export import file_sha256, verify_exported
    from kdep_mm.version import __version__
    dst, info = exported
    ckpt = verify_exported(dst)
    sd, meta = ckpt['state_dict'], ckpt['meta']
    ssd = student.state_dict()
    assert set(sd) == {'backbone.' + k for k in ssd}
    assert all(torch.equal(sd['backbone.' + k], v) for k, v in ssd.items())
    assert not any(k.startswith(('backbone.aligner', 'aligner', 'projector',
                                 'student_head')) for k in sd)
    n_params = sum(p.numel() for p in student.parameters())
    assert meta['num_params'] == info['num_params'] == n_params
    assert meta['num_tensors'] == info['num_tensors'] == len(ssd)
    assert meta['kdep_mm_version'] == __version__
    assert meta['source'] == osp.abspath(distill_ckpt)
    assert meta['source_sha256'] == file_sha256(distill_ckpt)
    assert meta['student_cfg'] == dict(
        type='mmpretrain.ResNet',
        depth=18,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='BN', requires_grad=True))
    assert type(meta['student_cfg']) is dict
    assert meta['source_epoch'] == 3 and meta['source_iter'] == 300
    assert info['sha256'] == file_sha256(dst)
    # loadable with torch's strict weights-only unpickler, no allow-list
    torch.load(dst, map_location='cpu', weights_only=True)
    # no leftover temporary file next to it
    assert os.listdir(osp.dirname(dst)) == ['student_backbone.pth']


def test_export_custom_prefixes(tmp_path, student):
    from kdep_mm.apis.export import export_student, verify_exported
    src = str(tmp_path / 'bare.pth')
    # a bare state dict (no 'state_dict' / 'meta') under another prefix
    torch.save({'architecture.backbone.' + k: v
                for k, v in student.state_dict().items()}, src)
    dst = str(tmp_path / 'out' / 'bare_backbone.pth')
    info = export_student(src, dst, student_prefix='architecture.backbone',
                          out_prefix='')
    assert info['student_cfg'] is None
    sd = verify_exported(dst)['state_dict']
    assert set(sd) == set(student.state_dict())


def test_student_cfg_from_runner_pretty_text(tmp_path, student):
    """The Runner stores ``cfg.pretty_text`` (yapf-formatted) in the meta."""
    from mmengine.config import Config

    from kdep_mm.apis.export import export_student
    backbone = dict(type='mmpretrain.ResNet', depth=18, out_indices=(3, ))
    cfg = Config(
        dict(
            default_scope='kdep_mm',
            model=dict(
                type='Wrapper',
                architecture=dict(backbone=backbone, neck=None))))
    src = str(tmp_path / 'runner.pth')
    torch.save(
        {
            'meta': {
                'cfg': cfg.pretty_text
            },
            'state_dict': {
                'architecture.backbone.' + k: v
                for k, v in student.state_dict().items()
            }
        }, src)
    info = export_student(src, str(tmp_path / 'b.pth'),
                          student_prefix='architecture.backbone.')
    assert info['student_cfg'] == backbone
    # an unparsable config is only a warning: the weights still export
    torch.save({'meta': {'cfg': 'model = dict(('},
                'state_dict': {'student.w': torch.zeros(2)}}, src)
    with pytest.warns(UserWarning, match='student config'):
        info = export_student(src, str(tmp_path / 'c.pth'))
    assert info['student_cfg'] is None and info['num_params'] == 2


def test_export_errors(tmp_path, distill_ckpt, student):
    from kdep_mm.apis.export import ExportError, export_student
    dst = str(tmp_path / 'x.pth')
    with pytest.raises(FileNotFoundError, match='not found'):
        export_student(str(tmp_path / 'nope.pth'), dst)
    with pytest.raises(ExportError) as e:
        export_student(distill_ckpt, dst, student_prefix='teacher.')
    msg = str(e.value)
    assert 'teacher.' in msg and "'student.'" in msg and "'aligner.'" in msg
    assert 'student_head.' in msg
    bad = tmp_path / 'garbage.pth'
    bad.write_bytes(b'this is not a checkpoint' * 10)
    with pytest.raises(ExportError, match='not a readable checkpoint'):
        export_student(str(bad), dst)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(open(distill_ckpt, 'rb').read()[:5000])
    with pytest.raises(ExportError, match='not a readable checkpoint'):
        export_student(str(truncated), dst)
    tensor_file = str(tmp_path / 'tensor.pth')
    torch.save(torch.zeros(3), tensor_file)
    with pytest.raises(ExportError, match='not a checkpoint dict'):
        export_student(tensor_file, dst)
    with pytest.raises(ExportError, match='overwrite the source'):
        export_student(distill_ckpt, distill_ckpt)
    assert not osp.exists(dst)


def test_verify_exported_rejects(tmp_path, exported):
    from kdep_mm.apis.export import ExportError, verify_exported
    dst, _ = exported
    ckpt = torch.load(dst, weights_only=True)
    with pytest.raises(FileNotFoundError):
        verify_exported(str(tmp_path / 'nope.pth'))
    bad = copy.deepcopy(ckpt)
    bad['state_dict']['student.conv1.weight'] = torch.zeros(1)
    torch.save(bad, str(tmp_path / 'a.pth'))
    with pytest.raises(ExportError, match='not under the prefix'):
        verify_exported(str(tmp_path / 'a.pth'))
    bad = copy.deepcopy(ckpt)
    del bad['meta']['source_sha256']
    torch.save(bad, str(tmp_path / 'b.pth'))
    with pytest.raises(ExportError, match='meta lacks'):
        verify_exported(str(tmp_path / 'b.pth'))
    bad = copy.deepcopy(ckpt)
    bad['meta']['num_params'] += 1
    torch.save(bad, str(tmp_path / 'c.pth'))
    with pytest.raises(ExportError, match='num_params'):
        verify_exported(str(tmp_path / 'c.pth'))
    torch.save(ckpt['state_dict'], str(tmp_path / 'd.pth'))
    with pytest.raises(ExportError, match='not an exported student'):
        verify_exported(str(tmp_path / 'd.pth'))


def test_cli(tmp_path, distill_ckpt, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import export_student as cli
    finally:
        sys.path.pop(0)
    dst = str(tmp_path / 'cli' / 'student_backbone.pth')
    assert cli.main([distill_ckpt, dst]) == 0
    out = capsys.readouterr().out
    from kdep_mm.apis.export import file_sha256
    assert file_sha256(dst) in out
    ckpt = torch.load(dst, weights_only=True)
    assert f'tensors:  {len(ckpt["state_dict"])}' in out
    assert f'{ckpt["meta"]["num_params"]:,}' in out
    assert cli.main([distill_ckpt, dst, '--student-prefix', 'nope.']) == 1
    err = capsys.readouterr().err
    assert 'error:' in err and "'aligner.'" in err
    assert cli.main([str(tmp_path / 'missing.pth'), dst]) == 1
    assert 'not found' in capsys.readouterr().err


def test_cli_subprocess(tmp_path, distill_ckpt):
    dst = str(tmp_path / 'student_backbone.pth')
    res = subprocess.run(
        [sys.executable,
         osp.join(REPO, 'tools', 'export_student.py'), distill_ckpt, dst,
         '--out-prefix', 'backbone.'],
        capture_output=True, text=True, cwd=str(tmp_path), timeout=120)
    assert res.returncode == 0, res.stderr
    assert 'sha256' in res.stdout and osp.isfile(dst)


def test_sync_pretrained():
    from mmengine.config import Config
    from kdep_mm.utils.pretrained import sync_pretrained
    cfg = Config.fromfile(
        osp.join(CFG_DIR, 'mmdet', 'retinanet_r18_fpn_bccd.py'))
    assert cfg.model.backbone.init_cfg.checkpoint == cfg.pretrained
    cfg.merge_from_dict({'pretrained': 'other.pth'})
    # a top-level override alone does not reach the init_cfg ...
    assert cfg.model.backbone.init_cfg.checkpoint != 'other.pth'
    assert sync_pretrained(cfg)
    assert cfg.model.backbone.init_cfg.checkpoint == 'other.pth'
    assert not sync_pretrained(cfg)


# -------------------------------------------------------- loading downstream


@pytest.mark.parametrize('config', [
    'mmpretrain/r18_hymenoptera_finetune.py',
    'mmdet/retinanet_r18_fpn_coco.py'
], ids=['mmpretrain_classifier', 'mmdet_detector'])
def test_load_into_downstream_model(exported, student, log_capture, config):
    dst, _ = exported
    model = _build_model(_cfg(config, dst))
    model.init_weights()
    _assert_no_mismatch_logged(log_capture)
    sd = torch.load(dst, weights_only=True)['state_dict']
    _assert_backbone_equals_student(model.backbone, student, sd)


def test_load_into_mmseg_segmentor(exported, student, log_capture):
    dst, _ = exported
    cfg = _cfg('mmseg/fcn_r18_camvid.py', dst)
    model = _build_model(cfg)
    model.init_weights()
    _assert_no_mismatch_logged(log_capture)
    sd = torch.load(dst, weights_only=True)['state_dict']
    # the dilated backbone has the same weights but other outputs; compare
    # the weights, then the outputs of a non-dilated copy built from the
    # same config with the same checkpoint
    bsd = model.backbone.state_dict()
    assert set(bsd) == {k[len('backbone.'):] for k in sd}
    assert all(torch.equal(v, student.state_dict()[k])
               for k, v in bsd.items())
    from mmpretrain.models import ResNet
    plain_cfg = copy.deepcopy(cfg.model.backbone)
    for k in ('type', 'strides', 'dilations'):
        plain_cfg.pop(k)
    plain = ResNet(**plain_cfg)
    plain.init_weights()
    _assert_backbone_equals_student(plain, student, sd)


def test_mismatch_is_detected(exported, log_capture):
    """Negative control: the log check sees a mismatching load."""
    from mmpretrain.models import ResNet
    dst, _ = exported
    r34 = ResNet(
        depth=34,
        init_cfg=dict(type='Pretrained', checkpoint=dst, prefix='backbone.'))
    r34.init_weights()
    text = '\n'.join(log_capture.messages)
    assert 'missing keys' in text
