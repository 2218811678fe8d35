"""Convert a classic CIFAR ResNet checkpoint to an mmpretrain checkpoint.

The input is a checkpoint of akamaster's ``pytorch_resnet_cifar10``
(``{'best_prec1', 'state_dict'}``, keys ``module.conv1.weight``, ...,
``module.linear.weight``). The output is
``{'state_dict': {'backbone.conv1.weight', ..., 'head.fc.weight', ...},
'meta': {...}}``, which loads strictly into the ``ImageClassifier`` of
``configs/_base_/models/cifar_resnet{20,56}.py`` (``load_from=DST`` or
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``
for the backbone alone).

Usage::

    python tools/model_converters/cifar_resnet_to_mmpretrain.py \
        ../shared/data/cifar10_resnets/resnet56-4bfd9763.th \
        work_dirs/resnet56_mmpretrain.pth

Converting is optional: ``mmengine.runner.load_checkpoint`` reads the raw file
with ``revise_keys=[(r'^module\\.linear\\.', 'head.fc.'),
(r'^module\\.', 'backbone.')]``.
"""
import argparse
import os.path as osp
import sys

# allow running from a source checkout without installing the package
_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from kdep_mm.models.backbones.cifar_resnet import \
    convert_cifar_resnet_checkpoint  # noqa: E402
from kdep_mm.utils.checkpoint import atomic_save, safe_torch_load  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert an akamaster CIFAR ResNet checkpoint to an '
        'mmpretrain ImageClassifier checkpoint.')
    parser.add_argument('src', help='source checkpoint (resnetXX-*.th)')
    parser.add_argument('dst', help='output path (.pth)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    checkpoint = safe_torch_load(args.src, map_location='cpu')
    converted = convert_cifar_resnet_checkpoint(
        checkpoint, source=osp.basename(args.src))
    atomic_save(converted, args.dst)
    meta = converted['meta']
    print(f'{args.src} -> {args.dst}: {meta["arch"]}, '
          f'{len(converted["state_dict"])} tensors'
          + (f', best_prec1={meta["best_prec1"]:.2f}'
             if 'best_prec1' in meta else ''))


if __name__ == '__main__':
    main()
