"""benchmarks/tcs_ssl_gpu.sh in smoke mode, on the CPU: the same code path
as on the GPU (a MoCo v2 probe, the epochs planned from it, the MoCo run
through tools/train.py, then the TCS study's SSL arm from that checkpoint
with the SSL store it needs), at batch 8 on 16 images and the study's
``--smoke`` sizes."""
import json
import os
import os.path as osp
import subprocess

import pytest
from helpers.paths import REPO

SCRIPT = osp.join(REPO, 'benchmarks', 'tcs_ssl_gpu.sh')


def test_usage_error_names_the_modes():
    proc = subprocess.run(['bash', SCRIPT, '--bogus'], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2
    assert '--smoke | --prepare' in proc.stderr


def test_smoke_pretrains_moco_and_runs_the_ssl_arm(tmp_path):
    from shared_data import unpack_shared
    try:
        unpack_shared('cifar10_jpeg.tar.gz')
    except FileNotFoundError as err:
        pytest.skip(str(err))
    from kdep_mm.datasets.store.format import read_manifest
    from kdep_mm.utils.checkpoint import file_sha256
    out, rdir = tmp_path / 'out', tmp_path / 'res'
    proc = subprocess.run(
        ['bash', SCRIPT, '--smoke'], cwd=REPO, capture_output=True,
        text=True, timeout=900,
        env=dict(os.environ, OUT=str(out), KDEP_GPU_RESULTS=str(rdir)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert sorted(os.listdir(out)) == ['cells', 'env.txt', 'tcs_ssl_gpu.log',
                                       'teacher.pth', 'teacher.pth.json']
    # only the SSL cells come back (the study's others stay committed)
    assert sorted(os.listdir(out / 'cells')) == [
        'main__tcs_ssl__s0.json', 'store__ssl_v2.json']
    rec = json.loads((out / 'teacher.pth.json').read_text())
    # the epochs fill what the budget leaves, capped (smoke: 1)
    assert rec['epoch_s'] == pytest.approx(2 * rec['iter_s'])
    assert rec['epochs'] == min(1, int(rec['train_budget_s'] //
                                       rec['epoch_s'])) == 1
    assert (out / 'teacher.pth').read_bytes() == (
        rdir / 'moco' / 'epoch_1.pth').read_bytes()
    sha = file_sha256(str(out / 'teacher.pth'))
    main = json.loads((out / 'cells' / 'main__tcs_ssl__s0.json').read_text())
    store = json.loads((out / 'cells' / 'store__ssl_v2.json').read_text())
    for cell in (main, store):
        assert cell['teacher_sha256'] == dict(ssl=sha)
        assert cell['ssl_teacher_record'] == rec
    assert main['arm'] == 'tcs_ssl' and 0 <= main['test_top1'] <= 100
    assert main['device'] == 'cpu'
    # the SSL store: that teacher's features on the views of the study's
    # store (the store TCS online reads must come from the teacher it runs)
    work = rdir / 'work'
    man = read_manifest(str(work / 'store_ssl_v2'))
    assert man['teacher_checkpoint_sha256'] == sha
    assert man['views_from']['root'] == str(work / 'store_v2')


def test_plan_epochs_by_hand(tmp_path, capsys):
    """The epochs that fit: floor(budget / (last logged iteration time x
    iterations per epoch)), capped, from the probe's scalars.json."""
    import sys
    sys.path.insert(0, osp.join(REPO, 'tools', 'gpu'))
    import plan_epochs as P
    with pytest.raises(SystemExit, match='no logged iteration time'):
        P.plan(str(tmp_path), 195, 200, 300)
    vis = tmp_path / '20261202_000000' / 'vis_data'
    vis.mkdir(parents=True)
    (vis / 'scalars.json').write_text(
        '{"lr": 0.06, "time": 0.50, "data_time": 0.1, "step": 10}\n'
        '{"lr": 0.06, "time": 0.04, "data_time": 0.01, "step": 40}\n')
    p = P.plan(str(tmp_path), 195, 200, 300)
    # 0.04 s x 195 = 7.8 s an epoch; 300 // 7.8 = 38
    assert p['epoch_s'] == pytest.approx(7.8) and p['epochs'] == 38
    assert p['max_iters'] == 38 * 195 and p['probe_iters'] == 40
    assert P.plan(str(tmp_path), 195, 20, 300)['epochs'] == 20  # capped
    assert P.plan(str(tmp_path), 195, 20, -5)['epochs'] == 0
    P.main([str(tmp_path), '195', '200', '300', str(tmp_path / 'p.json')])
    assert capsys.readouterr().out.split() == ['38', '0.0400', '7.8']
    assert json.loads((tmp_path / 'p.json').read_text()) == p
