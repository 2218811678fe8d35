"""A store of teacher outputs that stays correct under random augmentation.

A cache keyed by the sample index alone hands a randomly cropped image the
teacher output of some other crop. This store keys every output by
``(sample index, view)``: a *view* is what of the augmentation matters to the
teacher, the crop box in normalised coordinates of the original image
``(x0, y0, x1, y1)`` in ``[0, 1]`` plus a horizontal flip. ``V`` views are
stored per image; ``V = 1`` with a fixed centre view is the cheap mode.

One concept per module:

* :mod:`.format`: the layout, the manifest (checksum, field specs), the
  canonical JSON / ``.npy`` bytes;
* :mod:`.views`: drawing views (:func:`draw_views`) and the one crop
  (:func:`crop_view`) of the caching and the training side;
* :mod:`.writer`: :class:`TeacherStoreWriter` (resumable, rank-parallel,
  atomic files, exclusive manifest);
* :mod:`.shards`: shard verification (sha256 once, then a verified marker);
* :mod:`.reader`: :class:`TeacherStore` (checked at open, ``os.pread`` per
  sample, shard maps);
* :mod:`.checks`: the store against the run (dataset identity and order,
  decoder, the views of an ensemble's stores).

The top-k logit codec (``logits_topk_prob`` / ``logits_topk_idx`` fields) is
:mod:`kdep_mm.utils.topk`, shared with the models that decode it.

The caching API (``kdep_mm.apis.TeacherCacher``) writes stores; the
stored-view transform (``kdep_mm.ApplyStoredView``) reads them.
"""
from .checks import (DECODER_KEYS, check_same_views, check_store_dataset,
                     check_store_decoder, dataset_identity, decoder_settings,
                     pipeline_decoder)
from .format import (FORMAT_VERSION, MANIFEST, SHARD_DIR, VIEW_FILES,
                     build_manifest, manifest_checksum, normalize_fields,
                     read_manifest)
from .reader import DEFAULT_MAX_OPEN_FILES, TeacherStore
from .shards import VERIFY_MODES, check_shard, verify_shard
from .views import (VIEW_MODES, box_to_pixels, center_view, crop_view,
                    draw_views, pixels_to_box, sample_view, size_hw)
from .writer import TeacherStoreWriter

__all__ = [
    'TeacherStore', 'TeacherStoreWriter', 'build_manifest',
    'read_manifest', 'manifest_checksum', 'normalize_fields',
    'FORMAT_VERSION', 'MANIFEST', 'SHARD_DIR', 'VIEW_FILES',
    'DEFAULT_MAX_OPEN_FILES', 'VERIFY_MODES', 'check_shard', 'verify_shard',
    'DECODER_KEYS', 'dataset_identity', 'check_store_dataset',
    'decoder_settings', 'pipeline_decoder', 'check_store_decoder',
    'check_same_views',
    'VIEW_MODES', 'draw_views', 'sample_view', 'center_view', 'crop_view',
    'box_to_pixels', 'pixels_to_box', 'size_hw'
]
