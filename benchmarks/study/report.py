"""docs/results.md from the committed cells: setup, the sensitivity check,
the final-score tables, the curves, the plateau and sweep tables, the
claims with paired 95% intervals, and the runtime table. Cells that have
not run say so; no number is filled in."""
import datetime
import os
import os.path as osp
from typing import NamedTuple, Optional

from . import stats as S
from .cellstore import load_result
from .plan import arm_kinds, arm_views
from .spec import REPO, budget_root, say, setting_id, sweep_settings


class Results:
    """Lookups over the finished cells of a plan."""

    def __init__(self, study, plan, rdir):
        self.study, self.plan, self.rdir = study, plan, rdir
        self.res = {}
        self.failed = set()
        for c in plan:
            r = load_result(rdir, c)
            if r is not None:
                self.res[c.id] = r
            elif osp.isfile(osp.join(rdir, 'cells', c.fname + '.error.txt')):
                self.failed.add(c.id)
        self.last = len(study.milestones) - 1

    def seeds(self, student):
        return list(self.study.students[student].seeds)

    def task_scores(self, arm, student, task, milestone=None):
        """{seed: score} of a task's final (or milestone) result."""
        out = {}
        for s in self.seeds(student):
            if task in self.study.probes:
                k = self.last if milestone is None else milestone
                r = self.res.get(f'probe/{arm}/{student}/s{s}/m{k}')
                if r is not None:
                    out[s] = r['scores'][task]
            else:
                r = self.res.get(f'ft_{task}/{arm}/{student}/s{s}')
                if r is not None:
                    out[s] = r['score']
        return out

    def curve(self, arm, student, task):
        """Mean over seeds of (pre-training CPU s, score) per milestone."""
        pts = []
        ms = [self.last] if arm == 'a' else range(self.last + 1)
        for k in ms:
            xs, ys = [], []
            for s in self.seeds(student):
                r = self.res.get(f'probe/{arm}/{student}/s{s}/m{k}')
                if r is not None:
                    xs.append(r['pretrain_cpu_s'])
                    ys.append(r['scores'][task])
            if ys:
                pts.append((sum(xs) / len(xs), sum(ys) / len(ys), len(ys)))
        return pts

    def pretrain(self, arm, student):
        return [self.res.get(f'pretrain/{arm}/{student}/s{s}')
                for s in self.seeds(student)]

    def tasks(self):
        return list(self.study.probes) + list(self.study.finetune)

    def task_label(self, t):
        d = self.study.probes.get(t) or self.study.finetune[t]
        return d.label, d.metric

    def arms_for(self, student, task):
        arms = self.study.students[student].arms
        if task in self.study.finetune:
            arms = [a for a in arms if a in self.study.finetune[task].arms]
        return list(arms)


def _fmt(st, nd=1, want=3):
    if st is None:
        return 'not run'
    txt = f'{st["mean"]:.{nd}f}' if st['n'] == 1 else \
        f'{st["mean"]:.{nd}f} ± {st["sd"]:.{nd}f}'
    return txt + (f' (n={st["n"]})' if st['n'] < want else '')


def _ci(ci):
    if ci is None:
        return 'n/a'
    return f'{ci["mean"]:+.1f} [{ci["lo"]:+.1f}, {ci["hi"]:+.1f}]'


def sensitivity_rows(R, student):
    rows, sens = [], {}
    for t in R.tasks():
        a = R.task_scores('a', student, t)
        b = R.task_scores('b', student, t)
        s = S.sensitivity(a, b)
        sens[t] = bool(s and s['sensitive'])
        label, metric = R.task_label(t)
        rows.append(f'| {label} ({metric}) | {_fmt(S.summary(a.values()))} | '
                    f'{_fmt(S.summary(b.values()))} | '
                    + ('not enough seeds | | |' if s is None else
                       f'{s["gap"]:+.1f} | {s["pooled_sd"]:.2f} | '
                       f'{"**yes**" if s["sensitive"] else "no: left out"} |'))
    return rows, sens


