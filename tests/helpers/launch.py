"""Helpers for tests that start the tools in subprocesses."""
import contextlib
import glob
import importlib
import os
import os.path as osp
import socket
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TESTS = osp.join(REPO, 'tests')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tool_modules(folder, *names):
    """The modules ``names`` of a tools folder (e.g. tools/analysis_tools),
    imported by name with ``folder`` first on ``sys.path`` while the
    context lasts: ``{name: module}``."""
    sys.path.insert(0, folder)
    try:
        yield {name: importlib.import_module(name) for name in names}
    finally:
        sys.path.remove(folder)


def run_log_text(work_dir) -> str:
    """The text of the run logs in ``work_dir`` (``<timestamp>/*.log``: a
    run and the runs that resumed it), in timestamp order."""
    text = ''
    for path in sorted(glob.glob(osp.join(work_dir, '*', '*.log'))):
        with open(path) as f:
            text += f.read()
    return text


def helpers_env(**extra) -> dict:
    """``os.environ`` with the repository and ``tests/`` first on
    ``PYTHONPATH``, so that a tool subprocess can import the test-only
    modules (``custom_imports=dict(imports=['kdep_mm', 'helpers.hooks'])``).
    """
    env = dict(os.environ)
    path = [REPO, TESTS] + ([env['PYTHONPATH']] if env.get('PYTHONPATH')
                            else [])
    env['PYTHONPATH'] = os.pathsep.join(path)
    env.update(extra)
    return env


def tool_env(data_root, **extra) -> dict:
    """Environment for a tool subprocess on the tiny synthetic data.

    One thread per process: bitwise reproducible CPU kernels, and two ranks
    do not fight over two cores. ``PYTHON`` makes the launch scripts use the
    current interpreter.
    """
    env = helpers_env()
    env['KDEP_TINY_DATA'] = str(data_root)
    env['OMP_NUM_THREADS'] = '1'
    env['MKL_NUM_THREADS'] = '1'
    env['PYTHON'] = sys.executable
    env.pop('LOCAL_RANK', None)
    env.update(extra)
    return env


def run_together(cmds, timeout=300):
    """Run ``[(argv, env), ...]`` at the same time from the repository root
    (2 cores; a tool spends most of its start-up in single-threaded
    imports) and return their outputs (stdout + stderr); an assertion names
    a command that failed, with the end of its output."""
    import signal
    import subprocess

    # each in its own session, so that a timed-out launcher is killed with
    # the workers it started (torchrun's children would outlive it)
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, text=True,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              start_new_session=True)
             for cmd, env in cmds]
    outs = []
    try:
        for (cmd, _), proc in zip(cmds, procs):
            out, _ = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, (
                f'{" ".join(map(str, cmd))} exited with {proc.returncode}:'
                f'\n{out[-6000:]}')
            outs.append(out)
    finally:
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the group's leftovers
            except ProcessLookupError:
                pass
            proc.wait()
    return outs
