# Ensemble inductive-bias distillation (LIB-KD, Habib et al., arXiv
# 2310.00369; Co-advise, Ren et al., CVPR 2022) on ImageNet-1K: DeiT-Ti
# student with a class token + a CNN token (mmpretrain ResNet-50 teacher) +
# an involution token (RedNet-50 teacher), DeiT recipe for 300 epochs at
# batch 1024 (8 GPUs x 128). Store mode: the teachers never run during
# training; each teacher's top-10 probabilities (float16 + exact indices)
# on 8 stored views per image come from one teacher store per teacher, both
# on the same views. docs/ensemble.md has the method and every choice.
#
# 0. the RedNet-50 checkpoint is user-supplied (see teacher_ckpts in
#    configs/ensemble/_base_/deit_ensemble_in1k.py).
# 1. cache the teachers (8 GPUs each; resumable; the second copies the
#    first store's views):
#   bash: CFG=configs/ensemble/deit-ti_from_r50+rednet50_in1k.py
#   torchrun --nproc_per_node 8 tools/cache_teacher.py $CFG --teacher cnn \
#       --store work_dirs/stores/in1k_r50_top10_v8 --views 8 \
#       --view-mode random --out-size 224 --fields logits --topk 10 \
#       --batch-size 256 --launcher pytorch
#   torchrun --nproc_per_node 8 tools/cache_teacher.py $CFG \
#       --teacher involution --store work_dirs/stores/in1k_rednet50_top10_v8 \
#       --views 8 --out-size 224 --fields logits --topk 10 \
#       --batch-size 256 --views-from work_dirs/stores/in1k_r50_top10_v8 \
#       --launcher pytorch
# 2. train:   bash tools/dist_train.sh $CFG 8
# 3. export:  python tools/export_student.py work_dirs/<exp>/epoch_300.pth \
#                 work_dirs/<exp>/deit-ti_vit.pth
#    (a plain mmpretrain VisionTransformer backbone: the teacher tokens are
#    dropped; `tools/export_student.py --as classifier SRC DST` keeps the
#    whole student as an mmpretrain ImageClassifier.)
_base_ = ['./_base_/deit_ensemble_in1k.py']
