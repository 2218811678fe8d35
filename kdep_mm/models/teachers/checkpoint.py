"""Strict loading of teacher weights."""
import re
from typing import Dict, Sequence, Tuple

import torch.nn as nn
from mmengine.runner.checkpoint import CheckpointLoader

from kdep_mm.utils.checkpoint import allow_mmengine_checkpoint_types

#: default ``teacher_revise_keys``: strip the ``module.`` of a DDP-wrapped
#: checkpoint.
DEFAULT_REVISE_KEYS = ((r'^module\.', ''), )


def _few(names) -> str:
    return ', '.join(names[:5]) + (' ...' if len(names) > 5 else '')


def load_teacher_checkpoint(teacher: nn.Module, checkpoint: str,
                            revise_keys: Sequence[Tuple[str, str]] = (
                                DEFAULT_REVISE_KEYS),
                            key: str = 'model.teacher_ckpt') -> Dict:
    """Load ``checkpoint`` (path or URL) into ``teacher``, strictly.

    Keys are rewritten by ``revise_keys`` (``re.sub(pattern, repl, key)`` in
    order; a ``(pattern, None)`` entry drops the keys it matches, e.g. the
    neck and momentum encoder of a self-supervised checkpoint). Every key
    of the teacher (BN's ``num_batches_tracked`` counters aside) must then
    be in the checkpoint with the same shape and nothing may be left over,
    else a ValueError names the config ``key`` and lists
    what differs: a checkpoint of another architecture never loads half.

    Returns:
        dict: the checkpoint's ``meta`` (empty if none).
    """
    allow_mmengine_checkpoint_types()
    try:
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{key}: teacher checkpoint not found: '
                                f'{checkpoint}') from e
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f'{key}: could not read the teacher checkpoint '
                           f'{checkpoint}: {e}') from e
    if not isinstance(ckpt, dict):
        raise ValueError(f'{key}: {checkpoint} holds a {type(ckpt).__name__}'
                         ', not a state dict')
    state = ckpt.get('state_dict', ckpt)
    revised = {}
    for name, value in state.items():
        for pattern, repl in revise_keys:
            if repl is None:  # (pattern, None): drop the matching keys
                if re.search(pattern, name):
                    break
                continue
            name = re.sub(pattern, repl, name)
        else:
            revised[name] = value
    own = teacher.state_dict()
    # BN's num_batches_tracked is a step counter, not a weight (checkpoints
    # from PyTorch < 0.4.1 lack it); it is the only key allowed to be absent.
    for name in set(own) - set(revised):
        if name.endswith('num_batches_tracked'):
            revised[name] = own[name]
    missing = sorted(set(own) - set(revised))
    unexpected = sorted(set(revised) - set(own))
    mismatched = sorted(
        n for n in set(own) & set(revised)
        if tuple(own[n].shape) != tuple(revised[n].shape))
    if missing or unexpected or mismatched:
        raise ValueError(
            f'{key}: {checkpoint} does not match the teacher architecture '
            f'({type(teacher).__name__}): {len(missing)} missing keys '
            f'[{_few(missing)}], {len(unexpected)} unexpected keys '
            f'[{_few(unexpected)}], {len(mismatched)} shape mismatches '
            f'[{_few(mismatched)}]. Check model.teacher and '
            'model.teacher_revise_keys.')
    teacher.load_state_dict(revised, strict=True)
    return ckpt.get('meta', {}) or {}
