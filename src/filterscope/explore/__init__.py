"""``filterscope explore``: a local web page to click a pixel and see each model's filter.

- :mod:`.models`: the models shown, from the one registry (:mod:`filterscope.hub`), and
  what the explorer can show of each.
- :mod:`.session`: what is computed (filters, outputs, decompositions, spectra), cached;
  no web code, usable from Python.
- :mod:`.server`: the Starlette app and its JSON API (needs ``filterscope[explore]``).
"""

from .models import ExploreModel, load_model
from .session import Explorer

__all__ = ["ExploreModel", "Explorer", "load_model"]
