"""One frozen online teacher."""
from typing import Callable, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log

from kdep_mm.registry import MODELS
from ..utils.pooled_feature import PooledFeature, last_output
from .checkpoint import DEFAULT_REVISE_KEYS, load_teacher_checkpoint
from .fingerprint import teacher_fingerprint
from .placement import align_module


def build_module(cfg: Union[dict, nn.Module], key: str) -> nn.Module:
    """``MODELS.build(cfg)`` (a module is taken as is); a TypeError names
    ``key`` for anything else."""
    if isinstance(cfg, nn.Module):
        return cfg
    if not isinstance(cfg, dict):
        raise TypeError(f'{key} must be a config dict, got '
                        f'{type(cfg).__name__}')
    return MODELS.build(cfg)


class FrozenTeacher:
    """A teacher network that never trains.

    Built from a config (or taken as a module), loaded strictly from
    ``checkpoint`` (:func:`load_teacher_checkpoint`; without one its
    ``init_weights`` runs and a warning says it is random), then frozen:
    ``requires_grad`` off, always in eval mode, run under ``torch.no_grad``.
    It is a plain object, not an ``nn.Module``: a distiller holding it has
    no teacher in its ``state_dict`` (checkpoints hold the student only),
    ``parameters()`` (optimizer, DDP, FSDP, DeepSpeed) or ``train()``. No
    runner or strategy moves it: each call (:meth:`run`) moves it to the
    device of its inputs and the dtype of the student it :meth:`follow` s
    (:func:`~kdep_mm.models.teachers.placement.align_module`).

    Args:
        teacher (dict | nn.Module): config of the teacher (an mmpretrain
            ``ImageClassifier`` or a bare backbone).
        checkpoint (str, optional): path or URL of the weights.
        revise_keys (list[tuple[str, str]], optional): key substitutions
            before the strict load; None = strip ``module.``.
        key / ckpt_key (str): config keys named in errors.
        require_head (bool): refuse a teacher without a classification head
            (logit distillation).

    Example:
        >>> import torch, torch.nn as nn
        >>> t = FrozenTeacher(nn.Linear(3, 2))
        >>> t.module.training, t.module.weight.requires_grad
        (False, False)
    """

    def __init__(self,
                 teacher: Union[dict, nn.Module],
                 checkpoint: Optional[str] = None,
                 revise_keys: Optional[Sequence] = None,
                 key: str = 'model.teacher',
                 ckpt_key: str = 'model.teacher_ckpt',
                 require_head: bool = False):
        module = build_module(teacher, key)
        if require_head and not hasattr(module, 'head'):
            raise ValueError(f'{key} must be a classifier with a head (e.g. '
                             'mmpretrain.ImageClassifier) for logit '
                             'distillation')
        if checkpoint is not None:
            revise = DEFAULT_REVISE_KEYS if revise_keys is None else \
                revise_keys
            load_teacher_checkpoint(module, checkpoint,
                                    [tuple(p) for p in revise], key=ckpt_key)
        else:
            if hasattr(module, 'init_weights'):  # mmengine BaseModule;
                module.init_weights()  # a plain nn.Module keeps its init
            if not getattr(module, 'init_cfg', None):
                print_log(
                    f'{ckpt_key} is None and the teacher has no init_cfg: '
                    'the teacher is randomly initialised',
                    logger='current', level=30)
        module.eval()
        module.requires_grad_(False)
        self.module = module
        self.checkpoint = checkpoint
        self.key = key
        self.pooled: Optional[PooledFeature] = None
        self.reference: Optional[nn.Module] = None

    @property
    def backbone(self) -> nn.Module:
        """``module.backbone`` of a classifier, else the module itself."""
        return getattr(self.module, 'backbone', self.module)

    def follow(self, reference: Optional[nn.Module]) -> None:
        """Run in the dtype of ``reference``'s parameters (the student)."""
        self.reference = reference

    @torch.no_grad()
    def run(self, fn: Callable, inputs: torch.Tensor, *args, **kwargs):
        """``fn(inputs, *args, **kwargs)`` (a function of the teacher, e.g.
        ``backbone.forward_visible``) in eval mode, without grad, after
        moving the teacher and ``inputs`` to where the student computes."""
        inputs = align_module(self.module, inputs, self.reference)
        self.module.eval()
        return fn(inputs, *args, **kwargs)

    def eval(self) -> None:
        self.module.eval()

    def fingerprint(self) -> str:
        """:func:`teacher_fingerprint` of the weights."""
        return teacher_fingerprint(self.module)

    def watch_pooled(self, layer: Optional[str], key: str) -> str:
        """Record the pooled input of ``backbone.<layer>`` (None: the
        default feature layer) for :meth:`pooled_features`. Returns the
        layer name."""
        self.pooled = PooledFeature(self.backbone, layer, key)
        return self.pooled.layer

    def pooled_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The pooled feature (N, C_t) of the watched layer, no grad."""
        return self.run(self.pooled, inputs)

    def logits(self, inputs: torch.Tensor) -> torch.Tensor:
        """``module(inputs, mode='tensor')`` (the last of a tuple), no
        grad: the logits of a classifier teacher."""
        return last_output(self.run(self.module, inputs, mode='tensor'))
