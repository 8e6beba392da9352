"""Provider answers in unexpected shapes: every one is read into a clear outcome, never a crash or a lost row."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.providers import datananas, insideview, mautic, pronto
from adapters.providers.base import Accepted, Chunk, Items, Provider, Refused, Response, declares_more_than
from adapters.providers.datananas import Datananas
from adapters.providers.insideview import InsideView
from adapters.providers.mautic import Mautic
from adapters.providers.pronto import Pronto
from adapters.submit import prepare
from eventbus import events as ev
from eventbus.exceptions import AuthError

KEYS = ("message", "error", "reason", "error_description", "errors", "details", "index", "field")


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
        ({"message": "bad", "details": [{"index": 0, "field": "lastname", "message": "required"}]}, "bad: row 0"),
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


# --- Mautic's batch endpoint ------------------------------------------------------------------


def mautic_batch_chunk(n: int) -> tuple[Mautic, Chunk]:
    m = Mautic(endpoint="batch")
    return m, prepare(m, [{"email": f"a{i}@b.c"} for i in range(n)])[0][0]


def test_mautic_batch_rows_without_a_status_fail_with_a_reason() -> None:
    """Fewer statusCodes than rows: every row still gets one outcome, the unanswered ones a failure saying why."""
    m, chunk = mautic_batch_chunk(3)
    items = m.read_submit(chunk, resp(201, {"statusCodes": [201], "contacts": [{"id": 1}]}))
    assert isinstance(items, Items)
    assert [(row, ok) for row, _, ok, *_ in items.results] == [(0, True), (1, False), (2, False)]
    assert all(r[4] == "Mautic gave no status for this row" for r in items.results[1:])


def test_mautic_batch_extra_statuses_are_ignored() -> None:
    """More statusCodes than rows: one outcome per submitted row; the extra statuses are a note, nothing more."""
    m, chunk = mautic_batch_chunk(2)
    body = {"statusCodes": [201, 201, 201, 400], "contacts": [{"id": 1}, {"id": 2}, {"id": 3}]}
    items = m.read_submit(chunk, resp(201, body))
    assert isinstance(items, Items)
    assert [(row, ok, what) for row, _, ok, what, *_ in items.results] == [(0, True, "created"), (1, True, "created")]
    assert items.notes == ("Mautic gave 2 more statusCodes than the 2 contacts sent; ignored",)


def test_mautic_batch_items_are_keyed_by_input_row_with_the_contact_id_as_data() -> None:
    """Successes and failures share one kind of key, the input row: Mautic's contact id 2 cannot collide with row 2."""
    m = Mautic(endpoint="batch")
    chunk = prepare(m, [{"email": "not an email"}] + [{"email": f"a{i}@b.c"} for i in range(6)])[0][0]
    assert chunk.rows == (1, 2, 3, 4, 5, 6)
    body = {"statusCodes": [400, 400, 400, 400, 201, 400], "contacts": [{"id": 2}], "errors": {}}
    items = m.read_submit(chunk, resp(201, body))
    assert isinstance(items, Items)
    assert [key for _, key, *_ in items.results] == ["1", "2", "3", "4", "5", "6"]
    assert [(key, data) for _, key, ok, _, _, data in items.results if ok] == [("5", {"id": 2})]


def test_mautic_batch_odd_errors_and_contacts_still_give_text_and_rows() -> None:
    """An error message that is an object becomes text; a created contact that is no object gives no id."""
    m, chunk = mautic_batch_chunk(2)
    body = {"statusCodes": [201, 400], "contacts": [None], "errors": {"1": {"message": {"email": "taken"}}}}
    items = m.read_submit(chunk, resp(201, body))
    assert isinstance(items, Items)
    assert [(key, ok, message, data) for _, key, ok, _, message, data in items.results] == [
        ("0", True, "", {"id": None}),
        ("1", False, '{"email":"taken"}', {"details": {}}),
    ]


# --- InsideView's Bulk Contact Fetch ------------------------------------------------------------


def fetch_chunk(*ids: str) -> tuple[InsideView, Chunk]:
    iv = InsideView(endpoint="fetch")
    return iv, prepare(iv, list(ids))[0][0]


