"""Convert the KDEP authors' released students to mmpretrain checkpoints.

The released students of CVMI-Lab/KDEP (ResNet-18 and MobileNet-V2 distilled
from MS-R50, built on microsoft/robust-models-transfer) are saved by the
``robustness`` library: ``{'model': state_dict, ...}`` with the student under
``module.model.model.`` and a copy under ``module.attacker.model.model.``,
the input normalisers (``module.normalizer.*``,
``module.attacker.normalize.*``) and, for some students, distillation-only
``emb`` / ``l2norm`` layers (dropped by the authors' own
``transform_ckpt_custom2{seg,det}.py`` too). The architectures:

* ResNet-18 (``src/resnet.py``, ``deep_base=False``): torchvision names,
  which are mmpretrain ``ResNet``'s too (``conv1``, ``bn1``,
  ``layerN.M.{conv,bn}{1,2}``, ``downsample.{0,1}``; ``fc`` the head);
* MobileNet-V2 (``src/mobilenet.py``, tonylins' layout): ``features.0.{0,1}``
  stem, ``features.1..17.conv.{0,1,3,4[,6,7]}`` blocks, ``conv.{0,1}``
  last 1x1, ``classifier`` -> mmpretrain ``MobileNetV2`` (``conv1``,
  ``layer1..7``, ``conv2``; ``head.fc``).

Output: ``{'state_dict': {'backbone.*'[, 'head.fc.*']}, 'meta'}``, which
``init_cfg=dict(type='Pretrained', checkpoint=DST, prefix='backbone.')``
loads with zero missing and unexpected keys into ``mmpretrain.ResNet``
(depth 18) / ``mmpretrain.MobileNetV2`` (widen_factor 1.0); ``--keep-head``
also keeps the 1000-class head (``ImageClassifier`` with ``LinearClsHead``)::

    python tools/model_converters/kdep_official_to_mmpretrain.py \
        checkpoint.pt.latest work_dirs/kdep_official_r18.pth [--trust-pickle]
"""
import re
from typing import Dict, Tuple

from _ckpt import run_converter

PREFIXES = ('module.model.model.', 'module.attacker.model.model.')
DROP = re.compile(r'(^|\.)(emb|l2norm)(\.|$)|normaliz')
# blocks per mmpretrain MobileNetV2 layer (t, c, n, s table of the paper)
MBV2_LAYERS = (1, 2, 3, 4, 3, 3, 1)


def strip_robustness(state: Dict) -> Dict:
    """The student's own keys (``module.model.model.*``; the attacker copy
    only where the first is absent); normalisers and emb/l2norm dropped."""
    out, seen_prefix = {}, False
    for prefix in PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state.items()
               if k.startswith(prefix)}
        if sub:
            seen_prefix = True
            for k, v in sub.items():
                out.setdefault(k, v)
            break
    if not seen_prefix:  # already bare (or only 'module.')
        out = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    return {k: v for k, v in out.items() if not DROP.search(k)}


def detect_arch(keys) -> str:
    keys = set(keys)
    if 'features.0.0.weight' in keys and 'conv.0.weight' in keys:
        return 'mobilenetv2'
    if 'layer1.0.conv1.weight' in keys and 'conv1.weight' in keys:
        return 'resnet'
    raise SystemExit('not a KDEP ResNet or MobileNet-V2 student: first keys '
                     f'{sorted(keys)[:8]}')


def _mbv2_block(index: int) -> Tuple[int, int]:
    """features.<index> (1..17) -> (layer 1..7, block in layer)."""
    i = index - 1
    for layer, n in enumerate(MBV2_LAYERS, start=1):
        if i < n:
            return layer, i
        i -= n
    raise KeyError(index)


def mobilenetv2_key(k: str) -> str:
    m = re.match(r'^features\.0\.([01])\.(.+)$', k)
    if m:
        return f'conv1.{("conv", "bn")[int(m[1])]}.{m[2]}'
    m = re.match(r'^features\.(\d+)\.conv\.(\d)\.(.+)$', k)
    if m:
        layer, block = _mbv2_block(int(m[1]))
        pos = int(m[2])
        # expand ratio 1 (features.1): dw 0/1, pw-linear 3/4;
        # otherwise pw 0/1, dw 3/4, pw-linear 6/7
        unit, part = pos // 3, ('conv', 'bn')[pos % 3]
        if pos % 3 == 2:
            raise KeyError(k)  # ReLU6 has no parameters
        return f'layer{layer}.{block}.conv.{unit}.{part}.{m[3]}'
    m = re.match(r'^conv\.([01])\.(.+)$', k)
    if m:
        return f'conv2.{("conv", "bn")[int(m[1])]}.{m[2]}'
    raise KeyError(k)


def convert(state: Dict, keep_head: bool = False) -> Tuple[Dict, str]:
    """Official state dict -> (mmpretrain state dict, arch)."""
    student = strip_robustness(state)
    arch = detect_arch(student)
    head = 'fc.' if arch == 'resnet' else 'classifier.'
    out = {}
    for k, v in student.items():
        if k.startswith(head):
            if keep_head:
                out['head.fc.' + k[len(head):]] = v
            continue
        new = k if arch == 'resnet' else mobilenetv2_key(k)
        out['backbone.' + new] = v
    return out, arch


def main(argv=None):
    args, state, arch = run_converter(
        argv, __doc__, 'keep the ImageNet head as head.fc.*', convert,
        'kdep_official_to_mmpretrain', 'arch')
    print(f'{args.src} -> {args.dst}: {arch}, {len(state)} tensors')


if __name__ == '__main__':
    main()
