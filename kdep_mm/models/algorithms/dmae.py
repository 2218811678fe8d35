"""DMAE: "Masked Autoencoders Enable Efficient Knowledge Distillers" (Bai et
al., CVPR 2023).

The student is trained as a masked autoencoder (mmpretrain ``MAEViT`` +
``MAEPretrainDecoder`` + ``MAEPretrainHead``) and, at the same time, its
intermediate features on the *visible* patches are aligned with those of a
frozen ViT teacher that sees exactly the same visible patches (and nothing
else), run only up to the distilled block.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from kdep_mm.registry import MODELS
from ..backbones.vit_visible import num_visible_patches
from ..losses import NormalizedDistanceLoss
from ..utils import FeatureRecorder
from .base_distiller import BaseDistiller


@MODELS.register_module()
class DMAEDistiller(BaseDistiller):
    """DMAE: MAE pre-training of a ViT student plus feature distillation
    from a frozen ViT teacher on the same visible patches.

    For a batch x:

    1. The student ``MAEViT`` draws one random mask per image (its own
       ``random_masking``) and encodes the visible patches. A forward hook on
       ``student.layers[s - 1]`` records, for every distilled pair
       ``(s, t)``, the output of the ``s``-th student block (before the final
       norm; CLS + visible tokens).
    2. The decoder (``neck``) and ``head`` give the MAE pixel loss on the
       masked patches: ``loss_rec``.
    3. The visible-patch indices are recovered from ``ids_restore``
       (``ids_keep = argsort(ids_restore)[:, :n_keep]``, the student's own
       token order) and the teacher backbone's ``forward_visible``
       (:class:`~kdep_mm.models.VisibleMAEViT` / ``VisibleViT``) runs on
       exactly those patches, up to block ``max(t)`` only, under
       ``no_grad``.
    4. For each pair: ``d(normalize(proj(f_s)), normalize(f_t))`` with
       per-token L2 normalisation, ``d`` the element-wise L1 (default) or
       squared error, averaged over all elements; the pairs are averaged
       and weighted by ``alpha``: ``loss_distill``.

    The teacher (e.g. an ``mmpretrain.MAE`` whose checkpoint is loaded
    strictly, or an ``ImageClassifier``, with a ``kdep_mm.VisibleMAEViT`` /
    ``kdep_mm.VisibleViT`` backbone: mmpretrain's ViTs plus
    ``forward_visible``, same state-dict keys) is held as in
    :class:`BaseDistiller`: frozen, eval, outside ``state_dict`` and
    ``parameters()``. Checkpoints hold ``student.*`` (the MAEViT, what
    ``tools/export_student.py`` exports), ``neck.*`` and ``projectors.*``
    (both thrown away at export).

    Visible patches: ``num_visible_patches(L, mask_ratio)`` =
    ``int(L * (1 - mask_ratio))``, CLS excluded (see that function).

    Args:
        student (dict): ``MAEViT`` config; its ``mask_ratio`` is overridden
            by ``mask_ratio``.
        teacher (dict): teacher config; its backbone must have
            ``forward_visible`` (``kdep_mm.VisibleMAEViT`` or
            ``kdep_mm.VisibleViT``) and a CLS token.
        neck (dict): ``MAEPretrainDecoder`` config.
        head (dict): ``MAEPretrainHead`` config.
        distill_pairs (list[tuple[int, int]]): 1-based
            ``(student_block, teacher_block)`` pairs; each gets its own
            ``Linear(student_dim, teacher_dim)``. Defaults to ``[(9, 18)]``
            (ViT-B block 9 of 12 <- ViT-L block 18 of 24).
        mask_ratio (float): fraction of masked patches. Defaults to 0.75.
        alpha (float): weight of ``loss_distill``. Defaults to 1.
        distill_distance (str): ``'l1'`` or ``'l2'`` (squared error).
        Others: see :class:`BaseDistiller`.
    """

    def __init__(self,
                 student: dict,
                 teacher: dict,
                 neck: dict,
                 head: dict,
                 distill_pairs: Sequence[Tuple[int, int]] = ((9, 18), ),
                 mask_ratio: float = 0.75,
                 alpha: float = 1.,
                 distill_distance: str = 'l1',
                 **kwargs):
        super().__init__(student=student, teacher=teacher, **kwargs)

        if not hasattr(self.student, 'random_masking'):
            raise TypeError('model.student must be an MAE-style ViT with '
                            f'random_masking (e.g. mmpretrain.MAEViT), got '
                            f'{type(self.student).__name__}')
        self.neck = MODELS.build(neck)
        self.head = MODELS.build(head)

        if not isinstance(mask_ratio, (int, float)) or not \
                0. <= mask_ratio < 1.:
            raise ValueError(f'model.mask_ratio must be in [0, 1), got '
                             f'{mask_ratio!r}')
        num_patches = self.student.num_patches
        self.num_visible = num_visible_patches(num_patches, mask_ratio)
        if self.num_visible < 1:
            raise ValueError(
                f'model.mask_ratio={mask_ratio} leaves int({num_patches} * '
                f'(1 - {mask_ratio})) = {self.num_visible} visible patches '
                f'of {num_patches}; at least one is needed')
        self.mask_ratio = mask_ratio
        self.student.mask_ratio = mask_ratio

        self.feature_distance = NormalizedDistanceLoss(distill_distance)
        self.alpha = float(alpha)

        teacher_backbone = self.frozen_teacher.backbone
        if not callable(getattr(teacher_backbone, 'forward_visible', None)):
            raise TypeError(
                'model.teacher.backbone must run on visible patches only '
                '(forward_visible): use kdep_mm.VisibleMAEViT for an MAE '
                'ViT, kdep_mm.VisibleViT for a VisionTransformer (the same '
                'weights and state-dict keys), got '
                f'{type(teacher_backbone).__name__}')
        pairs = [tuple(p) for p in distill_pairs]
        if not pairs:
            raise ValueError('model.distill_pairs is empty')
        s_depth = len(self.student.layers)
        t_depth = len(teacher_backbone.layers)
        for p in pairs:
            if len(p) != 2 or not all(isinstance(v, int) for v in p):
                raise ValueError(f'model.distill_pairs: {p!r} is not a '
                                 '(student_block, teacher_block) int pair')
            s, t = p
            if not 1 <= s <= s_depth:
                raise ValueError(
                    f'model.distill_pairs: student block {s} does not exist '
                    f'(the student has {s_depth} blocks, 1-based)')
            if not 1 <= t <= t_depth:
                raise ValueError(
                    f'model.distill_pairs: teacher block {t} does not exist '
                    f'(the teacher has {t_depth} blocks, 1-based)')
        self.distill_pairs = pairs
        s_dim = self.student.embed_dims
        t_dim = teacher_backbone.embed_dims
        self.projectors = nn.ModuleList(
            [nn.Linear(s_dim, t_dim) for _ in pairs])
        self._pair_recorders = {
            s: FeatureRecorder(self.student, f'layers.{s - 1}',
                               source='output')
            for s in sorted({s for s, _ in pairs})
        }

    # ---------------------------------------------------------- features
    @torch.no_grad()
    def teacher_visible_features(self, inputs: torch.Tensor,
                                 ids_keep: torch.Tensor
                                 ) -> List[torch.Tensor]:
        """Teacher tokens (CLS + visible) at each pair's teacher block."""
        return self.frozen_teacher.run(
            self.frozen_teacher.backbone.forward_visible, inputs, ids_keep,
            [t for _, t in self.distill_pairs])

    @staticmethod
    def _images(inputs):
        # SelfSupDataPreprocessor hands a list of views
        return inputs[0] if isinstance(inputs, (list, tuple)) else inputs

    def forward_train(self, inputs: torch.Tensor
                      ) -> Tuple[Dict[str, torch.Tensor], dict]:
        inputs = self._images(inputs)
        for rec in self._pair_recorders.values():
            rec.reset()
        latent, mask, ids_restore = self.student(inputs)
        n_keep = latent.shape[1] - 1
        if n_keep != self.num_visible:
            raise RuntimeError(
                f'the student kept {n_keep} patches, expected '
                f'{self.num_visible} (model.mask_ratio={self.mask_ratio})')
        ids_keep = torch.argsort(ids_restore, dim=1)[:, :n_keep]
        student_feats = {s: r.pop() for s, r in self._pair_recorders.items()}

        pred = self.neck(latent, ids_restore)
        loss_rec = self.head.loss(pred, inputs, mask)

        targets = self.teacher_visible_features(inputs, ids_keep)
        distill = []
        for (s, _), proj, target in zip(self.distill_pairs, self.projectors,
                                        targets):
            distill.append(
                self.feature_distance(proj(student_feats[s]), target))
        loss_distill = self.alpha * torch.stack(distill).mean()
        extras = dict(mask=mask, ids_keep=ids_keep, ids_restore=ids_restore,
                      student_feats=student_feats, targets=targets)
        return dict(loss_rec=loss_rec, loss_distill=loss_distill), extras

    def loss(self, inputs: torch.Tensor,
             data_samples: Optional[List] = None) -> Dict[str, torch.Tensor]:
        return self.forward_train(inputs)[0]

    def predict(self, inputs: torch.Tensor,
                data_samples: Optional[List] = None) -> List:
        raise NotImplementedError(
            'DMAEDistiller is a pre-training algorithm: evaluate the '
            'exported student by fine-tuning or linear probing')

    def extract_feat(self, inputs: torch.Tensor):
        """``mode='tensor'``: the student's unmasked features
        (``MAEViT(x, mask=None)``)."""
        return self.student(self._images(inputs), mask=None)
