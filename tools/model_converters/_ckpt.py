"""Shared by the converters: read an official checkpoint, write ours."""
import argparse
import os.path as osp
import sys

_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if _REPO not in sys.path:  # run from a source checkout without installing
    sys.path.insert(0, _REPO)

import torch  # noqa: E402

from kdep_mm.utils.checkpoint import atomic_save, safe_torch_load  # noqa: E402,E501


def load_official(path: str, trust_pickle: bool = False) -> dict:
    """The state dict of an official checkpoint (its ``model`` or
    ``state_dict`` entry, or the file itself).

    Read with ``weights_only=True`` unless ``trust_pickle``: the official
    training scripts also pickle their argparse ``args`` (and optimizer,
    scaler), which only a full unpickling reads; use that for files you
    trust only.
    """
    if trust_pickle:
        ckpt = torch.load(path, map_location='cpu', weights_only=False)
    else:
        try:
            ckpt = safe_torch_load(path, map_location='cpu')
        except RuntimeError as e:
            raise SystemExit(
                f'{path} holds objects beyond tensors (e.g. the training '
                'args): rerun with --trust-pickle if you trust the file\n'
                f'({str(e)[:500]})') from e
    if isinstance(ckpt, dict):
        for key in ('model', 'state_dict'):
            if isinstance(ckpt.get(key), dict):
                return ckpt[key]
    if not isinstance(ckpt, dict):
        raise SystemExit(f'{path} is not a state dict or checkpoint dict')
    return ckpt


def save(state_dict: dict, dst: str, meta: dict) -> None:
    atomic_save(dict(state_dict=state_dict, meta=meta), dst)


def parse_converter_args(description: str, head_help: str, argv=None):
    """``src dst [--keep-head] [--trust-pickle]``, the converters' CLI."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output .pth')
    parser.add_argument('--keep-head', action='store_true', help=head_help)
    parser.add_argument('--trust-pickle', action='store_true',
                        help='unpickle fully (the file holds training args)')
    return parser.parse_args(argv)


def run_converter(argv, doc: str, head_help: str, convert, converter: str,
                  tag_key: str):
    """A converter's ``main``: parse its CLI (``doc``'s first line is the
    description), ``convert(official_state, keep_head) -> (state, tag)``
    and save ``state`` with ``meta = {source, tag_key: tag, converter}``.
    Returns ``(args, state, tag)`` for the converter's closing message."""
    args = parse_converter_args(doc.split('\n')[0], head_help, argv)
    state, tag = convert(load_official(args.src, args.trust_pickle),
                         args.keep_head)
    save(state, args.dst, {'source': args.src, tag_key: tag,
                           'converter': converter})
    return args, state, tag
