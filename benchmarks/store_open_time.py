"""Time to open and verify a teacher store (issue 16, item 9).

Writes a store of about ``--gib`` GiB (one 2048-d float32 feature per
sample, ImageNet's 1,024 images per shard; 1 GiB = 131,072 samples in 128
shards), then times ``TeacherStore(root)`` (``verify=True``, the default):

* **first open, cold**: no verified markers, the store's pages evicted from
  the page cache (``posix_fadvise(DONTNEED)`` on each file, no root
  needed): every shard is read from disk, hashed, and a verified marker is
  written;
* **first open, warm**: the markers removed again, the data in the page
  cache (the cost of hashing alone);
* **later opens**: markers in place: a stat of each file and two small JSON
  reads per shard, nothing hashed (median of ``--repeats``);
* for reference ``verify=False`` (done-markers and sizes only);
* the cost of one random ``get(index, view)`` (``os.pread`` through the
  capped descriptor cache; median over 5,000 reads, data in the page
  cache), with the default ``max_open_files`` and with no cap.

With ``--imagenet-shards`` (default on) it also writes a store with
ImageNet-1K's shard count (1,281,167 samples in 1,252 shards, a tiny field,
so ~25 MB) and times its first (warm) and later opens: the later-open cost
grows with the number of shards, not with the bytes.

Usage::

    python benchmarks/store_open_time.py [--dir DIR] [--gib 1.0]
        [--repeats 5] [--no-imagenet-shards] [--json OUT]

``--dir`` defaults to a temporary directory (removed at the end); the store
needs ``--gib`` GiB of free disk.
"""
import argparse
import json
import os
import os.path as osp
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from kdep_mm.datasets.store import (SHARD_DIR,  # noqa: E402
                                    TeacherStore, TeacherStoreWriter,
                                    build_manifest)

FEAT = 2048  # ResNet-50's pooled feature, float32: 8 KiB per sample


def write_store(root: str, num_samples: int, shape, dtype,
                shard_size: int = 1024) -> float:
    """Write a store of random values; returns the seconds taken."""
    t0 = time.perf_counter()
    manifest = build_manifest('0' * 64, dict(length=num_samples),
                              out_size=[224, 224])
    writer = TeacherStoreWriter(root, manifest, num_samples, 1,
                                {'feat': (shape, dtype)},
                                shard_size=shard_size)
    rng = np.random.default_rng(0)
    block = rng.standard_normal((shard_size, 1, *shape)).astype(dtype)
    box = np.tile(np.float32([0, 0, 1, 1]), (shard_size, 1, 1))
    flips = np.zeros((shard_size, 1), np.uint8)

    def compute(start, stop):
        n = stop - start
        # distinct bytes per shard (the first value is the shard's start)
        feats = block[:n].copy()
        feats.reshape(n, -1)[:, 0] = start
        return {'feat': feats}, box[:n], flips[:n]

    writer.write_all(compute)
    return time.perf_counter() - t0


def store_files(root: str):
    shards = osp.join(root, SHARD_DIR)
    return [osp.join(shards, n) for n in sorted(os.listdir(shards))]


def store_bytes(root: str) -> int:
    return sum(osp.getsize(p) for p in store_files(root))


def evict(root: str) -> bool:
    """Drop the store's pages from the page cache (clean pages only; the
    writer fsync'ed them). False where posix_fadvise is missing."""
    if not hasattr(os, 'posix_fadvise'):
        return False
    for path in store_files(root) + [osp.join(root, 'manifest.json')]:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return True


def drop_markers(root: str) -> int:
    paths = [p for p in store_files(root) if p.endswith('.verified.json')]
    for p in paths:
        os.remove(p)
    return len(paths)


def timed_open(root: str, **kwargs) -> float:
    t0 = time.perf_counter()
    TeacherStore(root, **kwargs)
    return time.perf_counter() - t0


