"""The downstream configs build with the real toolboxes and train.

Every config in ``configs/downstream`` is turned into an mmengine Runner
(model, hooks, visualizer, optimizer wrapper), its backbone initialised from
an exported student. Where real data is at hand (hymenoptera, tiny COCO,
BCCD, CamVid) one training iteration runs on 2 images through the config's
own train pipeline and optimizer, followed by one validation step scored by
the config's evaluator. Image scales are reduced to keep this fast on CPU.
"""
import copy
import math
import os.path as osp
import uuid

import pytest
import torch
from helpers.paths import REPO
from helpers.logs import MessageCapture

CFG_DIR = osp.join(REPO, 'configs', 'downstream')

CONFIGS = [
    'mmpretrain/r18_cifar100_finetune.py',
    'mmpretrain/r18_hymenoptera_finetune.py',
    'mmdet/retinanet_r18_fpn_coco.py',
    'mmdet/retinanet_r18_fpn_voc.py',
    'mmdet/retinanet_r18_fpn_bccd.py',
    'mmseg/fcn_r18_cityscapes.py',
    'mmseg/pspnet_r18_ade20k.py',
    'mmseg/fcn_r18_camvid.py',
]


@pytest.fixture(scope='module')
def student_ckpt(tmp_path_factory):
    """An exported student (random ResNet-18 weights)."""
    from mmpretrain.models import ResNet

    from kdep_mm.apis.export import export_student
    torch.manual_seed(0)
    student = ResNet(depth=18, out_indices=(0, 1, 2, 3))
    student.init_weights()
    root = tmp_path_factory.mktemp('student')
    src = str(root / 'distill.pth')
    torch.save(
        {
            'state_dict': {
                **{'student.' + k: v
                   for k, v in student.state_dict().items()},
                'aligner.mu': torch.zeros(512),
            },
            'meta': {
                'cfg': "model = dict(student=dict(type='mmpretrain.ResNet', "
                'depth=18))\n'
            }
        }, src)
    dst = str(root / 'student_backbone.pth')
    export_student(src, dst)
    return dst, student.state_dict()


def _load_cfg(name, pretrained, work_dir):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(CFG_DIR, name))
    assert 'custom_imports' not in cfg  # the kdep_mm. prefix suffices
    assert cfg.pretrained.endswith('student_backbone.pth')
    init_cfg = cfg.model.backbone.init_cfg
    assert init_cfg == dict(
        type='Pretrained', checkpoint=cfg.pretrained, prefix='backbone.')
    assert cfg.model.backbone.type == 'mmpretrain.ResNet'
    assert cfg.model.backbone.depth == 18
    cfg.pretrained = pretrained
    init_cfg.checkpoint = pretrained
    cfg.work_dir = str(work_dir)
    cfg.launcher = 'none'
    if cfg.get('visualizer'):
        cfg.visualizer.name = f'vis-{uuid.uuid4().hex}'
    return cfg


def _build_runner(cfg):
    from mmengine.logging import MMLogger
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    cap = MessageCapture()
    MMLogger.get_current_instance().addHandler(cap)
    runner.model.init_weights()
    text = '\n'.join(cap.messages)
    assert 'load backbone. in model from: ' in text, text[-2000:]
    for needle in ('missing keys', 'unexpected key', 'do not match',
                   'size mismatch'):
        assert needle not in text, text
    return runner


def _check_backbone(runner, student_sd):
    bsd = runner.model.backbone.state_dict()
    assert set(bsd) == set(student_sd)
    for k, v in bsd.items():
        assert torch.equal(v, student_sd[k]), k


# ------------------------------------------------- one real training step


def _set_in_pipeline(pipeline, type_, **kwargs):
    found = False
    for t in pipeline:
        if t['type'] == type_:
            t.update(kwargs)
            found = True
    assert found, f'{type_} not in the pipeline'


def _datasets(cfg, data_root):
    train = cfg.train_dataloader.dataset
    val = cfg.val_dataloader.dataset
    train.data_root = data_root
    val.data_root = data_root
    return train, val


def _override_hymenoptera(cfg):
    from shared_data import unpack_shared
    train, val = _datasets(cfg, unpack_shared('hymenoptera.tar'))
    _set_in_pipeline(train.pipeline, 'RandomResizedCrop', scale=96)
    _set_in_pipeline(val.pipeline, 'ResizeEdge', scale=110)
    _set_in_pipeline(val.pipeline, 'CenterCrop', crop_size=96)


