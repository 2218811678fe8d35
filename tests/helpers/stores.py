"""A teacher store cached as ``tools/cache_teacher.py`` would, from a
(random) CIFAR ResNet-56 on a tiny image folder, for the store-mode config
tests (KDEP and TCS)."""
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from helpers.paths import REPO
from kdep_mm.apis import TeacherCacher
from kdep_mm.registry import DATASETS, MODELS
from tiny_image_folder import make_image_folder


def cache_cifar_r56_store(data: str, store: str, num_views: int,
                          per_class: int) -> Config:
    """Write a 10-class image folder of ``per_class`` 32 px images per class
    at ``data`` and a store of ``num_views`` random views' pooled features
    (field ``feat``) at ``store``, with the teacher and checkpoint name of
    ``configs/kdep/cifar10_r56_to_r20.py``; returns that config."""
    online = Config.fromfile(osp.join(REPO, 'configs', 'kdep',
                                      'cifar10_r56_to_r20.py'))
    make_image_folder(data, num_classes=10, per_class=per_class, size=32)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        teacher = MODELS.build(online.model.teacher)
        teacher.init_weights()
        teacher.eval()
        dataset = DATASETS.build(dict(
            type='CustomDataset', data_root=data,
            pipeline=[dict(type='LoadImageFromFile')]))
        TeacherCacher(
            teacher, dataset, store,
            views=dict(num_views=num_views, view_mode='random',
                       out_size=32),
            outputs=dict(fields=('feat', )),
            run=dict(batch_size=64, progress=False),
            record=dict(teacher_config=online.model.teacher.to_dict(),
                        teacher_checkpoint=online.model.teacher_ckpt),
            data_preprocessor=MODELS.build(
                online.model.data_preprocessor)).run()
    return online