def test_insideview_fetch_id_left_out_fails_with_a_reason() -> None:
    """An id the answer leaves out still gets one outcome: a failure saying InsideView did not answer for it."""
    iv, chunk = fetch_chunk("11", "12", "13")
    items = iv.read_submit(chunk, resp(200, [{"requestedContactId": "12", "contact": {"firstName": "Ann"}}]))
    assert isinstance(items, Items)
    assert [(row, key, ok) for row, key, ok, *_ in items.results] == [
        (0, "11", False),
        (1, "12", True),
        (2, "13", False),
    ]
    assert [r[4] for r in items.results if not r[2]] == ["InsideView gave no answer for this id"] * 2


def test_insideview_fetch_repeated_and_unknown_ids_are_read_once_or_not_at_all() -> None:
    """An id answered twice gives one outcome (the first); an id not asked for gives none; each is a note."""
    iv, chunk = fetch_chunk("1")
    body = [
        {"requestedContactId": "1", "contact": {"n": 1}},
        {"requestedContactId": "1", "error": {"errorCode": "404-602", "errorMessage": "gone"}},
        {"requestedContactId": "9", "contact": {"n": 9}},
    ]
    items = iv.read_submit(chunk, resp(200, body))
    assert isinstance(items, Items)
    assert items.results == ((0, "1", True, "found", "", {"n": 1}),)
    assert items.notes == (
        "InsideView answered id 1 more than once; the first answer was kept",
        "InsideView answered id 9, not asked for; ignored",
    )


# --- accepted answers that name no job ------------------------------------------------------


@pytest.mark.parametrize(
    "provider, contacts, status, body",
    [
        (InsideView(), ["1"], 200, {"jobId": "", "status": "accepted"}),
        (InsideView(), ["1"], 200, {"jobId": "  ", "status": "accepted"}),
        (InsideView(), ["1"], 200, b"<BulkJobStatus><jobId></jobId><status>accepted</status></BulkJobStatus>"),
        (Mautic(), [{"email": "a@b.c"}], 202, {"id": ""}),
        (Datananas(list="L"), [{"email": "a@b.c"}], 200, {"uuid": "", "total": 1}),
        (Pronto(webhook_url="http://h/x"), [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2, 202, {"id": ""}),
    ],
    ids=["insideview-json", "insideview-blank", "insideview-xml", "mautic", "datananas", "pronto"],
)
def test_accepted_answer_with_an_empty_job_id_is_refused(
    provider: Provider, contacts: list, status: int, body: object
) -> None:
    """A 2xx naming an empty job id is a non-retriable refusal saying so: no job can be followed by ''."""
    chunk = prepare(provider, contacts)[0][0]
    refused = provider.read_submit(chunk, resp(status, body))
    assert isinstance(refused, Refused) and not refused.retriable and not refused.account
    assert refused.status == status and ("empty" in refused.reason or "no enrichment id" in refused.reason)


# --- negative counts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "contact_bulk_create_ending", "data": {"uuid": "u", "created": -3}},
        {"event": "contact_bulk_create_ending", "data": {"uuid": "u", "created": 2, "updated": -1}},
    ],
)
def test_datananas_ending_with_a_negative_count_is_malformed(frame: dict) -> None:
    """A negative created/updated count is a malformed frame (ValueError naming the field), never a JobCompleted."""
    with pytest.raises(ValueError, match=r">= 0.*\$\.(created|updated)"):
        datananas.parse_frame(msgspec.json.encode(frame))


def test_datananas_frames_of_other_events_are_not_ours_but_unknown_bulk_events_are_said() -> None:
    """The account's WebSocket may carry events other than bulk creation: no events, no InvalidSignal (a busy
    account flooded the log with warnings). An unknown contact_bulk_create_* event is still a ValueError."""
    assert datananas.parse_frame(b'{"event": "contact_updated", "data": {"id": 7}}') == []
    with pytest.raises(ValueError, match="unknown Datananas event 'contact_bulk_create_failed'"):
        datananas.parse_frame(b'{"event": "contact_bulk_create_failed", "data": {"uuid": "u"}}')
    with pytest.raises(ValueError):
        datananas.parse_frame(b'{"data": {"uuid": "u"}}')  # no event name at all


@pytest.mark.parametrize("total", [-1, "3", True, 1.5])
def test_datananas_unusable_total_falls_back_to_the_rows_sent(total: object) -> None:
    """An accepted answer with a uuid but a negative or non-integer total is accepted with the count sent."""
    d = Datananas(list="L")
    chunk = prepare(d, [{"email": "a@b.c"}, {"email": "c@d.e"}])[0][0]
    assert d.read_submit(chunk, resp(200, {"uuid": "u1", "total": total})) == Accepted("u1", total=2)


