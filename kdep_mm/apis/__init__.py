"""High-level entry points of kdep_mm (used by the tools)."""
from .cache_teacher import (OutputSpec, RunSpec, TeacherCacher, TeacherRecord,
                            ViewSpec)
from .export_classifier import CLASSIFIER_EXPORTERS, export_classifier

__all__ = ['TeacherCacher', 'ViewSpec', 'OutputSpec', 'RunSpec',
           'TeacherRecord',
           'export_classifier', 'CLASSIFIER_EXPORTERS']
