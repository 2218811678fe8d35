from .tailored_coordinates import TailoredCoordinates

__all__ = ['TailoredCoordinates']
