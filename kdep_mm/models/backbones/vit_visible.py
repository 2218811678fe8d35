"""ViTs that can run on the visible patches of a mask only (DMAE's
teacher): mmpretrain's ``VisionTransformer`` and ``MAEViT`` plus one
method, :meth:`VisiblePatchForward.forward_visible`; same parameters,
state-dict keys and ``forward`` as the mmpretrain classes, so their
checkpoints load strictly."""
from typing import List, Sequence

import torch
from mmpretrain.models import MAEViT, VisionTransformer
from mmpretrain.models.utils import resize_pos_embed

from kdep_mm.registry import MODELS


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


class VisiblePatchForward:
    """Adds :meth:`forward_visible` to an mmpretrain ViT (mixed in before
    ``VisionTransformer`` or one of its subclasses; overrides nothing)."""

    def forward_visible(self, inputs: torch.Tensor, ids_keep: torch.Tensor,
                        out_layers: Sequence[int]) -> List[torch.Tensor]:
        """Run on the given visible patches only, truncated after the last
        requested block.

        patch_embed -> + pos_embed (patch part) -> gather ``ids_keep`` ->
        prepend ``cls_token + pos_embed[:, :1]`` -> (``drop_after_pos``,
        ``pre_norm``: identities for MAE ViTs in eval) -> blocks
        ``0 .. max(out_layers) - 1``. No final norm, no later block, no
        decoder.

        Args:
            inputs: images, (B, C, H, W).
            ids_keep: (B, n_keep) indices of the visible patches, in the
                order the tokens are to appear (the student's order).
            out_layers: 1-based block counts; ``K`` means the output of the
                ``K``-th block (``self.layers[K - 1]``).

        Returns:
            list[Tensor]: for each entry of ``out_layers``, the
            (B, 1 + n_keep, C) tokens (CLS first) output by that block.
        """
        if getattr(self, 'cls_token', None) is None or getattr(
                self, 'num_extra_tokens', 1) != 1:
            raise ValueError('forward_visible needs a ViT with exactly one '
                             'extra (CLS) token')
        depth = len(self.layers)
        for k in out_layers:
            if not 1 <= k <= depth:
                raise ValueError(f'layer {k} is not in 1..{depth}')
        B = inputs.shape[0]
        x, patch_resolution = self.patch_embed(inputs)
        pos_embed = resize_pos_embed(
            self.pos_embed, self.patch_resolution, patch_resolution,
            mode=getattr(self, 'interpolate_mode', 'bicubic'),
            num_extra_tokens=1)
        x = x + pos_embed[:, 1:, :]
        x = torch.gather(
            x, dim=1,
            index=ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        cls_token = (self.cls_token + pos_embed[:, :1, :]).expand(B, -1, -1)
        x = torch.cat((cls_token, x), dim=1)
        x = self.drop_after_pos(x)
        x = self.pre_norm(x)
        wanted = set(out_layers)
        found = {}
        for i in range(max(out_layers)):
            x = self.layers[i](x)
            if i + 1 in wanted:
                found[i + 1] = x
        return [found[k] for k in out_layers]


@MODELS.register_module()
class VisibleViT(VisiblePatchForward, VisionTransformer):
    """mmpretrain ``VisionTransformer`` with :meth:`forward_visible` (a
    fine-tuned ViT as DMAE's teacher backbone)."""


@MODELS.register_module()
class VisibleMAEViT(VisiblePatchForward, MAEViT):
    """mmpretrain ``MAEViT`` with :meth:`forward_visible` (an MAE as DMAE's
    teacher: ``backbone=dict(type='kdep_mm.VisibleMAEViT', ...)``)."""
