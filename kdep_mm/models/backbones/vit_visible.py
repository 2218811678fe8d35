"""A ViT run on the visible patches of a mask only (DMAE's teacher)."""
from typing import List, Sequence

import torch
import torch.nn as nn
from mmpretrain.models.utils import resize_pos_embed


def num_visible_patches(num_patches: int, mask_ratio: float) -> int:
    """Number of visible (kept) patches per image under ``mask_ratio``.

    The rule is mmpretrain's ``MAEViT.random_masking``, reproduced with the
    very same expression so that the two can never disagree::

        len_keep = int(num_patches * (1 - mask_ratio))

    i.e. the kept count is rounded *down* and the CLS token is not counted
    (the encoder sees ``1 + len_keep`` tokens). With 196 patches (224 px,
    patch 16): 75% -> 49, 95% -> 9 (196 * 0.05 = 9.8), 98% -> 3
    (196 * 0.02 = 3.92). Note the float expression: a ratio whose complement
    is not exactly representable may round one patch lower than the exact
    product (e.g. 100 patches at 0.9 -> 9, not 10); DMAEDistiller checks at
    every forward that the student kept exactly this many tokens.
    """
    return int(num_patches * (1 - mask_ratio))


def vit_forward_visible(backbone: nn.Module,
                        inputs: torch.Tensor,
                        ids_keep: torch.Tensor,
                        out_layers: Sequence[int]) -> List[torch.Tensor]:
    """Run a ViT (mmpretrain ``VisionTransformer``/``MAEViT``) on the given
    visible patches only, truncated after the last requested block.

    patch_embed -> + pos_embed (patch part) -> gather ``ids_keep`` ->
    prepend ``cls_token + pos_embed[:, :1]`` -> (``drop_after_pos``,
    ``pre_norm``: identities for MAE ViTs in eval) -> blocks
    ``0 .. max(out_layers) - 1``. No final norm, no later block, no decoder.

    Args:
        backbone: the ViT.
        inputs: images, (B, C, H, W).
        ids_keep: (B, n_keep) indices of the visible patches, in the order
            the tokens are to appear (the student's order).
        out_layers: 1-based block counts; ``K`` means the output of the
            ``K``-th block (``backbone.layers[K - 1]``).

    Returns:
        list[Tensor]: for each entry of ``out_layers``, the (B, 1 + n_keep, C)
        tokens (CLS first) output by that block.
    """
    if getattr(backbone, 'cls_token', None) is None or getattr(
            backbone, 'num_extra_tokens', 1) != 1:
        raise ValueError('vit_forward_visible needs a ViT with exactly one '
                         'extra (CLS) token')
    depth = len(backbone.layers)
    for k in out_layers:
        if not 1 <= k <= depth:
            raise ValueError(f'layer {k} is not in 1..{depth}')
    B = inputs.shape[0]
    x, patch_resolution = backbone.patch_embed(inputs)
    pos_embed = resize_pos_embed(
        backbone.pos_embed, backbone.patch_resolution, patch_resolution,
        mode=getattr(backbone, 'interpolate_mode', 'bicubic'),
        num_extra_tokens=1)
    x = x + pos_embed[:, 1:, :]
    x = torch.gather(
        x, dim=1, index=ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
    cls_token = (backbone.cls_token + pos_embed[:, :1, :]).expand(B, -1, -1)
    x = torch.cat((cls_token, x), dim=1)
    x = backbone.drop_after_pos(x)
    x = backbone.pre_norm(x)
    wanted = set(out_layers)
    found = {}
    for i in range(max(out_layers)):
        x = backbone.layers[i](x)
        if i + 1 in wanted:
            found[i + 1] = x
    return [found[k] for k in out_layers]
