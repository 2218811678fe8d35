"""Export the whole student of a TCS or ensemble distillation checkpoint as
an mmpretrain ``ImageClassifier`` checkpoint.

TCS's head is linear and folds into one ``Linear(C_s, num_classes)``
(:func:`~kdep_mm.models.algorithms.tcs.export_tcs_classifier`); the
ensemble's student is a ViT with one token and head per teacher
(:func:`~kdep_mm.models.algorithms.ensemble.export_ensemble_classifier`).
Both exporters need the built model. :func:`export_classifier` builds it
from the config recorded in the checkpoint (or given), in store mode: the
teachers are left out (they are not in the checkpoint and are not needed
to export), so the teacher checkpoints need not exist where the export
runs. The checkpoint's state dict is loaded strictly.
"""
import os.path as osp
from typing import Optional, Union

from mmengine.config import Config

from kdep_mm.models.algorithms.ensemble import export_ensemble_classifier
from kdep_mm.models.algorithms.tcs import export_tcs_classifier
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import safe_torch_load
from kdep_mm.utils.export import ExportError, file_sha256

__all__ = ['export_classifier', 'CLASSIFIER_EXPORTERS']

# model type -> (exporter, the model keys that describe its teachers)
CLASSIFIER_EXPORTERS = {
    'TCSDistiller': (export_tcs_classifier,
                     ('teacher', 'teacher_ckpt', 'teacher_revise_keys',
                      'teacher_feature', 'student_feature')),
    'EnsembleDistiller': (export_ensemble_classifier,
                          ('teachers', 'teacher_ckpts',
                           'teacher_revise_keys')),
}


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
    """Write the student of a TCS / ensemble checkpoint as an mmpretrain
    ``ImageClassifier`` checkpoint at ``dst`` (atomic).

    Returns a summary: ``dst``, ``algorithm``, ``num_tensors``, ``sha256``,
    ``source``. Raises :class:`ExportError` naming what is wrong: no
    config, a model type that has no classifier export (e.g. KDEP: export
    its backbone instead), or a state dict that does not fit the model.
    """
    if not osp.isfile(src_ckpt):
        raise FileNotFoundError(f'distillation checkpoint not found: '
                                f'{src_ckpt}')
    if osp.abspath(src_ckpt) == osp.abspath(dst):
        raise ExportError(f'refusing to overwrite the source checkpoint '
                          f'{src_ckpt}; choose another destination')
    ckpt = safe_torch_load(src_ckpt, map_location='cpu')
    model_cfg = _model_cfg(ckpt, src_ckpt, config)
    kind = str(model_cfg.get('type', '')).split('.')[-1]
    if kind not in CLASSIFIER_EXPORTERS:
        raise ExportError(
            f'model.type {model_cfg.get("type")!r} has no classifier export '
            f'(one of {sorted(CLASSIFIER_EXPORTERS)}); export its student '
            'backbone with --as backbone')
    exporter, teacher_keys = CLASSIFIER_EXPORTERS[kind]
    for key in teacher_keys:
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
    out = exporter(model, dst)
    return dict(dst=dst, algorithm=kind, num_tensors=len(out),
                sha256=file_sha256(dst), source=osp.abspath(src_ckpt))
