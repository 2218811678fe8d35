"""What a store (or any folder) holds, byte for byte."""
import os
import os.path as osp


def written_files(root: str) -> dict:
    """``{relative path: bytes}`` of every file under ``root``, except the
    readers' ``*.verified.json`` markers (a per-machine cache of file
    states, not part of what was written)."""
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            if name.endswith('.verified.json'):
                continue
            path = osp.join(dirpath, name)
            with open(path, 'rb') as f:
                out[osp.relpath(path, root)] = f.read()
    return out
