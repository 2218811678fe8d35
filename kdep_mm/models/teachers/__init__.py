"""The teacher component: frozen online teachers, a named set of them,
targets stored in data samples, and a teacher's fingerprint."""
from .checkpoint import DEFAULT_REVISE_KEYS, load_teacher_checkpoint
from .fingerprint import teacher_fingerprint
from .frozen_teacher import FrozenTeacher, build_module
from .stored_targets import (stored_mix, stored_teacher_feat,
                             stored_teacher_outputs)
from .teacher_set import TeacherSet, per_teacher

__all__ = [
    'FrozenTeacher', 'TeacherSet', 'teacher_fingerprint',
    'load_teacher_checkpoint', 'DEFAULT_REVISE_KEYS', 'build_module',
    'per_teacher', 'stored_teacher_feat', 'stored_teacher_outputs',
    'stored_mix'
]
