"""KDEP as a plain PyTorch loop: the floor of framework overhead.

The shape of the KDEP authors' training loop (He et al., CVPR 2022): the
teacher's forward under ``no_grad``, the student's forward, both networks'
pooled pre-ReLU last-block feature, the fixed SVD-aligned target with power
temperature scaling, an MSE, backward, an SGD step. Nothing else: no
registry, no data samples, no loss dict, no hooks beyond the two feature
taps (a forward pre-hook that clones the input of each network's last
in-place ReLU, the pre-activation feature, as the authors' modified ResNets
return it). The basis (mu, V_k) is given, fitted elsewhere once: the loop
times the step, not the fit.

Used by ``benchmarks/kdep_step_time.py`` (arm ``plain``) on copies of the
same student and teacher modules as kdep_mm's ``KDEPDistiller``; the test
checks that its loss equals ``KDEPDistiller.loss`` on the same modules,
basis and batch, so both arms do the same work.
"""
import contextlib
from typing import Optional

import torch
import torch.nn as nn


def _module(net: nn.Module, name: str) -> nn.Module:
    modules = dict(net.named_modules())
    if name not in modules:
        raise KeyError(f'plain loop: no submodule {name!r} in '
                       f'{type(net).__name__}')
    return modules[name]


class _Tap:
    """The input of ``net.<layer>`` at its last call, cloned (the ReLU is
    in place)."""

    def __init__(self, net: nn.Module, layer: str):
        self.value: Optional[torch.Tensor] = None
        _module(net, layer).register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.value = args[0].clone()

    def pooled(self) -> torch.Tensor:
        v, self.value = self.value, None
        return v.mean(dim=(2, 3))


class PlainKDEP:
    """One KDEP training step written as a plain PyTorch loop.

    Args:
        student, teacher (nn.Module): the backbones (the teacher is put in
            eval mode and never gets gradients).
        student_layer, teacher_layer (str): the modules whose input is the
            distilled feature (e.g. ``'layer3.2.relu'``).
        mean (Tensor): (C_t,) mean of the teacher features.
        basis (Tensor): (C_t, C_s) top principal directions.
        temperature, power (float): PTS(z) = sign(z) |z / T| ** (1 / n).
        loss_weight (float): the MSE's weight (KDEP: 20).
        lr, momentum, weight_decay: the student's SGD.
        amp (str): ``'fp32'``, or ``'bf16'``: both forwards under bf16
            autocast (the teacher under ``inference_mode``), the projection
            and the MSE in float32.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module,
                 student_layer: str, teacher_layer: str, mean: torch.Tensor,
                 basis: torch.Tensor, temperature: float = 0.1,
                 power: float = 3., loss_weight: float = 20.,
                 lr: float = 0.01, momentum: float = 0.9,
                 weight_decay: float = 0., amp: str = 'fp32'):
        if amp not in ('fp32', 'bf16'):
            raise ValueError(f"amp must be 'fp32' or 'bf16', got {amp!r}")
        # (mmpretrain's ResNet.train() returns None: no chaining)
        self.student, self.teacher = student, teacher
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.s_tap = _Tap(student, student_layer)
        self.t_tap = _Tap(teacher, teacher_layer)
        self.mean, self.basis = mean.float(), basis.float()
        self.temperature, self.power = temperature, power
        self.loss_weight, self.amp = loss_weight, amp
        self.opt = torch.optim.SGD(student.parameters(), lr=lr,
                                   momentum=momentum,
                                   weight_decay=weight_decay)

    def _autocast(self, device: torch.device):
        if self.amp == 'fp32':
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        """The distillation loss of batch ``x`` (the graph kept for
        backward)."""
        grad_off = (torch.inference_mode() if self.amp == 'bf16'
                    else torch.no_grad())
        with self._autocast(x.device):
            with grad_off:
                self.teacher(x)
                f_t = self.t_tap.pooled().float()
                z = (f_t - self.mean) @ self.basis
                target = torch.sign(z) * (z / self.temperature).abs().pow(
                    1. / self.power)
            self.student(x)
            f_s = self.s_tap.pooled()
        if self.amp == 'bf16':
            target = target.clone()  # an ordinary tensor out of inference
        return self.loss_weight * (f_s.float() - target).pow(2).mean()

    def step(self, x: torch.Tensor) -> float:
        """One training step on ``x``; the loss value (no sync forced:
        the value is read only when asked, like the authors' loop)."""
        loss = self.loss(x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss
