"""The answer audit: every answer a customer got, held against what the database finally holds.

After the drain, each order the traffic asked for (by the id its key and body name) has a
final state in the orders table, or none. Each try's answer is a claim about that order, in
the spirit of Jepsen's histories (an operation is ok, fail, or info: outcome unknown):

* 201 says confirmed: the row must be ``confirmed``;
* 202 says accepted: the row must reach a final state (``confirmed``, ``rejected`` or
  ``failed``); one that did not is a lost order (counted as such);
* 409, 404, 422 and the other 4xx say refused: the row must not be ``confirmed``;
* 503 says this request did nothing: false when the order had been accepted already (an
  earlier try of the same request answered 201 or 202: the customer is told the opposite),
  and false when the order is ``confirmed`` while no other try of it could have made it so
  (none answered 201, 202 or unknown);
* unknown (a timeout, a refused connection, 504 and the other 5xx) claims nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import groupby

from loadtest.traffic import Outcome

FINAL = ("confirmed", "rejected", "failed")
CLASSES = ("201", "202", "409", "4xx", "503", "unknown")


def answer_class(status: int) -> str:
    if status in (201, 202, 409, 503):
        return str(status)
    if 400 <= status < 500:
        return "4xx"
    return "unknown"  # 0 (no answer), 500, 502, 504


@dataclass(frozen=True)
class FalseAnswer:
    order_id: str
    answer: int
    attempt: int
    final: str | None  # the order's state in the database (None: no row)
    why: str


@dataclass
class Audit:
    answers: dict[str, int] = field(default_factory=dict)  # by class, every try
    false: list[FalseAnswer] = field(default_factory=list)
    lost: int = 0  # accepted (201/202) and never decided
    orders: int = 0

    @property
    def false_answers(self) -> int:
        return len(self.false)

    def summary(self) -> dict[str, object]:
        return {"answers": self.answers, "false_answers": self.false_answers,
                "lost": self.lost, "orders": self.orders,
                "false": [vars(f) for f in self.false[:20]]}


def audit(writes: list[Outcome], final: dict[str, str]) -> Audit:
    """``writes``: every try of every order request; ``final``: each order id's state in the
    database after the drain (an id without a row is absent)."""
    result = Audit(answers={c: 0 for c in CLASSES})
    tries = sorted((w for w in writes if w.order_id), key=lambda w: (w.request, w.attempt))
    for _, group in groupby(tries, key=lambda w: w.request):
        history = list(group)
        order_id = str(history[0].order_id)
        state = final.get(order_id)
        result.orders += 1
        classes = [answer_class(w.status) for w in history]
        for kind in classes:
            result.answers[kind] += 1
        if any(c in ("201", "202") for c in classes) and state not in FINAL:
            result.lost += 1
        for i, (attempt, kind) in enumerate(zip(history, classes, strict=True)):
            why = _why_false(kind, state, classes[:i], classes[i + 1:])
            if why is not None:
                result.false.append(FalseAnswer(order_id, attempt.status, attempt.attempt,
                                                state, why))
    return result


def _why_false(kind: str, state: str | None, before: list[str],
               after: list[str]) -> str | None:
    if kind == "201" and state != "confirmed":
        return f"answered confirmed, the database holds {state or 'nothing'}"
    if kind in ("409", "4xx") and state == "confirmed":
        return "answered refused, the database holds it confirmed"
    if kind == "503":
        if any(c in ("201", "202") for c in before):
            return "answered 'nothing happened' after the order was accepted"
        others = before + after
        if state == "confirmed" and not any(c in ("201", "202", "unknown") for c in others):
            return "answered 'nothing happened', the database holds it confirmed"
    return None
