import math

import pytest
import torch

import kdep_mm  # noqa: F401
from kdep_mm.models import (FeatureMSELoss, IdentityAligner, KDLoss,
                            ProjectorAligner, SVDAligner,
                            power_temperature_scaling)
from kdep_mm.registry import MODELS


def _planted(n=400, dim=20, k=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=g,
                                       dtype=torch.float64))
    basis = q[:, :k]  # planted orthonormal directions
    scales = torch.tensor([10., 6., 3.], dtype=torch.float64)[:k]
    coords = torch.randn(n, k, generator=g, dtype=torch.float64) * scales
    noise = 0.01 * torch.randn(n, dim, generator=g, dtype=torch.float64)
    mean = torch.randn(dim, generator=g, dtype=torch.float64) * 5
    return coords @ basis.T + noise + mean, basis


def test_svd_basis_orthonormal_sorted_and_recovers_planted_subspace():
    feats, planted = _planted()
    aligner = SVDAligner(student_channels=3, teacher_channels=20)
    aligner.fit(feats)
    v = aligner.basis.double()
    torch.testing.assert_close(v.T @ v, torch.eye(3, dtype=torch.float64),
                               atol=1e-5, rtol=0)
    # the fitted span equals the planted span: compare projectors
    torch.testing.assert_close(v @ v.T, planted @ planted.T, atol=1e-3,
                               rtol=0)
    ev = aligner.eigenvalues
    assert torch.all(ev[:-1] >= ev[1:])
    assert aligner.is_fitted and int(aligner.num_fit_samples) == 400
    torch.testing.assert_close(aligner.mean.double(), feats.mean(0),
                               atol=1e-4, rtol=0)


def test_svd_basis_equals_right_singular_vectors_up_to_sign():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(50, 8, generator=g, dtype=torch.float64) @ torch.randn(
        8, 8, generator=g, dtype=torch.float64)
    aligner = SVDAligner(student_channels=4, teacher_channels=8)
    aligner.fit(feats)
    _, s, vh = torch.linalg.svd(feats - feats.mean(0), full_matrices=False)
    ref = vh[:4].T
    got = aligner.basis.double()
    signs = torch.sign((ref * got).sum(0))
    torch.testing.assert_close(got, ref * signs, atol=1e-5, rtol=0)
    torch.testing.assert_close(aligner.eigenvalues.double()[:4], s[:4]**2,
                               rtol=1e-5, atol=1e-6)
    # sign convention: the largest-magnitude entry of each column > 0
    idx = got.abs().argmax(0)
    assert torch.all(got[idx, torch.arange(4)] > 0)


def test_moments_are_additive_across_shards():
    feats, _ = _planted(n=300)
    whole = SVDAligner(3, 20)
    whole.fit(feats)
    m1 = SVDAligner.moments(feats[:120])
    m2 = SVDAligner.moments(feats[120:])
    sharded = SVDAligner(3, 20)
    sharded.fit_from_moments(m1[0] + m2[0], m1[1] + m2[1], m1[2] + m2[2])
    for key in ('mean', 'basis', 'eigenvalues', 'num_fit_samples'):
        torch.testing.assert_close(getattr(sharded, key),
                                   getattr(whole, key), atol=1e-5, rtol=0)


def test_pts_hand_computation():
    z = torch.tensor([-0.2, 0.0, 0.0125, 2.7])
    # |z / 0.1| = 2, 0, 0.125, 27 -> cube roots 2^(1/3), 0, 0.5, 3
    expected = torch.tensor([-2**(1 / 3), 0.0, 0.5, 3.0])
    torch.testing.assert_close(power_temperature_scaling(z, 0.1, 3),
                               expected)


def test_svd_forward_target_is_pts_of_projection_and_has_no_grad():
    feats, _ = _planted(n=100)
    aligner = SVDAligner(3, 20, temperature=0.1, power=3)
    aligner.fit(feats)
    t = feats[:5].float().requires_grad_(True)
    s = torch.randn(5, 3, requires_grad=True)
    s_out, target = aligner(s, t)
    assert s_out is s
    assert not target.requires_grad
    z = (t.detach() - aligner.mean) @ aligner.basis
    expected = torch.sign(z) * (z / 0.1).abs()**(1 / 3)
    torch.testing.assert_close(target, expected)
    # the loss is exactly zero when the student outputs the target
    loss = FeatureMSELoss(loss_weight=20.)(target.clone(), target)
    assert loss.item() == 0.0


