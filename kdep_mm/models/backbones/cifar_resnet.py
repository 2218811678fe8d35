"""The original CIFAR ResNet of He et al. with parameter-free shortcuts.

Reference: K. He, X. Zhang, S. Ren and J. Sun, "Deep Residual Learning for
Image Recognition", CVPR 2016, Sec. 4.2 ("CIFAR-10 and Analysis").

mmpretrain's ``ResNet_CIFAR`` is an ImageNet ResNet with a 3x3 stem; it has
four stages and 1x1-conv projection shortcuts, so it cannot hold the classic
CIFAR checkpoints (e.g. the ResNet-20/32/44/56 of akamaster's
``pytorch_resnet_cifar10``). :class:`CIFARResNet` follows the paper exactly
and its parameter names match those checkpoints one to one.
"""
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import build_conv_layer, build_norm_layer
from mmengine.model import BaseModule
from mmpretrain.models.backbones.base_backbone import BaseBackbone
from torch.nn.modules.batchnorm import _BatchNorm

from kdep_mm.registry import MODELS


def conv3x3(conv_cfg: Optional[dict],
            in_channels: int,
            out_channels: int,
            stride: int = 1) -> nn.Module:
    """A bias-free 3x3 conv with padding 1 (``conv_cfg`` picks the type)."""
    return build_conv_layer(
        conv_cfg,
        in_channels,
        out_channels,
        3,
        stride=stride,
        padding=1,
        bias=False)


