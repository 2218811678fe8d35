"""A TCS run (store mode) killed by SIGKILL in the middle of an epoch and
resumed with ``tools/train.py --resume`` ends with exactly the state of an
uninterrupted run: student weights, the coordinate system (restored from the
checkpoint, not refitted), the tailoring mask, the schedule counter and the
importance accumulated since the last prune step."""
import os.path as osp
import subprocess
import sys
import textwrap

import torch

from helpers.launch import run_log_text, tool_env
from helpers.models import build_seeded, cifar_resnet_classifier
from tiny_image_folder import make_image_folder
from kdep_mm.utils.checkpoint import safe_torch_load
from helpers.paths import REPO

TRAIN = osp.join(REPO, 'tools', 'train.py')

# the tiny KDEP run (its schedule, checkpoints and seed) as TCS from a store
CONFIG = '''
_base_ = [{tiny_kdep!r}]
custom_imports = dict(imports={imports!r}, allow_failed_imports=False)
teacher_store = {store!r}
model = dict(
    _delete_=True,
    type='kdep_mm.TCSDistiller',
    data_preprocessor=dict(
        type='mmpretrain.ClsDataPreprocessor', mean=[125.3, 123.0, 113.9],
        std=[63.0, 62.1, 66.7], to_rgb=True),
    student=dict(type='kdep_mm.CIFARResNet', depth=8, base_channels=4),
    teacher=None,
    student_channels=16, teacher_channels=32, num_classes=2,
    # prune steps at iterations 3, 6, 9, 12: 12 -> 9 -> 7 -> 6 -> 5 active
    num_coords=12, prune_interval=3, prune_ratio=0.25, min_coords=4)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='kdep_mm.ApplyStoredView', store=dict(root=teacher_store),
         scale=32),
    dict(type='PackInputs', algorithm_keys=('teacher_feat', )),
]
# the base's one worker, re-created every epoch and seeded by
# randomness.seed: the stored views drawn in an epoch do not depend on what
# ran before
train_dataloader = dict(
    dataset=dict(data_root={data!r}, pipeline=train_pipeline))
custom_hooks = [
    dict(type='kdep_mm.FitBasisHook', store=teacher_store,
         num_views=2),
    dict(type='kdep_mm.TCSTailoringHook'),
] + {extra_hooks!r}
'''


def _write_config(path, store, data, kill_at=None):
    extra = [] if kill_at is None else [
        dict(type='kdep_mm.SigkillAtIterHook', at_iter=kill_at)]
    imports = ['kdep_mm'] + (['helpers.hooks'] if kill_at else [])
    with open(path, 'w') as f:
        f.write(textwrap.dedent(CONFIG.format(
            tiny_kdep=osp.join(REPO, 'configs', 'tiny',
                               'tiny_kdep_synthetic.py'),
            imports=imports, store=store, data=data, extra_hooks=extra)))
    return path


def _cmd(config, work_dir, *extra):
    return [sys.executable, TRAIN, config, '--work-dir', work_dir, *extra]


def _make_store(data, store):
    from mmengine.registry import DefaultScope

    from kdep_mm.apis import TeacherCacher
    from kdep_mm.registry import DATASETS, MODELS
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        teacher = build_seeded(cifar_resnet_classifier(num_classes=2))
        dataset = DATASETS.build(dict(
            type='CustomDataset', data_root=data,
            pipeline=[dict(type='LoadImageFromFile')]))
        TeacherCacher(
            teacher.eval(), dataset, store,
            views=dict(num_views=2, view_mode='random', out_size=32),
            outputs=dict(fields=('feat', )),
            run=dict(batch_size=32, progress=False),
            data_preprocessor=MODELS.build(dict(
                type='mmpretrain.ClsDataPreprocessor',
                mean=[125.3, 123.0, 113.9], std=[63.0, 62.1, 66.7],
                to_rgb=True))).run()


def test_tcs_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path):
    data = str(tmp_path / 'data')
    make_image_folder(data, num_classes=2, per_class=8, size=32, seed=0)
    store = str(tmp_path / 'store')
    _make_store(data, store)
    config = _write_config(str(tmp_path / 'tcs.py'), store, data)
    killed = _write_config(str(tmp_path / 'tcs_killed.py'), store, data,
                           kill_at=6)
    full, run = str(tmp_path / 'full'), str(tmp_path / 'run')
    env = tool_env(data)

    # the uninterrupted run and the run killed after iteration 6 (mid
    # epoch 2, right after the prune step at 6), side by side
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT)
             for cmd in (_cmd(config, full), _cmd(killed, run))]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert procs[0].returncode == 0, outs[0][-3000:]
    assert procs[1].returncode == -9, (procs[1].returncode, outs[1][-3000:])
    assert osp.isfile(osp.join(run, 'epoch_1.pth'))
    assert not osp.exists(osp.join(run, 'epoch_2.pth'))
    before_kill = safe_torch_load(osp.join(run, 'epoch_1.pth'))
    sd1 = before_kill['state_dict']
    assert int(sd1['train_iter']) == 4 and int(sd1['mask'].sum()) == 9
    # importance accumulated at iteration 4 is in the checkpoint (it
    # decides the prune step at 6, after the resume)
    assert sd1['_extra_state']['importance'].sum() > 0

    out = subprocess.run(_cmd(config, run, '--resume'), cwd=REPO, env=env,
                         text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:]
    log = run_log_text(run)
    assert 'resumed epoch: 1, iter: 4' in log.replace('Resumed', 'resumed')
    assert 'TCS coordinate system restored from the checkpoint' in log
    assert log.count('TCS coordinate system fitted on') == 1  # before kill

    a = safe_torch_load(osp.join(full, 'epoch_3.pth'))
    b = safe_torch_load(osp.join(run, 'epoch_3.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 12
    sa, sb = a['state_dict'], b['state_dict']
    assert sa.keys() == sb.keys()
    for k in sa:
        if k == '_extra_state':
            assert torch.equal(sa[k]['importance'], sb[k]['importance'])
        else:
            assert torch.equal(sa[k], sb[k]), k
    assert any(k.startswith('student.') for k in sa)
    # the tailoring went on after the resume: 9 -> 7 -> 6 -> 5, same mask
    assert int(sb['mask'].sum()) == 5 and int(sb['train_iter']) == 12
    assert torch.equal(sa['mask'], sb['mask'])
    # the coordinate system is the one fitted before the kill
    for k in ('coords.mean', 'coords.basis', 'coords.eigenvalues',
              'coords.num_fit_samples'):
        assert torch.equal(sd1[k], sb[k]), k
    for k, v in a['optimizer']['state'].items():
        assert torch.equal(v['momentum_buffer'],
                           b['optimizer']['state'][k]['momentum_buffer'])
