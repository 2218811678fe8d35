# DMAE ViT-L -> ViT-B at 0.98 masking: int(196 * (1 - 0.98)) = 3 visible
# patches per image (CLS excluded), shared by student and teacher.
_base_ = ['./vit-b_from_mae-vit-l_in1k_75.py']

mask_ratio = 0.98
model = dict(student=dict(mask_ratio=mask_ratio), mask_ratio=mask_ratio)
