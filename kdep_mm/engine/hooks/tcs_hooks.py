"""Hooks that drive TCS (Zhou, Zhu, Wu, "All You Need in Knowledge
Distillation Is a Tailored Coordinate System", AAAI 2025): fit the
coordinate system once, then advance the tailoring schedule."""
from typing import Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from kdep_mm.registry import HOOKS


def _unwrap(model):
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class FitTCSCoordinatesHook(Hook):
    """Fit a :class:`TCSDistiller`'s coordinate system before training,
    unless it is already fitted (loaded or resumed checkpoint): from
    ``store`` (a teacher store root) if given, else by an online teacher
    pass over the training dataloader (``num_samples`` images, None = all).
    """

    priority = 'VERY_HIGH'

    def __init__(self, store: Optional[str] = None, field: str = 'feat',
                 num_samples: Optional[int] = None):
        self.store, self.field, self.num_samples = store, field, num_samples

    def before_train(self, runner) -> None:
        model = _unwrap(runner.model)
        if model.is_fitted:
            return
        if self.store is not None:
            from kdep_mm.models.algorithms.tcs import \
                fit_coordinates_from_store
            n = fit_coordinates_from_store(model, self.store, self.field)
        else:
            n = model.fit_coordinates_online(runner.train_dataloader,
                                             self.num_samples)
        runner.logger.info(f'TCS coordinate system fitted on {n} teacher '
                           f'features (k = {model.num_coords})')


@HOOKS.register_module()
class TCSTailoringHook(Hook):
    """Drives the tailoring schedule: after every training iteration,
    :meth:`TCSDistiller.after_train_iter` (counter + prune step when due),
    and logs ``active_coords``. A hook rather than ``train_step``, because
    mmengine's DDP wrapper runs its own ``train_step``."""

    priority = 'NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        model = _unwrap(runner.model)
        model.after_train_iter()
        runner.message_hub.update_scalar('train/active_coords',
                                         model.num_active)
