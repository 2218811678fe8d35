# The DeiT-S variant of configs/ensemble/deit-ti_from_r50+rednet50_in1k.py
# (same teachers, stores, recipe and commands, with
#  CFG=configs/ensemble/deit-s_from_r50+rednet50_in1k.py; the stores are
#  the same files, cache them once).
_base_ = ['./_base_/deit_ensemble_in1k.py']

# the head's width (384) is inferred from the student's embed_dims
model = dict(student=dict(arch='deit-small'))
