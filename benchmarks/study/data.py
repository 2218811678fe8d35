"""Splits of the study and the downstream images decoded once into arrays.

CIFAR-10 train is split per class (seed ``pool_seed``) into disjoint parts:
the pre-training pool (``pool_per_class``; its 10% a class-balanced tenth),
the probe's training images and the probe's validation images (sweeps).
The probe is tested on the full 10,000-image test set. Arrays (uint8, BGR
as ``LoadImageFromFile`` decodes them) are cached in ``<results>/cache`` as
``.npz`` files keyed by the list they were decoded from.
"""
import hashlib
import os
import os.path as osp
import random

import numpy as np
from shared_data import unpack_shared

from kdep_mm.datasets.subset import scan_image_folder

from .spec import TEACHER_FILE


class Ctx:
    """What a cell needs: the spec, data roots, split lists, folders."""

    def __init__(self, args, study):
        self.args, self.study = args, study
        self.smoke = bool(args.smoke)
        self.device = getattr(args, 'device', 'cpu')
        self.rdir = osp.abspath(args.results_dir)
        # GPU path (configs/study/study_gpu.py): pool images served from
        # decoded arrays; the downstream arrays from a prepared pack
        # (--data-pack) instead of the three archives, which do not travel
        self.in_memory = bool(study.get('in_memory', False))
        pack_dir = getattr(args, 'data_pack', None)
        self.pack = ProbePack(pack_dir, study, self.smoke) if pack_dir \
            else None
        self.cifar = unpack_shared('cifar10_jpeg.tar.gz')
        if self.pack is None:
            self.hym = unpack_shared('hymenoptera.tar')
            self.bccd = unpack_shared('bccd_voc.tar')
            self.camvid = unpack_shared('camvid_jpeg.tar.gz')
        else:
            self.hym = self.bccd = self.camvid = None
        if self.in_memory:
            register_array_dataset()
        self.teacher_ckpt = osp.join(unpack_shared('cifar10_resnets'),
                                     TEACHER_FILE)
        for sub in ('splits', 'exports', 'runs', 'cache', 'pca'):
            os.makedirs(osp.join(self.rdir, sub), exist_ok=True)
        self.splits = osp.join(self.rdir, 'splits')
        self.exports = osp.join(self.rdir, 'exports')
        self.runs = osp.join(self.rdir, 'runs')
        self.cache = osp.join(self.rdir, 'cache')
        self._write_splits()

    # ------------------------------------------------------------ splits
    def _write(self, name, pairs):
        from kdep_mm.utils.checkpoint import atomic_write_bytes
        path = osp.join(self.splits, name)
        data = ''.join(f'{p} {lab}\n' for p, lab in pairs).encode()
        if not osp.isfile(path) or open(path, 'rb').read() != data:
            atomic_write_bytes(data, path)
        return path

    def _write_splits(self):
        st = self.study
        sizes = [st.pool_per_class, st.probe.cifar_train_per_class,
                 st.probe.cifar_val_per_class]
        if st.get('pool_takes_rest', False):
            # the pool also takes every train image after the probe's parts
            # (the probe's images are the CPU study's, still disjoint)
            parts = cifar_parts(osp.join(self.cifar, 'train'), st.pool_seed,
                                sizes + [None])
            parts = [sorted(parts[0] + parts[3], key=lambda t: (t[1], t[0]))
                     ] + parts[1:3]
        else:
            parts = cifar_parts(osp.join(self.cifar, 'train'), st.pool_seed,
                                sizes)
        pool, ptrain, pval = parts
        pool10 = tenth(pool, st.pool_fraction, st.pool_seed)
        test = cifar_parts(osp.join(self.cifar, 'test'), 0, [None])[0]
        if self.smoke:
            sm = st.smoke
            pool = pool10 = every_class(pool, sm.train_images)
            ptrain = every_class(ptrain, sm.eval_images)
            pval = every_class(pval, sm.eval_images)
            test = every_class(test, sm.eval_images)
            pca = every_class(parts[0], sm.pca_images)
        else:
            pca = pool10
        self.lists = dict(pool_100=pool, pool_10=pool10, pca=pca,
                          probe_train=ptrain, probe_val=pval, test=test)
        self.files = {k: self._write(f'cifar10_{k}.txt', v)
                      for k, v in self.lists.items()}

    def n(self, split):
        return len(self.lists[split])

    # ------------------------------------------------------------ arrays
    def cached(self, name, key, build):
        """``build()`` -> dict of arrays, cached as ``<cache>/name-<key>.npz``
        (atomic; a second process just rebuilds the same file)."""
        path = osp.join(self.cache, f'{name}-{key}.npz')
        if osp.isfile(path):
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        arrays = build()
        tmp = f'{path}.{os.getpid()}.tmp.npz'
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return arrays

    def cifar_arrays_file(self, split):
        """The cached ``.npz`` of :meth:`cifar_arrays` (built if missing)."""
        self.cifar_arrays(split)
        key = hashlib.sha256(repr(self.lists[split]).encode()).hexdigest()
        return osp.join(self.cache, f'cifar_{split}-{key[:16]}.npz')

    def array_dataset_cfg(self, split, pipeline):
        """The in-memory stand-in for a CustomDataset config on ``split``:
        the same pipeline after its LoadImageFromFile step."""
        steps = [dict(t) for t in pipeline]
        if not steps or steps[0]['type'] != 'LoadImageFromFile':
            raise ValueError('in_memory: the pipeline must start with '
                             f'LoadImageFromFile, got {steps[:1]}')
        return dict(type='StudyArrayDataset',
                    arrays=self.cifar_arrays_file(split), pipeline=steps[1:])

    def cifar_arrays(self, split):
        pairs = self.lists[split]
        root = osp.join(self.cifar, 'test' if split == 'test' else 'train')
        key = hashlib.sha256(repr(pairs).encode()).hexdigest()[:16]

        def build():
            import mmcv
            imgs = np.stack([mmcv.imread(osp.join(root, p)) for p, _ in pairs])
            return dict(x=imgs, y=np.array([lab for _, lab in pairs]))
        return self.cached(f'cifar_{split}', key, build)


