# Copyright (c) kdep_mm contributors.
"""Draw an image's stored views (crop boxes and flips) from a teacher store.

Reads only the store's public reader API (``kdep_mm.TeacherStore(root)``,
``len(store)``, ``store.views(index)`` -> normalised boxes and flips) and
the image of sample ``index`` of the config's ``<split>_dataloader.dataset``
(the dataset the store was cached from, e.g. with ``tools/cache_teacher.py
CONFIG --store DIR``). The figure shows the image with every stored box
(dashed when the view is flipped) and, beside it, each view's crop of the
original image (mirrored for a flipped view; pixel-rounded, before the resize
to the store's crop size). Writes a PNG and prints where::

    python tools/analysis_tools/store_browser.py CONFIG STORE --index 3
"""
import argparse
import os.path as osp

import numpy as np
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import kdep_mm  # noqa: F401

from _common import matplotlib_pyplot, save_figure


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config the store was cached from')
    parser.add_argument('store', help='teacher store directory')
    parser.add_argument('--index', type=int, nargs='+', default=[0],
                        help='sample indices (one figure row each)')
    parser.add_argument('--split', default='train',
                        help='use <split>_dataloader.dataset (default train)')
    parser.add_argument('--out', help='PNG to write')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def pixel_box(box, width, height):
    """Normalised (x0, y0, x1, y1) -> integer pixel box of the image."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (int(round(x0 * width)), int(round(y0 * height)),
            int(round(x1 * width)), int(round(y1 * height)))


def main(argv=None):
    args = parse_args(argv)
    from mmengine.registry import DATASETS

    from kdep_mm.datasets.store import TeacherStore
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    key = f'{args.split}_dataloader'
    if cfg.get(key) is None:
        raise SystemExit(f'{args.config} has no {key}')
    ds_cfg = cfg[key].dataset.copy()
    ds_cfg.pipeline = []
    dataset = DATASETS.build(ds_cfg)
    store = TeacherStore(args.store)
    if len(store) != len(dataset):
        raise SystemExit(f'{args.store} holds {len(store)} samples but '
                         f'{key}.dataset has {len(dataset)}: not the dataset '
                         'the store was cached from')
    import mmcv

    rows = []
    for index in args.index:
        if not 0 <= index < len(store):
            raise SystemExit(f'--index {index} is outside [0, {len(store)})')
        path = dataset.get_data_info(index)['img_path']
        img = mmcv.imread(path, channel_order='rgb')
        boxes, flips = store.views(index)
        rows.append((index, path, img, np.asarray(boxes), np.asarray(flips)))

    plt = matplotlib_pyplot()
    num_views = max(len(r[3]) for r in rows)
    fig, axes = plt.subplots(len(rows), num_views + 1,
                             figsize=(2.4 * (num_views + 1), 2.6 * len(rows)),
                             squeeze=False)
    colours = plt.rcParams['axes.prop_cycle'].by_key()['color']
    for r, (index, path, img, boxes, flips) in enumerate(rows):
        h, w = img.shape[:2]
        ax = axes[r][0]
        ax.imshow(img)
        ax.set_title(f'#{index} {osp.basename(path)} ({w}x{h})', fontsize=8)
        for v, (box, flip) in enumerate(zip(boxes, flips)):
            x0, y0, x1, y1 = pixel_box(box, w, h)
            c = colours[v % len(colours)]
            ax.add_patch(plt.Rectangle((x0 - .5, y0 - .5), x1 - x0, y1 - y0,
                                       fill=False, ec=c, lw=1.5,
                                       ls='--' if flip else '-'))
            ax.text(x0, y0, f'v{v}{" F" if flip else ""}', color=c,
                    fontsize=7, va='bottom')
            crop = img[y0:max(y1, y0 + 1), x0:max(x1, x0 + 1)]
            if flip:
                crop = crop[:, ::-1]
            cax = axes[r][v + 1]
            cax.imshow(crop)
            cax.set_title(f'v{v}: ({box[0]:.2f},{box[1]:.2f})-'
                          f'({box[2]:.2f},{box[3]:.2f})'
                          f'{" flipped" if flip else ""}', fontsize=7,
                          color=c)
        for v in range(len(boxes) + 1, num_views + 1):
            axes[r][v].set_visible(False)
        for a in axes[r]:
            a.set_xticks([])
            a.set_yticks([])
        print(f'sample {index} ({path}): ' + '; '.join(
            f'v{v} box {tuple(round(float(b), 4) for b in box)}'
            f'{" flip" if flip else ""}'
            for v, (box, flip) in enumerate(zip(boxes, flips))))
    stem = osp.basename(osp.normpath(args.store))
    save_figure(fig, args.out or osp.join('work_dirs', 'analysis',
                                          f'{stem}_views.png'))


if __name__ == '__main__':
    main()
