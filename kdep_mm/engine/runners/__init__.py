from .flexible_runner import FlexibleRunner, publish_atomically

__all__ = ['FlexibleRunner', 'publish_atomically']
