"""Cell results (one JSON per cell, written atomically), claim files (one
O_EXCL file per running cell, taken over when its process is dead), the
picker of the next runnable cell and the rerun of cells whose artefacts
are gone: what every study's worker loop shares."""
import json
import os
import os.path as osp


def cell_path(rdir, cell, suffix='.json'):
    return osp.join(rdir, 'cells', cell.fname + suffix)


def load_result(rdir, cell):
    path = cell_path(rdir, cell)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_result_id(rdir, cell_id):
    path = osp.join(rdir, 'cells', cell_id.replace('/', '__') + '.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def retire_lost(lost, pending_deps, path_of, say=print, done_deps=None):
    """Rerun finished cells whose artefacts are gone: the cell JSONs are
    kept in git, the stores, checkpoints and exports they left in a work
    dir are not. ``lost`` are the ids of such cells, ``pending_deps`` the
    dependency lists of the cells that have not run yet; a lost cell that
    one of them needs has its JSON moved to ``*.stale.json`` (kept, and
    git-ignored) so that it runs again. With ``done_deps`` ({id: deps} of
    the finished cells) the finished cells made from a retired one go too,
    transitively, so that no result mixes the old run with the new.
    Returns the retired ids."""
    out = []
    for cid in lost:
        waiting = sum(cid in deps for deps in pending_deps)
        if waiting:
            out.append(cid)
            say(f'cell {cid}: what it made is gone and {waiting} cell(s) '
                'need it: rerunning it')
    for cid in out:  # grows while it is read: the cascade
        for d, deps in (done_deps or {}).items():
            if cid in deps and d not in out:
                out.append(d)
                say(f'cell {d}: made from {cid}, which reruns: rerunning it')
    for cid in out:
        mark_stale(path_of(cid))
    return out


def made_with_other(res, now):
    """The teachers whose checkpoint the cell result ``res`` was made with
    (``res['teacher_sha256']``: {teacher: sha256}) is not the one there
    now (``now(teacher)``: its sha256; None, a missing file, is not
    counted). [] for a cell that records none."""
    return sorted(t for t, sha in (res.get('teacher_sha256') or {}).items()
                  if now(t) not in (None, sha))


def retire_made_with_other(done, now, path_of, say=print):
    """Rerun the finished cells (``done``: {id: result}) made with another
    teacher checkpoint than the one there now (:func:`made_with_other`: a
    retrained teacher), so that no result mixes two teachers: their JSONs
    go to ``*.stale.json``. Returns their ids."""
    out = []
    for cid, res in done.items():
        other = made_with_other(res, now)
        if other:
            say(f'cell {cid}: made with another checkpoint of the '
                f'{", ".join(other)} teacher than the one there now: '
                'rerunning it')
            mark_stale(path_of(cid))
            out.append(cid)
    return out


def mark_stale(path):
    """Move the cell JSON ``path`` to ``*.stale.json`` (kept for the
    record, git-ignored, read by no report): the cell runs again."""
    os.replace(path, path[:-len('.json')] + '.stale.json')


def write_json(path, obj):
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    atomic_write_bytes((json.dumps(obj, indent=1) + '\n').encode(), path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _claim_file(rdir, cell_id):
    return osp.join(rdir, 'claims', cell_id.replace('/', '__'))


def try_claim(rdir, cell) -> bool:
    """Claim a cell for this process; a claim of a dead process is taken
    over. Returns False when a live process holds it."""
    os.makedirs(osp.join(rdir, 'claims'), exist_ok=True)
    path = _claim_file(rdir, cell.id)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                with open(path) as f:
                    pid = int(f.read().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and _pid_alive(pid):
                return False
            try:
                os.remove(path)
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, 'w') as f:
            f.write(str(os.getpid()))
        return True
    return False


def pick_ready(pending, deps, done, claims_dir, failed, skip=None):
    """The next cell of ``pending`` (plan order, dependencies first) this
    process may run, claimed in ``claims_dir``: ``(cell, waiting)``.

    A cell whose dependency failed (``failed``, ids) joins ``failed``; one
    whose dependency has not finished is passed over, and the caller should
    wait (``waiting``) only when that dependency runs (a live claim: another
    process, or another thread of this one), else it can never finish
    here. ``skip(cell)`` true passes a cell over for good. ``deps(cell)``
    lists dependency ids; ``done(id)`` says whether a cell has its result
    (asked again once claimed: another process may have finished it
    meanwhile). ``(None, waiting)`` when no cell can start now."""
    waiting = False
    for c in pending:
        ds = deps(c)
        if any(d in failed for d in ds):
            failed.add(c.id)
            continue
        if not all(done(d) for d in ds):  # running: in any live process
            waiting |= any(_holder(claims_dir, d) for d in ds)
            continue
        if skip and skip(c):
            continue
        if claimed_by_other(claims_dir, c.id):
            waiting = True
            continue
        if try_claim(claims_dir, c):
            if not done(c.id):
                return c, True
            release(claims_dir, c)
        else:
            waiting = True
    return None, waiting


def release(rdir, cell):
    try:
        os.remove(_claim_file(rdir, cell.id))
    except FileNotFoundError:
        pass


def _holder(rdir, cell_id) -> int:
    """The pid of the live process holding a cell's claim, else 0."""
    try:
        with open(_claim_file(rdir, cell_id)) as f:
            pid = int(f.read().strip() or 0)
    except (OSError, ValueError):
        return 0
    return pid if pid and _pid_alive(pid) else 0


def claimed_by_other(rdir, cell_id) -> bool:
    pid = _holder(rdir, cell_id)
    return bool(pid) and pid != os.getpid()
