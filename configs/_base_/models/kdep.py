# KDEP (He et al., "Knowledge Distillation as Efficient Pre-training",
# CVPR 2022) without its student and teacher: the teacher's pooled pre-ReLU
# feature f_t is aligned to the student's width by its top-k principal
# directions (target = PTS((f_t - mu) @ V_k), k = C_s; mu and V_k fitted once
# before training by FitBasisHook into work_dir/svd_basis.pth, reused and
# restored on resume), power temperature scaling T = 0.1, n = 3, and an MSE
# with weight 20 matches the student's pooled pre-ReLU feature to it.
# List this file beside the runtime, data and teacher bases and add the
# student and the teacher by reference; the aligner's two widths are
# inferred from them (or given as aligner.student_channels / teacher_channels).
model = dict(
    type='kdep_mm.KDEPDistiller',
    aligner=dict(type='kdep_mm.SVDAligner', temperature=0.1, power=3),
    distill_loss=dict(type='kdep_mm.FeatureMSELoss', loss_weight=20.))
custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', num_samples=None,
         basis_file='svd_basis.pth'),
]
