"""The hook that drives TCS's tailoring schedule (Zhou, Zhu, Wu, "All You
Need in Knowledge Distillation Is a Tailored Coordinate System", AAAI
2025); its coordinate system is fitted by ``FitBasisHook``."""
from mmengine.hooks import Hook

from kdep_mm.registry import HOOKS

from .fit_basis_hook import unwrap_model


@HOOKS.register_module()
class TCSTailoringHook(Hook):
    """Drives the tailoring schedule: after every training iteration,
    :meth:`TCSDistiller.after_train_iter` (counter + prune step when due),
    and logs ``active_coords``. A hook rather than ``train_step``, because
    mmengine's DDP wrapper runs its own ``train_step``."""

    priority = 'NORMAL'

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        model = unwrap_model(runner.model)
        model.after_train_iter()
        runner.message_hub.update_scalar('train/active_coords',
                                         model.num_active)
