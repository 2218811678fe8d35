"""Named frozen teachers (an ensemble, or the one teacher of a distiller)."""
from typing import Dict, Iterator, List, Optional, Sequence

import torch.nn as nn

from .frozen_teacher import FrozenTeacher


def per_teacher(value, names: Sequence[str], key: str,
                default=None) -> list:
    """``value`` (None, a dict by teacher name or a sequence in teacher
    order) as a list in ``names`` order; a ValueError names ``key`` when
    its teachers or its length differ from ``names``."""
    if value is None:
        return [default] * len(names)
    if isinstance(value, dict):
        if sorted(value) != sorted(names):
            raise ValueError(
                f'{key} names the teachers {sorted(value)}, '
                f'model.teacher_names is {list(names)}')
        return [value[n] for n in names]
    value = list(value)
    if len(value) != len(names):
        raise ValueError(f'{key} has {len(value)} entries, '
                         f'model.teacher_names {len(names)}: {list(names)}')
    return value


class TeacherSet:
    """An ordered ``name -> FrozenTeacher`` map; empty in store mode.

    Example:
        >>> import torch.nn as nn
        >>> s = TeacherSet({'a': FrozenTeacher(nn.Linear(2, 2))})
        >>> s.names, len(s), s.modules['a'].training
        (['a'], 1, False)
    """

    def __init__(self, teachers: Optional[Dict[str, FrozenTeacher]] = None):
        self._teachers: Dict[str, FrozenTeacher] = dict(teachers or {})

    @classmethod
    def build(cls, names: Sequence[str], teachers, checkpoints=None,
              revise_keys=None, require_head: bool = False) -> 'TeacherSet':
        """One :class:`FrozenTeacher` per name, in order; ``teachers``,
        ``checkpoints`` (``model.teacher_ckpts``) and ``revise_keys``
        (``model.teacher_revise_keys``) are dicts by name or sequences in
        ``names`` order (see :func:`per_teacher`)."""
        cfgs = per_teacher(teachers, names, 'model.teachers')
        ckpts = per_teacher(checkpoints, names, 'model.teacher_ckpts')
        revise = per_teacher(revise_keys, names, 'model.teacher_revise_keys')
        return cls({
            name: FrozenTeacher(cfg, ckpt, rev, key=f'model.teachers.{name}',
                                ckpt_key=f'model.teacher_ckpts.{name}',
                                require_head=require_head)
            for name, cfg, ckpt, rev in zip(names, cfgs, ckpts, revise)
        })

    @property
    def names(self) -> List[str]:
        return list(self._teachers)

    @property
    def modules(self) -> Dict[str, nn.Module]:
        """name -> teacher network."""
        return {n: t.module for n, t in self._teachers.items()}

    @property
    def checkpoints(self) -> Dict[str, Optional[str]]:
        return {n: t.checkpoint for n, t in self._teachers.items()}

    @property
    def first(self) -> Optional[FrozenTeacher]:
        return next(iter(self._teachers.values()), None)

    def __getitem__(self, name: str) -> FrozenTeacher:
        return self._teachers[name]

    def __len__(self) -> int:
        return len(self._teachers)

    def __iter__(self) -> Iterator[str]:
        return iter(self._teachers)

    def items(self):
        return self._teachers.items()

    def follow(self, reference: Optional[nn.Module]) -> None:
        """Every teacher runs in ``reference``'s dtype
        (:meth:`FrozenTeacher.follow`)."""
        for t in self._teachers.values():
            t.follow(reference)

    def eval(self) -> None:
        for t in self._teachers.values():
            t.eval()
