# The KDEP study (issue 7): which arms, students, downstream tasks and seeds
# benchmarks/kdep_study.py runs, and the sizes chosen so that the whole
# study fits in about 2 hours on 2 idle CPU cores (2 processes, 1 torch
# thread each). Not a Runner config: the study script reads it, and each
# experiment has its own Runner config (configs/study/pretrain/*.py,
# configs/study/downstream/*.py).

# ---------------------------------------------------------------- arms
# letter -> (config, label). Order = table order.
arms = dict(
    a=dict(config='pretrain/a_random_init.py', label='random init'),
    b=dict(config='pretrain/b_supervised_100.py', label='supervised 100%'),
    c=dict(config='pretrain/c_supervised_10.py', label='supervised 10%'),
    d=dict(config='pretrain/d_logit_kd_10.py', label='logit KD 10%'),
    e=dict(config='pretrain/e_fitnets_10.py', label='FitNets 10%'),
    f=dict(config='pretrain/f_kdep_10.py', label='KDEP 10%'),
    g=dict(config='pretrain/g_kdep_100.py', label='KDEP 100%'),
    h=dict(config='pretrain/h_tcs_10.py', label='TCS 10%'),
)

# ------------------------------------------------------------ students
# name -> CIFARResNet depth and base width (pooled dim = 4 x width).
students = dict(
    r20=dict(depth=20, base_channels=16, label='ResNet-20 (64-d)',
             arms='abcdefgh'),
    r20w8=dict(depth=20, base_channels=8, label='ResNet-20 w8 (32-d)',
               arms='abcdefgh'),
)

# ---------------------------------------------------------- downstream
tasks = dict(
    probe=dict(config='downstream/cifar10_linear_probe.py',
               label='CIFAR-10 linear probe', metric='top-1 (%)'),
    hymenoptera=dict(config='downstream/hymenoptera_finetune.py',
                     label='hymenoptera fine-tune', metric='top-1 (%)'),
    bccd=dict(config='downstream/bccd_retinanet.py',
              label='BCCD RetinaNet', metric='mAP@0.5 (%)'),
    camvid=dict(config='downstream/camvid_fcn.py', label='CamVid FCN',
                metric='mIoU (%)'),
)
seeds = [0, 1, 2]

# --------------------------------------------------------------- sizes
# The pre-training pool ("100%"): class-balanced from CIFAR-10 train;
# "10%": a class-balanced tenth of the pool (same seed for every arm).
pool_per_class = 500       # 5,000 images = 10% of CIFAR-10 train
pool_fraction = 0.1        # -> 500 images
pool_seed = 0
# Teacher PCA (KDEP's SVD basis, TCS's coordinate system, the spectrum
# plot): one teacher pass over the 10% pool with the training pipeline.
# Epochs of every pre-training arm: max_epochs in
# configs/study/_base_/pretrain_cifar10_pool.py; downstream sizes: each
# task's config.

# ---------------------------------------------------------------- smoke
# --smoke: 2 images per training and evaluation set, 1 iteration per run
# (the PCA fit needs more than k = 64 teacher features: 80 images).
smoke = dict(train_images=2, eval_images=2, pca_images=80, epochs=1,
             iters=1)
