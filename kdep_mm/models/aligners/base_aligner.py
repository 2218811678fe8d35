from typing import Tuple

import torch
from mmengine.model import BaseModule


class BaseAligner(BaseModule):
    """Maps pooled student and teacher features into one space.

    ``forward(student, teacher) -> (student_aligned, target)`` with
    ``student`` of shape (N, C_s) and ``teacher`` of shape (N, C_t); the
    distillation loss compares the two outputs. ``target`` never carries
    gradient. Aligners that must be fitted before training (``needs_fit``)
    are fitted by :class:`kdep_mm.engine.FitBasisHook`.

    Args:
        student_channels (int): C_s, the student's feature dimension.
        teacher_channels (int): C_t, the teacher's feature dimension.
    """

    needs_fit = False

    def __init__(self, student_channels: int, teacher_channels: int,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        for key, value in (('student_channels', student_channels),
                           ('teacher_channels', teacher_channels)):
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f'aligner.{key} must be a positive int, got '
                                 f'{value!r}')
        self.student_channels = student_channels
        self.teacher_channels = teacher_channels

    def check_shapes(self, student: torch.Tensor,
                     teacher: torch.Tensor) -> None:
        if student.dim() != 2 or student.shape[1] != self.student_channels:
            raise ValueError(
                f'aligner.student_channels is {self.student_channels} but the '
                f'student feature has shape {tuple(student.shape)}; set it to '
                "the student's pooled feature dimension")
        if teacher.dim() != 2 or teacher.shape[1] != self.teacher_channels:
            raise ValueError(
                f'aligner.teacher_channels is {self.teacher_channels} but the '
                f'teacher feature has shape {tuple(teacher.shape)}; set it to '
                "the teacher's pooled feature dimension")

    def forward(self, student: torch.Tensor,
                teacher: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError
