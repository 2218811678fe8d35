from .hooks import *  # noqa: F401,F403
from .vis_backends import NoVisBackend  # noqa: F401
from .runners import FlexibleRunner  # noqa: F401
