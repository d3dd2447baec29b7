"""Delivery arithmetic of one connection, without I/O (DESIGN "Subscribe, then replay,
then live" and "Connections").

Per connection and thread, a :class:`Cursor` keeps the interval of seqs already sent,
``first..last``, and the live events held while a gap repair or a ``resume`` reads the
log. Everything here is synchronous bookkeeping over data; ``connection.py`` does the
reads and the sends it decides. The rules:

- A live event: ``last + 1`` is sent; ``<= last`` was sent already and is dropped; a
  higher seq is a gap: it is held and the log is read for the seqs in between (repair).
  While a repair or resume holds, every live event above ``last`` is held.
- ``resume`` after S: the log's ``(S, first)`` and ``(last, end]`` parts, never a seq
  inside the interval (:func:`plan_resume`), then the held events, then
  ``replay_complete``.
- Held events are capped (``held_cap``): past the cap only the highest seq is kept. That
  loses nothing: the held events are published after commit, so the log has every seq
  below the highest one, and the gap read (``last``, highest) fetches them again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from runwire.protocol.envelope import Envelope


class Verdict(enum.Enum):
    """What to do with a live thread event (:meth:`Cursor.on_live`)."""

    SEND = "send"  # the next seq: send it (the cursor advanced)
    DROP = "drop"  # sent already on this connection
    HOLD = "hold"  # a repair or resume is in progress: held until it releases
    REPAIR = "repair"  # a gap: held, and the caller starts a repair (read the log)


@dataclass(slots=True)
class Cursor:
    """What one connection has sent of one thread: every seq in ``first..last``.

    ``first is None`` means nothing was sent yet (``last`` is then the floor a resume
    starts from). ``held`` is None unless a repair or resume is in progress; then it maps
    seq → live event waiting to be sent.
    """

    first: int | None = None
    last: int = 0
    held: dict[int, Envelope] | None = None
    held_overflows: int = 0  # times the cap made the cursor forget held events

    @classmethod
    def starting_at(cls, seq: int) -> Cursor:
        """The cursor of a thread whose first live event on this connection is `seq`."""
        return cls(first=seq, last=seq)

    # ---- live events -------------------------------------------------------------------

    def on_live(self, env: Envelope, held_cap: int) -> Verdict:
        """Decide for one live event of this thread (``env.seq`` must be set)."""
        seq = _seq(env)
        if seq <= self.last:
            return Verdict.DROP
        if self.held is not None:
            self._hold(seq, env, held_cap)
            return Verdict.HOLD
        if seq == self.last + 1:
            self.last = seq
            if self.first is None:
                self.first = seq
            return Verdict.SEND
        self.held = {}
        self._hold(seq, env, held_cap)
        return Verdict.REPAIR

    def _hold(self, seq: int, env: Envelope, cap: int) -> None:
        assert self.held is not None
        if len(self.held) >= max(1, cap) and seq not in self.held:
            # Keep the highest seq only: the gap read refetches everything below it.
            top = max(self.held)
            self.held = {top: self.held[top]} if top > seq else {}
            self.held_overflows += 1
        self.held.setdefault(seq, env)

    def hold(self) -> None:
        """Start holding live events (a resume begins); keeps what a repair holds."""
        if self.held is None:
            self.held = {}

    # ---- filling a gap and releasing ---------------------------------------------------

    def gap(self) -> tuple[int, int] | None:
        """The log range ``(after, before)`` (exclusive bounds) to read before the held
        events can go, or None when they can go now (nothing held, or the held events
        follow ``last`` without a hole)."""
        if not self.held:
            return None
        target = max(self.held)
        if target - self.last == sum(1 for s in self.held if s > self.last):
            return None  # the held events are every seq after `last`: no read needed
        return self.last, target

    def fill(self, env: Envelope) -> bool:
        """One event read from the log for the gap, in seq order: True (send it, the
        cursor advanced) unless this connection sent it already.

        A seq above ``last + 1`` is taken too: the log is a contiguous suffix, so the
        seqs below it were pruned and no read can fill them; the client's own gap check
        answers that with a resume that reports ``complete: false``.
        """
        seq = _seq(env)
        if seq <= self.last:
            return False
        self.last = seq
        if self.first is None:
            self.first = seq
        return True

    def release(self) -> list[Envelope]:
        """The held events above ``last`` in seq order, to send now (the cursor advances
        past them); the cursor keeps holding, empty, until :meth:`settle`.

        Held seqs the log could not fill (pruned) are skipped over, as in :meth:`fill`.
        """
        held, self.held = self.held or {}, {}
        out = [held[s] for s in sorted(held) if s > self.last]
        if out:
            self.last = _seq(out[-1])
            if self.first is None:
                self.first = _seq(out[0])
        return out

    def settle(self) -> bool:
        """Stop holding when nothing is held: True when done, False when events arrived
        meanwhile (fill the gap and release again)."""
        if self.held:
            return False
        self.held = None
        return True

    # ---- resume ------------------------------------------------------------------------

    def replayed(self, plan: ResumePlan) -> None:
        """Record a finished replay of `plan` (every range read and sent)."""
        self.last = max(self.last, plan.start)
        self.first = plan.start + 1 if self.first is None else min(self.first, plan.start + 1)


@dataclass(frozen=True, slots=True)
class ResumePlan:
    """What a ``resume`` reads and answers.

    ``ranges`` are log reads ``(after, before)`` in order; ``before is None`` reads to the
    log's end and advances the cursor (its events go through :meth:`Cursor.fill`); a
    bounded range lies below ``first`` and is sent as read. ``complete`` is the
    ``replay_complete`` flag: False when ``after_seq`` is ahead of the log or the log no
    longer holds ``after_seq + 1`` (pruned).
    """

    ranges: tuple[tuple[int, int | None], ...]
    start: int
    complete: bool = field(default=True)


def plan_resume(cursor: Cursor, after_seq: int, last_seq: int,
                first_retained: int | None) -> ResumePlan:
    """The log reads a ``resume`` of `after_seq` needs on a connection at `cursor`.

    Args:
        last_seq, first_retained: the log's bounds (``first_retained`` None: empty log).
    """
    complete = after_seq <= last_seq and (
        after_seq >= last_seq or (first_retained is not None and first_retained <= after_seq + 1))
    start = min(after_seq, last_seq)
    ranges: list[tuple[int, int | None]] = []
    if cursor.first is None:
        ranges.append((max(start, cursor.last), None))
    else:
        if start + 1 < cursor.first:
            ranges.append((start, cursor.first))
        ranges.append((max(cursor.last, start), None))
    return ResumePlan(tuple(ranges), start, complete)


def _seq(env: Envelope) -> int:
    assert env.seq is not None, "a thread event carries its seq"
    return env.seq
