"""torchdistill's FitNets and KD trainers as arms of the KDEP step
benchmark (``benchmarks/kdep_step_time.py``: ``td_fitnets``, ``td_kd``).

torchdistill (Matsubara, 2021; the maintained general KD framework) is
installed by ``tools/setup_peers.sh`` into the git-ignored ``.peers/``
folder, not into the project's venv; :func:`load` puts that folder on
``sys.path`` (``KDEP_PEERS_DIR=DIR`` names another). What is timed is
torchdistill's own training step: a ``DistillationBox`` built by
``get_distillation_box`` from a train config (the dict its YAML files
hold), then per batch ``box.forward_process``
(teacher forward under no_grad, student forward, its forward-hook I/O
dicts, the auxiliary model wrapper, its ``WeightedSumLoss``) and
``box.post_forward_process`` (backward, SGD step, zero_grad), as its
example training scripts call them. Only the nn.Modules are ours: the same
student and teacher (copies with the same weights) as kdep_mm's arms.

* FitNets (``fitnets_box``): torchdistill's layout of a hint: its
  ``Connector4DAB`` wrapper adds a 1x1-conv regressor (student width ->
  teacher width) on the output of the student's last stage, and an MSE (a
  ``SimpleLossWrapper`` of ``torch.nn.MSELoss``) matches it to the output of
  the teacher's last stage. torchdistill's forward hooks record a module's
  output, so the hint is the post-ReLU stage output on feature maps;
  kdep_mm's FitNets regresses the pooled pre-ReLU feature with a linear
  layer. The networks' forward and backward are the same; the regressor
  and the MSE on the 8x8 (CIFAR) maps add a few MFLOPs per image.
* KD (``kd_box``): torchdistill's ``KDLoss`` (KL of the T-softened
  distributions, ``alpha=0``: no labels, as kdep_mm's logit-KD arm) between
  the student (backbone, global pool, linear head) and the teacher
  classifier's logits.
"""
import contextlib
import logging
import os
import os.path as osp
import sys

import torch
import torch.nn as nn

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# KDEP_PEERS_DIR points elsewhere (the tests point it at a missing folder)
PEERS_DIR = os.environ.get('KDEP_PEERS_DIR') or osp.join(REPO, '.peers')
VERSION = '1.1.5'
INSTALL_HINT = ('torchdistill arms skipped: .peers/ has no torchdistill '
                f'{VERSION}; install it with `bash tools/setup_peers.sh` '
                '(into the git-ignored .peers/, not the venv)')


def load(peers_dir: str = PEERS_DIR):
    """Import torchdistill from ``peers_dir``; ``(module, None)``, or
    ``(None, why)`` when it is not installed there (``why`` says how to
    install it)."""
    if not osp.isdir(osp.join(peers_dir, 'torchdistill')):
        return None, INSTALL_HINT
    if peers_dir not in sys.path:
        sys.path.append(peers_dir)  # after the venv: our torch stays ours
    try:  # its distillation box too: a torch it does not support fails here
        import torchdistill
        from torchdistill.core.distillation import get_distillation_box
        del get_distillation_box
    except Exception as e:  # noqa: BLE001 - any failure: the arms skip
        return None, (f'torchdistill arms skipped: importing it from '
                      f'{peers_dir} failed ({type(e).__name__}: {e})')
    if torchdistill.__version__ != VERSION:
        return None, (f'{INSTALL_HINT} (found {torchdistill.__version__})')
    for name in ('torchdistill', 'torchdistill.core'):
        logging.getLogger(name).setLevel(logging.WARNING)
    return torchdistill, None


class StudentClassifier(nn.Module):
    """backbone -> global average pool -> linear: the logit-KD student
    (kdep_mm's ``LogitKDDistiller`` student and ``student_head``)."""

    def __init__(self, backbone: nn.Module, head: nn.Linear):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x):
        out = self.backbone(x)
        out = out[-1] if isinstance(out, (tuple, list)) else out
        return self.head(out.mean(dim=(2, 3)))


