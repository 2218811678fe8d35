from .shared_data import shared_data_root, unpack_shared

__all__ = ['shared_data_root', 'unpack_shared']
