"""Test-only helpers (not part of the kdep_mm package).

``tests/`` is on ``sys.path`` while pytest runs (``tests/conftest.py``), and
on the ``PYTHONPATH`` of tool subprocesses started with
:func:`helpers.launch.tool_env` / :func:`helpers.launch.helpers_env`:

* :mod:`helpers.hooks`             hooks for reliability tests (SIGKILL at an
                                   iteration, per-rank state dumps),
                                   registered only when imported
* :mod:`helpers.launch`            environments and ports for subprocesses
* :mod:`helpers.naive_involution`  a loop-by-loop involution reference
* :mod:`helpers.logs`              a logging handler that keeps messages
* :mod:`helpers.files`             a folder's files, byte for byte
* :mod:`helpers.paths`             the repository root, for tests at any depth
* :mod:`helpers.models`            tiny model configs, seeded builders
* :mod:`helpers.scripts`           tool and benchmark scripts as modules
* :mod:`helpers.stores`            a tiny CIFAR ResNet-56 teacher store
"""
