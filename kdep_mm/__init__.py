"""kdep_mm: knowledge distillation as efficient pre-training, an OpenMMLab plugin.

Importing the package registers the ``kdep_mm`` registries (children of
mmengine's roots) and allows the types that mmengine checkpoints hold under
``torch.load(weights_only=True)``, and registers the ``atomic_local`` file
backend for checkpoints; modules themselves are imported lazily
through the registries' ``locations`` or by :func:`register_all_modules`.
"""
from .registry import SCOPE  # noqa: F401  (creates the child registries)
from .utils.checkpoint import allow_mmengine_checkpoint_types
from .utils.fileio import register_atomic_backend
from .setup_env import register_all_modules
from .version import __version__

allow_mmengine_checkpoint_types()
register_atomic_backend()

__all__ = ['__version__', 'register_all_modules', 'SCOPE']
