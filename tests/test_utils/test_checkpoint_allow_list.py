"""``torch.load(weights_only=True)`` of mmengine checkpoints after
``import kdep_mm``: what the allow-list lets through (issue 16: an empty
``HistoryBuffer``) and what it still refuses."""
import pickle

import pytest
import torch

import kdep_mm  # noqa: F401  (registers the allow-list)


def test_empty_history_buffer_loads_weights_only(tmp_path):
    """A message hub holding a HistoryBuffer that was created but never
    updated (its history is an empty array, whose data pickles as the call
    ``bytes()``) loads under ``weights_only=True`` (before issue 16:
    "Unsupported global: GLOBAL builtins.bytes")."""
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('test_empty_history_buffer')
    hub.update_scalar('train/loss', 0.5)
    # as the Runner's message hub holds one: registered, resumed, empty
    hub.log_scalars['train/never_updated'] = HistoryBuffer()
    hub._resumed_keys['train/never_updated'] = True
    path = str(tmp_path / 'ckpt.pth')
    torch.save(dict(meta=dict(iter=1), message_hub=hub.state_dict()), path)
    ckpt = torch.load(path)  # weights_only=True is torch's default
    scalars = ckpt['message_hub']['log_scalars']
    empty = scalars['train/never_updated']
    assert isinstance(empty, HistoryBuffer)
    assert len(empty.data[0]) == 0 and len(empty.data[1]) == 0
    assert scalars['train/loss'].current() == 0.5
    restored = MessageHub.get_instance('test_empty_history_buffer_restored')
    restored.load_state_dict(ckpt['message_hub'])
    assert restored.get_scalar('train/loss').current() == 0.5


class _Alloc:
    """A pickle that calls ``bytes(n)``: the real ``bytes`` would allocate
    ``n`` bytes."""

    def __reduce__(self):
        return (bytes, (1 << 20, ))


class _FromList:

    def __reduce__(self):
        return (bytes, ([104, 105], ))


@pytest.mark.parametrize('obj', [_Alloc(), _FromList()])
def test_bytes_with_arguments_still_refused(tmp_path, obj):
    path = str(tmp_path / 'evil.pth')
    torch.save({'x': obj}, path)
    with pytest.raises(pickle.UnpicklingError, match='not allowed'):
        torch.load(path)
    # the file itself is fine: the refusal is the allow-list's
    assert isinstance(torch.load(path, weights_only=False)['x'], bytes)
