"""Run a teacher over a dataset once and store its outputs per view.

:class:`TeacherCacher` is the library side of ``tools/cache_teacher.py``:
for every image of a dataset it draws ``V`` views (crop box + flip,
deterministic in ``(seed, sample index)`` so that reruns and ranks agree,
:func:`~kdep_mm.datasets.store.draw_views`), crops them with
:func:`~kdep_mm.datasets.store.crop_view` (the crop that
``kdep_mm.ApplyStoredView`` repeats at training time), runs the teacher and
writes the pooled pre-activation feature and/or the logits (optionally
top-k probabilities in float16 with exact indices) through
:class:`~kdep_mm.datasets.store.TeacherStoreWriter`: rank-sharded,
resumable (finished shards are skipped), verified.

Its options come in four groups (each a dataclass or the dict of one):
:class:`ViewSpec` (which views), :class:`OutputSpec` (which outputs),
:class:`RunSpec` (sharding, batching, ranks, logging) and
:class:`TeacherRecord` (what the manifest records about the teacher).
"""
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.utils import ProgressBar

from kdep_mm.datasets.store import (VIEW_MODES, TeacherStore,
                                    TeacherStoreWriter, build_manifest,
                                    crop_view, dataset_identity, draw_views,
                                    pipeline_decoder)
from kdep_mm.models.teachers import FrozenTeacher, teacher_fingerprint
from kdep_mm.models.utils import (FeatureRecorder, global_pool, last_output,
                                  resolve_feature_layer)
from kdep_mm.utils.checkpoint import checkpoint_sha256
from kdep_mm.utils.topk import encode_topk, topk_fields

FIELDS = ('feat', 'logits')


@dataclass
class ViewSpec:
    """The ``num_views`` views cached per image.

    Args:
        num_views (int): V, views per image.
        view_mode (str): ``'random'`` (``sample_view``, RandomResizedCrop
            style + flip) or ``'center'`` (``center_view``, the cheap
            ``V = 1`` mode).
        out_size (int | tuple): crop output size (``ApplyStoredView``'s
            ``scale``).
        seed (int): seed of the views (with the sample index).
        view_kwargs (dict, optional): extra kwargs of ``sample_view`` /
            ``center_view`` (``scale``, ``ratio``, ``flip_prob`` /
            ``crop_frac``); recorded in the manifest.
        interpolation (str): cv2 interpolation of ``crop_view``.
        views_from (str | TeacherStore, optional): copy the views (boxes
            and flips) of this store instead of drawing them, so that
            several teachers are cached on exactly the same views (an
            ensemble). Its ``shard_size``, ``view_mode``, ``seed`` and
            ``view_kwargs`` are used (``num_views`` must match), its
            dataset identity must be this dataset's, and the manifest
            records it under ``views_from``.
    """
    num_views: int = 1
    view_mode: str = 'random'
    out_size: Union[int, Sequence[int]] = 224
    seed: int = 0
    view_kwargs: Optional[dict] = None
    interpolation: str = 'bilinear'
    views_from: Union[str, TeacherStore, None] = None

    def __post_init__(self):
        if self.view_mode not in VIEW_MODES:
            raise ValueError(f'view_mode must be one of {VIEW_MODES}, got '
                             f'{self.view_mode!r}')
        if self.view_mode == 'center' and self.num_views != 1:
            raise ValueError("view_mode='center' stores one fixed view: use "
                             f'num_views=1 (got {self.num_views})')

    @property
    def out_hw(self) -> Tuple[int, int]:
        size = self.out_size
        return (int(size), ) * 2 if isinstance(size, int) else tuple(
            int(s) for s in size)


