import pytest
from mmengine.registry import DefaultScope


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
