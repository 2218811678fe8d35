"""An empty slot in a visualizer's list of backends.

The kdep_mm runtime base (``configs/_base_/kdep_runtime.py``) lists
``[LocalVisBackend, NoVisBackend]``, so that one ``--cfg-options`` line turns
TensorBoard on without a config edit (mmengine's ``--cfg-options`` can change
a key of a list item, but cannot add a dict to a list)::

    --cfg-options visualizer.vis_backends.1.type=TensorboardVisBackend
"""
from mmengine.visualization.vis_backend import BaseVisBackend

from kdep_mm.registry import VISBACKENDS


@VISBACKENDS.register_module()
class NoVisBackend(BaseVisBackend):
    """A vis backend that records nothing (every ``add_*`` is a no-op)."""

    @property
    def experiment(self):
        return None

    def _init_env(self) -> None:
        pass
