"""The delivery arithmetic of a connection (gateway/delivery.py), tested with data only:
live verdicts, gap fill and release, resume plans, the cap on held events."""

from __future__ import annotations

import random

import pytest

from runwire.gateway.delivery import Cursor, ResumePlan, Verdict, plan_resume
from runwire.protocol.envelope import Envelope


def ev(seq: int) -> Envelope:
    return Envelope(user_id="u", type="partial_result", text=f'{{"seq":{seq}}}',
                    thread_id="t", seq=seq)


def cursor(first: int | None, last: int, held: list[int] | None = None) -> Cursor:
    return Cursor(first=first, last=last,
                  held=None if held is None else {s: ev(s) for s in held})


def state(c: Cursor) -> tuple[int | None, int, list[int] | None]:
    return c.first, c.last, None if c.held is None else sorted(c.held)


@pytest.mark.parametrize(
    ("before", "seq", "verdict", "after"),
    [
        ((1, 5, None), 6, Verdict.SEND, (1, 6, None)),
        ((1, 5, None), 5, Verdict.DROP, (1, 5, None)),
        ((1, 5, None), 2, Verdict.DROP, (1, 5, None)),
        ((1, 5, None), 8, Verdict.REPAIR, (1, 5, [8])),
        ((1, 5, [8]), 9, Verdict.HOLD, (1, 5, [8, 9])),
        ((1, 5, [8]), 6, Verdict.HOLD, (1, 5, [6, 8])),  # even the next seq waits its turn
        ((1, 5, [8]), 8, Verdict.HOLD, (1, 5, [8])),  # held twice: kept once
        ((1, 5, [8]), 4, Verdict.DROP, (1, 5, [8])),
        ((None, 0, []), 1, Verdict.HOLD, (None, 0, [1])),  # a resume in progress holds all
        ((None, 3, None), 4, Verdict.SEND, (4, 4, None)),  # floor set, nothing sent yet
    ],
)
def test_a_live_event_is_sent_dropped_held_or_repaired(
    before: tuple[int | None, int, list[int] | None], seq: int, verdict: Verdict,
    after: tuple[int | None, int, list[int] | None],
) -> None:
    c = cursor(*before)
    assert c.on_live(ev(seq), held_cap=100) is verdict
    assert state(c) == after


@pytest.mark.parametrize(
    ("before", "gap"),
    [
        ((1, 5, None), None),
        ((1, 5, []), None),
        ((1, 5, [6, 7]), None),  # held events start at last + 1: nothing to read
        ((1, 5, [9, 7]), (5, 9)),
        ((None, 0, [3]), (0, 3)),
    ],
)
def test_the_gap_to_read_lies_between_last_and_the_highest_held_seq(
    before: tuple[int | None, int, list[int] | None], gap: tuple[int, int] | None,
) -> None:
    assert cursor(*before).gap() == gap


@pytest.mark.parametrize(
    ("before", "log", "sent", "after"),
    [
        # the log fills 6..8, then the held 9 and 10 go
        ((1, 5, [9, 10]), [6, 7, 8], [6, 7, 8, 9, 10], (1, 10, [])),
        # the log was pruned below 8: 8 is taken, the hole 6..7 can't be filled
        ((1, 5, [9]), [8], [8, 9], (1, 9, [])),
        # nothing in the log below the held seq (pruned): the held one goes
        ((1, 5, [9]), [], [9], (1, 9, [])),
        # a held seq the log already delivered is not sent twice
        ((1, 5, [6, 7]), [], [6, 7], (1, 7, [])),
        # a resume with no interval yet: the first seq sent becomes `first`
        ((None, 2, [4]), [3], [3, 4], (3, 4, [])),
    ],
)
def test_fill_then_release_sends_every_seq_once_in_order(
    before: tuple[int | None, int, list[int] | None], log: list[int], sent: list[int],
    after: tuple[int | None, int, list[int] | None],
) -> None:
    c = cursor(*before)
    out = [e.seq for e in map(ev, log) if c.fill(e)] + [e.seq for e in c.release()]
    assert out == sent
    assert state(c) == after
    assert c.settle() and c.held is None


def test_settle_refuses_while_events_arrived_during_the_release() -> None:
    c = cursor(1, 5, [6])
    assert [e.seq for e in c.release()] == [6]
    assert c.on_live(ev(9), held_cap=100) is Verdict.HOLD
    assert not c.settle()
    assert c.gap() == (6, 9)


@pytest.mark.parametrize(
    ("interval", "after_seq", "bounds", "plan"),
    [
        # fresh connection: everything after S, complete
        ((None, 0), 3, (10, 1), ResumePlan(((3, None),), 3, True)),
        ((None, 0), 10, (10, 1), ResumePlan(((10, None),), 10, True)),
        # ahead of the log: read from its end, incomplete
        ((None, 0), 50, (10, 1), ResumePlan(((10, None),), 10, False)),
        # pruned: the log starts at 6, S=2 lacks 3..5
        ((None, 0), 2, (10, 6), ResumePlan(((2, None),), 2, False)),
        ((None, 0), 5, (10, 6), ResumePlan(((5, None),), 5, True)),
        # empty log
        ((None, 0), 0, (0, None), ResumePlan(((0, None),), 0, True)),
        # sent 5..8 live: the part below 5 and the part after 8, never inside
        ((5, 8), 2, (12, 1), ResumePlan(((2, 5), (8, None)), 2, True)),
        # S inside the interval: only after 8
        ((5, 8), 6, (12, 1), ResumePlan(((8, None),), 6, True)),
        # S just below first: nothing below to read
        ((5, 8), 4, (12, 1), ResumePlan(((8, None),), 4, True)),
        # S after the interval
        ((5, 8), 10, (12, 1), ResumePlan(((10, None),), 10, True)),
    ],
)
def test_plan_resume_reads_only_what_the_connection_lacks(
    interval: tuple[int | None, int], after_seq: int, bounds: tuple[int, int | None],
    plan: ResumePlan,
) -> None:
    c = cursor(*interval)
    assert plan_resume(c, after_seq, *bounds) == plan


