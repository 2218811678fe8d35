"""Involution, the spatial-specific, channel-agnostic operator of RedNet.

Reference: D. Li, J. Hu, C. Wang, X. Li, Q. She, L. Zhu, T. Zhang and
Q. Chen, "Involution: Inverting the Inherence of Convolution for Visual
Recognition", CVPR 2021.

A convolution shares one kernel over all positions and has a different
kernel per output channel; an involution generates a kernel *per position*
from the input itself and shares it among the ``group_channels`` channels of
a group. This module is pure PyTorch (``F.unfold``), so it runs on any
device and under mixed precision; it has no custom CUDA kernel.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule

from kdep_mm.registry import MODELS


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f'Involution: {name} must be a positive int, got '
                         f'{name}={value!r}')
    return value


@MODELS.register_module()
class Involution(nn.Module):
    r"""Involution of Li et al., CVPR 2021 ("Involution: Inverting the
    Inherence of Convolution for Visual Recognition").

    With ``C = channels``, ``K = kernel_size``, ``s = stride``,
    ``gc = group_channels`` and ``G = C / gc`` groups:

    1. **Kernel generation** from the (down-sampled) input::

           x' = AvgPool2d(s, s)(x)   if s > 1 else x      # N x C x H' x W'
           W  = span(reduce(x'))                          # N x (G*K*K) x H' x W'

       ``reduce`` is a 1x1 conv ``C -> C / reduction_ratio`` + norm + act
       (attribute ``conv1``), ``span`` a 1x1 conv ``C / r -> K * K * G``
       with bias (attribute ``conv2``). ``W`` is viewed as
       ``N x G x K x K x H' x W'``.

    2. **Multiply-add** over the ``K x K`` neighbourhood (zero padding
       ``K // 2``), the kernel of group ``g`` shared by its ``gc`` channels::

           y[n, g*gc + c, i, j] = sum_{u, v < K} W[n, g, u, v, i, j]
                                  * x[n, g*gc + c, i*s + u - K//2, j*s + v - K//2]

    Shapes: input ``N x C x H x W``, output ``N x C x H' x W'`` with
    ``H' = ceil(H / s)``, ``W' = ceil(W / s)`` (the number of sliding
    positions of a ``K x K`` window with padding ``K // 2`` and stride
    ``s``; the average pooling uses ``ceil_mode`` to match it, which only
    differs from the official floor mode when ``s`` does not divide ``H``
    or ``W``, where the official code fails).

    Implementation: ``F.unfold(x)`` (``N x C*K*K x H'*W'``) is viewed as
    ``N x G x gc x K*K x H' x W'`` and multiplied by the kernel broadcast
    over ``gc``, then summed over ``K*K``. Memory is ``K*K`` times that of
    the input (as in the reference implementation of the paper).

    Mixed precision: under ``torch.autocast`` on the input's device the
    product is formed in the autocast dtype (the dtype of the 1x1 convs'
    outputs there), so the output has the autocast dtype (e.g. bfloat16 on
    CPU, float16 on CUDA); outside autocast both operands are promoted to
    their common dtype (``torch.promote_types``).

    The submodule names (``conv1``: reduce ``ConvModule``, ``conv2``: span
    ``ConvModule``, ``avgpool`` only for ``stride > 1``) follow the official
    RedNet code, so its checkpoints map key for key.

    Args:
        channels (int): Input = output channels ``C``; a multiple of
            ``group_channels`` and of ``reduction_ratio``.
        kernel_size (int): Odd kernel size ``K``. Defaults to 7.
        stride (int): Stride ``s``. Defaults to 1.
        group_channels (int): Channels per group ``gc`` sharing one kernel.
            Defaults to 16.
        reduction_ratio (int): Channel reduction ``r`` of the kernel
            generation. Defaults to 4.
        conv_cfg (dict, optional): Config of the two 1x1 convs.
        norm_cfg (dict, optional): Norm after the reduce conv. Defaults to
            ``dict(type='BN')``.
        act_cfg (dict, optional): Activation after the reduce conv.
            Defaults to ``dict(type='ReLU')``.

    Example:
        >>> import torch
        >>> op = Involution(32, kernel_size=7, stride=2, group_channels=16)
        >>> tuple(op(torch.rand(2, 32, 16, 16)).shape)
        (2, 32, 8, 8)
    """

    def __init__(self,
                 channels: int,
                 kernel_size: int = 7,
                 stride: int = 1,
                 group_channels: int = 16,
                 reduction_ratio: int = 4,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU')):
        super().__init__()
        channels = _positive_int(channels, 'channels')
        kernel_size = _positive_int(kernel_size, 'kernel_size')
        stride = _positive_int(stride, 'stride')
        group_channels = _positive_int(group_channels, 'group_channels')
        reduction_ratio = _positive_int(reduction_ratio, 'reduction_ratio')
        if kernel_size % 2 != 1:
            raise ValueError('Involution: kernel_size must be odd, got '
                             f'kernel_size={kernel_size}')
        if channels % group_channels != 0:
            raise ValueError(
                'Involution: channels must be a multiple of group_channels, '
                f'got channels={channels}, group_channels={group_channels}')
        if channels % reduction_ratio != 0:
            raise ValueError(
                'Involution: channels must be a multiple of reduction_ratio, '
                f'got channels={channels}, reduction_ratio={reduction_ratio}')
        self.channels = channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.group_channels = group_channels
        self.reduction_ratio = reduction_ratio
        self.groups = channels // group_channels

        self.conv1 = ConvModule(
            channels,
            channels // reduction_ratio,
            kernel_size=1,
            conv_cfg=conv_cfg,
            norm_cfg=norm_cfg,
            act_cfg=act_cfg)
        self.conv2 = ConvModule(
            channels // reduction_ratio,
            kernel_size * kernel_size * self.groups,
            kernel_size=1,
            conv_cfg=conv_cfg,
            norm_cfg=None,
            act_cfg=None)
        if stride > 1:
            # ceil_mode: ceil(H / s) rows, as many as the unfold's sliding
            # positions also when s does not divide H (the official code
            # floors and then fails on such inputs; same result otherwise)
            self.avgpool = nn.AvgPool2d(stride, stride, ceil_mode=True)

    def generate_kernel(self, x: torch.Tensor) -> torch.Tensor:
        """The position-specific kernels, ``N x G*K*K x H' x W'``."""
        if self.stride > 1:
            x = self.avgpool(x)
        return self.conv2(self.conv1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.generate_kernel(x)
        n, _, h, w = kernel.shape
        k2 = self.kernel_size * self.kernel_size
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
        else:
            dtype = torch.promote_types(x.dtype, kernel.dtype)
        patches = F.unfold(
            x.to(dtype),
            self.kernel_size,
            padding=self.kernel_size // 2,
            stride=self.stride)
        patches = patches.view(n, self.groups, self.group_channels, k2, h, w)
        kernel = kernel.to(dtype).view(n, self.groups, 1, k2, h, w)
        out = (kernel * patches).sum(dim=3)
        return out.view(n, self.channels, h, w)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, kernel_size={self.kernel_size}, '
                f'stride={self.stride}, group_channels={self.group_channels},'
                f' reduction_ratio={self.reduction_ratio}')