def cifar_parts(root, seed, sizes):
    """Disjoint class-balanced parts of an image folder: per class, the
    sorted files are shuffled with ``seed`` and cut into ``sizes`` (None =
    all the rest). Returns lists of (``class/file``, label), sorted."""
    classes, files = scan_image_folder(root)
    out = [[] for _ in sizes]
    for label, cls in enumerate(classes):
        names = list(files[cls])
        random.Random(seed * 1000 + label).shuffle(names)
        start = 0
        for i, n in enumerate(sizes):
            stop = len(names) if n is None else start + n
            if stop > len(names):
                raise ValueError(f'{root}/{cls}: {len(names)} images, the '
                                 f'study asks for {sum(s or 0 for s in sizes)}')
            out[i] += [(f'{cls}/{osp.basename(p)}', label)
                       for p in names[start:stop]]
            start = stop
    return [sorted(o, key=lambda t: (t[1], t[0])) for o in out]


def tenth(pool, fraction, seed):
    """A class-balanced ``fraction`` of ``pool``, deterministic in seed."""
    by = {}
    for p, lab in pool:
        by.setdefault(lab, []).append((p, lab))
    rng = random.Random(seed + 1)
    out = []
    for lab in sorted(by):
        items = sorted(by[lab])
        out += sorted(rng.sample(items, max(1, round(fraction * len(items)))))
    return out


def every_class(pairs, n):
    """About ``n`` items, round-robin over the classes (smoke runs)."""
    by = {}
    for p, lab in pairs:
        by.setdefault(lab, []).append((p, lab))
    out, i = [], 0
    while len(out) < n and any(len(v) > i for v in by.values()):
        out += [v[i] for _, v in sorted(by.items()) if len(v) > i]
        i += 1
    return sorted(out[:n], key=lambda t: (t[1], t[0]))


# ------------------------------------------------- out-of-domain arrays
BCCD_CLASSES = ('RBC', 'WBC', 'Platelets')


