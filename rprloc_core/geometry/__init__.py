"""Geometry shared by every method: voxel grids in millimetres, physical (LPS) space, boxes,
landmarks and patches. Nothing here knows about datasets, profiles or methods."""