def main_table(R, student, kinds):
    study = R.study
    tasks = R.tasks()
    head = ['arm', 'data', 'labels', 'samples seen', 'SGD steps',
            'pre-training CPU s'] + [
        f'{R.task_label(t)[0]}: {R.task_label(t)[1]}' for t in tasks]
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * 3 + '---:|' * (len(head) - 3)]
    for arm in study.students[student].arms:
        info = study.arms[arm]
        pre = [p for p in R.pretrain(arm, student) if p]
        cpu = S.summary([p['pretrain_cpu_s'] for p in pre])
        data = '-' if kinds[arm] == 'random' else (
            pre[0]['data'] if pre else '')
        labels = 'yes' if pre and pre[0].get('labels') else (
            '-' if kinds[arm] == 'random' else 'no')
        samples = info.get('samples', 0) if kinds[arm] != 'random' else 0
        bs = study.batch_size
        cells = [f'({arm}) {info.label}', data, labels, f'{samples:,}',
                 f'{samples // bs:,}', _fmt(cpu, 0, len(R.seeds(student)))]
        for t in tasks:
            if arm not in R.arms_for(student, t):
                cells.append('-')
            else:
                cells.append(_fmt(S.summary(R.task_scores(arm, student,
                                                          t).values()),
                                  1, len(R.seeds(student))))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return lines


def plateau_rows(R, student):
    rows = []
    for arm in R.study.students[student].arms:
        pre = [p for p in R.pretrain(arm, student) if p and p.get('plateau')]
        if not pre:
            continue
        ch = [p['plateau']['rel_change'] for p in pre]
        ok = sum(p['plateau']['plateau'] for p in pre)
        ev = [p['ev'][-1]['ev'] for p in pre if p.get('ev')]
        top = [sum(p['ev_dims'][:8]) / len(p['ev_dims'][:8]) for p in pre
               if p.get('ev_dims')]
        rows.append(f'| ({arm}) {R.study.arms[arm].label} | '
                    f'{", ".join(f"{100 * c:.1f}%" for c in ch)} | '
                    f'{ok} of {len(pre)} | '
                    + (', '.join(f'{e:.3f}' for e in ev) if ev else '-')
                    + ' | '
                    + (', '.join(f'{e:.3f}' for e in top) if top else '-')
                    + ' |')
    return rows


def sweep_edges(R):
    """Arms whose chosen value of a swept key is the grid's smallest or
    largest (the optimum may lie outside the grid)."""
    study = R.study
    out = []
    for arm in study.sweeps:
        got = []
        for s in sweep_settings(study, arm):
            r = R.res.get(f'sweep/{arm}/{study.sweep_student}/'
                          f'{setting_id(s)}')
            if r is None:
                break
            got.append((r['val_score'], s))
        else:
            best = max(got, key=lambda g: g[0])[1] if got else None
            for k, vals in (study.sweeps[arm] or {}).items():
                if best and len(vals) > 1 and best[k] in (min(vals),
                                                          max(vals)):
                    out.append(f'({arm}) {k}={best[k]:g}')
    return out


def sweep_rows(R):
    study = R.study
    rows = []
    for arm in study.sweeps:
        users = [arm] + [a for a, src in study.get('sweep_from', {}).items()
                         if src == arm]
        best = None
        got = []
        for s in sweep_settings(study, arm):
            cid = f'sweep/{arm}/{study.sweep_student}/{setting_id(s)}'
            r = R.res.get(cid)
            got.append((s, r))
            if r is not None and (best is None or r['val_score'] > best[1]):
                best = (setting_id(s), r['val_score'])
        for s, r in got:
            sid = setting_id(s)
            mark = ' **chosen**' if best and sid == best[0] and \
                all(x[1] is not None for x in got) else ''
            score = 'not run' if r is None else f'{r["val_score"]:.1f}'
            grid = ', '.join(f'{k}={v:g}' for k, v in sorted(s.items()))
            rows.append(f'| ({arm}) {study.arms[arm].label} | {grid} | '
                        f'{score}{mark} | {", ".join(users)} |')
    return rows


class Claim(NamedTuple):
    """One claim as read: its title, the verdict sentence, one line per
    comparison, and the tally {holds, reversed, n} (None when not read)."""
    title: str
    verdict: str
    parts: list
    tally: Optional[dict] = None


