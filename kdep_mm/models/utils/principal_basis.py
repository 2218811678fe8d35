"""The principal (PCA) basis of teacher features, fitted once from float64
moments: KDEP's SVD alignment and TCS's coordinate system."""
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Tuple

import torch
import torch.nn as nn
from mmengine import dist

#: the buffers that make up a fitted basis (checkpoints, basis files)
BASIS_KEYS = ('mean', 'basis', 'eigenvalues', 'num_fit_samples')


class PrincipalBasis(nn.Module):
    """mu and V_k of teacher features F (N x C), as buffers.

    With mean mu and centred F_c = F - mu, V_k (C x k) holds the top-k
    eigenvectors of F_c^T F_c (the first k right-singular vectors of F_c),
    sorted by variance, each column's sign fixed so that its entry of
    largest magnitude is positive; ``eigenvalues`` the full spectrum,
    descending. :meth:`project` gives z = (f - mu) @ V_k, (N, k).

    The buffers are created by :meth:`register_basis` (a subclass calls it
    from its own constructor; :meth:`build` makes a bare one), and are
    saved in checkpoints as ``mean``, ``basis``, ``eigenvalues`` and
    ``num_fit_samples`` (0 until fitted).

    Example:
        >>> import torch
        >>> pca = PrincipalBasis.build(4, 2)
        >>> pca.fit(torch.randn(10, 4)); tuple(pca.project(
        ...     torch.randn(3, 4)).shape)
        (3, 2)
    """

    @classmethod
    def build(cls, in_channels: int, num_components: int,
              components_key: str = 'num_components') -> 'PrincipalBasis':
        basis = cls()
        basis.register_basis(in_channels, num_components, components_key)
        return basis

    def register_basis(self, in_channels: int, num_components: int,
                       components_key: str) -> None:
        """Create the buffers of a C = ``in_channels``, k =
        ``num_components`` basis; ``components_key`` is the config key of
        k, named in errors."""
        self.num_components = int(num_components)
        self.components_key = components_key
        self.register_buffer('mean', torch.zeros(in_channels))
        self.register_buffer('basis', torch.zeros(in_channels,
                                                  num_components))
        self.register_buffer('eigenvalues', torch.zeros(in_channels))
        self.register_buffer('num_fit_samples',
                             torch.zeros((), dtype=torch.long))

    #: the buffers that never drop below float32
    _FLOAT32_BUFFERS = ('mean', 'basis', 'eigenvalues')

    def _apply(self, fn, *args, **kwargs):
        """Device moves apply; casts to bf16/fp16 (``model.half()``,
        DeepSpeed's ``module.bfloat16()``) leave mu, V_k and the
        eigenvalues in their float32 values (a subclass casts its inputs to
        ``basis.dtype``)."""
        kept = {n: self._buffers.get(n) for n in self._FLOAT32_BUFFERS}
        super()._apply(fn, *args, **kwargs)
        for name, old in kept.items():
            new = self._buffers.get(name)
            if old is not None and new is not None and new.dtype in (
                    torch.float16, torch.bfloat16):
                self._buffers[name] = old.to(new.device)
        return self

    @property
    def is_fitted(self) -> bool:
        return bool(self.num_fit_samples.item() > 0)

    @staticmethod
    def moments(features: torch.Tensor
                ) -> Tuple[torch.Tensor, torch.Tensor, int]:
        """float64 (sum f, sum f f^T, N) of features (N, C): additive, so
        moments of shards (or ranks) can be summed before fitting."""
        f = features.detach().to(torch.float64)
        return f.sum(0), f.T @ f, f.shape[0]

    @torch.no_grad()
    def fit_from_moments(self, feat_sum: torch.Tensor,
                         feat_outer: torch.Tensor, count: int) -> None:
        """Fit mu and V_k from float64 moments of N features:
        C = sum f f^T - N mu mu^T (symmetrised), V_k its top-k eigenvectors.

        Raises:
            ValueError: N <= k (the centred matrix has rank <= N - 1, so k
                directions are not determined).
        """
        count = int(count)
        k = self.num_components
        if count <= k:
            raise ValueError(
                f'the basis fit saw {count} teacher features but needs more '
                f'than {self.components_key} = {k} of them (the centred '
                'feature matrix has rank <= N - 1); raise the fit hook\'s '
                'num_samples or use more data')
        feat_sum = feat_sum.to(torch.float64)
        mean = feat_sum / count
        cov = feat_outer.to(torch.float64) - count * torch.outer(mean, mean)
        cov = (cov + cov.T) / 2
        evals, evecs = torch.linalg.eigh(cov.cpu())
        order = torch.argsort(evals, descending=True)
        evals, evecs = evals[order], evecs[:, order]
        basis = evecs[:, :k]
        idx = basis.abs().argmax(0)
        signs = torch.sign(basis[idx, torch.arange(k)])
        signs[signs == 0] = 1
        basis = basis * signs
        self.mean.copy_(mean.to(self.mean))
        self.basis.copy_(basis.to(self.basis))
        self.eigenvalues.copy_(evals.clamp_min(0).to(self.eigenvalues))
        self.num_fit_samples.fill_(count)

    def fit(self, features: torch.Tensor) -> None:
        """Fit from a feature matrix (N, C) held in memory."""
        self.fit_from_moments(*self.moments(features))

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """z = (f - mu) @ V_k, shape (N, k)."""
        return (features - self.mean) @ self.basis

    def explained_variance(self) -> float:
        """Fraction of the variance the k kept directions hold."""
        ev = self.eigenvalues.double()
        return (ev[:self.num_components].sum() /
                ev.sum().clamp_min(1e-12)).item()


