#!/usr/bin/env python
"""The KDEP study (issue 15, version 2): do the papers' effects show at
small scale on real data, as score-vs-compute curves on downstream tasks
that separate random init from pre-training?

The code lives in the package ``benchmarks/study`` (one module per concern:
plan, cell store, scheduler, data, pre-training, probes, fine-tuning,
statistics, report, plots); the spec in ``configs/study/study.py``.
``python benchmarks/kdep_study.py --help`` lists the options.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from study.cli import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
