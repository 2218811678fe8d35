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
from mmengine.model import BaseModel
from mmpretrain.models.utils import ClsDataPreprocessor

from kdep_mm.registry import MODELS
from .base_distiller import BaseDistiller, load_teacher_checkpoint

STORE_KEY = 'teacher_outputs'
MIX_KEY = 'teacher_mix'
TARGETS = ('per_teacher', 'averaged')
TOPK_REST = ('renorm', 'uniform', 'zero')


class _MixRecorder:
    """Wraps mmpretrain's ``RandomBatchAugment``: appends the identity
    matrix to the one-hot scores before the augment, so that the augment
    mixes it exactly as it mixes the labels. The result is the batch's
    mixing matrix ``M`` (``mixed_scores = M @ scores``: for Mixup / CutMix
    ``M = lam * I + (1 - lam) * P_perm``), kept in :attr:`matrix`."""

    def __init__(self, augment):
        self.augment = augment
        self.matrix = None

    def __call__(self, inputs: torch.Tensor, scores: torch.Tensor):
        n, c = scores.shape
        eye = torch.eye(n, dtype=torch.float32, device=scores.device)
        mixed_inputs, mixed = self.augment(
            inputs, torch.cat([scores.float(), eye], dim=1))
        self.matrix = mixed[:, c:]
        return mixed_inputs, mixed[:, :c]

    def __getattr__(self, name):
        if name.startswith('__') or name == 'augment':
            raise AttributeError(name)  # copy / pickle of a bare instance
        return getattr(self.augment, name)


