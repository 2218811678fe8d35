"""Carry a ``pretrained=`` config override into the backbone's init_cfg."""


def sync_pretrained(cfg, key: str = 'pretrained') -> bool:
    """Point ``model.backbone.init_cfg.checkpoint`` at ``cfg[key]``.

    In mmengine's plain-text configs a top-level variable is substituted
    when the file is parsed, so ``--cfg-options pretrained=X`` changes
    ``cfg.pretrained`` but not the ``init_cfg`` that used it. A training
    script calls this after ``cfg.merge_from_dict(options)`` to carry the
    override through (equivalently, pass
    ``--cfg-options model.backbone.init_cfg.checkpoint=X``).

    Returns:
        bool: whether ``init_cfg.checkpoint`` was changed.
    """
    value = cfg.get(key) if hasattr(cfg, 'get') else None
    model = cfg.get('model') if hasattr(cfg, 'get') else None
    if value is None or not isinstance(model, dict):
        return False
    init_cfg = (model.get('backbone') or {}).get('init_cfg')
    if not isinstance(init_cfg, dict) or init_cfg.get('type') != 'Pretrained':
        return False
    if init_cfg.get('checkpoint') == value:
        return False
    init_cfg['checkpoint'] = value
    return True
