"""torchrun's elastic restart resumes a 2-rank run from its last checkpoint
and ends with the weights of an uninterrupted run.

Two gloo ranks on CPU train the tiny KDEP config under
``MAX_RESTARTS=1 tools/dist_train.sh CONFIG 2`` for 6 iterations (16
images, 4 a rank, so 2 iterations an epoch, shuffled by the seeded
``DefaultSampler``; random flips in a dataloader worker seeded by the seed
and the rank), with a checkpoint every 2 iterations and the learning rate
cut after iteration 3. In one run rank 1 SIGKILLs itself after iteration 5
of the first attempt (``helpers.hooks.SigkillAtIterHook``); torchrun stops
rank 0, starts both again with ``TORCHELASTIC_RESTART_COUNT=1``, and
``tools/train.py`` resumes from ``iter_4.pth`` (the work directory's
``last_checkpoint``): model, optimizer (SGD momentum), scheduler, the
aligner's SVD basis, and the dataloader advanced by 4 batches across the
epoch boundary. The other run, the same command without the kill, is the
reference.

Bit-exact equality is expected and checked: one thread a process, gloo's
all-reduce of 2 ranks adds the same two tensors in the same order, and
everything that shapes iterations 5-6 is restored or re-derived from the
seed (sampler order from seed + epoch, worker augmentation from seed + rank,
re-created every epoch).
"""
import glob
import os.path as osp
import textwrap

import torch

from helpers.hooks import CUSTOM_IMPORTS
from helpers.launch import free_port, run_log_text, run_together, tool_env
from helpers.paths import REPO
from tiny_image_folder import make_image_folder

from kdep_mm.utils.checkpoint import safe_torch_load

CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')
DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')


def _write_config(path, kill):
    hooks = ["dict(type='kdep_mm.FitBasisHook', num_samples=None)"]
    if kill:
        hooks.append("dict(type='kdep_mm.SigkillAtIterHook', at_iter=5, "
                     'rank=1, first_attempt_only=True)')
    with open(path, 'w') as f:
        f.write(textwrap.dedent(f'''
            _base_ = [{CONFIG!r}]
            {CUSTOM_IMPORTS}
            custom_hooks = [{', '.join(hooks)}]
            train_cfg = dict(
                _delete_=True, type='IterBasedTrainLoop', max_iters=6)
            param_scheduler = dict(
                _delete_=True, type='MultiStepLR', by_epoch=False,
                milestones=[3], gamma=0.1)
            default_hooks = dict(checkpoint=dict(
                by_epoch=False, interval=2, max_keep_ckpts=-1))
        '''))


def test_killed_rank_restarts_resumes_and_matches_uninterrupted(tmp_path):
    data = tmp_path / 'data'
    make_image_folder(str(data), num_classes=2, per_class=8, size=32, seed=0)
    cmds, work = [], {}
    for name, kill in (('full', False), ('elastic', True)):
        config = str(tmp_path / f'{name}_cfg.py')
        _write_config(config, kill)
        work[name] = tmp_path / name
        env = tool_env(data, PORT=str(free_port()), MAX_RESTARTS='1',
                       RDZV_ID=name)
        cmds.append((['bash', DIST_TRAIN, config, '2', '--work-dir',
                      str(work[name])], env))
    outs = dict(zip(('full', 'elastic'), run_together(cmds)))
    full, elastic = work['full'], work['elastic']

    # the reference ran once; the elastic run twice: rank 1 killed by
    # SIGKILL, then the whole group restarted and resumed from iter_4
    assert 'Restarted attempt' not in outs['full']
    assert len(glob.glob(str(full / '*' / '*.log'))) == 1
    assert len(glob.glob(str(elastic / '*' / '*.log'))) == 2
    out = outs['elastic']
    # torchrun names the first failure it saw: rank 1's SIGKILL, or rank
    # 0's gloo error on the connection rank 1 left
    assert ('failed (exitcode: -9) local_rank: 1' in out
            or 'failed (exitcode: 1) local_rank: 0' in out), out[-6000:]
    resumed = ('Restarted attempt (TORCHELASTIC_RESTART_COUNT=1): resuming '
               f'from {elastic / "iter_4.pth"}.')
    assert out.count(resumed) == 2, out[-6000:]  # both ranks
    log = run_log_text(elastic)
    assert 'resumed epoch: 0, iter: 4' in log.replace('Resumed', 'resumed')
    assert 'Advance dataloader 4 steps' in log
    assert 'aligner basis restored from the checkpoint' in log

    a = safe_torch_load(str(full / 'iter_6.pth'))
    b = safe_torch_load(str(elastic / 'iter_6.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 6
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for k in a['state_dict']:
        assert torch.equal(a['state_dict'][k], b['state_dict'][k]), k
    momentum = [(s['momentum_buffer'], t['momentum_buffer']) for s, t in zip(
        a['optimizer']['state'].values(), b['optimizer']['state'].values())]
    assert momentum and all(torch.equal(s, t) for s, t in momentum)
    assert a['param_schedulers'] == b['param_schedulers']
    # iterations 5-6 moved the student: the equality is not vacuous
    c = safe_torch_load(str(elastic / 'iter_4.pth'))
    assert any(not torch.equal(c['state_dict'][k], b['state_dict'][k])
               for k in b['state_dict'] if k.startswith('student.'))
