# Shared by the store arms (l, m, n; issue 18): KDEP 10% with no teacher in
# the loop. The ResNet-56's pooled pre-ReLU features of `num_views` random
# views per pool image are cached once by the study's `store/v<V>` cell
# (TeacherCacher, the views of (k)'s distribution: study.py `store_views`);
# the SVD basis is fitted from the store (FitBasisHook(store=...)) and every
# step trains on stored views (ApplyStoredView). The study points
# the pipeline's and the hook's store at the cell's store of
# `study_arm.views` views (benchmarks/study/stores.py: use_store), and the
# hook checks it against the run (dataset, view count, teacher checkpoint,
# field width). By hand, this file trains on a V = 8 store at
# `teacher_store`: the one `python benchmarks/kdep_study.py --only store/v8`
# caches (under benchmarks/study_results/stores/v8).
_base_ = ['./f_kdep_10.py']

num_views = 8
teacher_store = 'work_dirs/stores/study_pool_10_v8'
study_arm = dict(kind='kdep_store', labels=False, data='10%',
                 views=num_views)

model = dict(teacher=None, teacher_ckpt=None, teacher_revise_keys=None,
             aligner=dict(teacher_channels=64))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='kdep_mm.ApplyStoredView',
         store=dict(root=teacher_store,
                    expected=dict(fields={'feat': ((64, ), 'float32')})),
         scale=32),
    dict(type='PackInputs', algorithm_keys=('teacher_feat', )),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', store=teacher_store,
         num_views=num_views, basis_file='svd_basis.pth',
         teacher_checkpoint={{_base_.teacher_ckpt}}),
]
