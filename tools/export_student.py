"""Export the student of a distillation checkpoint.

Examples::

    # the student backbone (every algorithm), for downstream fine-tuning
    python tools/export_student.py \\
        work_dirs/kdep_r18/epoch_100.pth work_dirs/kdep_r18/student_backbone.pth
    # FlexibleRunner + DeepSpeed: a checkpoint directory (or the work
    # directory, whose last_checkpoint names it); FSDP: its full-state-dict
    # .pth like any other (docs/scaling.md)
    python tools/export_student.py \\
        work_dirs/kdep_r18_ds/iter_1000.pth/ work_dirs/kdep_r18_ds/backbone.pth
    # the whole student as an mmpretrain ImageClassifier (TCS: the folded
    # linear head; the ensemble: the multi-token ViT and its heads)
    python tools/export_student.py --as classifier \\
        work_dirs/tcs_r20/epoch_100.pth work_dirs/tcs_r20/classifier.pth

A backbone loads in mmpretrain / mmdet / mmseg configs with
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``
(see ``configs/downstream``); a classifier with ``load_from=DST`` (or
``tools/test.py CONFIG DST``) in a config whose model is the matching
``mmpretrain.ImageClassifier``.
"""
import argparse
import os.path as osp
import sys

try:
    import kdep_mm  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from kdep_mm import register_all_modules  # noqa: E402
from kdep_mm.apis.export import (ExportError, export_classifier,  # noqa: E402
                                 export_student)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export the student of a distillation checkpoint: its '
        'backbone as a downstream pre-trained checkpoint, or (TCS, ensemble) '
        'the whole student as an mmpretrain ImageClassifier checkpoint.')
    parser.add_argument(
        'src', help='distillation checkpoint: a .pth file (Runner, DDP, '
        'FSDP full state dict) or a DeepSpeed checkpoint directory')
    parser.add_argument(
        '--as', dest='kind', choices=['backbone', 'classifier'],
        default='backbone',
        help="what to export: the student backbone (any algorithm) or the "
        "whole student as an mmpretrain ImageClassifier (TCS, ensemble) "
        '(default: %(default)s)')
    parser.add_argument(
        '--config', default=None,
        help='with --as classifier: the training config, when the '
        'checkpoint does not record it (meta["cfg"])')
    parser.add_argument('dst', help='output file, e.g. '
                        'work_dirs/<exp>/student_backbone.pth')
    parser.add_argument(
        '--student-prefix',
        default='student.',
        help='prefix of the student backbone in the source state dict '
        '(default: %(default)s)')
    parser.add_argument(
        '--out-prefix',
        default='backbone.',
        help="prefix of the exported keys; '' for bare backbone keys "
        '(default: %(default)s)')
    parser.add_argument(
        '--exclude',
        nargs='*',
        default=None,
        metavar='REGEX',
        help='drop student keys matching these regexes (default: the '
        "student class's export_exclude_keys, e.g. MultiTokenViT's teacher "
        'tokens; pass --exclude with no value to keep every key)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.kind == 'classifier':
        register_all_modules(init_default_scope=False)
        try:
            info = export_classifier(args.src, args.dst, config=args.config)
        except (FileNotFoundError, ExportError) as e:
            print(f'error: {e}', file=sys.stderr)
            return 1
        print(f'wrote {info["dst"]} (mmpretrain ImageClassifier, '
              f'{info["algorithm"]})')
        print(f'  tensors:  {info["num_tensors"]}')
        print(f'  sha256:   {info["sha256"]}')
        print(f'  source:   {info["source"]}')
        return 0
    if args.config is not None:
        print('error: --config applies to --as classifier only',
              file=sys.stderr)
        return 1
    try:
        info = export_student(
            args.src,
            args.dst,
            student_prefix=args.student_prefix,
            out_prefix=args.out_prefix,
            exclude=args.exclude)
    except (FileNotFoundError, ExportError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    cfg = info['student_cfg']
    print(f'wrote {info["dst"]}')
    print(f'  tensors:  {info["num_tensors"]}')
    print(f'  params:   {info["num_params"]:,} '
          '(learnable; batch-norm statistics excluded)')
    print(f'  sha256:   {info["sha256"]}')
    print(f'  source:   {info["source"]} (sha256 {info["source_sha256"]})')
    if info['dropped_keys']:
        print(f'  dropped:  {info["dropped_keys"]} (training-only keys of '
              'the student; --exclude to change)')
    print('  student:  ' +
          (f"type={cfg.get('type')!r}" if cfg else 'config not recorded'))
    return 0


if __name__ == '__main__':
    sys.exit(main())
