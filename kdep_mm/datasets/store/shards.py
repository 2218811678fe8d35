"""Shard verification: a shard's done-marker, its files' sizes and sha256,
and the ``verified`` marker that lets later opens skip the hashing.

A reader hashes a shard's files once and records a marker bound to each
file's size, mtime, ctime and sha256 (and to the done-marker's sha256); a
later open stats the files and re-hashes only a shard whose files (or
done-marker) changed (:func:`check_shard`, ``mode='cached'``).
"""
import hashlib
import json
import logging
import os
import os.path as osp
import tempfile
from typing import Iterable, Optional

from kdep_mm.utils.checkpoint import file_sha256
from .format import SHARD_DIR, VIEW_FILES, json_bytes, shard_file

# what ``TeacherStore(verify=...)`` accepts -> the mode of check_shard
VERIFY_MODES = {True: 'cached', 'cached': 'cached', 'full': 'full',
                False: 'sizes'}

_log = logging.getLogger(__name__)
_unwritable_warned = set()


def _file_state(path: str) -> dict:
    """What a verified marker binds a file to: size, mtime and ctime (ns).
    Rewriting a file changes its mtime and ctime; ctime cannot be set back
    from user space."""
    st = os.stat(path)
    return dict(bytes=int(st.st_size), mtime_ns=int(st.st_mtime_ns),
                ctime_ns=int(st.st_ctime_ns))


def remove_verified(root: str, shard: int) -> None:
    path = shard_file(root, shard, 'verified.json')
    if osp.exists(path):
        os.remove(path)


def _read_verified(path: str) -> Optional[dict]:
    """A verified marker, or None if absent or unreadable (it is a cache:
    a bad one only costs a re-verification)."""
    try:
        with open(path) as f:
            info = json.load(f)
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _write_verified(root: str, shard: int, info: dict) -> None:
    """Write a verified marker atomically (temporary file + rename; not
    fsync'ed: a marker lost in a crash costs one re-verification). A store
    the process cannot write is verified at every open (warned once)."""
    path = shard_file(root, shard, 'verified.json')
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{shard:05d}.verified.json.',
                                   suffix='.tmp', dir=osp.dirname(path))
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(json_bytes(info))
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                os.remove(tmp)
    except OSError as e:
        if root not in _unwritable_warned:
            _unwritable_warned.add(root)
            _log.warning(
                'teacher store %s: cannot record verified shards (%s); '
                'every open re-hashes the whole store', root, e)


def check_shard(root: str, shard: int, fields: Iterable[str] = None,
                manifest_sha256: Optional[str] = None,
                mode: str = 'cached') -> dict:
    """Check one shard; returns its done-marker, raises ``ValueError``
    naming the file otherwise.

    Always: the done-marker exists, lists a file for the views and every
    field in ``fields``, belongs to the manifest ``manifest_sha256`` (if
    given), and every file it lists exists with the marker's size. Then, by
    ``mode``:

    * ``'sizes'``: nothing more;
    * ``'full'``: the sha256 of every file equals the marker's, and a
      verified marker is written (``NNNNN.verified.json``: each file's
      sha256, size, mtime and ctime, the done-marker's sha256);
    * ``'cached'``: as ``'full'``, unless the verified marker matches the
      done-marker and every file's current size, mtime, ctime and sha256;
      then nothing is hashed.
    """
    root = osp.abspath(root)
    marker = shard_file(root, shard, 'done.json')
    if not osp.isfile(marker):
        raise ValueError(
            f'teacher store {root}: shard {shard} is missing or unfinished '
            f'(no done-marker {marker}); rerun the writer to complete it')
    with open(marker, 'rb') as f:
        raw = f.read()
    try:
        info = json.loads(raw.decode())
    except ValueError as e:
        raise ValueError(f'teacher store {root}: shard marker {marker} is '
                         f'not valid JSON ({e})') from e
    files = info.get('files', {})
    for name in list(VIEW_FILES) + list(fields or []):
        if name not in files:
            raise ValueError(f'teacher store {root}: shard marker {marker} '
                             f'lists no file for {name!r}')
    if manifest_sha256 is not None and \
            info.get('manifest_sha256') != manifest_sha256:
        raise ValueError(
            f'teacher store {root}: shard marker {marker} belongs to another '
            f'manifest (manifest_sha256 {info.get("manifest_sha256")!r}, the '
            f'store\'s is {manifest_sha256!r}): the shard was written for '
            f'another store; rerun the writer to rewrite it')
    states = {}
    for name, meta in files.items():
        path = osp.join(root, SHARD_DIR, meta['file'])
        if not osp.isfile(path):
            raise ValueError(f'teacher store {root}: shard file {path} is '
                             'missing')
        states[name] = _file_state(path)
        if states[name]['bytes'] != meta['bytes']:
            raise ValueError(
                f'teacher store {root}: shard file {path} has '
                f'{states[name]["bytes"]} bytes, its marker says '
                f'{meta["bytes"]}')
    if mode == 'sizes':
        return info
    if mode not in ('cached', 'full'):
        raise ValueError(f"mode must be 'sizes', 'cached' or 'full', got "
                         f'{mode!r}')
    done_sha = hashlib.sha256(raw).hexdigest()
    record = dict(shard=shard, done_sha256=done_sha,
                  files={name: dict(states[name], sha256=meta['sha256'])
                         for name, meta in files.items()})
    if mode == 'cached':
        cached = _read_verified(shard_file(root, shard, 'verified.json'))
        if cached == record:
            return info
    for name, meta in files.items():
        path = osp.join(root, SHARD_DIR, meta['file'])
        if file_sha256(path) != meta['sha256']:
            raise ValueError(f'teacher store {root}: shard file {path} is '
                             'corrupted (sha256 differs from its marker)')
    _write_verified(root, shard, record)
    return info


def verify_shard(root: str, shard: int, fields: Iterable[str] = None,
                 manifest_sha256: Optional[str] = None) -> dict:
    """Check ``shard``'s done-marker and files (existence, size, sha256 of
    every file, re-hashed now); :func:`check_shard` with ``mode='full'``.

    Returns the marker; raises ``ValueError`` naming the file otherwise.
    """
    return check_shard(root, shard, fields, manifest_sha256, 'full')
