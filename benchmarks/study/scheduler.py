"""The worker loop: take the next runnable cell through a claim file, run
it, write its JSON (or ``<cell>.error.txt``), repeat. Several processes
(``--jobs``) share the work; a killed study resumes where it stopped."""
import gc
import os
import os.path as osp
import time
import traceback

from .cellstore import (cell_path, load_result, load_result_id, pick_ready,
                        release, retire_lost, write_json)
from .spec import say


def run_cell(cell, ctx):
    """Run one cell; its result dict with timings and load added."""
    import torch

    from . import finetune, pretrain, probes, stores
    load0 = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    if cell.kind == 'pca':
        res = pretrain.run_pca(cell, ctx)
    elif cell.kind == 'store':
        res = stores.run_store(cell, ctx)
    elif cell.kind in ('pretrain', 'sweep'):
        res = pretrain.run_pretrain(cell, ctx)
    elif cell.kind == 'probe':
        res = probes.run_probe_cell(cell, ctx)
    else:
        res = finetune.run_finetune(cell, ctx)
    res.update(cell=cell.id, kind=cell.kind, arm=cell.arm,
               student=cell.student, seed=cell.seed, task=cell.task,
               milestone=cell.milestone, setting=cell.setting,
               total_s=round(time.perf_counter() - t0, 2),
               cpu_s=round(time.process_time() - c0, 2),
               load_start=round(load0, 2),
               load_end=round(os.getloadavg()[0], 2),
               threads=torch.get_num_threads(), smoke=ctx.smoke,
               finished=time.strftime('%Y-%m-%d %H:%M:%S'))
    return res


def retire_stale(rdir, cells, chosen=None):
    """A finished pre-training cell is rerun (its JSON moves to
    ``*.stale.json``) when its exports are gone (cells are kept in git,
    exports are not) and a cell that needs them has not run, or when
    ``chosen(arm)`` -- the sweep's current choice, once all its cells have
    run -- differs from the setting the cell was trained with (a widened
    grid chose anew)."""
    for c in cells:
        if c.kind != 'pretrain':
            continue
        res = load_result(rdir, c)
        if res is None:
            continue
        if chosen is not None and 'chosen' in res:
            try:
                now = chosen(c.arm)
            except RuntimeError:  # its sweep is not complete yet
                now = res['chosen']
            if now != res['chosen']:
                gone = [c] + [d for d in cells if c.id in d.dep_ids
                              and load_result(rdir, d) is not None]
                for d in gone:  # the cell and what was made from its exports
                    os.replace(cell_path(rdir, d),
                               cell_path(rdir, d, '.stale.json'))
                say(f'cell {c.id}: trained with {res["chosen"]}, the sweep '
                    f'now chooses {now}: rerunning it and {len(gone) - 1} '
                    'cell(s) made from it')
                continue
        exports = [m['export'] for m in res.get('milestones', [])
                   if m.get('export')]
        if not all(osp.isfile(p) for p in exports):
            done = {d.id: d for d in cells if d is not c
                    and load_result(rdir, d) is not None}
            retire_lost([c.id], [d.dep_ids for d in cells
                                 if load_result(rdir, d) is None],
                        lambda cid: cell_path(rdir, done.get(cid, c)), say,
                        done_deps={i: d.dep_ids for i, d in done.items()})


def work(cells, ctx):
    """Run the cells in plan order; returns (done, failed) of this process."""
    rdir = ctx.rdir
    failed_here = set()
    n_done = n_failed = 0
    while True:
        pending = [c for c in cells
                   if load_result(rdir, c) is None and c.id not in failed_here]
        if not pending:
            break
        picked, waiting = pick_ready(
            pending, lambda c: c.dep_ids,
            lambda cid: load_result_id(rdir, cid) is not None, rdir,
            failed_here)
        if picked is None:
            if waiting:
                time.sleep(3)
                continue
            break
        say(f'cell {picked.id}: start (load {os.getloadavg()[0]:.1f})')
        err = cell_path(rdir, picked, '.error.txt')
        try:
            res = run_cell(picked, ctx)
        except Exception:  # noqa: BLE001 - a failed cell must not stop us
            from kdep_mm.utils.checkpoint import atomic_write_bytes
            tb = traceback.format_exc()
            atomic_write_bytes(tb.encode(), err)
            say(f'cell {picked.id}: FAILED, see {err}\n{tb[-2000:]}')
            failed_here.add(picked.id)
            n_failed += 1
        else:
            write_json(cell_path(rdir, picked), res)
            if osp.isfile(err):
                os.remove(err)
            score = res.get('score')
            say(f'cell {picked.id}: done in {res["total_s"]:.1f}s'
                + (f', score {score}' if score is not None else '')
                + (f', pre-training {res["pretrain_cpu_s"]:.1f} CPU s'
                   if 'pretrain_cpu_s' in res else ''))
            n_done += 1
        finally:
            release(rdir, picked)
            gc.collect()
    return n_done, n_failed
