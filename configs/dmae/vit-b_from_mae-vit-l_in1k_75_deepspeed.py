# DMAE ViT-L/16 -> ViT-B/16 (vit-b_from_mae-vit-l_in1k_75.py) under
# FlexibleRunner + DeepSpeed ZeRO-2, bf16 (docs/scaling.md).
# Train:  bash tools/dist_train.sh configs/dmae/vit-b_from_mae-vit-l_in1k_75_deepspeed.py 8
# Export (a checkpoint is a directory):
#         python tools/export_student.py \
#             work_dirs/vit-b_from_mae-vit-l_in1k_75_deepspeed/epoch_100.pth/ \
#             work_dirs/vit-b_from_mae-vit-l_in1k_75_deepspeed/student_vit-b.pth
_base_ = [
    './vit-b_from_mae-vit-l_in1k_75.py',
    '../_base_/strategies/deepspeed_zero2_bf16.py',
]
# DeepSpeed's bf16 replaces AMP
optim_wrapper = dict(
    _delete_=True,
    type='DeepSpeedOptimWrapper',
    optimizer={{_base_.optim_wrapper.optimizer}},
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
