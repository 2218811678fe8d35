# DMAE (Bai et al., CVPR 2023, "Masked Autoencoders Enable Efficient
# Knowledge Distillers"): MAE pre-training of a ViT-B/16 student on
# ImageNet-1K, 75% masking, 100 epochs, with feature distillation from a
# frozen MAE-pretrained ViT-L/16 teacher (mmpretrain model zoo) that sees the
# student's visible patches only: L1 between per-token L2-normalised
# features, student block 9 (projected to 1024-d) <- teacher block 18.
# Train:  bash tools/dist_train.sh configs/dmae/vit-b_from_mae-vit-l_in1k_75.py 8
# Export: python tools/export_student.py \
#             work_dirs/vit-b_from_mae-vit-l_in1k_75/epoch_100.pth \
#             work_dirs/vit-b_from_mae-vit-l_in1k_75/student_vit-b.pth
# Aligned with the authors' pretrain.sh + main_distill.py (UCSC-VLAA/DMAE)
# except the teacher checkpoint; docs/dmae.md has the table of every setting.
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/imagenet_normalization.py',  # data_preprocessor
]

# MAE ViT-L/16, 1600-epoch pre-training (encoder + decoder), from
# mmpretrain's configs/mae/metafile.yml
# (mae_vit-large-p16_8xb512-amp-coslr-1600e_in1k); loaded strictly into the
# whole mmpretrain MAE below, of which only encoder blocks 1..18 run.
# Deviation: the authors use the MAE repository's mae_visualize_vit_large.pth
# (ViT-L/16, pixel targets without norm_pix, timm key names, loaded with
# strict=False); this one is in mmpretrain key names and loads strictly.
teacher_ckpt = (
    'https://download.openmmlab.com/mmselfsup/1.x/mae/'
    'mae_vit-large-p16_8xb512-fp16-coslr-1600e_in1k/'
    'mae_vit-large-p16_8xb512-fp16-coslr-1600e_in1k_20220825-cc7e98c9.pth')

mask_ratio = 0.75

model = dict(
    type='kdep_mm.DMAEDistiller',
    data_preprocessor={{_base_.data_preprocessor}},
    student=dict(
        type='mmpretrain.MAEViT', arch='b', patch_size=16,
        mask_ratio=mask_ratio),
    neck=dict(
        type='mmpretrain.MAEPretrainDecoder',
        patch_size=16,
        in_chans=3,
        embed_dim=768,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
        mlp_ratio=4.),
    head=dict(
        type='mmpretrain.MAEPretrainHead',
        # the authors' script leaves --norm_pix_loss off: the target is the
        # normalised image itself (pixels x ImageNet mean/std)
        norm_pix=False,
        patch_size=16,
        loss=dict(type='mmpretrain.PixelReconstructionLoss',
                  criterion='L2')),
    teacher_ckpt=teacher_ckpt,
    # (student block, teacher block), 1-based: ViT-B 9/12 <- ViT-L 18/24
    distill_pairs=[(9, 18)],
    mask_ratio=mask_ratio,
    alpha=1.,
    distill_distance='l1',
    init_cfg=[
        dict(type='Xavier', layer='Linear', distribution='uniform'),
        dict(type='Constant', layer='LayerNorm', val=1.0, bias=0.0)
    ])
# the teacher: the whole mmpretrain MAE ViT-L/16, whose decoder and head are
# the student's at the teacher's width (1024); its backbone is MAEViT plus
# forward_visible (kdep_mm.VisibleMAEViT: same keys, MAE checkpoints load)
model['teacher'] = dict(
    type='mmpretrain.MAE',
    backbone=dict(type='kdep_mm.VisibleMAEViT', arch='l', patch_size=16),
    neck=dict(model['neck'], embed_dim=1024),
    head=model['head'])

# data: full ImageNet-1K train split, MAE augmentation
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.2, 1.0),
        backend='pillow',
        interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=512,  # x 8 GPUs = 4096
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='ImageNet',
        data_root='data/imagenet',
        split='train',
        pipeline=train_pipeline))

# optimizer: AdamW, lr 1.5e-4 x 4096 / 256 (the authors: 128 x 4 accumulation
# x 8 GPUs), no decay on norms and biases (timm's add_weight_decay: 1-D
# parameters and '.bias'; the CLS and mask tokens are 3-D and decayed, the
# sin-cos position embeddings are frozen)
optim_wrapper = dict(
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(
        type='AdamW', lr=1.5e-4 * 4096 / 256, betas=(0.9, 0.95),
        weight_decay=0.05),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            'ln': dict(decay_mult=0.0),
            'bias': dict(decay_mult=0.0),
        }))

# 20 warm-up epochs (main_distill.py's default, which pretrain.sh keeps) then
# half-cosine to 0 at epoch 100, both updated per iteration
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0, end=20,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', T_max=80, by_epoch=True, begin=20,
         end=100, eta_min=0., convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100)
auto_scale_lr = dict(base_batch_size=4096)
randomness = dict(seed=0, diff_rank_seed=True)
