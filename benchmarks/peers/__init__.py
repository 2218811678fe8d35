"""The arms of ``benchmarks/kdep_step_time.py`` that are not kdep_mm: a
minimal plain PyTorch KDEP loop (:mod:`plain_loop`) and torchdistill's
FitNets and KD trainers (:mod:`torchdistill_arms`), on the same nn.Modules,
batches and thread count as kdep_mm's arms."""
