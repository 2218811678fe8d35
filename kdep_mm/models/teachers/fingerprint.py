"""The identity of a teacher: a hash of its weights."""
import hashlib

import torch
import torch.nn as nn


def teacher_fingerprint(module: nn.Module) -> str:
    """sha256 over ``state_dict`` items in sorted name order: for each, the
    name (utf-8) then the tensor's raw bytes (C order, on the CPU).

    The value a teacher store's manifest records (``teacher_fingerprint``)
    and a training run compares against its online teacher.

    Example:
        >>> import torch.nn as nn
        >>> len(teacher_fingerprint(nn.Linear(2, 2)))
        64
    """
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(
            torch.uint8).numpy().tobytes())
    return h.hexdigest()
