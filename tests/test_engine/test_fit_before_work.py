"""Issue 16, "fail before the work": FitBasisHook refuses at the start of
training a fit that cannot succeed (the SVD needs more teacher features
than the student width, and the dataset's length bounds them), before the
teacher runs on any image, naming ``FitBasisHook.num_samples``, the
dataset length and the student width. (The TCS fit's own refusals:
``tests/test_models/test_tcs.py::test_fit_refused_before_any_work_when_too_small``.)"""
import copy

import pytest
import torch
from mmengine.logging import MMLogger

import kdep_mm  # noqa: F401
from helpers.models import build_seeded, cifar_resnet_classifier
from kdep_mm.engine import FitBasisHook
from kdep_mm.registry import MODELS

TEACHER = cifar_resnet_classifier(num_classes=10)
STUDENT = dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=4)


def _model():
    return build_seeded(dict(
        type='KDEPDistiller', student=copy.deepcopy(STUDENT),
        teacher=copy.deepcopy(TEACHER),
        aligner=dict(type='SVDAligner', student_channels=16,
                     teacher_channels=32),
        distill_loss=dict(type='FeatureMSELoss', loss_weight=1.)))


class _Runner:
    """What FitBasisHook reads from mmengine's Runner: a loader of
    ``n`` random images in batches of 4."""

    def __init__(self, model, n, work_dir):
        imgs = torch.randint(0, 255, (n, 3, 32, 32), dtype=torch.uint8)

        class Loader(list):
            dataset = range(n)

        self.train_dataloader = Loader(
            [dict(inputs=list(imgs[i:i + 4])) for i in range(0, n, 4)])
        self.model = model
        self.work_dir = str(work_dir)
        self.logger = MMLogger.get_current_instance()


@pytest.mark.parametrize('num_samples,length,most', [
    (None, 12, 12),   # the whole (too small) dataset
    (None, 16, 16),   # exactly k: still not more than k
    (200, 12, 12),    # num_samples larger than the dataset
    (16, 100, 16),    # num_samples itself not above k
])
def test_fit_aligner_hook_refuses_before_the_teacher_runs(
        tmp_path, num_samples, length, most):
    model = _model()
    calls = []
    model.teacher.register_forward_hook(lambda *a: calls.append(1))
    with pytest.raises(ValueError) as err:
        FitBasisHook(num_samples=num_samples).before_train(
            _Runner(model, length, tmp_path))
    msg = str(err.value)
    assert f'FitBasisHook.num_samples = {num_samples}' in msg
    assert f'train_dataloader.dataset has {length} images' in msg
    assert f'at most {most} teacher features' in msg
    assert 'aligner.student_channels = 16 (the student width' in msg
    assert calls == [], 'the teacher ran before the refusal'
    assert not model.aligner.is_fitted


def test_fit_aligner_hook_fits_when_large_enough(tmp_path):
    model = _model()
    FitBasisHook(num_samples=None).before_train(
        _Runner(model, 20, tmp_path))
    assert model.aligner.is_fitted
    assert int(model.aligner.num_fit_samples) == 20


def test_fit_basis_hook_basis_file_written_then_loaded(tmp_path):
    """The fit writes ``basis_file`` (under the work dir); another run of
    the same teacher loads it without running the teacher."""
    model = _model()
    FitBasisHook(basis_file='basis.pth').before_train(
        _Runner(model, 20, tmp_path))
    assert (tmp_path / 'basis.pth').is_file()
    fresh = _model()
    calls = []
    fresh.teacher.register_forward_hook(lambda *a: calls.append(1))
    FitBasisHook(basis_file='basis.pth').before_train(
        _Runner(fresh, 20, tmp_path))
    assert calls == []
    for key in ('mean', 'basis', 'eigenvalues', 'num_fit_samples'):
        assert torch.equal(getattr(fresh.aligner, key),
                           getattr(model.aligner, key))


def test_fit_basis_hook_options_the_basis_does_not_take(tmp_path):
    """KDEP's aligner basis is fitted online only (``store`` refused); a
    model that declares no basis (a ProjectorAligner) is left alone."""
    with pytest.raises(ValueError, match=r'FitBasisHook.store: '
                       r"KDEPDistiller's aligner basis is fitted online"):
        FitBasisHook(store=str(tmp_path)).before_train(
            _Runner(_model(), 20, tmp_path))
    torch.manual_seed(0)
    plain = MODELS.build(dict(
        type='KDEPDistiller', student=copy.deepcopy(STUDENT),
        teacher=copy.deepcopy(TEACHER),
        aligner=dict(type='ProjectorAligner', student_channels=16,
                     teacher_channels=32)))
    assert plain.basis_fit() is None
    FitBasisHook(num_samples=1).before_train(_Runner(plain, 4, tmp_path))
    with pytest.raises(ValueError, match='FitBasisHook.num_samples must be'):
        FitBasisHook(num_samples=0)
