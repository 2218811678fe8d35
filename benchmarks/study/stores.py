"""The teacher-store cells of the store arms (issue 18): KDEP from V
stored views per image against (k), the same view distribution drawn
afresh at every step.

A ``store/v<V>`` cell runs :class:`kdep_mm.apis.TeacherCacher` once over
the 10% pool: the real ResNet-56 (strictly loaded), ``V`` views per image
drawn by ``sample_view`` with the study's ``store_views`` (crop area and
aspect ranges; the same ranges as (k)'s ``RandomResizedCrop``), the pooled
pre-ReLU feature (64-d, float32) of each view. It records the caching time
(CPU and wall seconds of one process with the study's thread count), which
the report adds to the store arms' compute.
"""
import os.path as osp
import time

from .spec import arm_cfg


def store_split(ctx) -> str:
    """The pool list the stores cover and the store arms train on: the
    10% pool; in smoke runs the PCA list (its 4-image pool gives fewer
    features than a 32-d basis needs)."""
    return 'pca' if ctx.smoke else 'pool_10'


def store_path(ctx, views: int) -> str:
    return osp.join(ctx.rdir, 'stores', f'v{views}')


def store_views(study) -> dict:
    """``sample_view`` kwargs of the stores' views (study.py
    ``store_views``), as tuples."""
    sv = study.get('store_views')
    if sv is None:
        raise KeyError('configs/study/study.py: the store arms need '
                       '`store_views` (crop area / aspect ranges)')
    return {k: tuple(v) for k, v in sv.items()}


def use_store(cfg, root: str, views: int) -> None:
    """Point a store arm's config at ``root`` (``views`` views): the
    ``ApplyStoredView`` step of its pipeline and its ``FitBasisHook``."""
    steps = [t for t in cfg.train_dataloader.dataset.pipeline
             if t['type'].endswith('ApplyStoredView')]
    hooks = [h for h in cfg.get('custom_hooks', [])
             if h['type'].endswith('FitBasisHook')]
    if len(steps) != 1 or len(hooks) != 1:
        raise ValueError('a store arm needs one ApplyStoredView step in '
                         'train_dataloader.dataset.pipeline and one '
                         f'FitBasisHook in custom_hooks; got {len(steps)} '
                         f'and {len(hooks)}')
    steps[0]['store']['root'] = root
    hooks[0].update(store=root, num_views=views)


def run_store(cell, ctx) -> dict:
    """Cache the teacher's features of ``V`` views of every 10%-pool image
    (``cell.setting['views']``); the store's summary and its timings."""
    from mmengine.registry import DefaultScope

    from kdep_mm.apis import TeacherCacher
    from kdep_mm.models.teachers import FrozenTeacher
    from kdep_mm.registry import DATASETS, MODELS
    views = int(cell.setting['views'])
    online = arm_cfg(ctx.study, 'f')  # the online KDEP arm: its teacher
    root = store_path(ctx, views)
    t0, c0 = time.perf_counter(), time.process_time()
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        teacher = FrozenTeacher(online.model.teacher.to_dict(),
                                ctx.teacher_ckpt,
                                online.model.get('teacher_revise_keys'))
        dataset = DATASETS.build(dict(
            type='CustomDataset', data_root=ctx.cifar, data_prefix='train',
            ann_file=ctx.files[store_split(ctx)], with_label=True,
            pipeline=[dict(type='LoadImageFromFile')]))
        summary = TeacherCacher(
            teacher, dataset, root,
            views=dict(num_views=views, view_mode='random', out_size=32,
                       view_kwargs=store_views(ctx.study)),
            outputs=dict(fields=('feat', )),
            run=dict(batch_size=100, progress=False),
            record=dict(teacher_config=online.model.teacher.to_dict(),
                        teacher_checkpoint=ctx.teacher_ckpt),
            data_preprocessor=MODELS.build(
                online.model.data_preprocessor)).run()
    return dict(views=views, images=len(dataset), store=root,
                cache_s=round(time.perf_counter() - t0, 2),
                cache_cpu_s=round(time.process_time() - c0, 2),
                store_view_kwargs={k: list(v) for k, v in
                                   store_views(ctx.study).items()},
                summary={k: v for k, v in summary.items()
                         if isinstance(v, (int, float, str, bool))})
