"""Teacher store (sharded, verified, view-keyed) and ApplyStoredView."""
import json
import os
import os.path as osp
import pickle
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from kdep_mm.datasets.store import (TeacherStore, TeacherStoreWriter,
                                    box_to_pixels, build_manifest,
                                    center_view, crop_view, dataset_identity,
                                    sample_view)
from kdep_mm.datasets.transforms.stored_view import ApplyStoredView
from kdep_mm.registry import TRANSFORMS
from kdep_mm.utils.topk import decode_topk, encode_topk, topk_fields
from helpers.files import written_files

N, V, SHARD = 10, 3, 4  # 3 shards: 4 + 4 + 2 samples
FIELDS = {'logits': ((5, ), 'float16'), 'feat': ((2, 3), 'float32')}
FP = 'a' * 64


def _manifest(n=N, fp=FP):
    return build_manifest(
        teacher_fingerprint=fp,
        dataset={'class': 'Toy', 'data_root': 'data/toy', 'ann_file': '',
                 'length': n},
        teacher_config=dict(type='ResNet', depth=18),
        teacher_checkpoint='teacher.pth',
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='ApplyStoredView', scale=8)])


def _data(n=N, v=V, seed=0):
    rng = np.random.default_rng(seed)
    outputs = {
        'logits': rng.standard_normal((n, v, 5)).astype(np.float16),
        'feat': rng.standard_normal((n, v, 2, 3)).astype(np.float32)}
    boxes = np.zeros((n, v, 4), np.float32)
    flips = np.zeros((n, v), np.uint8)
    for i in range(n):
        for j in range(v):
            boxes[i, j], flips[i, j] = sample_view(20, 30, rng)
    return outputs, boxes, flips


def _compute(data, calls=None, fail_at=None):
    outputs, boxes, flips = data

    def compute(start, stop):
        if calls is not None:
            calls.append(start)
        if fail_at is not None and start == fail_at:
            raise RuntimeError('killed')
        return ({k: a[start:stop] for k, a in outputs.items()},
                boxes[start:stop], flips[start:stop])
    return compute


def _write(root, data=None, **kwargs):
    data = data or _data()
    writer = TeacherStoreWriter(root, _manifest(), N, V, FIELDS,
                                shard_size=SHARD, **kwargs)
    return writer.write_all(_compute(data))


def _expected(**over):
    exp = dict(teacher_fingerprint=FP, dataset=dict(length=N), num_views=V,
               fields=FIELDS)
    exp.update(over)
    return exp


@pytest.fixture(scope='module')
def store_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('store'))
    assert _write(root) == [0, 1, 2]
    return root


# ------------------------------------------------------------- round trip
def test_round_trip_exact_and_memmapped(store_root):
    outputs, boxes, flips = _data()
    store = TeacherStore(store_root, _expected())
    assert len(store) == N and store.num_shards == 3
    for i in range(N):
        b, f = store.views(i)
        np.testing.assert_array_equal(b, boxes[i])
        np.testing.assert_array_equal(f, flips[i] > 0)
        for v in range(V):
            got = store.get(i, v)
            for name in FIELDS:
                assert got[name].dtype == outputs[name].dtype
                np.testing.assert_array_equal(got[name], outputs[name][i, v])
            np.testing.assert_array_equal(got['box'], boxes[i, v])
            assert got['flip'] == bool(flips[i, v])
    # only the shards touched are mapped, as np.memmap
    maps = store.shard_arrays(2)
    for name in list(FIELDS) + ['boxes', 'flips']:
        assert isinstance(maps[name], np.memmap), name
    assert maps['logits'].shape == (2, V, 5)
    with pytest.raises(IndexError):
        store.get(N, 0)
    with pytest.raises(IndexError):
        store.get(0, V)
    # a pickled store (DataLoader workers) carries no maps
    clone = pickle.loads(pickle.dumps(store))
    assert clone._maps == {}
    np.testing.assert_array_equal(clone.get(9, 2)['feat'],
                                  outputs['feat'][9, 2])


def test_manifest_content(store_root):
    with open(osp.join(store_root, 'manifest.json')) as f:
        m = json.load(f)
    assert m['format_version'] == 2 and m['num_views'] == V
    assert m['num_samples'] == N and m['shard_size'] == SHARD
    assert m['num_shards'] == 3
    assert m['fields'] == {'logits': {'shape': [5], 'dtype': 'float16'},
                           'feat': {'shape': [2, 3], 'dtype': 'float32'}}
    assert m['teacher_fingerprint'] == FP
    assert m['teacher_checkpoint'] == 'teacher.pth'
    assert m['teacher_config'] == dict(type='ResNet', depth=18)
    assert m['dataset']['length'] == N
    assert m['pipeline'][1]['type'] == 'ApplyStoredView'
    for shard in range(3):
        with open(osp.join(store_root, 'shards',
                           f'{shard:05d}.done.json')) as f:
            marker = json.load(f)
        assert set(marker['files']) == {'logits', 'feat', 'boxes', 'flips'}
        assert all(len(x['sha256']) == 64 for x in marker['files'].values())
    # no temporary file left behind
    assert not [n for n in written_files(store_root) if n.endswith('.tmp')]