def measure(root: str, repeats: int, cold: bool) -> dict:
    out = {}
    if cold:
        out['evicted'] = evict(root)
        out['first_cold_s'] = timed_open(root)
        drop_markers(root)
    timed_open(root)  # bring the data into the page cache
    drop_markers(root)
    out['first_warm_s'] = timed_open(root)
    later = [timed_open(root) for _ in range(repeats)]
    out['later_s'] = later
    out['later_median_s'] = statistics.median(later)
    sizes = [timed_open(root, verify=False) for _ in range(repeats)]
    out['sizes_only_median_s'] = statistics.median(sizes)
    return out


def read_cost(root: str, reads: int = 5000, **kwargs) -> float:
    """Median seconds of one random ``get`` (after a warm-up pass)."""
    store = TeacherStore(root, **kwargs)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(store), reads)
    for i in idx[:500]:
        store.get(int(i), 0)
    times = []
    for i in idx:
        t0 = time.perf_counter()
        store.get(int(i), 0)
        times.append(time.perf_counter() - t0)
    store.close()
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--dir', default=None,
                        help='where to write the stores (default: a '
                        'temporary directory, removed at the end)')
    parser.add_argument('--gib', type=float, default=1.0)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--no-imagenet-shards', action='store_true')
    parser.add_argument('--json', default=None, help='write the results')
    args = parser.parse_args(argv)

    base = args.dir or tempfile.mkdtemp(prefix='store_open_time_')
    os.makedirs(base, exist_ok=True)
    results = dict(
        command='python benchmarks/store_open_time.py ' + ' '.join(
            argv if argv is not None else sys.argv[1:]),
        machine=dict(cpus=os.cpu_count(), python=platform.python_version(),
                     load_avg=list(os.getloadavg())))
    try:
        root = osp.join(base, 'store_1gib')
        n = int(round(args.gib * (1 << 30) / (FEAT * 4)))
        write_s = write_store(root, n, (FEAT, ), 'float32')
        size = store_bytes(root)
        print(f'wrote {n} samples, {-(-n // 1024)} shards, '
              f'{size / (1 << 30):.3f} GiB in {write_s:.1f} s', flush=True)
        res = measure(root, args.repeats, cold=True)
        res.update(num_samples=n, num_shards=-(-n // 1024), bytes=size,
                   write_s=write_s, get_s=read_cost(root),
                   get_uncapped_s=read_cost(root, max_open_files=1 << 20))
        results['store'] = res
        print(json.dumps(res, indent=1), flush=True)
        shutil.rmtree(root)
        if not args.no_imagenet_shards:
            root = osp.join(base, 'store_in1k_shards')
            n = 1281167
            write_s = write_store(root, n, (1, ), 'float16')
            res = measure(root, args.repeats, cold=False)
            res.update(num_samples=n, num_shards=-(-n // 1024),
                       bytes=store_bytes(root), write_s=write_s)
            results['imagenet_shards'] = res
            print(json.dumps(res, indent=1), flush=True)
            shutil.rmtree(root)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    results['machine']['load_avg_end'] = list(os.getloadavg())
    s = results['store']
    gib = s['bytes'] / (1 << 30)
    print(f'\n| store | first open, cold | first open, warm | later opens '
          f'(median of {args.repeats}) | verify=False |')
    print('|---|---:|---:|---:|---:|')
    print(f'| {gib:.2f} GiB, {s["num_shards"]} shards | '
          f'{s.get("first_cold_s", float("nan")):.2f} s | '
          f'{s["first_warm_s"]:.2f} s | {s["later_median_s"] * 1e3:.0f} ms | '
          f'{s["sizes_only_median_s"] * 1e3:.0f} ms |')
    if 'imagenet_shards' in results:
        s = results['imagenet_shards']
        print(f'| ImageNet shard count: {s["num_shards"]} shards, '
              f'{s["bytes"] / (1 << 20):.0f} MiB | - | '
              f'{s["first_warm_s"]:.2f} s | '
              f'{s["later_median_s"] * 1e3:.0f} ms | '
              f'{s["sizes_only_median_s"] * 1e3:.0f} ms |')
    s = results['store']
    print(f'\nrandom get() of the {gib:.2f} GiB store: '
          f'{s["get_s"] * 1e6:.0f} us (max_open_files=128), '
          f'{s["get_uncapped_s"] * 1e6:.0f} us (no cap)')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    main()