class OptionAShortcut(nn.Module):
    """Parameter-free shortcut "option A" of He et al. (2016), Sec. 4.2.

    The identity is subsampled spatially by ``stride``
    (``x[:, :, ::2, ::2]`` for stride 2) and the new channels are zeros,
    split evenly before and after the input channels. For the standard
    doubling of width (``out = 2 * in``) this pads ``out // 4`` zero channels
    on each side, exactly as the classic CIFAR ResNet implementations do.

    Args:
        in_channels (int): Channels of the input.
        out_channels (int): Channels of the output, ``>= in_channels``.
        stride (int): Spatial subsampling factor. Defaults to 1.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1):
        super().__init__()
        if out_channels < in_channels:
            raise ValueError('option-A shortcut cannot reduce channels: '
                             f'in_channels={in_channels}, '
                             f'out_channels={out_channels}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        extra = out_channels - in_channels
        self.pad_before = extra // 2
        self.pad_after = extra - self.pad_before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.pad_before or self.pad_after:
            # F.pad pads from the last dim backwards: (W, W, H, H, C, C).
            x = F.pad(x, (0, 0, 0, 0, self.pad_before, self.pad_after))
        return x

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, '
                f'out_channels={self.out_channels}, stride={self.stride}')


class CIFARBasicBlock(BaseModule):
    """BasicBlock of the CIFAR ResNet: two 3x3 convs and an option-A shortcut.

    ``out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``

    The ReLU after the residual addition is the module ``self.relu`` and is
    called exactly once per forward (the inner ReLU is the separate module
    ``self.relu1``), so a forward-pre-hook on ``relu`` sees the block's
    pre-activation output. Both are ``inplace=True``: a pre-hook that keeps
    its input must ``clone()`` it, the ReLU overwrites it afterwards.

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels.
        stride (int): Stride of ``conv1`` and of the shortcut. Defaults to 1.
        conv_cfg (dict, optional): Config of the conv layers.
        norm_cfg (dict): Config of the norm layers. Defaults to BN.
        init_cfg (dict, optional): Initialisation config.
    """
    expansion = 1

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 stride: int = 1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride
        self.conv1 = conv3x3(conv_cfg, in_channels, out_channels, stride)
        self.bn1 = build_norm_layer(norm_cfg, out_channels)[1]
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(conv_cfg, out_channels, out_channels)
        self.bn2 = build_norm_layer(norm_cfg, out_channels)[1]
        if stride != 1 or in_channels != out_channels:
            self.shortcut = OptionAShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        return self.relu(out)


@MODELS.register_module()
class CIFARResNet(BaseBackbone):
    """The CIFAR ResNet of He et al., "Deep Residual Learning for Image
    Recognition", CVPR 2016, Sec. 4.2.

    Design (for ``base_channels=16``, 32x32 input, ``n = (depth - 2) / 6``):

    ========  ===========================================  ==============
    name      layers                                       output
    ========  ===========================================  ==============
    stem      ``conv1`` 3x3/1 16ch (no bias), ``bn1``,     N x 16 x 32 x 32
              ReLU; no max-pool
    layer1    n BasicBlocks, 16ch, stride 1                N x 16 x 32 x 32
    layer2    n BasicBlocks, 32ch, first stride 2          N x 32 x 16 x 16
    layer3    n BasicBlocks, 64ch, first stride 2          N x 64 x 8 x 8
    ========  ===========================================  ==============

    Each BasicBlock is two 3x3 conv + BN (``conv1, bn1, conv2, bn2``); its
    shortcut is "option A", parameter-free: when a block changes the shape,
    the input is subsampled ``x[:, :, ::2, ::2]`` and zero-padded with
    ``planes // 4`` channels on each side (:class:`OptionAShortcut`). The
    classifier head of the paper (global average pooling + a 64 -> 10 fc) is
    not part of the backbone; use mmpretrain's ``GlobalAveragePooling`` neck
    and ``LinearClsHead``. ResNet-20/32/44/56/110 have 0.27M / 0.46M / 0.66M
    / 0.85M / 1.7M parameters with that head.

    Parameter names match the classic checkpoints (akamaster's
    ``pytorch_resnet_cifar10``): ``conv1``, ``bn1``,
    ``layer{1,2,3}.{i}.{conv1,bn1,conv2,bn2}``; strip their ``module.``
    prefix and map ``linear`` to the head (see
    :func:`convert_cifar_resnet_state_dict`). Those checkpoints expect RGB
    input normalised with mean (0.485, 0.456, 0.406) and std
    (0.229, 0.224, 0.225) on the 0-1 scale.

    The ReLU after each block's residual addition is the block's ``relu``
    module, called once per forward, so a forward-pre-hook on
    ``layer3[-1].relu`` captures the pre-ReLU output of the last block.

    Args:
        depth (int): Network depth ``6n + 2`` (20, 32, 44, 56, 110, ...).
        in_channels (int): Input image channels. Defaults to 3.
        base_channels (int): Width of the stem and the first stage; the
            stages are ``base, 2 * base, 4 * base`` wide. Defaults to 16.
        out_indices (Sequence[int]): Stages (0..2) whose outputs are
            returned, as a tuple ordered like ``out_indices``.
            Defaults to ``(2, )``.
        frozen_stages (int): Stages to freeze (eval mode, no grad):
            ``-1`` none, ``0`` the stem, ``k >= 1`` the stem and stages
            ``1..k``. Defaults to -1.
        norm_eval (bool): Keep the norm layers in eval mode during training
            (frozen running statistics). Defaults to False.
        conv_cfg (dict, optional): Config of the conv layers.
        norm_cfg (dict): Config of the norm layers. Defaults to
            ``dict(type='BN')``.
        init_cfg (dict | list[dict], optional): Initialisation config.
            Defaults to Kaiming for convs and constant 1 for norms.

    Example:
        >>> import torch
        >>> from kdep_mm.registry import MODELS
        >>> model = MODELS.build(
        ...     dict(type='CIFARResNet', depth=20, out_indices=(0, 1, 2)))
        >>> for out in model(torch.rand(1, 3, 32, 32)):
        ...     print(tuple(out.shape))
        (1, 16, 32, 32)
        (1, 32, 16, 16)
        (1, 64, 8, 8)
    """
    num_stages = 3

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 base_channels: int = 16,
                 out_indices: Sequence[int] = (2, ),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 init_cfg=[
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(
                         type='Constant',
                         val=1,
                         layer=['_BatchNorm', 'GroupNorm'])
                 ]):
        super().__init__(init_cfg=init_cfg)
        if (isinstance(depth, bool) or not isinstance(depth, int)
                or depth < 8 or (depth - 2) % 6 != 0):
            raise ValueError(
                'CIFARResNet: depth must be 6n + 2 with n >= 1 '
                f'(20, 32, 44, 56, 110, ...), got depth={depth!r}')
        if (isinstance(base_channels, bool)
                or not isinstance(base_channels, int) or base_channels < 1):
            raise ValueError('CIFARResNet: base_channels must be a positive '
                             f'int, got base_channels={base_channels!r}')
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        out_indices = tuple(out_indices)
        if not out_indices:
            raise ValueError('CIFARResNet: out_indices must not be empty')
        normalized = []
        for index in out_indices:
            if not -self.num_stages <= index < self.num_stages:
                raise ValueError(
                    f'CIFARResNet: out_indices must be in [0, '
                    f'{self.num_stages - 1}] (or negative), got {out_indices}')
            normalized.append(index % self.num_stages)
        if not -1 <= frozen_stages <= self.num_stages:
            raise ValueError('CIFARResNet: frozen_stages must be in '
                             f'[-1, {self.num_stages}], got {frozen_stages}')

        self.depth = depth
        self.num_blocks = (depth - 2) // 6
        self.in_channels = in_channels
        self.base_channels = base_channels
        self.out_indices = tuple(normalized)
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        self.conv_cfg = conv_cfg
        self.norm_cfg = norm_cfg

        self.conv1 = conv3x3(conv_cfg, in_channels, base_channels)
        self.bn1 = build_norm_layer(norm_cfg, base_channels)[1]
        self.relu = nn.ReLU(inplace=True)

        self.stage_channels = tuple(base_channels * 2**i
                                    for i in range(self.num_stages))
        self.res_layers = []
        prev = base_channels
        for i, channels in enumerate(self.stage_channels):
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(self.num_blocks):
                blocks.append(
                    CIFARBasicBlock(
                        prev,
                        channels,
                        stride=stride if j == 0 else 1,
                        conv_cfg=conv_cfg,
                        norm_cfg=norm_cfg))
                prev = channels
            name = f'layer{i + 1}'
            self.add_module(name, nn.Sequential(*blocks))
            self.res_layers.append(name)
        # channels of each stage output, for necks (e.g. FPN in_channels)
        self.feat_dim = self.stage_channels[-1]

        self._freeze_stages()

    def _freeze_stages(self) -> None:
        if self.frozen_stages >= 0:
            for m in (self.conv1, self.bn1):
                m.eval()
                for param in m.parameters():
                    param.requires_grad = False
        for i in range(1, self.frozen_stages + 1):
            m = getattr(self, f'layer{i}')
            m.eval()
            for param in m.parameters():
                param.requires_grad = False

    def forward(self, x: torch.Tensor) -> tuple:
        x = self.relu(self.bn1(self.conv1(x)))
        outs = []
        for i, name in enumerate(self.res_layers):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                outs.append(x)
        # order of the tuple follows the stage order (like mmpretrain ResNet)
        return tuple(outs)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self


# ---------------------------------------------------------------------------
# conversion of the classic (akamaster) checkpoints
# ---------------------------------------------------------------------------
#: ``revise_keys`` for :func:`mmengine.runner.load_checkpoint` that load a raw
#: akamaster checkpoint directly into an mmpretrain ``ImageClassifier`` built
#: with ``CIFARResNet`` + ``GlobalAveragePooling`` + ``LinearClsHead``.
AKAMASTER_REVISE_KEYS = [(r'^module\.linear\.', 'head.fc.'),
                         (r'^module\.', 'backbone.')]

#: CIFAR-10 class names in label order (also the sorted folder names).
CIFAR10_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                   'frog', 'horse', 'ship', 'truck')


def convert_cifar_resnet_state_dict(
        state_dict: Dict[str, torch.Tensor]) -> 'OrderedDict':
    """Rename a classic CIFAR ResNet state dict to mmpretrain's names.

    ``[module.]linear.*`` becomes ``head.fc.*`` and every other
    ``[module.]X`` becomes ``backbone.X``.

    Raises:
        KeyError: a key is already prefixed ``backbone.``/``head.`` (the
            state dict looks converted) or the result lacks ``conv1``.
    """
    out = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith('module.'):
            key = key[len('module.'):]
        if key.startswith(('backbone.', 'head.', 'neck.')):
            raise KeyError(f'{key!r} looks already converted to mmpretrain '
                           'names')
        if key.startswith('linear.'):
            new_key = 'head.fc.' + key[len('linear.'):]
        else:
            new_key = 'backbone.' + key
        out[new_key] = value
    if 'backbone.conv1.weight' not in out:
        raise KeyError('not a CIFAR ResNet state dict: no conv1.weight among '
                       f'{list(state_dict)[:5]}...')
    return out


def _infer_depth(state_dict: Dict[str, torch.Tensor]) -> int:
    blocks = {
        k.split('.')[2]
        for k in state_dict if k.startswith('backbone.layer1.')
    }
    return 6 * len(blocks) + 2


def convert_cifar_resnet_checkpoint(checkpoint: dict,
                                    source: Optional[str] = None) -> dict:
    """Convert a classic CIFAR ResNet checkpoint to an mmpretrain one.

    Args:
        checkpoint (dict): ``{'state_dict': ..., 'best_prec1': ...}`` as saved
            by akamaster's ``pytorch_resnet_cifar10``, or a bare state dict.
        source (str, optional): Where it came from, recorded in ``meta``.

    Returns:
        dict: ``{'state_dict': {'backbone.*', 'head.fc.*'}, 'meta': {...}}``,
        loadable with ``strict=True`` into an ``ImageClassifier`` built from
        ``configs/_base_/models/cifar_resnet{20,56}.py``. ``meta`` holds only
        plain Python values so the file loads with ``weights_only=True``.
    """
    if 'state_dict' in checkpoint and isinstance(checkpoint['state_dict'],
                                                 dict):
        state_dict = checkpoint['state_dict']
    else:
        state_dict = checkpoint
    new_state_dict = convert_cifar_resnet_state_dict(state_dict)
    meta = dict(
        converted_by='kdep_mm cifar_resnet_to_mmpretrain',
        arch=f'CIFARResNet-{_infer_depth(new_state_dict)}',
        dataset_meta=dict(classes=list(CIFAR10_CLASSES)),
    )
    if source is not None:
        meta['source'] = str(source)
    best = checkpoint.get('best_prec1') if state_dict is not checkpoint \
        else None
    if best is not None:
        meta['best_prec1'] = float(best)
    return dict(state_dict=new_state_dict, meta=meta)
