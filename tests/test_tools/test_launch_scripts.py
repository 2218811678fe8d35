"""The commands tools/dist_train.sh and tools/slurm_requeue_train.sh build,
run against stubs that record their arguments: ``PYTHON`` (which
``tools/_launch.sh`` runs as ``$PYTHON -m torch.distributed.run ...``) and
``srun`` / ``scontrol`` first on ``PATH``. No torchrun, no Slurm: the
launch itself is tested by tests/integration/test_elastic_restart.py (a
real torchrun restart) and test_dist_agreement.py."""
import os
import os.path as osp
import signal
import subprocess
import time

import pytest

from helpers.paths import REPO

DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')
REQUEUE = osp.join(REPO, 'tools', 'slurm_requeue_train.sh')
# the launch variables a test must not inherit from the machine it runs on
LAUNCH_VARS = ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT', 'PORT',
               'MAX_RESTARTS', 'RDZV_ENDPOINT', 'RDZV_ID', 'SLURM_JOB_ID',
               'SLURM_RESTART_COUNT', 'SRUN_ARGS',
               'TORCH_DISABLE_SHARE_RDZV_TCP_STORE')


def _stub(path, body):
    with open(path, 'w') as f:
        f.write('#!/usr/bin/env bash\n' + body)
    os.chmod(path, 0o755)
    return str(path)


@pytest.fixture
def stub_env(tmp_path):
    """Environment with stub ``PYTHON``, ``srun`` and ``scontrol``: each
    writes its arguments, one a line, to ``tmp_path/<name>.args``; the
    Python stub also ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE``; ``srun`` then
    runs ``$SRUN_STUB_THEN`` (e.g. ``sleep 30``), ``scontrol`` kills the
    ``srun`` stub (as Slurm ends the job steps on a requeue)."""
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    rec = f'printf "%s\\n" "$@" > {tmp_path}/$(basename "$0").args\n'
    python = _stub(bin_dir / 'python', rec + (
        f'echo "${{TORCH_DISABLE_SHARE_RDZV_TCP_STORE-unset}}" '
        f'> {tmp_path}/python.share_store\n'))
    _stub(bin_dir / 'srun', rec + f'echo $$ > {tmp_path}/srun.pid\n'
          'exec bash -c "${SRUN_STUB_THEN:-true}"\n')
    _stub(bin_dir / 'scontrol',
          rec + f'kill -TERM "$(cat {tmp_path}/srun.pid)"\n')
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env['PATH'] = f'{bin_dir}{os.pathsep}{env["PATH"]}'
    env['PYTHON'] = python
    return env


def _args(tmp_path, name):
    with open(tmp_path / f'{name}.args') as f:
        return f.read().splitlines()


def _dist_train(env, **launch):
    env = dict(env, **launch)
    return subprocess.run(
        ['bash', DIST_TRAIN, 'cfg.py', '2', '--work-dir', 'w'],
        env=env, capture_output=True, text=True, timeout=30)


def _torchrun_tail():
    return [osp.join(REPO, 'tools', 'train.py'), 'cfg.py', '--launcher',
            'pytorch', '--work-dir', 'w']


def test_single_node_default(stub_env, tmp_path):
    out = _dist_train(stub_env)
    assert out.returncode == 0, out.stderr
    assert _args(tmp_path, 'python') == [
        '-m', 'torch.distributed.run', '--nnodes=1', '--nproc_per_node=2',
        '--max-restarts=0', '--node_rank=0', '--master_addr=127.0.0.1',
        '--master_port=29500'
    ] + _torchrun_tail()


def test_static_multi_node(stub_env, tmp_path):
    out = _dist_train(stub_env, NNODES='2', NODE_RANK='1',
                      MASTER_ADDR='node0', MASTER_PORT='29600')
    assert out.returncode == 0, out.stderr
    assert _args(tmp_path, 'python')[2:8] == [
        '--nnodes=2', '--nproc_per_node=2', '--max-restarts=0',
        '--node_rank=1', '--master_addr=node0', '--master_port=29600'
    ]


