"""Canonical organ names and the aliases the supported datasets use for them."""

from __future__ import annotations

from rprloc_core.errors import UnknownOrganError

ORGANS = ("Brainstem", "Mandible", "LeftParotid", "RightParotid",
          "SpinalCord", "Esophagus", "Larynx", "Pancreas")
# The four organs of the paper's head-and-neck tables, in table order.
HAN_ORGANS = ("Brainstem", "Mandible", "LeftParotid", "RightParotid")

_ALIASES = {
    "brainstem": "Brainstem", "brain_stem": "Brainstem", "brain stem": "Brainstem",
    "mandible": "Mandible", "bone_mandible": "Mandible",
    "leftparotid": "LeftParotid", "parotid_l": "LeftParotid", "parotid_lt": "LeftParotid",
    "parotid l": "LeftParotid", "l_parotid": "LeftParotid", "left_parotid": "LeftParotid",
    "parotid.l": "LeftParotid", "lt_parotid": "LeftParotid",
    "parotid_gland_l": "LeftParotid", "parotid_left": "LeftParotid", "left parotid": "LeftParotid",
    "rightparotid": "RightParotid", "parotid_r": "RightParotid", "parotid_rt": "RightParotid",
    "parotid r": "RightParotid", "r_parotid": "RightParotid", "right_parotid": "RightParotid",
    "parotid.r": "RightParotid", "rt_parotid": "RightParotid",
    "parotid_gland_r": "RightParotid", "parotid_right": "RightParotid", "right parotid": "RightParotid",
    "spinalcord": "SpinalCord", "spinal_cord": "SpinalCord", "spinal cord": "SpinalCord",
    "esophagus": "Esophagus", "oesophagus": "Esophagus",
    "larynx": "Larynx",
    "pancreas": "Pancreas",
}


def canonical_organ(name: str, source: str | None = None) -> str:
    """Map a dataset's organ name to the canonical one, or raise UnknownOrganError."""
    key = name.strip().lower().replace("-", "_")
    if name in ORGANS:
        return name
    if key in _ALIASES:
        return _ALIASES[key]
    raise UnknownOrganError(source, f"unknown organ name {name!r}; known: {', '.join(ORGANS)}")
