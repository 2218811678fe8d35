"""High-level entry points of kdep_mm (used by the tools)."""
from .cache_teacher import (cache_teacher_outputs, draw_views,
                            teacher_fingerprint)
from .export_classifier import CLASSIFIER_EXPORTERS, export_classifier

__all__ = ['cache_teacher_outputs', 'draw_views', 'teacher_fingerprint',
           'export_classifier', 'CLASSIFIER_EXPORTERS']