def claims(R, student, sens, sub=None, absent=()):
    """The four claims (:class:`Claim`), each per sensitive task, from
    paired intervals. ``sub`` reads them with other arms in the roles of the
    named ones (the budget check: f -> o, d -> p, ...); a claim that needs
    an arm of ``absent`` (no arm at that budget) is listed as not read."""
    sub = sub or {}

    def A(x):
        return sub.get(x, x)

    def read(arms, title, body):
        gone = sorted(set(arms) & set(absent))
        if gone:
            return Claim(title, 'not read at this budget (no arm for '
                         + ', '.join(f'({g})' for g in gone) + ')', [])
        verdicts, parts = body()
        return Claim(title, summarise(verdicts), parts, dict(
            holds=verdicts.count('holds'),
            reversed=verdicts.count('reversed'), n=len(verdicts))
            if verdicts else None)

    ood = [t for t in R.tasks() if t not in R.study.probes
           or not R.study.probes[t].in_domain]
    out = []

    def diff(a, b, t):
        return S.paired(R.task_scores(a, student, t),
                        R.task_scores(b, student, t))

    def lines_for(pairs, tasks):
        parts, verdicts = [], []
        for t in tasks:
            if not sens.get(t):
                continue
            for a, b in pairs:
                a, b = A(a), A(b)
                if a not in R.arms_for(student, t) or \
                        b not in R.arms_for(student, t):
                    continue
                ci = diff(a, b, t)
                v = S.verdict(ci)
                verdicts.append(v)
                parts.append(f'{R.task_label(t)[0]}: ({a}) - ({b}) = '
                             f'{_ci(ci)} -> {v}')
        return parts, verdicts

    def summarise(verdicts):
        if not verdicts:
            return 'untested (no sensitive task with results)'
        n = len(verdicts)
        h = verdicts.count('holds')
        r = verdicts.count('reversed')
        if h == n:
            return f'**holds** ({n} of {n} comparisons)'
        if r == n:
            return f'**reversed** ({n} of {n} comparisons)'
        return (f'**does not hold as stated**: holds in {h}, reversed in {r}, '
                f'inconclusive in {n - h - r} of {n} comparisons')

    f, d, e, b = A('f'), A('d'), A('e'), A('b')

    def pairs_claim(pairs, tasks):
        p, v = lines_for(pairs, tasks)
        return v, p

    def reach_claim():
        parts, verdicts = [], []
        for t in R.tasks():
            if not sens.get(t) or t not in R.study.probes:
                continue
            cf, cb = R.curve(f, student, t), R.curve(b, student, t)
            if not cf or not cb:
                continue
            target, c_b = cb[-1][1], cb[-1][0]
            reach = S.compute_to_reach([(c, s) for c, s, _ in cf], target)
            ci = diff(f, b, t)
            if reach is None:
                v = 'does not hold'
                parts.append(f'{R.task_label(t)[0]}: ({f}) never reaches '
                             f'({b})\'s {target:.1f} within its budget (its '
                             f'best {max(s for _, s, _ in cf):.1f}; final '
                             f'({f}) - ({b}) = {_ci(ci)})')
            else:
                ratio = reach / c_b
                v = 'holds' if ratio <= 0.2 else 'does not hold'
                parts.append(f'{R.task_label(t)[0]}: ({f}) reaches ({b})\'s '
                             f'{target:.1f} at {reach:.0f} CPU s = '
                             f'{ratio:.2f} x ({b})\'s {c_b:.0f} CPU s (final '
                             f'({f}) - ({b}) = {_ci(ci)}) -> {v}')
            verdicts.append('holds' if v == 'holds' else 'reversed')
        return verdicts, parts

    out.append(read('fde', f'(1) KDEP 10% ({f}) > logit KD 10% ({d}) and > '
                    f'FitNets 10% ({e}) on the out-of-domain tasks',
                    lambda: pairs_claim([('f', 'd'), ('f', 'e')], ood)))
    out.append(read('fb', f'(2) KDEP 10% ({f}) reaches supervised 100% '
                    f'({b})\'s score at no more than 1/5 of its compute '
                    '(mean curves, linear interpolation between milestones)',
                    reach_claim))
    out.append(read('fga', f'(3) KDEP ({f}, 10%; {A("g")}, 100%) > random '
                    'init (a) on every sensitive task',
                    lambda: pairs_claim([('f', 'a'), ('g', 'a')], R.tasks())))
    out.append(read('fij', f'(4) PTS matters ({f} > {A("i")}, KDEP without '
                    f'PTS) and the SVD alignment matters ({f} > {A("j")}, a '
                    'learned projector instead)',
                    lambda: pairs_claim([('f', 'i'), ('f', 'j')], R.tasks())))
    return out


def claim_lines(claim_list):
    """Markdown of :func:`claims`: a bullet per claim, its comparisons
    under it."""
    out = []
    for c in claim_list:
        out.append(f'- **{c.title}**: {c.verdict}.')
        out += [f'  - {p}' for p in c.parts]
    return out


def tally_text(c):
    """A claim's verdict in a table cell: 'holds (4/4)', 'reversed (2/2)',
    '1 holds, 0 reversed, 1 inconclusive (of 2)', 'not read'."""
    t = c.tally
    if t is None:
        return 'not read' if c.verdict.startswith('not read') else 'untested'
    if t['holds'] == t['n']:
        return f'**holds** ({t["n"]}/{t["n"]})'
    if t['reversed'] == t['n']:
        return f'**reversed** ({t["n"]}/{t["n"]})'
    return (f'{t["holds"]} holds, {t["reversed"]} reversed, '
            f'{t["n"] - t["holds"] - t["reversed"]} inconclusive '
            f'(of {t["n"]})')


