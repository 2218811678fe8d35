"""The report's figures: downstream score vs pre-training compute (one
panel per frozen probe, one line per arm, mean over seeds; the paper's
Fig. 1 at small scale), and the training-loss and EV curves."""
import os.path as osp

from .spec import budget_root


def make_plots(R, images):
    """Write the PNGs; returns {student: path, student_curves: path}."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    out = {}
    study = R.study
    colors = plt.get_cmap('tab10')
    pca = R.res.get('pca')
    if pca:
        ratio = pca['explained_variance_ratio']
        cum = [sum(ratio[:i + 1]) for i in range(len(ratio))]
        fig, ax = plt.subplots(figsize=(5, 3.4))
        ax.plot(range(1, len(cum) + 1), cum, marker='.', color='k')
        for name, kept in pca['kept'].items():
            ax.axvline(kept['k'], ls=':', color='grey')
            ax.text(kept['k'], 0.05, f" k = {kept['k']} ({name})", fontsize=7,
                    rotation=90, va='bottom')
        ax.set_xlabel('principal directions of the teacher feature')
        ax.set_ylabel('cumulative variance kept')
        ax.set_ylim(0, 1.02)
        ax.set_title(f'ResNet-56 feature PCA ({pca["n_features"]} '
                     'features, 10% pool)', fontsize=9)
        fig.tight_layout()
        path = osp.join(images, 'teacher_pca_spectrum.png')
        fig.savefig(path, dpi=110)
        out['pca'] = path
        plt.close(fig)
    def style(arms, arm):
        """(colour, line style): a budget-check arm is drawn in the colour
        of the arm its chain starts from, dashed at 2x, dotted at 4x, so
        its curve reads as that arm's schedule run longer."""
        root, level = budget_root(study, arm)
        own = [a for a in arms if not study.arms[a].get('doubles')]
        cmap = colors if len(own) <= 10 else plt.get_cmap('tab20')
        return cmap(own.index(root) % cmap.N), ('-', '--', ':')[min(level, 2)]

    for student, st in study.students.items():
        tasks = list(study.probes)
        fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6))
        drew = False
        for ax, t in zip(axes, tasks):
            for arm in st.arms:
                pts = R.curve(arm, student, t)
                if not pts:
                    continue
                drew = True
                label = f'({arm}) {study.arms[arm].label}'
                if arm == 'a':
                    ax.axhline(pts[0][1], color='grey', ls=':', label=label)
                    continue
                xs, ys = [p[0] for p in pts], [p[1] for p in pts]
                color, ls = style(st.arms, arm)
                ax.plot(xs, ys, marker='o', ms=3, color=color, ls=ls,
                        label=label)
            lab, metric = R.task_label(t)
            ax.set_title(lab, fontsize=9)
            ax.set_xscale('log')
            ax.set_xlabel('pre-training CPU s (log)')
            ax.set_ylabel(metric)
        if drew:
            axes[-1].legend(fontsize=6, loc='lower right')
            fig.suptitle(f'{st.label}: score vs pre-training compute '
                         '(mean over seeds, milestones 12.5/25/50/100%)',
                         fontsize=10)
            fig.tight_layout()
            path = osp.join(images, f'study_v2_score_vs_compute_{student}.png')
            fig.savefig(path, dpi=110)
            out[student] = path
        plt.close(fig)

        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
        drew = False
        for arm in st.arms:
            pre = [p for p in R.pretrain(arm, student) if p]
            if not pre or not pre[0].get('loss_curve'):
                continue
            drew = True
            p = pre[0]
            color, ls = style(st.arms, arm)
            ax1.plot([c['step'] for c in p['loss_curve']],
                     [c['loss'] for c in p['loss_curve']], color=color, ls=ls,
                     label=f'({arm}) {study.arms[arm].label}')
            if p.get('ev'):
                ax2.plot([e['step'] for e in p['ev']],
                         [e['ev'] for e in p['ev']], marker='o', ms=3,
                         color=color, ls=ls, label=f'({arm})')
        if drew:
            ax1.set_yscale('log')
            ax1.set_xlabel('SGD step')
            ax1.set_ylabel('training loss (first seed)')
            ax1.legend(fontsize=6)
            ax2.set_ylim(-0.5, 1)
            ax2.axhline(0, color='grey', ls=':')
            ax2.set_xlabel('SGD step')
            ax2.set_ylabel('explained variance of the aligned target')
            ax2.legend(fontsize=6)
            fig.tight_layout()
            path = osp.join(images, f'study_v2_curves_{student}.png')
            fig.savefig(path, dpi=110)
            out[f'{student}_curves'] = path
        plt.close(fig)
    return out
