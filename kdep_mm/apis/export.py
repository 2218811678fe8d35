"""Export the student of a distillation checkpoint: the one export path.

Each distiller declares what it exports (``exports``): every one its
student backbone (:func:`export_student`, from the checkpoint file alone);
TCS and the ensemble also the whole student as an mmpretrain
``ImageClassifier`` (:func:`export_classifier`, which rebuilds the model
without its teachers; :meth:`classifier_checkpoint` of the distiller).
``tools/export_student.py --as backbone|classifier`` is its CLI.

Backbone
--------

A KDEP distillation run saves mmengine Runner checkpoints whose
``state_dict`` holds the student backbone under ``student.`` next to the
alignment neck (``aligner.*``) and possibly training-only heads
(``student_head.*``, ``projector.*``); under FlexibleRunner, FSDP writes the
same file (a full state dict) and DeepSpeed a directory holding that state
dict (:func:`load_distill_checkpoint` reads each). Downstream toolboxes
(mmpretrain, mmdet, mmseg) load pre-trained backbones with::

    init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.')

so :func:`export_student` keeps only the ``student.`` keys, renames them to
``backbone.`` and writes a small, self-describing checkpoint::

    {'state_dict': {'backbone.conv1.weight': ..., ...},
     'meta': {'kdep_mm_version', 'source', 'source_sha256', 'student_cfg',
              'num_params', 'num_tensors', 'student_prefix', 'out_prefix'}}

The file holds only tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` (torch's default since 2.6), which is what
mmengine's ``CheckpointLoader`` does for local files.
"""
import os
import os.path as osp
import re
import warnings
from typing import Any, Dict, Optional, Tuple, Union

import torch
from mmengine.config import Config, ConfigDict

import kdep_mm.models  # noqa: F401  (registers the model classes)
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import atomic_save, file_sha256, safe_torch_load
from kdep_mm.version import __version__

__all__ = [
    'ExportError', 'export_student', 'verify_exported', 'file_sha256',
    'export_classifier', 'save_classifier', 'load_distill_checkpoint',
    'DEEPSPEED_MODEL_STATES'
]

# state-dict entries that are buffers, not learnable parameters
_BUFFER_SUFFIXES = ('running_mean', 'running_var', 'num_batches_tracked')
_REQUIRED_META = ('kdep_mm_version', 'source', 'source_sha256', 'student_cfg',
                  'num_params')


class ExportError(ValueError):
    """A checkpoint cannot be exported, or an exported file is malformed."""


def _norm_prefix(prefix: str, name: str, allow_empty: bool) -> str:
    if not isinstance(prefix, str):
        raise TypeError(f'{name} must be a str, got {type(prefix).__name__}')
    if not prefix:
        if allow_empty:
            return ''
        raise ExportError(f'{name} must not be empty')
    return prefix if prefix.endswith('.') else prefix + '.'


def _prefix_summary(keys) -> str:
    counts: Dict[str, int] = {}
    for k in map(str, keys):
        head = k.split('.', 1)[0] + '.' if '.' in k else k
        counts[head] = counts.get(head, 0) + 1
    if not counts:
        return '(the state dict is empty)'
    return ', '.join(f"'{p}' ({n} keys)" for p, n in sorted(counts.items()))


def _is_param_key(key: str) -> bool:
    return key.rsplit('.', 1)[-1] not in _BUFFER_SUFFIXES


def _count_params(state_dict: Dict[str, torch.Tensor]) -> int:
    """Elements of learnable parameters (batch-norm statistics excluded)."""
    return int(
        sum(v.numel() for k, v in state_dict.items() if _is_param_key(k)))