def _override_coco(cfg):
    from shared_data import unpack_shared
    root = unpack_shared('tiny_coco.tar')
    train, val = _datasets(cfg, root + '/')
    cfg.val_evaluator.ann_file = osp.join(
        root, 'annotations', 'instances_val2017.json')
    _set_in_pipeline(train.pipeline, 'Resize', scale=(128, 128))
    _set_in_pipeline(val.pipeline, 'Resize', scale=(128, 128))
    # a random head scores every anchor ~0.01: keep some boxes to score
    cfg.model.test_cfg.score_thr = 0.0


def _override_bccd(cfg):
    from shared_data import unpack_shared
    train, val = _datasets(cfg, unpack_shared('bccd_voc.tar') + '/')
    _set_in_pipeline(train.pipeline, 'Resize', scale=(128, 128))
    _set_in_pipeline(val.pipeline, 'Resize', scale=(128, 128))
    cfg.model.test_cfg.score_thr = 0.0


def _override_camvid(cfg):
    from shared_data import unpack_shared
    train, val = _datasets(cfg, unpack_shared('camvid_jpeg.tar.gz'))
    _set_in_pipeline(train.pipeline, 'RandomResize', scale=(160, 120))
    _set_in_pipeline(train.pipeline, 'RandomCrop', crop_size=(96, 96))
    _set_in_pipeline(val.pipeline, 'Resize', scale=(160, 120))
    cfg.model.data_preprocessor.size = (96, 96)


TRAINABLE = {
    'mmpretrain/r18_hymenoptera_finetune.py': _override_hymenoptera,
    'mmdet/retinanet_r18_fpn_coco.py': _override_coco,
    'mmdet/retinanet_r18_fpn_bccd.py': _override_bccd,
    'mmseg/fcn_r18_camvid.py': _override_camvid,
}


def _head(model):
    for name in ('head', 'bbox_head', 'decode_head'):
        if hasattr(model, name):
            return getattr(model, name)
    raise AssertionError('no head')


@pytest.fixture
def fast_pretty_text(monkeypatch):
    """Skip yapf: Runner formats the config 3 times (~2 s each on CPU)."""
    from mmengine.config import Config
    monkeypatch.setattr(Config, 'pretty_text',
                        property(lambda self: self.text))


