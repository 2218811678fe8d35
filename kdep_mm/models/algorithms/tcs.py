"""TCS: "All You Need in Knowledge Distillation Is a Tailored Coordinate
System" (Zhou, Zhu, Wu, AAAI 2025). No public code; this is the method as
described, with every unstated choice listed in ``docs/tcs.md``.

    f_t  = teacher's pooled pre-activation feature          (N, C_t), no grad
           (online, or ``teacher_feat`` from a teacher store)
    c_t  = (f_t - mu) @ V_k       PCA coordinate system of the teacher's
                                  features on the target task's training data
    f_s  = GAP(student backbone output)                     (N, C_s)
    c_s  = P f_s + b_P            trainable linear map C_s -> k
    m    = 0/1 tailoring mask over the k coordinates (buffer)
    loss = CE(W (m * c_s) + b, y) + coord_weight * MSE over active coords

Every ``prune_interval`` training iterations the ``prune_ratio`` fraction of
the still-active coordinates with the smallest accumulated importance
(first-order Taylor score |c * dCE/dc| of the masked student coordinates) is
dropped, never below ``min_coords``.
"""
import logging
import math
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine import dist
from mmengine.logging import print_log

from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import atomic_save
from kdep_mm.utils.store_keys import TEACHER_FEAT
from ..aligners.svd_aligner import SVDAligner
from ..teachers import stored_teacher_feat
from ..utils import global_pool, last_output, resolve_feature_layer
from .base_distiller import BaseDistiller


def _accumulate(total, part):
    if total is None:
        return list(part)
    return [total[0] + part[0], total[1] + part[1], total[2] + part[2]]


