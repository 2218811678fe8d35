"""Ensemble inductive-bias distillation into a ViT: LIB-KD ("Knowledge
Distillation with Multiple Inductive Biases", Habib et al., arXiv
2310.00369), after Co-advise ("Co-advise: Cross Inductive Bias
Distillation", Ren et al., CVPR 2022).

The student is a ViT with a class token and one extra token per teacher
(:class:`~kdep_mm.models.backbones.MultiTokenViT`), each token with its own
linear head (:class:`~kdep_mm.models.heads.MultiTokenClsHead`):

    p_i   = softmax(teacher_i(x) / T)                  no grad, online or stored
    loss  = CE(class head, y)
          + sum_i w_i * T^2 * KL(p_i || softmax(token_head_i(x) / T))

with T = 1 and w_i = 1 by default. ``target='averaged'``: one teacher
token, distilled towards ``sum_i w_i p_i / sum_i w_i``. Inference averages
all heads (``MultiTokenClsHead.average``). Choices where the papers are
silent are listed in ``docs/ensemble.md``.
"""
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdep_mm.registry import MODELS
from kdep_mm.utils.store_keys import TEACHER_OUTPUTS
from kdep_mm.utils.topk import decode_topk
from ..losses import SoftTargetKLLoss
from ..teachers import per_teacher, stored_mix, stored_teacher_outputs
from ..utils import EnsembleDataPreprocessor
from .base_distiller import BaseDistiller

TARGETS = ('per_teacher', 'averaged')
TOPK_REST = ('renorm', 'uniform', 'zero')


