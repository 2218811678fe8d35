# The DeiT recipe shared by the ensemble-distillation configs (LIB-KD /
# Co-advise; docs/ensemble.md has the method and every choice): a student
# of DeiT-Tiny width (MultiTokenViT: a class token + one token per teacher,
# each with its head; the class head is smoothed by 0.1), the per-teacher
# targets, Mixup 0.8 / CutMix 1.0 (recorded by the preprocessor so that the
# stored targets are mixed alike), RandAugment and random erasing 0.25
# after the teachers' view, AdamW with wd 0.05 (none on norms, biases and
# tokens) and 5 warm-up epochs then cosine to epoch 300.
# Each config adds the image and patch size, the classes, the
# normalisation, the teachers, the data and the lr (5e-4 x batch / 512).
model = dict(
    type='kdep_mm.EnsembleDistiller',
    data_preprocessor=dict(
        type='kdep_mm.EnsembleDataPreprocessor',
        to_rgb=True,
        batch_augments=dict(augments=[
            dict(type='Mixup', alpha=0.8),
            dict(type='CutMix', alpha=1.0)
        ])),
    student=dict(
        type='kdep_mm.MultiTokenViT',
        arch='deit-tiny',
        num_teacher_tokens=2,
        drop_path_rate=0.1),
    head=dict(
        type='kdep_mm.MultiTokenClsHead',  # in_channels: embed_dims
        num_tokens=3,
        average='logits',
        loss=dict(
            type='LabelSmoothLoss', label_smooth_val=0.1, mode='original')),
    # store mode: no model.teachers (None); the online variants set them
    target='per_teacher',
    temperature=1.0,
    teacher_weights=dict(cnn=1.0, involution=1.0),
    init_cfg=[
        dict(type='TruncNormal', layer='Linear', std=.02),
        dict(type='Constant', layer='LayerNorm', val=1., bias=0.),
    ])

# the pipelines' augmentation steps; padding and erasing fill with the
# ImageNet mean colour in the decoded (BGR) order
rand_augment = dict(
    type='RandAugment',
    policies='timm_increasing',
    num_policies=2,
    total_level=10,
    magnitude_level=9,
    magnitude_std=0.5,
    hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic'))
random_erasing = dict(
    type='RandomErasing',
    erase_prob=0.25,
    mode='rand',
    min_area_ratio=0.02,
    max_area_ratio=1 / 3,
    fill_color=[103.53, 116.28, 123.675],
    fill_std=[57.375, 57.12, 58.395])

optim_wrapper = dict(
    optimizer=dict(
        type='AdamW', weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    paramwise_cfg=dict(
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        custom_keys={
            '.cls_token': dict(decay_mult=0.0),
            '.pos_embed': dict(decay_mult=0.0),
            '.teacher_tokens': dict(decay_mult=0.0),
            '.teacher_pos_embed': dict(decay_mult=0.0),
        }),
    clip_grad=dict(max_norm=5.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0, end=5,
         convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=5,
         end=300)
]
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=10)
val_cfg = dict()
test_cfg = dict()