def _box(teacher, student, train_config, device):
    from torchdistill.core.distillation import get_distillation_box
    box = get_distillation_box(teacher, student, dict(), train_config,
                               torch.device(device), None, False, 1)
    box.pre_epoch_process(epoch=0)  # student.train(), I/O dicts cleared
    box.teacher_model.eval()
    return box


def _sgd(lr, momentum, weight_decay):
    return dict(key='SGD', kwargs=dict(lr=lr, momentum=momentum,
                                       weight_decay=weight_decay))


def fitnets_box(teacher_backbone: nn.Module, student_backbone: nn.Module,
                teacher_stage: str, student_stage: str,
                teacher_channels: int, student_channels: int, device,
                lr=0.01, momentum=0.9, weight_decay=0.):
    """torchdistill's FitNets distillation box on our backbones: the hint
    is the output of ``student_stage`` (through a 1x1-conv regressor) and
    the guidance the output of ``teacher_stage``, MSE, weight 1."""
    conv = dict(in_channels=student_channels, out_channels=teacher_channels,
                kernel_size=1, stride=1, padding=0, bias=True)
    hint_path = f'student_model.{student_stage}'
    config = dict(
        num_epochs=1,
        teacher=dict(forward_proc='forward_batch_only',
                     forward_hook=dict(input=[], output=[teacher_stage]),
                     requires_grad=False),
        student=dict(
            forward_proc='forward_batch_only',
            auxiliary_model_wrapper=dict(
                key='Connector4DAB',
                kwargs=dict(connectors=dict(regressor=dict(
                    io='output', path=hint_path, conv2d_kwargs=conv)))),
            forward_hook=dict(input=[],
                              output=[hint_path, 'connector_dict.regressor']),
            requires_grad=True),
        optimizer=_sgd(lr, momentum, weight_decay),
        criterion=dict(key='WeightedSumLoss', kwargs=dict(sub_terms=dict(
            hint=dict(
                criterion=dict(key='MSELoss', kwargs=dict(reduction='mean')),
                criterion_wrapper=dict(key='SimpleLossWrapper', kwargs=dict(
                    input=dict(is_from_teacher=False,
                               module_path='connector_dict.regressor',
                               io='output'),
                    target=dict(is_from_teacher=True,
                                module_path=teacher_stage, io='output'))),
                weight=1.0)))))
    return _box(teacher_backbone, student_backbone, config, device)


def kd_box(teacher_classifier: nn.Module, student: nn.Module,
           temperature: float, device, lr=0.01, momentum=0.9,
           weight_decay=0.):
    """torchdistill's KD distillation box: ``KDLoss`` at ``temperature``
    on the models' outputs (``'.'``), no label term."""
    config = dict(
        num_epochs=1,
        teacher=dict(forward_proc='forward_batch_only', requires_grad=False,
                     forward_hook=dict(input=[], output=[])),
        student=dict(forward_proc='forward_batch_only', requires_grad=True,
                     forward_hook=dict(input=[], output=[])),
        optimizer=_sgd(lr, momentum, weight_decay),
        criterion=dict(key='WeightedSumLoss', kwargs=dict(sub_terms=dict(
            kd=dict(criterion=dict(key='KDLoss', kwargs=dict(
                student_module_path='.', student_module_io='output',
                teacher_module_path='.', teacher_module_io='output',
                temperature=temperature, alpha=0.)), weight=1.0)))))
    return _box(teacher_classifier, student, config, device)


def box_step(box, x, amp: str = 'fp32'):
    """One torchdistill training step on batch ``x``, as its training
    scripts run it; with ``amp='bf16'`` the forwards under bf16 autocast
    (torchdistill itself leaves mixed precision to the caller). Returns
    the loss tensor."""
    ctx = (torch.autocast(x.device.type, dtype=torch.bfloat16)
           if amp == 'bf16' else contextlib.nullcontext())
    with ctx:
        loss = box.forward_process(x, None, None)
    box.post_forward_process(loss=loss.float())
    return loss
