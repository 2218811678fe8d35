# KDEP at ImageNet scale, store mode: r50_to_r18_in1k.py (ResNet-50 ->
# ResNet-18 on the 10% IN-1K subset) without the teacher in the loop. The
# ResNet-50's pooled pre-ReLU features (2048-d, layer4.2.relu's input) of 8
# RandomResizedCrop-style views per subset image are cached once with the
# online config (same teacher, checkpoint, feature layer and train dataset):
#
#   torchrun --nproc_per_node 8 tools/cache_teacher.py \
#       configs/kdep/r50_to_r18_in1k.py \
#       --store data/imagenet/stores/r50_10pct_feat_v8 --views 8 \
#       --view-mode random --out-size 224 --fields feat --batch-size 256 \
#       --launcher pytorch
#   bash tools/dist_train.sh configs/kdep/r50_to_r18_in1k_store.py 8
#
# Store size: 128,000 images x 8 views x 2048 float32 = 8.4 GB. The views
# are the student's only augmentation (no colour jitter / lighting: the
# student sees the view the teacher saw). The SVD basis is fitted from the
# store (float64, every rank reads the whole store); the store path is ONE
# variable (``teacher_store``, or KDEP_STORE=DIR at load time) for the
# pipeline and FitBasisHook, which refuses a store of another dataset (or
# image order), decoder, view count, teacher checkpoint (sha256 of the
# file) or feature width. No validation: the held-out images have no stored
# teacher features.
_base_ = ['./r50_to_r18_in1k.py']

teacher_store = '{{$KDEP_STORE:data/imagenet/stores/r50_10pct_feat_v8}}'
num_views = 8  # --views of the cache command

model = dict(
    teacher=None,  # store mode
    teacher_ckpt=None,
    teacher_feature=None,  # chosen when caching
    aligner=dict(teacher_channels=2048),  # no teacher to infer it from
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
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))

custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', store=teacher_store,
         num_views=num_views, basis_file='svd_basis.pth',
         teacher_checkpoint={{_base_.teacher_ckpt}}),
]

val_dataloader = None
val_cfg = None
val_evaluator = None