def doubled_arms(study, student):
    """{arm it doubles: budget-check arm} of a student's arms."""
    return {study.arms[a].doubles: a for a in study.students[student].arms
            if study.arms[a].get('doubles')}


def budget_levels(study, student):
    """{doublings: {arm a chain starts from: its arm at that budget}}, e.g.
    {1: {f: o, d: p, ...}, 2: {f: t, ...}}: the roles the claims are read
    with at 2x, 4x, ..."""
    out = {}
    for a in study.students[student].arms:
        root, level = budget_root(study, a)
        if level:
            out.setdefault(level, {})[root] = a
    return dict(sorted(out.items()))


def budget_plateau_lines(study, levels, verdicts):
    """One line per budget that was doubled: 'plateaued' when every arm
    doubled from it plateaued on every task, 'still gaining' when one of
    them still gained, else 'not shown' (or not run), with the pairs."""
    tasks = study.budget_check.tasks
    at = {0: {r: r for lsub in levels.values() for r in lsub}, **levels}
    out = []
    for level in sorted(at):
        if level + 1 not in at:
            continue
        arms = sorted(at[level][r] for r in at[level + 1])
        got = {(a, t): verdicts.get((a, t), 'not run') for a in arms
               for t in tasks}
        vals = set(got.values())
        state = ('plateaued' if vals == {'plateaued'} else 'still gaining'
                 if 'still gaining' in vals else 'not shown')
        gaining = [f'({a}) on {t}' for (a, t), v in got.items()
                   if v == 'still gaining']
        out.append(f'{2 ** level}x ({", ".join(arms)}): **{state}**'
                   + (f' (still gaining: {", ".join(gaining)})'
                      if gaining else ''))
    return out


def claims_by_budget(R, student, sens, levels):
    """The claims (:func:`claims`) at 1x and at every budget of ``levels``
    (:func:`budget_levels`) whose arms have scores on a budget-check task:
    ``{level: (seeds, claims)}``, level 0 = 1x, ``seeds`` the fewest seeds
    an arm of that budget has on a task. At 2^level x the doubled arms take
    the roles of their roots; a claim needing a root with no arm there is
    not read."""
    levels = {0: {}, **levels}
    roots = {r for lsub in levels.values() for r in lsub}
    tasks = R.study.budget_check.tasks
    out = {}
    for level, lsub in levels.items():
        arms = sorted(lsub.values()) if lsub else sorted(roots)
        n = min((k for a in arms for t in tasks
                 if (k := len(R.task_scores(a, student, t)))), default=0)
        if level and not n:
            continue
        out[level] = (n, claims(R, student, sens, sub=lsub,
                                absent=sorted(roots - set(lsub))
                                if level else ()))
    return out


def glance_lines(R, student, sens, levels, verdicts, read):
    """The claims' verdicts at every budget the chains reach, one row a
    claim (a column a budget, with the seeds its arms have), and, where
    claim (2) fails at 1x on a task whose scores rise at every doubling,
    why no longer run can make it hold: a run within 1/5 of (b)'s compute
    is shorter than (f)'s 1x run, which already falls short. ``levels``:
    :func:`budget_levels`; ``verdicts``: :func:`budget_rows`'; ``read``:
    :func:`claims_by_budget`'s."""
    levels = {0: {}, **levels}
    tasks = R.study.budget_check.tasks
    nseeds = len(R.seeds(student))
    head = [f'{2 ** level}x ({n} of {nseeds} seeds)'
            for level, (n, _) in read.items()]
    cols = [c for _, c in read.values()]
    rows = ['| claim | ' + ' | '.join(head) + ' |',
            '|---|' + '---|' * len(head)]
    names = ('KDEP > logit KD and > FitNets, out of domain',
             'KDEP reaches supervised 100% at <= 1/5 of its compute',
             'KDEP > random init, every sensitive task',
             'PTS and the SVD alignment matter')
    for i, c in enumerate(cols[0]):
        rows.append(f'| ({i + 1}) {names[i]} | '
                    + ' | '.join(tally_text(col[i]) for col in cols) + ' |')
    notes = plateau_notes(R, levels, verdicts)
    chain = ['f'] + [levels[k]['f'] for k in sorted(levels)
                     if 'f' in levels[k]]
    for t in tasks:
        cb = R.curve('b', student, t)
        means = [S.summary(R.task_scores(a, student, t).values())
                 for a in chain]
        m = [x['mean'] for x in means[:(means + [None]).index(None)]]
        if not sens.get(t) or not cb or len(m) < 2:
            continue
        target, c_b = cb[-1][1], cb[-1][0]
        c_f = R.curve('f', student, t)[-1][0]
        if m[0] < target and all(x < y for x, y in zip(m, m[1:])) \
                and c_f > 0.2 * c_b:
            notes.append(
                f'{R.task_label(t)[0]}: (2) asks for (b)\'s {target:.1f} '
                f'within {0.2 * c_b:.0f} CPU s (1/5 of {c_b:.0f}). (f) at 1x '
                f'spent {c_f:.0f} CPU s and reached {m[0]:.1f}; each doubling '
                'raised the score (' + ' -> '.join(f'{x:.1f}' for x in m)
                + '), so a run short enough to fit would score lower still: '
                'no budget makes (2) hold on this task.')
    return rows, notes