@pytest.mark.parametrize(
    "body",
    [
        {"jobId": "j", "status": "running", "processed": -5, "total": 3},
        {"jobId": "j", "status": "running", "processed": 1, "total": -3},
        b"<BulkJobStatus><jobId>j</jobId><status>running</status><processed>-5</processed></BulkJobStatus>",
    ],
    ids=["json-processed", "json-total", "xml-processed"],
)
def test_insideview_negative_counts_are_malformed(body: object) -> None:
    """A negative processed/total, in JSON or XML, is a ValueError naming the field, never a JobProgress."""
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    with pytest.raises(ValueError, match=r">= 0.*\$\.(processed|total)"):
        insideview.parse_webhook(raw)


# --- refusal reasons are always text -------------------------------------------------------------


def test_pronto_422_with_an_object_error_gives_text() -> None:
    """A 422 whose error is an object is an account-level refusal whose reason and code are strings."""
    p, chunk = pronto_chunk()
    refused = p.read_submit(chunk, resp(422, {"error": {"a": 1}}))
    assert isinstance(refused, Refused) and refused.account
    assert (refused.reason, refused.code) == ('{"a":1}', "unprocessable")


def test_datananas_402_with_an_object_reason_gives_text() -> None:
    """A 402 whose reason is an object is an account-level refusal whose reason and code are strings."""
    d = Datananas(list="L")
    chunk = prepare(d, [{"email": "a@b.c"}])[0][0]
    refused = d.read_submit(chunk, resp(402, {"reason": {"a": 1}}))
    assert isinstance(refused, Refused) and refused.account
    assert (refused.reason, refused.code) == ('quota exhausted: {"a":1}', "quota")


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8), inner),
    max_leaves=12,
)
BODIES = JSON | st.dictionaries(st.sampled_from(KEYS), JSON, max_size=3)  # mostly the keys the readers look at


