"""Caching a teacher's outputs per stored view (kdep_mm.apis.cache_teacher
and tools/cache_teacher.py): exact values, CLI == library, 2 ranks == 1
process, resume, throughput line, fingerprint check."""
import os.path as osp
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from kdep_mm.apis import TeacherCacher
from kdep_mm.datasets.store import (TeacherStore, crop_view, draw_views,
                                    sample_view)
from kdep_mm.datasets.transforms.stored_view import ApplyStoredView
from kdep_mm.models.teachers import teacher_fingerprint
from kdep_mm.registry import DATASETS, MODELS
from kdep_mm.utils.topk import encode_topk
from helpers.launch import REPO, free_port, tool_env
from tiny_image_folder import make_image_folder
from helpers.files import written_files

CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')
TOOL = osp.join(REPO, 'tools', 'cache_teacher.py')
V, SIZE, SHARD, BATCH, SEED = 3, 24, 5, 4, 7  # 12 images: shards 5 + 5 + 2
VIEWS = dict(num_views=V, view_mode='random', out_size=SIZE, seed=SEED)
RUN = dict(shard_size=SHARD, batch_size=BATCH, progress=False)
CLI_ARGS = ['--views', str(V), '--view-mode', 'random', '--out-size',
            str(SIZE), '--shard-size', str(SHARD), '--batch-size', str(BATCH),
            '--seed', str(SEED), '--no-progress']
THROUGHPUT = re.compile(r'cached (\d+) images x (\d+) views in [\d.]+ s '
                        r'\([\d.]+ images/s\)')


def _cache(env, root, teacher=None, views=(), outputs=(), run=(),
           record=()):
    """TeacherCacher(...).run() with the module's option groups, each
    updated by the given pairs."""
    return TeacherCacher(
        env['teacher'] if teacher is None else teacher, env['dataset'],
        root, views=dict(VIEWS, **dict(views)), outputs=dict(outputs),
        run=dict(RUN, **dict(run)),
        record=dict(env['record'], **dict(record)),
        data_preprocessor=env['preprocessor']).run()


@pytest.fixture(scope='module')
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('cache_teacher')
    data = str(tmp / 'data')
    make_image_folder(data, num_classes=2, per_class=6, size=32)
    cfg = Config.fromfile(CONFIG)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        teacher = MODELS.build(cfg.model.teacher)
        teacher.init_weights()
        teacher.eval()
        preprocessor = MODELS.build(cfg.model.data_preprocessor)
        dataset = DATASETS.build(dict(
            type='CustomDataset', data_root=data,
            pipeline=[dict(type='LoadImageFromFile')]))
    ckpt = str(tmp / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    # the CLI runs with one thread (tool_env): so does the library here, so
    # that the bytes can be compared
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        env = dict(tmp=tmp, data=data, cfg=cfg, teacher=teacher,
                   preprocessor=preprocessor, dataset=dataset, ckpt=ckpt,
                   record=dict(teacher_config=cfg.model.teacher.to_dict(),
                               teacher_checkpoint=ckpt))
        env['root'] = str(tmp / 'lib')
        env['result'] = _cache(env, env['root'])
        yield env
    finally:
        torch.set_num_threads(threads)


def _cli(env, store, *extra, nproc=1):
    launch = [sys.executable, TOOL] if nproc == 1 else [
        sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
        str(nproc), '--master_port', str(free_port()), TOOL]
    cmd = launch + [CONFIG, '--store', store, *CLI_ARGS,
                    '--cfg-options', f'model.teacher_ckpt={env["ckpt"]}',
                    *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=tool_env(env['data']),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def _reference(env, img, box, flip):
    """The teacher's pooled pre-ReLU feature and logits of one crop,
    computed here without the library."""
    cfg = env['cfg'].model.data_preprocessor
    crop = crop_view(img, box, flip, SIZE)
    x = torch.from_numpy(crop[..., ::-1].copy()).permute(2, 0, 1).float()
    x = (x - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(
        cfg.std)[:, None, None]
    teacher = env['teacher']
    last = teacher.backbone.layer3[-1].relu  # after the residual add
    seen = []
    handle = last.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].clone()))
    try:
        with torch.no_grad():
            logits = teacher(x[None], mode='tensor')
    finally:
        handle.remove()
    return seen[-1].mean(dim=(2, 3))[0].numpy(), logits[0].numpy(), crop


