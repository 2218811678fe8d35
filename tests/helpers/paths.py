"""Where the repository is, for tests at any depth below ``tests/``."""
import os.path as osp

#: ``tests/``
TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: the repository root (configs/, tools/, benchmarks/ ...)
REPO = osp.dirname(TESTS)
