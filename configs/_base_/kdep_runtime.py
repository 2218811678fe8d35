# Runtime shared by the kdep_mm distillation configs (mmpretrain scope, so
# mmpretrain's datasets/transforms resolve by plain names; kdep_mm modules
# are named with their scope). No ``custom_imports``: for a ``kdep_mm.X``
# type mmengine imports ``kdep_mm.registry`` (and so the package, which
# registers the ``atomic_local`` backend below), whose ``locations`` import
# the module that registers X; so this base can be listed beside model,
# teacher and dataset bases.
default_scope = 'mmpretrain'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    # mmengine's LoggerHook also logs 'Exp name: ...' at every epoch end
    # (dozens of lines in a short run); this one logs it at the first
    # iteration and then every `interval_exp_name` iterations only
    logger=dict(
        type='kdep_mm.ExpNameOnceLoggerHook',
        interval=100,
        interval_exp_name=1000),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # keep only the newest checkpoint (KDEP keeps the last one)
    # atomic writes: a killed run never leaves a truncated checkpoint
    checkpoint=dict(
        type='CheckpointHook',
        interval=1,
        max_keep_ckpts=1,
        save_last=True,
        backend_args=dict(backend='atomic_local')),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False),
)
env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
# LocalVisBackend writes the json scalars (<work_dir>/<timestamp>/vis_data/)
# that tools/analysis_tools/plot_curves.py reads. The second slot records
# nothing until TensorBoard is switched on (event files in the same vis_data/):
#   --cfg-options visualizer.vis_backends.1.type=TensorboardVisBackend
vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='kdep_mm.NoVisBackend'),
]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