def refusal_cases() -> list[tuple[Provider, list]]:
    pronto = [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2
    return [
        (Pronto(webhook_url="http://h/x"), pronto),
        (Datananas(list="L"), [{"email": "a@b.c"}]),
        (Mautic(), [{"email": "a@b.c"}]),
        (InsideView(), ["1"]),
    ]


@pytest.mark.parametrize("provider, contacts", refusal_cases(), ids=lambda v: getattr(v, "name", ""))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(status=st.sampled_from([400, 401, 402, 403, 404, 409, 415, 422]), body=BODIES)
def test_any_refusal_body_gives_text_that_events_carry(
    provider: Provider, contacts: list, status: int, body: object
) -> None:
    """Whatever JSON a refusal carries, read_submit gives a Refused whose reason and code are strings events decode."""
    chunk = prepare(provider, contacts)[0][0]
    refused = provider.read_submit(chunk, resp(status, body))
    assert isinstance(refused, Refused) and type(refused.reason) is str and type(refused.code) is str
    event = ev.QuotaExhausted(
        id="i", provider=provider.name, job_id="b#0", source="submit", status=status, reason=refused.code,
        message=refused.reason,
    )  # fmt: skip
    assert ev.decode(ev.encode(event)) == event


# --- InsideView XML numbers ----------------------------------------------------------------------


@pytest.mark.parametrize("name, digits", [("processed", 5_000), ("total", 4_301), ("processed", 19)])
def test_insideview_xml_number_too_long_names_the_field(name: str, digits: int) -> None:
    """A count of more digits than any count has (even past Python's 4,300-digit limit) is a ValueError naming it."""
    number = "1" * digits
    body = f"<BulkJobStatus><jobId>j</jobId><status>running</status><{name}>{number}</{name}></BulkJobStatus>"
    with pytest.raises(ValueError, match=rf"{name}.*{digits} digits"):
        insideview.parse_job_status(resp(200, body.encode()))


def test_insideview_xml_counts_up_to_18_digits_are_read() -> None:
    """The largest count the XML reader takes is 18 digits, read exactly."""
    count = "9" * 18
    body = f"<BulkJobStatus><jobId>j</jobId><status>running</status><processed>{count}</processed></BulkJobStatus>"
    assert insideview.parse_job_status(resp(200, body.encode())).processed == int(count)


# --- Mautic job status and details pages ------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000  # valid JSON nested past the interpreter's recursion limit


@pytest.mark.parametrize(
    "read, body",
    [
        (mautic.read_status, b'{"status":"completed","details":{"a":' + DEEP + b"}}"),
        (
            mautic.read_details_page,
            b'{"status":"completed","details":{"contacts":[{"statusCode":400,"errors":{"a":' + DEEP + b"}}]}}",
        ),
        (datananas.parse_frame, b'{"event":"contact_bulk_create_ending","data":' + DEEP + b"}"),
        (
            pronto.parse_webhook,
            b'{"enrichment_id":"e","status":"found","contact":{"eventbus_key":"1"},"result":{"a":' + DEEP + b"}}",
        ),
    ],
    ids=["mautic-status", "mautic-details", "datananas-frame", "pronto-webhook"],
)
def test_json_nested_too_deeply_is_a_value_error(read: Callable[[bytes], object], body: bytes) -> None:
    """JSON nested past the recursion limit is a ValueError (what the polling shell reports), not a RecursionError."""
    with pytest.raises(ValueError, match="nested too deeply"):
        read(body)


@pytest.mark.parametrize(
    "errors, message, details",
    [
        ({"message": "m", "details": "oops"}, "m", {"details": "oops"}),
        ({"message": "m", "details": ["a", "b"]}, "m", {"details": ["a", "b"]}),
        ({"message": {"code": 7}, "details": {"email": ["taken"]}}, '{"code":7}', {"email": ["taken"]}),
    ],
)
def test_mautic_detail_failures_carry_text_and_an_object(errors: dict, message: str, details: dict) -> None:
    """A failed entry's message becomes text and its details an object, whatever their shape, so the event decodes."""
    (event,) = mautic.detail_events("j", [mautic.DetailEntry(400, None, errors)], 0)
    assert isinstance(event, ev.ItemFailed) and (event.message, event.details) == (message, details)
    assert ev.decode(ev.encode(event)) == event


@pytest.mark.parametrize(
    "provider, contacts, status",
    [
        (Pronto(webhook_url="http://h/x"), [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2, 202),
        (Datananas(list="L"), [{"email": "a@b.c"}], 200),
        (Mautic(), [{"email": "a@b.c"}], 202),
        (Mautic(endpoint="batch"), [{"email": "a@b.c"}], 201),
        (InsideView(), ["1"], 200),
        (InsideView(endpoint="fetch"), ["1"], 200),
    ],
    ids=["pronto", "datananas", "mautic", "mautic-batch", "insideview", "insideview-fetch"],
)
def test_accepted_answer_nested_too_deeply_is_refused(provider: Provider, contacts: list, status: int) -> None:
    """A 2xx whose JSON nests past the recursion limit is a non-retriable refusal, not a RecursionError."""
    chunk = prepare(provider, contacts)[0][0]
    for body in (DEEP, b'{"other":' + DEEP + b"}", b'{"uuid":"u","total":' + DEEP + b"}"):
        refused = provider.read_submit(chunk, resp(status, body))
        assert isinstance(refused, Refused) and refused.status == status and not refused.retriable


# --- token answers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "provider, body, field",
    [
        (Mautic(), {"access_token": "", "expires_in": 3600}, "access_token"),
        (InsideView(), {"accessTokenDetails": {"accessToken": "", "expirationTime": None}}, "accessToken"),
    ],
    ids=["mautic", "insideview"],
)
def test_empty_access_token_is_a_malformed_token_answer(provider: Provider, body: dict, field: str) -> None:
    """A 200 token answer whose token is empty is an AuthError naming the field, not a token to send."""
    with pytest.raises(AuthError, match=rf"malformed.*{field}"):
        provider.read_token(resp(200, body))  # type: ignore[attr-defined]


@pytest.mark.parametrize("provider", [Mautic(), InsideView()], ids=["mautic", "insideview"])
def test_token_answer_nested_too_deeply_is_malformed(provider: Provider) -> None:
    """A token answer nested past the recursion limit is a malformed-answer AuthError, not a RecursionError."""
    with pytest.raises(AuthError, match="token answer is malformed"):
        provider.read_token(resp(200, b'{"access_token": ' + b"[" * 100_000))  # type: ignore[attr-defined]


# --- Pronto webhooks ----------------------------------------------------------------------------------


def pronto_webhook(enrichment_id: object = "e", key: object = "1") -> bytes:
    return msgspec.json.encode(
        {"enrichment_id": enrichment_id, "status": "found", "contact": {"eventbus_key": key}, "result": {}}
    )


@pytest.mark.parametrize(
    "body, match",
    [
        (pronto_webhook(enrichment_id=""), "enrichment_id is empty"),
        (pronto_webhook(key="zz"), "'zz' is not a row number"),
        (pronto_webhook(key="-1"), "'-1' is not a row number"),
        (pronto_webhook(key=True), "eventbus_key true is not a row number"),  # it said "no eventbus_key"
        (pronto_webhook(key=[1]), r"eventbus_key \[1\] is not a row number"),
        (pronto_webhook(key=None), "the contact has no eventbus_key"),
        (pronto_webhook(key=""), "the contact has no eventbus_key"),
    ],
    ids=["empty-enrichment-id", "word-key", "negative-key", "bool-key", "list-key", "null-key", "empty-key"],
)
def test_pronto_webhook_without_a_job_or_row_is_malformed(body: bytes, match: str) -> None:
    """A webhook naming no enrichment, or a key that is no row number, is a ValueError, not an item of job ''."""
    with pytest.raises(ValueError, match=match):
        pronto.parse_webhook(body)


def test_pronto_webhook_key_echoed_as_a_number_is_read() -> None:
    """An eventbus_key echoed back as a JSON number (we sent a string) still names its row."""
    (event,) = pronto.parse_webhook(pronto_webhook(key=3))
    assert (event.job_id, event.key) == ("e", "3")


@pytest.mark.parametrize("status, result", [("not_found", None), ("found", None), ("Found", {"email": "a@x.io"})])
def test_pronto_webhook_with_a_null_result_or_a_capitalised_status_is_read(status: str, result: object) -> None:
    """`"result": null` (nothing found) and "Found" are read, not refused with a 400: refused, the webhook was
    retried then dropped by Pronto, and the contact never reported (its job never completed)."""
    body = {"enrichment_id": "e", "status": status, "contact": {"eventbus_key": "1"}, "result": result}
    (event,) = pronto.parse_webhook(msgspec.json.encode(body))
    assert event.key == "1"
    if status == "not_found":
        assert isinstance(event, ev.ItemFailed) and event.code == "not_found"
    else:
        assert isinstance(event, ev.ItemSucceeded) and event.data == (result or {})


def test_job_statuses_are_read_whatever_their_case() -> None:
    """InsideView's "Finished" ends the job as "finished" does (it was polled until the timeout); Mautic's
    "Completed" is completed (it was an unknown status)."""
    status = insideview.parse_job_status(resp(200, {"jobId": "j", "status": " Finished", "type": "t"}))
    assert status.status == "finished" and status.status in insideview.TERMINAL_STATUSES
    (event,) = insideview.parse_webhook(msgspec.json.encode({"jobId": "j", "status": "FAILED"}))
    assert isinstance(event, ev.JobFailed)
    assert mautic.read_status(b'{"status": "Completed"}').status == "completed"


def test_pronto_numeric_enrichment_id_is_read_as_text_in_both_places() -> None:
    """A job id Pronto gives as a JSON number names the same job in its submit answer and in its webhooks."""
    p, chunk = pronto_chunk()
    outcome = p.read_submit(chunk, resp(202, {"enrichment_id": 57}))
    (event,) = pronto.parse_webhook(pronto_webhook(enrichment_id=57))
    assert outcome == Accepted("57", total=2) and event.job_id == "57" and event.id.startswith("pronto:57:")


# --- InsideView job statuses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, match",
    [
        ({"jobId": "", "status": "running"}, "jobId is empty"),
        (b"<a><jobId><b>1</b></jobId><status>running</status></a>", "jobId is empty"),
        (b"<a><jobId>1</jobId><jobId>2</jobId><status>running</status></a>", "more than one jobId"),
        ({"jobId": "j", "status": "running", "processed": 50, "total": 3}, "processed 50 is more than the total 3"),
    ],
    ids=["json-empty-id", "xml-nested-id", "xml-repeated-id", "processed-past-total"],
)
def test_insideview_status_that_does_not_add_up_is_malformed(body: object, match: str) -> None:
    """A status naming no job, one job twice, or more processed than in total is a ValueError saying which."""
    with pytest.raises(ValueError, match=match):
        insideview.parse_job_status(resp(200, body))


