"""A ViT with one extra learnable token per teacher beside the class token
(the student of ensemble inductive-bias distillation, Co-advise / LIB-KD).

Token layout of the sequence entering the first block::

    [cls, teacher_1, ..., teacher_K, patch_1, ..., patch_L]

* ``cls_token`` and ``pos_embed`` keep mmpretrain ``VisionTransformer``'s
  layout exactly (``pos_embed`` holds ``1 + L`` rows: the class token's and
  the patches'), so the plain-ViT weights of this backbone load into
  ``mmpretrain.VisionTransformer`` without reshaping, and
  ``VisionTransformer``'s own pos-embed resizing (another image size) works
  unchanged.
* The teacher tokens live in two separate parameters: ``teacher_tokens``
  ``(1, K, C)`` and their own positional embeddings ``teacher_pos_embed``
  ``(1, K, C)`` (as DeiT's distillation token has its own ``pos_embed``
  row). They are the keys listed in :attr:`MultiTokenViT.
  export_exclude_keys`, which ``tools/export_student.py`` drops.
"""
from typing import Tuple

import torch
import torch.nn as nn
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones import VisionTransformer
from mmpretrain.models.utils import resize_pos_embed

from kdep_mm.registry import MODELS


@MODELS.register_module()
class MultiTokenViT(VisionTransformer):
    """mmpretrain ``VisionTransformer`` (same patch embedding, blocks, final
    norm, ``init_cfg``) with ``num_teacher_tokens`` extra tokens.

    Every token passes the blocks and the final norm (``ln1``); with
    ``out_type='cls_token'`` each output stage is the tuple ``(cls,
    teacher_1, ..., teacher_K)`` of ``(B, C)`` tensors (as mmpretrain's
    ``DistilledVisionTransformer`` returns ``(cls, dist)``), consumed by
    :class:`~kdep_mm.models.heads.MultiTokenClsHead`.

    :meth:`forward_plain` runs the network *without* the teacher tokens: it
    is exactly what ``mmpretrain.VisionTransformer`` computes from the
    exported weights (see ``docs/ensemble.md``, export).

    Args:
        num_teacher_tokens (int): K >= 1. Defaults to 2.
        out_type (str): ``'cls_token'`` (the token tuple), ``'raw'`` (all
            tokens), ``'featmap'`` or ``'avg_featmap'`` (patch tokens only).
        Others: see ``mmpretrain.VisionTransformer``
        (``with_cls_token`` is always True).
    """

    #: regexes of keys (relative to the backbone) that a plain
    #: ``mmpretrain.VisionTransformer`` does not have; dropped at export.
    export_exclude_keys = (r'^teacher_tokens$', r'^teacher_pos_embed$')

    def __init__(self, *args, num_teacher_tokens: int = 2, **kwargs):
        if kwargs.pop('with_cls_token', True) is not True:
            raise ValueError('MultiTokenViT always has a class token '
                             '(with_cls_token=True)')
        super().__init__(*args, with_cls_token=True, **kwargs)
        k = int(num_teacher_tokens)
        if k < 1:
            raise ValueError(f'num_teacher_tokens must be >= 1, got '
                             f'{num_teacher_tokens}')
        self.num_teacher_tokens = k
        self.teacher_tokens = nn.Parameter(torch.zeros(1, k, self.embed_dims))
        self.teacher_pos_embed = nn.Parameter(
            torch.zeros(1, k, self.embed_dims))
        if self.frozen_stages > 0:
            self.teacher_tokens.requires_grad = False
            self.teacher_pos_embed.requires_grad = False

    def init_weights(self):
        # first, so that a Pretrained checkpoint holding them overwrites
        trunc_normal_(self.teacher_tokens, std=0.02)
        trunc_normal_(self.teacher_pos_embed, std=0.02)
        super().init_weights()

    def _tokens(self, x: torch.Tensor, with_teacher_tokens: bool):
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        pos = resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=1)
        # (cls + pos_0), (patches + pos_1..L): the additions of
        # VisionTransformer.forward, element for element
        parts = [self.cls_token.expand(B, -1, -1) + pos[:, :1]]
        if with_teacher_tokens:
            parts.append((self.teacher_tokens +
                          self.teacher_pos_embed).expand(B, -1, -1))
        parts.append(x + pos[:, 1:])
        x = torch.cat(parts, dim=1)
        x = self.drop_after_pos(x)
        x = self.pre_norm(x)
        return x, patch_resolution

    def _run(self, x: torch.Tensor, with_teacher_tokens: bool) -> Tuple:
        x, hw = self._tokens(x, with_teacher_tokens)
        extra = 1 + (self.num_teacher_tokens if with_teacher_tokens else 0)
        outs = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_tokens(x, hw, extra))
        return tuple(outs)

    def _format_tokens(self, x, hw, extra: int):
        if self.out_type == 'raw':
            return x
        if self.out_type == 'cls_token':
            if extra == 1:
                return x[:, 0]
            return tuple(x[:, i] for i in range(extra))
        patch_token = x[:, extra:]
        if self.out_type == 'featmap':
            B = x.size(0)
            return patch_token.reshape(B, *hw, -1).permute(0, 3, 1, 2)
        return self.ln2(patch_token.mean(dim=1))  # avg_featmap

    def forward(self, x: torch.Tensor) -> Tuple:
        return self._run(x, True)

    def forward_plain(self, x: torch.Tensor) -> Tuple:
        """The class-token ViT without the teacher tokens: what
        ``mmpretrain.VisionTransformer`` computes with the exported
        weights."""
        return self._run(x, False)

    def get_layer_depth(self, param_name: str, prefix: str = ''):
        name = param_name[len(prefix):] if param_name.startswith(
            prefix) else None
        if name in ('teacher_tokens', 'teacher_pos_embed'):
            return 0, self.num_layers + 2
        return super().get_layer_depth(param_name, prefix)
