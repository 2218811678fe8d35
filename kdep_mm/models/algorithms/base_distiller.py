"""Teacher/student wiring shared by the distillation algorithms."""
import hashlib
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub, print_log
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement
from mmengine.runner.checkpoint import CheckpointLoader

from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import allow_mmengine_checkpoint_types
from ..utils import FeatureRecorder, default_feature_layer


def _backbone_of(model: nn.Module) -> nn.Module:
    return model.backbone if hasattr(model, 'backbone') else model


def load_teacher_checkpoint(teacher: nn.Module, checkpoint: str,
                            revise_keys: Sequence[Tuple[str, str]] = (
                                (r'^module\.', ''), ),
                            key: str = 'model.teacher_ckpt') -> Dict:
    """Load ``checkpoint`` (path or URL) into ``teacher``, strictly.

    Every key of the teacher (BN's ``num_batches_tracked`` counters aside)
    must be in the checkpoint with the same shape and nothing else may be
    left over, else a ValueError names the config
    key and lists what differs: a checkpoint of another architecture never
    loads half.

    Returns:
        dict: the checkpoint's ``meta`` (empty if none).
    """
    allow_mmengine_checkpoint_types()
    try:
        ckpt = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    except FileNotFoundError as e:
        raise FileNotFoundError(f'{key}: teacher checkpoint not found: '
                                f'{checkpoint}') from e
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f'{key}: could not read the teacher checkpoint '
                           f'{checkpoint}: {e}') from e
    if not isinstance(ckpt, dict):
        raise ValueError(f'{key}: {checkpoint} holds a {type(ckpt).__name__}'
                         ', not a state dict')
    state = ckpt.get('state_dict', ckpt)
    revised = {}
    for name, value in state.items():
        for pattern, repl in revise_keys:
            name = re.sub(pattern, repl, name)
        revised[name] = value
    own = teacher.state_dict()
    # BN's num_batches_tracked is a step counter, not a weight (checkpoints
    # from PyTorch < 0.4.1 lack it); it is the only key allowed to be absent.
    for name in set(own) - set(revised):
        if name.endswith('num_batches_tracked'):
            revised[name] = own[name]
    missing = sorted(set(own) - set(revised))
    unexpected = sorted(set(revised) - set(own))
    mismatched = sorted(
        n for n in set(own) & set(revised)
        if tuple(own[n].shape) != tuple(revised[n].shape))
    if missing or unexpected or mismatched:

        def _few(names):
            return ', '.join(names[:5]) + (' ...' if len(names) > 5 else '')

        raise ValueError(
            f'{key}: {checkpoint} does not match the teacher architecture '
            f'({type(teacher).__name__}): {len(missing)} missing keys '
            f'[{_few(missing)}], {len(unexpected)} unexpected keys '
            f'[{_few(unexpected)}], {len(mismatched)} shape mismatches '
            f'[{_few(mismatched)}]. Check model.teacher and '
            'model.teacher_revise_keys.')
    teacher.load_state_dict(revised, strict=True)
    return ckpt.get('meta', {}) or {}


