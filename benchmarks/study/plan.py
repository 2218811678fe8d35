"""The cells of the study, their order and their dependencies.

Cell ids (one JSON each in ``<results>/cells/``, ``/`` -> ``__``):

* ``pca``                               teacher PCA on the 10% pool
* ``store/v<V>``                        teacher store of V views per image
                                        of the 10% pool (store arms)
* ``sweep/<arm>/<student>/<setting>``   one sweep setting (sweep seed):
                                        pre-train, probe on the val split
* ``pretrain/<arm>/<student>/s<seed>``  pre-train, export at milestones
* ``probe/<arm>/<student>/s<seed>/m<k>`` frozen probes of milestone k
* ``ft_<task>/<arm>/<student>/s<seed>`` full fine-tuning, final export
"""
import fnmatch

from .spec import arm_cfg, setting_id, sweep_settings

# the order arms run in within a seed (the claims' arms first)
ARM_PRIORITY = 'fbcdegijhaklmnoqpsrtvu'


class Cell:
    """One unit of work with a result file."""

    def __init__(self, kind, arm=None, student=None, seed=None, task=None,
                 milestone=None, setting=None, deps=()):
        self.kind, self.arm, self.student = kind, arm, student
        self.seed, self.task, self.milestone = seed, task, milestone
        self.setting = setting
        self.dep_ids = list(deps)

    @property
    def id(self) -> str:
        if self.kind == 'pca':
            return 'pca'
        if self.kind == 'store':
            return f'store/v{self.setting["views"]}'
        if self.kind == 'sweep':
            return f'sweep/{self.arm}/{self.student}/{setting_id(self.setting)}'
        if self.kind == 'pretrain':
            return f'pretrain/{self.arm}/{self.student}/s{self.seed}'
        if self.kind == 'probe':
            return (f'probe/{self.arm}/{self.student}/s{self.seed}/'
                    f'm{self.milestone}')
        return f'ft_{self.task}/{self.arm}/{self.student}/s{self.seed}'

    @property
    def fname(self) -> str:
        return self.id.replace('/', '__')

    def __repr__(self):
        return self.id


def arm_kinds(study):
    """arm letter -> ``study_arm.kind`` of its config."""
    return {a: arm_cfg(study, a).study_arm.kind for a in study.arms}


def arm_views(study):
    """arm letter -> ``study_arm.views`` of the store arms."""
    return {a: int(arm_cfg(study, a).study_arm.views) for a in study.arms
            if arm_cfg(study, a).study_arm.kind == 'kdep_store'}


def full_plan(study, kinds=None):
    """Every cell, in the order they run: the PCA; the teacher stores of
    the store arms; the sweeps; then per seed (primary student first) each
    arm's pre-training and its probes, then that seed's fine-tuning cells."""
    kinds = kinds or arm_kinds(study)
    views = arm_views(study)
    last = len(study.milestones) - 1
    cells = [Cell('pca')]
    cells += [Cell('store', setting=dict(views=v))
              for v in sorted(set(views.values()))]
    sweep_ids = {}
    sst = study.sweep_student
    for arm in study.sweeps:
        pre = ['pca'] if kinds[arm] in ('kdep', 'tcs') else []
        ids = []
        for s in sweep_settings(study, arm):
            c = Cell('sweep', arm, sst, study.sweep_seed, setting=s,
                     deps=pre)
            cells.append(c)
            ids.append(c.id)
        sweep_ids[arm] = ids
    for arm, src in study.get('sweep_from', {}).items():
        sweep_ids[arm] = sweep_ids[src]
    seeds = sorted({s for st in study.students.values() for s in st.seeds})
    for seed in seeds:
        for student, st in study.students.items():
            if seed not in st.seeds:
                continue
            arms = [a for a in ARM_PRIORITY if a in st.arms]
            for arm in arms:
                deps = list(sweep_ids.get(arm, []))
                if kinds[arm] in ('kdep', 'tcs'):
                    deps.append('pca')
                if arm in views:
                    deps.append(f'store/v{views[arm]}')
                pre = Cell('pretrain', arm, student, seed, deps=deps)
                cells.append(pre)
                ms = [last] if kinds[arm] == 'random' else range(last + 1)
                for k in ms:
                    cells.append(Cell('probe', arm, student, seed,
                                      milestone=k, deps=[pre.id]))
            for task, ft in study.finetune.items():
                for arm in arms:
                    if arm in ft.arms:
                        cells.append(Cell('ft', arm, student, seed, task=task,
                                          deps=[Cell('pretrain', arm, student,
                                                     seed).id]))
    return cells


def select(plan, arms=None, students=None, seeds=None, kinds=None,
           only=None):
    """The cells the filters pick, plus the cells they depend on.

    ``kinds``: cell kinds (``pca, sweep, pretrain, probe, ft``) or
    ``ft_<task>``; ``only``: globs over cell ids."""
    picked = []
    for c in plan:
        if c.kind == 'store' and arms is not None:
            continue  # the picked store arms bring their stores back
        if c.kind not in ('pca', 'store'):
            if arms is not None and c.arm not in arms:
                continue
            if students is not None and c.student not in students:
                continue
            if seeds is not None and c.kind != 'sweep' and \
                    c.seed not in seeds:
                continue
        if kinds is not None and c.kind not in kinds and \
                f'ft_{c.task}' not in kinds:
            continue
        if only is not None and not any(
                fnmatch.fnmatchcase(c.id, pat) for pat in only):
            continue
        picked.append(c)
    by_id = {c.id: c for c in plan}
    ids = {c.id for c in picked}
    stack = list(picked)
    while stack:
        for d in stack.pop().dep_ids:
            if d not in ids:
                ids.add(d)
                stack.append(by_id[d])
    return [c for c in plan if c.id in ids]