def bccd_crops(ctx, split):
    """Cell crops cut from the BCCD VOC boxes (``trainval`` or ``test``
    images), resized to ``probe.bccd_crop_px`` square; degenerate boxes
    (under 4 px a side) skipped. x: (N, s, s, 3) uint8 BGR, y: class."""
    import xml.etree.ElementTree as ET

    if getattr(ctx, 'pack', None) is not None:
        return ctx.pack.arrays(f'bccd_{split}')
    import mmcv
    px = ctx.study.probe.bccd_crop_px
    ids = open(osp.join(ctx.bccd, 'ImageSets/Main', f'{split}.txt')
               ).read().split()
    if ctx.smoke:
        ids = ids[:3]
    key = hashlib.sha256(f'{ids}{px}'.encode()).hexdigest()[:16]

    def build():
        xs, ys = [], []
        for i in ids:
            img = mmcv.imread(osp.join(ctx.bccd, 'JPEGImages', f'{i}.jpg'))
            root = ET.parse(osp.join(ctx.bccd, 'Annotations', f'{i}.xml'))
            for obj in root.findall('object'):
                name = obj.find('name').text.strip()
                if name not in BCCD_CLASSES:
                    continue
                bb = obj.find('bndbox')
                x0, y0, x1, y1 = (int(float(bb.find(k).text)) for k in
                                  ('xmin', 'ymin', 'xmax', 'ymax'))
                x0, y0 = max(0, x0), max(0, y0)
                x1, y1 = min(img.shape[1], x1), min(img.shape[0], y1)
                if x1 - x0 < 4 or y1 - y0 < 4:
                    continue
                xs.append(mmcv.imresize(img[y0:y1, x0:x1], (px, px)))
                ys.append(BCCD_CLASSES.index(name))
        return dict(x=np.stack(xs), y=np.array(ys))
    return ctx.cached(f'bccd_{split}', key, build)


def camvid_arrays(ctx, split):
    """CamVid images resized to ``probe.camvid_size`` (bilinear) and their
    labels at stride 4: the majority class of each 4x4 cell among non-void
    pixels (255 where the cell is all void). x: (N, h, w, 3) uint8 BGR,
    y: (N, h/4, w/4) uint8."""
    if getattr(ctx, 'pack', None) is not None:
        return ctx.pack.arrays(f'camvid_{split}')
    import mmcv
    w, h = ctx.study.probe.camvid_size
    lines = open(osp.join(ctx.camvid, f'{split}.txt')).read().split('\n')
    lines = [ln.split() for ln in lines if ln.strip()]
    if ctx.smoke:
        lines = lines[:2]
    key = hashlib.sha256(f'{lines}{w}{h}'.encode()).hexdigest()[:16]

    def build():
        xs, ys = [], []
        for img_rel, lab_rel in lines:
            img = mmcv.imread(osp.join(ctx.camvid, img_rel))
            lab = mmcv.imread(osp.join(ctx.camvid, lab_rel), flag='unchanged')
            xs.append(mmcv.imresize(img, (w, h)))
            lab = mmcv.imresize(lab, (w, h), interpolation='nearest')
            ys.append(majority_cells(lab, 4, num_classes=11, ignore=11))
        return dict(x=np.stack(xs), y=np.stack(ys))
    return ctx.cached(f'camvid_{split}', key, build)


def majority_cells(lab, s, num_classes, ignore):
    """(H, W) labels -> (H/s, W/s): per s x s cell the most frequent class
    other than ``ignore``; 255 where every pixel is ``ignore``."""
    hh, ww = lab.shape[0] // s, lab.shape[1] // s
    cells = lab[:hh * s, :ww * s].reshape(hh, s, ww, s).transpose(0, 2, 1, 3)
    cells = cells.reshape(hh, ww, s * s)
    counts = np.stack([(cells == c).sum(-1) for c in range(num_classes)], -1)
    out = counts.argmax(-1).astype(np.uint8)
    out[counts.sum(-1) == 0] = 255
    return out


