"""rprloc_core: the small library behind the rprloc notebooks.

Conventions (see README, "Conventions"):
- numpy arrays are (z, y, x); SimpleITK metadata is (x, y, z); `geometry.xyz_to_zyx` is the one
  place that converts.
- positions leaving a function are floats in mm; `pos_mm` means index * spacing (+ grid origin)
  in (z, y, x) order, `pos_lps_mm` means the image's physical LPS space in (x, y, z) order.
- a missing organ or point is NaN or absent, never (0, 0, 0).
"""

__version__ = "0.1.0"
