# The ensemble study (issue 19 item 1), read by benchmarks/ensemble_study.py:
# a ViT student at 32 px (patch 4) trained on 10% of CIFAR-10 (500 labelled
# images per class, 5,000 in all) with the teachers' logits stored for its
# views; top-1 on the 10,000 test images. Arms (configs in configs/ensemble/,
# each run with the overrides below):
#   plain       no teacher, CE (label smoothing) only
#   cnn         the conv teacher only (ResNet-56; DeiT-style token)
#   involution  the involution teacher only (RedNet-26 sized for 32 px)
#   ensemble    both (the method: one token + head per teacher)
# The claim: ensemble > best single teacher > no teacher. The best single
# teacher is chosen on the validation split (val_per_class images per class
# carved from the rest of the train split), never on the test set.
arms = dict(
    plain=dict(config='../baselines/vit-tiny_cifar10_plain.py', teachers=[]),
    cnn=dict(config='../deit-tiny_cifar10_from_r56.py', teachers=['cnn']),
    involution=dict(
        config='../deit-tiny_cifar10_from_rednet26.py',
        teachers=['involution']),
    ensemble=dict(
        config='../deit-tiny_cifar10_from_r56+rednet26.py',
        teachers=['cnn', 'involution']),
)
seeds = [0, 1, 2]
split_seed = 0  # which 500 images per class, and the validation images
train_per_class = 500
val_per_class = 100

# The student, sized from the measured arms (docs/ensemble.md, "Study
# plan"): 128-d (2/3 of DeiT-Tiny's 192), 4 blocks, 2 heads of 64 (DeiT's
# head width), MLP 512, patch 4 (64 patches + the class and teacher tokens).
student_arch = dict(
    embed_dims=128, num_layers=4, num_heads=2, feedforward_channels=512)
epochs = 10  # what 2 CPU hours allow (docs/ensemble.md, "Study plan")
warmup_epochs = 1  # the recipe's 5 of 300, rounded up
batch_size = 128  # lr = 5e-4 x batch / 512 (DeiT), as the shipped configs
# stored views per image, both teachers on the same views (the ensemble
# configs have 8; 4 halves the involution teacher's caching, and 10 epochs
# use each view 2.5 times; the RedNet forward costs ~5 CPU s per 100 crops)
views = 4
# the teachers' stores: tools/cache_teacher.py on the 5,000 images
store_seed = 0

# smoke runs (tests): a few images, a tiny ViT, one short epoch
smoke = dict(
    train_per_class=2,
    val_per_class=1,
    test_images=20,
    epochs=1,
    batch_size=10,
    views=2,
    student_arch=dict(
        embed_dims=24, num_layers=1, num_heads=2, feedforward_channels=48))
