# TCS at CIFAR scale into a narrower student: ResNet-20 with 8 base channels
# (8/16/32, a 32-d pooled feature; as configs/kdep/cifar10_r56_to_r20_w8.py),
# so the tailored coordinate system really reduces the teacher's 64 dims:
# k = num_coords = 32 = min(C_t = 64, C_s = 32), the teacher's 32 leading
# principal directions (a larger k is refused: the student map P has rank
# <= 32). The tailoring schedule keeps the CIFAR config's timing (a prune
# step every 5 epochs, 10% of the active coordinates) and stops at half of
# k, 16 coordinates.
#
# Same teacher, data and store as configs/tcs/cifar10_r56_to_r20_tcs.py
# (the stored teacher features do not depend on the student), so the store
# cached for that config is reused as is:
#   python tools/cache_teacher.py configs/kdep/cifar10_r56_to_r20.py \
#       --store work_dirs/stores/cifar10_r56_feat_v8 --views 8 \
#       --view-mode random --out-size 32 --fields feat
#   python tools/train.py configs/tcs/cifar10_r56_to_r20_w8_tcs.py
# (KDEP_TCS_STORE=DIR points both the pipeline and the fit hook elsewhere.)
_base_ = ['./cifar10_r56_to_r20_tcs.py']

model = dict(
    student=dict(type='kdep_mm.CIFARResNet', depth=20, base_channels=8),
    num_coords=32,  # = min(C_t = 64, C_s = 32)
    min_coords=16,
)