def test_svd_aligner_errors():
    with pytest.raises(ValueError, match='aligner.teacher_channels'):
        SVDAligner(student_channels=64, teacher_channels=32)
    aligner = SVDAligner(student_channels=4, teacher_channels=8)
    with pytest.raises(RuntimeError, match='not fitted'):
        aligner(torch.zeros(2, 4), torch.zeros(2, 8))
    with pytest.raises(ValueError, match='aligner.student_channels = 4'):
        aligner.fit(torch.randn(4, 8))  # N <= k
    aligner.fit(torch.randn(20, 8))
    with pytest.raises(ValueError, match='aligner.student_channels'):
        aligner(torch.zeros(2, 5), torch.zeros(2, 8))
    with pytest.raises(ValueError, match='aligner.teacher_channels'):
        aligner(torch.zeros(2, 4), torch.zeros(2, 9))
    with pytest.raises(ValueError, match='aligner.temperature'):
        SVDAligner(4, 8, temperature=0)


def test_svd_buffers_in_state_dict_and_roundtrip():
    feats, _ = _planted(n=100)
    a = SVDAligner(3, 20)
    a.fit(feats)
    sd = a.state_dict()
    assert set(sd) == {'mean', 'basis', 'eigenvalues', 'num_fit_samples'}
    b = SVDAligner(3, 20)
    assert not b.is_fitted
    b.load_state_dict(sd)
    assert b.is_fitted
    t = torch.randn(4, 20)
    torch.testing.assert_close(a(torch.zeros(4, 3), t)[1],
                               b(torch.zeros(4, 3), t)[1])
    assert not any(p.requires_grad for p in a.parameters())


def test_projector_and_identity_aligners():
    proj = ProjectorAligner(student_channels=4, teacher_channels=6)
    s = torch.randn(3, 4, requires_grad=True)
    t = torch.randn(3, 6)
    s_out, target = proj(s, t)
    assert s_out.shape == (3, 6)
    torch.testing.assert_close(s_out, s @ proj.proj.weight.T + proj.proj.bias)
    FeatureMSELoss()(s_out, target).backward()
    assert proj.proj.weight.grad is not None and s.grad is not None
    torch.testing.assert_close(target, t)  # FitNets: the raw feature
    # the KDEP ablation "projector in place of the SVD": PTS on the target
    pts = ProjectorAligner(4, 6, temperature=0.5, power=2)
    _, target = pts(s, torch.tensor([[2., -0.125, 0., 8., -2., 0.5]] * 3))
    torch.testing.assert_close(target[0], torch.tensor(
        [2., -0.5, 0., 4., -2., 1.]))  # sign(t) * |t / 0.5| ** (1 / 2)
    assert not target.requires_grad
    with pytest.raises(ValueError, match='aligner.power'):
        ProjectorAligner(4, 6, power=0)
    with pytest.raises(ValueError, match='aligner.temperature'):
        ProjectorAligner(4, 6, temperature=-1, power=3)
    ident = IdentityAligner(5, 5)
    a, b = ident(s.new_ones(2, 5), torch.zeros(2, 5))
    assert a.shape == b.shape == (2, 5)
    with pytest.raises(ValueError, match='student_channels == '):
        IdentityAligner(4, 5)


def test_feature_mse_hand_computation():
    s = torch.tensor([[1., 2.], [3., 4.]])
    t = torch.tensor([[0., 2.], [1., 4.]])
    # squared errors 1, 0, 4, 0 -> mean 1.25, x weight 20
    assert FeatureMSELoss(loss_weight=20.)(s, t).item() == pytest.approx(25.)
    with pytest.raises(ValueError):
        FeatureMSELoss()(s, t[:, :1])


def test_kd_loss_hand_computation():
    s = torch.tensor([[0., 0.]])
    t = torch.tensor([[math.log(3.), 0.]])  # softmax(t / 1) = (0.75, 0.25)
    # KL(p_t || p_s) = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert KDLoss(temperature=1.)(s, t).item() == pytest.approx(expected,
                                                                rel=1e-6)
    # T^2 scaling at T = 2: softmax(t / 2) = (sqrt3, 1) / (sqrt3 + 1)
    p = torch.tensor([3**0.5, 1.], dtype=torch.float64) / (3**0.5 + 1)
    expected2 = 4 * float((p * (p / 0.5).log()).sum())
    assert KDLoss(temperature=2.)(s, t).item() == pytest.approx(expected2,
                                                                rel=1e-5)
    assert KDLoss()(t, t).item() == pytest.approx(0., abs=1e-7)


def test_registered_in_kdep_mm_scope():
    for name in ('SVDAligner', 'ProjectorAligner', 'IdentityAligner',
                 'FeatureMSELoss', 'KDLoss', 'KDEPDistiller',
                 'LogitKDDistiller'):
        assert MODELS.get(name) is not None, name
