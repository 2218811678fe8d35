"""GPU readiness of the step-time benchmarks (issue 18 item 4) and
``benchmarks/gpu_check.sh``, on the CPU.

* One arm process of each benchmark (``--arm``, the code a GPU run
  executes per arm) with ``--amp bf16 --channels-last`` at a tiny batch and
  one step, the ImageNet settings of TCS and the ensemble included: the
  result says bf16 and channels_last and its losses are finite; for one
  arm the bf16 loss is close to, and not equal to, the fp32 one (autocast
  really ran). DMAE's ViT-L -> ViT-B runs at 32 px (4 patches): at 224 px
  one ViT-L arm on a busy 2-core CPU takes minutes; the GPU setting
  differs only by batch and image size.
* ``--device cuda`` on a machine without CUDA is refused naming the option.
* ``gpu_check.sh --smoke`` with the project venv: the page it writes in
  ``$OUT`` (rows and verdicts of the benchmarks run, DMAE stopped at a
  2 s cap and listed as such), its log and env.txt, the runs kept for a
  rerun (bf16 only; about 2 minutes on 2 busy cores). The same script on
  the installed wheelhouse (a stand-in of the GPU machine's site:
  mmcv-lite, no mmdet / mmseg) is in test_gpu_prepare.py.
"""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest

from helpers.paths import REPO

PY = sys.executable


