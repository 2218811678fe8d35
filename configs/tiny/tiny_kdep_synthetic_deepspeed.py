# The tiny KDEP run (tiny_kdep_synthetic.py) under FlexibleRunner +
# DeepSpeedStrategy (ZeRO-2, bf16), for the DeepSpeed checks:
#   tools/dist_train.sh configs/tiny/tiny_kdep_synthetic_deepspeed.py 2
# DeepSpeed is optional (pip install deepspeed); DeepSpeed writes each
# checkpoint as a directory, <work_dir>/iter_N.pth/, that
# tools/export_student.py reads.
_base_ = ['./tiny_kdep_synthetic.py']

runner_type = 'kdep_mm.FlexibleRunner'  # atomic checkpoint writes kept
strategy = dict(
    type='DeepSpeedStrategy',
    bf16=dict(enabled=True),
    inputs_to_half=['inputs'],
    zero_optimization=dict(stage=2),
    # mmengine hands DeepSpeed the config's torch optimizer (SGD here)
    config=dict(zero_allow_untested_optimizer=True))
optim_wrapper = dict(type='DeepSpeedOptimWrapper')
train_cfg = dict(_delete_=True, by_epoch=False, max_iters=3)
param_scheduler = []
log_processor = dict(by_epoch=False)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=-1,
                    save_last=False))
