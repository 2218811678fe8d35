# Copyright (c) kdep_mm contributors.
"""The teacher's feature spectrum on a config's dataset.

Runs the teacher of a distillation config (``model.teacher`` with
``model.teacher_ckpt``) over the first ``--num-samples`` images of
``<split>_dataloader`` and plots the PCA spectrum of its distilled feature
(the pooled pre-activation feature KDEP's SVD aligner is fitted on): the
fraction of the variance of each principal direction (log scale) and the
cumulative fraction, with the ``k`` directions the aligner keeps
(``model.aligner.student_channels``, or ``--k``) marked. Writes a PNG and
prints where::

    python tools/analysis_tools/feature_spectrum.py configs/kdep/cifar10_r56_to_r20.py \
        --num-samples 2048 --out work_dirs/analysis/r56_spectrum.png
"""
import argparse

import torch

from _common import (add_common_args, build_loader, collect, default_out,
                     load_distiller, matplotlib_pyplot, save_figure)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_common_args(parser)
    parser.add_argument('--teacher-ckpt', help='overrides model.teacher_ckpt')
    parser.add_argument('--k', type=int,
                        help='directions kept (default: '
                        'model.aligner.student_channels)')
    parser.add_argument('--out', help='PNG to write')
    return parser.parse_args(argv)


def spectrum(feats: torch.Tensor) -> torch.Tensor:
    """Eigenvalues (descending, float64) of the features' covariance."""
    x = feats.double()
    x = x - x.mean(0, keepdim=True)
    cov = x.T @ x / max(1, x.shape[0] - 1)
    return torch.linalg.eigvalsh(cov).flip(0).clamp_min(0)


def main(argv=None):
    args = parse_args(argv)
    cfg, model = load_distiller(args)
    teacher = getattr(model, 'frozen_teacher', None)
    if not hasattr(model, 'teacher_features') or getattr(
            teacher, 'pooled', None) is None:
        raise SystemExit(f'{args.config}: model {type(model).__name__} has '
                         'no pooled teacher feature (a KDEP / FitNets / TCS '
                         'distiller config is needed)')
    k = args.k
    if k is None and getattr(model, 'aligner', None) is not None:
        k = getattr(model.aligner, 'student_channels', None)
    loader = build_loader(cfg, args.split, args.batch_size)
    feats = collect(loader, model,
                    lambda x: dict(feat=model.teacher_features(x)),
                    args.num_samples, args.device)['feat']
    ev = spectrum(feats)
    frac = ev / ev.sum().clamp_min(1e-300)
    cum = frac.cumsum(0)
    n, c = feats.shape

    plt = matplotlib_pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    idx = torch.arange(1, c + 1).numpy()
    ax.semilogy(idx, frac.clamp_min(1e-12).numpy(), '.-', color='C0',
                label='variance fraction')
    ax.set_xlabel('principal direction')
    ax.set_ylabel('fraction of the variance (log)', color='C0')
    ax2 = ax.twinx()
    ax2.plot(idx, cum.numpy(), color='C1', label='cumulative')
    ax2.set_ylabel('cumulative fraction', color='C1')
    ax2.set_ylim(0, 1.02)
    title = (f'teacher feature spectrum: {c}-d, {n} images '
             f'({args.split})')
    if k is not None and 0 < k <= c:
        kept = cum[k - 1].item()
        ax.axvline(k, color='k', ls='--', lw=1)
        ax2.annotate(f'k = {k}: {kept:.1%}', (k, kept),
                     textcoords='offset points', xytext=(6, -14))
        title += f'; k = {k} keeps {kept:.1%}'
        print(f'k = {k} of {c} directions keep {kept:.2%} of the variance')
    ax.set_title(title, fontsize=9)
    print(f'{n} teacher features of dimension {c}; top direction '
          f'{frac[0].item():.2%}, 90% of the variance in '
          f'{int((cum < 0.9).sum().item()) + 1} directions')
    save_figure(fig, args.out or default_out(args, 'spectrum'))


if __name__ == '__main__':
    main()
