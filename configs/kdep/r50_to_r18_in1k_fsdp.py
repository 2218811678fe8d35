# KDEP ResNet-50 -> ResNet-18 (r50_to_r18_in1k.py) under FlexibleRunner +
# FSDP, bf16 mixed precision (docs/scaling.md: for a teacher this small DDP
# is enough; this is the recipe for larger ones).
# Train:  bash tools/dist_train.sh configs/kdep/r50_to_r18_in1k_fsdp.py 8
# Export: python tools/export_student.py work_dirs/r50_to_r18_in1k_fsdp/epoch_90.pth \
#             work_dirs/r50_to_r18_in1k_fsdp/student_r18.pth
_base_ = [
    './r50_to_r18_in1k.py',
    '../_base_/strategies/fsdp_bf16.py',
]
