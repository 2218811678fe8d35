"""The GPU wheelhouse's checks: dependency closure, manifest, verification.

    python tools/gpu/wheelhouse.py closure  WHEELDIR   # every requirement met?
    python tools/gpu/wheelhouse.py manifest WHEELDIR   # write MANIFEST.txt
    python tools/gpu/wheelhouse.py verify   WHEELDIR   # sha256s match it?

``closure`` reads the ``Requires-Dist`` lines of every wheel in WHEELDIR
(markers evaluated for CPython 3.12 on Linux x86-64, extras ignored) and
fails when a requirement is neither in the wheelhouse nor in the GPU
machine's package list (``tools/gpu/gpu_machine_packages.txt``), unless
:data:`NOT_CARRIED` says why it is left out. It also fails on a wheel that
is not pure Python (``*-none-any``) and on two versions of one name.

Only the standard library is used (and ``packaging`` where present), so
the GPU machine's plain ``python3`` runs ``verify``.
"""
import hashlib
import os
import os.path as osp
import re
import sys
import zipfile

HERE = osp.dirname(osp.abspath(__file__))
MANIFEST = 'MANIFEST.txt'

# requirement -> why the wheelhouse does not carry it
NOT_CARRIED = {
    'opencv-python': 'the GPU machine has opencv-python-headless (same cv2)',
    'mmcv': 'carried as mmcv-lite 2.1.0 (the same package, MMCV_WITH_OPS=0)',
    'mmdet': 'imports mmcv.ops at module level (mmdet.structures.mask): '
             'unusable with mmcv-lite; the GPU scripts do not import it',
    'mmsegmentation': 'imports mmcv.ops at module level (mmseg.datasets): '
                      'unusable with mmcv-lite; the GPU scripts do not '
                      'import it',
    'ftfy': "kdep_mm lists it for mmseg's tokenizer only (see mmsegmentation)",
}
TARGET_ENV = dict(python_version='3.12', python_full_version='3.12.3',
                  sys_platform='linux', platform_system='Linux',
                  platform_machine='x86_64', os_name='posix',
                  implementation_name='cpython',
                  platform_python_implementation='CPython', extra='')


def norm(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def gpu_packages(path=osp.join(HERE, 'gpu_machine_packages.txt')):
    with open(path) as f:
        return {norm(ln.strip()) for ln in f
                if ln.strip() and not ln.startswith('#')}


def wheel_meta(path):
    """(name, version, [Requires-Dist lines]) of a wheel."""
    with zipfile.ZipFile(path) as z:
        meta = [n for n in z.namelist()
                if n.endswith('.dist-info/METADATA') and n.count('/') == 1]
        if len(meta) != 1:
            raise ValueError(f'{path}: {len(meta)} METADATA files')
        text = z.read(meta[0]).decode('utf-8', 'replace')
    head = text.split('\n\n', 1)[0]
    fields = [ln.split(':', 1) for ln in head.splitlines() if ':' in ln]
    name = next(v.strip() for k, v in fields if k == 'Name')
    version = next(v.strip() for k, v in fields if k == 'Version')
    reqs = [v.strip() for k, v in fields if k == 'Requires-Dist']
    return name, version, reqs


def wheel_tag(fname):
    """'py3-none-any' from 'name-1.0-py3-none-any.whl'."""
    parts = fname[:-len('.whl')].split('-')
    return '-'.join(parts[-3:])


def requirement_applies(req):
    """(requirement name, applies?) for CPython 3.12 on Linux; a requirement
    under an ``extra`` never applies."""
    body, _, marker = req.partition(';')
    name = re.match(r'\s*([A-Za-z0-9][A-Za-z0-9._-]*)', body).group(1)
    marker = marker.strip()
    if not marker:
        return name, True
    if 'extra' in marker:
        return name, False
    try:
        from packaging.markers import Marker
        return name, Marker(marker).evaluate(TARGET_ENV)
    except ImportError:  # keep it: a missing requirement is the safe error
        return name, True


def wheels(wdir):
    return sorted(f for f in os.listdir(wdir) if f.endswith('.whl'))


def closure(wdir, machine=None):
    """Problems (list of str) of the wheelhouse in ``wdir``; [] = complete."""
    machine = gpu_packages() if machine is None else machine
    have, problems, reqs = {}, [], []
    for f in wheels(wdir):
        name, version, rq = wheel_meta(osp.join(wdir, f))
        if norm(name) in have:
            problems.append(f'two versions of {name}: {have[norm(name)]} '
                            f'and {version}')
        have[norm(name)] = version
        if not wheel_tag(f).endswith('-none-any'):
            problems.append(f'{f}: not a pure-Python wheel')
        reqs += [(name, r) for r in rq]
    provided = set(have) | ({'mmcv'} if 'mmcv-lite' in have else set())
    for owner, r in reqs:
        dep, applies = requirement_applies(r)
        d = norm(dep)
        if not applies or d in provided or d in machine:
            continue
        if d in NOT_CARRIED:
            continue
        problems.append(f'{owner} needs {r!r}: neither in the wheelhouse nor '
                        'on the GPU machine')
    return problems


def sha256(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(wdir):
    rows = []
    for f in wheels(wdir):
        name, version, _ = wheel_meta(osp.join(wdir, f))
        p = osp.join(wdir, f)
        rows.append((name, version, wheel_tag(f), os.path.getsize(p),
                     sha256(p), f))
    total = sum(r[3] for r in rows)
    lines = ['# GPU wheelhouse (tools/gpu/prepare_wheelhouse.sh): name, '
             'version, tag, bytes, sha256, file',
             f'# {len(rows)} wheels, {total} bytes ({total / 2**20:.2f} MiB)']
    lines += ['\t'.join(str(x) for x in r) for r in rows]
    lines += [f'# not carried: {k}: {v}' for k, v in NOT_CARRIED.items()]
    with open(osp.join(wdir, MANIFEST), 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return rows, total


def read_manifest(wdir):
    out = {}
    with open(osp.join(wdir, MANIFEST)) as f:
        for ln in f:
            if ln.startswith('#') or not ln.strip():
                continue
            name, version, tag, size, digest, fname = ln.rstrip('\n').split(
                '\t')
            out[fname] = dict(name=name, version=version, tag=tag,
                              size=int(size), sha256=digest)
    return out


def verify(wdir):
    """Problems (list of str): the wheels and MANIFEST.txt disagree."""
    man = read_manifest(wdir)
    problems = []
    files = set(wheels(wdir))
    for f in sorted(files - set(man)):
        problems.append(f'{f}: not in {MANIFEST}')
    for f, m in sorted(man.items()):
        if f not in files:
            problems.append(f'{f}: in {MANIFEST} but missing')
        elif sha256(osp.join(wdir, f)) != m['sha256']:
            problems.append(f'{f}: sha256 differs from {MANIFEST}')
    return problems


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2 or argv[0] not in ('closure', 'manifest', 'verify'):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, wdir = argv
    if cmd == 'manifest':
        rows, total = write_manifest(wdir)
        for r in rows:
            print(f'  {r[0]:22s} {r[1]:10s} {r[2]:18s} {r[3] / 1024:8.1f} KiB')
        print(f'  {len(rows)} wheels, {total / 2**20:.2f} MiB')
        return 0
    problems = closure(wdir) if cmd == 'closure' else verify(wdir)
    for p in problems:
        print(f'{cmd}: {p}', file=sys.stderr)
    if not problems:
        print(f'{cmd}: ok ({len(wheels(wdir))} wheels)')
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
