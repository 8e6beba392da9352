"""events.decode against raw msgspec decoding of the same encoded events into the same union."""

from __future__ import annotations

import msgspec

from benchmarks._util import best_rate, ratio, rounded
from eventbus import events as ev

NAME = "events_decode"


def sample_events(n: int) -> list[bytes]:
    """A realistic mix: mostly item and progress events, some lifecycle ones."""
    out: list[bytes] = []
    for i in range(n):
        common = {"provider": "pronto", "job_id": "enr_42", "source": "webhook"}
        match i % 5:
            case 0:
                e: ev.Event = ev.JobProgress(id=f"p{i}", done=i, total=n, **common)
            case 1 | 2:
                e = ev.ItemSucceeded(
                    id=f"s{i}", key=str(i), outcome="found", data={"email": f"a{i}@example.com"}, **common
                )
            case 3:
                e = ev.ItemFailed(id=f"f{i}", key=str(i), code="not_found", message="no match", **common)
            case _:
                e = ev.Throttled(id=f"t{i}", retry_after=1.5, **common)
        out.append(ev.encode(e))
    return out


def run(quick: bool) -> dict:
    n = 20_000 if quick else 200_000
    payloads = sample_events(n)
    union = ev.AnyEvent
    bare = msgspec.json.Decoder(union)

    def ours() -> int:
        decode = ev.decode
        for p in payloads:
            decode(p)
        return n

    def raw_function() -> int:
        decode = msgspec.json.decode
        for p in payloads:
            decode(p, type=union)
        return n

    def raw_decoder() -> int:
        decode = bare.decode
        for p in payloads:
            decode(p)
        return n

    r_ours, r_fn, r_dec = best_rate(ours), best_rate(raw_function), best_rate(raw_decoder)
    return {
        "events": n,
        "events_decode_per_s": rounded(r_ours),
        "raw_msgspec_json_decode_per_s": rounded(r_fn),
        "raw_msgspec_Decoder_per_s": rounded(r_dec),
        "ratio_vs_msgspec_json_decode": ratio(r_ours, r_fn),
        "ratio_vs_msgspec_Decoder": ratio(r_ours, r_dec),
        "meets": {"decode >= 0.9x raw msgspec.json.decode": r_ours >= 0.9 * r_fn},
    }
