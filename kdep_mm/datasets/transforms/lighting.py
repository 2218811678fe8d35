"""AlexNet-style PCA lighting noise that keeps the channel order and clips.

mmpretrain's ``Lighting`` (mmcv's ``adjust_lighting``) has two traps for a
pipeline that decodes BGR images and lets the data preprocessor convert to
RGB (``ClsDataPreprocessor(to_rgb=True)``, every OpenMMLab ImageNet recipe):

* ``to_rgb=True`` *returns* an RGB image, so the preprocessor's swap turns it
  back into BGR and the network sees BGR normalised with RGB statistics;
* the noisy float image is cast back with ``astype(uint8)``, so a pixel
  pushed past 255 wraps around (256.6 -> 0, -0.4 -> 255) instead of
  saturating.

:class:`ClippedLighting` never changes the channel order, takes the
eigenvectors in RGB (as published) and says in which order the image's
channels are, and rounds and clips the result to the uint8 range.
"""
from typing import Dict, Sequence

import numpy as np
from mmcv.transforms import BaseTransform

from kdep_mm.registry import TRANSFORMS

#: ImageNet RGB pixel covariance on 0-255 images (AlexNet; the numbers of
#: fb.resnet.torch, eigenvalues x 255): eigenvalues and the eigenvectors as
#: *columns*, rows in R, G, B order.
IMAGENET_EIGVAL = (55.4625, 4.7940, 1.1475)
IMAGENET_EIGVEC_RGB = ((-0.5675, 0.7192, 0.4009),
                       (-0.5808, -0.0045, -0.8140),
                       (-0.5836, -0.6948, 0.4203))

_ORDERS = ('bgr', 'rgb')


@TRANSFORMS.register_module()
class ClippedLighting(BaseTransform):
    """PCA lighting noise (Krizhevsky et al., 2012), clipped to 0-255.

    For an image ``x`` (H, W, 3) and one draw per call of
    ``alpha ~ N(0, alphastd^2 I_k)`` (numpy's global generator, which
    mmengine seeds per worker)::

        delta_rgb = eigvec_rgb @ (alpha * eigval)          (3,)
        delta     = delta_rgb[perm]    perm = (2, 1, 0) for 'bgr', identity
                                       for 'rgb'
        y         = clip(round(x + delta), 0, 255)         same dtype as x

    The output keeps the channel order of the input (nothing is converted;
    leave the RGB conversion to the data preprocessor's ``to_rgb``).

    Required keys: ``img``. Modified keys: ``img``.

    Args:
        eigval (Sequence[float]): the k eigenvalues of the RGB pixel
            covariance, on the 0-255 scale. Defaults to ImageNet's.
        eigvec (Sequence[Sequence[float]]): 3 x k matrix whose *columns* are
            the eigenvectors and whose *rows* are the R, G, B channels (the
            published order). Defaults to ImageNet's.
        alphastd (float): standard deviation of ``alpha``. Defaults to 0.1.
        channel_order (str): order of the channels of ``results['img']`` at
            this point of the pipeline: ``'bgr'`` (what ``LoadImageFromFile``
            decodes, the default) or ``'rgb'``.
    """

    def __init__(self,
                 eigval: Sequence[float] = IMAGENET_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC_RGB,
                 alphastd: float = 0.1,
                 channel_order: str = 'bgr'):
        eigval = np.asarray(eigval, dtype=np.float64)
        eigvec = np.asarray(eigvec, dtype=np.float64)
        if eigval.ndim != 1 or eigval.size < 1:
            raise ValueError('ClippedLighting: eigval must be a non-empty '
                             f'list of numbers, got shape {eigval.shape}')
        if eigvec.shape != (3, eigval.size):
            raise ValueError(
                'ClippedLighting: eigvec must be 3 x len(eigval) (rows: the '
                f'R, G, B channels; columns: the eigenvectors), got shape '
                f'{eigvec.shape} for {eigval.size} eigenvalues')
        if not (isinstance(alphastd, (int, float)) and alphastd >= 0):
            raise ValueError('ClippedLighting: alphastd must be a number >= '
                             f'0, got {alphastd!r}')
        if channel_order not in _ORDERS:
            raise ValueError(f'ClippedLighting: channel_order must be one of '
                             f'{_ORDERS}, got {channel_order!r}')
        self.eigval = eigval
        self.eigvec = eigvec
        self.alphastd = float(alphastd)
        self.channel_order = channel_order

    def noise(self, alpha: np.ndarray) -> np.ndarray:
        """The per-channel offset (3,) for ``alpha`` (k,), in the image's
        channel order."""
        delta_rgb = self.eigvec @ (np.asarray(alpha, np.float64) *
                                   self.eigval)
        return delta_rgb[::-1] if self.channel_order == 'bgr' else delta_rgb

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        if img.ndim != 3 or img.shape[2] != 3:
            raise ValueError('ClippedLighting needs a 3-channel image (H, W, '
                             f'3), got shape {img.shape}')
        alpha = np.random.normal(0, self.alphastd, self.eigval.size)
        out = img.astype(np.float32) + self.noise(alpha).astype(np.float32)
        out = np.clip(out, 0, 255)
        if np.issubdtype(img.dtype, np.integer):
            out = np.rint(out)
        results['img'] = out.astype(img.dtype)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(eigval={self.eigval.tolist()}, '
                f'eigvec={self.eigvec.tolist()}, alphastd={self.alphastd}, '
                f'channel_order={self.channel_order!r})')
