"""Hooks for reliability tests (not for training runs)."""
import os
import signal

from mmengine.hooks import Hook

from kdep_mm.registry import HOOKS


@HOOKS.register_module()
class SigkillAtIterHook(Hook):
    """Kill the training process with SIGKILL right after iteration
    ``at_iter`` (1-based), as a preemption would: no cleanup, no final
    checkpoint. Used to test that ``--resume`` loses no work."""

    priority = 'LOWEST'

    def __init__(self, at_iter: int):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGKILL)