@pytest.mark.parametrize('over,key,stored,wrong', [
    (dict(teacher_fingerprint='b' * 64), 'teacher_fingerprint', FP, 'b' * 64),
    (dict(dataset=dict(length=11)), 'dataset.length', 10, 11),
    (dict(num_views=4), 'num_views', 3, 4),
    (dict(fields={'logits': ((6, ), 'float16'),
                  'feat': ((2, 3), 'float32')}), 'fields.logits.shape',
     [5], [6]),
])
def test_manifest_mismatch_refused(store_root, over, key, stored, wrong):
    with pytest.raises(ValueError) as e:
        TeacherStore(store_root, _expected(**over))
    msg = str(e.value)
    assert repr(key) in msg and repr(stored) in msg and repr(wrong) in msg


def test_manifest_missing_key_refused(store_root):
    with pytest.raises(ValueError, match='no key .dataset.paths_sha256.'):
        TeacherStore(store_root, dict(dataset=dict(paths_sha256='x')))


# ------------------------------------------------------ corruption, loss
def test_corrupted_shard_refused(tmp_path):
    root = str(tmp_path)
    _write(root)
    path = osp.join(root, 'shards', '00001.logits.npy')
    with open(path, 'r+b') as f:
        f.seek(-3, os.SEEK_END)
        byte = f.read(1)
        f.seek(-3, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ValueError, match='corrupted') as e:
        TeacherStore(root, _expected())
    assert path in str(e.value)
    # a resumed writer detects it too and rewrites only that shard
    calls = []
    writer = TeacherStoreWriter(root, _manifest(), N, V, FIELDS,
                                shard_size=SHARD)
    assert writer.write_all(_compute(_data(), calls)) == [1]
    assert calls == [4]
    TeacherStore(root, _expected())


def test_missing_shard_refused(tmp_path):
    root = str(tmp_path)
    _write(root)
    path = osp.join(root, 'shards', '00002.feat.npy')
    os.remove(path)
    with pytest.raises(ValueError, match='missing') as e:
        TeacherStore(root, _expected())
    assert path in str(e.value)
    with pytest.raises(ValueError, match='missing'):
        TeacherStore(root, _expected(), verify=False)
    marker = osp.join(root, 'shards', '00000.done.json')
    os.remove(marker)
    with pytest.raises(ValueError, match='shard 0 is missing') as e:
        TeacherStore(root, _expected())
    assert marker in str(e.value)


# ------------------------------------------------------------------ resume
def test_killed_writer_resumes(tmp_path):
    root, clean = str(tmp_path / 'a'), str(tmp_path / 'b')
    data = _data()
    _write(clean, data)
    calls = []
    writer = TeacherStoreWriter(root, _manifest(), N, V, FIELDS,
                                shard_size=SHARD)
    with pytest.raises(RuntimeError, match='killed'):
        writer.write_all(_compute(data, calls, fail_at=4))
    assert calls == [0, 4]
    with pytest.raises(ValueError, match='shard 1 is missing'):
        TeacherStore(root, _expected())
    # leftovers of a shard killed while its files were being written
    shards = osp.join(root, 'shards')
    with open(osp.join(shards, '.00001.logits.npy.abc.tmp'), 'wb') as f:
        f.write(b'partial')
    with open(osp.join(shards, '00001.logits.npy'), 'wb') as f:
        f.write(b'partial')
    calls = []
    writer = TeacherStoreWriter(root, _manifest(), N, V, FIELDS,
                                shard_size=SHARD)
    assert writer.pending_shards() == [1, 2]
    assert writer.write_all(_compute(data, calls)) == [1, 2]
    assert calls == [4, 8]
    TeacherStore(root, _expected())
    assert written_files(root) == written_files(clean)


