from .logger_hook import ExpNameOnceLoggerHook  # noqa: F401
from .vis_backends import NoVisBackend  # noqa: F401
