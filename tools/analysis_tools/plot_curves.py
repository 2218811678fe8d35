# Copyright (c) kdep_mm contributors.
"""Loss and metric curves of runs, from their json logs.

Reads mmengine's json scalar log (``<work_dir>/<timestamp>/vis_data/
<timestamp>.json``; give the file or the work dir, whose newest run is
used) with mmpretrain's ``load_json_log`` and draws one panel per key:
training keys against iterations (epochs for epoch-based runs, as
mmpretrain's ``analyze_logs.py`` does), validation metrics against the
validation step. Default keys: every ``loss*`` key of training and every
validation metric. Several runs are overlaid. Writes a PNG and prints
where::

    python tools/analysis_tools/plot_curves.py work_dirs/r56_to_r20 \
        [work_dirs/other_run] [--keys loss_kd explained_variance]

mmpretrain's own tool also reads these logs (one axis for all keys)::

    MMPRE=$(python -c "import mmpretrain, os; print(os.path.dirname(mmpretrain.__file__))")
    python $MMPRE/.mim/tools/analysis_tools/analyze_logs.py plot_curve RUN.json \
        --keys loss --out loss.png
"""
import argparse
import glob
import os.path as osp

from mmpretrain.utils import load_json_log

from _common import matplotlib_pyplot, save_figure

NOT_METRICS = {'step', 'epoch', 'iter', 'time', 'data_time', 'lr', 'memory'}


def find_json_log(path: str) -> str:
    if osp.isfile(path):
        return path
    runs = sorted(glob.glob(osp.join(path, '*', 'vis_data', '*.json')))
    runs = [r for r in runs if osp.basename(r) != 'scalars.json']
    if not runs:
        raise SystemExit(f'no json log under {path}/*/vis_data/')
    return runs[-1]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('runs', nargs='+', help='json logs or work dirs')
    parser.add_argument('--keys', nargs='+', help='keys to plot')
    parser.add_argument('--legend', nargs='+', help='one label per run')
    parser.add_argument('--out', help='PNG to write (default: '
                        'work_dirs/analysis/<first run>_curves.png)')
    return parser.parse_args(argv)


def default_keys(logs):
    keys = []
    for log in logs:
        train = log['train'][0] if log['train'] else {}
        val = set().union(*(set(v) for v in log['val'])) if log['val'] else ()
        keys += [k for k in train if k.startswith('loss')]
        keys += sorted(k for k in val if k not in NOT_METRICS)
    return list(dict.fromkeys(keys))


def series(log, key):
    """(xs, ys, x label) of ``key`` in a run, or None when absent."""
    train = [r for r in log['train'] if key in r]
    if train:
        xs = [r['step'] for r in train]
        last = log['train'][-1]
        if 'epoch' in last and last.get('epoch'):
            scale = last['step'] / last['epoch']
            return [x / scale for x in xs], [r[key] for r in train], 'epoch'
        return xs, [r[key] for r in train], 'iteration'
    val = [r for r in log['val'] if key in r]
    if val:
        return [r['step'] for r in val], [r[key] for r in val], 'val step'
    return None


def main(argv=None):
    args = parse_args(argv)
    paths = [find_json_log(p) for p in args.runs]
    logs = [load_json_log(p) for p in paths]
    keys = args.keys or default_keys(logs)
    if not keys:
        raise SystemExit('no loss or metric keys in ' + ', '.join(paths))
    labels = args.legend or [
        osp.basename(osp.dirname(osp.dirname(osp.dirname(p)))) or p
        for p in paths
    ]
    if len(labels) != len(paths):
        raise SystemExit('--legend needs one label per run')
    plt = matplotlib_pyplot()
    cols = min(3, len(keys))
    rows = (len(keys) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows),
                             squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[i // cols][i % cols]
        found = False
        for log, label, path in zip(logs, labels, paths):
            s = series(log, key)
            if s is None:
                continue
            found = True
            xs, ys, xlabel = s
            ax.plot(xs, ys, '.-' if len(xs) < 30 else '-', lw=1,
                    label=label)
            ax.set_xlabel(xlabel)
            print(f'{label}: {key}: {len(xs)} points, last {ys[-1]:.6g}')
        if not found:
            raise SystemExit(f'key {key!r} is in none of ' + ', '.join(paths))
        ax.set_title(key, fontsize=9)
        if len(paths) > 1:
            ax.legend(fontsize=7)
    for j in range(len(keys), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    fig.tight_layout()
    out = args.out or osp.join('work_dirs', 'analysis',
                               f'{labels[0]}_curves.png')
    save_figure(fig, out)


if __name__ == '__main__':
    main()
