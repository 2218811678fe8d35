# KDEP's schedule: SGD lr 0.3 at total batch 512, momentum 0.9, weight decay
# 5e-4 on all parameters (BN and bias included), 90 epochs, x0.1 at epochs 30
# and 60, no warm-up.
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.3, momentum=0.9, weight_decay=5e-4))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[30, 60], gamma=0.1)
train_cfg = dict(by_epoch=True, max_epochs=90)
val_cfg = None
test_cfg = None
val_dataloader = None
val_evaluator = None
test_dataloader = None
test_evaluator = None
# lr is scaled by (total batch / 512) with --auto-scale-lr
auto_scale_lr = dict(base_batch_size=512)
