"""Hooks for reliability tests (not for training runs).

They are registered only where this module is imported: a training
subprocess gets them with the config line :data:`CUSTOM_IMPORTS` (its
``PYTHONPATH`` from :func:`helpers.launch.tool_env` / ``helpers_env``).
"""
import os
import signal

from mmengine.hooks import Hook

from kdep_mm.registry import HOOKS

# the config line that imports these hooks in a training subprocess
CUSTOM_IMPORTS = ("custom_imports = dict(imports=['kdep_mm', 'helpers.hooks'], "
                  'allow_failed_imports=False)')


@HOOKS.register_module()
class SigkillAtIterHook(Hook):
    """Kill the training process with SIGKILL right after iteration
    ``at_iter`` (1-based), as a preemption would: no cleanup, no final
    checkpoint. Used to test that ``--resume`` loses no work.

    ``rank``: only that rank is killed (default: every process);
    ``first_attempt_only``: only while torchrun's
    ``TORCHELASTIC_RESTART_COUNT`` is 0 or unset, so that a restarted
    attempt runs through."""

    priority = 'LOWEST'

    def __init__(self, at_iter: int, rank=None, first_attempt_only=False):
        self.at_iter = at_iter
        self.rank = rank
        self.first_attempt_only = first_attempt_only

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        from mmengine.dist import get_rank
        if runner.iter + 1 != self.at_iter:
            return
        if self.rank is not None and get_rank() != self.rank:
            return
        if self.first_attempt_only and int(
                os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')) > 0:
            return
        os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module()
class DumpRankStateHook(Hook):
    """Write what each rank holds to ``work_dir/rank{r}_state.pth`` after
    training, for tests of distributed agreement (rank 0 alone writes the
    checkpoints, so they cannot show that the ranks agree).

    The file holds: ``state_dict`` (the unwrapped model's: student and
    aligner buffers) after training and ``state_dict_before`` (at
    ``before_train``, after the aligner fit), per iteration the rank's local
    ``loss``, the loss averaged over ranks (``global_loss``) and the
    ``img_paths`` of its batch, the teacher fingerprint at ``before_run``
    (before the aligner fit) and after training, and whether any teacher
    tensor is among the (DDP) wrapper's parameters or buffers.
    """

    priority = 'LOWEST'

    def __init__(self):
        self.records = []
        self.fingerprint_before = None
        self.state_before = None

    @staticmethod
    def _model(runner):
        from mmengine.model import is_model_wrapper
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def before_run(self, runner):
        self.fingerprint_before = self._model(runner).teacher_fingerprint()

    def before_train(self, runner):
        model = self._model(runner)
        self.state_before = {
            k: v.detach().cpu().clone()
            for k, v in model.state_dict().items()
        }

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        from mmengine import dist
        loss = outputs['loss'].detach().clone().double().reshape(1)
        global_loss = loss.clone()
        dist.all_reduce(global_loss, op='mean')
        paths = [s.metainfo.get('img_path') for s in
                 (data_batch or {}).get('data_samples', [])]
        self.records.append(
            dict(iter=runner.iter + 1, loss=float(loss),
                 global_loss=float(global_loss), img_paths=paths,
                 lr=float(runner.optim_wrapper.get_lr()['lr'][0])))

    def after_train(self, runner):
        import torch
        from mmengine import dist
        from mmengine.model import is_model_wrapper
        model = self._model(runner)
        teacher = model.teacher
        wrapper_tensors = {id(t) for t in runner.model.parameters()} | {
            id(t) for t in runner.model.buffers()}
        teacher_ids = {id(t) for t in teacher.parameters()} | {
            id(t) for t in teacher.buffers()}
        teacher_ptrs = {t.data_ptr() for t in teacher.parameters()}
        rank = dist.get_rank()
        torch.save(
            dict(
                rank=rank,
                world_size=dist.get_world_size(),
                wrapper=type(runner.model).__name__,
                is_wrapper=is_model_wrapper(runner.model),
                state_dict={
                    k: v.detach().cpu().clone()
                    for k, v in model.state_dict().items()
                },
                state_dict_before=self.state_before,
                records=self.records,
                fingerprint_before=self.fingerprint_before,
                fingerprint_after=model.teacher_fingerprint(),
                teacher_in_wrapper=bool(wrapper_tensors & teacher_ids) or any(
                    p.data_ptr() in teacher_ptrs
                    for p in runner.model.parameters()),
                num_wrapper_params=sum(1 for _ in runner.model.parameters()),
                num_teacher_params=sum(1 for _ in teacher.parameters()),
            ), os.path.join(runner.work_dir, f'rank{rank}_state.pth'))