def test_sigkilled_writer_resumes(tmp_path):
    """A real SIGKILL after shard 0, then a rerun in this process."""
    root = str(tmp_path)
    script = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from kdep_mm.datasets import store as ts
        import json
        m = json.loads({json.dumps(_manifest())!r})
        w = ts.TeacherStoreWriter({root!r}, m, {N}, 1,
                                  {{'x': ((2,), 'float32')}}, shard_size=4)
        def compute(start, stop):
            if start == 4:
                os.kill(os.getpid(), signal.SIGKILL)
            n = stop - start
            x = np.arange(start * 2, stop * 2, dtype=np.float32)
            boxes = np.tile(np.float32([0, 0, 1, 1]), (n, 1, 1))
            return {{'x': x.reshape(n, 1, 2)}}, boxes, np.zeros((n, 1))
        w.write_all(compute)
    """)
    proc = subprocess.run([sys.executable, '-c', script])
    assert proc.returncode == -9
    assert osp.isfile(osp.join(root, 'shards', '00000.done.json'))
    assert not osp.exists(osp.join(root, 'shards', '00001.done.json'))
    calls = []

    def compute(start, stop):
        calls.append(start)
        n = stop - start
        x = np.arange(start * 2, stop * 2, dtype=np.float32)
        boxes = np.tile(np.float32([0, 0, 1, 1]), (n, 1, 1))
        return {'x': x.reshape(n, 1, 2)}, boxes, np.zeros((n, 1))
    writer = TeacherStoreWriter(root, _manifest(), N, 1,
                                {'x': ((2, ), 'float32')}, shard_size=4)
    writer.write_all(compute)
    assert calls == [4, 8]
    store = TeacherStore(root, dict(num_views=1))
    for i in range(N):
        np.testing.assert_array_equal(store.get(i, 0)['x'], [2 * i, 2 * i + 1])


def test_resume_with_other_manifest_refused(store_root):
    with pytest.raises(ValueError, match='teacher_fingerprint'):
        TeacherStoreWriter(store_root, _manifest(fp='c' * 64), N, V, FIELDS,
                           shard_size=SHARD)
    with pytest.raises(ValueError, match='num_shards|shard_size'):
        TeacherStoreWriter(store_root, _manifest(), N, V, FIELDS,
                           shard_size=5)


def test_writer_checks_inputs(tmp_path):
    with pytest.raises(ValueError, match='num_samples'):
        TeacherStoreWriter(str(tmp_path), _manifest(n=9), N, V, FIELDS)
    w = TeacherStoreWriter(str(tmp_path), _manifest(), N, V, FIELDS,
                           shard_size=SHARD)
    outputs, boxes, flips = _data()
    sl = slice(0, 4)
    with pytest.raises(ValueError, match='shape'):
        w.write_shard(0, {'logits': outputs['logits'][:3],
                          'feat': outputs['feat'][sl]}, boxes[sl], flips[sl])
    bad = boxes[sl].copy()
    bad[0, 0, 2] = 1.5
    with pytest.raises(ValueError, match='boxes'):
        w.write_shard(0, {k: a[sl] for k, a in outputs.items()}, bad,
                      flips[sl])


# ------------------------------------------------------------ distributed
def test_two_ranks_equal_one_writer(tmp_path, store_root):
    root = str(tmp_path)
    data = _data()
    written = []
    for rank in (1, 0):  # any order
        written += _write(root, data, rank=rank, world_size=2)
    assert sorted(written) == [0, 1, 2] and written[:1] == [1]
    assert written_files(root) == written_files(store_root)
    TeacherStore(root, _expected())


# ------------------------------------------------------------------ top-k
@pytest.mark.parametrize('index_dtype', ['int32', 'int64'])
def test_topk_encoding(tmp_path, index_dtype):
    rng = np.random.default_rng(1)
    C, k = 1000, 10
    logits = rng.standard_normal((6, 2, C)) * 4
    probs, idx = encode_topk(logits, k, index_dtype=index_dtype)
    assert probs.dtype == np.float16 and idx.dtype == np.dtype(index_dtype)
    ref = np.exp(logits - logits.max(-1, keepdims=True))
    ref /= ref.sum(-1, keepdims=True)
    ref_idx = np.argsort(-ref, axis=-1, kind='stable')[..., :k]
    fields = topk_fields('logits', k, index_dtype)
    w = TeacherStoreWriter(str(tmp_path), _manifest(n=6), 6, 2, fields,
                           shard_size=4)
    boxes = np.tile(np.float32([0, 0, 1, 1]), (6, 2, 1))
    for shard in w.my_shards():
        s, e = w.shard_range(shard)
        w.write_shard(shard, {'logits_topk_prob': probs[s:e],
                              'logits_topk_idx': idx[s:e]}, boxes[s:e],
                      np.zeros((e - s, 2)))
    store = TeacherStore(str(tmp_path), dict(fields=fields))
    for i in range(6):
        for v in range(2):
            got = store.get(i, v)
            assert got['logits_topk_idx'].dtype == np.dtype(index_dtype)
            np.testing.assert_array_equal(got['logits_topk_idx'],
                                          ref_idx[i, v])  # exact
            np.testing.assert_allclose(
                got['logits_topk_prob'].astype(np.float64),
                ref[i, v, ref_idx[i, v]], rtol=2 ** -11, atol=2 ** -25)
            dense = decode_topk(got['logits_topk_prob'],
                                got['logits_topk_idx'], C)
            assert dense.shape == (C, ) and dense.dtype == np.float32
            assert abs(dense.sum() - 1) < 1e-3
            rest = np.delete(dense, ref_idx[i, v])
            assert np.allclose(rest, rest[0])
    dense = decode_topk(probs, idx, C, rest='zero')
    assert (np.count_nonzero(dense, -1) <= k).all()
    np.testing.assert_array_equal(
        np.take_along_axis(dense, idx.astype(np.int64), -1),
        probs.astype(np.float32))
    dense = decode_topk(probs, idx, C, rest='renorm')
    np.testing.assert_allclose(dense.sum(-1), 1, rtol=1e-6)
    with pytest.raises(ValueError):
        decode_topk(probs, idx, C, rest='other')


# ------------------------------------------------------------ stored views
def test_crop_view_matches_numpy_cv2():
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    for _ in range(20):
        box, flip = sample_view(37, 53, rng)
        x0, y0, x1, y1 = box_to_pixels(box, 37, 53)
        # the box is an integer pixel box divided by W / H
        np.testing.assert_array_equal(
            box, np.float32([x0 / 53, y0 / 37, x1 / 53, y1 / 37]))
        ref = cv2.resize(img[y0:y1, x0:x1], (11, 7),
                         interpolation=cv2.INTER_LINEAR)
        if flip:
            ref = ref[:, ::-1]
        out = crop_view(img, box, flip, (7, 11))
        assert out.shape == (7, 11, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, ref)


def test_box_rounding():
    # round half up, end exclusive, at least one pixel, clipped
    assert box_to_pixels([0.25, 0.25, 0.75, 0.75], 10, 10) == (3, 3, 8, 8)
    assert box_to_pixels([0.5, 0.5, 0.5, 0.5], 4, 4) == (2, 2, 3, 3)
    assert box_to_pixels([0, 0, 1, 1], 5, 7) == (0, 0, 7, 5)
    assert box_to_pixels([0.99, 0.99, 1, 1], 5, 7) == (6, 4, 7, 5)


def test_sample_view_ranges():
    rng = np.random.default_rng(3)
    flips = []
    for _ in range(200):
        box, flip = sample_view(40, 60, rng, scale=(0.2, 0.5))
        x0, y0, x1, y1 = box_to_pixels(box, 40, 60)
        assert 0 <= x0 < x1 <= 60 and 0 <= y0 < y1 <= 40
        frac = (x1 - x0) * (y1 - y0) / (40 * 60)
        assert 0.15 < frac < 0.55
        flips.append(flip)
    assert 0.3 < np.mean(flips) < 0.7
    # the fallback is centred with the aspect ratio clamped to the range
    box, _ = sample_view(10, 100, np.random.RandomState(0), max_attempts=0)
    assert box_to_pixels(box, 10, 100) == (43, 0, 56, 10)


def _cache_crops(root, images, num_views, views_fn, size=8):
    """The caching side: views, crop_view, a fake teacher (the crop itself
    and its channel mean)."""
    n = len(images)
    crops = np.zeros((n, num_views, size, size, 3), np.uint8)
    boxes = np.zeros((n, num_views, 4), np.float32)
    flips = np.zeros((n, num_views), np.uint8)
    for i, img in enumerate(images):
        for v in range(num_views):
            box, flip = views_fn(img.shape[0], img.shape[1])
            boxes[i, v], flips[i, v] = box, flip
            crops[i, v] = crop_view(img, box, flip, size)
    fields = {'crop': ((size, size, 3), 'uint8'), 'mean': ((3, ), 'float32')}
    w = TeacherStoreWriter(root, _manifest(n=n), n, num_views, fields,
                           shard_size=3)
    w.write_all(lambda s, e: (
        {'crop': crops[s:e],
         'mean': crops[s:e].reshape(e - s, num_views, -1, 3).mean(2)},
        boxes[s:e], flips[s:e]))
    return crops, fields


def test_apply_stored_view_pixel_equal(tmp_path):
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (int(rng.integers(20, 50)),
                                    int(rng.integers(20, 50)), 3),
                           dtype=np.uint8) for _ in range(7)]
    crops, fields = _cache_crops(str(tmp_path), images, 4,
                                 lambda h, w: sample_view(h, w, rng))
    t = TRANSFORMS.build(dict(
        type='ApplyStoredView', scale=8,
        store=dict(root=str(tmp_path),
                   expected=dict(num_views=4, fields=fields))))
    assert 'ApplyStoredView' in repr(t)
    np.random.seed(0)
    seen = set()
    for _ in range(3):
        for i, img in enumerate(images):
            results = t(dict(img=img.copy(), sample_idx=i))
            v = results['view_index']
            seen.add(v)
            np.testing.assert_array_equal(results['img'], crops[i, v])
            np.testing.assert_array_equal(results['img'],
                                          results['teacher_crop'])
            assert results['img_shape'] == (8, 8)
            np.testing.assert_allclose(
                results['teacher_mean'],
                crops[i, v].reshape(-1, 3).mean(0), rtol=1e-6)
            assert results['flip'] == bool(
                t.store.views(i)[1][v])
    assert seen == {0, 1, 2, 3}
    fixed = ApplyStoredView(t.store, scale=(8, 8), view_index=2,
                            keys={'mean': 'soft'})
    out = fixed(dict(img=images[5], sample_idx=5))
    assert out['view_index'] == 2 and 'soft' in out
    np.testing.assert_array_equal(out['img'], crops[5, 2])
    with pytest.raises(ValueError, match='view_index'):
        ApplyStoredView(t.store, scale=8, view_index=4)(
            dict(img=images[0], sample_idx=0))


def test_center_view_single_view_mode(tmp_path):
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 256, (30, 45, 3), dtype=np.uint8),
              rng.integers(0, 256, (50, 20, 3), dtype=np.uint8)]
    box, flip = center_view(30, 45)
    assert box_to_pixels(box, 30, 45) == (7, 0, 37, 30) and flip is False
    box, _ = center_view(50, 20, crop_frac=0.5)
    assert box_to_pixels(box, 50, 20) == (5, 20, 15, 30)
    crops, fields = _cache_crops(str(tmp_path), images, 1, center_view)
    t = ApplyStoredView(dict(root=str(tmp_path),
                             expected=dict(num_views=1)), scale=8)
    for i, img in enumerate(images):
        out = t(dict(img=img, sample_idx=i))
        assert out['view_index'] == 0 and out['flip'] is False
        np.testing.assert_array_equal(out['img'], crops[i, 0])
        x0, y0, x1, y1 = box_to_pixels(center_view(*img.shape[:2])[0],
                                       *img.shape[:2])
        ref = cv2.resize(img[y0:y1, x0:x1], (8, 8),
                         interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out['img'], ref)


def test_dataset_identity():
    class Toy:
        data_root = '/data/toy'
        ann_file = 'train.txt'

        def __init__(self, paths):
            self.paths = paths

        def __len__(self):
            return len(self.paths)

        def get_data_info(self, i):
            return dict(img_path=self.paths[i])

    a = dataset_identity(Toy(['/data/toy/b.png', '/data/toy/a.png']))
    b = dataset_identity(Toy(['/data/toy/a.png', '/data/toy/b.png']))
    c = dataset_identity(Toy(['/data/toy/a.png', '/data/toy/c.png']))
    # the store is keyed by sample index: the same images in another order
    # are another dataset (this test asserted a == b before issue 16); the
    # sorted paths still agree, to tell a reordering from other images
    assert a != b and a['paths_sha256'] != b['paths_sha256']
    assert a['paths_sorted_sha256'] == b['paths_sorted_sha256']
    assert a['paths_sha256'] != c['paths_sha256']
    assert a['paths_sorted_sha256'] != c['paths_sorted_sha256']
    assert a['class'] == 'Toy' and a['length'] == 2
    assert a['ann_file'] == 'train.txt'
    # ann_file relative to data_root, as the paths
    Toy.ann_file = '/data/toy/meta/train.txt'
    assert dataset_identity(Toy(['/data/toy/a.png']))['ann_file'] == \
        osp.join('meta', 'train.txt')


def test_pack_inputs_carries_teacher_outputs(tmp_path):
    """LoadImageFromFile -> ApplyStoredView -> PackInputs(algorithm_keys)
    through a Compose built from configs, as in a training pipeline."""
    from mmcv.transforms import Compose
    rng = np.random.default_rng(6)
    img = rng.integers(0, 256, (24, 31, 3), dtype=np.uint8)
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, img)
    root = str(tmp_path / 'store')
    crops, fields = _cache_crops(root, [img], 2,
                                 lambda h, w: sample_view(h, w, rng))
    pipeline = Compose([
        dict(type='LoadImageFromFile'),
        dict(type='kdep_mm.ApplyStoredView', scale=8,
             store=dict(root=root, expected=dict(num_views=2))),
        dict(type='mmpretrain.PackInputs',
             algorithm_keys=['teacher_mean', 'view_index'])])
    out = pipeline(dict(img_path=path, sample_idx=0))
    sample = out['data_samples']
    v = sample.view_index
    assert tuple(out['inputs'].shape) == (3, 8, 8)
    np.testing.assert_array_equal(out['inputs'].permute(1, 2, 0).numpy(),
                                  crops[0, v])
    np.testing.assert_allclose(np.asarray(sample.teacher_mean),
                               crops[0, v].reshape(-1, 3).mean(0), rtol=1e-6)


# ------------------------------------------------------ issue 16 refusals
def _flip_byte(path, offset=-3):
    """A same-size corruption of ``path`` (one byte flipped)."""
    with open(path, 'r+b') as f:
        f.seek(offset, os.SEEK_END)
        byte = f.read(1)
        f.seek(offset, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0xFF]))


def test_verification_cached_and_redone_on_change(tmp_path, monkeypatch):
    """Issue 16, item 2: every shard is hashed once; its verified marker
    (size, mtime, ctime, sha256) lets later opens skip the hashing; a file
    changed since (same size) is re-hashed and refused; 'full' re-hashes
    all. Before issue 16 every verified open re-hashed the whole store."""
    from kdep_mm.datasets.store import shards
    root = str(tmp_path)
    _write(root)
    hashed = []
    real = shards.file_sha256
    monkeypatch.setattr(shards, 'file_sha256',
                        lambda p: hashed.append(osp.basename(p)) or real(p))
    TeacherStore(root, _expected())
    assert len(hashed) == 3 * 4  # 3 shards x (2 fields + boxes + flips)
    for shard in range(3):
        marker = osp.join(root, 'shards', f'{shard:05d}.verified.json')
        with open(marker) as f:
            info = json.load(f)
        assert set(info['files']) == {'logits', 'feat', 'boxes', 'flips'}
        assert {'bytes', 'mtime_ns', 'ctime_ns', 'sha256'} <= set(
            info['files']['feat'])
    hashed.clear()
    TeacherStore(root, _expected())  # later opens: nothing hashed
    assert hashed == []
    # a same-size corruption of shard 1 changes the file's mtime/ctime: the
    # next open re-hashes that shard (only) and refuses it
    path = osp.join(root, 'shards', '00001.feat.npy')
    _flip_byte(path)
    with pytest.raises(ValueError, match='corrupted') as e:
        TeacherStore(root, _expected())
    assert path in str(e.value)
    assert hashed and all(h.startswith('00001.') for h in hashed)
    # even a corruption that restored the old mtime (ctime cannot be set
    # back) is re-hashed; verify='full' re-hashes every shard
    _flip_byte(path)  # repaired
    hashed.clear()
    TeacherStore(root, _expected())
    hashed.clear()
    TeacherStore(root, _expected(), verify='full')
    assert len(hashed) == 12
    with pytest.raises(ValueError, match='verify must be'):
        TeacherStore(root, verify='sometimes')


def test_shipped_readers_verify(tmp_path):
    """Issue 16, item 2: no caller in kdep_mm opens a store unverified
    (configs: tests/test_configs/test_tcs_configs.py)."""
    import kdep_mm
    src = osp.dirname(kdep_mm.__file__)
    offenders = []
    for dirpath, _, names in os.walk(src):
        for name in names:
            if name.endswith('.py'):
                with open(osp.join(dirpath, name)) as f:
                    if 'verify=False' in f.read().replace(' ', ''):
                        offenders.append(name)
    assert offenders == []


def test_crop_size_must_match_the_store(tmp_path):
    """Issue 16, item 5: a store cached at out_size 24 is refused by an
    ApplyStoredView of another scale (before issue 16 only the ensemble
    view compared it)."""
    root = str(tmp_path)
    m = build_manifest(teacher_fingerprint=FP, dataset=dict(length=N),
                       out_size=[24, 24])
    w = TeacherStoreWriter(root, m, N, V, FIELDS, shard_size=SHARD)
    w.write_all(_compute(_data()))
    ApplyStoredView(dict(root=root), scale=24)
    ApplyStoredView(dict(root=root), scale=(24, 24))
    for scale in (16, (24, 32)):
        with pytest.raises(ValueError) as e:
            ApplyStoredView(dict(root=root), scale=scale)
        assert 'ApplyStoredView.scale' in str(e.value)
        assert 'out_size (24, 24)' in str(e.value)


def test_manifest_checksummed(tmp_path):
    """Issue 16, item 6: an edited manifest (a valid JSON) is refused at
    load and by a resumed writer; so is a store of the old format."""
    root = str(tmp_path)
    _write(root)
    path = osp.join(root, 'manifest.json')
    with open(path) as f:
        m = json.load(f)
    assert m['manifest_sha256'] == \
        __import__('kdep_mm.datasets.store',
                   fromlist=['x']).manifest_checksum(m)
    for key, value in (('num_views', 2), ('teacher_fingerprint', 'b' * 64)):
        edited = dict(m, **{key: value})
        with open(path, 'w') as f:
            json.dump(edited, f)
        with pytest.raises(ValueError, match='manifest_sha256') as e:
            TeacherStore(root)
        assert 're-cache' in str(e.value)
        with pytest.raises(ValueError, match='manifest_sha256'):
            TeacherStoreWriter(root, _manifest(), N, V, FIELDS,
                               shard_size=SHARD)
    # a store written by kdep_mm before issue 16 (format 1): re-cache
    with open(path, 'w') as f:
        json.dump(dict(m, format_version=1), f)
    with pytest.raises(ValueError, match=r"'format_version' differs.*"
                       r'has 1, expected 2.*re-cache'):
        TeacherStore(root)
    with open(path, 'w') as f:
        f.write('{"trunc')
    with pytest.raises(ValueError, match='not valid JSON'):
        TeacherStore(root)


def test_second_different_manifest_refused(tmp_path, monkeypatch):
    """Issue 16, item 6: two writers that both found no manifest (the
    window between "no manifest" and writing it, forced here): the second,
    with another manifest, is refused instead of replacing the first's
    (before issue 16 the last rename won); with the same manifest it joins.
    """
    from kdep_mm.datasets.store import writer
    root = str(tmp_path)
    real_isfile = osp.isfile
    monkeypatch.setattr(writer.osp, 'isfile', lambda p: False if p.endswith(
        'manifest.json') else real_isfile(p))
    TeacherStoreWriter(root, _manifest(), N, V, FIELDS, shard_size=SHARD)
    with open(osp.join(root, 'manifest.json'), 'rb') as f:
        first = f.read()
    with pytest.raises(ValueError, match='teacher_fingerprint'):
        TeacherStoreWriter(root, _manifest(fp='c' * 64), N, V, FIELDS,
                           shard_size=SHARD)
    with open(osp.join(root, 'manifest.json'), 'rb') as f:
        assert f.read() == first
    TeacherStoreWriter(root, _manifest(), N, V, FIELDS, shard_size=SHARD,
                       rank=1, world_size=2)
    monkeypatch.undo()
    # a shard written under another manifest is refused too (done-markers
    # are bound to the manifest's checksum)
    _write(root)
    marker = osp.join(root, 'shards', '00001.done.json')
    with open(marker) as f:
        info = json.load(f)
    info['manifest_sha256'] = '0' * 64
    with open(marker, 'w') as f:
        json.dump(info, f)
    with pytest.raises(ValueError, match='belongs to another manifest'):
        TeacherStore(root)


FD_SCRIPT = r'''
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from kdep_mm.datasets.store import TeacherStore

store = TeacherStore(sys.argv[1])
assert store.num_shards >= 2000, store.num_shards


class Reads(Dataset):
    def __len__(self):
        return len(store)

    def __getitem__(self, i):
        return i, store.get(i, 0)['x']


order = np.random.default_rng(0).permutation(len(store))
loader = DataLoader(torch.utils.data.Subset(Reads(), order.tolist()),
                    batch_size=64, num_workers=2)
seen = 0
for idx, x in loader:
    assert torch.equal(x[:, 0], idx.float()), 'wrong values'
    seen += len(idx)
assert seen == len(store)
print('read', seen, 'samples of', store.num_shards, 'shards')
'''


def test_open_files_capped_many_shards_two_workers(tmp_path, monkeypatch):
    """Issue 16, item 8: a store of 2,000 one-sample shards read in random
    order by a DataLoader with 2 workers under ``ulimit -n 256``: at most
    ``max_open_files`` (128) descriptors stay open per process (before
    issue 16 every shard touched kept 3 maps, one descriptor each, open:
    'Too many open files')."""
    from kdep_mm.datasets.store import writer
    monkeypatch.setattr(writer.os, 'fsync', lambda fd: None)  # speed only
    root = str(tmp_path)
    n = 2000
    w = TeacherStoreWriter(root, _manifest(n=n), n, 1,
                           {'x': ((1, ), 'float32')}, shard_size=1)
    box = np.float32([[[0, 0, 1, 1]]])
    w.write_all(lambda s, e: (
        {'x': np.full((1, 1, 1), s, np.float32)}, box, np.zeros((1, 1))))
    monkeypatch.undo()
    store = TeacherStore(root)  # verified here, once
    assert store.num_shards == n
    # 128 descriptors: 21 shards x 3 files for maps, 65 for sample reads
    assert store.max_open_shards == 64 // 3
    assert store.max_open_fds == 128 - 3 * (64 // 3)
    for i in range(100):
        assert store.get(i, 0)['x'][0] == i
        np.testing.assert_array_equal(store.views(i)[0], box[0])
        store.shard_arrays(i)
    assert len(store._fds) == store.max_open_fds
    assert len(store._maps) == store.max_open_shards
    open_fds = len(os.listdir('/proc/self/fd'))
    store.close()
    assert len(os.listdir('/proc/self/fd')) <= open_fds - store.max_open_fds
    proc = subprocess.run([sys.executable, '-c', FD_SCRIPT, root],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert f'read {n} samples of {n} shards' in proc.stdout


# ------------------------------------------------------- on-disk format
GOLDEN = osp.join(osp.dirname(osp.abspath(__file__)), 'golden',
                  'teacher_store_v2')
GOLDEN_N, GOLDEN_V = 5, 2


def _golden_arrays(start, stop):
    """The values of the golden store (shards of 3 samples)."""
    n = stop - start
    i = np.arange(start, stop)[:, None, None]
    v = np.arange(GOLDEN_V)[None, :, None]
    feat = (i * 10 + v + np.arange(3) / 4).astype(np.float32)
    prob = np.broadcast_to(np.float16([0.75, 0.125]), (n, GOLDEN_V, 2))
    idx = (np.broadcast_to(np.int32([3, 1]), (n, GOLDEN_V, 2)) +
           i[..., :1]).astype(np.int32)
    boxes = np.broadcast_to(np.float32([0.25, 0.0, 1.0, 0.5]),
                            (n, GOLDEN_V, 4))
    flips = ((i[..., 0] + v[..., 0]) % 2).astype(np.uint8)
    return dict(feat=feat, logits_topk_prob=prob,
                logits_topk_idx=idx), boxes, flips


def _golden_write(root):
    manifest = build_manifest(
        teacher_fingerprint='a' * 64,
        dataset={'class': 'Golden', 'data_root': '', 'ann_file':
                 'golden.txt', 'length': GOLDEN_N, 'paths_sha256': 'b' * 64,
                 'paths_sorted_sha256': 'c' * 64},
        teacher_config=dict(type='ResNet', depth=18),
        teacher_checkpoint='teacher.pth', teacher_checkpoint_sha256='d' * 64,
        decoder=dict(type='LoadImageFromFile', imdecode_backend='cv2',
                     color_type='color', to_float32=False),
        pipeline=[dict(type='LoadImageFromFile')], out_size=[8, 8], topk=2,
        num_classes=6)
    fields = {'feat': ((3, ), 'float32'),
              'logits_topk_prob': ((2, ), 'float16'),
              'logits_topk_idx': ((2, ), 'int32')}
    TeacherStoreWriter(root, manifest, GOLDEN_N, GOLDEN_V, fields,
                       shard_size=3).write_all(_golden_arrays)


def test_golden_store_format(tmp_path):
    """The on-disk format does not change: tests/test_datasets/golden/teacher_store_v2 was
    written by kdep_mm before the store became a package (format 2,
    kdep_mm/datasets/teacher_store.py at db675c4). It opens and verifies
    with today's reader and holds the values it was written with; today's
    writer, given the same manifest and arrays, writes the same bytes, file
    for file (manifest, done-markers, every .npy)."""
    import shutil
    old = str(tmp_path / 'old')
    shutil.copytree(GOLDEN, old)  # the reader writes verified markers
    store = TeacherStore(old, dict(num_views=GOLDEN_V), verify='full')
    assert store.manifest['format_version'] == 2
    assert store.num_shards == 2
    for i in range(GOLDEN_N):
        shard, row = divmod(i, 3)
        want, boxes, flips = _golden_arrays(shard * 3,
                                            min(shard * 3 + 3, GOLDEN_N))
        for v in range(GOLDEN_V):
            got = store.get(i, v)
            for name, arr in want.items():
                np.testing.assert_array_equal(got[name], arr[row, v])
                assert got[name].dtype == arr.dtype
            np.testing.assert_array_equal(got['box'], boxes[row, v])
            assert got['flip'] == bool(flips[row, v])
    new = str(tmp_path / 'new')
    _golden_write(new)
    assert written_files(new) == written_files(GOLDEN)


def test_stored_view_one_or_many_stores(tmp_path):
    """One transform for one store (its fields under 'teacher_<field>') and
    for many (under 'teacher_outputs'); the arguments of the other case are
    refused, as are a view_index or num_views the stores do not have."""
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    _write(a)
    m = _manifest(fp='b' * 64)
    other = _data(seed=1)[0]  # other outputs on a's views
    TeacherStoreWriter(b, m, N, V, FIELDS, shard_size=SHARD).write_all(
        _compute((other, *_data()[1:])))
    img = np.zeros((12, 12, 3), np.uint8)
    one = ApplyStoredView(store=a, scale=4, view_index=1)
    many = ApplyStoredView(stores=dict(x=a, y=b), scale=4, view_index=1,
                           teacher_names=['y', 'x'], num_views=V)
    assert one.single and not many.single and many.store.root == a
    r1 = one(dict(img=img, sample_idx=2))
    r2 = many(dict(img=img, sample_idx=2))
    assert 'teacher_outputs' not in r1 and 'teacher_feat' not in r2
    np.testing.assert_array_equal(r1['teacher_feat'],
                                  r2['teacher_outputs']['x']['feat'])
    np.testing.assert_array_equal(r2['teacher_outputs']['y']['logits'],
                                  other['logits'][2, 1])
    np.testing.assert_array_equal(r1['img'], r2['img'])
    for kwargs, match in (
            (dict(), 'either store'),
            (dict(store=a, stores=dict(x=a)), 'either store'),
            (dict(store=a, teacher_names=['x']), 'teacher_names'),
            (dict(stores=dict(x=a), keys=dict(feat='f')), 'keys'),
            (dict(store=a, view_index=V), 'view_index'),
            (dict(store=a, num_views=V + 1), 'num_views'),
            (dict(stores=dict(x=a, y=a)), 'same teacher')):
        with pytest.raises(ValueError, match=match):
            ApplyStoredView(scale=4, **kwargs)
    with pytest.raises(ValueError, match='scale is required'):
        ApplyStoredView(store=a)
