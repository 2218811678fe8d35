"""The FlexibleRunner configs (FSDP and DeepSpeed for DMAE ViT-L -> ViT-B
and KDEP R50 -> R18): each names kdep_mm's runner, its strategy dict
resolves (FSDP builds here; DeepSpeed's arguments bind to mmengine's
DeepSpeedStrategy, which itself needs deepspeed: built when importable),
its model is its base config's, and the dtype a DeepSpeed config trains in
reaches the hidden teacher: the engine's cast of the registered model
(``module.bfloat16()`` / ``.half()``, as deepspeed's engine does) and
mmengine's wrapper's input cast (``MMDeepSpeedEngineWrapper.
_cast_inputs_half``, run here) give a teacher in that dtype and an SVD basis
still in float32. The KDEP models build in test_kdep_configs.py (every
configs/kdep config), the ViT-L/ViT-B model in test_dmae.py (slow)."""
import copy
import importlib.util
import inspect
import os.path as osp

import pytest
import torch
from mmengine._strategy import DeepSpeedStrategy, FSDPStrategy
from mmengine._strategy.deepspeed import MMDeepSpeedEngineWrapper
from mmengine.config import Config
from mmengine.registry import FUNCTIONS, OPTIM_WRAPPERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS

import kdep_mm  # noqa: F401
from helpers.paths import REPO
from kdep_mm.engine.runners import FlexibleRunner, check_runner_type
from kdep_mm.registry import MODELS

CONFIGS = {
    'dmae_fsdp': 'dmae/vit-b_from_mae-vit-l_in1k_75_fsdp.py',
    'dmae_deepspeed': 'dmae/vit-b_from_mae-vit-l_in1k_75_deepspeed.py',
    'kdep_fsdp': 'kdep/r50_to_r18_in1k_fsdp.py',
    'kdep_deepspeed': 'kdep/r50_to_r18_in1k_deepspeed.py',
}
BASES = {'dmae': 'dmae/vit-b_from_mae-vit-l_in1k_75.py',
         'kdep': 'kdep/r50_to_r18_in1k.py'}
HAS_DEEPSPEED = importlib.util.find_spec('deepspeed') is not None
_BUILT = []


def _cfg(rel):
    return Config.fromfile(osp.join(REPO, 'configs', rel))


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_strategy_config_resolves(name):
    cfg = _cfg(CONFIGS[name])
    base = _cfg(BASES[name.split('_')[0]])
    assert cfg.runner_type == 'kdep_mm.FlexibleRunner'
    assert MMENGINE_RUNNERS.get(cfg.runner_type) is FlexibleRunner
    check_runner_type(cfg)
    assert cfg.default_hooks.checkpoint.backend_args == dict(
        backend='atomic_local')
    assert cfg.model == base.model  # by reference, not re-typed
    strategy = copy.deepcopy(cfg.strategy.to_dict())
    kind = strategy.pop('type')
    if kind == 'FSDPStrategy':
        wrapper = strategy['model_wrapper']
        assert wrapper['use_orig_params'] is True
        assert callable(FUNCTIONS.get(wrapper['auto_wrap_policy']['type']))
        assert isinstance(FSDPStrategy(**strategy), FSDPStrategy)
        assert cfg.optim_wrapper.get('type', 'OptimWrapper') == \
            'OptimWrapper'
    else:
        assert kind == 'DeepSpeedStrategy'
        inspect.signature(DeepSpeedStrategy.__init__).bind(None, **strategy)
        assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
        assert OPTIM_WRAPPERS.get('DeepSpeedOptimWrapper') is not None
        # mmengine 0.10.7 registers DeepSpeed's optimizers without force=True
        # at each construction: one per process
        if HAS_DEEPSPEED and not _BUILT:
            _BUILT.append(DeepSpeedStrategy(**strategy))
    if name.startswith('dmae'):
        # AMP's loss scaler gives way to the strategy's bf16
        assert cfg.optim_wrapper.optimizer == base.optim_wrapper.optimizer
        assert cfg.optim_wrapper.paramwise_cfg == \
            base.optim_wrapper.paramwise_cfg
        assert 'loss_scale' not in cfg.optim_wrapper


def _tiny_kdep():
    return MODELS.build(dict(
        type='kdep_mm.KDEPDistiller',
        data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                               mean=[125.] * 3, std=[63.] * 3),
        student=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=2),
        teacher=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=8),
        aligner=dict(type='kdep_mm.SVDAligner'),
        distill_loss=dict(type='kdep_mm.FeatureMSELoss')))


@pytest.mark.parametrize('precision', ['bf16', 'fp16'])
def test_deepspeed_dtype_reaches_the_teacher(precision):
    strategy = _cfg(CONFIGS['kdep_deepspeed']).strategy.to_dict()
    if precision == 'fp16':  # the same config with fp16 instead
        strategy.update(bf16=dict(enabled=False), fp16=dict(enabled=True))
    want = torch.bfloat16 if strategy.get('bf16', {}).get('enabled') \
        else torch.float16
    torch.manual_seed(0)
    model = _tiny_kdep()
    images = [torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)
              for _ in range(16)]
    data = model.data_preprocessor(dict(inputs=images), training=True)
    model.aligner.fit(model.teacher_features(data['inputs']))
    # what the DeepSpeed engine does to the registered model ...
    model.half() if want == torch.float16 else model.bfloat16()
    # ... and what mmengine's wrapper does to the inputs
    wrapper = MMDeepSpeedEngineWrapper(
        model=model, inputs_to_half=strategy['inputs_to_half'])
    data = wrapper._cast_inputs_half(data)
    assert data['inputs'].dtype == want
    loss = model.loss(**data)['loss_kd']
    assert loss.dtype == want and torch.isfinite(loss)
    assert next(model.teacher.parameters()).dtype == want
    assert model.aligner.basis.dtype == torch.float32
