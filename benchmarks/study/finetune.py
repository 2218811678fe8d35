"""Full fine-tuning of the final export: BCCD RetinaNet and CamVid FCN,
each with its own Runner config (``configs/study/downstream/``)."""
import os.path as osp
import time

import torch
from mmengine.hooks import Hook

from .cellstore import load_result_id
from .runners import build_runner, close_runner, finish_runner_cfg

TASK_METRIC = {
    'bccd': ('pascal_voc/mAP', 100.0),
    'camvid': ('mIoU', 1.0),
}


def set_downstream_backbone(cfg, task, depth, width, init_ckpt):
    """Width, depth and init of the downstream model's backbone."""
    dim = 4 * width
    bb = cfg.model.backbone
    bb.update(depth=depth, base_channels=width)
    if init_ckpt is None:
        bb.pop('init_cfg', None)  # the backbone's own random init
    else:
        bb.init_cfg = dict(type='Pretrained', checkpoint=init_ckpt,
                           prefix='backbone.')
    if task == 'bccd':
        cfg.model.neck.in_channels = [dim]
    elif task == 'camvid':
        cfg.model.decode_head.in_channels = dim


class LoadedExportCheck(Hook):
    """Before the first step: the backbone holds the export's weights."""

    priority = 'HIGHEST'

    def __init__(self, export):
        self.export, self.ok = export, None

    def before_train(self, runner):
        from kdep_mm.utils.checkpoint import safe_torch_load
        sd = safe_torch_load(self.export, map_location='cpu')
        sd = sd.get('state_dict', sd)
        got = runner.model.backbone.state_dict()
        want = {k[len('backbone.'):]: v for k, v in sd.items()
                if k.startswith('backbone.')}
        self.ok = set(got) == set(want) and all(
            torch.equal(got[k].cpu(), want[k]) for k in want)
        if not self.ok:
            raise RuntimeError(f'the fine-tuned backbone does not start from '
                               f'{self.export}')


def run_finetune(cell, ctx):
    from mmengine.config import Config
    from .spec import STUDY_DIR
    study = ctx.study
    st = study.students[cell.student]
    task = cell.task
    pre = load_result_id(ctx.rdir, cell.dep_ids[0])
    init = pre['milestones'][-1]['export']
    if init is not None and not osp.isfile(init):
        raise FileNotFoundError(f'{cell.id}: the export {init} is gone; '
                                f'delete {cell.dep_ids[0]} to rerun it')
    cfg = Config.fromfile(osp.join(STUDY_DIR, study.finetune[task].config))
    set_downstream_backbone(cfg, task, st.depth, st.base_channels, init)
    trd, ted = cfg.train_dataloader.dataset, cfg.test_dataloader.dataset
    trd.data_root = ted.data_root = ctx.bccd if task == 'bccd' else \
        ctx.camvid
    if ctx.smoke:
        n = study.smoke.finetune_iters
        cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=n,
                             val_interval=n + 1)
        cfg.param_scheduler = None
        ted.indices = 2
    work_dir = osp.join(ctx.runs, cell.fname)
    finish_runner_cfg(cfg, ctx, work_dir, cell.fname, cell.seed)
    t0 = time.perf_counter()
    runner = build_runner(cfg, ctx)
    check = None
    if init is not None:
        check = LoadedExportCheck(init)
        runner.register_hook(check)
    build_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    runner.train()
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    metrics = runner.test()
    test_s = time.perf_counter() - t0
    iters = runner.iter
    close_runner(runner)
    key, scale = TASK_METRIC[task]
    if key not in metrics:
        raise KeyError(f'{task}: no {key!r} among the test metrics '
                       f'{sorted(metrics)}')
    return dict(score=round(float(metrics[key]) * scale, 3),
                metric=study.finetune[task].metric, export=init,
                loaded_export=None if check is None else check.ok,
                metrics={k: float(v) for k, v in metrics.items()
                         if isinstance(v, (int, float))},
                build_s=round(build_s, 2), train_s=round(train_s, 2),
                train_cpu_s=round(train_cpu_s, 2), test_s=round(test_s, 2),
                iters=iters)
