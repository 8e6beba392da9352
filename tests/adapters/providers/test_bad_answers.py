"""Provider answers in unexpected shapes: every one is read into a clear outcome, never a crash or a lost row."""

from __future__ import annotations

import msgspec
import pytest

from adapters.providers.base import Chunk, Refused, Response
from adapters.providers.pronto import Pronto
from adapters.submit import prepare


def resp(status: int, body: object = b"") -> Response:
    return Response(status, {}, body if isinstance(body, bytes) else msgspec.json.encode(body))


def pronto_chunk() -> tuple[Pronto, Chunk]:
    p = Pronto(webhook_url="http://h/x")
    return p, prepare(p, [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2)[0][0]


# --- Pronto ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"message": "bad", "details": ["x", "y"]}, "bad: x; y"),
        ({"message": "bad", "details": [None]}, "bad"),
        ({"message": "bad", "details": [7, {"field": "lastname"}]}, "bad: 7; lastname"),
        ({"message": "bad", "details": [{"index": 0, "field": "lastname", "message": "required"}]}, "bad: contact 0"),
        ([None], "[null]"),
        ([{"index": 1}], '[{"index":1}]'),
    ],
)
def test_pronto_refusal_details_of_any_shape_give_a_reason(body: object, expected: str) -> None:
    """A 400 whose details are strings, nulls or mixed (or whose body is a list) is a Refused with a readable reason."""
    p, chunk = pronto_chunk()
    refused = p.read_submit(chunk, resp(400, body))
    assert isinstance(refused, Refused) and refused.status == 400 and not refused.account
    assert isinstance(refused.reason, str) and refused.reason.startswith(expected)
