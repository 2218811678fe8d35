"""Run a teacher over a dataset once and store its outputs per view.

:func:`cache_teacher_outputs` is the library side of
``tools/cache_teacher.py``: for every image of a dataset it draws ``V`` views
(crop box + flip, deterministic in ``(seed, sample index)`` so that reruns
and ranks agree), crops them with
:func:`~kdep_mm.datasets.transforms.stored_view.crop_view` (the crop that
:class:`~kdep_mm.datasets.transforms.stored_view.ApplyStoredView` repeats at
training time), runs the teacher and writes the pooled pre-activation
feature and/or the logits (optionally top-k probabilities in float16 with
exact indices) through
:class:`~kdep_mm.datasets.teacher_store.TeacherStoreWriter`: rank-sharded,
resumable (finished shards are skipped), verified.
"""
import json
import logging
import time
import types
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging import print_log

from kdep_mm.datasets.teacher_store import (TeacherStoreWriter,
                                            build_manifest, dataset_identity,
                                            encode_topk, pipeline_decoder,
                                            topk_fields)
from kdep_mm.datasets.transforms.stored_view import (center_view, crop_view,
                                                     sample_view)
from kdep_mm.models.utils import FeatureRecorder, default_feature_layer

VIEW_MODES = ('random', 'center')
FIELDS = ('feat', 'logits')


def teacher_fingerprint(teacher: nn.Module) -> str:
    """sha256 of the teacher's parameters and buffers (names and bytes).

    The same value as ``BaseDistiller.teacher_fingerprint()`` of a distiller
    holding this teacher (it is that method, called without building a
    distiller), so a store can be checked against a training run's teacher.
    """
    from kdep_mm.models.algorithms.base_distiller import BaseDistiller
    return BaseDistiller.teacher_fingerprint(
        types.SimpleNamespace(teacher=teacher))


def _backbone_of(model: nn.Module) -> nn.Module:
    return model.backbone if hasattr(model, 'backbone') else model


def _pool(fmap: torch.Tensor) -> torch.Tensor:
    # as BaseDistiller._pool
    return fmap.mean(dim=(2, 3)) if fmap.dim() == 4 else fmap


def draw_views(h: int, w: int, index: int, num_views: int, seed: int,
               view_mode: str = 'random',
               view_kwargs: Optional[dict] = None
               ) -> Tuple[np.ndarray, np.ndarray]:
    """The ``num_views`` views of sample ``index`` (an ``h`` x ``w`` image):
    ``(boxes float32 (V, 4), flips uint8 (V,))``.

    ``'random'``: :func:`sample_view` with ``np.random.default_rng([seed,
    index])``, so a view depends on nothing but the seed, the index and the
    image size. ``'center'``: :func:`center_view` for every view.
    """
    view_kwargs = dict(view_kwargs or {})
    boxes = np.zeros((num_views, 4), np.float32)
    flips = np.zeros((num_views, ), np.uint8)
    if view_mode == 'random':
        rng = np.random.default_rng([int(seed), int(index)])
        for v in range(num_views):
            boxes[v], flips[v] = sample_view(h, w, rng, **view_kwargs)
    elif view_mode == 'center':
        for v in range(num_views):
            boxes[v], flips[v] = center_view(h, w, **view_kwargs)
    else:
        raise ValueError(f'view_mode must be one of {VIEW_MODES}, got '
                         f'{view_mode!r}')
    return boxes, flips


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """HWC (or HW) uint8 image -> CHW tensor, as mmpretrain's PackInputs."""
    if img.ndim == 2:
        img = img[..., None]
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


class _TeacherRunner:
    """Runs the teacher on a batch of cropped images: feature and logits."""

    def __init__(self, teacher: nn.Module, data_preprocessor: Optional[
            Union[nn.Module, Callable]], teacher_feature: Optional[str],
                 need_feat: bool, need_logits: bool):
        self.teacher = teacher
        self.data_preprocessor = data_preprocessor
        self.need_feat, self.need_logits = need_feat, need_logits
        backbone = _backbone_of(teacher)
        self.feature_layer = None
        self.recorder = None
        if need_feat:
            self.feature_layer = teacher_feature or default_feature_layer(
                backbone)
            self.recorder = FeatureRecorder(backbone, self.feature_layer)
        if need_logits and not hasattr(teacher, 'head'):
            raise ValueError(
                f'logits requested but the teacher ({type(teacher).__name__})'
                ' has no head; cache fields=("feat",) only')

    def preprocess(self, imgs: List[np.ndarray]) -> torch.Tensor:
        tensors = [_to_tensor(img) for img in imgs]
        if self.data_preprocessor is None:
            return torch.stack(tensors).float()
        data = self.data_preprocessor(dict(inputs=tensors), False)
        return data['inputs']

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor) -> Dict[str, np.ndarray]:
        self.teacher.eval()
        if self.recorder is not None:
            self.recorder.reset()
        if self.need_logits:
            logits = self.teacher(inputs, mode='tensor')
            if isinstance(logits, (tuple, list)):
                logits = logits[-1]
        else:
            _backbone_of(self.teacher)(inputs)
        out = {}
        if self.need_feat:
            out['feat'] = _pool(self.recorder.pop()).float().cpu().numpy()
        if self.need_logits:
            out['logits'] = logits.float().cpu().numpy()
        return out

    def remove(self):
        if self.recorder is not None:
            self.recorder.remove()


