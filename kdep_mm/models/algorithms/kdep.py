"""KDEP: "Knowledge Distillation as Efficient Pre-training: Faster
Convergence, Higher Data-efficiency, and Better Transferability" (He et al.,
CVPR 2022)."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn

from kdep_mm.registry import MODELS
from kdep_mm.utils.store_keys import TEACHER_FEAT
from ..teachers import stored_teacher_feat
from ..utils import (BasisFit, PooledFeature, output_width)
from .base_distiller import BaseDistiller


@MODELS.register_module()
class KDEPDistiller(BaseDistiller):
    """Feature distillation as pre-training of a student backbone.

    For a batch x (labels unused):

        f_t = GAP(pre-ReLU last-block output of teacher(x))   (N, C_t), no grad
        f_s = GAP(pre-ReLU last-block output of student(x))   (N, C_s)
        s, target = aligner(f_s, f_t)
        loss_kd = distill_loss(s, target)

    With the defaults, ``aligner`` is :class:`SVDAligner` (target =
    PTS((f_t - mu) @ V_k), T = 0.1, n = 3, fitted once by
    :class:`FitBasisHook`, see :meth:`basis_fit`) and ``distill_loss`` is :class:`FeatureMSELoss`.
    Swapping in :class:`ProjectorAligner` gives the FitNets baseline on the
    same data and schedule.

    Checkpoints hold ``student.*`` (exported by ``tools/export_student.py``)
    and ``aligner.*``; the teacher is reloaded from ``teacher_ckpt``.

    Store mode (``teacher=None``): no teacher is built; f_t is each data
    sample's stored ``teacher_feat`` (a view cached by
    ``tools/cache_teacher.py``, put there by ``ApplyStoredView``), the SVD
    basis is fitted from the store (``FitBasisHook(store=...)``) and
    ``aligner.teacher_channels`` must be given.

    Args:
        aligner (dict): config of the alignment neck; its
            ``student_channels`` / ``teacher_channels``, when omitted, are
            inferred: the widths of f_s and f_t measured on one image.
        distill_loss (dict): config of the feature loss.
        student_feature / teacher_feature (str, optional): name, inside each
            backbone, of the module whose *input* is the distilled feature;
            inferred by :func:`default_feature_layer` when None.
        Others: see :class:`BaseDistiller`.
    """

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict],
                 aligner: dict,
                 distill_loss: dict = dict(type='kdep_mm.FeatureMSELoss',
                                           loss_weight=20.),
                 student_feature: Optional[str] = None,
                 teacher_feature: Optional[str] = None,
                 **kwargs):
        if teacher is None and teacher_feature is not None:
            raise ValueError('model.teacher is None (store mode): '
                             'model.teacher_feature does not apply (the '
                             "store's feature layer was chosen when caching)")
        super().__init__(student=student, teacher=teacher,
                         distill_loss=distill_loss, **kwargs)
        self._student_pooled = PooledFeature(self.student, student_feature,
                                             'model.student_feature')
        self.student_feature = self._student_pooled.layer
        self.teacher_feature = None
        if self.frozen_teacher is not None:
            self.teacher_feature = self.frozen_teacher.watch_pooled(
                teacher_feature, 'model.teacher_feature')
        aligner = dict(aligner)
        if aligner.get('student_channels') is None:
            aligner['student_channels'] = self._student_pooled.width()
        if aligner.get('teacher_channels') is None:
            if self.frozen_teacher is None:
                raise ValueError('model.aligner.teacher_channels is needed '
                                 'in store mode (model.teacher=None): there '
                                 'is no teacher to infer it from')
            aligner['teacher_channels'] = self.frozen_teacher.pooled.width()
        self.aligner = MODELS.build(aligner)

    def basis_fit(self) -> Optional[BasisFit]:
        """The aligner's SVD basis, fitted online on f_t, or from the
        teacher store in store mode (None for an aligner without one, e.g.
        :class:`ProjectorAligner`); its basis file records
        :meth:`basis_identity`."""
        if not getattr(self.aligner, 'needs_fit', False):
            return None
        return BasisFit(self.aligner, 'aligner basis',
                        self.aligner.teacher_channels,
                        'aligner.teacher_channels',
                        about_k='the student width, k',
                        remedy='a narrower student',
                        identity=self.basis_identity,
                        from_store=self.frozen_teacher is None)

    def basis_identity(self) -> dict:
        """What a basis file of this model records (and must match); in
        store mode ``teacher_fingerprint`` is None (the fit hook fills it in
        from the store's manifest)."""
        online = self.frozen_teacher is not None
        return dict(teacher_fingerprint=self.teacher_fingerprint()
                    if online else None,
                    teacher_ckpt=self.teacher_ckpt,
                    teacher_feature=self.teacher_feature,
                    teacher_channels=self.aligner.teacher_channels,
                    student_channels=self.aligner.student_channels)

    def student_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """f_s, the pooled pre-activation student feature (N, C_s)."""
        return self._student_pooled(inputs)

    def _teacher_feat(self, inputs: torch.Tensor,
                      data_samples: Optional[List]) -> torch.Tensor:
        """f_t (N, C_t): the samples' stored ``teacher_feat`` in store
        mode, else the online teacher's pooled feature."""
        if self.frozen_teacher is not None:
            return self.teacher_features(inputs)
        stored = stored_teacher_feat(data_samples,
                                     self.aligner.teacher_channels,
                                     inputs.device)
        if stored is None:
            raise ValueError(
                f'store mode (model.teacher=None) needs {TEACHER_FEAT} in '
                'every data sample: add kdep_mm.ApplyStoredView and '
                f"mmpretrain.PackInputs(algorithm_keys=('{TEACHER_FEAT}',)) "
                'to the pipeline')
        return stored

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        teacher = self._teacher_feat(inputs, data_samples)
        student = self.student_features(inputs)
        student, target = self.aligner(student, teacher)
        return dict(loss_kd=self.distill_loss(student, target))

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        """Per-sample distillation loss on held-out data.

        Returns the data samples, each with ``distill_loss`` (a scalar
        tensor, the loss of that sample alone), read by
        :class:`DistillLossMetric`, and ``aligned_student`` /
        ``aligned_target`` (the aligner's two (C,) outputs), read by
        :class:`ExplainedVarianceMetric`.
        """
        teacher = self._teacher_feat(inputs, data_samples)
        with torch.no_grad():
            student, target = self.aligner(self.student_features(inputs),
                                           teacher)
        samples = self._attach_per_sample_loss(student, target, data_samples)
        for sample, s, t in zip(samples, student.cpu(), target.cpu()):
            sample.set_field(s, 'aligned_student')
            sample.set_field(t, 'aligned_target')
        return samples


@MODELS.register_module()
class LogitKDDistiller(BaseDistiller):
    """Hinton logit distillation, the baseline KDEP compares against.

    The student is ``student`` backbone -> GAP -> Linear(C_s, num_classes)
    (the head is thrown away at export); the teacher is a full classifier.

        loss_kd = distill_loss(student_logits, teacher_logits)

    Labels are unused: the baseline pre-trains on the same unlabelled data
    as KDEP.

    Args:
        student_channels (int, optional): C_s, width of the student's
            pooled feature; inferred (measured on one image) when omitted.
        num_classes (int): classes of the teacher's head.
        distill_loss (dict): Defaults to ``KDLoss(temperature=4)``.
    """

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 num_classes: int,
                 student_channels: Optional[int] = None,
                 distill_loss: dict = dict(type='kdep_mm.KDLoss',
                                           temperature=4.),
                 **kwargs):
        super().__init__(student=student, teacher=teacher,
                         distill_loss=distill_loss, teachers_need_head=True,
                         **kwargs)
        if student_channels is None:
            student_channels = output_width(self.student)
        self.student_head = nn.Linear(student_channels, num_classes)

    def teacher_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.frozen_teacher.logits(inputs)

    def student_logits(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.student_head(self.student_pooled(inputs))

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        teacher = self.teacher_logits(inputs)
        student = self.student_logits(inputs)
        if student.shape != teacher.shape:
            raise ValueError(
                f'model.num_classes: the student head gives '
                f'{tuple(student.shape)} logits, the teacher '
                f'{tuple(teacher.shape)}')
        return dict(loss_kd=self.distill_loss(student, teacher))

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        with torch.no_grad():
            teacher = self.teacher_logits(inputs)
            student = self.student_logits(inputs)
        return self._attach_per_sample_loss(student, teacher, data_samples)
