"""``kdep_mm.utils.launch.resume_after_restart``: a restarted attempt
(torchrun ``TORCHELASTIC_RESTART_COUNT`` or Slurm ``SLURM_RESTART_COUNT``
above 0) resumes from the work directory's ``last_checkpoint``; anything
else leaves the config alone."""
import os.path as osp

import pytest
from mmengine.config import Config

from helpers.paths import REPO
from helpers.scripts import load_script
from kdep_mm.utils.launch import resume_after_restart

CONFIG = osp.join(REPO, 'configs', 'tiny', 'tiny_kdep_synthetic.py')


def _cfg(work_dir, **extra):
    return Config(dict(work_dir=str(work_dir), resume=False,
                       load_from='init.pth', **extra))


def _last_checkpoint(work_dir, name='iter_4.pth', create=True):
    path = str(work_dir / name)
    if create:
        with open(path, 'wb') as f:
            f.write(b'x')
    with open(work_dir / 'last_checkpoint', 'w') as f:
        f.write(path + '\n')
    return path


@pytest.mark.parametrize('environ', [
    {}, {'TORCHELASTIC_RESTART_COUNT': '0'}, {'SLURM_RESTART_COUNT': ''},
    {'TORCHELASTIC_RESTART_COUNT': '0', 'SLURM_RESTART_COUNT': '0'}])
def test_first_attempt_runs_as_configured(tmp_path, environ):
    _last_checkpoint(tmp_path)
    cfg = _cfg(tmp_path)
    assert resume_after_restart(cfg, environ) is None
    assert cfg.resume is False and cfg.load_from == 'init.pth'


@pytest.mark.parametrize('var', ['TORCHELASTIC_RESTART_COUNT',
                                 'SLURM_RESTART_COUNT'])
def test_restart_resumes_from_last_checkpoint(tmp_path, var):
    path = _last_checkpoint(tmp_path)
    # the newest checkpoint wins over a --resume CKPT of the first attempt
    cfg = _cfg(tmp_path)
    cfg.resume, cfg.load_from = True, 'older.pth'
    assert resume_after_restart(cfg, {var: '1'}) == path
    assert cfg.resume is True and cfg.load_from == path


def test_restart_resumes_from_a_checkpoint_folder(tmp_path):
    """A DeepSpeed checkpoint (FlexibleRunner) is a folder, not a file."""
    path = str(tmp_path / 'iter_4.pth')
    (tmp_path / 'iter_4.pth').mkdir()
    (tmp_path / 'last_checkpoint').write_text(path + '\n')
    cfg = _cfg(tmp_path)
    assert resume_after_restart(cfg, {'TORCHELASTIC_RESTART_COUNT': '1'}) \
        == path
    assert cfg.resume is True and cfg.load_from == path


def test_restart_before_any_checkpoint_starts_over(tmp_path):
    cfg = _cfg(tmp_path)
    assert resume_after_restart(cfg, {'SLURM_RESTART_COUNT': '3'}) is None
    assert cfg.resume is False and cfg.load_from == 'init.pth'


def test_missing_checkpoint_and_bad_count_are_errors(tmp_path):
    path = _last_checkpoint(tmp_path, create=False)
    with pytest.raises(FileNotFoundError, match=f'names {path}, which does'):
        resume_after_restart(_cfg(tmp_path),
                             {'TORCHELASTIC_RESTART_COUNT': '1'})
    with pytest.raises(ValueError, match="SLURM_RESTART_COUNT must be a "
                       "non-negative integer .* got 'one'"):
        resume_after_restart(_cfg(tmp_path), {'SLURM_RESTART_COUNT': 'one'})


def test_train_py_resumes_a_restarted_attempt(tmp_path, monkeypatch):
    train = load_script(osp.join(REPO, 'tools', 'train.py'), 'kdep_train')
    monkeypatch.setenv('LOCAL_RANK', '0')
    path = _last_checkpoint(tmp_path)
    args = train.parse_args([CONFIG, '--work-dir', str(tmp_path)])
    monkeypatch.delenv('TORCHELASTIC_RESTART_COUNT', raising=False)
    monkeypatch.delenv('SLURM_RESTART_COUNT', raising=False)
    cfg = train.merge_args(Config.fromfile(CONFIG), args)
    assert cfg.resume is False and cfg.load_from is None
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', '1')
    cfg = train.merge_args(Config.fromfile(CONFIG), args)
    assert cfg.resume is True and cfg.load_from == path
