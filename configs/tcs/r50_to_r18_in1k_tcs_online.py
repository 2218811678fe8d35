# The online twin of configs/tcs/r50_to_r18_in1k_tcs.py: the same TCS
# ResNet-50 -> ResNet-18 run, but the teacher (mmpretrain model zoo, loaded
# strictly from the URL) runs on every training batch, so the student gets
# mmpretrain's usual RandomResizedCrop + flip instead of the stored views.
# Also the config to CACHE that store from (it holds the teacher, its
# checkpoint, the feature layer and the same train dataset):
#   torchrun --nproc_per_node 8 tools/cache_teacher.py \
#       configs/tcs/r50_to_r18_in1k_tcs_online.py \
#       --store data/imagenet/stores/r50_feat_v4 --views 4 \
#       --view-mode random --out-size 224 --fields feat --batch-size 256 \
#       --launcher pytorch
# Train online:
#   bash tools/dist_train.sh configs/tcs/r50_to_r18_in1k_tcs_online.py 8
# The coordinate system is fitted before the first iteration by one online
# teacher pass over 51,200 training images (100 per coordinate, k = 512;
# the moments are summed over ranks).
_base_ = ['./r50_to_r18_in1k_tcs.py']

model = dict(
    # the base's teacher (../_base_/teachers/in1k_resnet50.py); the store
    # config leaves model.teacher unset (store mode)
    teacher={{_base_.teacher}},
    teacher_ckpt={{_base_.teacher_ckpt}},
    # pre-ReLU output of the last residual block, globally pooled (the
    # feature tools/cache_teacher.py stores with this config)
    teacher_feature='layer4.2.relu',
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    # 51,200 images = 100 per coordinate (k = 512)
    dict(type='kdep_mm.FitBasisHook', num_samples=51200),
    dict(type='kdep_mm.TCSTailoringHook'),
]