# ------------------------------------------------------------------ (a)
def test_library_values_match_independent_teacher(env):
    result = env['result']
    assert result['written'] == [0, 1, 2] and result['skipped'] == []
    assert result['images'] == 12
    fp = teacher_fingerprint(env['teacher'])
    assert result['fingerprint'] == fp
    store = TeacherStore(env['root'], dict(
        teacher_fingerprint=fp, num_views=V, dataset=dict(length=12),
        fields={'feat': ((32, ), 'float32'), 'logits': ((2, ), 'float32')}))
    assert store.manifest['view_mode'] == 'random'
    assert store.manifest['out_size'] == [SIZE, SIZE]
    assert store.manifest['teacher_feature'] == 'layer3.0.relu'
    assert store.manifest['teacher_checkpoint'] == env['ckpt']
    dataset = env['dataset']
    for i in range(len(dataset)):
        path = dataset.get_data_info(i)['img_path']
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        # views: a pure function of (seed, index)
        rng = np.random.default_rng([SEED, i])
        boxes, flips = store.views(i)
        for v in range(V):
            box, flip = sample_view(32, 32, rng)
            np.testing.assert_array_equal(boxes[v], box)
            assert flips[v] == flip
            feat, logits, crop = _reference(env, img, box, flip)
            got = store.get(i, v)
            np.testing.assert_allclose(got['feat'], feat, rtol=0, atol=1e-6)
            np.testing.assert_allclose(got['logits'], logits, rtol=0,
                                       atol=1e-6)
            # training side: ApplyStoredView gives the same pixels
            apply = ApplyStoredView(store, scale=SIZE, view_index=v)
            out = apply(dataset[i])
            np.testing.assert_array_equal(out['img'], crop)
            np.testing.assert_array_equal(out['teacher_feat'], got['feat'])


def test_topk_and_center_mode(env, tmp_path):
    full = TeacherStore(env['root'])
    res = _cache(env, str(tmp_path / 'topk'), outputs=dict(topk=1),
                 run=dict(shard_size=12))
    assert sorted(res['fields']) == ['feat', 'logits_topk_idx',
                                     'logits_topk_prob']
    topk = TeacherStore(str(tmp_path / 'topk'))
    for i in range(12):
        for v in range(V):
            prob, idx = encode_topk(full.get(i, v)['logits'], 1)
            got = topk.get(i, v)
            assert got['logits_topk_prob'].dtype == np.float16
            np.testing.assert_array_equal(got['logits_topk_idx'], idx)
            np.testing.assert_allclose(got['logits_topk_prob'], prob,
                                       rtol=1e-3)
    center_views = dict(num_views=1, view_mode='center')
    _cache(env, str(tmp_path / 'center'), views=center_views,
           outputs=dict(fields=('feat', )), run=dict(shard_size=12))
    center = TeacherStore(str(tmp_path / 'center'))
    boxes, flips = center.views(3)
    np.testing.assert_array_equal(boxes, [[0, 0, 1, 1]])
    assert not flips.any()
    with pytest.raises(ValueError, match='num_views=1'):
        _cache(env, str(tmp_path / 'bad'),
               views=dict(center_views, num_views=2))
    b1 = draw_views(32, 32, 5, V, SEED)
    b2 = draw_views(32, 32, 5, V, SEED)
    np.testing.assert_array_equal(b1[0], b2[0])


# ---------------------------------------------------------- (b) (c) (e)
def test_cli_single_and_two_ranks_equal_library(env):
    one = str(env['tmp'] / 'cli1')
    log = _cli(env, one)
    lib = written_files(env['root'])
    assert written_files(one) == lib  # shard files and manifest, byte for byte
    m = THROUGHPUT.search(log)
    assert m and m.groups() == ('12', str(V)), log[-2000:]
    assert 'complete and verified' in log

    two = str(env['tmp'] / 'cli2')
    log2 = _cli(env, two, '--launcher', 'pytorch', nproc=2)
    assert written_files(two) == lib
    assert 'rank 0: wrote shards [0, 2]' in log2
    assert 'rank 1: wrote shards [1]' in log2
    assert 'on 2 process(es)' in log2
    assert THROUGHPUT.search(log2)


