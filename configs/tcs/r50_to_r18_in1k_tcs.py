# TCS at ImageNet scale, KD mode (all 1.28M labelled IN-1K training images),
# store mode: mmpretrain's model-zoo ResNet-50 (supervised IN-1K, 76.55%
# top-1) -> ResNet-18 from scratch. The teacher never runs during training:
# its pooled pre-activation features (2048-d, before the last ReLU of
# layer4) come from a teacher store cached once with the online twin of this
# config (same teacher, checkpoint URL, feature layer and train dataset):
#
#   # 4 RandomResizedCrop-style views per image, 224 px; 8 GPUs, one
#   # process per GPU, each writes its shards (resumable: rerun to finish)
#   torchrun --nproc_per_node 8 tools/cache_teacher.py \
#       configs/tcs/r50_to_r18_in1k_tcs_online.py \
#       --store data/imagenet/stores/r50_feat_v4 --views 4 \
#       --view-mode random --out-size 224 --fields feat --batch-size 256 \
#       --launcher pytorch
#   bash tools/dist_train.sh configs/tcs/r50_to_r18_in1k_tcs.py 8
#
# Store size: 1,281,167 images x 4 views x 2048 float32 = 42 GB (10.5 GB
# per view); the views are the only crop augmentation the student gets (4
# distinct crops + flips per image over 100 epochs), which is the price of
# not running the ResNet-50. More views cost 10.5 GB each; the online
# config has unlimited augmentation at the cost of the teacher forward.
# The store path is ONE variable (``teacher_store``, or KDEP_TCS_STORE=DIR
# at load time) for the pipeline and the fit hook; the hook refuses a store
# of another dataset (or the same images in another order), decoder, view
# count or teacher checkpoint (by the sha256 of the checkpoint file: the
# URL below is downloaded into torch's hub cache if it is not there).
#
# Choices (not from the paper):
# * k = num_coords = 512 = min(C_t = 2048, C_s = 512); tailoring: a prune
#   step every 5 epochs (5,005 iterations per epoch at batch 256), 10% of
#   the active coordinates each, down to 256 (reached after 7 steps, epoch
#   35); coord_weight 1.
# * The standard ImageNet KD recipe (the schedule of mmpretrain's
#   imagenet_bs256.py, used by most ImageNet KD papers): SGD lr 0.1 at total
#   batch 256 (8 x 32), momentum 0.9, weight decay 1e-4, 100 epochs, x0.1
#   at epochs 30, 60 and 90; --auto-scale-lr for other batch sizes.
# * The store is verified: tools/cache_teacher.py hashes every shard when
#   it finishes and records it as verified (size, mtime, ctime, sha256 of
#   each file); training runs then only stat the files and re-hash a shard
#   whose files changed (docs/reliability.md has the open times).
# Export the deployable classifier (ResNet-18 + GAP + folded Linear(512,
# 1000)) with `tools/export_student.py --as classifier SRC DST`.
# The teacher (``teacher``, ``teacher_ckpt``): ../_base_/teachers/
# in1k_resnet50.py; this store-mode config only checks the store against
# ``teacher_ckpt``.
# Data (ImageNet, train / val splits, the standard test transform, top-1 and
# top-5) and schedule are mmpretrain's imagenet_bs32.py and imagenet_bs256.py.
_base_ = [
    '../_base_/kdep_runtime.py',
    '../_base_/teachers/in1k_resnet50.py',
    'mmpretrain::_base_/datasets/imagenet_bs32.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
]

teacher_store = '{{$KDEP_TCS_STORE:data/imagenet/stores/r50_feat_v4}}'
num_views = 4

data_preprocessor = dict(type='mmpretrain.ClsDataPreprocessor')

model = dict(
    type='kdep_mm.TCSDistiller',
    data_preprocessor=dict(
        type='mmpretrain.ClsDataPreprocessor',
        num_classes=1000,
        mean={{_base_.data_preprocessor.mean}},
        std={{_base_.data_preprocessor.std}},
        to_rgb=True),
    student=dict(type='mmpretrain.ResNet', depth=18),
    # store mode: no model.teacher (None); the online twin sets it
    teacher_channels=2048,
    num_classes=1000,
    num_coords=512,  # = min(C_t, C_s)
    coord_weight=1.0,
    prune_interval=25025,  # 5 epochs x 5005 iterations at batch 256
    prune_ratio=0.1,
    min_coords=256,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='kdep_mm.ApplyStoredView',
        store=dict(
            root=teacher_store,
            expected=dict(fields={'feat': ((2048, ), 'float32')})),
        scale=224),
    dict(type='PackInputs', algorithm_keys=('teacher_feat', )),
]
train_dataloader = dict(
    batch_size=32,  # x 8 GPUs = 256
    num_workers=8,
    persistent_workers=True,
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, num_workers=8, persistent_workers=True)
test_dataloader = val_dataloader

custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', store=teacher_store,
         num_views=num_views, teacher_checkpoint={{_base_.teacher_ckpt}}),
    dict(type='kdep_mm.TCSTailoringHook'),
]

train_cfg = dict(val_interval=5)
