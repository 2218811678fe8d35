# The TCS-vs-KD study (issue 19): arms, data, budget, sweep, seeds. Read by
# benchmarks/tcs_study.py; not a Runner config: each arm is a Runner config
# of configs/tcs/ (their shared base: configs/tcs/_base_/cifar10_5k_views.py).
#
# Every arm: the same 5,000 labelled CIFAR-10 training images (500 per
# class; 10% of CIFAR-10 train), the same 8 stored views per image, batch
# 128, the same number of samples seen and the same iteration schedule
# (linear warm-up over 5% of the steps, then cosine to 0), SGD momentum 0.9,
# weight decay 5e-4, 1 torch thread, data loaded in the training process.
# Scored on the full 10,000-image CIFAR-10 test set; the learning rate of
# each arm is chosen on `val` (1,000 more training images, disjoint), never
# on the test set.
arms = dict(
    ce=dict(config='baselines/cifar10_r20w8_ce_5k.py', label='CE only'),
    logit_kd=dict(config='baselines/cifar10_r56_to_r20w8_logit_kd_5k.py',
                  label='logit KD (Hinton, online)'),
    fitnets=dict(config='baselines/cifar10_r56_to_r20w8_fitnets_5k.py',
                 label='FitNets (online)'),
    tcs_store=dict(config='cifar10_r56_to_r20_w8_tcs_5k.py',
                   label='TCS, teacher store', store=True),
    tcs_online=dict(config='cifar10_r56_to_r20_w8_tcs_online_5k.py',
                    label='TCS, teacher online'),
    # the paper's premise: a self-supervised teacher, the backbone of a
    # MoCo v2 ResNet-56 pre-trained on CIFAR-10 without labels (on a GPU:
    # benchmarks/tcs_ssl_gpu.sh), run online on the same views. Its cells
    # need `tcs_study.py --ssl-teacher CKPT` (blocked without) and its own
    # store, that teacher's features on store/v<V>'s views (the store a run
    # reads must come from the teacher that runs). Not in `claims`: it is
    # compared with TCS online from the supervised teacher and with CE.
    tcs_ssl=dict(config='cifar10_mocov2_r56_to_r20_w8_tcs_online_5k.py',
                 label='TCS online, MoCo v2 teacher (self-supervised)',
                 teacher='ssl'),
)
train_per_class = 500   # 5,000 images
val_per_class = 100     # 1,000 images, for the sweep only
split_seed = 0
views = 8               # stored views per training image (all arms)
batch_size = 128
# samples seen = epochs x 5,000 = 39,936 (312 steps): each of the 40,000
# stored views about once. Sized by a measurement (docs/tcs.md, "Plan and
# measured cost"): 12 epochs would cost ~2.7 CPU h, over this study's half
# of the 4 CPU h.
epochs = 8
# TCS: 9 prune steps (10% each) take k = 32 down to 16; one every twelfth
# of the schedule ends them at 75% of it.
prune_steps_per_schedule = 12
seeds = [0, 1, 2]
# the sweep: one seed (`sweep_seed`, not a main seed), the full budget,
# judged on val top-1; arms in `sweep_from` take another arm's choice (TCS
# online is TCS store's math on the same data, only its teacher runs live;
# so is TCS from the SSL teacher, with another teacher).
sweep_seed = 100
sweeps = dict(
    ce=dict(lr=[0.05, 0.1, 0.2]),
    logit_kd=dict(lr=[0.05, 0.1, 0.2]),
    fitnets=dict(lr=[0.05, 0.1, 0.2]),
    tcs_store=dict(lr=[0.05, 0.1, 0.2]),
)
sweep_from = dict(tcs_online='tcs_store', tcs_ssl='tcs_store')
# the claims the report checks (TCS paper: "more accurate than KD at about
# half its training time and memory")
claims = dict(reference='logit_kd', methods=['tcs_store', 'tcs_online'],
              max_ratio=0.6)
# --smoke: a few images, a few steps, one seed, one sweep value
smoke = dict(train_per_class=4, val_per_class=2, test_images=20, steps=3,
             views=2, seeds=[0], sweep=dict(lr=[0.1]))
