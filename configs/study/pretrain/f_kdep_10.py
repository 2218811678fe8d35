# Study arm (f): KDEP on 10% of the pool, labels unused: SVD alignment of the
# teacher's pooled pre-ReLU feature to the student's dim (k = C_s) + power
# temperature scaling (T = 0.1, n = 3), MSE.
# Small-scale settings (tools/kdep_demo.py): loss weight 5 and lr 0.02 (the
# paper's 20 and a large lr collapsed a 32-d student at this scale).
# The basis: FitBasisHook fits it before the first iteration from one pass
# of the teacher over the training data; the study fits it once on the 10%
# pool (its 'pca' cell) and hands the file to every KDEP run (basis_file).
_base_ = ['../_base_/distill_cifar10_pool.py']

study_arm = dict(kind='kdep', labels=False, data='10%')

model = dict(
    type='kdep_mm.KDEPDistiller',
    aligner=dict(
        type='kdep_mm.SVDAligner',
        student_channels={{_base_.student_channels}},
        teacher_channels=64,
        temperature=0.1,
        power=3),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=5.))
custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', num_samples=None,
         basis_file='svd_basis.pth'),
]