@MODELS.register_module()
class EnsembleDistiller(BaseDistiller):
    """Distil an ensemble of teachers with different inductive biases into
    a ViT, one token (and head) per teacher.

    Two teacher modes:

    - **store mode** (``teachers=None``): no teacher is built; every
      training sample carries ``teacher_outputs`` (``{name: {field:
      array}}``, put there by ``kdep_mm.ApplyStoredView(stores=...)`` and
      ``PackInputs(algorithm_keys=('teacher_outputs', ))``), with the full
      ``logits`` or the top-k ``logits_topk_prob`` / ``logits_topk_idx`` of
      each teacher on exactly the view the student sees. With a batch
      augmentation the stored targets are mixed by the batch's mixing
      matrix (``teacher_mix``, recorded by
      :class:`EnsembleDataPreprocessor`).
    - **online mode** (``teachers`` a dict name -> classifier config): the
      teachers are built, loaded strictly from ``teacher_ckpts``, and run in
      the loop in eval mode under ``no_grad`` on the (mixed) input; like
      BaseDistiller's teacher they are hidden from ``state_dict``,
      ``parameters()`` and DDP. Samples carrying ``teacher_outputs`` still
      use the stored outputs.

    Args:
        student (dict): a :class:`MultiTokenViT` config with
            ``num_teacher_tokens`` = number of teachers (``'per_teacher'``)
            or 1 (``'averaged'``).
        head (dict): a :class:`MultiTokenClsHead` config with ``num_tokens
            = 1 + num_teacher_tokens``; its ``loss`` is the class-head loss
            (CE, or label smoothing).
        teacher_names (sequence[str]): the teachers, in token order
            (teacher token i distils teacher_names[i]).
        teachers (dict, optional): name -> teacher config (an mmpretrain
            ``ImageClassifier``); None = store mode.
        teacher_ckpts (dict, optional): name -> checkpoint path / URL.
        teacher_revise_keys (dict, optional): name -> key substitutions
            (default: strip ``module.``).
        target (str): ``'per_teacher'`` (default) or ``'averaged'``.
        temperature (float): T. Defaults to 1.
        teacher_weights (dict | sequence, optional): w_i. Defaults to 1
            each (``'averaged'``: the averaging weights; the KD term has
            weight 1).
        topk_rest (str): how stored top-k probabilities become a dense
            target (:func:`~kdep_mm.utils.topk.decode_topk`):
            ``'renorm'`` (default: the top-k rescaled to sum to 1),
            ``'uniform'`` or ``'zero'``.
        data_preprocessor (dict): defaults to
            :class:`EnsembleDataPreprocessor`.
    """

    exports = ('backbone', 'classifier')

    def __init__(self,
                 student: dict,
                 head: dict,
                 teacher_names: Sequence[str],
                 teachers: Optional[Dict[str, dict]] = None,
                 teacher_ckpts: Optional[Dict[str, Optional[str]]] = None,
                 teacher_revise_keys: Optional[Dict[str, Sequence]] = None,
                 target: str = 'per_teacher',
                 temperature: float = 1.0,
                 teacher_weights: Optional[Union[dict, Sequence]] = None,
                 topk_rest: str = 'renorm',
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='kdep_mm.EnsembleDataPreprocessor')
        if isinstance(teacher_names, str) or not teacher_names:
            raise ValueError('model.teacher_names must be a non-empty list of'
                             f' names, got {teacher_names!r}')
        names = [str(n) for n in teacher_names]
        if len(set(names)) != len(names):
            raise ValueError(f'model.teacher_names has duplicates: {names}')
        if target not in TARGETS:
            raise ValueError(f'model.target must be one of {TARGETS}, got '
                             f'{target!r}')
        if not temperature > 0:
            raise ValueError(f'model.temperature must be > 0, got '
                             f'{temperature}')
        if topk_rest not in TOPK_REST:
            raise ValueError(f'model.topk_rest must be one of {TOPK_REST}, '
                             f'got {topk_rest!r}')
        weights = [float(w) for w in per_teacher(
            teacher_weights, names, 'model.teacher_weights', 1.0)]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f'model.teacher_weights must be >= 0 with a '
                             f'positive sum, got {weights}')
        if teachers is not None:
            teachers = dict(zip(names, per_teacher(teachers, names,
                                                   'model.teachers')))
        super().__init__(student=student, head=head, teachers=teachers,
                         teacher_ckpts=teacher_ckpts,
                         teacher_revise_keys=teacher_revise_keys,
                         teachers_need_head=True,
                         data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.teacher_names = names
        self.target = target
        self.temperature = float(temperature)
        self.topk_rest = topk_rest
        self.teacher_weights = dict(zip(names, weights))
        self.kd_loss = SoftTargetKLLoss(self.temperature)

        want_tokens = len(names) if target == 'per_teacher' else 1
        got_tokens = getattr(self.student, 'num_teacher_tokens', None)
        if got_tokens != want_tokens:
            raise ValueError(
                f'model.student.num_teacher_tokens is {got_tokens}, but '
                f"target='{target}' with model.teacher_names={names} needs "
                f'{want_tokens}')
        if getattr(self.head, 'num_tokens', None) != want_tokens + 1:
            raise ValueError(
                f'model.head.num_tokens is '
                f'{getattr(self.head, "num_tokens", None)}, needs '
                f'{want_tokens + 1} (class token + {want_tokens})')
        pre = self.data_preprocessor
        if getattr(pre, 'batch_augments', None) is not None and \
                not isinstance(pre, EnsembleDataPreprocessor):
            raise ValueError(
                'model.data_preprocessor has batch_augments but is a '
                f'{type(pre).__name__}: use kdep_mm.EnsembleDataPreprocessor'
                ', which records the mixing so that stored teacher targets '
                'are mixed like the images')

    # ------------------------------------------------------------ targets
    def _tempered(self, probs: torch.Tensor) -> torch.Tensor:
        if self.temperature == 1.0:
            return probs
        p = probs.clamp_min(0).pow(1.0 / self.temperature)
        return p / p.sum(1, keepdim=True).clamp_min(1e-12)

    def _stored_probs(self, name: str, fields: List[dict],
                      device) -> torch.Tensor:
        num_classes = self.head.num_classes
        have = sorted(fields[0])
        if 'logits' in fields[0]:
            logits = torch.as_tensor(np.stack(
                [np.asarray(f['logits'], dtype=np.float32) for f in fields]))
            probs = F.softmax(logits.to(device) / self.temperature, dim=1)
        elif 'logits_topk_prob' in fields[0] and \
                'logits_topk_idx' in fields[0]:
            dense = decode_topk(
                np.stack([f['logits_topk_prob'] for f in fields]),
                np.stack([f['logits_topk_idx'] for f in fields]),
                num_classes, rest=self.topk_rest)
            probs = self._tempered(torch.from_numpy(dense).to(device))
        else:
            raise ValueError(
                f'teacher_outputs.{name} has the fields {have}: a store of '
                "'logits' (tools/cache_teacher.py --fields logits, "
                'optionally --topk K) is needed')
        if probs.shape[1] != num_classes:
            raise ValueError(
                f'teacher {name!r} gives {probs.shape[1]} classes, '
                f'model.head.num_classes is {num_classes}')
        return probs

    def teacher_probs(self, inputs: torch.Tensor,
                      data_samples: Optional[List] = None
                      ) -> Dict[str, torch.Tensor]:
        """Each teacher's soft target ``softmax(t / T)`` (N, num_classes),
        no grad: from the samples' ``teacher_outputs`` (mixed with their
        ``teacher_mix`` rows) or from the online teachers on ``inputs``."""
        outs = stored_teacher_outputs(data_samples, self.teacher_names)
        with torch.no_grad():
            if outs is not None:
                probs = {n: self._stored_probs(n, [o[n] for o in outs],
                                               inputs.device)
                         for n in self.teacher_names}
                mix = stored_mix(data_samples, inputs.device)
                if mix is not None:
                    probs = {n: mix @ p for n, p in probs.items()}
                return probs
            if not len(self.frozen_teachers):
                raise ValueError(
                    f'store mode (model.teachers=None) needs '
                    f'{TEACHER_OUTPUTS} in every data sample: add '
                    'kdep_mm.ApplyStoredView(stores=...) and mmpretrain.'
                    f"PackInputs(algorithm_keys=('{TEACHER_OUTPUTS}',)) to "
                    'the training pipeline')
            probs = {}
            for name, teacher in self.frozen_teachers.items():
                logits = teacher.logits(inputs)
                probs[name] = F.softmax(logits.float() / self.temperature,
                                        dim=1)
                if probs[name].shape[1] != self.head.num_classes:
                    raise ValueError(
                        f'model.teachers.{name} gives '
                        f'{probs[name].shape[1]} classes, '
                        f'model.head.num_classes is {self.head.num_classes}')
        return probs

    # ------------------------------------------------------------- losses
    def student_logits(self, inputs: torch.Tensor) -> List[torch.Tensor]:
        """Logits of every head, class head first."""
        return self.head.token_logits(self.student(inputs))

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        if data_samples is None:
            raise ValueError('EnsembleDistiller needs labelled data samples')
        targets = self.teacher_probs(inputs, data_samples)
        logits = self.student_logits(inputs)
        losses = dict(
            loss_cls=self.head._get_loss(logits[0], data_samples)['loss'])
        if self.target == 'per_teacher':
            for i, name in enumerate(self.teacher_names):
                losses[f'loss_kd_{name}'] = self.teacher_weights[name] * \
                    self.kd_loss(logits[1 + i], targets[name])
        else:
            total = sum(self.teacher_weights.values())
            avg = sum(self.teacher_weights[n] * targets[n]
                      for n in self.teacher_names) / total
            losses['loss_kd'] = self.kd_loss(logits[1], avg)
        return losses

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        """mmpretrain ``DataSample``s whose ``pred_score`` is the softmax of
        the heads' ensemble (see ``MultiTokenClsHead.average``)."""
        with torch.no_grad():
            return self.head.predict(self.student(inputs), data_samples)

    def extract_feat(self, inputs: torch.Tensor):
        """``mode='tensor'``: the heads' outputs on the student's tokens."""
        return self.head(self.student(inputs))

    def classifier_checkpoint(self) -> dict:
        """The whole student (``backbone.*`` = the MultiTokenViT with its
        teacher tokens, ``head.*`` = every head) as an mmpretrain
        ``ImageClassifier`` checkpoint; it loads strictly into
        ``ImageClassifier(backbone=MultiTokenViT, head=MultiTokenClsHead)``
        and predicts what the distiller predicts."""
        state = self._student_state()
        state.update({f'head.{k}': v.detach().cpu().clone()
                      for k, v in self.head.state_dict().items()})
        meta = dict(algorithm='EnsembleDistiller',
                    teacher_names=list(self.teacher_names),
                    num_classes=self.head.num_classes,
                    average=self.head.average)
        return dict(state_dict=state, meta=meta)
