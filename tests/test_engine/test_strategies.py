"""kdep_mm's FlexibleRunner keeps the checkpoint hook's atomic writes
(mmengine's drops its ``backend_args``): the strategy writes ``.<name>.tmp``
(a file, or a directory as DeepSpeed writes), the main process publishes it
under ``<name>``; an exception mid-write leaves the previous checkpoint
intact and the next save replaces it. The strategy writers are stood in for
by functions writing the same layouts (the real FSDP write runs in
tests/integration/test_fsdp_cpu.py)."""
import os
import os.path as osp

import pytest
from mmengine.runner._flexible_runner import \
    FlexibleRunner as MMEngineFlexibleRunner

import kdep_mm  # noqa: F401
from kdep_mm.engine.runners import (FlexibleRunner, check_runner_type,
                                    publish_atomically)
from kdep_mm.registry import RUNNERS

ATOMIC = dict(backend='atomic_local')


def _read(path):
    with open(path, 'rb') as f:
        return f.read()


class _Writer:
    """Stands in for ``mmengine FlexibleRunner.save_checkpoint``: writes
    ``payload`` to ``out_dir/filename`` (a file, or a DeepSpeed-like
    directory), or half of it and raises."""

    def __init__(self):
        self.calls, self.payload, self.fail, self.as_dir = [], b'', False, \
            False

    def __call__(self, runner, out_dir, filename, file_client_args=None,
                 save_optimizer=True, save_param_scheduler=True, meta=None,
                 by_epoch=True, backend_args=None):
        self.calls.append((filename, backend_args))
        path = osp.join(out_dir, filename)
        if self.as_dir:
            os.makedirs(path, exist_ok=True)
            path = osp.join(path, 'mp_rank_00_model_states.pt')
        with open(path, 'wb') as f:
            if self.fail:
                f.write(self.payload[:len(self.payload) // 2])
                raise KeyboardInterrupt('killed mid-write')
            f.write(self.payload)


@pytest.fixture
def runner(monkeypatch):
    writer = _Writer()
    monkeypatch.setattr(MMEngineFlexibleRunner, 'save_checkpoint',
                        lambda self, *a, **k: writer(self, *a, **k))
    r = object.__new__(FlexibleRunner)  # save_checkpoint uses no state
    r.writer = writer
    return r


def test_registered_as_the_flexible_runner_of_kdep_mm():
    assert RUNNERS.get('FlexibleRunner') is FlexibleRunner
    assert issubclass(FlexibleRunner, MMEngineFlexibleRunner)


def test_exception_mid_write_keeps_the_previous_checkpoint(runner, tmp_path):
    w = runner.writer
    w.payload = b'first checkpoint' * 100
    runner.save_checkpoint(str(tmp_path), 'iter_3.pth', backend_args=ATOMIC)
    assert w.calls == [('.iter_3.pth.tmp', None)]  # written aside
    assert sorted(os.listdir(tmp_path)) == ['iter_3.pth']
    w.payload, w.fail = b'second checkpoint' * 100, True
    with pytest.raises(KeyboardInterrupt):
        runner.save_checkpoint(str(tmp_path), 'iter_3.pth',
                               backend_args=ATOMIC)
    assert _read(tmp_path / 'iter_3.pth') == b'first checkpoint' * 100
    assert (tmp_path / '.iter_3.pth.tmp').exists()  # the partial write
    w.fail = False
    runner.save_checkpoint(str(tmp_path), 'iter_3.pth', backend_args=ATOMIC)
    assert _read(tmp_path / 'iter_3.pth') == b'second checkpoint' * 100
    assert sorted(os.listdir(tmp_path)) == ['iter_3.pth']


def test_directory_checkpoints_publish_whole(runner, tmp_path):
    """DeepSpeed (and FSDP's per-rank shards) write a directory."""
    w = runner.writer
    w.as_dir, w.payload = True, b'tag one'
    runner.save_checkpoint(str(tmp_path), 'iter_3.pth', backend_args=ATOMIC)
    states = tmp_path / 'iter_3.pth' / 'mp_rank_00_model_states.pt'
    assert _read(states) == b'tag one'
    w.payload, w.fail = b'tag two, longer', True
    with pytest.raises(KeyboardInterrupt):
        runner.save_checkpoint(str(tmp_path), 'iter_3.pth',
                               backend_args=ATOMIC)
    assert _read(states) == b'tag one'
    w.fail = False
    runner.save_checkpoint(str(tmp_path), 'iter_3.pth', backend_args=ATOMIC)
    assert _read(states) == b'tag two, longer'
    assert sorted(os.listdir(tmp_path)) == ['iter_3.pth']


def test_other_backends_pass_through(runner, tmp_path):
    runner.writer.payload = b'x'
    runner.save_checkpoint(str(tmp_path), 'iter_1.pth')
    runner.save_checkpoint(str(tmp_path), 'iter_2.pth',
                           backend_args=dict(backend='local'))
    assert runner.writer.calls == [('iter_1.pth', None),
                                   ('iter_2.pth', dict(backend='local'))]
    with pytest.raises(ValueError, match='file_client_args'):
        runner.save_checkpoint(str(tmp_path), 'iter_3.pth',
                               file_client_args=dict(backend='disk'),
                               backend_args=ATOMIC)


def test_publish_needs_a_written_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='no checkpoint'):
        publish_atomically(str(tmp_path / '.a.tmp'), str(tmp_path / 'a'))


def test_mmengine_flexible_runner_with_atomic_writes_is_refused():
    hooks = dict(checkpoint=dict(type='CheckpointHook', backend_args=ATOMIC))
    with pytest.raises(ValueError, match="kdep_mm.FlexibleRunner"):
        check_runner_type(dict(runner_type='FlexibleRunner',
                               default_hooks=hooks))
    for ok in (dict(runner_type='kdep_mm.FlexibleRunner',
                    default_hooks=hooks),
               dict(default_hooks=hooks),  # Runner: backend_args honoured
               dict(runner_type='FlexibleRunner')):  # no atomic writes asked
        check_runner_type(ok)
