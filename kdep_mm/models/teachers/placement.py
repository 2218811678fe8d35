"""Where and in which dtype a frozen teacher runs: it follows the student.

The teacher is hidden from the distiller's registered modules (so no
checkpoint, optimizer or DDP/FSDP/DeepSpeed wrapper sees it), hence no
runner or strategy moves it: mmengine's ``FSDPStrategy`` moves registered
parameters itself and shards them, DeepSpeed casts the registered
parameters to bf16/fp16 and its wrapper casts the inputs. Instead the
teacher moves itself, at each call, to where the computation is:

    device = inputs.device
    dtype  = dtype of the reference's first floating parameter (the
             student's, read at call time: bf16 under DeepSpeed bf16 or an
             FSDP ``MixedPrecision(param_dtype=bf16)`` unsharded view),
             else inputs.dtype when floating (an FSDP flat parameter hides
             the student's parameters; its mixed precision casts the
             inputs), else unchanged

and the inputs are cast to that dtype. Under AMP (autocast) the student
stays float32, so does the teacher, and autocast picks each op's precision.
"""
from typing import Optional, Tuple

import torch
import torch.nn as nn


def _first_floating(tensors) -> Optional[torch.Tensor]:
    return next((t for t in tensors if t.is_floating_point()), None)


def teacher_placement(inputs: torch.Tensor,
                      reference: Optional[nn.Module] = None
                      ) -> Tuple[torch.device, Optional[torch.dtype]]:
    """``(device, dtype)`` the teacher runs in for ``inputs`` (see the
    module docstring); dtype None = keep the teacher's."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError('the teacher takes a batch tensor (N, C, H, W), got '
                        f'{type(inputs).__name__}')
    param = None if reference is None else _first_floating(
        reference.parameters())
    if param is not None:
        return inputs.device, param.dtype
    return inputs.device, (inputs.dtype if inputs.is_floating_point()
                           else None)


def module_placement(module: nn.Module
                     ) -> Tuple[Optional[torch.device],
                                Optional[torch.dtype]]:
    """``(device, dtype)`` of the module's first floating parameter (or
    buffer); ``(None, None)`` for a module without any."""
    t = _first_floating(module.parameters())
    if t is None:
        t = _first_floating(module.buffers())
    return (None, None) if t is None else (t.device, t.dtype)


def align_module(module: nn.Module, inputs: torch.Tensor,
                 reference: Optional[nn.Module] = None) -> torch.Tensor:
    """Move ``module`` to :func:`teacher_placement` of ``inputs`` when it
    is elsewhere (one ``module.to`` per change; a no-op otherwise) and
    return ``inputs`` on that device and in that dtype."""
    device, dtype = teacher_placement(inputs, reference)
    have_device, have_dtype = module_placement(module)
    if have_device is not None and (have_device != device or (
            dtype is not None and have_dtype != dtype)):
        module.to(device=device, dtype=dtype)
    if inputs.is_floating_point() and dtype is not None and \
            inputs.dtype != dtype:
        inputs = inputs.to(dtype)
    return inputs
