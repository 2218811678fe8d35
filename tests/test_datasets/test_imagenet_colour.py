"""Colour channels and clipping of the ImageNet KDEP recipes (issue 15).

A known image is written to disk, pushed through the *real* train pipeline
of every ImageNet config under configs/ that adds lighting noise, and then
through that config's data preprocessor, which is what teacher and student
receive. Checked: the channel order at the network input (RGB, normalised
with the RGB statistics), the lighting noise on the right channels, and
saturated pixels that saturate instead of wrapping around (uint8 256.6 -> 0).
A negative control runs the same checks on the old recipe step
(mmpretrain's ``Lighting(to_rgb=True)``) and shows that they catch it.

Also the unit tests of ``kdep_mm.ClippedLighting``.
"""
import copy
import glob
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import TRANSFORMS as ROOT_TRANSFORMS
from mmengine.registry import init_default_scope

import kdep_mm  # noqa: F401
from helpers.paths import REPO

cv2 = pytest.importorskip('cv2')

# the four ImageNet KDEP recipes (issue 15); the scan below must find them
IMAGENET_KDEP = {
    'configs/kdep/r50_to_r18_in1k.py',
    'configs/kdep/r50_to_mbv2_in1k.py',
    'configs/kdep/baselines/r50_to_r18_in1k_fitnets.py',
    'configs/kdep/baselines/r50_to_r18_in1k_logit_kd.py',
}
# The published ImageNet PCA of RGB pixels (fb.resnet.torch, eigenvalues
# x 255), written out here independently of the configs and of kdep_mm.
EIGVAL = np.array([0.2175, 0.0188, 0.0045]) * 255
EIGVEC_RGB = np.array([[-0.5675, 0.7192, 0.4009],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5836, -0.6948, 0.4203]])
MEAN_RGB = np.array([123.675, 116.28, 103.53])


