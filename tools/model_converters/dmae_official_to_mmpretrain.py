"""Convert DMAE's released ViT checkpoints to mmpretrain checkpoints.

UCSC-VLAA/DMAE (built on facebookresearch/mae, timm 0.3.2 ViT blocks)
releases a distilled ViT-B (pre-trained: MAE encoder + decoder + the
``aligned_feature_projection_heads`` of the distillation) and a fine-tuned
ViT-B (``models_vit.VisionTransformer`` with ``global_pool``: ``fc_norm``
instead of ``norm``, and ``head``), both as ``{'model': state_dict, ...}``.
Key mapping to ``mmpretrain.VisionTransformer``:

    patch_embed.proj.*        -> patch_embed.projection.*
    cls_token, pos_embed      -> cls_token, pos_embed
    blocks.N.norm1/norm2.*    -> layers.N.ln1/ln2.*
    blocks.N.attn.qkv/proj.*  -> layers.N.attn.qkv/proj.*
    blocks.N.mlp.fc1/fc2.*    -> layers.N.ffn.layers.0.0/ffn.layers.1.*
    norm.*                    -> ln1.*   (final norm; out_type 'cls_token')
    fc_norm.*                 -> ln2.*   (out_type 'avg_featmap',
                                          final_norm=False)
    head.*                    -> head.layers.head.*  (--keep-head;
                                          VisionTransformerClsHead)

The decoder (``decoder_*``, ``mask_token``) and the projection heads are
dropped. Output ``{'state_dict': {'backbone.*'[, 'head.*']}, 'meta'}``::

    python tools/model_converters/dmae_official_to_mmpretrain.py \
        dmae_vit_base.pth work_dirs/dmae_vit-b_mmpretrain.pth --trust-pickle
"""
import re
from typing import Dict, Tuple

from _ckpt import run_converter

DROP = re.compile(r'^(decoder_|mask_token|aligned_feature_projection_heads)')
RULES = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^norm\.', 'ln1.'),
    (r'^fc_norm\.', 'ln2.'),
    (r'^(cls_token|pos_embed)$', r'\1'),
)


def convert(state: Dict, keep_head: bool = False) -> Tuple[Dict, str]:
    """Official state dict -> (mmpretrain state dict, kind)."""
    state = {re.sub(r'^module\.', '', k): v for k, v in state.items()}
    if 'patch_embed.proj.weight' not in state:
        raise SystemExit('not a DMAE / MAE ViT checkpoint: first keys '
                         f'{sorted(state)[:8]}')
    kind = 'finetuned' if 'fc_norm.weight' in state else 'pretrained'
    out = {}
    for k, v in state.items():
        if DROP.match(k):
            continue
        if k.startswith('head.'):
            if keep_head:
                out['head.layers.' + k] = v
            continue
        for pattern, repl in RULES:
            new, n = re.subn(pattern, repl, k)
            if n:
                out['backbone.' + new] = v
                break
        else:
            raise SystemExit(f'unexpected key {k!r} in the checkpoint')
    return out, kind


def main(argv=None):
    args, state, kind = run_converter(
        argv, __doc__, 'keep the fine-tuned head as head.layers.head.*',
        convert, 'dmae_official_to_mmpretrain', 'kind')
    hint = ("out_type='cls_token' (final norm ln1)" if kind == 'pretrained'
            else "out_type='avg_featmap', final_norm=False (ln2)")
    print(f'{args.src} -> {args.dst}: {kind} ViT, {len(state)} tensors; '
          f'load into mmpretrain.VisionTransformer with {hint}')


if __name__ == '__main__':
    main()
