# The KDEP study on one GPU (issue 15 item 9): the CPU study's arms, student,
# probes and code, with the whole of CIFAR-10 train behind the pool and
# GPU-sized budgets, in one prepared command of at most 8 minutes on one H200
# (benchmarks/study_gpu.sh, docs/gpu.md). Read by benchmarks/kdep_study.py
# --study configs/study/study_gpu.py; what is not set here is study.py's.
_base_ = ['./study.py']

# ---------------------------------------------------------------- sizes
# Pool ("100%"): every CIFAR-10 train image except the probe's 5,000
# training and 2,000 validation images (the CPU study's, drawn the same way,
# so the probe stays disjoint from the pool): 4,300 per class = 43,000.
# "10%": a class-balanced tenth of it, 4,300 images.
pool_takes_rest = True
# Images decoded once into arrays and served from memory with the same
# RandomCrop (mean-colour padding) + flip (no per-step JPEG decode).
in_memory = True
loader = dict(num_workers=8, persistent_workers=True, pin_memory=True)

# ----------------------------------------------------------------- arms
# Batch 256 (8x the CPU study's). Budgets keep the CPU study's proportions
# (10% : supervised 100% : KDEP 100% = 1 : 4 : 2):
#   10% arms          1,000 steps =   256,000 samples (~60 passes over 4,300)
#   (b) supervised  4,000 steps = 1,024,000 samples (~24 passes over 43,000)
#   (g) KDEP 100%   2,000 steps =   512,000 samples (~12 passes over 43,000)
# Expected time: benchmarks/study_gpu.sh's header (FLOPs and overheads).
batch_size = 256
arms = dict(
    b=dict(samples=1_024_000),
    c=dict(samples=256_000),
    d=dict(samples=256_000),
    e=dict(samples=256_000),
    f=dict(samples=256_000),
    g=dict(samples=512_000),
)
# One student, the main arms, one seed: what fits 8 minutes.
students = dict(
    _delete_=True,
    r20w8=dict(depth=20, base_channels=8, label='ResNet-20 w8 (32-d)',
               arms='abcdefg', seeds=[0]),
)
seeds = [0]

# ------------------------------------------------------------- settings
# No sweep fits the budget: each arm's lr is its config's (the CPU-scale
# default at batch 32) scaled by sqrt(256 / 32) = 2.83 for the 8x batch, a
# choice made before any GPU run and not tuned on any split; loss weights
# are the configs' (KDEP 5, logit KD and FitNets 1).
sweeps = dict(_delete_=True)
sweep_from = dict(_delete_=True)
fixed_settings = dict(
    b=dict(lr=0.14), c=dict(lr=0.14),
    d=dict(lr=0.057), e=dict(lr=0.057), f=dict(lr=0.057), g=dict(lr=0.057),
)

# ----------------------------------------------------------- downstream
# The four frozen probes on each arm's final export (the script selects
# probe/*/m3); no full fine-tuning (it needs mmdet / mmseg, which need
# mmcv's compiled ops; the GPU machine has mmcv-lite).
finetune = dict(_delete_=True)

# ----------------------------------------------------------- time guard
# benchmarks/kdep_study.py --deadline-at: cells run in this arm order (pca
# first, each arm's pre-training before its probe) and a cell is skipped
# when its predicted time would pass the deadline. Predictions: measured
# times of the cells already run, else these guesses (seconds).
time_guard = dict(
    order='afbdecg',
    step_s=dict(teacher=0.020, student=0.015),
    build_s=10.0, probe_s=20.0, pca_s=15.0,
)

# ---------------------------------------------------------------- smoke
# bash benchmarks/study_gpu.sh --smoke: the same code path on CPU, a few
# images, 8 steps per run at batch 16 (the CPU cannot afford 256).
smoke = dict(batch_size=16)
