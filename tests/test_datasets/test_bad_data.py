"""Unreadable or non-image files in a dataset folder are handled the way the
config says: ``LoadImageOrSkip(on_error='skip')`` skips them with a warning
naming each file and counting them, ``on_error='raise'`` fails naming the
file (also from a DataLoader worker), never a crash deep in a worker."""
import logging
import os
import os.path as osp
import uuid

import cv2
import numpy as np
import pytest
import torch

from kdep_mm.datasets.transforms import ImageLoadError, LoadImageOrSkip

BAD = ('class_0/truncated.jpg', 'class_1/text.png', 'class_1/empty.png')


@pytest.fixture(scope='module')
def bad_folder(tmp_path_factory):
    """8 good PNGs (2 classes) + a truncated JPEG, a text file named .png
    and an empty file."""
    root = tmp_path_factory.mktemp('bad_folder')
    rng = np.random.RandomState(0)
    good = []
    for c in range(2):
        os.makedirs(root / f'class_{c}')
        for i in range(4):
            img = rng.randint(0, 255, (16, 16, 3), dtype=np.uint8)
            path = str(root / f'class_{c}' / f'good_{i}.png')
            assert cv2.imwrite(path, img)
            good.append(path)
    ok, jpg = cv2.imencode('.jpg', rng.randint(0, 255, (32, 32, 3),
                                               dtype=np.uint8))
    jpg = jpg.tobytes()
    (root / BAD[0]).write_bytes(jpg[:len(jpg) // 2])
    (root / BAD[1]).write_text('this is not an image\n')
    (root / BAD[2]).write_bytes(b'')
    return str(root), sorted(good), sorted(str(root / b) for b in BAD)


class _LogFile:
    """A fresh current MMLogger with a file handler: dataloader workers
    (forked) inherit it, so their warnings land in the same file."""

    def __init__(self, path):
        from mmengine.logging import MMLogger
        self.path = str(path)
        self.logger = MMLogger.get_instance(f'bad_data_{uuid.uuid4().hex}')
        self.handler = logging.FileHandler(self.path, mode='a')
        self.handler.setLevel(logging.WARNING)
        self.logger.addHandler(self.handler)

    def text(self):
        self.handler.flush()
        with open(self.path) as f:
            return f.read()

    def close(self):
        self.logger.removeHandler(self.handler)
        self.handler.close()


@pytest.fixture
def log_file(tmp_path):
    log = _LogFile(tmp_path / 'warnings.log')
    yield log
    log.close()


def _dataset(root, on_error, **kwargs):
    from mmengine.registry import init_default_scope
    from mmpretrain.datasets import CustomDataset
    init_default_scope('mmpretrain')
    return CustomDataset(
        data_root=root,
        pipeline=[
            dict(type='kdep_mm.LoadImageOrSkip', on_error=on_error),
            dict(type='PackInputs'),
        ],
        **kwargs)


def _loader(dataset, num_workers):
    from mmengine.dataset import pseudo_collate
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=3,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=pseudo_collate,
        worker_init_fn=lambda i: np.random.seed(i))


def _iterate(loader):
    """All batches; the workers are shut down even when a batch raises (an
    iterator left to the garbage collector can cost seconds later)."""
    it = iter(loader)
    try:
        return list(it)
    finally:
        if hasattr(it, '_shutdown_workers'):  # num_workers > 0
            it._shutdown_workers()


def test_bad_files_are_listed_by_the_dataset(bad_folder):
    root, good, bad = bad_folder
    ds = _dataset(root, 'skip')
    paths = sorted(ds.get_data_info(i)['img_path'] for i in range(len(ds)))
    assert paths == sorted(good + bad)  # CustomDataset lists them all


def test_skip_mode_with_workers_yields_only_good_images(bad_folder,
                                                        log_file):
    root, good, bad = bad_folder
    ds = _dataset(root, 'skip')
    seen = []
    for batch in _iterate(_loader(ds, num_workers=2)):
        assert batch['inputs'][0].shape == (3, 16, 16)
        seen += [s.img_path for s in batch['data_samples']]
    # as many samples as the dataset has: every bad one replaced by a good
    # image drawn by mmengine's refetch
    assert len(seen) == len(good) + len(bad)
    assert set(seen) <= set(good)
    assert set(good) <= set(seen)
    text = log_file.text()
    for path in bad:
        assert f'skipped {path}' in text, text
    assert 'empty file' in text and 'not an image' in text
    assert 'could not decode' in text  # the truncated JPEG
    assert 'unreadable file(s) skipped so far' in text
    # once per file and process (here: 2 workers)
    for path in bad:
        assert 1 <= text.count(f'skipped {path}') <= 2


def test_skip_mode_counts_and_warns_once_per_file(bad_folder, log_file):
    root, good, bad = bad_folder
    load = LoadImageOrSkip(on_error='skip')
    for _ in range(2):
        for path in bad:
            assert load(dict(img_path=path)) is None
    assert load.skipped_files == {p: 2 for p in bad}
    out = load(dict(img_path=good[0]))
    assert out['img'].shape == (16, 16, 3) and out['ori_shape'] == (16, 16)
    text = log_file.text()
    assert [text.count(f'skipped {p}') for p in bad] == [1, 1, 1]
    for n in (1, 2, 3):
        assert f'({n} unreadable file(s) skipped so far' in text
    # a missing file is a bad file too
    assert load(dict(img_path=osp.join(root, 'gone.png'))) is None
    assert 'gone.png: file not found' in log_file.text()


def _iteration_error(root, num_workers):
    """The OSError that iterating the ``on_error='raise'`` dataset of
    ``root`` through a loader of ``num_workers`` workers raises."""
    ds = _dataset(root, 'raise')
    with pytest.raises(OSError) as info:
        _iterate(_loader(ds, num_workers=num_workers))
    return info.value


def test_raise_mode_names_the_file(bad_folder):
    root, good, bad = bad_folder
    error = _iteration_error(root, num_workers=0)
    msg = str(error)
    assert isinstance(error, ImageLoadError)
    assert any(p in msg for p in bad), msg
    assert "on_error='skip'" in msg
    # every bad file is refused by name, with its reason
    load = LoadImageOrSkip(on_error='raise')
    for path, reason in zip(bad, ('could not decode', 'empty file',
                                  'not an image')):
        with pytest.raises(OSError, match='cannot load image .*'):
            load(dict(img_path=path))
        try:
            load(dict(img_path=path))
        except OSError as e:
            assert path in str(e)
    with pytest.raises(OSError, match='gone.png: file not found'):
        load(dict(img_path=osp.join(root, 'gone.png')))


def test_raise_mode_error_surfaces_from_a_worker(bad_folder):
    root, good, bad = bad_folder
    msg = str(_iteration_error(root, num_workers=2))
    assert 'DataLoader worker' in msg
    assert any(f'cannot load image {p}' in msg for p in bad), msg


def test_all_files_bad_gives_a_clear_error(tmp_path, log_file):
    root = tmp_path / 'all_bad'
    os.makedirs(root / 'a')
    for i in range(3):
        (root / 'a' / f'{i}.jpg').write_text('nope')
    ds = _dataset(str(root), 'skip')
    with pytest.raises(ImageLoadError) as info:
        ds[0]
    msg = str(info.value)
    # ours, before mmengine's generic 'Cannot find valid image after 1000'
    assert 'were all unreadable' in msg and 'is every file' in msg, msg
    assert 'Cannot find valid image' not in msg
    assert str(root / 'a') in msg
    # same from a worker
    with pytest.raises(OSError, match='were all unreadable'):
        _iterate(_loader(ds, num_workers=2))


def test_transform_arguments():
    with pytest.raises(ValueError, match='on_error'):
        LoadImageOrSkip(on_error='ignore')
    with pytest.raises(ValueError, match="on_error='skip'"):
        LoadImageOrSkip(ignore_empty=True)
    with pytest.raises(ValueError, match='max_consecutive_skips'):
        LoadImageOrSkip(max_consecutive_skips=0)
    assert "on_error='raise'" in repr(LoadImageOrSkip(on_error='raise'))


# --------------------------------------------- the real hymenoptera folder
@pytest.fixture(scope='module')
def hymenoptera_with_gif():
    from mmengine.registry import init_default_scope
    from mmpretrain.datasets import CustomDataset

    from shared_data import unpack_shared
    init_default_scope('mmpretrain')
    root = unpack_shared('hymenoptera.tar')
    gif = osp.join(root, 'hymenoptera_data', 'train', 'ants',
                   'imageNotFound.gif')
    if not osp.isfile(gif):
        gif = osp.join(root, 'train', 'ants', 'imageNotFound.gif')
    assert osp.isfile(gif)
    train = osp.dirname(osp.dirname(gif))

    def build(on_error):
        return CustomDataset(
            data_root=train,
            extensions=('.jpg', '.jpeg', '.png', '.gif'),
            pipeline=[LoadImageOrSkip(on_error=on_error)])

    return build, gif


def test_hymenoptera_gif_skipped_in_skip_mode(hymenoptera_with_gif,
                                              log_file):
    build, gif = hymenoptera_with_gif
    ds = build('skip')
    paths = [ds.get_data_info(i)['img_path'] for i in range(len(ds))]
    assert len(paths) == 245 and gif in paths  # '.gif' listed on purpose
    idx = paths.index(gif)
    assert ds.prepare_data(idx) is None
    np.random.seed(0)
    out = ds[idx]  # refetched: another (good) image
    assert out['img_path'] != gif and out['img'].ndim == 3
    text = log_file.text()
    assert f'skipped {gif}: a GIF image, not one of the accepted formats' \
        in text, text
    assert '(1 unreadable file(s) skipped so far' in text


def test_hymenoptera_gif_refused_in_raise_mode(hymenoptera_with_gif):
    build, gif = hymenoptera_with_gif
    ds = build('raise')
    idx = [ds.get_data_info(i)['img_path']
           for i in range(len(ds))].index(gif)
    with pytest.raises(ImageLoadError, match='imageNotFound.gif: a GIF'):
        ds[idx]
    # its neighbours load
    assert ds[idx - 1]['img'].ndim == 3
