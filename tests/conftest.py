"""Fixtures shared by all tests, and where the test-only code is found.

``sys.path`` gets ``tests/`` (:mod:`helpers`: hooks, launch environments,
the involution reference), ``tools/dataset_converters``
(:mod:`tiny_image_folder`, the tiny image folders) and ``benchmarks/``
(:mod:`shared_data`, the archives of ``../shared/data``): the tests import
them from where they live, none of them is in the kdep_mm package.
"""
import os.path as osp
import sys

import pytest
from mmengine.registry import DefaultScope

_TESTS = osp.dirname(osp.abspath(__file__))
_REPO = osp.dirname(_TESTS)
for _path in (osp.join(_REPO, 'benchmarks'),
              osp.join(_REPO, 'tools', 'dataset_converters'), _TESTS):
    if _path not in sys.path:
        sys.path.insert(0, _path)


def _snapshot():
    return DefaultScope._instance_dict.copy()


def _restore(saved):
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


@pytest.fixture(autouse=True, scope='module')
def _restore_default_scope_per_module():
    """A module (or its module-scoped fixtures) that sets mmengine's default
    scope (mmpretrain/mmdet/mmseg) must not change how later modules resolve
    plain type names. Autouse fixtures are set up before a module's own
    fixtures, so the snapshot is taken before they run."""
    saved = _snapshot()
    yield
    _restore(saved)


@pytest.fixture(autouse=True)
def _restore_default_scope_per_test():
    """The same for a test that sets the scope itself."""
    saved = _snapshot()
    yield
    _restore(saved)
