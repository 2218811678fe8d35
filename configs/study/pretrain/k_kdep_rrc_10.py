# Study arm (k): KDEP 10% (f) with the views a teacher store draws, the
# online reference of the store arms (l, m, n; issue 18): every step sees a
# fresh random-resized crop (area 64-100% of the 32 px image, aspect 3/4 to
# 4/3, bilinear, back to 32 px) + horizontal flip, the distribution of
# kdep_mm.datasets.store.sample_view with the study's `store_views`, instead
# of (f)'s pad-4 crop. Its SVD basis is fitted on its own pipeline (one
# teacher pass over the 10% pool), as the store arms fit theirs from their
# views. Setting (lr, loss weight): (f)'s sweep (study.py: sweep_from).
_base_ = ['./f_kdep_10.py']

study_arm = dict(kind='kdep', labels=False, data='10%', basis='own')

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=32, crop_ratio_range=(0.64, 1.0),
         aspect_ratio_range=(3. / 4., 4. / 3.), interpolation='bilinear'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', num_samples=None,
         basis_file='svd_basis.pth'),
]
