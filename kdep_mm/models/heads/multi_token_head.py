"""One linear classifier per token of :class:`~kdep_mm.models.backbones.
MultiTokenViT` (class token + one token per teacher)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmpretrain.models.heads import ClsHead

from kdep_mm.registry import MODELS

AVERAGE_MODES = ('logits', 'softmax')


@MODELS.register_module()
class MultiTokenClsHead(ClsHead):
    """``num_tokens`` heads, ``Linear(in_channels, num_classes)`` each, on
    the tokens the backbone returns (already through its final norm).

    * :meth:`token_logits` -> ``[cls_logits, teacher_1_logits, ...]``, what
      the distiller trains (CE on the class head, KD on the others).
    * ``forward`` / ``predict`` -> the ensemble of all heads:
      ``average='logits'`` (default, as DeiT and Co-advise at inference)
      returns the mean of the heads' logits; ``average='softmax'`` returns
      ``log(mean softmax)``, whose softmax (``predict``'s ``pred_score``)
      is the mean of the heads' probabilities.
    * ``loss`` (standalone ``ImageClassifier`` use): the loss module on the
      class head only.

    Args:
        num_classes (int): classes.
        in_channels (int): token width C.
        num_tokens (int): 1 + number of teacher tokens.
        average (str): ``'logits'`` or ``'softmax'``.
        loss (dict): loss of the class head. Defaults to cross entropy.
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 num_tokens: int,
                 average: str = 'logits',
                 loss: dict = dict(type='mmpretrain.CrossEntropyLoss',
                                   loss_weight=1.0),
                 topk: Union[int, Tuple[int]] = (1, ),
                 init_cfg: Optional[dict] = dict(
                     type='TruncNormal', layer='Linear', std=0.02),
                 **kwargs):
        super().__init__(loss=loss, topk=topk, init_cfg=init_cfg, **kwargs)
        if average not in AVERAGE_MODES:
            raise ValueError(f'head.average must be one of {AVERAGE_MODES}, '
                             f'got {average!r}')
        if int(num_tokens) < 1:
            raise ValueError(f'head.num_tokens must be >= 1, got '
                             f'{num_tokens}')
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.num_tokens = int(num_tokens)
        self.average = average
        self.fcs = nn.ModuleList(
            nn.Linear(self.in_channels, self.num_classes)
            for _ in range(self.num_tokens))

    def pre_logits(self, feats) -> Sequence[torch.Tensor]:
        tokens = feats[-1]
        if isinstance(tokens, torch.Tensor):
            tokens = (tokens, )
        if len(tokens) != self.num_tokens:
            raise ValueError(
                f'head.num_tokens is {self.num_tokens} but the backbone '
                f'returns {len(tokens)} token(s) (1 class token + '
                'backbone.num_teacher_tokens)')
        return tokens

    def token_logits(self, feats) -> List[torch.Tensor]:
        """Logits of every head, class head first."""
        return [fc(t) for fc, t in zip(self.fcs, self.pre_logits(feats))]

    def combine(self, logits: Sequence[torch.Tensor]) -> torch.Tensor:
        """The ensemble of the heads' logits (see the class doc)."""
        stacked = torch.stack(list(logits))
        if self.average == 'logits':
            return stacked.mean(0)
        return torch.logsumexp(stacked.log_softmax(-1), dim=0) - \
            torch.log(torch.tensor(float(len(logits)),
                                   device=stacked.device,
                                   dtype=stacked.dtype))

    def forward(self, feats) -> torch.Tensor:
        return self.combine(self.token_logits(feats))

    def loss(self, feats, data_samples, **kwargs) -> dict:
        return self._get_loss(self.token_logits(feats)[0], data_samples,
                              **kwargs)