class BaseDistiller(BaseModel):
    """A trainable student and a frozen teacher.

    The teacher is built from ``teacher`` (an mmpretrain ``ImageClassifier``
    or a bare backbone), loaded strictly from ``teacher_ckpt`` and then kept
    *outside* the module tree: it is not in ``state_dict`` (checkpoints hold
    the student only), not in ``parameters()`` (so never in the optimizer or
    the DDP wrapper), always in eval mode (BN statistics never move), and run
    under ``torch.no_grad``. Device moves (``.to``/``.cuda``) reach it
    through :meth:`_apply`.

    Args:
        student (dict): config of the student backbone (e.g.
            ``dict(type='mmpretrain.ResNet', depth=18)``).
        teacher (dict): config of the teacher.
        teacher_ckpt (str, optional): path or URL of the teacher weights.
        teacher_revise_keys (list[tuple[str, str]]): regex substitutions
            applied to checkpoint keys before the strict load. Defaults to
            stripping a leading ``module.``.
        student_feature / teacher_feature (str, optional): name, inside each
            backbone, of the module whose *input* is the distilled feature;
            inferred by :func:`default_feature_layer` when None.
    """

    #: False for algorithms that do not distill the pooled pre-activation
    #: feature (no ``student_feature`` / ``teacher_feature`` recorders).
    uses_pooled_features = True

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 teacher_ckpt: Optional[str] = None,
                 teacher_revise_keys: Sequence = ((r'^module\.', ''), ),
                 student_feature: Optional[str] = None,
                 teacher_feature: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='mmpretrain.ClsDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        for name, cfg in (('student', student), ('teacher', teacher)):
            if not isinstance(cfg, (dict, nn.Module)):
                raise TypeError(f'model.{name} must be a config dict, got '
                                f'{type(cfg).__name__}')
        self.student = MODELS.build(student) if isinstance(student,
                                                           dict) else student

        teacher_model = MODELS.build(teacher) if isinstance(
            teacher, dict) else teacher
        self.teacher_ckpt = teacher_ckpt
        if teacher_ckpt is not None:
            load_teacher_checkpoint(
                teacher_model, teacher_ckpt,
                [tuple(p) for p in teacher_revise_keys])
        else:
            teacher_model.init_weights()
            if not getattr(teacher_model, 'init_cfg', None):
                print_log(
                    'model.teacher_ckpt is None and the teacher has no '
                    'init_cfg: the teacher is randomly initialised',
                    logger='current', level=30)
        teacher_model.eval()
        teacher_model.requires_grad_(False)
        # A list hides the teacher from nn.Module's registration.
        self._teacher: List[nn.Module] = [teacher_model]

        self.student_feature = self.teacher_feature = None
        self._student_recorder = self._teacher_recorder = None
        if not self.uses_pooled_features:
            if student_feature is not None or teacher_feature is not None:
                raise ValueError(
                    f'{type(self).__name__} does not distill pooled features:'
                    ' model.student_feature / model.teacher_feature do not '
                    'apply')
            return
        self.student_feature = self._resolve_layer(self.student,
                                                   student_feature,
                                                   'model.student_feature')
        self.teacher_feature = self._resolve_layer(
            _backbone_of(teacher_model), teacher_feature,
            'model.teacher_feature')
        self._student_recorder = FeatureRecorder(self.student,
                                                 self.student_feature)
        self._teacher_recorder = FeatureRecorder(
            _backbone_of(teacher_model), self.teacher_feature)

    @staticmethod
    def _resolve_layer(backbone: nn.Module, name: Optional[str],
                       key: str) -> str:
        if name is None:
            try:
                return default_feature_layer(backbone)
            except ValueError as e:
                raise ValueError(f'{key}: {e}') from e
        if name not in dict(backbone.named_modules()):
            candidates = [
                n for n, m in backbone.named_modules()
                if isinstance(m, (nn.ReLU, nn.ReLU6))
            ][-3:]
            raise ValueError(
                f'{key}: no module named {name!r} in '
                f'{type(backbone).__name__}; the last activation modules are '
                f'{candidates}')
        return name

    # ----------------------------------------------------------- teacher
    @property
    def teacher(self) -> nn.Module:
        return self._teacher[0]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._teacher[0]._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self._teacher[0].eval()
        return self

    def teacher_fingerprint(self) -> str:
        """sha256 of every teacher parameter and buffer (names and bytes)."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.teacher.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().view(-1).view(
                torch.uint8).numpy().tobytes())
        return h.hexdigest()

    # ---------------------------------------------------------- features
    @staticmethod
    def _pool(fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3)) if fmap.dim() == 4 else fmap

    @torch.no_grad()
    def teacher_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Pooled pre-activation teacher feature, (N, C_t), no grad."""
        self.teacher.eval()
        self._teacher_recorder.reset()
        _backbone_of(self.teacher)(inputs)
        return self._pool(self._teacher_recorder.pop())

    def student_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """Pooled pre-activation student feature, (N, C_s)."""
        self._student_recorder.reset()
        self.student(inputs)
        return self._pool(self._student_recorder.pop())

    @torch.no_grad()
    def _attach_per_sample_loss(self, student: torch.Tensor,
                                target: torch.Tensor,
                                data_samples: Optional[List]) -> List:
        """Set ``distill_loss`` (the loss of each sample alone, a scalar
        tensor) on every data sample, for :class:`DistillLossMetric`."""
        if data_samples is None:
            data_samples = [BaseDataElement() for _ in range(len(student))]
        for sample, s, t in zip(data_samples, student, target):
            value = self.distill_loss(s[None], t[None])
            sample.set_field(value.detach().cpu(), 'distill_loss')
        return data_samples

    def parse_losses(self, losses: Dict[str, torch.Tensor]):
        """mmengine's loss parsing, refusing NaN/Inf.

        Raises:
            FloatingPointError: a loss term is not finite; the message names
                the term, its value and the training iteration, and training
                stops instead of stepping the optimizer with it.
        """
        for name, value in losses.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            for v in values:
                if isinstance(v, torch.Tensor) and not torch.isfinite(
                        v.detach()).all():
                    it = MessageHub.get_current_instance().get_info('iter')
                    where = '' if it is None else f' at iteration {it + 1}'
                    raise FloatingPointError(
                        f'loss term {name!r} is {v.detach().cpu().tolist()}'
                        f'{where}; stopping instead of training on it. Check '
                        'the learning rate, the teacher checkpoint and the '
                        'inputs.')
        return super().parse_losses(losses)

    def forward(self,
                inputs: torch.Tensor,
                data_samples: Optional[List] = None,
                mode: str = 'tensor'):
        """``mode='loss'`` -> dict of losses, ``'predict'`` -> data samples,
        ``'tensor'`` -> the student backbone's outputs."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.student(inputs)
        raise RuntimeError(f'Invalid mode "{mode}": expected "loss", '
                           '"predict" or "tensor"')

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        raise NotImplementedError