def test_insideview_xml_status_in_a_namespace_is_read() -> None:
    """An XML status whose elements carry a namespace is read by their local names."""
    body = b'<a xmlns="urn:x"><jobId>j1</jobId><status>running</status><processed>2</processed></a>'
    status = insideview.parse_job_status(resp(200, body))
    assert (status.jobId, status.status, status.processed) == ("j1", "running", 2)


def test_mautic_numeric_job_id_is_accepted_as_text() -> None:
    """A 202 naming its job by a JSON number is accepted (the job exists), its id as text."""
    m = Mautic()
    chunk = prepare(m, [{"email": "a@b.c"}])[0][0]
    assert m.read_submit(chunk, resp(202, {"id": 57})) == Accepted("57", total=1)


@pytest.mark.parametrize(
    "frame",
    [
        {"event": "contact_bulk_create_starting", "data": {"uuid": ""}},
        {"event": "contact_bulk_create_running", "data": {"uuid": "", "i": 0, "total": 1}},
        {"event": "contact_bulk_create_ending", "data": {"uuid": " ", "created": 1}},
    ],
    ids=["starting", "running", "ending"],
)
def test_datananas_frame_with_an_empty_uuid_is_malformed(frame: dict) -> None:
    """A frame whose uuid is empty names no job: a ValueError, not events of job ''."""
    with pytest.raises(ValueError, match="uuid is empty"):
        datananas.parse_frame(msgspec.json.encode(frame))


