"""Export from the checkpoints of FlexibleRunner's strategies.

DeepSpeed (through mmengine's DeepSpeedStrategy) writes a directory per
checkpoint, ``<work_dir>/iter_N.pth/``, whose ``mp_rank_00_model_states.pt``
holds the model under ``'module'`` (bf16 here) and mmengine's ``meta`` next
to it; DeepSpeed's own ``save_checkpoint`` adds a ``latest`` file naming the
tag. The directories here are written by hand in exactly the layout that
deepspeed 0.18.9 + mmengine 0.10.7 wrote on this machine for
configs/tiny/tiny_kdep_synthetic_deepspeed.py (the same top-level keys, a
``ConfigDict`` ds_config, a set, bf16 tensors): DeepSpeed is not in the
test environment (docs/scaling.md). FSDP's full state dict is an ordinary
checkpoint file (tests/integration/test_fsdp_cpu.py exports a real one).
"""
import collections
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict

import kdep_mm  # noqa: F401
from kdep_mm.apis.export import (DEEPSPEED_MODEL_STATES, ExportError,
                                 export_student, load_distill_checkpoint)
from kdep_mm.registry import MODELS
from kdep_mm.utils.checkpoint import safe_torch_load

STUDENT = dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=2)
CFG_TEXT = Config(dict(model=dict(type='kdep_mm.KDEPDistiller',
                                  student=STUDENT))).pretty_text


def _model_states(module: dict, stage: int = 2) -> dict:
    """The dict DeepSpeed's engine saves (deepspeed 0.18.9), with mmengine's
    client state (meta, message_hub, ...) merged in."""
    shapes = collections.OrderedDict(
        (k, v.shape) for k, v in module.items() if 'running' not in k
        and 'num_batches' not in k)
    return dict(
        module=collections.OrderedDict(module),
        buffer_names=[k for k in module if 'running' in k
                      or 'num_batches' in k],
        optimizer=None, param_shapes=[shapes],
        frozen_param_shapes=collections.OrderedDict(), shared_params={},
        frozen_param_fragments=collections.OrderedDict(), lr_scheduler=None,
        data_sampler=None, random_ltd=None,
        sparse_tensor_module_names=set(), skipped_steps=0, global_steps=3,
        global_samples=12, dp_world_size=1, mp_world_size=1,
        ds_config=ConfigDict(zero_allow_untested_optimizer=True,
                             zero_optimization=dict(stage=stage),
                             bf16=dict(enabled=True)),
        ds_version='0.18.9',
        meta=dict(epoch=0, iter=3, cfg=CFG_TEXT),
        message_hub=dict(log_scalars={}, runtime_info={}, resumed_keys={}),
        param_schedulers=[], optim_wrapper={})


@pytest.fixture
def student_state():
    torch.manual_seed(0)
    student = MODELS.build(STUDENT)
    return {f'student.{k}': v.bfloat16() if v.is_floating_point() else v
            for k, v in student.state_dict().items()}


def _write_ds_dir(tag_dir, module, stage=2):
    os.makedirs(tag_dir)
    torch.save(_model_states(module, stage),
               osp.join(tag_dir, DEEPSPEED_MODEL_STATES))
    torch.save({'optimizer_state_dict': {}}, osp.join(
        tag_dir, 'bf16_zero_pp_rank_0_mp_rank_00_optim_states.pt'))


def _loads_strictly(path, student_state):
    exported = safe_torch_load(str(path))['state_dict']
    student = MODELS.build(STUDENT)
    student.load_state_dict(
        {k[len('backbone.'):]: v for k, v in exported.items()}, strict=True)
    for k, v in student.state_dict().items():
        assert torch.equal(v, student_state['student.' + k].to(v.dtype)), k


def test_export_from_a_deepspeed_checkpoint_directory(tmp_path,
                                                      student_state):
    work = tmp_path / 'work'
    _write_ds_dir(work / 'iter_3.pth', student_state)
    (work / 'last_checkpoint').write_text(str(work / 'iter_3.pth'))
    out = tmp_path / 'a.pth'
    info = export_student(str(work / 'iter_3.pth'), str(out))
    assert info['source'].endswith(
        osp.join('iter_3.pth', DEEPSPEED_MODEL_STATES))
    assert info['student_cfg']['type'] == 'kdep_mm.CIFARResNet'
    _loads_strictly(out, student_state)
    meta = safe_torch_load(str(out))['meta']
    assert meta['source_iter'] == 3
    # the work directory (its last_checkpoint) gives the same export
    info2 = export_student(str(work), str(tmp_path / 'b.pth'))
    assert info2['source'] == info['source']
    assert info2['sha256'] == info['sha256']


def test_deepspeeds_own_latest_file(tmp_path, student_state):
    save_dir = tmp_path / 'ds'
    _write_ds_dir(save_dir / 'global_step3', student_state)
    (save_dir / 'latest').write_text('global_step3')
    state, path = load_distill_checkpoint(str(save_dir))
    assert path == str(save_dir / 'global_step3' / DEEPSPEED_MODEL_STATES)
    assert sorted(state['state_dict']) == sorted(student_state)
    (save_dir / 'latest').write_text('global_step9')
    with pytest.raises(ExportError, match="names the tag 'global_step9'"):
        load_distill_checkpoint(str(save_dir))


def test_zero3_directory_is_refused_with_the_way_out(tmp_path,
                                                     student_state):
    # ZeRO-3 leaves empty placeholders under 'module'
    empty = {k: v.new_empty(0) if v.is_floating_point() else v
             for k, v in student_state.items()}
    _write_ds_dir(tmp_path / 'iter_3.pth', empty, stage=3)
    with pytest.raises(ExportError, match='zero_to_fp32.py'):
        export_student(str(tmp_path / 'iter_3.pth'), str(tmp_path / 'o.pth'))
    # its consolidated output (a bare state dict) exports
    torch.save({k: v.float() if v.is_floating_point() else v
                for k, v in student_state.items()},
               str(tmp_path / 'pytorch_model.bin'))
    export_student(str(tmp_path / 'pytorch_model.bin'),
                   str(tmp_path / 'o.pth'))
    _loads_strictly(tmp_path / 'o.pth', student_state)


def test_other_directories_are_named(tmp_path):
    local = tmp_path / 'iter_3.pth'
    os.makedirs(local)
    torch.save({}, str(local / 'rank0.pth'))
    with pytest.raises(ExportError, match="state_dict_cfg='full'"):
        export_student(str(local), str(tmp_path / 'o.pth'))
    os.remove(local / 'rank0.pth')
    with pytest.raises(ExportError, match='not a DeepSpeed checkpoint'):
        export_student(str(local), str(tmp_path / 'o.pth'))
    with pytest.raises(FileNotFoundError):
        export_student(str(tmp_path / 'missing'), str(tmp_path / 'o.pth'))
