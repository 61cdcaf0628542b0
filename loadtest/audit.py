"""The end-to-end audit of a load test: what the gateway accepted, what it says
happened to each message, and what the SMSC (the simulator) actually received.

- **lost**: accepted, but not final when the audit ran (the product promises
  every accepted message one final status), or reported `delivered` with a
  part whose SMSC message id the simulator never issued.
- **duplicated**: the simulator acknowledged the same (destination, content)
  more than once (its ``--record`` lists every acknowledged submit_sm with a
  hash of both; load-test texts carry a unique token, so equal content means
  the same message sent twice).
- **unknown at SMSC**: acknowledged submits that belong to no accepted
  message of this run (another sender on the simulator).

Latencies come from each message's status history (gateway timestamps):
accept → `submitted` (first part acknowledged by the SMSC) and accept → final.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINAL = frozenset({"delivered", "undelivered", "expired", "rejected", "failed"})


@dataclass(slots=True)
class Observed:
    """One accepted message as the gateway reports it now."""

    id: str
    msg_class: str
    status: str
    accepted_at: float | None
    submitted_at: float | None
    final_at: float | None
    smsc_ids: list[str]


@dataclass
class SimRecord:
    """The simulator's --record: SMSC id → content hash, and hash counts."""

    by_id: dict[str, str] = field(default_factory=dict)
    hash_counts: Counter[str] = field(default_factory=Counter)
    entries: int = 0

    @classmethod
    def load(cls, path: str | Path) -> SimRecord:
        rec = cls()
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                x = json.loads(line)
                rec.by_id[x["id"]] = x["h"]
                rec.hash_counts[x["h"]] += 1
                rec.entries += 1
        return rec


def observed_from_state(state: Any) -> Observed:
    """From a gateway.core.model.MessageState (read through gateway.store.Store)."""
    return observed_from_history(
        state.message.id, state.message.msg_class, state.status, state.history,
        list(state.smsc_ids.values()),
    )


def observed_from_json(body: dict[str, Any]) -> Observed:
    """From a GET /v1/messages/{id} body."""
    import datetime as dt

    history = [
        (dt.datetime.fromisoformat(h["at"]).timestamp(), h["status"], h.get("detail", ""))
        for h in body.get("history", [])
    ]
    return observed_from_history(
        body["id"], body.get("class", ""), body["status"], history,
        list(body.get("smsc_message_ids", {}).values()),
    )


def observed_from_history(
    message_id: str, msg_class: str, status: str,
    history: Iterable[tuple[float, str, str]], smsc_ids: list[str],
) -> Observed:
    accepted = submitted = final = None
    for ts, st, _detail in history:
        if st == "accepted" and accepted is None:
            accepted = ts
        elif st == "submitted" and submitted is None:
            submitted = ts
        elif st in FINAL and final is None:
            final = ts
    return Observed(message_id, msg_class, status, accepted, submitted, final, smsc_ids)


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 95, 99)) -> dict[str, Any]:
    """Nearest-rank percentiles (and max, count) of seconds."""
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    out: dict[str, Any] = {"count": len(ordered)}
    for p in points:
        rank = max(1, math.ceil(p / 100 * len(ordered)))
        out[f"p{p:g}"] = round(ordered[rank - 1], 4)
    out["max"] = round(ordered[-1], 4)
    return out


def audit(
    accepted_ids: Sequence[str],
    observed: dict[str, Observed],
    record: SimRecord | None,
    sim_stats: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Compare accepted ids, their statuses and the SMSC's record."""
    statuses: Counter[str] = Counter()
    not_final: list[str] = []
    missing: list[str] = []  # accepted but unknown to the gateway now
    phantom: list[str] = []  # delivered, but an SMSC id the simulator never issued
    duplicated_ids: list[str] = []
    own_hashes: set[str] = set()
    for mid in accepted_ids:
        o = observed.get(mid)
        if o is None:
            missing.append(mid)
            continue
        statuses[o.status] += 1
        if o.status not in FINAL:
            not_final.append(mid)
        if record is not None:
            hashes = [record.by_id.get(sid) for sid in o.smsc_ids]
            if o.status == "delivered" and any(h is None for h in hashes):
                phantom.append(mid)
            for h in hashes:
                if h is not None:
                    own_hashes.add(h)
                    if record.hash_counts[h] > 1:
                        duplicated_ids.append(mid)
    out: dict[str, Any] = {
        "accepted": len(accepted_ids),
        "audited": len(accepted_ids) - len(missing),
        "statuses": dict(statuses.most_common()),
        "not_final": len(not_final),
        "missing": len(missing),
        "lost": len(not_final) + len(missing) + len(phantom),
        "lost_examples": [
            _example(m, observed.get(m)) for m in (not_final + missing + phantom)[:10]
        ],
    }
    if record is not None:
        dup_submits = sum(c - 1 for c in record.hash_counts.values() if c > 1)
        out.update({
            "smsc_acknowledged": record.entries,
            "smsc_unique": len(record.hash_counts),
            "duplicated": dup_submits,
            "duplicated_messages": sorted(set(duplicated_ids))[:10],
            "delivered_without_smsc_record": len(phantom),
            "unknown_at_smsc": len(set(record.hash_counts) - own_hashes),
        })
    elif sim_stats:
        out["duplicated"] = int(sim_stats.get("duplicates", 0))
    if sim_stats:
        out["sim_unique"] = sim_stats.get("unique")
        out["sim_duplicates"] = sim_stats.get("duplicates")
    return out


def _example(message_id: str, o: Observed | None) -> dict[str, Any]:
    if o is None:
        return {"id": message_id, "status": None}
    return {"id": message_id, "status": o.status, "class": o.msg_class,
            "accepted_at": o.accepted_at, "submitted_at": o.submitted_at,
            "smsc_ids": o.smsc_ids}


def latencies(observed: Iterable[Observed]) -> dict[str, dict[str, Any]]:
    """accept→submit_sm and accept→final percentiles per class (and overall)."""
    to_submit: dict[str, list[float]] = {}
    to_final: dict[str, list[float]] = {}
    for o in observed:
        if o.accepted_at is None:
            continue
        for cls in (o.msg_class, "all"):
            if o.submitted_at is not None:
                to_submit.setdefault(cls, []).append(o.submitted_at - o.accepted_at)
            if o.final_at is not None:
                to_final.setdefault(cls, []).append(o.final_at - o.accepted_at)
    classes = sorted(set(to_submit) | set(to_final), key=lambda c: (c == "all", c))
    return {
        cls: {
            "accept_to_submit": percentiles(to_submit.get(cls, [])),
            "accept_to_final": percentiles(to_final.get(cls, [])),
        }
        for cls in classes
    }


def span(observed: Iterable[Observed]) -> dict[str, float | None]:
    """First accept, last submit and last final (gateway clock), for end-to-end rates."""
    first_accept = last_final = last_submit = first_final = None
    for o in observed:
        if o.accepted_at is not None and (first_accept is None or o.accepted_at < first_accept):
            first_accept = o.accepted_at
        if o.submitted_at is not None and (last_submit is None or o.submitted_at > last_submit):
            last_submit = o.submitted_at
        if o.final_at is not None:
            if last_final is None or o.final_at > last_final:
                last_final = o.final_at
            if first_final is None or o.final_at < first_final:
                first_final = o.final_at
    return {"first_accept": first_accept, "last_submit": last_submit,
            "first_final": first_final, "last_final": last_final}
