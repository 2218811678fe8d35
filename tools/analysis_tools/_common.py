"""Shared by the analysis tools: load a config, build its model and a
dataloader, collect features. Not a tool itself."""
import os
import os.path as osp
import sys
from typing import Callable, Dict, List, Optional

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope

import kdep_mm  # noqa: F401  (registries, checkpoint allow-list)


def add_common_args(parser, split_default='train', samples_default=512):
    parser.add_argument('config', help='config file (its model and data)')
    parser.add_argument(
        '--split', default=split_default,
        help='use <split>_dataloader (train, val or test); default '
        f'{split_default}')
    parser.add_argument('--num-samples', type=int, default=samples_default,
                        help=f'images to use (default {samples_default})')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value')


def load_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    return cfg


def build_loader(cfg: Config, split: str, batch_size: int):
    """``<split>_dataloader`` of the config, without workers, not shuffled
    (the first ``--num-samples`` images in dataset order)."""
    from mmengine.runner import Runner
    key = f'{split}_dataloader'
    if cfg.get(key) is None:
        raise SystemExit(f'{args_config(cfg)} has no {key}; choose --split')
    dl = cfg[key].copy()
    dl.update(batch_size=batch_size, num_workers=0, persistent_workers=False)
    dl.sampler = dict(type='DefaultSampler', shuffle=False)
    return Runner.build_dataloader(dl)


def args_config(cfg) -> str:
    return getattr(cfg, 'filename', None) or 'the config'


def build_model(cfg: Config, device: str):
    from mmengine.registry import MODELS
    model = MODELS.build(cfg.model)
    return model.to(device).eval()


def load_distiller(args):
    """The config (``--cfg-options`` applied, ``model.teacher_ckpt`` set
    from ``--teacher-ckpt`` when given) and its model, in eval mode on
    ``--device``."""
    cfg = load_cfg(args)
    if args.teacher_ckpt:
        cfg.model.teacher_ckpt = args.teacher_ckpt
    return cfg, build_model(cfg, args.device)


@torch.no_grad()
def collect(loader, model, fn: Callable, num_samples: int,
            device: str) -> Dict[str, torch.Tensor]:
    """Run ``fn(inputs) -> {name: (N, ...) tensor}`` over the first
    ``num_samples`` images; concatenated on CPU in float64."""
    out: Dict[str, List[torch.Tensor]] = {}
    seen = 0
    for batch in loader:
        data = model.data_preprocessor(batch, False)
        inputs = data['inputs'].to(device)
        take = min(inputs.shape[0], num_samples - seen)
        for name, t in fn(inputs[:take]).items():
            out.setdefault(name, []).append(t.detach().double().cpu())
        seen += take
        if seen >= num_samples:
            break
    if not out:
        raise SystemExit('the dataloader yielded no images')
    return {k: torch.cat(v) for k, v in out.items()}


def default_out(args, suffix: str) -> str:
    stem = osp.splitext(osp.basename(args.config))[0]
    return osp.join('work_dirs', 'analysis', f'{stem}_{suffix}.png')


def save_figure(fig, out: str) -> str:
    out = osp.abspath(out)
    os.makedirs(osp.dirname(out), exist_ok=True)
    fig.savefig(out, dpi=120, bbox_inches='tight')
    print(f'saved {out}', file=sys.stdout, flush=True)
    return out


def matplotlib_pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def strip_prefix(state: dict, prefixes=('backbone.', 'student.')) -> dict:
    """Bare backbone keys of an export (``backbone.*``) or a distillation
    checkpoint (``student.*``)."""
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()
                    if k.startswith(prefix)}
    return state


def stage_names(backbone) -> Optional[List[str]]:
    """The backbone's stages: ``res_layers`` (mmpretrain ResNet and
    kdep_mm.CIFARResNet) or the children of ``layers`` / ``stages``."""
    names = getattr(backbone, 'res_layers', None)
    if names:
        return list(names)
    for attr in ('layers', 'stages'):
        seq = getattr(backbone, attr, None)
        if isinstance(seq, torch.nn.Sequential | torch.nn.ModuleList):
            return [f'{attr}.{i}' for i in range(len(seq))]
    return None
