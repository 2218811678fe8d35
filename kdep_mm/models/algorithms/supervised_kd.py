"""The labelled KD baselines of a task-specific distillation (TCS's own
comparison): a classifier student trained with cross-entropy plus a
teacher term,

    f_s = GAP(student backbone's last output)                 (N, C_s)
    z_s = W f_s + b                                           (N, num_classes)
    loss_cls = cls_weight * CE(z_s, y)
    distill='logits'   (Hinton, Vinyals, Dean, 2015):
        loss_kd = distill_loss(z_s, z_t)      KDLoss: w T^2 KL(p_t^T || p_s^T)
    distill='features' (FitNets, Romero et al., ICLR 2015, at the pooled
                        feature):
        loss_kd = distill_loss(R f_s + b_R, f_t)   R: Linear(C_s, C_t), MSE

z_t are the frozen teacher's logits, f_t its pooled pre-activation feature
(the feature TCS projects on its coordinate system), so FitNets differs
from TCS only in the target: the raw C_t-d feature instead of the tailored
principal coordinates.
"""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from kdep_mm.registry import MODELS
from ..utils import classification_samples, output_width
from .base_distiller import BaseDistiller

_DEFAULT_LOSS = dict(logits=dict(type='kdep_mm.KDLoss', temperature=4.),
                     features=dict(type='kdep_mm.FeatureMSELoss',
                                   loss_weight=1.))


@MODELS.register_module()
class SupervisedKDDistiller(BaseDistiller):
    """A classifier student (backbone + GAP + Linear) trained with labels
    and an online teacher's logits (``distill='logits'``) or pooled
    feature (``distill='features'``).

    Args:
        student (dict): student backbone config.
        num_classes (int): classes of the task.
        teacher (dict, optional): the frozen teacher (a classifier for
            ``'logits'``). None builds the student alone, which predicts
            and exports (``tools/export_student.py --as classifier``
            rebuilds it so) but refuses to train.
        distill (str): ``'logits'`` (Hinton KD) or ``'features'``
            (FitNets at the pooled feature).
        student_channels (int, optional): C_s; measured when omitted.
        teacher_channels (int, optional): ``'features'`` only: C_t, the
            width of f_t; inferred from the teacher when omitted (needed
            without one).
        cls_weight (float): weight of the CE term. Defaults to 1.
        distill_loss (dict, optional): defaults to ``KDLoss(T=4)`` for
            ``'logits'`` and ``FeatureMSELoss`` for ``'features'``.
        teacher_feature (str, optional): ``'features'`` only: the teacher
            module whose input is f_t (default: the last block's output
            before its activation, as TCS).
        Others: see :class:`BaseDistiller`.
    """

    exports = ('backbone', 'classifier')
    teacher_keys = BaseDistiller.teacher_keys + ('teacher_feature', )

    def __init__(self,
                 student: dict,
                 num_classes: int,
                 teacher: Optional[dict] = None,
                 distill: str = 'logits',
                 student_channels: Optional[int] = None,
                 teacher_channels: Optional[int] = None,
                 cls_weight: float = 1.,
                 distill_loss: Optional[dict] = None,
                 teacher_feature: Optional[str] = None,
                 **kwargs):
        if distill not in _DEFAULT_LOSS:
            raise ValueError(f"model.distill must be 'logits' or "
                             f"'features', got {distill!r}")
        if distill == 'logits' and (teacher_feature is not None
                                    or teacher_channels is not None):
            raise ValueError("model.teacher_feature / model.teacher_channels"
                             " apply to distill='features' only")
        super().__init__(student=student, teacher=teacher,
                         distill_loss=distill_loss or _DEFAULT_LOSS[distill],
                         teachers_need_head=distill == 'logits', **kwargs)
        self.distill = distill
        self.cls_weight = float(cls_weight)
        self.num_classes = int(num_classes)
        if student_channels is None:
            student_channels = output_width(self.student)
        self.student_channels = int(student_channels)
        self.classifier = nn.Linear(self.student_channels, self.num_classes)
        self.teacher_feature = None
        if distill == 'features':
            if self.frozen_teacher is not None:
                self.teacher_feature = self.frozen_teacher.watch_pooled(
                    teacher_feature, 'model.teacher_feature')
                width = self.frozen_teacher.pooled.width()
                if teacher_channels not in (None, width):
                    raise ValueError(
                        f'model.teacher_channels is {teacher_channels}, the '
                        f'teacher feature has {width} channels')
                teacher_channels = width
            elif teacher_channels is None:
                raise ValueError("model.teacher_channels is needed for "
                                 "distill='features' without model.teacher")
            self.regressor = nn.Linear(self.student_channels,
                                       int(teacher_channels))

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        if self.frozen_teacher is None:
            raise ValueError('model.teacher is None: this model can predict '
                             'and export, not train (the supervised KD '
                             'baselines run their teacher online)')
        if not data_samples or 'gt_label' not in data_samples[0]:
            raise ValueError('SupervisedKDDistiller.loss needs data samples '
                             'with gt_label (a labelled training set)')
        feat = self.student_pooled(inputs)
        logits = self.classifier(feat)
        labels = torch.cat([s.gt_label for s in data_samples]).to(
            logits.device)
        if self.distill == 'logits':
            loss_kd = self.distill_loss(logits,
                                        self.frozen_teacher.logits(inputs))
        else:
            loss_kd = self.distill_loss(self.regressor(feat),
                                        self.teacher_features(inputs))
        return dict(loss_cls=self.cls_weight *
                    F.cross_entropy(logits, labels), loss_kd=loss_kd)

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        with torch.no_grad():
            return classification_samples(self.extract_feat(inputs),
                                          data_samples)

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """``mode='tensor'``: the student's logits z_s."""
        return self.classifier(self.student_pooled(inputs))

    def classifier_checkpoint(self) -> dict:
        """mmpretrain ``ImageClassifier`` checkpoint (``backbone.*``,
        ``head.fc.*``): loads strictly into the student backbone +
        GlobalAveragePooling + LinearClsHead(in_channels=C_s)."""
        return self._linear_classifier_checkpoint(
            self.classifier, algorithm=f'supervised KD ({self.distill})')
