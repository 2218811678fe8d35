"""How many epochs of a training run fit in a time budget, priced by a
probe run: the GPU scripts that train a teacher for as long as their
budget allows (benchmarks/ensemble_teacher_gpu.sh, tcs_ssl_gpu.sh).

    python tools/gpu/plan_epochs.py PROBE_DIR ITERS_PER_EPOCH EPOCHS_MAX \\
        BUDGET_S OUT_JSON

The iteration time is mmengine's logged ``time`` of the probe's last
logging window (``PROBE_DIR/*/vis_data/scalars.json``):

    epoch_s = iter_s x ITERS_PER_EPOCH
    epochs  = min(EPOCHS_MAX, floor(BUDGET_S / epoch_s))   (>= 0)

Writes the plan to OUT_JSON and prints ``epochs iter_s epoch_s``.
"""
import glob
import json
import sys


def plan(probe_dir: str, iters_per_epoch: int, epochs_max: int,
         budget_s: float) -> dict:
    rows = []
    for path in glob.glob(f'{probe_dir}/*/vis_data/scalars.json'):
        with open(path) as f:
            rows += [json.loads(line) for line in f if '"time"' in line]
    if not rows:
        raise SystemExit(f'plan_epochs: no logged iteration time under '
                         f'{probe_dir}/*/vis_data/scalars.json')
    rows.sort(key=lambda r: r['step'])
    iter_s = rows[-1]['time']  # mean over the last logged window
    epoch_s = iter_s * iters_per_epoch
    epochs = max(0, min(epochs_max, int(budget_s // epoch_s)))
    return dict(probe_iters=rows[-1]['step'], iter_s=iter_s,
                data_time_s=rows[-1].get('data_time'), epoch_s=epoch_s,
                train_budget_s=budget_s, epochs=epochs,
                epochs_max=epochs_max, iters_per_epoch=iters_per_epoch,
                max_iters=epochs * iters_per_epoch)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 5:
        raise SystemExit(__doc__)
    probe, ipe, emax, budget, out = argv
    p = plan(probe, int(ipe), int(emax), int(budget))
    with open(out, 'w') as f:
        json.dump(p, f, indent=1)
    print(p['epochs'], f'{p["iter_s"]:.4f}', f'{p["epoch_s"]:.1f}')


if __name__ == '__main__':
    main()
