"""RedNet: a ResNet whose 3x3 convs are replaced by 7x7 involutions.

Reference: D. Li, J. Hu, C. Wang, X. Li, Q. She, L. Zhu, T. Zhang and
Q. Chen, "Involution: Inverting the Inherence of Convolution for Visual
Recognition", CVPR 2021 (official code: github.com/d-li14/involution, an
mmcls 0.x plugin).

The network is mmpretrain's ``ResNet`` (``deep_stem`` layout, bottleneck
blocks, ``layer1..4``) with two changes, as in the official code: the 3x3
conv of each bottleneck is an :class:`~kdep_mm.models.utils.involution.
Involution` with a 7x7 kernel (stride in the involution) and the stem holds a
3x3 involution. Parameter names follow the official code, so its ImageNet
checkpoints load into :class:`RedNet` with the usual ``backbone.`` prefix.
"""
from typing import Optional, Sequence, Union

import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer
from mmpretrain.models.backbones.resnet import Bottleneck, ResNet

from kdep_mm.models.utils.involution import Involution
from kdep_mm.registry import MODELS


class RedBottleneck(Bottleneck):
    """mmpretrain's ``Bottleneck`` with an involution as its spatial layer.

    ``conv1`` 1x1 (C_in -> C_mid) + BN + ReLU, ``conv2`` = Involution
    (``C_mid``, ``kernel_size``, stride of the block; kernel generation
    ``C_mid -> C_mid / 4 -> K*K*C_mid/16``) + BN + ReLU, ``conv3`` 1x1
    (C_mid -> 4 C_mid) + BN, residual addition, ReLU ("pytorch" style: the
    stride sits in the spatial layer). ``C_mid`` must be a multiple of the
    involution's ``group_channels`` (16).

    Args:
        in_channels (int): Input channels.
        out_channels (int): Output channels (``expansion * C_mid``).
        kernel_size (int): Involution kernel size. Defaults to 7.
        group_channels (int): Channels sharing one involution kernel.
            Defaults to 16.
        reduction_ratio (int): Reduction of the kernel generation.
            Defaults to 4.
        **kwargs: The other arguments of mmpretrain's ``Bottleneck``
            (``expansion``, ``stride``, ``downsample``, ``with_cp``,
            ``conv_cfg``, ``norm_cfg``, ``drop_path_rate``, ...);
            ``dilation`` must be 1 and ``style`` ``'pytorch'``.
    """

    def __init__(self,
                 in_channels: int,
                 out_channels: int,
                 kernel_size: int = 7,
                 group_channels: int = 16,
                 reduction_ratio: int = 4,
                 **kwargs):
        super().__init__(in_channels, out_channels, **kwargs)
        if self.dilation != 1 or self.style != 'pytorch':
            raise ValueError('RedBottleneck supports dilation=1 and '
                             f"style='pytorch' only, got dilation="
                             f'{self.dilation}, style={self.style!r}')
        # the 3x3 conv built by Bottleneck is replaced (same attribute name,
        # as in the official RedNet)
        self.conv2 = Involution(
            self.mid_channels,
            kernel_size=kernel_size,
            stride=self.conv2_stride,
            group_channels=group_channels,
            reduction_ratio=reduction_ratio,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg)


_DEFAULT_INIT = [
    dict(type='Kaiming', layer=['Conv2d']),
    dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
]