def _to_plain(obj: Any) -> Any:
    """Convert config values to types that ``weights_only`` loading accepts."""
    if isinstance(obj, dict):  # includes ConfigDict
        return {str(k): _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return tuple(_to_plain(v) for v in obj)
    if isinstance(obj, list):
        return [_to_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return repr(obj)


def _read_student_cfg(meta: Any, student_prefix: str) -> Optional[dict]:
    """``model.<student>`` of the config stored in ``meta['cfg']``, if any.

    ``student.`` -> ``model.student``; ``a.b.`` -> ``model.a.b``.
    """
    if not isinstance(meta, dict) or meta.get('cfg') is None:
        return None
    cfg_obj = meta['cfg']
    try:
        if isinstance(cfg_obj, str):
            cfg = Config.fromstring(cfg_obj, '.py')
        elif isinstance(cfg_obj, dict):
            cfg = Config(cfg_obj)
        else:
            return None
        node: Any = cfg.get('model')
        for part in student_prefix.rstrip('.').split('.'):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
    except Exception as e:  # noqa: BLE001 - the config is optional metadata
        warnings.warn(f'could not read the student config from meta["cfg"]: '
                      f'{type(e).__name__}: {e}')
        return None
    return _to_plain(node) if isinstance(node, dict) else None


#: the model-states file of a DeepSpeed checkpoint tag directory (data
#: and model parallel rank 0: the whole model unless ZeRO-3 partitioned it)
DEEPSPEED_MODEL_STATES = 'mp_rank_00_model_states.pt'


def _deepspeed_tag_dir(path: str) -> str:
    """The tag directory of a DeepSpeed checkpoint: ``path`` itself (it
    holds :data:`DEEPSPEED_MODEL_STATES`; mmengine's ``DeepSpeedStrategy``
    names it like a file, ``<work_dir>/iter_N.pth/``), the one a work
    directory's ``last_checkpoint`` names, or the tag its ``latest`` file
    names (DeepSpeed's own ``save_checkpoint(save_dir)``)."""
    if osp.isfile(osp.join(path, DEEPSPEED_MODEL_STATES)):
        return path
    last = osp.join(path, 'last_checkpoint')  # an mmengine work directory
    if osp.isfile(last):
        with open(last) as f:
            named = f.read().strip()
        if osp.isdir(named):
            return _deepspeed_tag_dir(named)
        raise ExportError(
            f'{last} names {named!r}, which is not a DeepSpeed checkpoint '
            'directory: export that file itself')
    latest = osp.join(path, 'latest')
    if osp.isfile(latest):
        with open(latest) as f:
            tag = f.read().strip()
        tag_dir = osp.join(path, tag)
        if not osp.isfile(osp.join(tag_dir, DEEPSPEED_MODEL_STATES)):
            raise ExportError(
                f'{latest} names the tag {tag!r}, but {tag_dir} holds no '
                f'{DEEPSPEED_MODEL_STATES}')
        return tag_dir
    if osp.isfile(osp.join(path, 'rank0.pth')):
        raise ExportError(
            f'{path} holds per-rank FSDP shards (rank0.pth, ...: '
            "FSDPStrategy's state_dict_cfg='local'); train with "
            "strategy.state_dict_cfg='full' (one file with the full state "
            'dict, which this exports)')
    raise ExportError(
        f'{path} is a directory but not a DeepSpeed checkpoint (no '
        f'{DEEPSPEED_MODEL_STATES}, no "latest" file naming a tag); found '
        f'{sorted(os.listdir(path))[:10]}')


def _zero3_partitioned(states: dict) -> bool:
    cfg = states.get('ds_config')
    zero = cfg.get('zero_optimization') if isinstance(cfg, dict) else None
    stage = zero.get('stage') if isinstance(zero, dict) else None
    module = states.get('module')
    empty = isinstance(module, dict) and any(
        torch.is_tensor(v) and v.numel() == 0 for v in module.values())
    return stage == 3 or empty


def load_distill_checkpoint(src: str) -> Tuple[dict, str]:
    """``({'state_dict', 'meta'}, file read)`` of a distillation checkpoint.

    ``src`` is a checkpoint file (mmengine Runner / DDP / FSDP full state
    dict ``{'state_dict', 'meta', ...}``, or a bare state dict such as
    DeepSpeed's ``zero_to_fp32.py`` output) or a DeepSpeed checkpoint
    directory (see :func:`_deepspeed_tag_dir`), whose
    :data:`DEEPSPEED_MODEL_STATES` holds the model under ``'module'`` and
    mmengine's ``meta`` next to it. A ZeRO-3 directory holds partitioned
    weights and is refused: consolidate it first.

    Raises:
        FileNotFoundError: ``src`` does not exist.
        ExportError: not a readable checkpoint, or one that cannot be
            exported as it is (the message says what to do).
    """
    if osp.isdir(src):
        path = osp.join(_deepspeed_tag_dir(src), DEEPSPEED_MODEL_STATES)
    elif osp.isfile(src):
        path = src
    else:
        raise FileNotFoundError(f'distillation checkpoint not found: {src}')
    try:
        # DeepSpeed pickles its config as mmengine passed it (a ConfigDict)
        with torch.serialization.safe_globals([ConfigDict]):
            ckpt = safe_torch_load(path, map_location='cpu')
    except RuntimeError as e:
        raise ExportError(f'{path} is not a readable checkpoint: {e}') from e
    if not isinstance(ckpt, dict):
        raise ExportError(f'{path} holds a {type(ckpt).__name__}, not a '
                          'checkpoint dict')
    if path.endswith(DEEPSPEED_MODEL_STATES) and 'module' in ckpt:
        if _zero3_partitioned(ckpt):
            raise ExportError(
                f'{path} is a ZeRO-3 checkpoint: its "module" holds '
                "partitioned (empty) weights. Consolidate them with the "
                "zero_to_fp32.py DeepSpeed writes next to the tag "
                f'(python {osp.dirname(osp.dirname(path))}/zero_to_fp32.py '
                f'{osp.dirname(osp.dirname(path))} out.pth --tag '
                f'{osp.basename(osp.dirname(path))}) and export out.pth, or '
                'train with zero_optimization.gather_16bit_weights_on_model_'
                'save=True and the checkpoint hook\'s save_optimizer=False '
                '(mmengine then writes one full state-dict file)')
        return dict(state_dict=ckpt['module'], meta=ckpt.get('meta')), path
    if 'state_dict' in ckpt:
        return dict(state_dict=ckpt['state_dict'], meta=ckpt.get('meta')), \
            path
    return dict(state_dict=ckpt, meta=None), path  # a bare state dict


def export_student(src_ckpt: str,
                   dst: str,
                   student_prefix: str = 'student.',
                   out_prefix: str = 'backbone.',
                   exclude=None) -> dict:
    """Write the student backbone of a distillation checkpoint to ``dst``.

    Args:
        src_ckpt (str): a distillation checkpoint: an mmengine checkpoint
            file with ``state_dict`` (Runner, DDP, FSDP full state dict), a
            bare state dict, or a DeepSpeed checkpoint directory (see
            :func:`load_distill_checkpoint`).
        dst (str): output file; written atomically, parent folders created.
        student_prefix (str): prefix of the student backbone's keys in the
            source. Defaults to ``'student.'``.
        out_prefix (str): prefix given to the exported keys. Defaults to
            ``'backbone.'`` (what ``init_cfg=dict(type='Pretrained',
            prefix='backbone.')`` strips). ``''`` writes bare backbone keys.
        exclude (sequence[str], optional): regexes (``re.search``, on the
            key without ``student_prefix``) of training-only keys to drop.
            Defaults to the ``export_exclude_keys`` of the student's class,
            when the checkpoint records its config and the class declares
            them (``MultiTokenViT``: its teacher tokens, so the export
            loads into a plain ``mmpretrain.VisionTransformer``). The
            dropped keys are listed in ``meta['dropped_keys']`` and in the
            returned summary.

    Returns:
        dict: a summary: ``dst``, ``num_tensors``, ``num_params``,
        ``sha256`` (of ``dst``), ``source``, ``source_sha256``,
        ``student_cfg``.

    Raises:
        FileNotFoundError: ``src_ckpt`` does not exist.
        ExportError: the source is not a readable checkpoint, holds no key
            under ``student_prefix`` (the message lists the prefixes found),
            holds non-tensor values there, or ``dst`` is the source itself.
    """
    student_prefix = _norm_prefix(student_prefix, 'student_prefix', False)
    out_prefix = _norm_prefix(out_prefix, 'out_prefix', True)
    if not osp.exists(src_ckpt):
        raise FileNotFoundError(
            f'distillation checkpoint not found: {src_ckpt}')
    if osp.abspath(dst) == osp.abspath(src_ckpt):
        raise ExportError(f'refusing to overwrite the source checkpoint '
                          f'{src_ckpt}; choose another destination')
    ckpt, src_ckpt = load_distill_checkpoint(src_ckpt)
    src_abs = osp.abspath(src_ckpt)
    state_dict, meta = ckpt['state_dict'], ckpt['meta']
    if not isinstance(state_dict, dict):
        raise ExportError(f'{src_ckpt}: "state_dict" is a '
                          f'{type(state_dict).__name__}, not a dict')

    n = len(student_prefix)
    student_cfg = _read_student_cfg(meta, student_prefix)
    patterns = list(exclude) if exclude is not None else \
        _default_exclude(student_cfg)
    dropped = []
    exported: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if not isinstance(key, str) or not key.startswith(student_prefix):
            continue
        if any(re.search(p, key[n:]) for p in patterns):
            dropped.append(key[n:])
            continue
        if not torch.is_tensor(value):
            raise ExportError(f'{src_ckpt}: "{key}" is a '
                              f'{type(value).__name__}, not a tensor')
        # clone: a view would drag its whole storage into the file
        exported[out_prefix + key[n:]] = value.detach().clone()
    if not exported:
        raise ExportError(
            f'{src_ckpt} has no key under the prefix "{student_prefix}"; '
            f'prefixes found: {_prefix_summary(state_dict.keys())}. Pass '
            'the right one with student_prefix (--student-prefix).')

    out_meta = dict(
        kdep_mm_version=__version__,
        source=src_abs,
        source_sha256=file_sha256(src_ckpt),
        student_cfg=student_cfg,
        num_params=_count_params(exported),
        num_tensors=len(exported),
        student_prefix=student_prefix,
        out_prefix=out_prefix,
    )
    if dropped:
        out_meta['dropped_keys'] = sorted(dropped)
    if isinstance(meta, dict):
        for k in ('epoch', 'iter'):
            if isinstance(meta.get(k), int):
                out_meta['source_' + k] = meta[k]
    atomic_save(dict(state_dict=exported, meta=out_meta), dst)
    return dict(
        dst=osp.abspath(dst),
        num_tensors=len(exported),
        num_params=out_meta['num_params'],
        sha256=file_sha256(dst),
        source=src_abs,
        source_sha256=out_meta['source_sha256'],
        student_cfg=out_meta['student_cfg'],
        dropped_keys=sorted(dropped))


def _default_exclude(student_cfg: Optional[dict]) -> list:
    """``export_exclude_keys`` of the student's registered class."""
    if not isinstance(student_cfg, dict) or not isinstance(
            student_cfg.get('type'), str):
        return []
    try:
        cls = MODELS.get(student_cfg['type'])
    except Exception:  # noqa: BLE001 - unknown types export everything
        return []
    return list(getattr(cls, 'export_exclude_keys', ()) or ())


def verify_exported(path: str, out_prefix: Optional[str] = None) -> dict:
    """Load an exported student and check its structure.

    Checks: a dict with ``state_dict`` (non-empty, str keys, tensor values,
    every key under the out prefix) and ``meta`` (the keys
    :func:`export_student` writes, ``num_params`` consistent with the
    tensors).

    Args:
        path (str): the exported file.
        out_prefix (str, optional): the prefix every key must have. Defaults
            to the one recorded in ``meta['out_prefix']`` (or ``backbone.``).

    Returns:
        dict: the loaded checkpoint.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ExportError: the file is unreadable or malformed.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'exported checkpoint not found: {path}')
    try:
        ckpt = safe_torch_load(path)
    except RuntimeError as e:
        raise ExportError(f'{path} is not a readable checkpoint: {e}') from e
    if not isinstance(ckpt, dict) or not isinstance(
            ckpt.get('state_dict'), dict) or not isinstance(
                ckpt.get('meta'), dict):
        raise ExportError(f'{path} is not an exported student: expected a '
                          "dict with 'state_dict' and 'meta' dicts")
    sd, meta = ckpt['state_dict'], ckpt['meta']
    missing = [k for k in _REQUIRED_META if k not in meta]
    if missing:
        raise ExportError(f'{path}: meta lacks {missing}')
    if not sd:
        raise ExportError(f'{path}: the state dict is empty')
    if out_prefix is None:
        out_prefix = meta.get('out_prefix', 'backbone.')
    out_prefix = _norm_prefix(out_prefix, 'out_prefix', True)
    for k, v in sd.items():
        if not isinstance(k, str) or not k.startswith(out_prefix):
            raise ExportError(f'{path}: key {k!r} is not under the prefix '
                              f'"{out_prefix}"')
        if not torch.is_tensor(v):
            raise ExportError(f'{path}: {k!r} is a {type(v).__name__}, '
                              'not a tensor')
    if meta['num_params'] != _count_params(sd):
        raise ExportError(f'{path}: meta num_params={meta["num_params"]} but '
                          f'the tensors hold {_count_params(sd)}')
    if meta['student_cfg'] is not None and not isinstance(
            meta['student_cfg'], dict):
        raise ExportError(f'{path}: meta student_cfg is not a dict')
    return ckpt


# ---------------------------------------------------------------- classifier
def save_classifier(model, path: str) -> dict:
    """Write ``model.classifier_checkpoint()`` (an mmpretrain
    ``ImageClassifier`` checkpoint: ``state_dict`` + ``meta``) to ``path``
    atomically. Returns the state dict."""
    model = model.module if hasattr(model, 'module') else model
    if 'classifier' not in getattr(model, 'exports', ()):
        raise ExportError(f'{type(model).__name__} exports '
                          f'{list(getattr(model, "exports", ()))}, not a '
                          'classifier; export its student backbone')
    ckpt = model.classifier_checkpoint()
    atomic_save(ckpt, path)
    return ckpt['state_dict']


def _model_cfg(ckpt: dict, src: str, config: Optional[Union[str, Config]]):
    if config is not None:
        cfg = config if isinstance(config, Config) else Config.fromfile(config)
    else:
        meta = ckpt.get('meta') if isinstance(ckpt, dict) else None
        text = meta.get('cfg') if isinstance(meta, dict) else None
        if text is None:
            raise ExportError(f'{src} records no config (meta["cfg"]); pass '
                              'the training config with --config')
        cfg = Config.fromstring(text, '.py') if isinstance(text, str) \
            else Config(text)
    if 'model' not in cfg:
        raise ExportError('the config has no "model"')
    return cfg.model.to_dict() if hasattr(cfg.model, 'to_dict') \
        else dict(cfg.model)


def export_classifier(src_ckpt: str, dst: str,
                      config: Optional[Union[str, Config]] = None) -> dict:
    """Write the student of a distillation checkpoint whose model exports a
    classifier (TCS, the ensemble) as an mmpretrain ``ImageClassifier``
    checkpoint at ``dst`` (atomic).

    The model is rebuilt from the config recorded in the checkpoint (or
    ``config``) without its teachers (the model's ``teacher_keys`` are
    dropped: they are not in the checkpoint and not needed, so the teacher
    checkpoints need not exist here), the state dict is loaded strictly,
    and :func:`save_classifier` writes it.

    Returns a summary: ``dst``, ``algorithm``, ``num_tensors``, ``sha256``,
    ``source``. Raises :class:`ExportError` naming what is wrong: no
    config, a model that exports no classifier (e.g. KDEP: export its
    backbone instead), or a state dict that does not fit the model.
    """
    if not osp.exists(src_ckpt):
        raise FileNotFoundError(f'distillation checkpoint not found: '
                                f'{src_ckpt}')
    if osp.abspath(src_ckpt) == osp.abspath(dst):
        raise ExportError(f'refusing to overwrite the source checkpoint '
                          f'{src_ckpt}; choose another destination')
    ckpt, src_ckpt = load_distill_checkpoint(src_ckpt)
    model_cfg = _model_cfg(ckpt, src_ckpt, config)
    kind = str(model_cfg.get('type', '')).split('.')[-1]
    try:
        cls = MODELS.get(model_cfg.get('type', ''))
    except Exception:  # noqa: BLE001 - reported below
        cls = None
    if cls is None or 'classifier' not in getattr(cls, 'exports', ()):
        raise ExportError(
            f'model.type {model_cfg.get("type")!r} has no classifier export '
            '(it exports '
            f'{list(getattr(cls, "exports", ("backbone", )))}); export its '
            'student backbone with --as backbone')
    for key in cls.teacher_keys:
        model_cfg.pop(key, None)
    model = MODELS.build(model_cfg)
    state = ckpt.get('state_dict', ckpt)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise ExportError(f'{src_ckpt} does not fit model.type {kind!r} of '
                          f'the config: {e}') from e
    if missing or unexpected:
        raise ExportError(
            f'{src_ckpt} does not fit model.type {kind!r} of the config: '
            f'missing keys {missing[:8]}, unexpected keys {unexpected[:8]}')
    out = save_classifier(model, dst)
    return dict(dst=dst, algorithm=kind, num_tensors=len(out),
                sha256=file_sha256(dst), source=osp.abspath(src_ckpt))
