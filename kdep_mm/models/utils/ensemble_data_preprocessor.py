"""mmpretrain's classification data preprocessor that records how its batch
augmentation mixed the batch, so that stored teacher targets are mixed the
same way."""
import torch
from mmpretrain.models.utils import ClsDataPreprocessor

from kdep_mm.registry import MODELS
from kdep_mm.utils.store_keys import TEACHER_MIX


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
                sample.set_field(row, TEACHER_MIX)
            recorder.matrix = None
        return out
