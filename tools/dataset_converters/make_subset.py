"""Write a class-balanced subset of an ImageNet-style folder as an ann_file.

KDEP's ImageNet-1K 10% subset (128 images per class, seed 0):
    python tools/dataset_converters/make_subset.py data/imagenet/train \
        data/imagenet/meta/train_10pct.txt --per-class 128 --seed 0
Paths in the file are relative to the folder (use it as data_prefix).
"""
import argparse

from kdep_mm.datasets.subset import class_balanced_subset, write_ann_file


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', help='folder with one sub-folder per class')
    parser.add_argument('out', help='annotation file to write')
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument('--per-class', type=int, help='images per class')
    group.add_argument('--fraction', type=float,
                       help='fraction of each class, in (0, 1]')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args()


def main():
    args = parse_args()
    pairs = class_balanced_subset(args.root, args.per_class, args.fraction,
                                  args.seed)
    write_ann_file(pairs, args.out)
    n_cls = len({label for _, label in pairs})
    print(f'wrote {len(pairs)} images of {n_cls} classes to {args.out}')


if __name__ == '__main__':
    main()
