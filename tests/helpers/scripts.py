"""Scripts of ``tools/`` and ``benchmarks/`` (folders that are not
packages) imported as modules, for tests that call their functions."""
import importlib.util
import os.path as osp
from types import ModuleType
from typing import Optional


def load_script(path: str, name: Optional[str] = None) -> ModuleType:
    """The Python file ``path`` executed as a module named ``name``
    (default: the file's name without ``.py``); its ``__main__`` block does
    not run."""
    if name is None:
        name = osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
