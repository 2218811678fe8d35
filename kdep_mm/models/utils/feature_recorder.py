"""Record the input or output of a named submodule during a forward pass."""
import re
from typing import Optional

import torch
import torch.nn as nn


class FeatureRecorder:
    """Keep a copy of what a submodule receives (or returns) at its last call.

    KDEP distills the last residual block's output *after the residual add and
    before the final ReLU*. In mmpretrain's ResNet blocks that tensor is the
    input of the block's ``relu`` module at its last call in a forward, and
    the ReLU is in-place: a forward hook on the block (or on ``bn2``) would
    see a tensor that the ReLU overwrites a moment later. A forward *pre*-hook
    that clones the ReLU's input captures the pre-activation value safely,
    with its autograd history intact.

    Args:
        model (nn.Module): the module to search, e.g. a backbone.
        name (str): dotted submodule name, e.g. ``'layer4.1.relu'``.
        source (str): ``'input'`` (first positional input, cloned) or
            ``'output'``. Defaults to ``'input'``.
    """

    def __init__(self, model: nn.Module, name: str, source: str = 'input'):
        if source not in ('input', 'output'):
            raise ValueError(f"source must be 'input' or 'output', got "
                             f'{source!r}')
        modules = dict(model.named_modules())
        if name not in modules:
            raise KeyError(f'no submodule named {name!r} in '
                           f'{type(model).__name__}')
        self.name = name
        self.source = source
        self.data: Optional[torch.Tensor] = None
        module = modules[name]
        if source == 'input':
            self._handle = module.register_forward_pre_hook(self._pre_hook)
        else:
            self._handle = module.register_forward_hook(self._hook)

    def _pre_hook(self, module, args):
        self.data = args[0].clone()

    def _hook(self, module, args, output):
        self.data = output

    def reset(self) -> None:
        self.data = None

    def pop(self) -> torch.Tensor:
        """Return the recorded tensor and forget it."""
        if self.data is None:
            raise RuntimeError(f'module {self.name!r} was not called during '
                               'the forward pass')
        data, self.data = self.data, None
        return data

    def remove(self) -> None:
        self._handle.remove()


def default_feature_layer(backbone: nn.Module) -> str:
    """Name of the module whose *input* is KDEP's pre-activation feature.

    - ResNets with ``res_layers`` (mmpretrain/mmdet/mmseg ``ResNet`` family)
      and kdep_mm ``CIFARResNet``: ``'<last layer>.<last block>.relu'``, the
      ReLU after the residual add of the last block.
    - MobileNetV2 (mmpretrain): ``'conv2.activate'``, the ReLU6 after the last
      1x1 conv + BN (1280-d).

    Raises:
        ValueError: the backbone type is not known; set the feature layer in
            the config explicitly.
    """
    layer_names = getattr(backbone, 'res_layers', None)
    if layer_names is None:
        layer_names = sorted(
            (n for n, _ in backbone.named_children()
             if re.fullmatch(r'layer\d+', n)),
            key=lambda n: int(n[5:]))
    if layer_names:
        last_layer = getattr(backbone, layer_names[-1])
        name = f'{layer_names[-1]}.{len(last_layer) - 1}.relu'
        if name in dict(backbone.named_modules()):
            return name
    if type(backbone).__name__ == 'MobileNetV2' and hasattr(backbone, 'conv2'):
        return 'conv2.activate'
    raise ValueError(
        f'cannot infer the distilled feature layer of '
        f'{type(backbone).__name__}; name the module whose input is the '
        'pre-activation feature explicitly (e.g. student_feature='
        "'layer4.1.relu')")
