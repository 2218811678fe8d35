# tiny_kdep_synthetic.py for 3 iterations, one checkpoint at the end: the
# base of the FlexibleRunner runs (tiny_kdep_synthetic_fsdp.py,
# tiny_kdep_synthetic_deepspeed.py, benchmarks/strategy_check.py).
_base_ = ['./tiny_kdep_synthetic.py']

train_cfg = dict(_delete_=True, by_epoch=False, max_iters=3)
param_scheduler = []
log_processor = dict(by_epoch=False)
default_hooks = dict(
    logger=dict(interval=1),
    checkpoint=dict(by_epoch=False, interval=3, max_keep_ckpts=-1,
                    save_last=False))