@dataclass
class OutputSpec:
    """What is stored of the teacher's output on each view.

    Args:
        fields (sequence): ``'feat'`` (pooled pre-activation feature, as
            KDEP's teacher features) and/or ``'logits'``.
        topk (int, optional): store ``logits`` as top-k softmax
            probabilities (float16) + exact int32 indices
            (``logits_topk_prob`` / ``logits_topk_idx``) instead of full
            float32 logits.
        teacher_feature (str, optional): module of the teacher backbone
            whose input is the feature; ``default_feature_layer`` if None.
    """
    fields: Sequence[str] = FIELDS
    topk: Optional[int] = None
    teacher_feature: Optional[str] = None

    def __post_init__(self):
        self.fields = tuple(self.fields)
        bad = [f for f in self.fields if f not in FIELDS]
        if bad or not self.fields:
            raise ValueError(f'fields must be a non-empty subset of '
                             f'{FIELDS}, got {self.fields}')
        if self.topk is not None and 'logits' not in self.fields:
            raise ValueError('topk needs the logits field')


@dataclass
class RunSpec:
    """How the caching runs.

    Args:
        shard_size (int): images per shard.
        batch_size (int): crops per teacher forward. Batches never cross a
            shard, so a shard's bytes do not depend on the rank layout.
        rank, world_size (int): this process writes shards
            ``s % world_size == rank``.
        progress (bool): show an mmengine ``ProgressBar``.
        logger: where the throughput line goes (``print_log``).
        max_shards (int, optional): stop after writing this many shards
            (tests of resuming; a rerun completes the store).
    """
    shard_size: int = 1024
    batch_size: int = 64
    rank: int = 0
    world_size: int = 1
    progress: bool = True
    logger: Union[str, logging.Logger, None] = 'current'
    max_shards: Optional[int] = None

    def __post_init__(self):
        if self.batch_size <= 0:
            raise ValueError(f'batch_size must be positive, got '
                             f'{self.batch_size}')


@dataclass
class TeacherRecord:
    """What the manifest records about the teacher (besides its weights
    fingerprint, always recorded).

    Args:
        teacher_config: the teacher's model config (JSON-able).
        teacher_checkpoint (str, optional): path or URL of its weights.
        teacher_checkpoint_sha256 (str, optional): sha256 of the
            checkpoint's file (the identity ``FitBasisHook.
            teacher_checkpoint`` and ``CheckTeacherStoresHook.
            teacher_checkpoints`` check). None: computed from
            ``teacher_checkpoint`` when that is a local file or a
            downloaded URL, else not recorded (warned).
        manifest_extra (dict, optional): more manifest keys.
    """
    teacher_config: object = None
    teacher_checkpoint: Optional[str] = None
    teacher_checkpoint_sha256: Optional[str] = None
    manifest_extra: dict = field(default_factory=dict)


