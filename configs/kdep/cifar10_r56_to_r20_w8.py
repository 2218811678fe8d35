# KDEP at CIFAR scale into a narrower student: ResNet-20 with 8 base channels
# (32-d pooled feature), so the SVD really reduces the teacher's 64 dims to
# the top-32 principal directions.
_base_ = ['./cifar10_r56_to_r20.py']

model = dict(
    student=dict(type='kdep_mm.CIFARResNet', depth=20, base_channels=8))