# ------------------------------------------------------------------ (d)
def test_resume_skips_finished_shards(env, tmp_path):
    root = str(tmp_path / 'resume')
    first = _cache(env, root, run=dict(max_shards=1))
    assert first['written'] == [0] and first['images'] == SHARD
    with pytest.raises(ValueError, match='shard 1 is missing'):
        TeacherStore(root)
    lines = []
    second = _cache(env, root, run=dict(logger=_logger(lines)))
    assert second['skipped'] == [0] and second['written'] == [1, 2]
    assert second['images'] == 12 - SHARD
    assert any('skips 1 finished shard(s) [0]' in x for x in lines)
    assert any(THROUGHPUT.search(x) for x in lines)
    TeacherStore(root)  # complete and verified
    assert written_files(root) == written_files(env['root'])
    # a third run has nothing to do
    third = _cache(env, root)
    assert third['written'] == [] and third['skipped'] == [0, 1, 2]


def _logger(lines):
    import logging

    class _Handler(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    logger = logging.getLogger(f'test_cache_teacher_{id(lines)}')
    logger.setLevel(logging.INFO)
    logger.addHandler(_Handler())
    return logger


# ------------------------------------------------------------------ (f)
def test_wrong_fingerprint_refused(env):
    fp = env['result']['fingerprint']
    TeacherStore(env['root'], dict(teacher_fingerprint=fp))
    with pytest.raises(ValueError, match='teacher_fingerprint'):
        TeacherStore(env['root'], dict(teacher_fingerprint='0' * 64))
    # another teacher (different weights) has another fingerprint
    other = MODELS.build(env['cfg'].model.teacher)
    with torch.no_grad():
        other.load_state_dict(env['teacher'].state_dict())
        other.head.fc.bias.add_(1.0)
    assert teacher_fingerprint(other) != fp
    # and a writer with another teacher refuses to extend the store
    with pytest.raises(ValueError, match='teacher_fingerprint'):
        _cache(env, env['root'], teacher=other)


# ------------------------------------------------------------ options
def test_option_groups_checked(env):
    """The option groups (dicts or their dataclasses) refuse bad values
    before any work, naming the option."""
    from kdep_mm.apis import OutputSpec, RunSpec, ViewSpec
    from kdep_mm.models.teachers import FrozenTeacher
    bad = [(dict(views=dict(view_mode='zoom')), ValueError, 'view_mode'),
           (dict(views=dict(num_views=2, view_mode='center')),
            ValueError, 'num_views=1'),
           (dict(outputs=dict(fields=('feat', 'probs'))), ValueError,
            'fields'),
           (dict(outputs=dict(fields=('feat', ), topk=3)), ValueError,
            'topk needs the logits'),
           (dict(run=dict(batch_size=0)), ValueError, 'batch_size'),
           (dict(run=dict(shards=2)), TypeError, 'shards'),
           (dict(views=[2]), TypeError, 'ViewSpec')]
    for kwargs, error, match in bad:
        with pytest.raises(error, match=match):
            TeacherCacher(env['teacher'], env['dataset'], 'unused', **kwargs)
    with pytest.raises(ValueError, match='view_mode'):
        ViewSpec(view_mode='zoom')
    with pytest.raises(ValueError, match='fields'):
        OutputSpec(fields=())
    # a frozen teacher is cached as its module; a backbone has no logits
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        frozen = FrozenTeacher(env['cfg'].model.teacher.to_dict(),
                               env['ckpt'])
    cacher = TeacherCacher(frozen, env['dataset'], 'unused',
                           run=RunSpec(progress=False))
    assert cacher.teacher is frozen.module
    assert teacher_fingerprint(cacher.teacher) == env['result'][
        'fingerprint']
    with pytest.raises(ValueError, match='no head'):
        TeacherCacher(env['teacher'].backbone, env['dataset'], 'unused')
