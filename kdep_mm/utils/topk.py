"""The top-k codec of stored logits: instead of the full logits, the ``k``
largest softmax probabilities in float16 with their exact integer class
indices. The caching side encodes (``kdep_mm.apis``), the ensemble decodes
(``kdep_mm.models``): the codec lives at the bottom layer, beside the key
names the stored targets travel under (:mod:`kdep_mm.utils.store_keys`).

>>> probs, idx = encode_topk(np.array([[0., 2., 1.]]), k=2)
>>> idx.tolist()
[[1, 2]]
>>> dense = decode_topk(probs, idx, num_classes=3)
>>> round(float(dense.sum()), 3)
1.0
"""
from typing import Tuple

import numpy as np


def topk_fields(name: str, k: int, index_dtype: str = 'int32') -> dict:
    """Field specs of top-k mode: ``<name>_topk_prob`` float16 ``(k,)`` and
    ``<name>_topk_idx`` ``index_dtype`` (int32 or int64) ``(k,)``."""
    if np.dtype(index_dtype) not in (np.dtype('int32'), np.dtype('int64')):
        raise ValueError(f'index_dtype must be int32 or int64, got '
                         f'{index_dtype}')
    return {f'{name}_topk_prob': ((k,), 'float16'),
            f'{name}_topk_idx': ((k,), np.dtype(index_dtype).name)}


def encode_topk(logits: np.ndarray, k: int, temperature: float = 1.0,
                index_dtype: str = 'int32') -> Tuple[np.ndarray, np.ndarray]:
    """Top-k of ``softmax(logits / temperature)`` over the last axis.

    Returns ``(probs float16 (..., k), indices (..., k))``, sorted by
    decreasing probability (ties: lower class index first). The softmax is
    taken over all classes in float64 before the top-k, so the stored
    probabilities are the teacher's own (rounded to float16: relative error
    <= 2**-11 for normal values, absolute error <= 2**-25 below 2**-14);
    the indices are exact.
    """
    logits = np.asarray(logits, dtype=np.float64) / float(temperature)
    num_classes = logits.shape[-1]
    if not 0 < k <= num_classes:
        raise ValueError(f'k={k} not in [1, {num_classes}]')
    if num_classes > np.iinfo(index_dtype).max:
        raise ValueError(f'{num_classes} classes do not fit {index_dtype}')
    z = logits - logits.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    # stable sort on -p: equal probabilities keep the lower index first
    idx = np.argsort(-p, axis=-1, kind='stable')[..., :k]
    probs = np.take_along_axis(p, idx, axis=-1)
    return probs.astype(np.float16), idx.astype(index_dtype)


def decode_topk(probs: np.ndarray, indices: np.ndarray, num_classes: int,
                rest: str = 'uniform') -> np.ndarray:
    """A dense float32 soft target ``(..., num_classes)`` from top-k.

    Args:
        rest (str): what the classes outside the top-k get.

            * ``'uniform'`` (default): the missing mass ``1 - sum(top-k)``
              (clipped at 0) spread evenly over the ``num_classes - k``
              other classes, so the target sums to 1 (up to float16
              rounding of the stored probabilities).
            * ``'zero'``: 0; the top-k keep their stored values (the target
              sums to less than 1).
            * ``'renorm'``: 0, and the top-k are rescaled to sum to 1.
    """
    probs = np.asarray(probs, dtype=np.float32)
    indices = np.asarray(indices).astype(np.int64)
    if probs.shape != indices.shape:
        raise ValueError(f'probs {probs.shape} vs indices {indices.shape}')
    k = probs.shape[-1]
    if indices.size and (indices.min() < 0 or indices.max() >= num_classes):
        raise ValueError(f'top-k indices outside [0, {num_classes})')
    dense = np.zeros(probs.shape[:-1] + (num_classes,), dtype=np.float32)
    if rest == 'uniform':
        if num_classes > k:
            missing = np.clip(1.0 - probs.sum(-1, keepdims=True), 0, None)
            dense += missing / (num_classes - k)
    elif rest == 'renorm':
        probs = probs / np.clip(probs.sum(-1, keepdims=True), 1e-12, None)
    elif rest != 'zero':
        raise ValueError(f"rest must be 'uniform', 'zero' or 'renorm', got "
                         f'{rest!r}')
    np.put_along_axis(dense, indices, probs, axis=-1)
    return dense
