"""A loop-by-loop reference of the involution multiply-add, for tests only.

It spells out the formula of :class:`kdep_mm.models.utils.involution.
Involution` with explicit Python loops over the kernel offsets and the output
positions (slow: use small shapes). It is differentiable, so tests compare
values and gradients against the unfold-based operator.
"""
import torch


def naive_involution(x: torch.Tensor, kernel: torch.Tensor, kernel_size: int,
                     stride: int, group_channels: int) -> torch.Tensor:
    """``y[n, g*gc + c, i, j] = sum_{u,v} W[n, g, u, v, i, j] *
    x[n, g*gc + c, i*s + u - K//2, j*s + v - K//2]`` (zero outside ``x``).

    Args:
        x (Tensor): ``N x C x H x W``.
        kernel (Tensor): ``N x G*K*K x H' x W'`` (the output of the kernel
            generation, laid out as ``G x K x K``), ``G = C / gc``,
            ``H' = ceil(H / s)``, ``W' = ceil(W / s)``.
        kernel_size (int): ``K`` (odd).
        stride (int): ``s``.
        group_channels (int): ``gc``.

    Returns:
        Tensor: ``N x C x H' x W'``.
    """
    n, channels, height, width = x.shape
    k = kernel_size
    pad = k // 2
    groups = channels // group_channels
    out_h, out_w = kernel.shape[-2:]
    assert kernel.shape[1] == groups * k * k, kernel.shape
    weight = kernel.view(n, groups, k, k, out_h, out_w)
    rows = []
    for i in range(out_h):
        cols = []
        for j in range(out_w):
            acc = x.new_zeros(n, channels)
            for u in range(k):
                for v in range(k):
                    row = i * stride + u - pad
                    col = j * stride + v - pad
                    if not (0 <= row < height and 0 <= col < width):
                        continue  # zero padding
                    w = weight[:, :, u, v, i, j]  # N x G
                    w = w.repeat_interleave(group_channels, dim=1)  # N x C
                    acc = acc + w * x[:, :, row, col]
            cols.append(acc)
        rows.append(torch.stack(cols, dim=-1))  # N x C x W'
    return torch.stack(rows, dim=-2)  # N x C x H' x W'