@MODELS.register_module()
class TCSDistiller(BaseDistiller):
    """Knowledge distillation into a tailored teacher coordinate system.

    Two teacher modes:

    - **store mode** (``teacher=None``): no teacher is built at all; every
      training sample must carry ``teacher_feat`` (the teacher's pooled
      pre-activation feature of exactly the image the student sees, put
      there by ``kdep_mm.ApplyStoredView`` and
      ``mmpretrain.PackInputs(algorithm_keys=('teacher_feat',))``).
    - **online mode** (``teacher`` a config): the frozen, hidden teacher of
      :class:`BaseDistiller`; data samples carrying ``teacher_feat`` are
      still preferred over running the teacher.

    Args:
        student (dict): student backbone config (e.g. ``CIFARResNet``); its
            last output, global-average-pooled, is f_s (the same feature a
            plain ``ImageClassifier`` with a GAP neck classifies, so the
            folded head exports exactly).
        teacher (dict, optional): teacher config; None = store mode.
        student_channels (int): C_s.
        teacher_channels (int): C_t.
        num_classes (int): classes of the target task.
        num_coords (int, optional): k, the coordinates kept from the PCA
            basis. Defaults to ``min(C_t, C_s)``; a larger value is
            refused.
        coord_weight (float): weight of the coordinate loss. Defaults to 1.
        prune_interval (int): training iterations between prune steps;
            0 disables tailoring. Defaults to 500.
        prune_ratio (float): fraction of the active coordinates dropped per
            step (floor, at least 1). Defaults to 0.1.
        min_coords (int, optional): never fewer active coordinates. Defaults
            to ``ceil(k / 2)``.
        prune_start (int): no prune step before this iteration. Defaults to
            0 (the first step happens at ``prune_interval``).
        Others: see :class:`BaseDistiller`.
    """

    def __init__(self,
                 student: dict,
                 student_channels: int,
                 teacher_channels: int,
                 num_classes: int,
                 teacher: Optional[dict] = None,
                 num_coords: Optional[int] = None,
                 coord_weight: float = 1.,
                 prune_interval: int = 500,
                 prune_ratio: float = 0.1,
                 min_coords: Optional[int] = None,
                 prune_start: int = 0,
                 teacher_feature: Optional[str] = None,
                 student_feature: Optional[str] = None,
                 **kwargs):
        if teacher is None and (teacher_feature or student_feature):
            raise ValueError('model.teacher is None (store mode): '
                             'model.teacher_feature / model.student_feature '
                             'do not apply')
        super().__init__(student=student, teacher=teacher, **kwargs)
        self.teacher_feature = None
        if self.frozen_teacher is not None:
            self.teacher_feature = self.frozen_teacher.watch_pooled(
                teacher_feature, 'model.teacher_feature')
        if student_feature is not None:  # f_s is the pooled last output
            resolve_feature_layer(self.student, student_feature,
                                  'model.student_feature')
        if num_coords is None:
            num_coords = min(int(teacher_channels), int(student_channels))
        k = int(num_coords)
        limit = min(int(teacher_channels), int(student_channels))
        if not 1 <= k <= limit:
            raise ValueError(
                f'model.num_coords must be in [1, min(model.teacher_channels'
                f'={teacher_channels}, model.student_channels='
                f'{student_channels}) = {limit}], got {k}: the PCA has only '
                'teacher_channels directions and the student map P (rank <= '
                'student_channels) cannot match more coordinates '
                'independently')
        if min_coords is None:
            min_coords = math.ceil(k / 2)
        if not 1 <= int(min_coords) <= k:
            raise ValueError(f'model.min_coords must be in [1, num_coords={k}]'
                             f', got {min_coords}')
        if prune_interval < 0 or not 0 <= prune_ratio < 1:
            raise ValueError('model.prune_interval must be >= 0 and '
                             f'model.prune_ratio in [0, 1), got '
                             f'{prune_interval}, {prune_ratio}')
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.num_coords = k
        self.num_classes = int(num_classes)
        self.coord_weight = float(coord_weight)
        self.prune_interval = int(prune_interval)
        self.prune_ratio = float(prune_ratio)
        self.min_coords = int(min_coords)
        self.prune_start = int(prune_start)
        # mu, V_k (sorted by variance, deterministic signs), eigenvalues:
        # the shared float64 fit of KDEP's SVDAligner, without PTS.
        self.coords = SVDAligner(k, self.teacher_channels, power=None)
        self.projector = nn.Linear(self.student_channels, k)  # P, b_P
        self.classifier = nn.Linear(k, self.num_classes)  # W, b
        self.register_buffer('mask', torch.ones(k))
        self.register_buffer('train_iter', torch.zeros((), dtype=torch.long))
        # Not a buffer: DDP broadcasts buffers from rank 0 at every forward,
        # which would overwrite each rank's local accumulation. Saved
        # through get_extra_state; summed over ranks at each prune step.
        self._importance = torch.zeros(k, dtype=torch.float64)
        self._loss_calls = 0
        self._warned_no_hook = False

    @property
    def importance(self) -> torch.Tensor:
        """Accumulated importance of each coordinate since the last prune
        step (float64, k)."""
        return self._importance

    def get_extra_state(self):
        return dict(importance=self._importance.detach().cpu().clone())

    def set_extra_state(self, state):
        self._importance = state['importance'].to(
            dtype=torch.float64, device=self.mask.device).clone()

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._importance = self._importance.to(self.mask.device)
        return self

    # ------------------------------------------------------- coordinates
    @property
    def is_fitted(self) -> bool:
        return self.coords.is_fitted

    def check_fit_count(self, count: int, source: str = 'the fit') -> None:
        """Refuse a fit on ``count`` teacher features (``ValueError`` naming
        ``model.num_coords``): the PCA needs more than k of them."""
        if int(count) <= self.num_coords:
            raise ValueError(
                f'{source}: {int(count)} teacher features, but the PCA '
                f'coordinate system needs more than model.num_coords = '
                f'{self.num_coords} of them (the centred feature matrix has '
                'rank <= N - 1); use more data or lower model.num_coords')

    def fit_coordinates_from_moments(self, feat_sum, feat_outer, count,
                                     source: str = 'the fit') -> None:
        self.check_fit_count(count, source)
        if feat_sum.numel() != self.teacher_channels:
            raise ValueError(
                f'{source}: teacher features have {feat_sum.numel()} '
                f'channels, model.teacher_channels is '
                f'{self.teacher_channels}')
        self.coords.fit_from_moments(feat_sum, feat_outer, count)

    def fit_coordinates(self, features: torch.Tensor) -> None:
        """Fit mu and V_k from teacher features (N, C_t) in memory."""
        self.fit_coordinates_from_moments(*SVDAligner.moments(features),
                                          source='fit_coordinates')

    @torch.no_grad()
    def fit_coordinates_online(self, dataloader,
                               num_samples: Optional[int] = None) -> int:
        """Fit from an online teacher pass over ``dataloader`` (moments are
        summed over ranks). Returns the number of features used."""
        if self.frozen_teacher is None:
            raise RuntimeError('store mode: fit from the store '
                               '(fit_coordinates_from_store)')
        total, count = None, 0
        for batch in dataloader:
            data = self.data_preprocessor(batch, False)
            feats = self.teacher_features(data['inputs'])
            if num_samples is not None:
                feats = feats[:num_samples - count]
            total = _accumulate(total, SVDAligner.moments(feats))
            count += feats.shape[0]
            if num_samples is not None and count >= num_samples:
                break
        if total is None:
            raise ValueError('fit_coordinates_online: empty dataloader')
        if dist.get_world_size() > 1:
            t = torch.cat([total[0], total[1].flatten(),
                           torch.tensor([float(total[2])],
                                        dtype=torch.float64)])
            dist.all_reduce(t)
            c = self.teacher_channels
            total = [t[:c], t[c:c + c * c].view(c, c), int(t[-1].item())]
        self.fit_coordinates_from_moments(*total,
                                          source='fit_coordinates_online')
        return int(total[2])

    def teacher_coordinates(self, teacher_feat: torch.Tensor) -> torch.Tensor:
        """c_t = (f_t - mu) @ V_k, (N, k), no grad."""
        with torch.no_grad():
            return self.coords.project(teacher_feat.to(self.coords.basis))

    # ----------------------------------------------------------- student
    def student_pooled(self, inputs: torch.Tensor) -> torch.Tensor:
        """f_s = GAP of the student backbone's last output, (N, C_s)."""
        return global_pool(last_output(self.student(inputs)))

    def student_coordinates(self, inputs: torch.Tensor) -> torch.Tensor:
        """c_s = P f_s + b_P, (N, k)."""
        return self.projector(self.student_pooled(inputs))

    def logits_from_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        return self.classifier(coords * self.mask.to(coords.dtype))

    def fold_head(self) -> nn.Linear:
        """classifier(m * (P f + b_P)) as one ``Linear(C_s, num_classes)``:
        W' = W diag(m) P, b' = W (m * b_P) + b."""
        with torch.no_grad():
            w = self.classifier.weight.double()
            m = self.mask.double()
            p = self.projector.weight.double()
            weight = (w * m) @ p
            bias = w @ (m * self.projector.bias.double()) + \
                self.classifier.bias.double()
            fc = nn.Linear(self.student_channels, self.num_classes)
            fc.to(self.classifier.weight.device)
            fc.weight.copy_(weight.to(fc.weight))
            fc.bias.copy_(bias.to(fc.bias))
        return fc

    # -------------------------------------------------------------- teacher
    def _teacher_feat(self, inputs, data_samples) -> torch.Tensor:
        """f_t: the samples' stored ``teacher_feat``, else the online
        teacher's pooled feature."""
        stored = stored_teacher_feat(data_samples, self.teacher_channels,
                                     inputs.device)
        if stored is not None:
            return stored
        if self.frozen_teacher is None:
            raise ValueError(
                f'store mode (model.teacher=None) needs {TEACHER_FEAT} in '
                'every data sample: add kdep_mm.ApplyStoredView and '
                f"mmpretrain.PackInputs(algorithm_keys=('{TEACHER_FEAT}',)) "
                'to the training pipeline')
        return self.frozen_teacher.pooled_features(inputs)

    # ------------------------------------------------------------ losses
    def coordinate_loss(self, student: torch.Tensor,
                        target: torch.Tensor) -> torch.Tensor:
        """Mean squared error over the active coordinates (masked ones give
        nothing; divided by N * active coordinates)."""
        m = self.mask.to(student.dtype)
        diff = (student - target.to(student.dtype)) * m
        active = m.sum().clamp_min(1)
        return diff.pow(2).sum() / (student.shape[0] * active)

    def _accumulate_importance(self, coords: torch.Tensor):
        value = coords.detach()

        def hook(grad):
            with torch.no_grad():
                score = (value * grad).abs().sum(0).double()
                self._importance = self._importance.to(score.device)
                self._importance.add_(score * self.mask.double().to(
                    score.device))
            return grad

        return hook

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        if not self.is_fitted:
            raise RuntimeError(
                'TCSDistiller: the coordinate system is not fitted: add '
                'kdep_mm.FitTCSCoordinatesHook to custom_hooks, call '
                'fit_coordinates_from_store / fit_coordinates_online, or '
                'load a checkpoint that holds coords.*')
        if data_samples is None:
            raise ValueError('TCSDistiller.loss needs data samples with '
                             'gt_label')
        target = self.teacher_coordinates(self._teacher_feat(inputs,
                                                             data_samples))
        coords = self.student_coordinates(inputs)
        masked = coords * self.mask.to(coords.dtype)
        if self.training and masked.requires_grad:
            masked.register_hook(self._accumulate_importance(masked))
            self._check_tailoring_hook()
        logits = self.classifier(masked)
        labels = torch.cat([s.gt_label for s in data_samples]).to(
            logits.device)
        return dict(loss_cls=F.cross_entropy(logits, labels),
                    loss_coord=self.coord_weight *
                    self.coordinate_loss(coords, target))

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        from mmpretrain.structures import DataSample
        with torch.no_grad():
            logits = self.logits_from_coordinates(
                self.student_coordinates(inputs))
        scores = F.softmax(logits, dim=1)
        labels = scores.argmax(dim=1, keepdim=True).detach()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(len(logits))]
        for sample, score, label in zip(data_samples, scores, labels):
            sample.set_pred_score(score).set_pred_label(label)
        return data_samples

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """``mode='tensor'``: the logits of the masked student
        coordinates."""
        return self.logits_from_coordinates(self.student_coordinates(inputs))

    # ------------------------------------------------------- tailoring
    @property
    def num_active(self) -> int:
        return int(self.mask.sum().item())

    @torch.no_grad()
    def prune_step(self) -> List[int]:
        """Drop floor(prune_ratio * active) (at least 1) of the active
        coordinates with the smallest importance (ties: the lower-variance,
        i.e. later, coordinate first), keeping >= min_coords; reset the
        importance. Returns the dropped indices."""
        if dist.get_world_size() > 1:
            dist.all_reduce(self._importance)
        active = self.num_active
        n_drop = min(max(int(math.floor(self.prune_ratio * active)), 1),
                     active - self.min_coords)
        dropped: List[int] = []
        if n_drop > 0 and self.prune_ratio > 0:
            k = self.num_coords
            idx = [i for i in range(k) if self.mask[i] > 0]
            score = self.importance.cpu().tolist()
            # smallest importance first; among equals the later coordinate
            idx.sort(key=lambda i: (score[i], -i))
            dropped = sorted(idx[:n_drop])
            self.mask[dropped] = 0
        self._importance.zero_()
        return dropped

    def after_train_iter(self) -> None:
        """Advance the internal counter; run a prune step when due."""
        self.train_iter += 1
        it = int(self.train_iter.item())
        if (self.prune_interval > 0 and it >= self.prune_start
                and it % self.prune_interval == 0):
            self.prune_step()

    def _check_tailoring_hook(self) -> None:
        self._loss_calls += 1
        if (self.prune_interval > 0 and not self._warned_no_hook
                and int(self.train_iter) == 0
                and self._loss_calls > 2 * self.prune_interval):
            self._warned_no_hook = True
            print_log(
                f'TCSDistiller: {self._loss_calls} training iterations and '
                'the tailoring schedule never advanced: add '
                "dict(type='kdep_mm.TCSTailoringHook') to custom_hooks",
                logger='current', level=logging.WARNING)


