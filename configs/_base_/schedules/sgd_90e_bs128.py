# The CIFAR-scale schedule of the KDEP and TCS configs: KDEP's schedule
# (SGD, momentum 0.9, weight decay 5e-4 on all parameters, 90 epochs, x0.1
# at 30 and 60, no warm-up) scaled to batch 128 (lr 0.1; --auto-scale-lr
# for other batch sizes), validation every 10 epochs.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[30, 60], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=90, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
