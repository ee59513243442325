"""Keep the interpreter's own pauses out of keypresses: full garbage collections and the GIL.

GIL: the sync engine runs in a thread of the same process; by default a thread that wants the
GIL waits up to 5 ms for the running one to yield it, and a keypress may need that several
times. A 1 ms switch interval halves the slow keys while syncing (bench: p95 17 -> 14 ms) and
leaves ingest speed as it was.

Full collections:
A full (generation 2) collection walks every object the app holds: about 90k after start-up,
77 ms on the bench machine, five frames. CPython starts one whenever enough objects survived
younger collections, which during painting means in the middle of a keypress, so a few keys in
a hundred took 80-130 ms. The fix is the one CPython documents for this case (``gc.freeze``):
once the app has started, what exists is moved out of the collector's sight, so later full
collections only walk what was made since; and while nobody types, everything is collected and
frozen again, so garbage made of once-frozen objects is still freed within minutes.

What is made since adds up: with a 10M-message cache, reading ahead and wrapping transcripts left
40-70k objects in the oldest generation within seconds of typing, and CPython collected it three
times in thirty keys, 30-65 ms of CPU each (up to 200 ms on a busy machine), in a key's step. So
once a second the young generations are collected (a few thousand objects at most: about a
millisecond) and what survived is frozen too: a full collection then walks only what the last
second made. Cycles frozen this way (a Textual strip caches itself, so every strip painted is
one) are freed at the next quiet full collection, which comes sooner once ``FROZEN_LIMIT``
objects were frozen since the last. (``gc.get_freeze_count`` walks every frozen object, 20 ms
at 10M: the pacer counts what it froze instead.)
"""

from __future__ import annotations

import gc
import sys
import time

#: Seconds without a key before a full collection may run, and the least time between two.
QUIET_FOR = 10.0
EVERY = 300.0
#: Objects frozen since the last full collection above which the next quiet moment collects.
FROZEN_LIMIT = 200_000


UI_SWITCH_INTERVAL = 0.001


def prefer_ui_thread() -> float:
    """Shorten the GIL switch interval; returns the previous one to restore on exit."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(UI_SWITCH_INTERVAL)
    return previous


class GcPacer:
    def __init__(self, clock=time.monotonic) -> None:  # noqa: ANN001 - a test passes a fake clock
        self.clock = clock
        self.last_input = clock()
        self.last_full = clock()
        self.collections = 0
        self.frozen = 0  # objects the ticks froze since the last full collection

    def started(self) -> None:
        """The app is up: freeze what start-up made (no collection now: that would be the pause
        this avoids; start-up's garbage goes at the first quiet collection)."""
        gc.freeze()
        self.last_full = self.clock()
        self.frozen = 0

    def stopped(self) -> None:
        """The app is closing: hand everything back to the collector (tests run many apps)."""
        gc.unfreeze()

    def input(self) -> None:
        self.last_input = self.clock()

    def tick(self) -> bool:
        """Called every second; True when it ran a full collection (only while idle), else the
        young generations are collected and the survivors frozen (``freeze_young``)."""
        now = self.clock()
        due = now - self.last_full >= EVERY or self.frozen >= FROZEN_LIMIT
        if not due or now - self.last_input < QUIET_FOR:
            self.frozen += self.freeze_young()
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self.last_full = now
        self.frozen = 0
        self.collections += 1
        return True

    @staticmethod
    def freeze_young() -> int:
        """Collect the young generations (bounded by the thresholds: cheap) and freeze what lives
        on, so the oldest generation a full collection walks holds only what came after; returns
        how many were frozen (the oldest generation: only what a second made, frozen each tick)."""
        gc.collect(1)
        count = len(gc.get_objects(generation=2))
        gc.freeze()
        return count
