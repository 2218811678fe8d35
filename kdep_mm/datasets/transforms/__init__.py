from .loading import (DEFAULT_FORMATS, ImageLoadError, LoadImageOrSkip,
                      sniff_format)

__all__ = ['LoadImageOrSkip', 'ImageLoadError', 'DEFAULT_FORMATS',
           'sniff_format']
