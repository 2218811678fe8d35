"""Build shim: the package metadata is in pyproject.toml.

What this file adds is OpenMMLab's ``.mim`` layout: ``configs/`` and
``tools/`` go into the package as ``kdep_mm/.mim/configs`` and
``kdep_mm/.mim/tools``, so that ``mim train kdep_mm CONFIG`` and ``mim test``
find them after ``pip install``. As in mmpretrain's setup.py they are copied
for a wheel or sdist build (into the build directory only, never into the
source tree) and symlinked into the source tree for an editable install
(``kdep_mm/.mim`` is git-ignored).
"""
import os
import os.path as osp
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = osp.dirname(osp.abspath(__file__))
MIM_ITEMS = ('configs', 'tools', 'model-index.yml')
IGNORE = shutil.ignore_patterns('__pycache__', '*.pyc', '*.egg-info')


def _clear(path):
    if osp.islink(path) or osp.isfile(path):
        os.remove(path)
    elif osp.isdir(path):
        shutil.rmtree(path)


def _symlink_mim_in_source():
    mim = osp.join(HERE, 'kdep_mm', '.mim')
    os.makedirs(mim, exist_ok=True)
    for name in MIM_ITEMS:
        src, dst = osp.join(HERE, name), osp.join(mim, name)
        if not osp.exists(src):
            continue
        _clear(dst)
        os.symlink(osp.relpath(src, mim), dst)


class BuildPyWithMim(build_py):
    """``build_py`` that also puts configs/, tools/ and model-index.yml under
    .mim."""

    def run(self):
        super().run()
        if getattr(self, 'editable_mode', False):
            _symlink_mim_in_source()
            return
        mim = osp.join(self.build_lib, 'kdep_mm', '.mim')
        for name in MIM_ITEMS:
            src, dst = osp.join(HERE, name), osp.join(mim, name)
            if not osp.exists(src):
                continue
            _clear(dst)
            if osp.isdir(src):
                shutil.copytree(src, dst, ignore=IGNORE)
            else:  # model-index.yml (mim search reads it)
                os.makedirs(mim, exist_ok=True)
                shutil.copy2(src, dst)


setup(cmdclass={'build_py': BuildPyWithMim})
