# The tiny KDEP run (tiny_kdep_synthetic_3iter.py: 3 iterations) under
# kdep_mm.FlexibleRunner + FSDPStrategy, for the FSDP test on CPU (2 gloo
# ranks):
#   tools/dist_train.sh configs/tiny/tiny_kdep_synthetic_fsdp.py 2
# FSDP1 refuses the CPU unless `device_id` names it (torch 2.14: "FSDP needs
# a non-CPU accelerator device"); on GPUs drop `device_id` (mmengine passes
# LOCAL_RANK). use_orig_params=True: the student keeps its own parameters
# (the frozen teacher is outside FSDP; see docs/scaling.md). A full state
# dict: rank 0 writes one iter_N.pth that tools/export_student.py reads.
_base_ = ['./tiny_kdep_synthetic_3iter.py']

runner_type = 'kdep_mm.FlexibleRunner'  # atomic checkpoint writes kept
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel', device_id='cpu',
        use_orig_params=True),
    state_dict_cfg='full')
