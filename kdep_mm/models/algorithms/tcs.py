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
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdep_mm.registry import MODELS
from kdep_mm.utils.store_keys import TEACHER_FEAT
from ..losses import MaskedMSELoss
from ..necks import TailoredCoordinates
from ..teachers import stored_teacher_feat
from ..utils import (BasisFit, PrincipalBasis, classification_samples,
                     output_width,
                     resolve_feature_layer)
from .base_distiller import BaseDistiller


@MODELS.register_module()
class TCSDistiller(TailoredCoordinates, BaseDistiller):
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
        student_channels (int, optional): C_s; inferred from the student
            (measured on one image) when omitted.
        teacher_channels (int, optional): C_t; inferred from the online
            teacher when omitted (store mode needs it).
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

    exports = ('backbone', 'classifier')
    teacher_keys = BaseDistiller.teacher_keys + ('teacher_feature',
                                                 'student_feature')

    def __init__(self,
                 student: dict,
                 num_classes: int,
                 student_channels: Optional[int] = None,
                 teacher_channels: Optional[int] = None,
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
        if student_channels is None:
            student_channels = output_width(self.student)
        if teacher_channels is None:
            if self.frozen_teacher is None:
                raise ValueError('model.teacher_channels is needed in store '
                                 'mode (model.teacher=None): there is no '
                                 'teacher to infer it from')
            teacher_channels = self.frozen_teacher.pooled.width()
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
        self.student_channels = int(student_channels)
        self.teacher_channels = int(teacher_channels)
        self.num_classes = int(num_classes)
        self.coord_weight = float(coord_weight)
        # mu, V_k (sorted by variance, deterministic signs), eigenvalues:
        # the principal basis KDEP's SVDAligner fits too, without PTS.
        self.coords = PrincipalBasis.build(self.teacher_channels, k,
                                           'model.num_coords')
        self._coordinate_mse = MaskedMSELoss()
        self.projector = nn.Linear(self.student_channels, k)  # P, b_P
        self.classifier = nn.Linear(k, self.num_classes)  # W, b
        self.register_tailoring(k, min_coords, prune_interval, prune_ratio,
                                prune_start)

    # ------------------------------------------------------- coordinates
    @property
    def is_fitted(self) -> bool:
        return self.coords.is_fitted

    def basis_fit(self) -> BasisFit:
        """The coordinate system, fitted online on f_t or from a teacher
        store's features; the tailoring schedule needs TCSTailoringHook."""
        return BasisFit(
            self.coords, 'TCS coordinate system', self.teacher_channels,
            'model.teacher_channels',
            about_k=f'model.student_channels = {self.student_channels}',
            remedy='lower model.num_coords', from_store=True,
            driven_by=('TCSTailoringHook', 'the tailoring schedule (model.'
                       f'prune_interval is {self.prune_interval})')
            if self.prune_interval > 0 else None)

    def check_fit_count(self, count: int, source: str = 'the fit') -> None:
        """Refuse a fit on ``count`` teacher features (``ValueError`` naming
        ``model.num_coords``): the PCA needs more than k of them."""
        self.basis_fit().check_count(count, source)

    def fit_coordinates(self, features: torch.Tensor) -> None:
        """Fit mu and V_k from teacher features (N, C_t) in memory (the
        fit hook streams them through :func:`fit_principal_basis`)."""
        self.check_fit_count(features.shape[0], 'fit_coordinates')
        if features.shape[1] != self.teacher_channels:
            raise ValueError(
                f'fit_coordinates: teacher features have {features.shape[1]}'
                f' channels, model.teacher_channels is '
                f'{self.teacher_channels}')
        self.coords.fit(features)

    # ----------------------------------------------------------- student
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

    def classifier_checkpoint(self) -> dict:
        """mmpretrain ``ImageClassifier`` checkpoint: ``backbone.*`` from
        the student, ``head.fc.*`` = :meth:`fold_head`; loads strictly into
        backbone + GlobalAveragePooling + LinearClsHead(in_channels=C_s)."""
        return self._linear_classifier_checkpoint(
            self.fold_head(), algorithm='TCS', num_coords=self.num_coords,
            active_coords=self.num_active)

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
        """:class:`MaskedMSELoss` over the active coordinates."""
        return self._coordinate_mse(student, target, self.mask)

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        if not self.is_fitted:
            raise RuntimeError(
                'TCSDistiller: the coordinate system is not fitted: add '
                'kdep_mm.FitBasisHook to custom_hooks, call '
                'fit_coordinates, or load a checkpoint that holds coords.*')
        if data_samples is None:
            raise ValueError('TCSDistiller.loss needs data samples with '
                             'gt_label')
        target = self.teacher_coordinates(self._teacher_feat(inputs,
                                                             data_samples))
        coords = self.student_coordinates(inputs)
        logits = self.classifier(self.masked_coordinates(coords))
        labels = torch.cat([s.gt_label for s in data_samples]).to(
            logits.device)
        return dict(loss_cls=F.cross_entropy(logits, labels),
                    loss_coord=self.coord_weight *
                    self.coordinate_loss(coords, target))

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        with torch.no_grad():
            logits = self.logits_from_coordinates(
                self.student_coordinates(inputs))
        return classification_samples(logits, data_samples)

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """``mode='tensor'``: the logits of the masked student
        coordinates."""
        return self.logits_from_coordinates(self.student_coordinates(inputs))
