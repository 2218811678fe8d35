"""The hidden teacher runs where the student computes, under every runner
and strategy, by one rule (kdep_mm.models.teachers.placement): the device of
its inputs, the dtype of the student's parameters (else of the inputs).
Hand-made situations on the CPU stand in for each strategy: a student cast
to bf16 (DeepSpeed bf16, FSDP MixedPrecision views), a student without
visible parameters (an FSDP flat parameter) with bf16 inputs, AMP (float32
student under autocast), a float64 input to a float32 or bf16 student."""
import copy

import pytest
import torch
import torch.nn as nn

import kdep_mm  # noqa: F401
from kdep_mm.models.teachers import FrozenTeacher
from kdep_mm.models.teachers.placement import (align_module,
                                               module_placement,
                                               teacher_placement)
from kdep_mm.registry import MODELS

CPU = torch.device('cpu')


def _student(dtype=torch.float32):
    return nn.Linear(3, 2).to(dtype)


@pytest.mark.parametrize('student, inputs, want', [
    # DeepSpeed bf16 / fp16: the engine casts the student, its wrapper the
    # inputs
    (torch.bfloat16, torch.bfloat16, torch.bfloat16),
    (torch.float16, torch.float16, torch.float16),
    # a float64 input does not drag the teacher to float64: the student rules
    (torch.bfloat16, torch.float64, torch.bfloat16),
    (torch.float32, torch.float64, torch.float32),
    # Runner / AMP: a float32 student (autocast picks the op precision)
    (torch.float32, torch.float32, torch.float32),
])
def test_dtype_follows_the_student(student, inputs, want):
    x = torch.zeros(4, 3, dtype=inputs)
    assert teacher_placement(x, _student(student)) == (CPU, want)
    teacher = nn.Linear(3, 5)
    y = align_module(teacher, x, _student(student))
    assert y.dtype == want and teacher.weight.dtype == want
    assert teacher(y).dtype == want


def test_without_student_parameters_the_inputs_rule():
    """FSDP with ``use_orig_params=False`` hides the student's parameters
    in a flat parameter; its mixed precision casts the inputs, which then
    give the dtype."""
    hidden = nn.ReLU()  # a module without parameters
    x = torch.zeros(2, 3, dtype=torch.bfloat16)
    assert teacher_placement(x, hidden) == (CPU, torch.bfloat16)
    assert teacher_placement(x, None) == (CPU, torch.bfloat16)
    # integer inputs (uint8 images) say nothing about a dtype: keep it
    assert teacher_placement(torch.zeros(2, 3, dtype=torch.uint8)) == \
        (CPU, None)
    with pytest.raises(TypeError, match='batch tensor'):
        teacher_placement([x])


def test_moves_once_per_change():
    teacher = nn.Linear(3, 5)
    calls = []
    real_to = teacher.to

    def counting_to(*args, **kwargs):
        calls.append(kwargs)
        return real_to(*args, **kwargs)

    teacher.to = counting_to
    student = _student()
    for _ in range(3):
        align_module(teacher, torch.zeros(1, 3), student)
    assert calls == []  # already there
    student.to(torch.float64)
    for _ in range(3):
        align_module(teacher, torch.zeros(1, 3), student)
    assert calls == [dict(device=CPU, dtype=torch.float64)]
    assert module_placement(teacher) == (CPU, torch.float64)
    assert module_placement(nn.ReLU()) == (None, None)


def test_frozen_teacher_run_stays_frozen():
    student = _student(torch.bfloat16)
    t = FrozenTeacher(dict(type='kdep_mm.CIFARResNet', depth=8,
                           base_channels=2))
    t.follow(student)
    t.module.train()
    out = t.run(t.module, torch.randn(2, 3, 8, 8, dtype=torch.float64))[-1]
    assert out.dtype == torch.bfloat16 and not out.requires_grad
    assert not t.module.training
    assert not any(p.requires_grad for p in t.module.parameters())


def _kdep(**aligner):
    return MODELS.build(dict(
        type='kdep_mm.KDEPDistiller',
        student=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=2),
        teacher=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=8),
        aligner=dict(type='kdep_mm.SVDAligner', **aligner),
        distill_loss=dict(type='kdep_mm.FeatureMSELoss')))


def test_kdep_under_a_bf16_cast_keeps_the_basis_float32():
    """What DeepSpeed bf16 does to the registered model (``module.
    bfloat16()``, bf16 inputs): the student trains in bf16, the hidden
    teacher follows at its first call, the aligner's basis stays float32
    and its target equals the float32 computation on the bf16 teacher
    feature."""
    torch.manual_seed(0)
    model = _kdep()
    feats = model.teacher_features(torch.randn(64, 3, 32, 32))
    model.aligner.fit(feats)
    ref = copy.deepcopy(model.aligner)
    model.bfloat16()
    for name in ('mean', 'basis', 'eigenvalues'):
        buf = getattr(model.aligner, name)
        assert buf.dtype == torch.float32
        torch.testing.assert_close(buf, getattr(ref, name), rtol=0, atol=0)
    x = torch.randn(4, 3, 32, 32).bfloat16()
    loss = model.loss(x)['loss_kd']
    assert loss.dtype == torch.bfloat16 and torch.isfinite(loss)
    loss.backward()
    assert next(model.teacher.parameters()).dtype == torch.bfloat16
    assert all(p.grad is None for p in model.teacher.parameters())
    # the target: PTS of the float32 projection of the bf16 teacher feature
    f_t = model.teacher_features(x)
    assert f_t.dtype == torch.bfloat16
    s = model.student_features(x)
    _, target = model.aligner(s, f_t)
    _, want = ref(s.float(), f_t.float())
    torch.testing.assert_close(target, want.bfloat16(), rtol=0, atol=0)
