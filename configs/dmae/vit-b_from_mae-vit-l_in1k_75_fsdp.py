# DMAE ViT-L/16 -> ViT-B/16 (vit-b_from_mae-vit-l_in1k_75.py) under
# FlexibleRunner + FSDP, bf16 mixed precision (docs/scaling.md).
# Train:  bash tools/dist_train.sh configs/dmae/vit-b_from_mae-vit-l_in1k_75_fsdp.py 8
# Export: python tools/export_student.py \
#             work_dirs/vit-b_from_mae-vit-l_in1k_75_fsdp/epoch_100.pth \
#             work_dirs/vit-b_from_mae-vit-l_in1k_75_fsdp/student_vit-b.pth
_base_ = [
    './vit-b_from_mae-vit-l_in1k_75.py',
    '../_base_/strategies/fsdp_bf16.py',
]
# FSDP's mixed precision replaces AMP (no gradient scaler under bf16)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer={{_base_.optim_wrapper.optimizer}},
    paramwise_cfg={{_base_.optim_wrapper.paramwise_cfg}})
