"""The runner's outbox (inferno.engine.runner.Outbox) over a real socket pair: while the decode loop keeps stepping,
a stream's later tokens wait and leave together; a request's first event, its final one, errors, a status and
anything sent when the loop is about to idle leave at once. Frames are counted on the host's end."""

from __future__ import annotations

import threading
import time
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from typing import Any

from inferno.engine import runner
from inferno.engine.handle import Failure
from inferno.engine.types import Done, TextDelta
from inferno.errors import InfernoError


def frames(conn: Connection) -> list[Any]:
    out = []
    while conn.poll(0):
        out.append(conn.recv()[0])
    return out


def test_later_tokens_wait_for_the_next_steps_first_and_last_do_not() -> None:
    host, ours = Pipe()
    box = runner.Outbox(ours)
    box.decode_thread = threading.get_ident()  # put() from the decode thread leaves the sending to send()
    box.put(1, TextDelta("a"))
    box.send(None, hold=True)
    assert frames(host) == [[(1, TextDelta("a"))]]  # a request's first event: at once
    for text in "bcd":  # the next steps, within the hold
        box.put(1, TextDelta(text))
        box.send(None, hold=True)
    assert frames(host) == []
    box.put(1, TextDelta("e"))
    box.send(None, hold=False)  # the loop is about to idle: nothing waits
    assert frames(host) == [[(1, TextDelta(t)) for t in "bcde"]]
    box.put(1, TextDelta("f"))
    box.send(None, hold=True)
    box.put(2, TextDelta("x"))  # another request's first event takes the held ones along
    box.send(None, hold=True)
    assert frames(host) == [[(1, TextDelta("f")), (2, TextDelta("x"))]]
    box.put(2, TextDelta("y"))
    box.send(None, hold=True)
    done = Done(reason="stop", prompt_tokens=1, completion_tokens=2)
    box.put(2, done)  # a final event: at once, with what waited
    box.send(None, hold=True)
    assert frames(host) == [[(2, TextDelta("y")), (2, done)]]
    box.put(1, TextDelta("g"))
    box.send(None, hold=True)
    box.put(1, Failure(InfernoError("boom")))
    box.send(None, hold=True)
    sent = frames(host)
    assert len(sent) == 1 and sent[0][0] == (1, TextDelta("g")) and isinstance(sent[0][1][1], Failure)
    # past the hold, a step's tokens leave
    box.put(3, TextDelta("p"))
    box.send(None, hold=True)
    frames(host)
    box.sent_at = time.monotonic() - runner.HOLD
    box.put(3, TextDelta("q"))
    box.send(None, hold=True)
    assert frames(host) == [[(3, TextDelta("q"))]]