@pytest.mark.parametrize('name', CONFIGS)
def test_config(name, student_ckpt, tmp_path, fast_pretty_text):
    """Runner.from_cfg, init from the export, optimizer and schedulers;
    where data is at hand, one train step and one scored val step."""
    from mmengine.dataset import pseudo_collate
    from mmengine.evaluator import Evaluator
    from mmengine.optim import OptimWrapper
    from mmengine.registry import DATASETS, PARAM_SCHEDULERS
    pretrained, student_sd = student_ckpt
    cfg = _load_cfg(name, pretrained, tmp_path)
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                'val_evaluator', 'train_cfg', 'param_scheduler',
                'default_hooks', 'default_scope'):
        assert cfg.get(key) is not None, key
    if name in TRAINABLE:
        TRAINABLE[name](cfg)
    runner = _build_runner(cfg)
    model = runner.model
    _check_backbone(runner, student_sd)
    # no SyncBN left once the runner wrapped the model (non-distributed)
    assert not any(
        isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    assert isinstance(optim_wrapper, OptimWrapper)
    schedulers = cfg.param_scheduler
    schedulers = schedulers if isinstance(schedulers, list) else [schedulers]
    for sch in schedulers:
        PARAM_SCHEDULERS.build(
            copy.deepcopy(sch),
            default_args=dict(optimizer=optim_wrapper, epoch_length=10))
    if name not in TRAINABLE:
        return  # the dataset is not available offline

    torch.manual_seed(0)
    train_set = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(train_set) > 2
    batch = pseudo_collate([train_set[0], train_set[1]])
    head_before = [p.detach().clone() for p in _head(model).parameters()]
    model.train()
    log_vars = model.train_step(batch, optim_wrapper)
    loss = float(log_vars['loss'])
    assert math.isfinite(loss) and loss > 0, log_vars
    assert any(not torch.equal(a, b) for a, b in zip(
        head_before, _head(model).parameters())), 'the step changed nothing'

    val_set = DATASETS.build(cfg.val_dataloader.dataset)
    val_batch = pseudo_collate([val_set[0]])
    model.eval()
    with torch.no_grad():
        outs = model.val_step(val_batch)
    assert len(outs) == 1
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = val_set.metainfo
    evaluator.process(data_samples=outs, data_batch=val_batch)
    metrics = evaluator.evaluate(1)
    assert metrics, 'the evaluator returned no metric'
    assert all(
        math.isfinite(float(v)) for v in metrics.values()
        if isinstance(v, (int, float))), metrics


# ----------------------------------------------------- dataset classes


def test_bccd_dataset_drops_degenerate_boxes():
    from mmengine.registry import init_default_scope

    from kdep_mm.datasets import BCCDDataset
    from shared_data import unpack_shared
    init_default_scope('mmdet')
    root = unpack_shared('bccd_voc.tar') + '/'
    n_boxes, n_dropped = 0, 0
    for split in ('trainval', 'test'):
        ds = BCCDDataset(
            data_root=root,
            ann_file=f'ImageSets/Main/{split}.txt',
            data_prefix=dict(sub_data_root=''),
            test_mode=True,
            pipeline=[])
        assert ds.metainfo['classes'] == ('RBC', 'WBC', 'Platelets')
        for i in range(len(ds)):
            info = ds.get_data_info(i)
            assert osp.isfile(info['img_path'])
            for inst in info['instances']:
                x1, y1, x2, y2 = inst['bbox']
                assert x2 - x1 >= 1 and y2 - y1 >= 1
                assert 0 <= x1 and x2 <= info['width']
                assert 0 <= y1 and y2 <= info['height']
                n_boxes += 1
        n_dropped += ds.num_dropped_boxes
    assert n_dropped == 2
    assert n_boxes + n_dropped == 4888


def test_camvid_dataset_maps_void_to_ignore():
    import numpy as np
    from mmengine.registry import init_default_scope

    from kdep_mm.datasets import CamVidDataset
    from shared_data import unpack_shared
    init_default_scope('mmseg')
    root = unpack_shared('camvid_jpeg.tar.gz')
    sizes = {}
    for split in ('train', 'val', 'test'):
        ds = CamVidDataset(
            data_root=root,
            ann_file=f'{split}.txt',
            pipeline=[dict(type='LoadAnnotations')])
        sizes[split] = len(ds)
    assert sizes == dict(train=367, val=101, test=233)
    assert len(ds.metainfo['classes']) == 11
    # the folder-scanning mode finds the same images
    scanned = CamVidDataset(
        data_root=root,
        data_prefix=dict(img_path='val', seg_map_path='valannot'),
        pipeline=[])
    assert len(scanned) == 101
    seen = set()
    for i in range(4):
        seg = ds[i]['gt_seg_map']
        seen |= set(np.unique(seg).tolist())
    assert 11 not in seen and 255 in seen
    assert seen - {255} <= set(range(11))


def test_hymenoptera_skips_broken_gif(tmp_path):
    from mmengine.registry import DATASETS, init_default_scope
    from mmengine.config import Config

    from shared_data import unpack_shared
    cfg = Config.fromfile(
        osp.join(CFG_DIR, 'mmpretrain', 'r18_hymenoptera_finetune.py'))
    init_default_scope('mmpretrain')
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.data_root = unpack_shared('hymenoptera.tar')
    ds = DATASETS.build(ds_cfg)
    assert ds.metainfo['classes'] == ('ants', 'bees')
    paths = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    assert not any(p.endswith('.gif') for p in paths)
    assert len(paths) == 244  # 245 files, the .gif left out
    assert any(p.endswith('formica.jpeg') for p in paths)



NO_CUSTOM_IMPORTS = '''
import sys
from mmengine.config import Config
from mmengine.registry import DATASETS, MODELS, init_default_scope
cfg = Config.fromfile(PATH)
assert 'custom_imports' not in cfg and 'kdep_mm' not in sys.modules
init_default_scope(SCOPE)
model = cfg.model
if 'teacher' in model:
    model = dict(model, teacher_ckpt=None)  # no network: random weights
with MODELS.switch_scope_and_registry(SCOPE) as reg:
    reg.build(model)
with DATASETS.switch_scope_and_registry(SCOPE) as reg:
    assert reg.get(cfg.train_dataloader.dataset.type) is not None
assert 'kdep_mm' in sys.modules  # imported by the registry, on demand
print('ok')
'''


@pytest.mark.parametrize('name,scope', [
    ('study/downstream/bccd_retinanet.py', 'mmdet'),
    ('downstream/mmseg/fcn_r18_camvid.py', 'mmseg'),
    ('kdep/cifar10_r56_to_r20.py', 'mmpretrain'),
])
def test_kdep_mm_types_resolve_without_custom_imports(name, scope):
    """No config sets ``custom_imports``: in a fresh interpreter that never
    imports kdep_mm, a ``kdep_mm.X`` type (backbone, dataset, distiller)
    makes mmengine import ``kdep_mm.registry`` and, through its
    ``locations``, the module that registers X, from the mmpretrain, mmdet
    and mmseg scopes alike."""
    import subprocess
    import sys
    path = osp.join(REPO, 'configs', name)
    code = f'PATH, SCOPE = {path!r}, {scope!r}\n' + NO_CUSTOM_IMPORTS
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('ok')