@MODELS.register_module()
class RedNet(ResNet):
    """RedNet of Li et al., "Involution: Inverting the Inherence of
    Convolution for Visual Recognition", CVPR 2021.

    Architecture (``stem_channels=64``, ``base_channels=64``, 224x224 input)::

        stem 'imagenet'  conv3x3/2 3->32 + BN + ReLU,              112x112
                         involution 3x3/1 (32 ch) + BN + ReLU,
                         conv3x3/1 32->64 + BN + ReLU,
                         max-pool 3x3/2                              56x56
        layer1..4        RedBottleneck x stage_blocks, widths
                         256 / 512 / 1024 / 2048, strides 1/2/2/2    56..7

    ``stage_blocks`` per depth (official): 26: (1, 2, 4, 1),
    38: (2, 3, 5, 2), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3),
    152: (3, 8, 36, 3). Each block: 1x1 conv, 7x7 involution (group
    channels 16, reduction 4, stride of the block), 1x1 conv, expansion 4;
    projection shortcut (1x1 conv + BN) where the shape changes.

    The stem follows the official code (the ``deep_stem`` of ResNet-D with
    its middle 3x3 conv replaced by a 3x3 involution), module for module:
    ``stem.0`` ConvModule, ``stem.1`` Involution, ``stem.2`` BN, ``stem.3``
    ReLU, ``stem.4`` ConvModule. ``stem='cifar'`` (for 32x32 images) is one
    3x3 conv, stride 1, ``in_channels -> stem_channels`` + BN + ReLU
    (``stem.0``), without max-pool: with ``strides=(1, 2, 2, 2)`` a 32x32
    image gives 32 / 16 / 8 / 4 feature maps.

    Parameters with a linear 1000-class head (``GlobalAveragePooling`` +
    ``LinearClsHead``, 2048 -> 1000): RedNet-26 9.23M, -38 12.39M,
    -50 15.54M, -101 25.65M, -152 33.99M, those of the paper (Table 2) and
    of the official model zoo (see ``tests/test_models/test_involution.py``).

    Args:
        depth (int): 26, 38, 50, 101 or 152.
        in_channels (int): Input image channels. Defaults to 3.
        stem_channels (int): Output channels of the stem. Defaults to 64.
        base_channels (int): Middle (involution) channels of the first stage;
            stage ``i`` has ``base_channels * 2**i`` middle and four times as
            many output channels. Must be a multiple of 16 (the involution's
            group channels). Defaults to 64.
        num_stages (int): Stages, 1 to 4. Defaults to 4.
        strides (Sequence[int]): Stride of the first block of each stage.
            Defaults to ``(1, 2, 2, 2)``.
        out_indices (Sequence[int]): Stages whose outputs are returned, as a
            tuple in stage order. Defaults to ``(3, )``.
        frozen_stages (int): ``-1`` freezes nothing, ``0`` the stem, ``k``
            the stem and stages ``1..k`` (eval mode, no gradients).
            Defaults to -1.
        norm_cfg (dict): Norm layers (also inside the involutions).
            Defaults to ``dict(type='BN')``.
        norm_eval (bool): Keep the norm layers in eval mode while training.
            Defaults to False.
        zero_init_residual (bool): Zero-init the last BN of each block.
            Defaults to True.
        stem (str): ``'imagenet'`` (official) or ``'cifar'``.
            Defaults to ``'imagenet'``.
        init_cfg (dict | list[dict], optional): Initialisation; ``None``
            means the official one: Kaiming (fan-out, normal) for every
            Conv2d with zero biases, constant 1 for norms. Defaults to None.
        conv_cfg (dict, optional): Conv layers. Defaults to None.
        with_cp (bool): Gradient checkpointing in the blocks.
            Defaults to False.
        drop_path_rate (float): Stochastic depth rate. Defaults to 0.

    Example:
        >>> import torch
        >>> from kdep_mm.registry import MODELS
        >>> model = MODELS.build(dict(type='kdep_mm.RedNet', depth=26,
        ...                           stem='cifar', out_indices=(0, 3)))
        >>> [tuple(o.shape) for o in model(torch.rand(1, 3, 32, 32))]
        [(1, 256, 32, 32), (1, 2048, 4, 4)]
    """
    arch_settings = {
        26: (RedBottleneck, (1, 2, 4, 1)),
        38: (RedBottleneck, (2, 3, 5, 2)),
        50: (RedBottleneck, (3, 4, 6, 3)),
        101: (RedBottleneck, (3, 4, 23, 3)),
        152: (RedBottleneck, (3, 8, 36, 3)),
    }
    stem_types = ('imagenet', 'cifar')

    def __init__(self,
                 depth: int,
                 in_channels: int = 3,
                 stem_channels: int = 64,
                 base_channels: int = 64,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 out_indices: Sequence[int] = (3, ),
                 frozen_stages: int = -1,
                 norm_cfg: dict = dict(type='BN'),
                 norm_eval: bool = False,
                 zero_init_residual: bool = True,
                 stem: str = 'imagenet',
                 init_cfg: Optional[Union[dict, list]] = None,
                 conv_cfg: Optional[dict] = None,
                 with_cp: bool = False,
                 drop_path_rate: float = 0.0):
        if isinstance(depth, bool) or depth not in self.arch_settings:
            raise ValueError(
                f'RedNet: depth must be one of '
                f'{tuple(self.arch_settings)}, got depth={depth!r}')
        if stem not in self.stem_types:
            raise ValueError(f'RedNet: stem must be one of {self.stem_types}'
                             f', got stem={stem!r}')
        if not (isinstance(num_stages, int) and 1 <= num_stages <= 4):
            raise ValueError('RedNet: num_stages must be in 1..4, got '
                             f'num_stages={num_stages!r}')
        strides = tuple(strides)
        if len(strides) != num_stages:
            raise ValueError(f'RedNet: strides={strides} must have '
                             f'num_stages={num_stages} entries')
        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        if not out_indices or any(not -num_stages <= i < num_stages
                                  for i in out_indices):
            raise ValueError(
                f'RedNet: out_indices must be non-empty, in [0, '
                f'{num_stages - 1}] (or negative), got {out_indices}')
        out_indices = tuple(sorted({i % num_stages for i in out_indices}))
        if not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'RedNet: frozen_stages must be in [-1, '
                             f'{num_stages}], got {frozen_stages}')
        if base_channels % 16 != 0:
            raise ValueError(
                'RedNet: base_channels must be a multiple of 16 (the '
                f'involution group channels), got {base_channels}')
        if stem == 'imagenet' and stem_channels % 32 != 0:
            raise ValueError(
                "RedNet: stem='imagenet' needs stem_channels a multiple of "
                f'32 (a 16-channel-group involution on stem_channels / 2), '
                f'got {stem_channels}')
        # read by _make_stem_layer, which ResNet.__init__ calls
        self.stem_type = stem
        super().__init__(
            depth=depth,
            in_channels=in_channels,
            stem_channels=stem_channels,
            base_channels=base_channels,
            num_stages=num_stages,
            strides=strides,
            dilations=(1, ) * num_stages,
            out_indices=out_indices,
            style='pytorch',
            # the stem is the Sequential ``self.stem``, so ResNet's forward
            # and _freeze_stages use it
            deep_stem=True,
            avg_down=False,
            frozen_stages=frozen_stages,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            norm_eval=norm_eval,
            with_cp=with_cp,
            zero_init_residual=zero_init_residual,
            init_cfg=_DEFAULT_INIT if init_cfg is None else init_cfg,
            drop_path_rate=drop_path_rate)
        # middle / output channels of each stage, for necks
        self.stage_channels = tuple(
            base_channels * 2**i * self.expansion for i in range(num_stages))

    def _stem_conv(self, in_channels: int, out_channels: int,
                   stride: int) -> ConvModule:
        """A 3x3 conv-norm-ReLU of the stem (padding 1)."""
        return ConvModule(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=stride,
            padding=1,
            conv_cfg=self.conv_cfg,
            norm_cfg=self.norm_cfg,
            inplace=True)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        if self.stem_type == 'cifar':
            self.stem = nn.Sequential(
                self._stem_conv(in_channels, stem_channels, stride=1))
            self.maxpool = nn.Identity()
            return
        mid = stem_channels // 2
        self.stem = nn.Sequential(
            self._stem_conv(in_channels, mid, stride=2),
            Involution(
                mid,
                kernel_size=3,
                stride=1,
                conv_cfg=self.conv_cfg,
                norm_cfg=self.norm_cfg),
            build_norm_layer(self.norm_cfg, mid)[1],
            nn.ReLU(inplace=True),
            self._stem_conv(mid, stem_channels, stride=1))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def train(self, mode: bool = True) -> 'RedNet':
        """Set the mode, keeping ``frozen_stages`` and ``norm_eval``.

        Returns ``self`` (``ResNet.train`` returns None, which breaks
        ``model.eval()`` chaining).
        """
        super().train(mode)
        return self
