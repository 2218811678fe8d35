"""Access to the real data in ``../shared/data`` for benchmarks and tests.

The archives are never copied into the repository: they are unpacked once
into a git-ignored cache (``<repo>/data/shared`` by default) and reused.
Set ``KDEP_SHARED_DATA`` to point at another ``shared/data`` folder and
``KDEP_DATA_CACHE`` to unpack elsewhere. From a shell (prints the folder)::

    python benchmarks/shared_data.py cifar10_jpeg.tar.gz

The study imports it from here (``benchmarks/`` is on its ``sys.path``), and
so do the tests (``tests/conftest.py`` puts ``benchmarks/`` there).
"""
import argparse
import fcntl
import os
import os.path as osp
import shutil
import tarfile

_REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

# archive -> top-level folder it unpacks to
ARCHIVES = {
    'cifar10_jpeg.tar.gz': 'cifar10_jpeg',
    'hymenoptera.tar': 'hymenoptera_data',
    'tiny_coco.tar': 'tiny_coco',
    'bccd_voc.tar': 'BCCD',
    'camvid_jpeg.tar.gz': 'CamVid',
}


def shared_data_root() -> str:
    """The ``shared/data`` folder beside the repository (or $KDEP_SHARED_DATA)."""
    return os.environ.get('KDEP_SHARED_DATA',
                          osp.join(osp.dirname(_REPO), 'shared', 'data'))


def _cache_root() -> str:
    return os.environ.get('KDEP_DATA_CACHE', osp.join(_REPO, 'data', 'shared'))


def unpack_shared(archive: str) -> str:
    """Unpack ``archive`` from shared/data once and return the folder it holds.

    Safe against concurrent callers (a file lock) and against a run killed
    mid-unpack (the folder is unpacked under a temporary name and renamed).

    Args:
        archive (str): a file name listed in :data:`ARCHIVES`, or a folder
            name inside shared/data (returned as is, e.g. 'cifar10_resnets').

    Returns:
        str: the unpacked folder, e.g. ``<cache>/tiny_coco``.
    """
    src_root = shared_data_root()
    if archive not in ARCHIVES:
        path = osp.join(src_root, archive)
        if not osp.exists(path):
            raise FileNotFoundError(f'{path} not found (is ../shared beside '
                                    'the repository, or KDEP_SHARED_DATA set?)')
        return path
    src = osp.join(src_root, archive)
    if not osp.isfile(src):
        raise FileNotFoundError(f'{src} not found (is ../shared beside the '
                                'repository, or KDEP_SHARED_DATA set?)')
    cache = _cache_root()
    dst = osp.join(cache, ARCHIVES[archive])
    done = dst + '.complete'
    if osp.exists(done):
        return dst
    os.makedirs(cache, exist_ok=True)
    with open(osp.join(cache, '.lock'), 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if osp.exists(done):
            return dst
        tmp = dst + '.partial'
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(tmp)
        with tarfile.open(src) as tar:
            tar.extractall(tmp, filter='data')
        os.replace(osp.join(tmp, ARCHIVES[archive]), dst)
        shutil.rmtree(tmp, ignore_errors=True)
        open(done, 'w').close()
    return dst


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(
        description='Unpack an archive of ../shared/data once (into '
        '$KDEP_DATA_CACHE, default <repo>/data/shared) and print its folder.')
    parser.add_argument('archive', choices=sorted(ARCHIVES),
                        help='an archive of shared/data')
    print(unpack_shared(parser.parse_args(argv).archive))


if __name__ == '__main__':
    main()
