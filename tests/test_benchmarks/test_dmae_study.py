"""The DMAE CIFAR study's plumbing (benchmarks/dmae_study.py,
benchmarks/dmae_cifar_gpu.sh, configs/dmae/cifar/study.py).

Fast: the presets build the models they name (visible patches, the pair's
projection), the plan's order and dependencies, the augmentation against
its definition, the report's statistics against hand computations, the doc
section replacement. Slow (one smoke run of the GPU script on CPU, one
seed pair of a reduced plan): the cells run on the real CIFAR-10 JPEGs, the
DMAE student's teacher holds the teacher cell's weights, the fine-tuned
classifier loads the export, $OUT gets the files, a rerun skips the cells.
"""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from helpers.paths import REPO

sys.path.insert(0, osp.join(REPO, 'benchmarks'))

import dmae_study as D  # noqa: E402


@pytest.fixture(scope='module')
def smoke_spec():
    return D.load_spec('smoke')


def test_presets_build_their_models():
    import kdep_mm  # noqa: F401
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    init_default_scope('mmpretrain')
    logger = MMLogger.get_instance('mmengine')
    level = logger.level
    logger.setLevel('WARNING')  # init_weights prints every parameter
    try:
        _build_presets()
    finally:
        logger.setLevel(level)


def _build_presets():
    from kdep_mm.registry import MODELS
    for preset in ('gpu', 'cpu', 'smoke'):
        S = D.load_spec(preset)
        cfg = dict(S['dmae_student'], mask_ratio=0.95,
                   student=dict(S['dmae_student']['student'],
                                mask_ratio=0.95))
        model = MODELS.build(cfg)  # (no init_weights: shapes only)
        (s, t), = S['distill_pairs']
        assert model.num_visible == 3  # int(64 * 0.05)
        assert model.student.num_patches == 64
        assert model.projectors[0].weight.shape == (
            S['teacher_arch']['embed_dims'], S['student_arch']['embed_dims'])
        assert len(model.student.layers) == S['student_arch']['num_layers']
        assert len(model.teacher.backbone.layers) == \
            S['teacher_arch']['num_layers']
        # the authors' 3/4-depth pair (ViT-B 9/12 <- ViT-L 18/24), scaled
        # (rounded up where 3/4 of the depth is not a whole block)
        if preset != 'smoke':
            assert s == math.ceil(0.75 * len(model.student.layers))
            assert t == math.ceil(0.75 * len(model.teacher.backbone.layers))
        # the student's MAE head keeps norm_pix off (the authors' script),
        # the teacher's MAE on (MAE's recipe)
        assert not model.head.norm_pix and S['teacher']['head']['norm_pix']
        x = torch.randn(2, 3, 32, 32)
        losses = model.loss(x)
        assert set(losses) == {'loss_rec', 'loss_distill'}
        assert all(torch.isfinite(v) for v in losses.values())


def test_plan_order_and_dependencies(smoke_spec):
    cells = D.plan(smoke_spec)
    ids = [c['id'] for c in cells]
    assert ids[0] == 'teacher' and len(ids) == len(set(ids))
    n = len(smoke_spec['seeds'])
    assert len(ids) == 1 + n * (4 * 3 + 2)
    pos = {c: i for i, c in enumerate(ids)}
    for c in cells:
        for d in c['deps']:
            assert pos[d] < pos[c['id']]
        if c['kind'] == 'pretrain':
            assert c['deps'] == (['teacher'] if c['arm'].startswith('dmae')
                                 else [])
        if c['arm'] == 'scratch':
            assert c['deps'] == [] and c['kind'] != 'pretrain'
    # every cell of seed 0 comes before any of seed 1
    last0 = max(i for i, c in enumerate(cells) if c['seed'] == 0)
    first1 = min(i for i, c in enumerate(cells) if c['seed'] == 1)
    assert last0 < first1


