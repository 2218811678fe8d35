from .loading import (DEFAULT_FORMATS, ImageLoadError, LoadImageOrSkip,
                      sniff_format)

__all__ = ['LoadImageOrSkip', 'ImageLoadError', 'DEFAULT_FORMATS',
           'sniff_format']
from .stored_view import ApplyStoredView  # noqa: E402

__all__ += ['ApplyStoredView']
from .lighting import ClippedLighting  # noqa: E402

__all__ += ['ClippedLighting']