@dataclass
class BasisFit:
    """A distiller's declaration of the principal basis it needs fitted
    before training (its ``basis_fit()``), which ``kdep_mm.FitBasisHook``
    drives: online from the training data, or from a teacher store.

    Attributes:
        basis: the :class:`PrincipalBasis` to fit; k is its
            ``num_components``, named in errors as its ``components_key``.
        name: what the basis is, in logs and errors ('aligner basis').
        teacher_channels: C, the width of the teacher features it is fitted
            on (a store's field must hold (C,) features).
        channels_key: the config key of C, named in errors.
        about_k: a note on k, in errors ('the student width, k').
        remedy: the other way out of a fit with too few features, besides
            more data ('a narrower student').
        identity: what a basis file records and is checked against on load
            (a callable, evaluated only when a file is read or written);
            None = the basis is never saved to a basis file.
        from_store: whether it may be fitted from a teacher store.
        driven_by: ``(hook type, why)``, a hook that must drive the model
            during training (the fit hook warns when the run has none).
    """

    basis: PrincipalBasis
    name: str
    teacher_channels: int
    channels_key: str
    about_k: str
    remedy: str
    identity: Optional[Callable[[], dict]] = None
    from_store: bool = False
    driven_by: Optional[Tuple[str, str]] = None

    @property
    def num_components(self) -> int:
        return self.basis.num_components

    def check_count(self, count: int, source: str) -> None:
        """Refuse (``ValueError``) a fit on ``count`` <= k features: the
        centred feature matrix has rank <= N - 1."""
        k = self.num_components
        if int(count) <= k:
            raise ValueError(
                f'{source}: {int(count)} teacher features, but the '
                f'{self.name} needs more than {self.basis.components_key} = '
                f'{k} of them (the centred feature matrix has rank <= N - 1)'
                f'; use more data or {self.remedy}')


@torch.no_grad()
def fit_principal_basis(basis: PrincipalBasis,
                        feature_batches: Iterable[torch.Tensor],
                        limit: Optional[int] = None,
                        across_ranks: bool = True,
                        on_batch=None) -> int:
    """Fit ``basis`` from a stream of feature batches (N_i, C): the one
    fitting routine of the basis hooks.

    The float64 moments (sum f, sum f f^T, N) of the batches (at most
    ``limit`` features on this rank) are summed; with ``across_ranks`` they
    are then all-reduced over the ranks (each rank saw its shard of the
    data), every rank fits the same basis and rank 0's buffers are
    broadcast so that they are bit-identical everywhere. Without it (every
    rank read the same features, e.g. a whole teacher store) nothing is
    exchanged. ``on_batch(n)`` is called with each batch's size.

    Returns:
        int: the number of features fitted on.
    """
    feat_sum = feat_outer = None
    count = 0
    for feats in feature_batches:
        if limit is not None:
            feats = feats[:limit - count]
        s, o, n = basis.moments(feats.reshape(feats.shape[0], -1))
        feat_sum = s if feat_sum is None else feat_sum + s
        feat_outer = o if feat_outer is None else feat_outer + o
        count += n
        if on_batch is not None:
            on_batch(n)
        if limit is not None and count >= limit:
            break
    if feat_sum is None:
        raise ValueError('the basis fit got no data: the dataloader (or '
                         'store) is empty')
    count_t = torch.tensor([float(count)], dtype=torch.float64,
                           device=feat_sum.device)
    if across_ranks:
        dist.all_reduce(feat_sum, op='sum')
        dist.all_reduce(feat_outer, op='sum')
        dist.all_reduce(count_t, op='sum')
    basis.fit_from_moments(feat_sum, feat_outer, int(count_t.item()))
    if across_ranks:
        for key in BASIS_KEYS:
            dist.broadcast(getattr(basis, key), src=0)
    return int(count_t.item())
