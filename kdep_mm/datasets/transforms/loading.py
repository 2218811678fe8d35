"""Image loading that handles unreadable files the way the config says."""
import logging
from typing import Dict, Optional, Sequence

import mmcv
import mmengine.fileio as fileio
import numpy as np
from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log

from kdep_mm.registry import TRANSFORMS

# magic bytes -> format name
_SIGNATURES = (
    (b'\xff\xd8\xff', 'jpeg'),
    (b'\x89PNG\r\n\x1a\n', 'png'),
    (b'BM', 'bmp'),
    (b'II*\x00', 'tiff'),
    (b'MM\x00*', 'tiff'),
    (b'GIF87a', 'gif'),
    (b'GIF89a', 'gif'),
)
# the formats behind mmpretrain CustomDataset's default extensions
# ('.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp')
DEFAULT_FORMATS = ('jpeg', 'png', 'bmp', 'pnm', 'tiff', 'webp')


def sniff_format(data: bytes) -> Optional[str]:
    """The image format of ``data`` from its first bytes, or None."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b'RIFF' and data[8:12] == b'WEBP':
        return 'webp'
    if len(data) >= 3 and data[:1] == b'P' and data[1:2] in b'1234567' \
            and data[2:3].isspace():
        return 'pnm'
    return None


class ImageLoadError(OSError):
    """An image file could not be read or decoded (its path is in the
    message)."""


@TRANSFORMS.register_module()
class LoadImageOrSkip(LoadImageFromFile):
    """mmcv's ``LoadImageFromFile`` that handles bad files as configured.

    A file is *bad* when it is missing or unreadable, empty, not an image of
    one of ``formats`` (checked from its first bytes, so a text file renamed
    ``.png`` or a ``.gif`` placeholder is caught whatever its name), or the
    decoder fails on it (e.g. a truncated JPEG).

    * ``on_error='skip'``: a warning names the file (once per file and
      process) with the running count of files skipped by this process, and
      the transform returns None; mmengine's ``BaseDataset.__getitem__``
      then draws another index (training datasets only: a dataset in
      ``test_mode`` refuses a None sample). If ``max_consecutive_skips`` reads
      in a row fail (every file is bad, or a wrong ``data_root``), an
      :class:`ImageLoadError` says so with examples, before mmengine's
      refetch loop gives up with a generic error (keep the limit below the
      dataset's ``max_refetch``, 1000 by default).
    * ``on_error='raise'``: an :class:`ImageLoadError` (an ``OSError``)
      names the file, the reason and how to switch to skip mode. In a
      DataLoader worker the message is carried to the main process.

    Args:
        on_error (str): 'skip' or 'raise'. Defaults to 'skip'.
        formats (Sequence[str], optional): accepted formats among 'jpeg',
            'png', 'bmp', 'pnm', 'tiff', 'webp', 'gif'; None accepts whatever
            the decoder reads. Defaults to :data:`DEFAULT_FORMATS` (the
            formats of mmpretrain's default image extensions; GIF is left
            out, as some OpenCV builds cannot decode it).
        max_consecutive_skips (int): see above. Defaults to 50.
        **kwargs: arguments of ``LoadImageFromFile`` (``to_float32``,
            ``color_type``, ``imdecode_backend``, ``backend_args``).
    """

    def __init__(self,
                 on_error: str = 'skip',
                 formats: Optional[Sequence[str]] = DEFAULT_FORMATS,
                 max_consecutive_skips: int = 50,
                 **kwargs):
        if on_error not in ('skip', 'raise'):
            raise ValueError("LoadImageOrSkip.on_error must be 'skip' or "
                             f"'raise', got {on_error!r}")
        if kwargs.pop('ignore_empty', False):
            raise ValueError("LoadImageOrSkip: use on_error='skip' instead "
                             'of ignore_empty=True')
        if not isinstance(max_consecutive_skips, int) or \
                max_consecutive_skips < 1:
            raise ValueError('LoadImageOrSkip.max_consecutive_skips must be '
                             f'a positive int, got {max_consecutive_skips!r}')
        super().__init__(**kwargs)
        self.on_error = on_error
        self.formats = None if formats is None else tuple(
            f.lower() for f in formats)
        self.max_consecutive_skips = max_consecutive_skips
        # per process (each DataLoader worker has its own copy)
        self._skipped: Dict[str, int] = {}
        self._consecutive = 0

    @property
    def skipped_files(self) -> Dict[str, int]:
        """Files skipped by this process -> how many times."""
        return dict(self._skipped)

    def _read_bytes(self, filename: str) -> bytes:
        if self.file_client_args is not None:
            client = fileio.FileClient.infer_client(self.file_client_args,
                                                    filename)
            return client.get(filename)
        return fileio.get(filename, backend_args=self.backend_args)

    def _load(self, filename: str) -> np.ndarray:
        """The decoded image; :class:`ImageLoadError` with the reason."""
        try:
            data = self._read_bytes(filename)
        except FileNotFoundError:
            raise ImageLoadError('file not found')
        except Exception as e:  # noqa: BLE001
            raise ImageLoadError(f'could not read the file '
                                 f'({type(e).__name__}: {e})')
        if not data:
            raise ImageLoadError('empty file (0 bytes)')
        fmt = sniff_format(data)
        if self.formats is not None and fmt not in self.formats:
            what = (f'a {fmt.upper()} image' if fmt else
                    f'not an image (starts with {bytes(data[:8])!r})')
            raise ImageLoadError(
                f'{what}, not one of the accepted formats '
                f'{list(self.formats)} (LoadImageOrSkip.formats)')
        try:
            img = mmcv.imfrombytes(
                data, flag=self.color_type, backend=self.imdecode_backend)
        except Exception as e:  # noqa: BLE001
            raise ImageLoadError(f'could not decode the image '
                                 f'({type(e).__name__}: {e})')
        if img is None or img.size == 0:
            raise ImageLoadError(
                f'could not decode the image ({len(data)} bytes'
                f'{", " + fmt.upper() if fmt else ""}; truncated or '
                'corrupt?)')
        return img

    def transform(self, results: dict) -> Optional[dict]:
        filename = results['img_path']
        try:
            img = self._load(filename)
        except ImageLoadError as e:
            return self._on_bad_file(filename, str(e))
        self._consecutive = 0
        if self.to_float32:
            img = img.astype(np.float32)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['ori_shape'] = img.shape[:2]
        return results

    def _on_bad_file(self, filename: str, reason: str) -> None:
        if self.on_error == 'raise':
            raise ImageLoadError(
                f'cannot load image {filename}: {reason}. To skip '
                'unreadable files with a warning instead, set '
                "on_error='skip' in the pipeline's LoadImageOrSkip "
                '(e.g. --cfg-options "train_dataloader.dataset.pipeline.0.'
                'on_error=skip").')
        first = filename not in self._skipped
        self._skipped[filename] = self._skipped.get(filename, 0) + 1
        self._consecutive += 1
        if first:
            print_log(
                f'LoadImageOrSkip: skipped {filename}: {reason} '
                f'({len(self._skipped)} unreadable file(s) skipped so far '
                'in this process)',
                logger='current',
                level=logging.WARNING)
        if self._consecutive >= self.max_consecutive_skips:
            examples = list(self._skipped)[-3:]
            raise ImageLoadError(
                f'LoadImageOrSkip(on_error=\'skip\'): the last '
                f'{self._consecutive} images read by this process were all '
                f'unreadable ({len(self._skipped)} distinct bad files, e.g. '
                f'{", ".join(examples)}); is every file of the dataset '
                'broken? Check data_root, data_prefix and the files, the '
                f'last one: {filename}: {reason}')
        return None

    def __repr__(self):
        return (f"{super().__repr__()[:-1]}, on_error='{self.on_error}', "
                f'formats={self.formats}, '
                f'max_consecutive_skips={self.max_consecutive_skips})')