def _pipelines(node):
    """Every ``pipeline`` list inside a (dataloader) config."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'pipeline' and isinstance(value, list):
                yield value
            else:
                yield from _pipelines(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _pipelines(value)


def _train_pipeline(cfg):
    found = list(_pipelines(cfg.get('train_dataloader')))
    assert len(found) == 1, f'expected one train pipeline, got {len(found)}'
    return found[0]


def _lighting_configs():
    """Every config under configs/ whose train pipeline has a lighting
    step (by type name), relative paths."""
    found = []
    for path in sorted(glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                                 recursive=True)):
        if '_base_' in path.split(osp.sep):
            continue
        cfg = Config.fromfile(path)
        if any('Lighting' in str(t.get('type', ''))
               for pipe in _pipelines(cfg.get('train_dataloader'))
               for t in pipe if isinstance(t, dict)):
            found.append(osp.relpath(path, REPO))
    return found


LIGHTING_CONFIGS = _lighting_configs()


def test_scan_finds_the_four_imagenet_recipes():
    assert IMAGENET_KDEP <= set(LIGHTING_CONFIGS), LIGHTING_CONFIGS


def _write(tmp_path, rgb, name='img.png', size=(300, 260)):
    img = np.empty(size + (3, ), np.uint8)
    img[:] = np.asarray(rgb, np.uint8)[::-1]  # cv2 writes BGR
    path = str(tmp_path / name)
    assert cv2.imwrite(path, img)
    return path


def _network_input(cfg, pipeline, path, n, seed=0):
    """(n, 3, H, W) float64 RGB 0-255 pixels that the model sees: ``n``
    draws of the train ``pipeline`` on ``path``, then the config's
    preprocessor (training mode), de-normalised."""
    init_default_scope(cfg.default_scope)
    pre = ROOT_MODELS.build(copy.deepcopy(cfg.model.data_preprocessor))
    np.random.seed(seed)
    torch.manual_seed(seed)
    packed = [pipeline(dict(img_path=path, sample_idx=i)) for i in range(n)]
    data = pre(dict(inputs=[p['inputs'] for p in packed],
                    data_samples=[p['data_samples'] for p in packed]),
               training=True)
    x = data['inputs'].double()
    mean = pre.mean.double().view(1, -1, 1, 1)
    std = pre.std.double().view(1, -1, 1, 1)
    return (x * std + mean).numpy()


def _check_channel_order(x):
    """A uniform RGB (200, 100, 30) image: channel 0 must stay red after
    the jitter (+-10% brightness / contrast / saturation)."""
    means = x.mean(axis=(0, 2, 3))
    assert means[0] > 160 and 75 < means[1] < 125 and means[2] < 60, means


def _check_no_wrap(x):
    """A white image, brightened (and clipped at 255 by ColorJitter) in
    about half the draws, then lit: no pixel may wrap to near 0, and some
    must be saturated at exactly 255."""
    assert x.min() > 200, x.min()
    assert np.isclose(x.max(), 255, atol=1e-3), x.max()


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('colour')
    return dict(red=_write(tmp, (200, 100, 30), 'red.png'),
                white=_write(tmp, (255, 255, 255), 'white.png'),
                gray=_write(tmp, (128, 128, 128), 'gray.png', (64, 64)))


@pytest.mark.parametrize('rel', LIGHTING_CONFIGS)
def test_train_pipeline_channel_order_and_clipping(rel, images):
    cfg = Config.fromfile(osp.join(REPO, rel))
    init_default_scope(cfg.default_scope)
    steps = _train_pipeline(cfg)
    assert not any(t['type'] in ('Lighting', 'mmpretrain.Lighting')
                   for t in steps), (
        "mmpretrain's Lighting wraps uint8 pixels; use kdep_mm."
        'ClippedLighting')
    assert cfg.model.data_preprocessor.to_rgb is True
    assert np.allclose(cfg.model.data_preprocessor.mean, MEAN_RGB)
    pipeline = Compose(copy.deepcopy(steps))
    _check_channel_order(_network_input(cfg, pipeline, images['red'], 8))
    _check_no_wrap(_network_input(cfg, pipeline, images['white'], 40))


@pytest.mark.parametrize('rel', LIGHTING_CONFIGS)
def test_lighting_noise_on_the_right_channels(rel, images):
    """The config's lighting step alone (alphastd raised to 1 so that the
    second component is well above the uint8 rounding), on mid-gray, through
    the preprocessor: the RGB offset at the network input must be the
    published RGB formula eigvec_rgb @ (alpha * eigval)."""
    cfg = Config.fromfile(osp.join(REPO, rel))
    init_default_scope(cfg.default_scope)
    light = [t for t in _train_pipeline(cfg) if 'Lighting' in t['type']]
    assert len(light) == 1
    step = dict(copy.deepcopy(light[0]), alphastd=1.0)
    pipeline = Compose([dict(type='LoadImageFromFile'), step,
                        dict(type='PackInputs')])
    seed = 3
    x = _network_input(cfg, pipeline, images['gray'], 1, seed=seed)
    np.random.seed(seed)
    alpha = np.random.normal(0, 1.0, 3)
    expected = 128 + EIGVEC_RGB @ (alpha * EIGVAL)
    # discriminates: swapping R and B would move the offset by more than
    # the rounding
    assert abs(expected[0] - expected[2]) > 3, expected
    got = x[0].mean(axis=(1, 2))
    assert np.abs(got - expected).max() <= 0.5 + 1e-3, (got, expected)


def test_checks_catch_the_old_recipe(images):
    """Negative control: the old step, mmpretrain's Lighting(to_rgb=True)
    with the BGR-row eigenvectors, fails both checks."""
    rel = 'configs/kdep/r50_to_r18_in1k.py'
    cfg = Config.fromfile(osp.join(REPO, rel))
    init_default_scope(cfg.default_scope)
    old = dict(type='Lighting', eigval=[55.4625, 4.7940, 1.1475],
               eigvec=[[-0.5836, -0.6948, 0.4203],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5675, 0.7192, 0.4009]],
               alphastd=0.05, to_rgb=True)
    steps = [old if 'Lighting' in t['type'] else t
             for t in copy.deepcopy(_train_pipeline(cfg))]
    pipeline = Compose(steps)
    with pytest.raises(AssertionError):
        _check_channel_order(_network_input(cfg, pipeline, images['red'], 8))
    with pytest.raises(AssertionError):
        _check_no_wrap(_network_input(cfg, pipeline, images['white'], 40))


# ------------------------------------------------------ ClippedLighting
def _build(**kw):
    return ROOT_TRANSFORMS.build(dict(type='kdep_mm.ClippedLighting', **kw))


def test_clipped_lighting_registered_in_kdep_mm_scope():
    from kdep_mm.datasets.transforms import ClippedLighting
    from kdep_mm.registry import TRANSFORMS
    assert TRANSFORMS.get('ClippedLighting') is ClippedLighting
    assert type(_build()) is ClippedLighting


@pytest.mark.parametrize('order', ['bgr', 'rgb'])
def test_clipped_lighting_matches_mmcv_in_rgb(order):
    """Same draw of alpha as mmcv.adjust_lighting on the RGB image: equal to
    mmcv's float result rounded and clipped, in the input's channel order."""
    import mmcv
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    rgb[0, 0] = 255
    rgb[0, 1] = 0
    t = _build(alphastd=0.5, channel_order=order)
    img = rgb[..., ::-1].copy() if order == 'bgr' else rgb.copy()
    np.random.seed(1)
    out = t(dict(img=img))['img']
    np.random.seed(1)
    ref = mmcv.adjust_lighting(rgb, EIGVAL, EIGVEC_RGB, alphastd=0.5,
                               to_rgb=False)
    ref = np.clip(np.rint(ref), 0, 255).astype(np.uint8)
    assert out.dtype == np.uint8 and out.shape == img.shape
    got_rgb = out[..., ::-1] if order == 'bgr' else out
    np.testing.assert_array_equal(got_rgb, ref)


def test_clipped_lighting_hand_computed_noise_and_clip():
    t = _build(alphastd=0.1)
    alpha = np.array([0.3, -1.0, 2.0])
    delta_rgb = EIGVEC_RGB @ (alpha * EIGVAL)
    np.testing.assert_allclose(t.noise(alpha), delta_rgb[::-1], atol=1e-3)
    # a pushed-past-255 and a pushed-below-0 pixel saturate
    t = _build(eigval=[100.], eigvec=[[1.], [0.], [-1.]], alphastd=1.,
               channel_order='rgb')
    img = np.array([[[250, 7, 3]]], np.uint8)
    np.random.seed(0)
    a = np.random.normal(0, 1., 1)[0]
    np.random.seed(0)
    out = t(dict(img=img))['img']
    assert a > 0.06  # seed 0 gives a = 1.76: +176 on R, -176 on B
    np.testing.assert_array_equal(out, [[[255, 7, 0]]])
    # float images keep their dtype and are clipped too
    np.random.seed(0)
    out = t(dict(img=img.astype(np.float32)))['img']
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[[255, 7, 0]]])


def test_clipped_lighting_refuses_bad_arguments():
    with pytest.raises(ValueError, match='3 x len'):
        _build(eigval=[1., 2.], eigvec=[[1., 0.], [0., 1.]])
    with pytest.raises(ValueError, match='channel_order'):
        _build(channel_order='rbg')
    with pytest.raises(ValueError, match='alphastd'):
        _build(alphastd=-1)
    with pytest.raises(ValueError, match='3-channel'):
        _build()(dict(img=np.zeros((4, 4), np.uint8)))