def _unwrap(model):
    return model.module if hasattr(model, 'module') else model


@torch.no_grad()
def fit_coordinates_from_store(model: TCSDistiller, store,
                               field: str = 'feat',
                               chunk: int = 4096,
                               source: Optional[str] = None) -> int:
    """Fit ``model``'s coordinate system from every view of every sample in
    a teacher store, streaming the memory-mapped shards through
    ``SVDAligner.moments``. ``store``: a ``TeacherStore`` or its root (then
    opened with verification, see ``TeacherStore``). A store of no more
    than ``model.num_coords`` features (samples x views) is refused before
    any shard is read. Returns the number of features used."""
    from kdep_mm.datasets.store import TeacherStore
    if isinstance(store, str):
        store = TeacherStore(store)
    model = _unwrap(model)
    if field not in store.fields:
        raise ValueError(f'teacher store {store.root} has no field {field!r}'
                         f' (fields: {sorted(store.fields)})')
    where = f'teacher store {store.root} field {field!r}'
    if source is not None:
        where = f'{source}: {where}'
    model.check_fit_count(store.num_samples * store.num_views,
                          f'{where} ({store.num_samples} samples x '
                          f'{store.num_views} views)')
    total = None
    for shard in range(store.num_shards):
        arr = store.shard_arrays(shard)[field]
        flat = arr.reshape(-1, *arr.shape[2:])
        for start in range(0, flat.shape[0], chunk):
            feats = torch.from_numpy(
                np.asarray(flat[start:start + chunk], dtype=np.float64))
            total = _accumulate(total, SVDAligner.moments(
                feats.reshape(feats.shape[0], -1)))
    if total is None:
        raise ValueError(f'teacher store {store.root} is empty')
    model.fit_coordinates_from_moments(*total, source=where)
    return int(total[2])


def export_tcs_classifier(model: TCSDistiller, path: str) -> dict:
    """Write an mmpretrain ``ImageClassifier`` checkpoint (``backbone.*``
    from the student, ``head.fc.*`` = :meth:`TCSDistiller.fold_head`) with
    ``atomic_save``; loads strictly into backbone + GlobalAveragePooling +
    LinearClsHead(in_channels=C_s). Returns the state dict."""
    model = _unwrap(model)
    state = {f'backbone.{k}': v.detach().cpu().clone()
             for k, v in model.student.state_dict().items()}
    fc = model.fold_head()
    state['head.fc.weight'] = fc.weight.detach().cpu().clone()
    state['head.fc.bias'] = fc.bias.detach().cpu().clone()
    meta = dict(algorithm='TCS', num_coords=model.num_coords,
                active_coords=model.num_active,
                num_classes=model.num_classes,
                in_channels=model.student_channels)
    atomic_save(dict(state_dict=state, meta=meta), path)
    return state
