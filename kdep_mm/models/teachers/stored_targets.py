"""Teacher targets read from data samples (put there by the stored-view
transforms and ``PackInputs(algorithm_keys=...)``), under the key names of
:mod:`kdep_mm.utils.store_keys`."""
from typing import List, Optional, Sequence

import numpy as np
import torch

from kdep_mm.utils.store_keys import TEACHER_FEAT, TEACHER_MIX, \
    TEACHER_OUTPUTS


def _all_carry(data_samples, key: str) -> bool:
    return data_samples is not None and len(data_samples) > 0 and all(
        key in s for s in data_samples)


def stored_teacher_feat(data_samples: Optional[List], channels: int,
                        device) -> Optional[torch.Tensor]:
    """The samples' ``teacher_feat`` stacked to (N, C_t) float32 on
    ``device``; None unless every sample carries one. A ValueError names
    ``model.teacher_channels`` when C_t differs from ``channels``."""
    if not _all_carry(data_samples, TEACHER_FEAT):
        return None
    stored = torch.stack([
        torch.as_tensor(np.asarray(s.get(TEACHER_FEAT)),
                        dtype=torch.float32).reshape(-1)
        for s in data_samples
    ]).to(device)
    if stored.shape[1] != channels:
        raise ValueError(
            f'data samples carry {TEACHER_FEAT} of {stored.shape[1]} '
            f'channels, model.teacher_channels is {channels}')
    return stored


def stored_teacher_outputs(data_samples: Optional[List],
                           names: Sequence[str]) -> Optional[List[dict]]:
    """Each sample's ``teacher_outputs`` (``{name: {field: array}}``); None
    unless every sample carries them. A ValueError when their teachers are
    not ``names`` (``model.teacher_names``)."""
    if not _all_carry(data_samples, TEACHER_OUTPUTS):
        return None
    outs = [s.get(TEACHER_OUTPUTS) for s in data_samples]
    for o in outs:
        if sorted(o) != sorted(names):
            raise ValueError(
                f'the data samples carry the outputs of the teachers'
                f' {sorted(o)}, model.teacher_names is {list(names)}: '
                f'missing {sorted(set(names) - set(o))}, not in the config '
                f'{sorted(set(o) - set(names))}. Give '
                'ApplyStoredView one store per teacher of '
                'model.teacher_names')
    return outs


def stored_mix(data_samples: Optional[List],
               device) -> Optional[torch.Tensor]:
    """The batch's mixing matrix M (N, N) from the samples' ``teacher_mix``
    rows (float32 on ``device``), so that ``M @ p`` mixes stored targets as
    the images were mixed; None unless every sample carries a row."""
    if not _all_carry(data_samples, TEACHER_MIX):
        return None
    mix = torch.stack([torch.as_tensor(s.get(TEACHER_MIX))
                       for s in data_samples]).to(device=device,
                                                  dtype=torch.float32)
    n = len(data_samples)
    if mix.shape != (n, n):
        raise ValueError(f'{TEACHER_MIX}: a {tuple(mix.shape)} mixing '
                         f'matrix for a batch of {n}')
    return mix