def _arm(script, *args, timeout=300):
    r = subprocess.run([PY, osp.join(REPO, 'benchmarks', script),
                        *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith('RESULT ')]
    assert r.returncode == 0 and lines, r.stdout[-3000:]
    return json.loads(lines[-1][len('RESULT '):])


CL = ('--amp', 'bf16', '--channels-last', '--steps', '1', '--warmup', '0',
      '--threads', '1')


@pytest.mark.parametrize('setting,arm', [('cifar', 'tcs_store'),
                                         ('in1k', 'tcs_online')])
def test_tcs_arm_bf16_channels_last(setting, arm):
    res = _arm('tcs_step_time.py', '--setting', setting, '--arm', arm,
               '--cifar-batch', 2, '--in1k-batch', 2, *CL)
    assert (res['amp'], res['channels_last'], res['batch']) == ('bf16',
                                                                True, 2)
    assert res['size'] == (32 if setting == 'cifar' else 224)
    assert all(math.isfinite(v) for v in res['losses'])


def test_tcs_bf16_loss_is_close_to_fp32_and_not_equal():
    common = ('--setting', 'cifar', '--arm', 'tcs_online', '--cifar-batch',
              4, '--steps', 1, '--warmup', 0, '--threads', 1)
    fp32 = _arm('tcs_step_time.py', *common)['losses'][0]
    bf16 = _arm('tcs_step_time.py', *common, '--amp', 'bf16')['losses'][0]
    assert bf16 != fp32  # the forward really ran in bfloat16
    assert bf16 == pytest.approx(fp32, rel=0.05)


@pytest.mark.parametrize('setting,arm', [('cifar', 'store'),
                                         ('in1k', 'online')])
def test_ensemble_arm_bf16_channels_last(setting, arm):
    res = _arm('ensemble_step_time.py', '--setting', setting, '--arm', arm,
               '--batch-size', 2, *CL)
    assert (res['amp'], res['channels_last'], res['setting']) == (
        'bf16', True, setting)
    assert len(res['losses']) == 1 and math.isfinite(res['losses'][0])


def test_dmae_truncated_arm_bf16_channels_last():
    # ViT-L teacher (blocks 1..18) -> ViT-B student, 32 px: 4 patches, 1
    # visible at 75 % masking
    res = _arm('dmae_step_time.py', '--arm', 'truncated', '--ratio', 75,
               '--batch-size', 2, '--img-size', 32, *CL)
    assert (res['amp'], res['channels_last']) == ('bf16', True)
    assert math.isfinite(res['loss']) and res['flops'] > 0


@pytest.mark.parametrize('script', ['tcs_step_time.py',
                                    'ensemble_step_time.py',
                                    'dmae_step_time.py'])
def test_cuda_refused_without_cuda(script):
    import torch
    if torch.cuda.is_available():
        pytest.skip('this machine has CUDA')
    r = subprocess.run([PY, osp.join(REPO, 'benchmarks', script),
                        '--device', 'cuda'], cwd=REPO, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert '--device cuda: CUDA is not available' in r.stderr


def run_smoke(out, results, only='kdep,tcs,ensemble,dmae', python=None,
              env=None, timeout=900):
    """``gpu_check.sh --smoke`` for the benchmarks ``only`` (bf16 only,
    DMAE capped at 2 s so that the page shows a stopped benchmark);
    ``python``: the interpreter (default: the project venv's)."""
    env = dict(os.environ if env is None else env)
    env.update(OUT=str(out), KDEP_GPU_RESULTS=str(results),
               KDEP_GPU_AMPS='bf16', KDEP_GPU_TIMEOUTS='dmae=2',
               KDEP_GPU_ONLY=only)
    if python:
        env['KDEP_GPU_PY'] = python
    r = subprocess.run(['bash', 'benchmarks/gpu_check.sh', '--smoke'],
                       cwd=REPO, env=env, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    return r.returncode, r.stdout


def check_smoke_page(out, results, log, kdep=False):
    assert sorted(os.listdir(out)) == ['env.txt', 'gpu_check.log',
                                       'performance_gpu.md'], log[-3000:]
    page = open(osp.join(out, 'performance_gpu.md')).read()
    assert page.startswith('**SMOKE RUN**')
    assert '# Performance on a GPU' in page and 'Device: cpu' in page
    rows = [ln for ln in page.splitlines() if (
        ln.startswith('| TCS |') or ln.startswith('| ensemble |')) and
        '(wall s)' in ln]
    assert len(rows) == 6 and all(', bf16 |' in ln for ln in rows), rows
    for what in ('| tcs | TCS from the store / student step (cifar, bf16) |',
                 '| ensemble | ensemble from the store / ViT student step '
                 '(cifar, bf16) |'):
        [v] = [ln for ln in page.splitlines() if ln.startswith(what)]
        assert v.endswith('**MET** |') or v.endswith('**NOT MET** |')
    assert ('- **dmae (bf16)**: stopped at its time limit (2 s) before it '
            'finished') in page
    if kdep:
        assert '| KDEP |' in page and '| kdep |' in page
    # after the table: the runner/strategy runs (benchmarks/strategy_check.py)
    assert page.index('## Runners and strategies') > page.index(
        '# Performance on a GPU')
    [fsdp] = [ln for ln in page.splitlines()
              if ln.startswith('| kdep_mm.FlexibleRunner + FSDP')]
    assert '| ok (3 iterations, checkpoint written atomically) |' in fsdp
    # what a rerun would reuse: the finished runs, not the stopped one
    kept = sorted(os.listdir(results))
    assert 'tcs__bf16.json' in kept and 'ensemble__bf16.json' in kept
    assert 'dmae__bf16.json' not in kept
    env = open(osp.join(out, 'env.txt')).read()
    assert f'kdep_mm 0.1.0 {REPO}/kdep_mm/__init__.py' in env  # the tree's
    assert 'gpu_check' in open(osp.join(out, 'gpu_check.log')).read()
    return page, env


# The smoke run of the whole script (run_smoke + check_smoke_page) is
# tests/test_benchmarks/test_gpu_prepare.py::
# test_gpu_check_smoke_on_the_installed_wheels: on the python the GPU
# install makes, or on the project's venv where no wheelhouse can be built.


def test_losses_and_tcs_targets_stay_float32_under_bf16_autocast():
    # what --amp bf16 relies on: the losses (masked MSE of TCS, soft-target
    # KL of the ensemble, normalised distance of DMAE) and TCS's teacher
    # coordinates (the PCA projection) are computed in float32 under
    # autocast, equal to the float32 computation on the same inputs
    import torch

    from kdep_mm.models.losses import (MaskedMSELoss, NormalizedDistanceLoss,
                                       SoftTargetKLLoss)
    sys.path.insert(0, osp.join(REPO, 'benchmarks'))
    import tcs_step_time as ts
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 10, generator=g).bfloat16()
    b = torch.randn(4, 10, generator=g).bfloat16()
    mask = (torch.arange(10) < 7).float()
    probs = torch.softmax(b.float(), 1)
    cases = ((MaskedMSELoss(), (a, b, mask)),
             (SoftTargetKLLoss(temperature=2.0), (a, probs)),
             (NormalizedDistanceLoss('l2'), (a, b)))
    for loss, args in cases:
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = loss(*args)
        want = loss(*[x.float() for x in args])
        assert got.dtype == torch.float32, type(loss).__name__
        assert got.item() == pytest.approx(want.item(), rel=1e-6)
    model, _, _ = ts.build_model('cifar', 'tcs_store')
    f = torch.randn(4, model.teacher_channels, generator=g)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        c = model.teacher_coordinates(f)
    assert c.dtype == torch.float32
    assert torch.equal(c, model.teacher_coordinates(f))