def _load_image(dataset, index: int) -> np.ndarray:
    results = dataset[index]
    img = results.get('img') if isinstance(results, dict) else None
    if not isinstance(img, np.ndarray):
        raise TypeError(
            f'dataset[{index}] must be a dict with the decoded image in '
            f"'img' (a pipeline ending with LoadImageFromFile), got "
            f'{type(results).__name__}')
    return img


def cache_teacher_outputs(teacher: nn.Module,
                          dataset,
                          root: str,
                          num_views: int = 1,
                          view_mode: str = 'random',
                          out_size: Union[int, Sequence[int]] = 224,
                          fields: Sequence[str] = FIELDS,
                          topk: Optional[int] = None,
                          shard_size: int = 1024,
                          batch_size: int = 64,
                          seed: int = 0,
                          rank: int = 0,
                          world_size: int = 1,
                          data_preprocessor: Optional[nn.Module] = None,
                          teacher_feature: Optional[str] = None,
                          progress: bool = True,
                          logger: Union[str, logging.Logger, None] = 'current',
                          interpolation: str = 'bilinear',
                          view_kwargs: Optional[dict] = None,
                          teacher_config=None,
                          teacher_checkpoint: Optional[str] = None,
                          manifest_extra: Optional[dict] = None,
                          max_shards: Optional[int] = None,
                          views_from=None,
                          teacher_checkpoint_sha256: Optional[str] = None
                          ) -> dict:
    """Cache the teacher's outputs on ``V`` views of every dataset image.

    Args:
        teacher (nn.Module): an mmpretrain ``ImageClassifier`` (feature and
            logits) or a bare backbone (feature only). Put in eval mode;
            its forward runs under ``torch.no_grad``.
        dataset: ``dataset[i]`` must return a dict whose ``'img'`` is the
            decoded original image (HWC uint8, e.g. mmpretrain's
            ``CustomDataset`` with ``pipeline=[dict(type=
            'LoadImageFromFile')]``); the training side's
            ``ApplyStoredView`` must receive the same image. The settings
            of its pipeline's ``LoadImageFromFile`` (decoding backend, color
            type, float32) are recorded in the manifest's ``decoder``.
        root (str): the store directory.
        num_views (int): V, views per image.
        view_mode (str): ``'random'`` (``sample_view``, RandomResizedCrop
            style + flip) or ``'center'`` (``center_view``, the cheap
            ``V = 1`` mode).
        out_size (int | tuple): crop output size (``ApplyStoredView``'s
            ``scale``).
        fields (sequence): ``'feat'`` (pooled pre-activation feature, as
            KDEP's ``teacher_features``) and/or ``'logits'``.
        topk (int, optional): store ``logits`` as top-k softmax
            probabilities (float16) + exact int32 indices
            (``logits_topk_prob`` / ``logits_topk_idx``) instead of full
            float32 logits.
        shard_size (int): images per shard.
        batch_size (int): crops per teacher forward. Batches never cross a
            shard, so a shard's bytes do not depend on the rank layout.
        seed (int): seed of the views (with the sample index).
        rank, world_size (int): this process writes shards
            ``s % world_size == rank``.
        data_preprocessor: normalisation of the packed crops (e.g.
            mmpretrain ``ClsDataPreprocessor``), called as
            ``data_preprocessor(dict(inputs=[CHW uint8 tensors]), False)``.
            None: the crops are stacked as float, unnormalised.
        teacher_feature (str, optional): module of the teacher backbone
            whose input is the feature; :func:`default_feature_layer` if
            None.
        progress (bool): show an mmengine ``ProgressBar``.
        logger: where the throughput line goes (``print_log``).
        interpolation (str): cv2 interpolation of ``crop_view``.
        view_kwargs (dict, optional): extra kwargs of ``sample_view`` /
            ``center_view`` (``scale``, ``ratio``, ``flip_prob`` /
            ``crop_frac``); recorded in the manifest.
        teacher_config, teacher_checkpoint: recorded in the manifest.
        teacher_checkpoint_sha256 (str, optional): sha256 of the teacher
            checkpoint's file, recorded in the manifest (the identity that
            ``FitTCSCoordinatesHook.teacher_checkpoint`` and
            ``CheckTeacherStoresHook.teacher_checkpoints`` check). None:
            computed from ``teacher_checkpoint`` when that is a local file
            or a downloaded URL (:func:`kdep_mm.utils.checkpoint.
            checkpoint_sha256`), else not recorded.
        manifest_extra (dict, optional): more manifest keys.
        max_shards (int, optional): stop after writing this many shards
            (tests of resuming; a rerun completes the store).
        views_from (str | TeacherStore, optional): copy the views (boxes
            and flips) of this store instead of drawing them, so that
            several teachers are cached on exactly the same views (an
            ensemble, see ``ApplyStoredEnsembleView``). Its ``num_views``,
            ``shard_size``, ``view_mode``, ``seed`` and ``view_kwargs`` are
            used (``num_views`` must match), its dataset identity must be
            this dataset's, and the manifest records it under
            ``views_from``.

    Returns:
        dict: ``written`` / ``skipped`` shard lists of this rank,
        ``images`` (images cached by this rank), ``seconds``,
        ``images_per_s``, ``fingerprint``, ``fields`` and ``root``.
    """
    fields = tuple(fields)
    bad = [f for f in fields if f not in FIELDS]
    if bad or not fields:
        raise ValueError(f'fields must be a non-empty subset of {FIELDS}, '
                         f'got {fields}')
    if view_mode not in VIEW_MODES:
        raise ValueError(f'view_mode must be one of {VIEW_MODES}, got '
                         f'{view_mode!r}')
    if view_mode == 'center' and num_views != 1:
        raise ValueError("view_mode='center' stores one fixed view: use "
                         f'num_views=1 (got {num_views})')
    if topk is not None and 'logits' not in fields:
        raise ValueError('topk needs the logits field')
    if batch_size <= 0:
        raise ValueError(f'batch_size must be positive, got {batch_size}')
    out_hw = (int(out_size), ) * 2 if isinstance(out_size, int) else tuple(
        int(s) for s in out_size)
    source = None
    if views_from is not None:
        source, views_extra = _views_source(views_from, dataset, num_views)
        shard_size = source.shard_size
        view_mode = source.manifest.get('view_mode', view_mode)
        seed = int(source.manifest.get('seed', seed))
        view_kwargs = dict(views_extra.pop('view_kwargs') or {})
        manifest_extra = dict(manifest_extra or {}, views_from=views_extra)

    teacher.eval()
    runner = _TeacherRunner(teacher, data_preprocessor, teacher_feature,
                            'feat' in fields, 'logits' in fields)
    try:
        # the field shapes, from one dummy forward
        probe = runner(runner.preprocess(
            [np.zeros((*out_hw, 3), np.uint8)]))
        specs = {}
        if 'feat' in fields:
            specs['feat'] = (probe['feat'].shape[1:], 'float32')
        num_classes = None
        if 'logits' in fields:
            num_classes = int(probe['logits'].shape[-1])
            if topk is None:
                specs['logits'] = (probe['logits'].shape[1:], 'float32')
            else:
                specs.update(topk_fields('logits', int(topk)))

        fingerprint = teacher_fingerprint(teacher)
        pipeline = [
            dict(type='LoadImageFromFile'),
            dict(type='crop_view', out_size=list(out_hw),
                 interpolation=interpolation, view_mode=view_mode,
                 view_kwargs=dict(view_kwargs or {}), seed=int(seed)),
            dict(type='PackInputs'),
            dict(type='data_preprocessor',
                 cfg=_describe(data_preprocessor)),
        ]
        if teacher_checkpoint_sha256 is None and teacher_checkpoint:
            from kdep_mm.utils.checkpoint import checkpoint_sha256
            try:
                teacher_checkpoint_sha256 = checkpoint_sha256(
                    teacher_checkpoint, download=False)
            except (OSError, ValueError):
                print_log(
                    f'teacher checkpoint {teacher_checkpoint} is not a local '
                    'file: its sha256 is not recorded, and store-mode runs '
                    'that check the teacher checkpoint will refuse this '
                    'store', logger=logger, level=logging.WARNING)
        manifest = build_manifest(
            teacher_fingerprint=fingerprint,
            dataset=dataset_identity(dataset),
            teacher_config=teacher_config,
            teacher_checkpoint=teacher_checkpoint,
            teacher_checkpoint_sha256=teacher_checkpoint_sha256,
            decoder=pipeline_decoder(dataset),
            pipeline=pipeline,
            view_mode=view_mode,
            out_size=list(out_hw),
            seed=int(seed),
            teacher_feature=runner.feature_layer,
            topk=topk,
            num_classes=num_classes,
            **dict(manifest_extra or {}))
        writer = TeacherStoreWriter(root, manifest, len(dataset), num_views,
                                    specs, shard_size=shard_size, rank=rank,
                                    world_size=world_size)
        pending = writer.pending_shards()
        skipped = [s for s in writer.my_shards() if s not in pending]
        if skipped:
            print_log(f'teacher store {writer.root}: rank {rank} skips '
                      f'{len(skipped)} finished shard(s) {skipped}',
                      logger=logger)
        if max_shards is not None:
            pending = pending[:max_shards]
        total = sum(len(range(*writer.shard_range(s))) for s in pending)

        bar = None
        if progress and total:
            from mmengine.utils import ProgressBar
            bar = ProgressBar(total)

        def compute(start: int, stop: int):
            n, V = stop - start, num_views
            boxes = np.zeros((n, V, 4), np.float32)
            flips = np.zeros((n, V), np.uint8)
            crops = []
            for j, index in enumerate(range(start, stop)):
                img = _load_image(dataset, index)
                h, w = img.shape[:2]
                if source is None:
                    boxes[j], flips[j] = draw_views(h, w, index, V, seed,
                                                    view_mode, view_kwargs)
                else:
                    boxes[j], flips[j] = source.views(index)
                for v in range(V):
                    crops.append(crop_view(img, boxes[j, v],
                                           bool(flips[j, v]), out_hw,
                                           interpolation))
                if bar is not None:
                    bar.update()
            outs: Dict[str, List[np.ndarray]] = {}
            for b in range(0, len(crops), batch_size):
                res = runner(runner.preprocess(crops[b:b + batch_size]))
                for k, a in res.items():
                    outs.setdefault(k, []).append(a)
            outputs = {}
            if 'feat' in fields:
                outputs['feat'] = np.concatenate(outs['feat']).reshape(
                    n, V, *specs['feat'][0])
            if 'logits' in fields:
                logits = np.concatenate(outs['logits']).reshape(n, V, -1)
                if topk is None:
                    outputs['logits'] = logits
                else:
                    prob, idx = encode_topk(logits, int(topk))
                    outputs['logits_topk_prob'] = prob
                    outputs['logits_topk_idx'] = idx
            return outputs, boxes, flips

        t0 = time.perf_counter()
        written = []
        for shard in pending:
            outputs, boxes, flips = compute(*writer.shard_range(shard))
            writer.write_shard(shard, outputs, boxes, flips)
            written.append(shard)
        seconds = time.perf_counter() - t0
    finally:
        runner.remove()
    if bar is not None:
        bar.file.write('\n')
        bar.file.flush()
    rate = total / seconds if seconds > 0 else float('inf')
    print_log(f'cached {total} images x {num_views} views in {seconds:.2f} s '
              f'({rate:.1f} images/s)', logger=logger)
    return dict(root=writer.root, written=written, skipped=skipped,
                images=total, seconds=seconds, images_per_s=rate,
                fingerprint=fingerprint, fields=writer.fields,
                num_shards=writer.num_shards)