@pytest.mark.parametrize(
    ("interval", "start", "after"),
    [((None, 0), 3, (4, 3)), ((5, 8), 2, (3, 8)), ((5, 8), 6, (5, 8)), ((None, 9), 4, (5, 9))],
)
def test_a_finished_replay_widens_the_interval(
    interval: tuple[int | None, int], start: int, after: tuple[int, int],
) -> None:
    c = cursor(*interval)
    c.replayed(ResumePlan(((start, None),), start))
    assert (c.first, c.last) == after


def test_held_events_are_capped_keeping_the_highest_seq() -> None:
    c = cursor(1, 5, [])
    for seq in range(7, 10_007):
        assert c.on_live(ev(seq), held_cap=10) is Verdict.HOLD
        assert c.held is not None and len(c.held) <= 10
    assert max(c.held) == 10_006
    assert c.held_overflows > 0
    # the log gives back everything the cap made the cursor forget, in order
    log = range(6, 10_007)
    sent = []
    while (gap := c.gap()) is not None:
        page = [ev(s) for s in log if gap[0] < s < gap[1]][:1000]
        sent += [e.seq for e in page if c.fill(e)]
    sent += [e.seq for e in c.release()]
    assert sent == list(range(6, 10_007))


def test_a_lower_seq_past_the_cap_is_kept_beside_the_highest() -> None:
    c = cursor(1, 5, [20, 30])
    c.on_live(ev(25), held_cap=2)
    assert state(c) == (1, 5, [25, 30])
    c.on_live(ev(40), held_cap=2)
    assert state(c) == (1, 5, [40])


def _deliver(c: Cursor, log: list[int], sent: list[int]) -> None:
    """What Connection._fill_and_release does, with the log as a list."""
    while not c.settle():
        while (gap := c.gap()) is not None:
            page = [ev(s) for s in log if gap[0] < s < gap[1]][:7]  # small pages
            got = [e.seq for e in page if c.fill(e)]
            sent += [s for s in got if s is not None]
            if not got:
                break
        sent += [e.seq for e in c.release() if e.seq is not None]


@pytest.mark.parametrize("seed", range(25))
def test_random_live_streams_and_resumes_never_duplicate_or_leave_a_gap(seed: int) -> None:
    """The bus may lose, repeat and reorder; resumes come at any time. Per connection:
    no seq sent twice, and from `first` on the client has every seq up to `last` (sent,
    or claimed by a resume's `after_seq`)."""
    rng = random.Random(seed)
    log: list[int] = []
    c: Cursor | None = None
    sent: list[int] = []
    claimed: set[int] = set()
    for _ in range(300):
        action = rng.random()
        if action < 0.7:
            log.append(len(log) + 1)
            delivered = [log[-1]]
            if rng.random() < 0.1:
                delivered = []  # lost by the bus
            elif rng.random() < 0.1:
                delivered = [log[-1], max(1, log[-1] - rng.randint(0, 3))]  # repeated
            for seq in delivered:
                if c is None:
                    c, sent = Cursor.starting_at(seq), [seq]
                    continue
                verdict = c.on_live(ev(seq), held_cap=rng.choice([1, 3, 100]))
                if verdict is Verdict.SEND:
                    sent.append(seq)
                elif verdict is Verdict.REPAIR and rng.random() < 0.8:
                    _deliver(c, log, sent)  # else: the repair runs later
        else:  # resume after a random seq
            c = c or Cursor()
            after_seq = rng.randint(0, len(log) + 2)
            claimed |= set(range(1, after_seq + 1))
            c.hold()
            plan = plan_resume(c, after_seq, len(log), 1 if log else None)
            for lo, hi in plan.ranges:
                for e in (ev(s) for s in log if s > lo and (hi is None or s < hi)):
                    if hi is not None or c.fill(e):
                        sent.append(e.seq or 0)
            c.replayed(plan)
            _deliver(c, log, sent)
        assert len(sent) == len(set(sent)), "a seq sent twice on one connection"
    assert c is not None
    if c.held is not None:
        _deliver(c, log, sent)
    assert c.first is not None
    assert set(range(c.first, c.last + 1)) <= set(sent) | claimed
    # a last resume from the start brings the client everything, still without duplicates
    c.hold()
    plan = plan_resume(c, 0, len(log), 1)
    for lo, hi in plan.ranges:
        sent += [s for s in log if s > lo and ((hi is not None and s < hi) or c.fill(ev(s)))]
    c.replayed(plan)
    _deliver(c, log, sent)
    assert len(sent) == len(set(sent))
    assert set(sent) | claimed >= set(log)
