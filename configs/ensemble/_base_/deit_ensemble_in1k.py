# Shared part of the ImageNet-1K ensemble-distillation configs (LIB-KD /
# Co-advise, store mode): DeiT recipe (300 epochs, AdamW lr 5e-4 x
# batch / 512 = 1e-3 at batch 1024, wd 0.05, cosine, 5 warm-up epochs,
# RandAugment, Mixup 0.8 / CutMix 1.0, label smoothing 0.1 on the class
# head, random erasing 0.25), a CNN teacher (mmpretrain ResNet-50) and an
# involution teacher (RedNet-50), each with its token + head in the student.
# See configs/ensemble/deit-ti_from_r50+rednet50_in1k.py for the commands.
_base_ = [
    '../../_base_/kdep_runtime.py',
    '../../_base_/imagenet_normalization.py',  # data_preprocessor
    './deit_recipe.py',  # student, targets, augmentation, schedule
]

num_classes = 1000
teacher_names = ['cnn', 'involution']
# Teachers (used by tools/cache_teacher.py --teacher NAME; the training run
# itself reads the stores, model.teachers=None).
teachers = dict(
    cnn=dict(
        type='ImageClassifier',
        backbone=dict(type='ResNet', depth=50),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048)),
    involution=dict(
        type='ImageClassifier',
        backbone=dict(type='kdep_mm.RedNet', depth=50, stem='imagenet'),
        neck=dict(type='GlobalAveragePooling'),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=2048)))
teacher_ckpts = dict(
    # mmpretrain model zoo ResNet-50 (76.55 top-1)
    cnn=('https://download.openmmlab.com/mmclassification/v0/resnet/'
         'resnet50_8xb32_in1k_20210831-ea4938fc.pth'),
    # USER-SUPPLIED: the official RedNet-50 ImageNet checkpoint of
    # github.com/d-li14/involution (linked from its README; no stable direct
    # URL). Its keys (backbone.*, head.fc.*) load into this ImageClassifier
    # as they are. Put it here or override teacher_ckpts.involution.
    involution='work_dirs/ensemble/rednet50_in1k/rednet50.pth')
teacher_revise_keys = dict(cnn=[(r'^module\.', '')],
                           involution=[(r'^module\.', '')])
stores = dict(
    cnn='work_dirs/stores/in1k_r50_top10_v8',
    involution='work_dirs/stores/in1k_rednet50_top10_v8')
num_views = 8

# the recipe's preprocessor with the base's ImageNet normalisation
data_preprocessor = dict(
    type='kdep_mm.EnsembleDataPreprocessor',
    num_classes=num_classes,
    batch_augments={{_base_.model.data_preprocessor.batch_augments}})
model = dict(
    data_preprocessor=dict(
        num_classes=num_classes,
        mean={{_base_.data_preprocessor.mean}},
        std={{_base_.data_preprocessor.std}}),
    student=dict(img_size=224, patch_size=16),
    head=dict(num_classes=num_classes),
    teacher_names=teacher_names,
    topk_rest='renorm')

train_pipeline = [
    dict(type='LoadImageFromFile'),
    # the stored crop (RandomResizedCrop-style box + flip) and both
    # teachers' top-10 probabilities on it
    dict(
        type='kdep_mm.ApplyStoredView',
        stores=stores,
        teacher_names=teacher_names,
        num_views=num_views,
        scale=224),
    # applied after the teachers' view: an approximation (docs/ensemble.md)
    {{_base_.rand_augment}},
    {{_base_.random_erasing}},
    dict(type='PackInputs', algorithm_keys=('teacher_outputs', )),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]
# 8 GPUs x 128 = 1024
train_dataloader = dict(
    batch_size=128,
    num_workers=8,
    persistent_workers=True,
    dataset=dict(type='ImageNet', data_root='data/imagenet', split='train',
                 pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True))
val_dataloader = dict(
    train_dataloader,
    dataset=dict(train_dataloader['dataset'], split='val',
                 pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

# before training (and on resume): every store was cached from this
# train dataset (same images in the same index order), with this decoder
# and from these teacher checkpoints (sha256 of each file, recorded by
# tools/cache_teacher.py; a URL is downloaded into torch's hub cache)
custom_hooks = [
    dict(type='kdep_mm.CheckTeacherStoresHook',
         teacher_checkpoints=teacher_ckpts),
]

optim_wrapper = dict(optimizer=dict(lr=5e-4 * 1024 / 512))
auto_scale_lr = dict(base_batch_size=1024)
default_hooks = dict(
    checkpoint=dict(interval=10, max_keep_ckpts=2),
    logger=dict(interval=100))