def _spec(cls, value):
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        return cls(**value)
    raise TypeError(f'{cls.__name__}: a dict or a {cls.__name__}, got '
                    f'{type(value).__name__}')


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC (or HW) uint8 image -> CHW tensor, as mmpretrain's PackInputs."""
    if img.ndim == 2:
        img = img[..., None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def _load_image(dataset, index: int) -> np.ndarray:
    results = dataset[index]
    img = results.get('img') if isinstance(results, dict) else None
    if not isinstance(img, np.ndarray):
        raise TypeError(
            f'dataset[{index}] must be a dict with the decoded image in '
            f"'img' (a pipeline ending with LoadImageFromFile), got "
            f'{type(results).__name__}')
    return img


def _describe(module) -> Optional[dict]:
    """A JSON-able description of a data preprocessor (type, mean, std,
    channel order), for the manifest."""
    if module is None:
        return None
    desc = dict(type=type(module).__name__)
    for name in ('mean', 'std'):
        value = getattr(module, name, None)
        if isinstance(value, torch.Tensor):
            desc[name] = [float(x) for x in value.flatten()]
    for name in ('_channel_conversion', 'to_rgb'):
        if hasattr(module, name):
            desc['to_rgb'] = bool(getattr(module, name))
            break
    return desc


class TeacherCacher:
    """Cache a teacher's outputs on ``V`` views of every dataset image.

    ``TeacherCacher(teacher, dataset, root, views, outputs, run, record,
    data_preprocessor).run()`` (or calling it) writes this rank's pending
    shards of the store under ``root`` and returns ``written`` /
    ``skipped`` shard lists of this rank, ``images`` (images cached by this
    rank), ``seconds``, ``images_per_s``, ``fingerprint``, ``fields``,
    ``num_shards`` and ``root``.

    Args:
        teacher (nn.Module | FrozenTeacher): an mmpretrain
            ``ImageClassifier`` (feature and logits) or a bare backbone
            (feature only). Put in eval mode; it runs under
            ``torch.no_grad``.
        dataset: ``dataset[i]`` must return a dict whose ``'img'`` is the
            decoded original image (HWC uint8, e.g. mmpretrain's
            ``CustomDataset`` with ``pipeline=[dict(type=
            'LoadImageFromFile')]``); the training side's
            ``ApplyStoredView`` must receive the same image. The settings
            of its pipeline's ``LoadImageFromFile`` are recorded in the
            manifest's ``decoder``.
        root (str): the store directory.
        views (ViewSpec | dict), outputs (OutputSpec | dict), run (RunSpec |
            dict), record (TeacherRecord | dict): the option groups.
        data_preprocessor: normalisation of the packed crops (e.g.
            mmpretrain ``ClsDataPreprocessor``), called as
            ``data_preprocessor(dict(inputs=[CHW uint8 tensors]), False)``.
            None: the crops are stacked as float, unnormalised.
    """

    def __init__(self, teacher: Union[nn.Module, FrozenTeacher], dataset,
                 root: str, views=None, outputs=None, run=None, record=None,
                 data_preprocessor: Optional[nn.Module] = None):
        self.teacher = teacher.module if isinstance(
            teacher, FrozenTeacher) else teacher
        self.dataset, self.root = dataset, root
        self.views = _spec(ViewSpec, views)
        self.outputs = _spec(OutputSpec, outputs)
        self.opts = _spec(RunSpec, run)
        self.record = _spec(TeacherRecord, record)
        self.data_preprocessor = data_preprocessor
        self.need_feat = 'feat' in self.outputs.fields
        # the recorder of the pooled feature's layer, while run() runs
        self.recorder: Optional[FeatureRecorder] = None
        self.feature_layer: Optional[str] = None
        self.need_logits = 'logits' in self.outputs.fields
        if self.need_logits and not hasattr(self.teacher, 'head'):
            raise ValueError(
                f'logits requested but the teacher '
                f'({type(self.teacher).__name__}) has no head; cache '
                'fields=("feat",) only')

    # ------------------------------------------------------------ teacher
    def _preprocess(self, imgs: List[np.ndarray]) -> torch.Tensor:
        tensors = [_to_tensor(img) for img in imgs]
        if self.data_preprocessor is None:
            return torch.stack(tensors).float()
        return self.data_preprocessor(dict(inputs=tensors), False)['inputs']

    @torch.no_grad()
    def _forward(self, imgs: List[np.ndarray]) -> Dict[str, np.ndarray]:
        """The teacher's pooled feature and/or logits of a batch of crops,
        from one forward."""
        inputs = self._preprocess(imgs)
        self.teacher.eval()
        out = {}
        if self.recorder is not None:
            self.recorder.reset()
        if self.need_logits:
            logits = last_output(self.teacher(inputs, mode='tensor'))
            out['logits'] = logits.float().cpu().numpy()
        else:
            getattr(self.teacher, 'backbone', self.teacher)(inputs)
        if self.recorder is not None:
            out['feat'] = global_pool(
                self.recorder.pop()).float().cpu().numpy()
        return out

    def _field_specs(self) -> Tuple[dict, Optional[int]]:
        """The store fields (from one dummy forward) and the class count."""
        probe = self._forward([np.zeros((*self.views.out_hw, 3), np.uint8)])
        specs, num_classes = {}, None
        if self.need_feat:
            specs['feat'] = (probe['feat'].shape[1:], 'float32')
        if self.need_logits:
            num_classes = int(probe['logits'].shape[-1])
            if self.outputs.topk is None:
                specs['logits'] = (probe['logits'].shape[1:], 'float32')
            else:
                specs.update(topk_fields('logits', int(self.outputs.topk)))
        return specs, num_classes

    # ----------------------------------------------------------- manifest
    def _checkpoint_sha256(self) -> Optional[str]:
        rec = self.record
        if rec.teacher_checkpoint_sha256 is not None or \
                not rec.teacher_checkpoint:
            return rec.teacher_checkpoint_sha256
        try:
            return checkpoint_sha256(rec.teacher_checkpoint, download=False)
        except (OSError, ValueError):
            print_log(
                f'teacher checkpoint {rec.teacher_checkpoint} is not a local '
                'file: its sha256 is not recorded, and store-mode runs that '
                'check the teacher checkpoint will refuse this store',
                logger=self.opts.logger, level=logging.WARNING)
            return None

    def _manifest(self, views: ViewSpec, num_classes: Optional[int],
                  extra: dict) -> dict:
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='crop_view', out_size=list(views.out_hw),
                 interpolation=views.interpolation,
                 view_mode=views.view_mode,
                 view_kwargs=dict(views.view_kwargs or {}),
                 seed=int(views.seed)),
            dict(type='PackInputs'),
            dict(type='data_preprocessor',
                 cfg=_describe(self.data_preprocessor)),
        ]
        rec = self.record
        return build_manifest(
            teacher_fingerprint=self.fingerprint,
            dataset=dataset_identity(self.dataset),
            teacher_config=rec.teacher_config,
            teacher_checkpoint=rec.teacher_checkpoint,
            teacher_checkpoint_sha256=self._checkpoint_sha256(),
            decoder=pipeline_decoder(self.dataset),
            pipeline=pipeline,
            view_mode=views.view_mode,
            out_size=list(views.out_hw),
            seed=int(views.seed),
            teacher_feature=self.feature_layer,
            topk=self.outputs.topk,
            num_classes=num_classes,
            **dict(rec.manifest_extra or {}, **extra))

    def _views_source(self) -> Tuple[Optional[TeacherStore], ViewSpec, dict]:
        """The store whose views are copied (checked against the dataset),
        the views actually cached, and the manifest keys recording it."""
        views = self.views
        if views.views_from is None:
            return None, views, {}
        src = views.views_from if isinstance(
            views.views_from, TeacherStore) else TeacherStore(
                str(views.views_from))
        if src.num_views != views.num_views:
            raise ValueError(f'views_from: {src.root} holds {src.num_views} '
                             f'views per image, num_views is '
                             f'{views.num_views}')
        ident = dataset_identity(self.dataset)
        if src.manifest.get('dataset') != json.loads(json.dumps(ident)):
            raise ValueError(f'views_from: {src.root} was cached from '
                             'another dataset (or the same images in '
                             f'another order): {src.manifest.get("dataset")}'
                             f' vs {ident}')
        decoder = pipeline_decoder(self.dataset)
        if src.manifest.get('decoder') != decoder:
            raise ValueError(f'views_from: {src.root} was cached from images '
                             f'decoded with {src.manifest.get("decoder")}, '
                             f'this dataset decodes with {decoder}')
        crop = next((p for p in src.manifest.get('pipeline') or []
                     if isinstance(p, dict) and p.get('type') == 'crop_view'),
                    {})
        kwargs = crop.get('view_kwargs') or {}
        copied = ViewSpec(
            num_views=views.num_views,
            view_mode=src.manifest.get('view_mode', views.view_mode),
            out_size=views.out_size,
            seed=int(src.manifest.get('seed', views.seed)),
            view_kwargs=dict(kwargs), interpolation=views.interpolation,
            views_from=src)
        return src, copied, dict(views_from=dict(
            root=src.root,
            teacher_fingerprint=src.manifest.get('teacher_fingerprint')))

    # --------------------------------------------------------------- shards
    def _compute(self, start: int, stop: int, views: ViewSpec,
                 source: Optional[TeacherStore], specs: dict, bar):
        """``(outputs, boxes, flips)`` of samples ``start:stop``."""
        n, V = stop - start, views.num_views
        boxes = np.zeros((n, V, 4), np.float32)
        flips = np.zeros((n, V), np.uint8)
        crops = []
        for j, index in enumerate(range(start, stop)):
            img = _load_image(self.dataset, index)
            h, w = img.shape[:2]
            if source is None:
                boxes[j], flips[j] = draw_views(h, w, index, V, views.seed,
                                                views.view_mode,
                                                views.view_kwargs)
            else:
                boxes[j], flips[j] = source.views(index)
            for v in range(V):
                crops.append(crop_view(img, boxes[j, v], bool(flips[j, v]),
                                       views.out_hw, views.interpolation))
            if bar is not None:
                bar.update()
        outs: Dict[str, List[np.ndarray]] = {}
        bs = self.opts.batch_size
        for b in range(0, len(crops), bs):
            for k, a in self._forward(crops[b:b + bs]).items():
                outs.setdefault(k, []).append(a)
        outputs = {}
        if self.need_feat:
            outputs['feat'] = np.concatenate(outs['feat']).reshape(
                n, V, *specs['feat'][0])
        if self.need_logits:
            logits = np.concatenate(outs['logits']).reshape(n, V, -1)
            if self.outputs.topk is None:
                outputs['logits'] = logits
            else:
                prob, idx = encode_topk(logits, int(self.outputs.topk))
                outputs['logits_topk_prob'] = prob
                outputs['logits_topk_idx'] = idx
        return outputs, boxes, flips

    def run(self) -> dict:
        """Write this rank's pending shards; the summary of the class doc.
        """
        opts = self.opts
        source, views, extra = self._views_source()
        shard_size = opts.shard_size if source is None else source.shard_size
        self.teacher.eval()
        if self.need_feat:
            backbone = getattr(self.teacher, 'backbone', self.teacher)
            self.feature_layer = resolve_feature_layer(
                backbone, self.outputs.teacher_feature,
                'model.teacher_feature')
            self.recorder = FeatureRecorder(backbone, self.feature_layer)
        try:
            specs, num_classes = self._field_specs()
            self.fingerprint = teacher_fingerprint(self.teacher)
            writer = TeacherStoreWriter(
                self.root, self._manifest(views, num_classes, extra),
                len(self.dataset), views.num_views, specs,
                shard_size=shard_size, rank=opts.rank,
                world_size=opts.world_size)
            pending = writer.pending_shards()
            skipped = [s for s in writer.my_shards() if s not in pending]
            if skipped:
                print_log(f'teacher store {writer.root}: rank {opts.rank} '
                          f'skips {len(skipped)} finished shard(s) '
                          f'{skipped}', logger=opts.logger)
            if opts.max_shards is not None:
                pending = pending[:opts.max_shards]
            total = sum(len(range(*writer.shard_range(s))) for s in pending)
            bar = ProgressBar(total) if opts.progress and total else None
            t0 = time.perf_counter()
            for shard in pending:
                writer.write_shard(shard, *self._compute(
                    *writer.shard_range(shard), views, source, specs, bar))
            seconds = time.perf_counter() - t0
        finally:
            if self.recorder is not None:
                self.recorder.remove()
                self.recorder = None
        if bar is not None:
            bar.file.write('\n')
            bar.file.flush()
        rate = total / seconds if seconds > 0 else float('inf')
        print_log(f'cached {total} images x {views.num_views} views in '
                  f'{seconds:.2f} s ({rate:.1f} images/s)',
                  logger=opts.logger)
        return dict(root=writer.root, written=pending, skipped=skipped,
                    images=total, seconds=seconds, images_per_s=rate,
                    fingerprint=self.fingerprint, fields=writer.fields,
                    num_shards=writer.num_shards)

    __call__ = run
