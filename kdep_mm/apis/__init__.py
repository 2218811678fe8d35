"""High-level entry points of kdep_mm (used by the tools)."""
from .cache_teacher import (cache_teacher_outputs, draw_views,
                            teacher_fingerprint)

__all__ = ['cache_teacher_outputs', 'draw_views', 'teacher_fingerprint']
