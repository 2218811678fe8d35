"""The GPU study's table (``benchmarks/study_results_gpu/table.md``, which
the report puts beside the CPU study's tables): one row per arm, from the
cells of a ``--study configs/study/study_gpu.py`` run; cells that did not
run say so (time guard, failure), no number is filled in."""
import datetime
import json
import os.path as osp

from .cellstore import load_result, load_result_id
from .plan import arm_kinds

PROBE_SHORT = dict(cifar='CIFAR-10 probe', bccd_crops='BCCD crops',
                   camvid_pixels='CamVid pixels', hymenoptera='hymenoptera')


def _device_line(device):
    import torch
    if device == 'cuda' and torch.cuda.is_available():
        name = torch.cuda.get_device_name(0)
        return f'{name}, torch {torch.__version__} (CUDA {torch.version.cuda})'
    return f'CPU ({device}), torch {torch.__version__}'


def gpu_table(study, cells, rdir, device='cuda', wall_s=None, smoke=False):
    """Markdown lines of the table (``wall_s`` default: seconds since
    $KDEP_GPU_T0, the script's start, when set)."""
    import os
    import time
    if wall_s is None and os.environ.get('KDEP_GPU_T0'):
        wall_s = time.time() - float(os.environ['KDEP_GPU_T0'])
    kinds = arm_kinds(study)
    last = len(study.milestones) - 1
    (student, st), = study.students.items()
    seed = st.seeds[0]
    probes = list(study.probes)
    ids = {c.id for c in cells}
    pre = {a: load_result_id(rdir, f'pretrain/{a}/{student}/s{seed}')
           for a in st.arms}
    prb = {a: load_result_id(rdir, f'probe/{a}/{student}/s{seed}/m{last}')
           for a in st.arms}
    pca = load_result_id(rdir, 'pca')
    L = []
    when = datetime.date.today().isoformat()
    pool = next((r['images'] for a, r in pre.items()
                 if r and r.get('data') == '100%'), None)
    pool10 = next((r['images'] for a, r in pre.items()
                   if r and r.get('data') == '10%'), None)
    smoke_note = ('**SMOKE RUN (plumbing only: a few images and steps; the '
                  'numbers mean nothing)** ' if smoke else '')
    batch = next((r['batch'] for r in pre.values() if r and r.get('batch')),
                 study.batch_size)
    n100 = pool if pool is not None else '?'
    n10 = pool10 if pool10 is not None else '?'
    took = f' The whole script took {wall_s:.0f} s.' if wall_s else ''
    L.append(
        f'{smoke_note}`bash benchmarks/study_gpu.sh` on {when}: '
        f'{_device_line(device)}; {st.label}, seed {seed}, batch '
        f'{batch}; pool "100%" = {n100} CIFAR-10 train images (all '
        "of train except the probe's 5,000 training and 2,000 validation "
        f'images), "10%" = {n10}; lr fixed in the spec (each arm config\'s lr '
        'x sqrt(8) for the 8x batch), no sweep; the four frozen probes on the '
        f'final exports.{took}')
    L += ['']
    head = ['arm', 'data', 'steps', 'samples', 'lr', 'train wall (s)',
            'ms/step', 'final EV', 'plateau'] + \
        [f'{PROBE_SHORT.get(p, p)} ({study.probes[p].metric})'
         for p in probes]
    L += ['| ' + ' | '.join(head) + ' |',
          '|' + '|'.join(['---'] * 2 + ['---:'] * (len(head) - 2)) + '|']
    for a in st.arms:
        r, p = pre[a], prb[a]
        label = f'({a}) {study.arms[a].label}'
        if r is None:
            row = [label] + ['not run'] + ['-'] * (len(head) - 2)
            L.append('| ' + ' | '.join(row) + ' |')
            continue
        if kinds[a] == 'random':
            cols = ['-', '0', '0', '-', '0', '-', '-', '-']
        else:
            m = r['milestones'][-1]
            ev = r.get('ev') or []
            pl = r.get('plateau')
            cols = [f"{r['data']} ({r['images']:,})", f"{r['steps']:,}",
                    f"{r['samples']:,}", f"{r['lr']:g}",
                    f"{m['train_wall_s']:.1f}",
                    f"{1000 * m['train_wall_s'] / max(1, r['steps']):.1f}",
                    f"{ev[-1]['ev']:.3f}" if ev else '-',
                    ('-' if pl is None else
                     f"{'yes' if pl['plateau'] else 'no'} "
                     f"({100 * pl['rel_change']:+.1f}%)")]
        scores = ([f"{p['scores'][t]:.2f}" for t in probes] if p else
                  ['not run'] * len(probes))
        L.append('| ' + ' | '.join([label] + cols + scores) + ' |')
    if prb.get('a') and prb.get('b'):
        diff = [f"{prb['b']['scores'][t] - prb['a']['scores'][t]:+.2f}"
                for t in probes]
        L.append('| (b) - (a): supervised 100% minus random init | | | | | '
                 '| | | | ' + ' | '.join(diff) + ' |')
    L += ['']
    notes = []
    if pca:
        notes.append(f"teacher PCA on the 10% pool: {pca['n_features']:,} "
                     f"features, {pca['fit_s']:.1f} s")
    skipped_f = osp.join(rdir, 'skipped.json')
    if osp.isfile(skipped_f):
        with open(skipped_f) as f:
            sk = [s for s in json.load(f).get('skipped', [])
                  if s['cell'] in ids]
        for s in sk:
            notes.append(f"`{s['cell']}` not run: {s['reason']}")
    failed = [c.id for c in cells if load_result(rdir, c) is None and
              osp.isfile(osp.join(rdir, 'cells', c.fname + '.error.txt'))]
    notes += [f'`{c}` FAILED (see its .error.txt)' for c in failed]
    notes.append('One seed: no intervals and no sensitivity verdict (the '
                 "CPU study's 3 x pooled-sd rule needs seeds); the (b) - (a) "
                 'row is the gap a pre-training effect has to be read '
                 'against. Train wall = the pre-training loop, exports and '
                 "EV points excluded; 'final EV' = the explained variance of "
                 'the aligned target on 256 held-out images at the last step.')
    L += [f'* {n}' for n in notes]
    return L


def write_gpu_table(path, study, cells, rdir, **kw):
    from kdep_mm.utils.checkpoint import atomic_write_bytes
    text = '\n'.join(gpu_table(study, cells, rdir, **kw)) + '\n'
    atomic_write_bytes(text.encode(), path)
    return path
