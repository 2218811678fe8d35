# The tiny KDEP run (tiny_kdep_synthetic_3iter.py: 3 iterations) under
# kdep_mm.FlexibleRunner + DeepSpeedStrategy, ZeRO-2 bf16
# (configs/_base_/strategies/deepspeed_zero2_bf16.py), for the DeepSpeed
# checks:
#   tools/dist_train.sh configs/tiny/tiny_kdep_synthetic_deepspeed.py 1
# DeepSpeed is optional (docs/scaling.md: which version works with mmengine
# 0.10.7); it writes each checkpoint as a directory, <work_dir>/iter_N.pth/,
# that tools/export_student.py reads.
_base_ = [
    './tiny_kdep_synthetic_3iter.py',
    '../_base_/strategies/deepspeed_zero2_bf16.py',
]
optim_wrapper = dict(type='DeepSpeedOptimWrapper')
