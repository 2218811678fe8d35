# KDEP ResNet-50 -> ResNet-18 (r50_to_r18_in1k.py) under FlexibleRunner +
# DeepSpeed ZeRO-2, bf16 (docs/scaling.md).
# Train:  bash tools/dist_train.sh configs/kdep/r50_to_r18_in1k_deepspeed.py 8
# Export (a checkpoint is a directory):
#         python tools/export_student.py work_dirs/r50_to_r18_in1k_deepspeed/epoch_90.pth/ \
#             work_dirs/r50_to_r18_in1k_deepspeed/student_r18.pth
_base_ = [
    './r50_to_r18_in1k.py',
    '../_base_/strategies/deepspeed_zero2_bf16.py',
]
optim_wrapper = dict(type='DeepSpeedOptimWrapper')
