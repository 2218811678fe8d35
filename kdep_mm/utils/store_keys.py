"""The names under which stored teacher targets travel.

A teacher-output store is written by :mod:`kdep_mm.apis` (the caching API),
read by the stored-view transforms in :mod:`kdep_mm.datasets`, packed into
data samples by ``mmpretrain.PackInputs(algorithm_keys=...)`` and consumed by
the algorithms in :mod:`kdep_mm.models`. Those packages do not import each
other, so the keys they share are defined once here, at the bottom layer.
"""

#: One store's fields for the drawn view, e.g. ``{'feat': (C,) array}``
#: becomes ``results['teacher_feat']``: the prefix of a single-store field.
FIELD_PREFIX = 'teacher_'

#: The pooled teacher feature of the drawn view, shape (C_t,) (TCS, KDEP
#: from a store).
TEACHER_FEAT = FIELD_PREFIX + 'feat'

#: Several stores at once (the ensemble): ``{teacher name: {field: array}}``.
TEACHER_OUTPUTS = 'teacher_outputs'

#: Index of the view drawn for a sample, an int in ``[0, V)``.
VIEW_INDEX = 'view_index'

#: Set by the ensemble's batch mixing (Mixup/CutMix): sample i carries row i
#: of the batch's (N, N) mixing matrix M, ``mixed_i = sum_j M[i, j] x_j``, so
#: that stored targets are mixed as the images were.
TEACHER_MIX = 'teacher_mix'


def field_key(field: str) -> str:
    """The results key of a single store's ``field``: ``'teacher_' + field``.
    """
    return FIELD_PREFIX + field
