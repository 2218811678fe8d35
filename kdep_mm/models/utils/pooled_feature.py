"""The pooled feature a distiller reads from a backbone: the input of a
named layer, global-average-pooled."""
from typing import Optional

import torch
import torch.nn as nn

from .feature_recorder import FeatureRecorder, default_feature_layer


def global_pool(fmap: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, C) by the spatial mean; any other shape (already
    pooled, or tokens) is returned unchanged."""
    return fmap.mean(dim=(2, 3)) if fmap.dim() == 4 else fmap


def last_output(feats):
    """The last entry of a backbone's tuple of outputs (or the output)."""
    return feats[-1] if isinstance(feats, (tuple, list)) else feats


def resolve_feature_layer(backbone: nn.Module, name: Optional[str],
                          key: str) -> str:
    """``name``, checked to be a module of ``backbone``, or (None) the
    :func:`default_feature_layer`; a ValueError names the config ``key``."""
    if name is None:
        try:
            return default_feature_layer(backbone)
        except ValueError as e:
            raise ValueError(f'{key}: {e}') from e
    if name not in dict(backbone.named_modules()):
        candidates = [
            n for n, m in backbone.named_modules()
            if isinstance(m, (nn.ReLU, nn.ReLU6))
        ][-3:]
        raise ValueError(
            f'{key}: no module named {name!r} in '
            f'{type(backbone).__name__}; the last activation modules are '
            f'{candidates}')
    return name


@torch.no_grad()
def _probe(backbone: nn.Module, fn, size: int) -> torch.Tensor:
    """``fn(zeros(1, 3, size, size))`` with ``backbone`` in eval mode (BN
    statistics untouched), its training mode restored after."""
    was = backbone.training
    backbone.eval()
    try:
        return fn(torch.zeros(1, 3, size, size))
    finally:
        backbone.train(was)


def output_width(backbone: nn.Module, size: int = 32) -> int:
    """C of the backbone's global-average-pooled last output: its
    ``embed_dims`` (ViTs), else measured on one ``size`` x ``size`` zero
    image in eval mode."""
    dims = getattr(backbone, 'embed_dims', None)
    if isinstance(dims, int):
        return dims
    out = _probe(backbone, lambda x: global_pool(last_output(backbone(x))),
                 size)
    return int(out.shape[1])


class PooledFeature:
    """``f = global_pool(input of backbone.<layer>)``, shape (N, C).

    KDEP's pre-activation feature (the input of the last block's ReLU, see
    :class:`FeatureRecorder`), recorded while ``backbone`` runs.

    Args:
        backbone (nn.Module): the backbone to record from.
        layer (str, optional): the module whose input is the feature; None
            = :func:`default_feature_layer`.
        key (str): the config key named in errors.
    """

    def __init__(self, backbone: nn.Module, layer: Optional[str] = None,
                 key: str = 'model.student_feature'):
        self.layer = resolve_feature_layer(backbone, layer, key)
        self.backbone = backbone
        self._recorder = FeatureRecorder(backbone, self.layer)

    def reset(self) -> None:
        self._recorder.reset()

    def pop(self) -> torch.Tensor:
        """The pooled feature of the last forward of ``backbone``."""
        return global_pool(self._recorder.pop())

    def __call__(self, inputs: torch.Tensor) -> torch.Tensor:
        """Run the backbone on ``inputs`` and return the pooled feature."""
        self.reset()
        self.backbone(inputs)
        return self.pop()

    def width(self, size: int = 32) -> int:
        """C of the feature, measured on one ``size`` x ``size`` zero image
        with the backbone in eval mode (its statistics untouched)."""
        return int(_probe(self.backbone, self, size).shape[1])