@pytest.mark.parametrize(
    "value, over",
    [
        (None, False),
        ("", False),
        ("1000", False),
        ("1001", True),
        ("0001001", True),
        ("0" * 30 + "999", False),
        ("9" * 5000, True),  # past int()'s 4,300 digits: over, never a ValueError
        ("-1", False),
        ("1e9", False),
        ("\u0661\u0662", False),  # digits of another script: not a Content-Length
    ],
)
def test_declared_content_length_against_a_limit(value: str | None, over: bool) -> None:
    """A Content-Length is over the limit only when it is ASCII digits declaring more, however many digits."""
    assert declares_more_than(value, 1000) is over


@pytest.mark.parametrize("status", [200, 201, 202])
@pytest.mark.parametrize(
    "provider, contacts, answer",
    [
        (InsideView(), ["11", "12"], {"jobId": "J", "status": "accepted", "type": "t"}),
        (Mautic(), [{"email": "a@b.c"}], {"id": "J"}),
        (Datananas(list="L"), [{"email": "a@b.c"}], {"uuid": "J", "listId": "L", "total": 1}),
        (Pronto(webhook_url="http://h/x"), [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2, {"id": "J"}),
    ],
    ids=["insideview", "mautic", "datananas", "pronto"],
)
def test_a_job_id_in_any_taken_answer_is_a_job_accepted(
    provider: Provider, contacts: list, answer: dict, status: int
) -> None:
    """Whichever of 200, 201 and 202 a provider answers with a job id, the job is accepted: read as refused, a job
    that exists was reported rejected ("do not send again") and never followed."""
    chunk = prepare(provider, contacts)[0][0]
    outcome = provider.read_submit(chunk, resp(status, answer))
    assert outcome == Accepted("J", total=len(contacts))


@pytest.mark.parametrize(
    "provider, expected",
    [
        (
            Datananas(list="L"),
            [("E-mail", "email", False), ("Prénom", "vars.Prénom", True), ("First Name", "firstname", False)],
        ),
        (
            Pronto(webhook_url="http://h/x"),
            [("E-mail", "E-mail", True), ("Prénom", "Prénom", True), ("First Name", "firstname", False)],
        ),
        (Mautic(), [("E-mail", "email", False), ("Prénom", "Prénom", True), ("First Name", "firstname", False)]),
        (InsideView(), [("E-mail", None, False), ("Prénom", None, False), ("First Name", None, False)]),
    ],
    ids=["datananas", "pronto", "mautic", "insideview"],
)
def test_field_targets_say_where_each_input_field_goes(provider: Provider, expected: list) -> None:
    """Each input name's place in what is sent, as map_fields puts it: a known field, a custom one, or nothing."""
    assert provider.field_targets(["E-mail", "Prénom", "First Name"]) == expected


def test_insideview_field_targets_send_the_id_columns_only() -> None:
    """Every id column may give the id sent (the first filled in, row by row); nothing else is sent."""
    assert InsideView().field_targets(["contact_id", "name", "newContactId"]) == [
        ("contact_id", "id", False),
        ("name", None, False),
        ("newContactId", "id", False),
    ]
