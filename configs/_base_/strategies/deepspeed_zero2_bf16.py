# FlexibleRunner + DeepSpeed (mmengine's DeepSpeedStrategy), ZeRO-2, bf16;
# docs/scaling.md. Needs deepspeed <= 0.19.0 with mmengine 0.10.7 (0.19.8 no
# longer has deepspeed.runtime.fp16.onebit, which mmengine imports).
# ZeRO-3: --cfg-options strategy.zero_optimization.stage=3 (its checkpoint
# directories need DeepSpeed's zero_to_fp32.py before export).
runner_type = 'kdep_mm.FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    # the engine casts the registered model to bf16 (the hidden teacher
    # follows at its first call; the SVD basis stays float32), the wrapper
    # the preprocessed images
    bf16=dict(enabled=True),
    inputs_to_half=['inputs'],
    zero_optimization=dict(
        stage=2, allgather_partitions=True, reduce_scatter=True,
        overlap_comm=True, contiguous_gradients=True),
    # mmengine hands DeepSpeed the config's torch optimizer
    config=dict(zero_allow_untested_optimizer=True))
