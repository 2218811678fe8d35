"""A stand-in for the GPU machine's site-packages, built from a local venv.

Links into DEST every top-level module (and its ``*.dist-info``) of the
distributions in SRC (a site-packages folder) whose names the GPU machine's
package list holds (``tools/gpu/gpu_machine_packages.txt``), and nothing
else: mmengine, mmcv, addict, yapf, ... stay out, so an import that the
wheelhouse fails to provide fails here as it would there. ``--also NAME``
links one more distribution (a binary wheel of the wheelhouse built for
another Python, stood in for by the local copy of the same version).

    python tools/gpu/simulate_site.py SRC DEST [--also pycocotools ...]
"""
import argparse
import csv
import os
import os.path as osp
import sys

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, HERE)
from wheelhouse import gpu_packages, norm  # noqa: E402

# the GPU machine has opencv-python-headless: the same cv2 module
ALIASES = {'opencv-python': 'opencv-python-headless'}


def distributions(site):
    """{normalised name: (version, dist-info dir, [top-level entries])}."""
    out = {}
    for d in sorted(os.listdir(site)):
        if not d.endswith('.dist-info'):
            continue
        meta = {}
        with open(osp.join(site, d, 'METADATA'), errors='replace') as f:
            for ln in f:
                if not ln.strip():
                    break
                k, _, v = ln.partition(':')
                meta.setdefault(k.strip(), v.strip())
        tops = set()
        rec = osp.join(site, d, 'RECORD')
        if osp.isfile(rec):
            with open(rec, newline='') as f:
                for row in csv.reader(f):
                    p = row[0]
                    if not p or p.startswith('..') or p.startswith('/'):
                        continue
                    top = p.split('/')[0]
                    if top.endswith('.dist-info') or top == '__pycache__':
                        continue
                    tops.add(top)
        out[norm(meta.get('Name', d))] = (meta.get('Version'), d,
                                          sorted(tops))
    return out


def build(src, dest, also=()):
    src, dest = osp.abspath(src), osp.abspath(dest)
    want = gpu_packages() | {norm(a) for a in also}
    os.makedirs(dest, exist_ok=True)
    linked = []
    for name, (ver, dinfo, tops) in distributions(src).items():
        if ALIASES.get(name, name) not in want and name not in want:
            continue
        for entry in [dinfo] + tops:
            s, t = osp.join(src, entry), osp.join(dest, entry)
            if osp.exists(s) and not osp.lexists(t):
                os.symlink(s, t)
        linked.append(f'{name}=={ver}')
    return linked


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('src')
    p.add_argument('dest')
    p.add_argument('--also', action='append', default=[])
    a = p.parse_args()
    for ln in build(a.src, a.dest, a.also):
        print(ln)


if __name__ == '__main__':
    main()
