"""The base of every distiller: a trainable student (and head), its frozen
teacher(s) and its loss, built once from config."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.structures import BaseDataElement

from kdep_mm.registry import MODELS
from ..teachers import FrozenTeacher, TeacherSet, build_module
from ..utils import BasisFit, global_pool, last_output, output_width


class BaseDistiller(BaseModel):
    """Builds, in this order, ``student``, ``head``, the teacher(s) and
    ``distill_loss``; a subclass builds what it adds after (its necks).

    Teachers (a :class:`~kdep_mm.models.teachers.TeacherSet`, plain
    objects): ``teacher`` (one :class:`FrozenTeacher`, named ``'teacher'``),
    or ``teachers`` (``name -> config``, in order, each with its
    ``teacher_ckpts[name]``), or neither (store mode: the targets come from
    the data samples). They stay out of ``state_dict``, ``parameters()``
    and ``train()``; each teacher call moves them to the device of its
    inputs and the dtype of the student (:meth:`FrozenTeacher.run`), under
    every runner and strategy (Runner, AMP, FlexibleRunner + FSDP or
    DeepSpeed; docs/scaling.md).

    Args:
        student (dict): config of the student backbone.
        teacher (dict, optional): config of the one teacher.
        teacher_ckpt (str, optional): its weights (path or URL).
        teacher_revise_keys: checkpoint key substitutions before the strict
            load (one list; a dict / list per teacher with ``teachers``).
            None = strip a leading ``module.``.
        teachers (dict, optional): name -> teacher config.
        teacher_ckpts (dict, optional): name -> weights.
        head (dict, optional): a student head, built right after the
            student; its ``in_channels``, when omitted, is the student's
            output width (``embed_dims``, or measured on one image).
        distill_loss (dict, optional): the distillation loss.
        teachers_need_head (bool): refuse teachers without a classification
            head (logit distillation).
    """

    #: what ``kdep_mm.apis.export`` writes from this distiller: the student
    #: backbone always; ``'classifier'`` where :meth:`classifier_checkpoint`
    #: gives the whole student as an mmpretrain ``ImageClassifier``.
    exports = ('backbone', )
    #: the model-config keys that describe the teachers; an export rebuilds
    #: the model without them (store mode).
    teacher_keys = ('teacher', 'teacher_ckpt', 'teacher_revise_keys',
                    'teachers', 'teacher_ckpts')

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict] = None,
                 teacher_ckpt: Optional[str] = None,
                 teacher_revise_keys: Optional[Sequence] = None,
                 teachers: Optional[Dict[str, dict]] = None,
                 teacher_ckpts: Optional[Dict[str, Optional[str]]] = None,
                 head: Optional[dict] = None,
                 distill_loss: Optional[dict] = None,
                 teachers_need_head: bool = False,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg=None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='mmpretrain.ClsDataPreprocessor')
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.student = build_module(student, 'model.student')
        if head is not None:
            if isinstance(head, dict) and 'in_channels' not in head:
                head = dict(head, in_channels=output_width(self.student))
            self.head = build_module(head, 'model.head')
        if teacher is not None:
            self.frozen_teachers = TeacherSet({
                'teacher': FrozenTeacher(teacher, teacher_ckpt,
                                         teacher_revise_keys,
                                         require_head=teachers_need_head)
            })
        elif teachers is not None:
            self.frozen_teachers = TeacherSet.build(
                list(teachers), teachers, teacher_ckpts, teacher_revise_keys,
                require_head=teachers_need_head)
        else:
            given = [k for k, v in (('model.teacher_ckpt', teacher_ckpt),
                                    ('model.teacher_ckpts', teacher_ckpts),
                                    ('model.teacher_revise_keys',
                                     teacher_revise_keys)) if v is not None]
            if given:
                raise ValueError(f'no teacher (store mode): {given} do not '
                                 'apply')
            self.frozen_teachers = TeacherSet()
        self.frozen_teachers.follow(self.student)
        if distill_loss is not None:
            self.distill_loss = MODELS.build(distill_loss)

    # ----------------------------------------------------------- teachers
    @property
    def frozen_teacher(self) -> Optional[FrozenTeacher]:
        """The (first) frozen teacher; None in store mode."""
        return self.frozen_teachers.first

    @property
    def teacher(self) -> Optional[nn.Module]:
        """The (first) teacher network; None in store mode."""
        first = self.frozen_teachers.first
        return None if first is None else first.module

    @property
    def teachers(self) -> Dict[str, nn.Module]:
        """name -> teacher network (empty in store mode)."""
        return self.frozen_teachers.modules

    @property
    def teacher_ckpt(self) -> Optional[str]:
        first = self.frozen_teachers.first
        return None if first is None else first.checkpoint

    @property
    def teacher_ckpts(self) -> Dict[str, Optional[str]]:
        return self.frozen_teachers.checkpoints

    def teacher_fingerprint(self, name: Optional[str] = None) -> str:
        """sha256 of a teacher's weights (the first if ``name`` is None),
        as in a teacher store's manifest."""
        if not len(self.frozen_teachers):
            raise RuntimeError('store mode: no teacher to fingerprint (the '
                               "store's manifest holds it)")
        name = self.frozen_teachers.names[0] if name is None else name
        return self.frozen_teachers[name].fingerprint()

    def teacher_features(self, inputs: torch.Tensor) -> torch.Tensor:
        """The (first) teacher's watched pooled feature f_t (N, C_t), no
        grad (see :meth:`FrozenTeacher.watch_pooled`)."""
        return self.frozen_teacher.pooled_features(inputs)

    def basis_fit(self) -> Optional[BasisFit]:
        """The principal basis this distiller needs fitted before training
        (driven by ``kdep_mm.FitBasisHook``); None = nothing to fit."""
        return None

    def train(self, mode: bool = True):
        super().train(mode)
        teachers = self.__dict__.get('frozen_teachers')
        if teachers is not None:
            teachers.eval()
        return self

    def classifier_checkpoint(self) -> dict:
        """``dict(state_dict=..., meta=...)`` of the whole student as an
        mmpretrain ``ImageClassifier``, for distillers that export one."""
        raise NotImplementedError(f'{type(self).__name__} exports '
                                  f'{list(self.exports)}')

    def student_pooled(self, inputs: torch.Tensor) -> torch.Tensor:
        """f_s = GAP(last output of the student backbone), (N, C_s): the
        feature a classifier student's linear head reads."""
        return global_pool(last_output(self.student(inputs)))

    def _linear_classifier_checkpoint(self, fc: nn.Linear, **meta) -> dict:
        """An mmpretrain ``ImageClassifier`` checkpoint of the student with
        ``fc`` as its head: ``backbone.*`` + ``head.fc.*``, loading strictly
        into backbone + GlobalAveragePooling + LinearClsHead(in_channels=
        fc.in_features); ``meta`` adds ``num_classes`` and ``in_channels``."""
        state = self._student_state()
        state['head.fc.weight'] = fc.weight.detach().cpu().clone()
        state['head.fc.bias'] = fc.bias.detach().cpu().clone()
        meta.update(num_classes=fc.out_features, in_channels=fc.in_features)
        return dict(state_dict=state, meta=meta)

    def _student_state(self, prefix: str = 'backbone.') -> dict:
        """The student backbone's state dict under ``prefix``, on the CPU."""
        return {f'{prefix}{k}': v.detach().cpu().clone()
                for k, v in self.student.state_dict().items()}

    # ------------------------------------------------------------- losses
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
        ``'tensor'`` -> :meth:`extract_feat`."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs)
        raise RuntimeError(f'Invalid mode "{mode}": expected "loss", '
                           '"predict" or "tensor"')

    def extract_feat(self, inputs: torch.Tensor):
        """The student backbone's outputs."""
        return self.student(inputs)

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        raise NotImplementedError
