"""The KDEP study, version 2 (issue 15), one module per concern.

* :mod:`.spec`       the study spec (``configs/study/study.py``), paths
* :mod:`.plan`       the cells and their dependencies, filters
* :mod:`.cellstore`  one JSON per cell (atomic), claim files
* :mod:`.scheduler`  the worker loop (``--jobs``), run one cell
* :mod:`.data`       splits, images decoded once into arrays
* :mod:`.pretrain`   the teacher PCA and the pre-training arms (Runner),
                     milestone exports, loss and explained-variance curves
* :mod:`.probes`     frozen probes: CIFAR-10, BCCD crops, CamVid pixels,
                     hymenoptera k-fold
* :mod:`.finetune`   full fine-tuning: BCCD RetinaNet, CamVid FCN
* :mod:`.stats`      mean/sd, paired differences with 95% intervals
* :mod:`.report`     docs/results.md: tables, sensitivity, sweep, verdicts
* :mod:`.plots`      score-vs-compute and loss curves (PNG)
* :mod:`.cli`        the command line (``benchmarks/kdep_study.py``)
"""
