"""The terminal console (Textual). Data and sync code never import this package.

Frame rate: Textual paints at most 60 frames a second, so a keypress that arrives just after a
background repaint (a countdown tick, new mail from the sync engine) waited up to 16.7 ms for its
frame. At 120 the wait is at most 8.3 ms (bench, keys while syncing: p95 17-24 -> 9-13 ms); frames
are still only painted when something changed. Set before Textual loads; ``TEXTUAL_FPS`` in the
environment still wins.
"""

import os

os.environ.setdefault("TEXTUAL_FPS", "120")