def test_elastic_uses_c10d_rendezvous_and_an_unshared_store(
        stub_env, tmp_path):
    out = _dist_train(stub_env, NNODES='2', MASTER_ADDR='node0', PORT='29600',
                      MAX_RESTARTS='3', SLURM_JOB_ID='77')
    assert out.returncode == 0, out.stderr
    assert _args(tmp_path, 'python') == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--nproc_per_node=2',
        '--max-restarts=3', '--rdzv-backend=c10d',
        '--rdzv-endpoint=node0:29600', '--rdzv-id=77'
    ] + _torchrun_tail()
    with open(tmp_path / 'python.share_store') as f:
        assert f.read().strip() == '1'
    # a node range with an explicit endpoint and id
    out = _dist_train(stub_env, NNODES='1:4', RDZV_ENDPOINT='host:1234',
                      RDZV_ID='job')
    assert out.returncode == 0, out.stderr
    assert _args(tmp_path, 'python')[2:8] == [
        '--nnodes=1:4', '--nproc_per_node=2', '--max-restarts=0',
        '--rdzv-backend=c10d', '--rdzv-endpoint=host:1234', '--rdzv-id=job'
    ]
    # the static launch leaves the store shared (torchrun's default)
    _dist_train(stub_env)
    with open(tmp_path / 'python.share_store') as f:
        assert f.read().strip() == 'unset'


@pytest.mark.parametrize('launch, message', [
    (dict(NNODES='2'), 'MASTER_ADDR is not set: NNODES=2 needs'),
    (dict(NNODES='two'), "NNODES must be a node count N or a range MIN:MAX, "
     "got 'two'"),
    (dict(NNODES='0'), "NNODES must be an integer in [1, inf], got '0'"),
    (dict(NNODES='4:2', RDZV_ENDPOINT='h:1'),
     "NNODES (MAX) must be an integer in [4, inf], got '2'"),
    (dict(NNODES='2', NODE_RANK='2', MASTER_ADDR='h'),
     "NODE_RANK must be an integer in [0, 1], got '2'"),
    (dict(NODE_RANK='x'), "NODE_RANK must be an integer in [0, 0], got 'x'"),
    (dict(MAX_RESTARTS='-1'), "MAX_RESTARTS must be an integer in [0, inf], got '-1'"),
    (dict(PORT='99999'), "PORT/MASTER_PORT must be an integer in [1, 65535], got '99999'"),
    (dict(PORT='1', MASTER_PORT='2'), 'PORT (1) and MASTER_PORT (2) differ'),
])
def test_bad_settings_name_the_variable(stub_env, tmp_path, launch, message):
    out = _dist_train(stub_env, **launch)
    assert out.returncode == 2
    assert message in out.stderr, out.stderr
    assert not osp.exists(tmp_path / 'python.args')  # torchrun never ran


def test_bad_process_count(stub_env, tmp_path):
    out = subprocess.run(['bash', DIST_TRAIN, 'cfg.py', 'eight'],
                         env=stub_env, capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert "GPUS must be an integer in [1, inf], got 'eight'" in out.stderr


def _requeue_script(env, **extra):
    env = dict(env, SLURM_JOB_ID='4242', SLURM_SUBMIT_DIR=REPO, **extra)
    return subprocess.Popen(
        ['bash', REQUEUE, 'cfg.py', 'work', '--amp'], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_requeue_script_header_and_srun_command(stub_env, tmp_path):
    with open(REQUEUE) as f:
        header = [ln for ln in f if ln.startswith('#SBATCH')]
    assert '#SBATCH --requeue\n' in header
    assert any(ln.startswith('#SBATCH --signal=B:USR1@') for ln in header)
    proc = _requeue_script(stub_env, SRUN_ARGS='--exclusive')
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert 'job 4242, start 0' in out
    assert _args(tmp_path, 'srun') == [
        '--kill-on-bad-exit=1', '--exclusive', stub_env['PYTHON'], '-u',
        osp.join(REPO, 'tools', 'train.py'), 'cfg.py', '--work-dir=work',
        '--launcher=slurm', '--amp'
    ]
    assert not osp.exists(tmp_path / 'scontrol.args')
    # srun's exit status is the job's
    proc = _requeue_script(stub_env, SRUN_STUB_THEN='exit 3')
    proc.communicate(timeout=30)
    assert proc.returncode == 3


def test_requeue_script_requeues_on_usr1(stub_env, tmp_path):
    proc = _requeue_script(stub_env, SRUN_STUB_THEN='sleep 60',
                           SLURM_RESTART_COUNT='2')
    try:
        deadline = time.monotonic() + 20
        while not osp.exists(tmp_path / 'srun.pid'):
            assert time.monotonic() < deadline, 'srun stub never started'
            time.sleep(0.05)
        start = time.monotonic()
        proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@180 sends
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert 'job 4242, start 2' in out
    assert 'SIGUSR1 (time limit near): requeueing job 4242' in out
    assert _args(tmp_path, 'scontrol') == ['requeue', '4242']
    # the script waited for srun, which the (stub) requeue ended
    assert proc.returncode == 128 + signal.SIGTERM
    assert time.monotonic() - start < 15
