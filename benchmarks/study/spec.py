"""The study spec and the paths every module shares."""
import os.path as osp
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STUDY_DIR = osp.join(REPO, 'configs', 'study')
STUDY_CFG = osp.join(STUDY_DIR, 'study.py')
TEACHER_FILE = 'resnet56-4bfd9763.th'
TEACHER_DIM = 64
KD_KINDS = ('logit_kd', 'fitnets', 'kdep', 'kdep_store', 'tcs')


def say(msg: str) -> None:
    print(f'[kdep_study {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def load_study(path: str = STUDY_CFG):
    """``configs/study/study.py`` as an mmengine Config, checked."""
    from mmengine.config import Config
    study = Config.fromfile(path)
    for key in ('arms', 'students', 'probes', 'finetune', 'seeds',
                'milestones', 'batch_size', 'sweeps'):
        if key not in study:
            raise KeyError(f'{path}: the study spec has no {key!r}')
    ms = list(study.milestones)
    if ms != sorted(ms) or ms[-1] != 1.0 or ms[0] <= 0:
        raise ValueError(f'{path}: milestones must increase and end at 1.0, '
                         f'got {ms}')
    for name, st in study.students.items():
        bad = set(st.arms) - set(study.arms)
        if bad:
            raise ValueError(f'{path}: students.{name}.arms names unknown '
                             f'arms {sorted(bad)}')
    for arm in list(study.sweeps) + list(study.get('sweep_from', {})):
        if arm not in study.arms:
            raise ValueError(f'{path}: sweeps names an unknown arm {arm!r}')
    for arm, src in study.get('sweep_from', {}).items():
        if src not in study.sweeps:
            raise ValueError(f'{path}: sweep_from.{arm} = {src!r} has no '
                             'sweep of its own')
    return study


def arm_cfg(study, arm):
    from mmengine.config import Config
    return Config.fromfile(osp.join(STUDY_DIR, study.arms[arm].config))


def setting_id(setting: dict) -> str:
    """A sweep setting as a file-name-safe id: ``lr0.05_w5``."""
    short = dict(lr='lr', loss_weight='w')
    return '_'.join(f'{short.get(k, k)}{setting[k]:g}'
                    for k in sorted(setting))


def sweep_settings(study, arm):
    """The grid of one arm's sweep, as a list of dicts."""
    import itertools
    grid = study.sweeps[arm]
    keys = sorted(grid)
    return [dict(zip(keys, vals))
            for vals in itertools.product(*(grid[k] for k in keys))]


def budget_root(study, arm):
    """(the arm a budget-check chain starts from, doublings): ``o``
    (doubles ``f``) -> ('f', 1); ``t`` (doubles ``o``) -> ('f', 2); an arm
    that doubles none -> (itself, 0)."""
    level = 0
    while study.arms[arm].get('doubles'):
        arm = study.arms[arm].doubles
        level += 1
    return arm, level
