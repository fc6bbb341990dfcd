"""Privacy probe: membership inference, model inversion and the review checklist."""

from __future__ import annotations
