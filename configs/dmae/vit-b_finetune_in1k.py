# Fine-tuning of the DMAE-distilled ViT-B/16 student on ImageNet-1K:
# mmpretrain's MAE ViT-B/16 fine-tuning recipe, unchanged
# (mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py: 8 GPUs x 128,
# AdamW lr 2e-3 with layer-wise decay 0.65, 5 + 95 epochs cosine,
# drop path 0.1, RandAugment + Mixup/CutMix + label smoothing, global average
# pooling without the final norm), initialised from the exported student.
#
# 1. pre-train: configs/dmae/vit-b_from_mae-vit-l_in1k_75.py
# 2. export:    python tools/export_student.py \
#                   work_dirs/vit-b_from_mae-vit-l_in1k_75/epoch_100.pth \
#                   work_dirs/dmae/student_vit-b.pth
#    (keys 'student.*' of the MAEViT -> 'backbone.*'; the export targets
#    mmpretrain.VisionTransformer key names)
# 3. fine-tune: bash tools/dist_train.sh configs/dmae/vit-b_finetune_in1k.py 8
#    (another export: --cfg-options model.backbone.init_cfg.checkpoint=X)
#
# Loading reports 'ln1.weight'/'ln1.bias' (MAEViT's final norm) as unexpected
# and 'ln2.*' (the pooled-feature norm of out_type='avg_featmap') as missing,
# exactly as when fine-tuning an mmpretrain MAE checkpoint.
_base_ = ['mmpretrain::mae/benchmarks/vit-base-p16_8xb128-coslr-100e_in1k.py']


pretrained = 'work_dirs/dmae/student_vit-b.pth'

model = dict(
    backbone=dict(
        init_cfg=dict(
            type='Pretrained', checkpoint=pretrained, prefix='backbone.')))

work_dir = 'work_dirs/dmae/vit-b_finetune_in1k'
