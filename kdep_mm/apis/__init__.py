"""High-level entry points of kdep_mm (used by the tools)."""
from .cache_teacher import (OutputSpec, RunSpec, TeacherCacher, TeacherRecord,
                            ViewSpec)
from .export import (ExportError, export_classifier, export_student,
                     save_classifier, verify_exported)

__all__ = ['TeacherCacher', 'ViewSpec', 'OutputSpec', 'RunSpec',
           'TeacherRecord', 'export_classifier',
           'export_student', 'save_classifier', 'verify_exported',
           'ExportError']