def test_crop_flip_is_a_shift_or_its_mirror():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float).view(2, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        y = D.random_crop_flip(x, gen, pad=2)
        for i in range(2):
            ok = False
            for flip in (False, True):
                src = x[i].flip(-1) if flip else x[i]
                for dy in range(-2, 3):
                    for dx in range(-2, 3):
                        ref = torch.zeros_like(src)
                        ys, yd = (slice(dy, 8), slice(0, 8 - dy)) if dy >= 0 \
                            else (slice(0, 8 + dy), slice(-dy, 8))
                        xs, xd = (slice(dx, 8), slice(0, 8 - dx)) if dx >= 0 \
                            else (slice(0, 8 + dx), slice(-dx, 8))
                        ref[:, yd, xd] = src[:, ys, xs]
                        ok |= torch.allclose(y[i], ref, atol=1e-3)
            assert ok
    # a resized crop of the full area at aspect 1 and no shift is x or its
    # mirror; smaller areas zoom in (fewer distinct values)
    y = D.random_crop_flip(x, gen, scale=(0.25, 0.25))
    assert y.shape == x.shape and y.min() >= x.min() - 1e-4


def test_interleaved_pool_prefixes_are_class_balanced():
    pairs = [(f'{c}/{i}.jpg', c) for c in range(3) for i in range(4)]
    out = D.interleave_classes(pairs)
    assert sorted(out) == sorted(pairs)
    assert [lab for _, lab in out[:6]] == [0, 1, 2, 0, 1, 2]
    assert out[:3] == [('0/0.jpg', 0), ('1/0.jpg', 1), ('2/0.jpg', 2)]


def _cell(kind, arm, seed, score, **kw):
    return dict(id=f'{kind}/{arm}/s{seed}', kind=kind, arm=arm, seed=seed,
                score=score, **kw)


def test_report_statistics_by_hand(tmp_path, smoke_spec):
    from study.cellstore import write_json
    mae = [50., 52., 51.]
    dmae = [53., 54., 55.]       # diffs 3, 2, 4: mean 3, sd 1
    d95 = [52.5, 53., 54.]       # vs dmae75: -0.5, -1, -1
    for seed in range(3):
        for kind in ('probe', 'finetune'):
            for arm, v in (('mae75', mae), ('dmae75', dmae), ('dmae95', d95),
                           ('dmae98', mae)):
                write_json(osp.join(tmp_path, 'cells', f'{kind}__{arm}__s'
                                    f'{seed}.json'),
                           _cell(kind, arm, seed, v[seed]))
        write_json(osp.join(tmp_path, 'cells', f'pretrain__dmae95__s{seed}'
                            '.json'), dict(_cell('pretrain', 'dmae95', seed,
                                                 None), visible=3,
                                           train_s=10. + seed))
    text = D.report(smoke_spec, str(tmp_path), 'CMD')
    half = 4.303 * 1. / math.sqrt(3)
    assert (f'| DMAE 75% > MAE alone 75% | probe | +3.00 '
            f'[{3 - half:+.2f}, {3 + half:+.2f}] (n=3) | holds |') in text
    d = [-0.5, -1., -1.]
    m = sum(d) / 3
    sd = math.sqrt(sum((v - m) ** 2 for v in d) / 2)
    h = 4.303 * sd / math.sqrt(3)
    assert (f'| DMAE 95% within 2 points of 75% (95 - 75 > -2) | finetune | '
            f'{m:+.2f} [{m - h:+.2f}, {m + h:+.2f}] (n=3) | holds |') in text
    assert '| dmae95 | 3 | 11 | 53.17 ± 0.76 (n=3) |' in text  # no CPU s
    assert 'Command: `CMD`' in text


def test_lost_teacher_and_exports_are_rerun(tmp_path, smoke_spec):
    """Cell JSONs are committed, the work dir is not: a finished teacher
    (or pre-training) cell whose checkpoint is gone is rerun when a cell
    that needs it has not run, with the finished cells made from it; the
    report names DMAE cells distilled from another run of the teacher."""
    from study.cellstore import write_json
    cells = D.plan(smoke_spec)
    ctx = type('Ctx', (), dict(rdir=str(tmp_path / 'res'),
                               work=str(tmp_path / 'work')))()
    for kind, arm in (('teacher', 'teacher'), ('pretrain', 'dmae75'),
                      ('probe', 'dmae75')):
        c = _cell(kind, arm, 0, 50.)
        c['id'] = 'teacher' if kind == 'teacher' else c['id']
        write_json(D.cell_file(ctx.rdir, c['id']), c)
    os.makedirs(ctx.work)
    torch.save({}, osp.join(ctx.work, 'teacher.pth'))
    D.retire_lost_artefacts(cells, ctx)
    # the s0 export is gone and finetune/dmae75/s0 waits for it: the
    # pre-training reruns, and so does the probe made from the old export
    assert D.done(ctx.rdir, 'teacher')
    assert not D.done(ctx.rdir, 'pretrain/dmae75/s0')
    assert not D.done(ctx.rdir, 'probe/dmae75/s0')
    assert osp.isfile(D.cell_file(ctx.rdir, 'probe/dmae75/s0')[:-5]
                      + '.stale.json')
    for kind in ('pretrain', 'probe'):
        write_json(D.cell_file(ctx.rdir, f'{kind}/dmae75/s0'),
                   _cell(kind, 'dmae75', 0, 50.))
    torch.save({}, D.export_path(ctx, 'dmae75', 0))
    os.remove(osp.join(ctx.work, 'teacher.pth'))
    D.retire_lost_artefacts(cells, ctx)
    # teacher.pth is gone and pretrain/dmae75/s1 waits for it: the teacher
    # reruns, and the students distilled from it (and their probes) too
    for cid in ('teacher', 'pretrain/dmae75/s0', 'probe/dmae75/s0'):
        assert not D.done(ctx.rdir, cid)
    write_json(D.cell_file(ctx.rdir, 'teacher'), dict(
        _cell('teacher', 'teacher', 0, None), id='teacher',
        teacher_sha256='new', losses=dict(loss=.5), epochs=1, steps=1,
        train_s=1., device='cpu', probe=dict(score=1., val=1.)))
    write_json(D.cell_file(ctx.rdir, 'pretrain/dmae95/s0'), dict(
        _cell('pretrain', 'dmae95', 0, None), id='pretrain/dmae95/s0',
        visible=3, train_s=1., teacher_sha256='new'))
    write_json(D.cell_file(ctx.rdir, 'pretrain/dmae98/s0'), dict(
        _cell('pretrain', 'dmae98', 0, None), id='pretrain/dmae98/s0',
        visible=1, train_s=1.))
    text = D.report(smoke_spec, ctx.rdir, 'CMD')
    assert 'another run of the teacher cell' in text
    assert 'pretrain/dmae98/s0.' in text and 'dmae95/s0' not in text


def test_doc_section_is_replaced_in_place(tmp_path):
    doc = tmp_path / 'doc.md'
    doc.write_text('a\n<!-- dmae-study:begin:cpu -->\nold\n'
                   '<!-- dmae-study:end:cpu -->\nb\n')
    D.write_doc_section('new\n', str(doc), 'cpu')
    assert doc.read_text() == ('a\n<!-- dmae-study:begin:cpu -->\nnew\n'
                               '<!-- dmae-study:end:cpu -->\nb\n')
    with pytest.raises(KeyError, match='gpu'):
        D.write_doc_section('x', str(doc), 'gpu')
    # the real doc has both blocks
    s = open(D.DOC).read()
    for key in ('cpu', 'gpu'):
        assert f'<!-- dmae-study:begin:{key} -->' in s
        assert f'<!-- dmae-study:end:{key} -->' in s


@pytest.mark.slow
def test_gpu_script_smoke_runs_the_cells(tmp_path):
    """dmae_cifar_gpu.sh --smoke: teacher, MAE and DMAE-95 students, their
    probes and fine-tunings for two seeds; then a rerun does nothing."""
    from shared_data import shared_data_root
    data = tmp_path / 'data'
    data.mkdir()
    os.symlink(osp.join(shared_data_root(), 'cifar10_jpeg.tar.gz'),
               data / 'cifar10_jpeg.tar.gz')
    out, res = tmp_path / 'out', tmp_path / 'res'
    env = dict(os.environ, OUT=str(out), KDEP_GPU_RESULTS=str(res),
               KDEP_GPU_DATA=str(data))
    only = ('teacher,pretrain/mae75,pretrain/dmae95,probe/mae75,'
            'probe/dmae95,finetune/dmae95')
    r = subprocess.run(['bash', 'benchmarks/dmae_cifar_gpu.sh', '--smoke',
                        '--only', only], cwd=REPO, env=env, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    assert sorted(os.listdir(out)) == ['cells.tar.gz', 'dmae_gpu.log',
                                       'env.txt', 'report.md']
    cells = {n: json.load(open(res / 'cells' / n))
             for n in os.listdir(res / 'cells')}
    assert len(cells) == 11, sorted(cells)   # 1 + 2 seeds x 5
    ft = cells['finetune__dmae95__s1.json']
    assert ft['load'] == dict(missing=['ln2.bias', 'ln2.weight'],
                              unexpected=['ln1.bias', 'ln1.weight'])
    assert 0 <= ft['score'] <= 100 and ft['epochs'] == 1
    pre = cells['pretrain__dmae95__s0.json']
    assert pre['visible'] == 3 and set(pre['losses']) == {'loss_rec',
                                                          'loss_distill'}
    assert set(cells['pretrain__mae75__s0.json']['losses']) == {'loss'}
    probe = cells['probe__mae75__s1.json']
    assert probe['l2'] in probe['sweep'] and probe['score'] == \
        probe['sweep'][probe['l2']]['test']
    assert (probe['n_train'], probe['n_val'], probe['n_test']) == (100, 50,
                                                                   100)
    report = (out / 'report.md').read_text()
    assert '| dmae95 | 3 |' in report and 'Command:' in report
    before = {n: os.path.getmtime(res / 'cells' / n) for n in cells}
    r = subprocess.run([sys.executable, 'benchmarks/dmae_study.py',
                        '--smoke', '--only', only, '--results-dir', str(res),
                        '--work-dir', str(res / 'work')], cwd=REPO,
                       env=env, text=True, stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=300)
    assert r.returncode == 0 and 'start ' not in r.stdout, r.stdout[-2000:]
    assert before == {n: os.path.getmtime(res / 'cells' / n) for n in cells}
