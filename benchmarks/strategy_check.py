"""Three-iteration training runs of the tiny KDEP model under each runner
and strategy (issue 21): Runner + bf16 AMP, kdep_mm.FlexibleRunner + FSDP
(one process) and kdep_mm.FlexibleRunner + DeepSpeed ZeRO-2 bf16 (when
deepspeed imports), each through ``tools/train.py`` / ``tools/dist_train.sh``
with a time limit; prints a markdown section (outcome, wall time, losses,
peak memory as mmengine logs it) for ``benchmarks/gpu_check.sh`` to append
to its page.

    python benchmarks/strategy_check.py --device cuda --budget-s 90 \\
        --work-dir work_dirs/gpu_check/strategies >> PAGE
    python benchmarks/strategy_check.py --device cpu ...   # the smoke run

On the CPU, FSDP gets ``device_id='cpu'`` (FSDP1 refuses the CPU
otherwise) and no mixed precision; on the GPU ``device_id=0`` and bf16
mixed precision.
"""
import argparse
import importlib.util
import os
import os.path as osp
import re
import socket
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic_fsdp.py')
DS_CONFIG = osp.join(REPO, 'configs', 'tiny',
                     'tiny_kdep_synthetic_deepspeed.py')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def runs(device: str):
    """(key, name, command, reason to skip or None) of the three runs."""
    train = [sys.executable, osp.join(REPO, 'tools', 'train.py')]
    dist = ['bash', osp.join(REPO, 'tools', 'dist_train.sh')]
    fsdp = ['strategy.model_wrapper.device_id=' +
            ('cpu' if device == 'cpu' else '0')]
    if device != 'cpu':
        fsdp += ['strategy.model_wrapper.mixed_precision.param_dtype='
                 'bfloat16',
                 'strategy.model_wrapper.mixed_precision.reduce_dtype='
                 'float32',
                 'strategy.model_wrapper.mixed_precision.buffer_dtype='
                 'float32']
    has_ds = importlib.util.find_spec('deepspeed') is not None
    return [
        # mmengine's AmpOptimWrapper refuses the CPU: fp32 there
        ('runner', 'Runner + bf16 AMP' if device != 'cpu' else 'Runner (fp32: AMP '
         'needs a GPU)', train + [
             CONFIG, '--cfg-options', 'runner_type=Runner'] + (
             ['optim_wrapper.type=AmpOptimWrapper',
              'optim_wrapper.dtype=bfloat16'] if device != 'cpu' else []),
         None),
        ('fsdp', 'kdep_mm.FlexibleRunner + FSDP (1 process'
         + (', bf16 mixed precision)' if device != 'cpu' else ')'),
         dist + [CONFIG, '1', '--cfg-options'] + fsdp, None),
        ('deepspeed',
         'kdep_mm.FlexibleRunner + DeepSpeed ZeRO-2 bf16 (1 process)',
         dist + [DS_CONFIG, '1'],
         None if has_ds else 'deepspeed is not importable'),
    ]


def _summary(log: str):
    losses = re.findall(r'Iter\(train\) \[\d+/\d+\].*? loss: ([0-9.eE+-]+)',
                        log)
    memory = [int(m) for m in re.findall(r' memory: (\d+)', log)]
    return losses, (max(memory) if memory else None)


def run_all(device: str, work_dir: str, data_root: str, budget_s: float,
            per_run_s: float, only=('runner', 'fsdp', 'deepspeed')):
    t_end = time.time() + budget_s
    rows = []
    for i, (key, name, cmd, skip) in enumerate(runs(device)):
        if key not in only:
            skip = f'not selected (--only {",".join(only)})'
        left = t_end - time.time()
        if skip is None and left < 15:
            skip = f'no time left in the {budget_s:.0f} s budget'
        if skip is not None:
            rows.append((name, f'skipped: {skip}', '', '', ''))
            continue
        wd = osp.join(work_dir, f'run{i}')
        env = dict(os.environ, KDEP_TINY_DATA=data_root,
                   PYTHON=sys.executable, PORT=str(_free_port()),
                   PYTHONPATH=os.pathsep.join(
                       [REPO] + ([os.environ['PYTHONPATH']]
                                 if os.environ.get('PYTHONPATH') else [])))
        limit = min(per_run_s, left)
        t0 = time.time()
        try:
            p = subprocess.run(cmd + ['--work-dir', wd], cwd=REPO, env=env,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               timeout=limit, start_new_session=True)
            log, rc = p.stdout, p.returncode
        except subprocess.TimeoutExpired as e:
            log = e.stdout.decode() if isinstance(e.stdout, bytes) else (
                e.stdout or '')
            rc = None
        wall = time.time() - t0
        with open(osp.join(work_dir, f'run{i}.log'), 'w') as f:
            f.write(log)
        losses, memory = _summary(log)
        if rc is None:
            outcome = f'stopped at its time limit ({limit:.0f} s)'
        elif rc == 0 and len(losses) == 3:
            outcome = 'ok (3 iterations' + (
                ', checkpoint written atomically)'
                if 'written atomically' in log else ')')
        else:
            last = [ln for ln in log.strip().splitlines()
                    if 'Error' in ln or 'error' in ln][-1:] or ['']
            outcome = f'FAILED (rc {rc}): {last[0].strip()[:160]}'
        rows.append((name, outcome, f'{wall:.1f}', ', '.join(losses),
                     '' if memory is None else str(memory)))
    return rows


def section(rows, device: str) -> str:
    lines = [
        '', '## Runners and strategies, 3 iterations (issue 21)', '',
        f'The tiny KDEP model (configs/tiny) on {device}, through '
        'tools/train.py and tools/dist_train.sh '
        '(benchmarks/strategy_check.py; logs next to the kept runs).', '',
        '| run | outcome | wall s | losses | peak memory (MB, mmengine) |',
        '|---|---|---|---|---|']
    lines += ['| ' + ' | '.join(r) + ' |' for r in rows]
    return '\n'.join(lines) + '\n'


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--device', choices=['cpu', 'cuda'], default='cuda')
    p.add_argument('--work-dir', required=True)
    p.add_argument('--budget-s', type=float, default=90.)
    p.add_argument('--per-run-s', type=float, default=60.)
    p.add_argument('--only', default='runner,fsdp,deepspeed',
                   help='comma-separated runs (default: %(default)s)')
    args = p.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    data = osp.join(args.work_dir, 'data')
    if not osp.isdir(data):
        subprocess.run([sys.executable, osp.join(
            REPO, 'tools', 'dataset_converters', 'tiny_image_folder.py'),
            data], check=True, stdout=subprocess.DEVNULL)
    rows = run_all(args.device, args.work_dir, data, args.budget_s,
                   args.per_run_s, tuple(args.only.split(',')))
    sys.stdout.write(section(rows, args.device))
    return 0 if all(r[1].startswith(('ok', 'skipped')) for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