@MODELS.register_module()
class EnsembleDataPreprocessor(ClsDataPreprocessor):
    """mmpretrain's ``ClsDataPreprocessor`` that also records how its batch
    augmentation (Mixup, CutMix, ResizeMix, through ``batch_augments``)
    mixed the batch: every training data sample gets ``teacher_mix``, its
    row of the mixing matrix ``M`` (``N`` weights over the batch), so that
    :class:`EnsembleDistiller` mixes *stored* teacher targets with the same
    lambda and permutation as the images and labels (``target = M @ p``).
    Without batch augments nothing is added. Same arguments as
    ``ClsDataPreprocessor``."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.batch_augments is not None:
            self.batch_augments = _MixRecorder(self.batch_augments)

    def forward(self, data: dict, training: bool = False) -> dict:
        recorder = self.batch_augments
        if recorder is not None:
            recorder.matrix = None
        out = super().forward(data, training)
        if recorder is not None and recorder.matrix is not None:
            samples = out.get('data_samples')
            for sample, row in zip(samples, recorder.matrix):
                sample.set_field(row, MIX_KEY)
            recorder.matrix = None
        return out


def _as_list(value, names: Sequence[str], key: str, default=None) -> list:
    """``value`` (None, a dict by teacher name or a sequence in teacher
    order) as a list in ``names`` order."""
    if value is None:
        return [default] * len(names)
    if isinstance(value, dict):
        if sorted(value) != sorted(names):
            raise ValueError(
                f'{key} names the teachers {sorted(value)}, '
                f'model.teacher_names is {list(names)}')
        return [value[n] for n in names]
    value = list(value)
    if len(value) != len(names):
        raise ValueError(f'{key} has {len(value)} entries, '
                         f'model.teacher_names {len(names)}: {list(names)}')
    return value


@MODELS.register_module()
class EnsembleDistiller(BaseDistiller):
    """Distil an ensemble of teachers with different inductive biases into
    a ViT, one token (and head) per teacher.

    Two teacher modes:

    - **store mode** (``teachers=None``): no teacher is built; every
      training sample carries ``teacher_outputs`` (``{name: {field:
      array}}``, put there by ``kdep_mm.ApplyStoredEnsembleView`` and
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
            target (:func:`~kdep_mm.datasets.teacher_store.decode_topk`):
            ``'renorm'`` (default: the top-k rescaled to sum to 1),
            ``'uniform'`` or ``'zero'``.
        data_preprocessor (dict): defaults to
            :class:`EnsembleDataPreprocessor`.
    """

    uses_pooled_features = False

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
        # BaseDistiller's constructor builds exactly one teacher: only
        # BaseModel's is run; the teachers are built below.
        BaseModel.__init__(self, data_preprocessor=data_preprocessor,
                           init_cfg=init_cfg)
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
        self.teacher_names = names
        self.target = target
        self.temperature = float(temperature)
        self.topk_rest = topk_rest
        weights = [float(w) for w in _as_list(
            teacher_weights, names, 'model.teacher_weights', 1.0)]
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f'model.teacher_weights must be >= 0 with a '
                             f'positive sum, got {weights}')
        self.teacher_weights = dict(zip(names, weights))

        self.student = MODELS.build(student) if isinstance(student,
                                                           dict) else student
        self.head = MODELS.build(head) if isinstance(head, dict) else head
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

        self.student_feature = self.teacher_feature = None
        self._student_recorder = self._teacher_recorder = None
        self.teacher_ckpt = None
        self._teacher: List[nn.Module] = []
        if teachers is None:
            if teacher_ckpts is not None or teacher_revise_keys is not None:
                raise ValueError('model.teachers is None (store mode): '
                                 'model.teacher_ckpts / teacher_revise_keys '
                                 'do not apply')
            return
        cfgs = _as_list(teachers, names, 'model.teachers')
        ckpts = _as_list(teacher_ckpts, names, 'model.teacher_ckpts')
        revise = _as_list(teacher_revise_keys, names,
                          'model.teacher_revise_keys',
                          ((r'^module\.', ''), ))
        for name, cfg, ckpt, rev in zip(names, cfgs, ckpts, revise):
            teacher = MODELS.build(cfg) if isinstance(cfg, dict) else cfg
            if not hasattr(teacher, 'head'):
                raise ValueError(f'model.teachers.{name} must be a classifier'
                                 ' with a head (mmpretrain.ImageClassifier)')
            if ckpt is not None:
                load_teacher_checkpoint(teacher, ckpt,
                                        [tuple(p) for p in rev],
                                        key=f'model.teacher_ckpts.{name}')
            else:
                teacher.init_weights()
            teacher.eval()
            teacher.requires_grad_(False)
            self._teacher.append(teacher)
        self.teacher_ckpts = dict(zip(names, ckpts))

    # ----------------------------------------------------------- teachers
    @property
    def teachers(self) -> Dict[str, nn.Module]:
        """name -> teacher (empty in store mode)."""
        return dict(zip(self.teacher_names, self._teacher))

    @property
    def teacher(self) -> Optional[nn.Module]:
        return self._teacher[0] if self._teacher else None

    def _apply(self, fn, *args, **kwargs):
        BaseModel._apply(self, fn, *args, **kwargs)
        for t in self._teacher:
            t._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        BaseModel.train(self, mode)
        for t in self._teacher:
            t.eval()
        return self

    def teacher_fingerprint(self, name: Optional[str] = None) -> str:
        """sha256 of a teacher's weights (the first if ``name`` is None),
        as in the teacher store's manifest."""
        from kdep_mm.apis.cache_teacher import teacher_fingerprint
        if not self._teacher:
            raise RuntimeError('store mode: no teacher to fingerprint (the '
                               "stores' manifests hold them)")
        name = self.teacher_names[0] if name is None else name
        return teacher_fingerprint(self.teachers[name])

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
            from kdep_mm.datasets.teacher_store import decode_topk
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
        if data_samples is not None and len(data_samples) and all(
                STORE_KEY in s for s in data_samples):
            outs = [s.get(STORE_KEY) for s in data_samples]
            for o in outs:
                if sorted(o) != sorted(self.teacher_names):
                    raise ValueError(
                        f'the data samples carry the outputs of the teachers'
                        f' {sorted(o)}, model.teacher_names is '
                        f'{self.teacher_names}: missing '
                        f'{sorted(set(self.teacher_names) - set(o))}, not in '
                        f'the config {sorted(set(o) - set(self.teacher_names))}'
                        '. Give ApplyStoredEnsembleView one store per teacher '
                        'of model.teacher_names')
            with torch.no_grad():
                probs = {n: self._stored_probs(n, [o[n] for o in outs],
                                               inputs.device)
                         for n in self.teacher_names}
                if all(MIX_KEY in s for s in data_samples):
                    mix = torch.stack([
                        torch.as_tensor(s.get(MIX_KEY)) for s in data_samples
                    ]).to(device=inputs.device, dtype=torch.float32)
                    if mix.shape != (len(data_samples), len(data_samples)):
                        raise ValueError(f'{MIX_KEY}: a {tuple(mix.shape)} '
                                         'mixing matrix for a batch of '
                                         f'{len(data_samples)}')
                    probs = {n: mix @ p for n, p in probs.items()}
            return probs
        if not self._teacher:
            raise ValueError(
                f'store mode (model.teachers=None) needs {STORE_KEY} in every'
                ' data sample: add kdep_mm.ApplyStoredEnsembleView and '
                f"mmpretrain.PackInputs(algorithm_keys=('{STORE_KEY}',)) to "
                'the training pipeline')
        probs = {}
        with torch.no_grad():
            for name, teacher in self.teachers.items():
                teacher.eval()
                logits = teacher(inputs, mode='tensor')
                if isinstance(logits, (tuple, list)):
                    logits = logits[-1]
                probs[name] = F.softmax(logits.float() / self.temperature,
                                        dim=1)
                if probs[name].shape[1] != self.head.num_classes:
                    raise ValueError(
                        f'model.teachers.{name} gives '
                        f'{probs[name].shape[1]} classes, '
                        f'model.head.num_classes is {self.head.num_classes}')
        return probs

    # ------------------------------------------------------------- losses
    def kd_loss(self, student_logits: torch.Tensor,
                target_probs: torch.Tensor) -> torch.Tensor:
        """``T^2 * mean_n KL(p || softmax(s / T))``, summed over classes
        (zero-probability classes contribute nothing)."""
        t = self.temperature
        p = target_probs.detach().to(student_logits.dtype)
        log_q = F.log_softmax(student_logits / t, dim=1)
        kl = (torch.xlogy(p, p) - p * log_q).sum(1).mean()
        return kl * t * t

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

    def forward(self, inputs, data_samples=None, mode: str = 'tensor'):
        if mode == 'tensor':
            return self.head(self.student(inputs))
        return super().forward(inputs, data_samples, mode)


def export_ensemble_classifier(model: EnsembleDistiller, path: str) -> dict:
    """Write the whole student (``backbone.*`` = the MultiTokenViT with its
    teacher tokens, ``head.*`` = every head) as an mmpretrain
    ``ImageClassifier`` checkpoint (``atomic_save``); it loads strictly into
    ``ImageClassifier(backbone=MultiTokenViT, head=MultiTokenClsHead)`` and
    predicts what the distiller predicts. Returns the state dict."""
    from kdep_mm.utils.checkpoint import atomic_save
    model = model.module if hasattr(model, 'module') else model
    state = {f'backbone.{k}': v.detach().cpu().clone()
             for k, v in model.student.state_dict().items()}
    state.update({f'head.{k}': v.detach().cpu().clone()
                  for k, v in model.head.state_dict().items()})
    meta = dict(algorithm='EnsembleDistiller',
                teacher_names=list(model.teacher_names),
                num_classes=model.head.num_classes,
                average=model.head.average)
    atomic_save(dict(state_dict=state, meta=meta), path)
    return state
