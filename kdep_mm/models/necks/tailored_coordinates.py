"""TCS's tailored coordinate system: the teacher's PCA coordinates and the
0/1 mask that tailoring prunes them with."""
import math
from typing import List, Optional

import torch
from mmengine import dist


class TailoredCoordinates:
    """The coordinate system and tailoring mask of a TCS model.

    Mixed into an ``nn.Module`` that holds ``coords`` (a fitted
    :class:`~kdep_mm.models.utils.PrincipalBasis` of k directions) and calls
    :meth:`register_tailoring`; its buffers ``mask`` (k, 0/1) and
    ``train_iter`` and its extra state (``importance``) are the module's
    own, so checkpoints hold them at the top level.

        c_t = (f_t - mu) @ V_k                       teacher coordinates
        m * c_s                                      masked student coordinates
        I_j += sum_n |(m c_s)_nj * dCE/d(m c_s)_nj|  importance (backward hook)

    Every ``prune_interval`` iterations (from ``prune_start``) the
    ``prune_ratio`` fraction of the active coordinates with the smallest
    importance is dropped, never below ``min_coords``, and the importance
    is reset. :meth:`after_train_iter` advances the schedule (driven by
    ``TCSTailoringHook``).
    """

    def register_tailoring(self, num_coords: int,
                           min_coords: Optional[int] = None,
                           prune_interval: int = 500,
                           prune_ratio: float = 0.1,
                           prune_start: int = 0) -> None:
        k = int(num_coords)
        if min_coords is None:
            min_coords = math.ceil(k / 2)
        if not 1 <= int(min_coords) <= k:
            raise ValueError(f'model.min_coords must be in [1, num_coords={k}]'
                             f', got {min_coords}')
        if prune_interval < 0 or not 0 <= prune_ratio < 1:
            raise ValueError('model.prune_interval must be >= 0 and '
                             f'model.prune_ratio in [0, 1), got '
                             f'{prune_interval}, {prune_ratio}')
        self.num_coords = k
        self.prune_interval = int(prune_interval)
        self.prune_ratio = float(prune_ratio)
        self.min_coords = int(min_coords)
        self.prune_start = int(prune_start)
        self.register_buffer('mask', torch.ones(k))
        self.register_buffer('train_iter', torch.zeros((), dtype=torch.long))
        # Not a buffer: DDP broadcasts buffers from rank 0 at every forward,
        # which would overwrite each rank's local accumulation. Saved
        # through get_extra_state; summed over ranks at each prune step.
        self._importance = torch.zeros(k, dtype=torch.float64)

    # ------------------------------------------------------------- state
    @property
    def importance(self) -> torch.Tensor:
        """Accumulated importance of each coordinate since the last prune
        step (float64, k)."""
        return self._importance

    def get_extra_state(self):
        return dict(importance=self._importance.detach().cpu().clone())

    def set_extra_state(self, state):
        self._importance = state['importance'].to(
            dtype=torch.float64, device=self.mask.device).clone()

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._importance = self._importance.to(self.mask.device)
        return self

    # ------------------------------------------------------- coordinates
    def teacher_coordinates(self, teacher_feat: torch.Tensor) -> torch.Tensor:
        """c_t = (f_t - mu) @ V_k, (N, k), no grad; in the basis's dtype
        even under autocast (the target of the coordinate loss)."""
        with torch.no_grad(), torch.autocast(teacher_feat.device.type,
                                             enabled=False):
            return self.coords.project(teacher_feat.to(self.coords.basis))

    def masked_coordinates(self, coords: torch.Tensor) -> torch.Tensor:
        """m * c_s; in training, its gradient adds to the importance."""
        masked = coords * self.mask.to(coords.dtype)
        if self.training and masked.requires_grad:
            masked.register_hook(self._accumulate_importance(masked))
        return masked

    def _accumulate_importance(self, coords: torch.Tensor):
        value = coords.detach()

        def hook(grad):
            with torch.no_grad():
                score = (value * grad).abs().sum(0).double()
                self._importance = self._importance.to(score.device)
                self._importance.add_(score * self.mask.double().to(
                    score.device))
            return grad

        return hook

    # ---------------------------------------------------------- tailoring
    @property
    def num_active(self) -> int:
        return int(self.mask.sum().item())

    @torch.no_grad()
    def prune_step(self) -> List[int]:
        """Drop floor(prune_ratio * active) (at least 1) of the active
        coordinates with the smallest importance (ties: the lower-variance,
        i.e. later, coordinate first), keeping >= min_coords; reset the
        importance. Returns the dropped indices."""
        if dist.get_world_size() > 1:
            dist.all_reduce(self._importance)
        active = self.num_active
        n_drop = min(max(int(math.floor(self.prune_ratio * active)), 1),
                     active - self.min_coords)
        dropped: List[int] = []
        if n_drop > 0 and self.prune_ratio > 0:
            k = self.num_coords
            idx = [i for i in range(k) if self.mask[i] > 0]
            score = self.importance.cpu().tolist()
            # smallest importance first; among equals the later coordinate
            idx.sort(key=lambda i: (score[i], -i))
            dropped = sorted(idx[:n_drop])
            self.mask[dropped] = 0
        self._importance.zero_()
        return dropped

    def after_train_iter(self) -> None:
        """Advance the internal counter; run a prune step when due."""
        self.train_iter += 1
        it = int(self.train_iter.item())
        if (self.prune_interval > 0 and it >= self.prune_start
                and it % self.prune_interval == 0):
            self.prune_step()
