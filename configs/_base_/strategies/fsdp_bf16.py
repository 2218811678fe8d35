# FlexibleRunner + FSDP (mmengine's FSDPStrategy: FSDP1 through
# MMFullyShardedDataParallel), bf16 mixed precision; docs/scaling.md.
# kdep_mm.FlexibleRunner, not mmengine's: it keeps the checkpoint hook's
# atomic writes (backend_args=dict(backend='atomic_local')).
runner_type = 'kdep_mm.FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        # FSDP1 flattens a wrapped module's parameters into one flat
        # parameter, which must then share requires_grad; DMAE's frozen
        # sin-cos pos_embed sits with trainable weights (and paramwise_cfg
        # names the original parameters), so the original parameters stay
        use_orig_params=True,
        # one FSDP unit per >= 10M parameters (a ViT-B block is 7M: about
        # two blocks a unit; ResNet-18's last stage)
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
            min_num_params=int(1e7)),
        # bf16 compute and float32 gradient reduction; buffers (BN
        # statistics, the aligner's SVD basis) stay float32
        mixed_precision=dict(
            param_dtype='bfloat16', reduce_dtype='float32',
            buffer_dtype='float32')),
    # rank 0 writes one full state dict (tools/export_student.py reads it)
    state_dict_cfg='full')
