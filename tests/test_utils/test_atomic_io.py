"""Atomic writes: a kill while a checkpoint is written leaves the previous
good file in place and never a partial file under the checkpoint's name."""
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from mmengine.fileio import get_file_backend

import kdep_mm  # noqa: F401  (registers the 'atomic_local' backend)
from kdep_mm.utils import (AtomicLocalBackend, atomic_save,
                           atomic_write_bytes, safe_torch_load)


def test_interrupted_write_keeps_previous_file(tmp_path, monkeypatch):
    path = osp.join(tmp_path, 'ckpt.pth')
    atomic_save({'w': torch.ones(3)}, path)

    def boom(*args, **kwargs):
        raise KeyboardInterrupt  # killed between write and rename

    monkeypatch.setattr(os, 'replace', boom)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({'w': torch.zeros(3)}, path)
    monkeypatch.undo()
    assert torch.equal(safe_torch_load(path)['w'], torch.ones(3))
    assert os.listdir(tmp_path) == ['ckpt.pth']  # temp file cleaned up


def test_sigkill_during_writes_never_leaves_a_partial_file(tmp_path):
    path = osp.join(tmp_path, 'big.pth')
    atomic_save({'step': torch.tensor(-1), 'w': torch.zeros(1)}, path)
    code = textwrap.dedent(f'''
        import torch
        from kdep_mm.utils import atomic_save
        w = torch.randn(12_000_000)  # ~48 MB per write
        step = 0
        while True:
            atomic_save({{'step': torch.tensor(step), 'w': w}}, {path!r})
            if step == 0:
                print('first write done', flush=True)
            step += 1
    ''')
    proc = subprocess.Popen([sys.executable, '-c', code],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'first write done'
        time.sleep(1.3)  # several writes in, most likely mid-write
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    obj = safe_torch_load(path)  # complete, whichever version it is
    assert int(obj['step']) >= 0
    assert obj['w'].numel() == 12_000_000
    leftovers = [f for f in os.listdir(tmp_path) if f != 'big.pth']
    assert all(f.startswith('.big.pth.') and f.endswith('.tmp')
               for f in leftovers)


def test_atomic_local_backend_is_what_checkpoint_hooks_get(tmp_path):
    backend = get_file_backend(str(tmp_path),
                               backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    target = osp.join(tmp_path, 'sub', 'last_checkpoint')
    backend.put_text('epoch_3.pth', target)
    backend.put(b'abc', osp.join(tmp_path, 'sub', 'x.bin'))
    assert backend.get_text(target) == 'epoch_3.pth'
    assert sorted(os.listdir(osp.join(tmp_path, 'sub'))) == [
        'last_checkpoint', 'x.bin']


def test_atomic_write_bytes_replaces_content(tmp_path):
    path = osp.join(tmp_path, 'f')
    atomic_write_bytes(b'one', path)
    atomic_write_bytes(b'two', path)
    with open(path, 'rb') as f:
        assert f.read() == b'two'