def plateau_notes(R, levels, verdicts):
    """Per budget-check task, the budget at which each chain's run sits on
    its plateau (its doubling gained less than the criterion allows), e.g.
    '(f) at 2x', or '(d) not within 4x' when no doubling of it plateaued
    (still gaining or not shown)."""
    out = []
    for t in R.study.budget_check.tasks:
        parts = []
        for root in sorted(levels[1]) if 1 in levels else []:
            chain = [root] + [levels[k][root] for k in sorted(levels)
                              if k and root in levels[k]]
            at = next((2 ** k for k, a in enumerate(chain[:-1])
                       if verdicts.get((a, t)) == 'plateaued'), None)
            parts.append(f'({root}) at {at}x' if at else
                         f'({root}) not within {2 ** (len(chain) - 1)}x')
        if parts:
            out.append(f'{R.task_label(t)[0]}, the budget at which each '
                       'chain reached its plateau: '
                       + ', '.join(parts) + '.')
    return out


def budget_rows(R, student):
    """The budget check: per doubled arm and task, the scores before and
    at twice the budget, the paired (doubled - before) interval and its
    plateau verdict, and the ratio of the final losses (mean of the last
    10% of steps, doubled / before)."""
    bc = R.study.get('budget_check')
    pairs = doubled_arms(R.study, student)
    if not bc or not pairs:
        return [], {}
    n = len(R.seeds(student))
    rows = ['| arm -> the same at twice its budget | task | before | '
            'doubled | doubled - before | plateaued? | final loss, doubled / '
            'before |', '|---|---|---:|---:|---:|---|---:|']
    verdicts = {}
    for one, two in pairs.items():
        losses = []
        for p1, p2 in zip(R.pretrain(one, student), R.pretrain(two, student)):
            if p1 and p2 and p1.get('plateau') and p2.get('plateau'):
                losses.append(p2['plateau']['late'] / p1['plateau']['late'])
        loss = S.summary(losses)
        for t in bc.tasks:
            s1 = R.task_scores(one, student, t)
            s2 = R.task_scores(two, student, t)
            ci = S.paired(s2, s1)
            v = S.plateau_verdict(ci, bc.plateau_gain, bc.plateau_gain_ci)
            verdicts[(one, t)] = v
            rows.append(
                f'| ({one}) -> ({two}) {R.study.arms[one].label} | '
                f'{R.task_label(t)[0]} | {_fmt(S.summary(s1.values()), 1, n)}'
                f' | {_fmt(S.summary(s2.values()), 1, n)} | {_ci(ci)} | {v} | '
                + (_fmt(loss, 2, n) if loss else '-') + ' |')
    return rows, verdicts


def store_rows(R, student, sens):
    """The store arms against (k), their online reference: per arm its
    view count, the one-off caching CPU s, the mean pre-training CPU s
    (caching + basis fit + training) and, per sensitive task, the final
    score and the paired difference (arm) - (k) with its 95% interval."""
    store_views = arm_views(R.study)
    arms = [a for a in R.study.students[student].arms
            if a == 'k' or a in store_views]
    if 'k' not in arms or len(arms) < 2:
        return [], []
    tasks = [t for t in R.tasks() if sens.get(t)
             and all(a in R.arms_for(student, t) for a in arms)]
    head = (['arm', 'views', 'caching CPU s', 'pre-training CPU s']
            + [f'{R.task_label(t)[0]}' for t in tasks]
            + [f'{R.task_label(t)[0]}: (arm) - (k)' for t in tasks])
    rows = ['| ' + ' | '.join(head) + ' |',
            '|---|---:|---:|---:|' + '---:|' * (2 * len(tasks))]
    n = len(R.seeds(student))
    for arm in arms:
        pre = [p for p in R.pretrain(arm, student) if p]
        views = store_views.get(arm)
        cache = R.res.get(f'store/v{views}') if views else None
        cells = [f'({arm}) {R.study.arms[arm].label}',
                 str(views) if views else 'every step afresh',
                 f'{cache["cache_cpu_s"]:.0f}' if cache else '-',
                 _fmt(S.summary([p['pretrain_cpu_s'] for p in pre]), 0, n)]
        cells += [_fmt(S.summary(R.task_scores(arm, student, t).values()),
                       1, n) for t in tasks]
        cells += ['-' if arm == 'k' else _ci(S.paired(
            R.task_scores(arm, student, t), R.task_scores('k', student, t)))
            for t in tasks]
        rows.append('| ' + ' | '.join(cells) + ' |')
    return rows, tasks


