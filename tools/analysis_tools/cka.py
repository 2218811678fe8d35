# Copyright (c) kdep_mm contributors.
"""Teacher-vs-student feature similarity (linear CKA) per stage.

Builds the teacher and the student of a distillation config, loads the
student from an exported checkpoint (``tools/export_student.py``:
``backbone.*`` keys, or a distillation checkpoint's ``student.*``), runs
both on the first ``--num-samples`` images of ``<split>_dataloader`` and
plots linear CKA (Kornblith et al., 2019) between every teacher stage and
every student stage; the stage-by-stage pairs (teacher stage i vs student
stage i) are printed. A stage's output is average-pooled to at most
``--pool`` x ``--pool`` positions and flattened (``--pool 1``: the pooled
channel vector). Writes a PNG and prints where::

    python tools/analysis_tools/cka.py configs/kdep/cifar10_r56_to_r20.py \
        work_dirs/r56_to_r20/student_r20.pth --split val --num-samples 1000
"""
import argparse

import torch
import torch.nn.functional as F
from mmengine.runner.checkpoint import _load_checkpoint

from _common import (add_common_args, build_loader, collect, default_out,
                     load_distiller, matplotlib_pyplot, save_figure,
                     stage_names, strip_prefix)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_common_args(parser, split_default='val', samples_default=256)
    parser.add_argument('student', help='exported student checkpoint')
    parser.add_argument('--teacher-ckpt', help='overrides model.teacher_ckpt')
    parser.add_argument('--pool', type=int, default=4,
                        help='pool each stage to at most P x P (default 4)')
    parser.add_argument('--out', help='PNG to write')
    return parser.parse_args(argv)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of (N, p) and (N, q) features (float64)."""
    x = x.double() - x.double().mean(0, keepdim=True)
    y = y.double() - y.double().mean(0, keepdim=True)
    # the N x N form: ||Y^T X||_F^2 = <X X^T, Y Y^T>
    kx, ky = x @ x.T, y @ y.T
    hsic = (kx * ky).sum()
    norm = torch.sqrt((kx * kx).sum() * (ky * ky).sum())
    return (hsic / norm.clamp_min(1e-300)).item()


class StageTaps:
    """Forward hooks that keep each stage's output, pooled and flattened."""

    def __init__(self, backbone, names, pool):
        self.names, self.pool, self.out = names, pool, {}
        modules = dict(backbone.named_modules())
        self.handles = [
            modules[n].register_forward_hook(self._hook(n)) for n in names
        ]

    def _hook(self, name):

        def fn(module, inputs, output):
            t = output[0] if isinstance(output, (tuple, list)) else output
            if t.dim() == 4:
                h, w = t.shape[-2:]
                t = F.adaptive_avg_pool2d(t, (min(h, self.pool),
                                              min(w, self.pool)))
            elif t.dim() == 3 and self.pool == 1:  # tokens: mean over them
                t = t.mean(1)
            self.out[name] = t.flatten(1)

        return fn

    def pop(self):
        out, self.out = self.out, {}
        return out


def main(argv=None):
    args = parse_args(argv)
    cfg, model = load_distiller(args)
    if not hasattr(model, 'student') or not hasattr(model, 'teacher'):
        raise SystemExit(f'{args.config}: model {type(model).__name__} is '
                         'not a distiller with a student and a teacher')
    ckpt = _load_checkpoint(args.student, map_location='cpu')
    state = strip_prefix(ckpt.get('state_dict', ckpt))
    try:
        model.student.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SystemExit(f'{args.student} does not fit the student of '
                         f'{args.config}: {str(e)[:2000]}') from e
    teacher = getattr(model.teacher, 'backbone', model.teacher)
    student = model.student
    t_names, s_names = stage_names(teacher), stage_names(student)
    if not t_names or not s_names:
        raise SystemExit('cannot find the stages of the teacher / student '
                         'backbone (res_layers, layers or stages)')
    t_taps = StageTaps(teacher, t_names, args.pool)
    s_taps = StageTaps(student, s_names, args.pool)

    def run(x):
        teacher(x)
        student(x)
        out = {f't:{k}': v for k, v in t_taps.pop().items()}
        out.update({f's:{k}': v for k, v in s_taps.pop().items()})
        return out

    loader = build_loader(cfg, args.split, args.batch_size)
    feats = collect(loader, model, run, args.num_samples, args.device)
    n = next(iter(feats.values())).shape[0]
    cka = torch.tensor([[linear_cka(feats[f't:{t}'], feats[f's:{s}'])
                         for s in s_names] for t in t_names])

    plt = matplotlib_pyplot()
    fig, ax = plt.subplots(figsize=(1.2 * len(s_names) + 2.5,
                                    1.0 * len(t_names) + 1.5))
    im = ax.imshow(cka.numpy(), vmin=0, vmax=1, cmap='viridis')
    for i in range(len(t_names)):
        for j in range(len(s_names)):
            v = cka[i, j].item()
            ax.text(j, i, f'{v:.2f}', ha='center', va='center',
                    color='w' if v < 0.6 else 'k', fontsize=8)
    ax.set_xticks(range(len(s_names)), s_names, rotation=30)
    ax.set_yticks(range(len(t_names)), t_names)
    ax.set_xlabel('student stage')
    ax.set_ylabel('teacher stage')
    ax.set_title(f'linear CKA, {n} images ({args.split}), pool {args.pool}',
                 fontsize=9)
    fig.colorbar(im, ax=ax)
    for i in range(min(len(t_names), len(s_names))):
        print(f'stage {i}: teacher {t_names[i]} vs student {s_names[i]}: '
              f'CKA {cka[i, i].item():.4f}')
    save_figure(fig, args.out or default_out(args, 'cka'))


if __name__ == '__main__':
    main()
