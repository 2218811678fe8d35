"""A LoggerHook that prints the experiment name once, not at every epoch.

mmengine's ``LoggerHook`` logs ``Exp name: ...`` every ``interval_exp_name``
iterations *and* at the end of every epoch, so a short run with a few
iterations per epoch (the demo's fine-tuning: 4) shows it every few lines,
dozens of times. :class:`ExpNameOnceLoggerHook` logs it at the first
training iteration of a run (a resumed run logs it again) and then every
``interval_exp_name`` iterations (mmengine's default 1000), never because an
epoch ended; everything else is mmengine's ``LoggerHook``.
"""
from typing import Optional

from mmengine.hooks import LoggerHook
from mmengine.hooks.hook import DATA_BATCH

from kdep_mm.registry import HOOKS


@HOOKS.register_module()
class ExpNameOnceLoggerHook(LoggerHook):
    """``LoggerHook`` without the ``Exp name`` line at every epoch end."""

    def before_train(self, runner) -> None:
        self._exp_name_logged = False

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        if (not getattr(self, '_exp_name_logged', False)
                or self.every_n_train_iters(runner, self.interval_exp_name)):
            runner.logger.info(f'Exp name: {runner.experiment_name}')
            self._exp_name_logged = True
        # the rest is LoggerHook.after_train_iter of mmengine 0.10.7
        if self.every_n_inner_iters(batch_idx, self.interval):
            tag, log_str = runner.log_processor.get_log_after_iter(
                runner, batch_idx, 'train')
        elif (self.end_of_epoch(runner.train_dataloader, batch_idx)
              and (not self.ignore_last
                   or len(runner.train_dataloader) <= self.interval)):
            tag, log_str = runner.log_processor.get_log_after_iter(
                runner, batch_idx, 'train')
        else:
            return
        runner.logger.info(log_str)
        runner.visualizer.add_scalars(
            tag, step=runner.iter + 1, file_path=self.json_log_path)