def runtime_rows(R):
    groups = {}
    for c in R.plan:
        key = (c.kind if c.kind not in ('pretrain', 'sweep', 'ft') else
               f'{c.kind} ({c.arm})' if c.kind != 'ft' else f'ft {c.task}',
               c.student or '-')
        g = groups.setdefault(key, dict(planned=0, cpu=[], wall=[]))
        g['planned'] += 1
        r = R.res.get(c.id)
        if r is not None:
            g['cpu'].append(r['cpu_s'])
            g['wall'].append(r['total_s'])
    rows, total_cpu, est = [], 0., 0.
    for (kind, st), g in sorted(groups.items()):
        n = len(g['cpu'])
        mean = sum(g['cpu']) / n if n else None
        total_cpu += sum(g['cpu'])
        if mean is not None:
            est += mean * g['planned']
        rows.append(f'| {kind} | {st} | '
                    + (f'{sum(g["wall"]) / n:.0f} | {mean:.0f}' if n else
                       '- | -') + f' | {n} | {g["planned"]} |')
    return rows, total_cpu, est, all(len(g['cpu']) for g in groups.values())


def write_report(args, study, plan, rdir):
    from .plots import make_plots
    R = Results(study, plan, rdir)
    kinds = arm_kinds(study)
    docs = osp.abspath(args.docs_dir)
    images = osp.join(docs, 'images')
    os.makedirs(images, exist_ok=True)
    pngs = make_plots(R, images)
    n_done = len(R.res)
    now = datetime.datetime.now().strftime('%Y-%m-%d %H:%M')
    pca = R.res.get('pca')
    L = ['# KDEP study v2: score vs pre-training compute on tasks that can '
         'tell', '',
         f'Generated by `python benchmarks/kdep_study.py --report` from the '
         f'cell results in `benchmarks/study_results/cells` ({n_done} of '
         f'{len(plan)} planned cells finished, {len(R.failed)} failed; '
         f'written {now}). Cells that have not run say "not run"; no '
         'number here is filled in or copied. Design, sizes and the reasons '
         'for them: [docs/kdep.md](kdep.md#the-study-version-2-issue-15).',
         '', '## Setup', '',
         '- Teacher: the real CIFAR-10 ResNet-56 (akamaster checkpoint, '
         '64-d pooled pre-ReLU feature). Students: '
         + '; '.join(f'{st.label}: arms {", ".join(st.arms)}, seeds '
                     f'{list(st.seeds)}' for st in study.students.values())
         + '.',
         f'- Pre-training pool ("100%"): {study.pool_per_class * 10:,} '
         f'CIFAR-10 train images (class-balanced, seed {study.pool_seed}); '
         f'"10%": {int(study.pool_per_class * 10 * study.pool_fraction):,} '
         'of them. Budgets in samples seen at batch '
         f'{study.batch_size} (SGD, momentum 0.9, wd 5e-4, 5% linear '
         'warm-up then cosine); exports at '
         + ', '.join(f'{100 * m:g}%' for m in study.milestones)
         + ' of each schedule, every one probed.',
         '- Frozen probes (logistic regression on standardised features, '
         f'L2 {study.probe.l2:g}): CIFAR-10 (5,000 train images disjoint '
         'from the pool -> the full 10,000-image test set); BCCD cell crops '
         f'({study.probe.bccd_crop_px} px, 3 classes, class-weighted, '
         'balanced accuracy on the test images); CamVid per-pixel (stages '
         'pooled to stride 4, majority label per 4x4 cell, class-weighted, '
         'mIoU on the 233 test images); hymenoptera '
         f'({study.probe.hymenoptera_px} px, {study.probe.hymenoptera_folds}'
         '-fold stratified CV over train + val). Full fine-tuning (final '
         'exports): BCCD RetinaNet, CamVid FCN, arms '
         + ', '.join(f'{t}: {ft.arms}' for t, ft in study.finetune.items())
         + '.',
         '- Hyper-parameters: lr (and loss weight for KDEP) by a one-seed '
         f'sweep (seed {study.sweep_seed}) at the full budget, judged on a '
         'validation split of 2,000 CIFAR-10 train images (disjoint from '
         'the pool and the probe\'s training images), never on a test set.',
         '- Statistics: mean ± sd over seeds; each claim from the paired '
         'difference over seeds with its 95% t-interval: "holds" when the '
         'interval lies above 0, "reversed" when below, else '
         '"inconclusive".', '']
    if pca:
        kept = ', '.join(f'{n}: k = {v["k"]} keeps '
                         f'{100 * v["variance_kept"]:.1f}%'
                         for n, v in pca['kept'].items())
        L += [f'Teacher PCA on {pca["n_features"]} features: {kept} of the '
              'variance.', '']
        if 'pca' in pngs:
            L += ['![teacher PCA spectrum](images/teacher_pca_spectrum.png)',
                  '']
    for student, st in study.students.items():
        L += [f'## {st.label}', '']
        rows, sens = sensitivity_rows(R, student)
        L += ['### Sensitivity check', '',
              'A task can rank pre-training only if supervised 100% (b) and '
              'random init (a) differ by more than 3 x their pooled sd; '
              'otherwise it is left out of the verdicts.', '',
              '| task | (a) random init | (b) supervised 100% | gap (b - a) '
              '| pooled sd | sensitive |', '|---|---:|---:|---:|---:|---|']
        L += rows + ['']
        levels = budget_levels(study, student)
        brows, bverd = budget_rows(R, student)
        read = claims_by_budget(R, student, sens, levels)
        if levels:
            grows, gnotes = glance_lines(R, student, sens, levels, bverd,
                                         read)
            L += ['### Verdicts at a glance', '',
                  'Each claim (below) read with the 1x arms and again with '
                  'the same arms at 2x and 4x their budget (the budget '
                  'check, below). Where the arms plateaued on a task, the '
                  'verdicts there no longer depend on the budget; where they '
                  'still gain, a longer run could move them.', '']
            L += grows + [''] + [f'- {n}' for n in gnotes]
            L += [''] if gnotes else []
        L += ['### Final scores', '']
        L += main_table(R, student, kinds)
        L += ['', 'Pre-training CPU s: CPU seconds of the training process '
              'with 1 torch thread (about the wall clock of an idle core), '
              'plus the teacher PCA fit for KDEP and TCS (the store arms: '
              'caching the store and fitting the basis from it).', '']
        if student in pngs:
            L += [f'![score vs compute, {st.label}](images/'
                  f'{osp.basename(pngs[student])})', '']
        L += ['### Claims', ''] + claim_lines(read[0][1]) + ['']
        if brows:
            bc = study.budget_check
            sub = doubled_arms(study, student)
            L += ['### Budget check: did the 10% arms of the claims plateau?',
                  '',
                  'Under a cosine schedule the training loss always falls in '
                  'the last quarter (the learning rate goes to zero), so the '
                  'loss criterion below cannot tell an annealed run from an '
                  'unfinished one. The budget check reruns each 10% arm of '
                  'the claims at twice its budget, and where that still '
                  'gained, twice again (same config, swept setting and '
                  'seeds: '
                  + ', '.join(f'{a} -> {b}' for a, b in sub.items())
                  + '). Criterion, fixed before these runs: an arm has '
                  f'plateaued on a task when doubling raises its mean score '
                  f'by less than {bc.plateau_gain:g} point and the upper end '
                  'of the paired 95% interval of (2x - 1x) lies below '
                  f'{bc.plateau_gain_ci:g} points; "still gaining" when the '
                  'interval lies above 0 with a mean gain of at least '
                  f'{bc.plateau_gain:g}; otherwise "not shown". Tasks: the '
                  'sensitive frozen probes.', '']
            L += brows + ['']
            done = [v for v in bverd.values() if v != 'not enough seeds']
            if done:
                L += [f'Plateaued in {done.count("plateaued")}, still '
                      f'gaining in {done.count("still gaining")}, not shown '
                      f'in {done.count("not shown")} of {len(done)} '
                      '(arm, task) pairs.', '']
            L += ['Did the arms plateau at each budget (all the arms doubled '
                  'from it, on every task)?', '']
            L += [f'- {line}' for line in budget_plateau_lines(
                study, levels, bverd)] + ['']
            for level, lsub in levels.items():
                if level not in read:
                    continue
                L += [f'#### The claims read at {2 ** level}x budget', '',
                      f'The same claims with the {2 ** level}x arms in the '
                      f'roles of the 1x arms ('
                      + ', '.join(f'{r} -> {a}' for r, a in sorted(
                          lsub.items())) + '; the reference arms a, b and g '
                      'unchanged):', '']
                L += claim_lines(read[level][1])
                L += ['']
        srows, stasks = store_rows(R, student, sens)
        if srows:
            L += ['### KDEP from a teacher store: the cost of a finite view '
                  'bank', '',
                  '(k) is KDEP 10% whose every step draws a fresh random-'
                  'resized crop + flip (the store\'s view distribution); '
                  '(l, m, n) train on V = 4, 8, 16 views per image cached '
                  'once, no teacher in the loop, the basis fitted from the '
                  'store; same budget, setting (f\'s sweep) and seeds. '
                  'Caching CPU s: one teacher pass over V views of the '
                  '1,000 pool images (paid once, shared by the seeds); '
                  'pre-training CPU s includes it and the basis fit. '
                  'Differences: paired over seeds, 95% t-interval'
                  + ('' if stasks else '; no sensitive task has results '
                     'yet') + '.', '']
            L += srows + ['']
        prow = plateau_rows(R, student)
        if prow:
            L += ['### Did the arms plateau?', '',
                  f'Criterion: the mean training loss of the last 10% of '
                  f'steps is within {100 * study.plateau_rel:g}% of the mean '
                  'of the 10% of steps ending at 75% of the schedule. EV = '
                  'the fraction of the aligned target\'s variance the student'
                  f' explains on {study.ev_images} held-out images at the end '
                  '(0 = the constant predictor); the last column averages '
                  'the EV of each of the first 8 target coordinates (for '
                  'SVD arms the directions of largest teacher variance).',
                  '',
                  '| arm | loss change, last quarter (per seed) | plateaued '
                  '| final EV (per seed) | mean EV of the first 8 target '
                  'coordinates |', '|---|---|---|---|---|']
            L += prow + ['']
            if f'{student}_curves' in pngs:
                L += [f'![loss and EV curves, {st.label}](images/'
                      f'{osp.basename(pngs[student + "_curves"])})', '']
    L += ['## Sweep', '',
          f'Student {study.sweep_student}, seed {study.sweep_seed}, the '
          'arm\'s full budget; score = CIFAR-10 probe top-1 (%) on the '
          'validation split. The chosen setting is used by every main seed '
          'of the arms in the last column.', '',
          '| arm | setting | val top-1 (%) | used by |', '|---|---|---:|---|']
    L += sweep_rows(R) + ['']
    edges = sweep_edges(R)
    if edges:
        L += ['At the edge of its grid (the optimum may lie outside it): '
              + ', '.join(edges) + '.', '']
    rows, total_cpu, est, complete = runtime_rows(R)
    L += ['## Runtime', '',
          'Per cell (1 process, 1 torch thread): wall clock on this shared '
          'machine and CPU seconds of the process.', '',
          '| cell type | student | wall s / cell | CPU s / cell | measured '
          '| planned |', '|---|---|---:|---:|---:|---:|']
    L += rows
    L += ['', f'Measured so far: {total_cpu / 3600:.2f} CPU hours. '
          + (f'Whole study, from the measured mean per cell type: '
             f'{est / 3600:.2f} CPU hours.' if complete else
             f'Cell types measured so far extrapolate to {est / 3600:.2f} '
             'CPU hours for them (types not yet measured are not '
             'counted).'), '']
    gpu = osp.join(osp.dirname(rdir), 'study_results_gpu', 'table.md')
    L += ['## GPU study', '']
    if osp.isfile(gpu):
        L += [open(gpu).read().strip(), '']
    else:
        L += ['Not run yet: no GPU has been lent to a session since the GPU '
              'script (`benchmarks/study_gpu.sh`) was prepared.', '']
    L += ['## Reproduce', '', '```bash',
          'python benchmarks/kdep_study.py --jobs 2   # resumable; reruns '
          'skip finished cells',
          'python benchmarks/kdep_study.py --report    # this page and the '
          'plots', '```', '']
    if not getattr(args, 'smoke', False) and \
            osp.abspath(rdir) == osp.join(REPO, 'benchmarks', 'study_results'):
        from .zoo import write_zoo  # the model zoo: the committed cells only
        for rel in write_zoo(R, kinds):
            say(f'model zoo written: {rel}')
    path = osp.join(docs, 'results.md')
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    atomic_write_bytes('\n'.join(L).encode(), path)
    say(f'report written: {path}')
    return path