def _views_source(views_from, dataset, num_views: int):
    """The store whose views are copied, checked against the dataset;
    and what the new manifest records about it."""
    from kdep_mm.datasets.teacher_store import TeacherStore
    src = views_from if isinstance(views_from, TeacherStore) else \
        TeacherStore(str(views_from))
    if src.num_views != num_views:
        raise ValueError(f'views_from: {src.root} holds {src.num_views} '
                         f'views per image, num_views is {num_views}')
    ident = dataset_identity(dataset)
    if src.manifest.get('dataset') != json.loads(json.dumps(ident)):
        raise ValueError(f'views_from: {src.root} was cached from another '
                         'dataset (or the same images in another order): '
                         f'{src.manifest.get("dataset")} vs {ident}')
    decoder = pipeline_decoder(dataset)
    if src.manifest.get('decoder') != decoder:
        raise ValueError(f'views_from: {src.root} was cached from images '
                         f'decoded with {src.manifest.get("decoder")}, this '
                         f'dataset decodes with {decoder}')
    crop = next((p for p in src.manifest.get('pipeline') or []
                 if isinstance(p, dict) and p.get('type') == 'crop_view'),
                {})
    return src, dict(root=src.root,
                     teacher_fingerprint=src.manifest.get(
                         'teacher_fingerprint'),
                     view_kwargs=crop.get('view_kwargs') or {})


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
