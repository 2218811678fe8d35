# DMAE at CIFAR-10 scale (issue 19 item 3): the models, schedules and
# presets of benchmarks/dmae_study.py (its own training loop; the models are
# built from these dicts by the kdep_mm / mmpretrain registries).
#
# 32 px, patch 4: 8 x 8 = 64 patches; visible patches int(64 * (1 - r)):
# 75% -> 16, 95% -> 3, 98% -> 1 (CLS not counted).
#
#   teacher  MAE ViT (ViT-Tiny width: 192-d, 12 blocks, 3 heads), pre-trained
#            on the CIFAR-10 pool by the study (cell 'teacher'), norm_pix on
#            (MAE's recipe for representations);
#   student  a smaller ViT (128-d, 8 blocks, 4 heads), pre-trained
#            - as MAE alone at 75% (arm 'mae75'),
#            - as DMAE at 75 / 95 / 98% (arms 'dmae75', 'dmae95', 'dmae98'):
#              student block 6 of 8 (projected 128 -> 192) <- truncated
#              teacher block 9 of 12 on the same visible patches (the
#              authors' 3/4-depth pair, ViT-B 9/12 <- ViT-L 18/24), L1 on
#              per-token L2-normalised features, alpha 1,
#            with norm_pix off as in the authors' script; the same steps,
#            lr and augmentation in every arm ('equal budget' = equal
#            pre-training epochs, as in the paper);
#            - arm 'scratch': no pre-training (random init), probed and
#              fine-tuned the same way.
# Evaluation of each student: linear probe (frozen, mean patch token after
# the final norm, standardised, L-BFGS logistic regression, L2 chosen on the
# validation split) and end-to-end fine-tuning; top-1 on the full 10,000
# image test set. The validation split (500 per class) is carved from the
# 50,000 training images and never trained on.
img_size = 32
patch_size = 4
mean = [125.307, 122.961, 113.8575]  # CIFAR-10, RGB, 0-255
std = [51.5865, 50.847, 51.255]

teacher_arch = dict(embed_dims=192, num_layers=12, num_heads=3,
                    feedforward_channels=768)
student_arch = dict(embed_dims=128, num_layers=8, num_heads=4,
                    feedforward_channels=512)
decoder = dict(decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4,
               mlp_ratio=4.)
distill_pairs = [(6, 9)]


def _mae(arch, mask_ratio, norm_pix, backbone_type='mmpretrain.MAEViT'):
    return dict(
        type='mmpretrain.MAE',
        # the study feeds normalised tensors to loss() (its loop normalises
        # and augments on the device); the preprocessor is for completeness
        data_preprocessor=dict(type='mmpretrain.SelfSupDataPreprocessor',
                               mean=mean, std=std, to_rgb=False),
        backbone=dict(type=backbone_type, arch=arch, img_size=img_size,
                      patch_size=patch_size, mask_ratio=mask_ratio),
        neck=dict(type='mmpretrain.MAEPretrainDecoder', num_patches=64,
                  patch_size=patch_size, in_chans=3,
                  embed_dim=arch['embed_dims'], **decoder),
        head=dict(type='mmpretrain.MAEPretrainHead', norm_pix=norm_pix,
                  patch_size=patch_size,
                  loss=dict(type='mmpretrain.PixelReconstructionLoss',
                            criterion='L2')))


teacher = _mae(teacher_arch, 0.75, True, 'kdep_mm.VisibleMAEViT')
mae_student = _mae(student_arch, 0.75, False)
dmae_student = dict(
    type='kdep_mm.DMAEDistiller',
    data_preprocessor=mae_student['data_preprocessor'],
    student=mae_student['backbone'], neck=mae_student['neck'],
    head=mae_student['head'],
    teacher=teacher, teacher_ckpt=None,  # the study loads the teacher cell
    distill_pairs=distill_pairs, mask_ratio=0.75, alpha=1.,
    distill_distance='l1')
# the fine-tuned / probed model, as a downstream user builds it
classifier = dict(
    type='mmpretrain.ImageClassifier',
    data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor',
                           num_classes=10, mean=mean, std=std, to_rgb=False),
    backbone=dict(type='mmpretrain.VisionTransformer', arch=student_arch,
                  img_size=img_size, patch_size=patch_size,
                  out_type='avg_featmap', final_norm=False,
                  drop_path_rate=0.1),
    head=dict(type='mmpretrain.LinearClsHead', num_classes=10,
              in_channels=student_arch['embed_dims']))

# pre-training (teacher and students): AdamW betas (0.9, 0.95), wd 0.05 (no
# decay on norms/biases), lr = blr x batch / 256, linear warm-up then cosine
# to 0, per step; RandomResizedCrop(32, scale 0.2-1) + flip
pretrain = dict(blr=1.5e-3, weight_decay=0.05, betas=(0.9, 0.95),
                warmup_frac=0.1, crop_scale=(0.2, 1.0))
# fine-tuning: AdamW lr 1e-3 x batch / 256, wd 0.05, layer-wise lr decay
# 0.75 (mmpretrain's LearningRateDecayOptimWrapperConstructor), drop path
# 0.1, label smoothing 0.1, warm-up 10% then cosine; random crop (4 px
# padding, mean colour) + flip. Not tuned: one recipe for every arm.
finetune = dict(blr=1e-3, weight_decay=0.05, layer_decay=0.75,
                label_smoothing=0.1, warmup_frac=0.1, pad=4)
probe = dict(l2_grid=[1e-5, 1e-4, 1e-3], max_iter=300)

arms = ['mae75', 'dmae75', 'dmae95', 'dmae98', 'scratch']
seeds = [0, 1, 2]
val_per_class = 500

presets = dict(
    # one H200, about 8 minutes in all (benchmarks/dmae_cifar_gpu.sh)
    # (batch 512: steps of these small ViTs are launch-bound on a GPU)
    # (the CPU probes chose the grid's lowest L2: one lower value here)
    gpu=dict(pool=None, batch=512, teacher_epochs=60, student_epochs=20,
             finetune_epochs=10,
             probe=dict(l2_grid=[1e-6, 1e-5, 1e-4, 1e-3], max_iter=300)),
    # the reduced CPU version (docs/dmae.md: its measured cost and why it
    # cannot separate DMAE from MAE in 30 minutes): 10,000 pool images,
    # 1,000 validation, the probe fitted on 5,000, the full test set
    cpu=dict(pool=10000, val=1000, probe_train=5000, batch=128,
             teacher_epochs=5, student_epochs=5, finetune_epochs=3,
             teacher_arch=dict(embed_dims=96, num_layers=6, num_heads=3,
                               feedforward_channels=384),
             student_arch=dict(embed_dims=64, num_layers=4, num_heads=2,
                               feedforward_channels=256),
             decoder=dict(decoder_embed_dim=64, decoder_depth=2,
                          decoder_num_heads=2, mlp_ratio=4.),
             distill_pairs=[(3, 5)]),
    # the plumbing test: a few images, tiny models, one epoch each
    smoke=dict(pool=200, val=50, test=100, probe_train=100, batch=50,
               teacher_epochs=1,
               student_epochs=1, finetune_epochs=1, seeds=[0, 1],
               teacher_arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                                 feedforward_channels=64),
               student_arch=dict(embed_dims=16, num_layers=2, num_heads=2,
                                 feedforward_channels=32),
               decoder=dict(decoder_embed_dim=16, decoder_depth=1,
                            decoder_num_heads=2, mlp_ratio=2.),
               distill_pairs=[(1, 2)]),
)
