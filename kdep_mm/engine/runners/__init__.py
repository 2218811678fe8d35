from .flexible_runner import (FlexibleRunner, check_runner_type,
                              publish_atomically)

__all__ = ['FlexibleRunner', 'publish_atomically', 'check_runner_type']