def hymenoptera_arrays(ctx):
    """Every readable hymenoptera image (train and val pooled, for k-fold
    cross-validation), the shorter side resized to ``probe.hymenoptera_px``
    and centre-cropped square. y: 0 ants, 1 bees."""
    if getattr(ctx, 'pack', None) is not None:
        return ctx.pack.arrays('hymenoptera')
    import mmcv
    px = ctx.study.probe.hymenoptera_px
    items = []
    for part in ('train', 'val'):
        for label, cls in enumerate(('ants', 'bees')):
            d = osp.join(ctx.hym, part, cls)
            items += [(osp.join(d, f), label) for f in sorted(os.listdir(d))
                      if f.lower().endswith(('.jpg', '.jpeg', '.png'))]
    if ctx.smoke:
        items = items[:6] + items[-6:]
    key = hashlib.sha256(f'{items}{px}'.encode()).hexdigest()[:16]

    def build():
        xs, ys = [], []
        for path, label in items:
            try:
                img = mmcv.imread(path)
            except Exception:  # noqa: BLE001 - the set ships a .gif stub
                img = None
            if img is None:
                continue
            img = mmcv.imrescale(img, px / min(img.shape[:2]))
            hh, ww = img.shape[:2]
            t, lft = (hh - px) // 2, (ww - px) // 2
            xs.append(img[t:t + px, lft:lft + px])
            ys.append(label)
        return dict(x=np.stack(xs), y=np.array(ys))
    return ctx.cached('hymenoptera', key, build)


def stratified_folds(y, k, seed=0):
    """Fold index per sample: each class shuffled (seed) and dealt round
    robin into ``k`` folds; the same folds for every arm (paired)."""
    folds = np.zeros(len(y), dtype=np.int64)
    rng = np.random.RandomState(seed)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        folds[idx] = np.arange(len(idx)) % k
    return folds


# ------------------------------------------- the GPU path (study_gpu.py)
def register_array_dataset():
    """Register ``StudyArrayDataset`` (mmengine's root DATASETS registry,
    found from any scope): images served from a decoded uint8 array file
    (``x``: (N, H, W, 3) BGR, as LoadImageFromFile decodes them; ``y``:
    labels), then the rest of the training pipeline (RandomCrop with the
    mean-colour padding, RandomFlip, PackInputs): the same augmentation as
    the CustomDataset path with no per-step JPEG decode."""
    from mmengine.dataset import BaseDataset
    from mmengine.registry import DATASETS
    if 'StudyArrayDataset' in DATASETS.module_dict:
        return DATASETS.module_dict['StudyArrayDataset']

    class StudyArrayDataset(BaseDataset):

        def __init__(self, arrays, pipeline=(), **kwargs):
            self.arrays = arrays
            kwargs.setdefault('serialize_data', False)
            super().__init__(ann_file='', pipeline=list(pipeline), **kwargs)

        def load_data_list(self):
            with np.load(self.arrays) as z:
                self._x, self._y = z['x'], z['y'].astype(np.int64)
            if self._x.ndim != 4 or self._x.shape[-1] != 3 or \
                    self._x.dtype != np.uint8 or len(self._x) != len(self._y):
                raise ValueError(f'{self.arrays}: want x (N, H, W, 3) uint8 '
                                 f'and y (N,), got {self._x.shape} '
                                 f'{self._x.dtype} and {self._y.shape}')
            return [dict(gt_label=int(v)) for v in self._y]

        def get_data_info(self, idx):
            img = self._x[idx].copy()
            return dict(img=img, img_shape=img.shape[:2],
                        ori_shape=img.shape[:2], gt_label=int(self._y[idx]),
                        sample_idx=idx)

    StudyArrayDataset.__module__ = __name__
    globals()['StudyArrayDataset'] = StudyArrayDataset
    DATASETS.register_module('StudyArrayDataset', module=StudyArrayDataset)
    return StudyArrayDataset


# The downstream arrays of the frozen probes, packed for a machine that has
# not the archives (the GPU machine: its carried folder holds 64 MiB in all,
# CamVid and hymenoptera alone are 100 MB): every image losslessly as WebP
# (checked: the decoded arrays' sha256 equal those of the arrays built here).
PACK_SETS = ('bccd_trainval', 'bccd_test', 'camvid_train', 'camvid_test',
             'hymenoptera')
