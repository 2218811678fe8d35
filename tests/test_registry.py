"""kdep_mm's registries: children of mmengine's roots with scope 'kdep_mm',
lazy import through ``locations``, and cross-scope builds from mmdet and
mmseg configs with ``custom_imports``."""
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope

import kdep_mm
from kdep_mm import registry as kreg

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ALL = [
    'RUNNERS', 'RUNNER_CONSTRUCTORS', 'LOOPS', 'HOOKS', 'LOG_PROCESSORS',
    'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS', 'MODELS', 'MODEL_WRAPPERS',
    'WEIGHT_INITIALIZERS', 'TASK_UTILS', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'METRICS', 'EVALUATOR',
    'VISUALIZERS', 'VISBACKENDS'
]


@pytest.mark.parametrize('name', ALL)
def test_child_of_mmengine_root_with_scope_and_locations(name):
    import mmengine.registry as root
    reg = getattr(kreg, name)
    assert reg.scope == 'kdep_mm'
    assert reg.parent is getattr(root, name)
    assert reg.parent.children['kdep_mm'] is reg
    assert reg._locations and all(
        loc.startswith('kdep_mm.') for loc in reg._locations)


def test_lazy_import_through_locations_without_fallback_warning():
    """In a fresh interpreter, only ``import kdep_mm`` (which does not import
    the models) is needed: the registry imports kdep_mm.models itself."""
    code = textwrap.dedent('''
        import warnings, sys, logging, io
        import kdep_mm
        assert 'kdep_mm.models' not in sys.modules
        from mmengine.logging import MMLogger
        stream = io.StringIO()
        logger = MMLogger.get_current_instance()
        logger.addHandler(logging.StreamHandler(stream))
        from mmengine.registry import MODELS, HOOKS, METRICS
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            a = MODELS.build(dict(type='kdep_mm.SVDAligner',
                                  student_channels=2, teacher_channels=4))
            h = HOOKS.build(dict(type='kdep_mm.FitBasisHook'))
            m = METRICS.build(dict(type='kdep_mm.DistillLossMetric'))
        assert type(a).__name__ == 'SVDAligner'
        assert 'kdep_mm.models' in sys.modules
        bad = [str(w.message) for w in caught
               if 'registry' in str(w.message) or 'kdep_mm' in str(w.message)]
        assert not bad, bad
        log = stream.getvalue()
        assert 'Failed to search registry' not in log, log
        assert 'Failed to import' not in log, log
        print('OK')
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'OK' in out.stdout


def test_register_all_modules_sets_default_scope():
    kdep_mm.register_all_modules(init_default_scope=True)
    assert DefaultScope.get_current_instance().scope_name == 'kdep_mm'
    for name in ('KDEPDistiller', 'SVDAligner', 'CIFARResNet', 'KDLoss'):
        assert name in kreg.MODELS.module_dict, name
    assert 'FitBasisHook' in kreg.HOOKS.module_dict
    assert 'DistillLossMetric' in kreg.METRICS.module_dict
    # plain names resolve in kdep_mm under its own default scope
    from mmengine.registry import MODELS
    assert type(MODELS.build(dict(type='SVDAligner', student_channels=2,
                                  teacher_channels=4))).__name__ == \
        'SVDAligner'


def _write(tmp_path, text):
    path = osp.join(tmp_path, 'cfg.py')
    with open(path, 'w') as f:
        f.write(textwrap.dedent(text))
    return path


@pytest.mark.parametrize('base', [
    'mmdet::retinanet/retinanet_r50_fpn_1x_coco.py',
    'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
])
def test_kdep_backbone_builds_inside_mmdet_scope(tmp_path, base):
    path = _write(tmp_path, f'''
        _base_ = '{base}'
        custom_imports = dict(imports=['kdep_mm'], allow_failed_imports=False)
        model = dict(
            backbone=dict(_delete_=True, type='kdep_mm.CIFARResNet',
                          depth=20, out_indices=(0, 1, 2)),
            neck=dict(in_channels=[16, 32, 64], start_level=0))
    ''')
    cfg = Config.fromfile(path)  # imports custom_imports
    assert cfg.default_scope == 'mmdet'
    init_default_scope('mmdet')
    from mmdet.registry import MODELS as DET_MODELS
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    det = DET_MODELS.build(cfg.model)
    assert type(det.backbone).__name__ == 'CIFARResNet'
    assert type(det.backbone).__module__.startswith('kdep_mm.')
    det.init_weights()
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64),
                                         pad_shape=(64, 64),
                                         ori_shape=(64, 64),
                                         scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[4., 4., 40., 40.]]), labels=torch.tensor([1]))
    data = det.data_preprocessor(
        dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)],
             data_samples=[sample]), True)
    losses = det(**data, mode="loss")
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(v)
                for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)


def test_kdep_backbone_builds_inside_mmseg_scope(tmp_path):
    path = _write(tmp_path, '''
        _base_ = 'mmseg::_base_/models/fcn_r50-d8.py'
        default_scope = 'mmseg'
        custom_imports = dict(imports=['kdep_mm'], allow_failed_imports=False)
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            data_preprocessor=dict(size=(64, 64)),
            pretrained=None,
            backbone=dict(_delete_=True, type='kdep_mm.CIFARResNet',
                          depth=20, out_indices=(1, 2)),
            decode_head=dict(in_channels=64, in_index=1, channels=32,
                             num_classes=11, norm_cfg=norm_cfg),
            auxiliary_head=dict(in_channels=32, in_index=0, channels=16,
                                num_classes=11, norm_cfg=norm_cfg))
    ''')
    cfg = Config.fromfile(path)
    init_default_scope('mmseg')
    from mmseg.registry import MODELS as SEG_MODELS
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData
    seg = SEG_MODELS.build(cfg.model)
    assert type(seg).__name__ == 'EncoderDecoder'
    assert type(seg.backbone).__name__ == 'CIFARResNet'
    seg.init_weights()
    sample = SegDataSample(metainfo=dict(img_shape=(64, 64),
                                         pad_shape=(64, 64),
                                         ori_shape=(64, 64)))
    sample.gt_sem_seg = PixelData(
        data=torch.randint(0, 11, (1, 64, 64), dtype=torch.long))
    data = seg.data_preprocessor(
        dict(inputs=[torch.randint(0, 255, (3, 64, 64), dtype=torch.uint8)],
             data_samples=[sample]), True)
    losses = seg(**data, mode="loss")
    assert torch.isfinite(losses['decode.loss_ce'])
    assert 'aux.loss_ce' in losses