PACK_NPZ, PACK_META = 'probe_arrays.npz', 'probe_arrays.json'


def pack_params(study):
    p = study.probe
    return dict(bccd_crop_px=int(p.bccd_crop_px),
                camvid_size=[int(v) for v in p.camvid_size],
                hymenoptera_px=int(p.hymenoptera_px))


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def build_probe_pack(dest, study):
    """Decode the downstream sets from ../shared/data as the CPU study does
    (the same functions) and write ``dest/probe_arrays.{npz,json}``."""
    import json
    import types

    import cv2

    ctx = types.SimpleNamespace(
        study=study, smoke=False, bccd=unpack_shared('bccd_voc.tar'),
        camvid=unpack_shared('camvid_jpeg.tar.gz'),
        hym=unpack_shared('hymenoptera.tar'),
        cached=lambda name, key, build: build())
    built = dict(bccd_trainval=bccd_crops(ctx, 'trainval'),
                 bccd_test=bccd_crops(ctx, 'test'),
                 camvid_train=camvid_arrays(ctx, 'train'),
                 camvid_test=camvid_arrays(ctx, 'test'),
                 hymenoptera=hymenoptera_arrays(ctx))
    out, meta = {}, dict(params=pack_params(study), sets={})
    for name, arr in built.items():
        blobs = []
        for img in arr['x']:
            ok, buf = cv2.imencode('.webp', img, [cv2.IMWRITE_WEBP_QUALITY,
                                                  101])  # > 100: lossless
            if not ok:
                raise RuntimeError(f'{name}: WebP encoding failed')
            blobs.append(buf.reshape(-1))
        off = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        out[f'{name}.webp'] = np.concatenate(blobs)
        out[f'{name}.offsets'] = off
        out[f'{name}.y'] = arr['y']
        meta['sets'][name] = dict(n=len(arr['x']), shape=list(arr['x'].shape),
                                  x_sha256=_sha(arr['x']),
                                  y_sha256=_sha(arr['y']))
    os.makedirs(dest, exist_ok=True)
    np.savez(osp.join(dest, PACK_NPZ), **out)
    with open(osp.join(dest, PACK_META), 'w') as f:
        json.dump(meta, f, indent=1)
    pack = ProbePack(dest, study, smoke=False)
    for name in PACK_SETS:  # the round trip is exact
        pack.arrays(name)
    return meta


class ProbePack:
    """The downstream arrays from ``probe_arrays.{npz,json}``, decoded once
    and checked against the sha256s recorded when the pack was built. With
    ``smoke`` a few items of each set (plumbing runs)."""

    def __init__(self, folder, study, smoke=False):
        import json
        self.folder, self.smoke = folder, smoke
        with open(osp.join(folder, PACK_META)) as f:
            self.meta = json.load(f)
        if self.meta['params'] != pack_params(study):
            raise ValueError(f'{folder}: the pack was built with '
                             f"{self.meta['params']}, the spec asks for "
                             f'{pack_params(study)}: rebuild it')
        self._arrays = {}

    def arrays(self, name):
        if name not in self._arrays:
            import cv2
            with np.load(osp.join(self.folder, PACK_NPZ)) as z:
                data, off = z[f'{name}.webp'], z[f'{name}.offsets']
                y = z[f'{name}.y']
            x = np.stack([cv2.imdecode(data[off[i]:off[i + 1]],
                                       cv2.IMREAD_COLOR)
                          for i in range(len(off) - 1)])
            want = self.meta['sets'][name]
            if _sha(x) != want['x_sha256'] or _sha(y) != want['y_sha256']:
                raise ValueError(f'{self.folder}: {name} does not decode to '
                                 'the arrays it was built from')
            if self.smoke:
                keep = (np.r_[0:6, len(x) - 6:len(x)] if name == 'hymenoptera'
                        else np.arange(min(len(x), 2 if 'camvid' in name
                                           else 64)))
                x, y = x[keep], y[keep]
            self._arrays[name] = dict(x=x, y=y)
        return self._arrays[name]
