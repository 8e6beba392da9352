"""The sans-I/O provider modules, synchronously, on payloads shaped as providers.md documents them."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from adapters.providers.base import Accepted, Items, Refused, Response, ServerFailure, Throttle, balanced_chunks
from adapters.providers.datananas import Datananas
from adapters.providers.insideview import InsideView, parse_job_status
from adapters.providers.mautic import Mautic
from adapters.providers.pronto import KEY_FIELD, Pronto
from adapters.submit import prepare
from eventbus.exceptions import AuthError, ConfigError, ContactError


def resp(status: int, body: object = b"", **headers: str) -> Response:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return Response(status, {k.replace("_", "-").lower(): v for k, v in headers.items()}, raw)


# --- chunking ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, sizes",
    [(0, []), (1, [1]), (2, [2]), (100, [100]), (101, [99, 2]), (201, [100, 99, 2]), (250, [100, 100, 50])],
)
def test_balanced_chunks_never_leave_a_chunk_below_the_minimum(n: int, sizes: list[int]) -> None:
    """Pronto-sized chunking: at most 100, the last two rebalanced so none has a single contact."""
    assert [b - a for a, b in balanced_chunks(n, 2, 100)] == sizes


def test_pronto_lone_contact_goes_to_single_endpoint() -> None:
    """One contact alone is sent to single_enrich, never as a bulk of one."""
    chunks, _, _ = prepare(Pronto(webhook_url="http://h/x"), [{"firstname": "a", "lastname": "b", "domain": "d.io"}])
    assert [c.endpoint for c in chunks] == ["single"]
    request = Pronto(webhook_url="http://h/x").build_submit(chunks[0])
    assert request.path == "/contacts/single_enrich" and b'"contact"' in request.content


def test_pronto_chunks_carry_their_row_key() -> None:
    """Each Pronto contact carries eventbus_key (its input row), echoed back by the webhook."""
    contacts = [{"first": "a", "Last Name": "b", "Company": "Acme", "crm_id": 7}, {"firstname": "c", "lastname": "d"}]
    chunks, problems, count = prepare(Pronto(webhook_url="http://h/x"), contacts * 2)
    sent = [c for chunk in chunks for c in chunk.contacts]
    assert count == 4 and [p.row for p in problems] == [1, 3]
    assert [c[KEY_FIELD] for c in sent] == ["0", "2"]
    assert sent[0] == {"firstname": "a", "lastname": "b", "company_name": "Acme", "crm_id": 7, KEY_FIELD: "0"}


@pytest.mark.parametrize(
    "kind, contact, field",
    [
        ("email", {"firstname": "a", "lastname": "b"}, "domain"),
        ("phone", {"firstname": "a", "lastname": "b", "domain": "d.io"}, "linkedin_url"),
        ("email", {"lastname": "b", "domain": "d.io"}, "firstname"),
    ],
)
def test_pronto_required_fields_per_enrichment_type(kind: str, contact: dict, field: str) -> None:
    """Required fields depend on the enrichment type; the problem names row and field."""
    _, problems, _ = prepare(Pronto(enrichment_type=kind, webhook_url="http://h/x"), [contact])
    assert [(p.row, p.field) for p in problems] == [(0, field)]


@pytest.mark.parametrize(
    "kind, contact, field, message",
    [
        ("email", {"firstname": 0, "lastname": "b", "domain": "d.io"}, "firstname", "firstname must be text, not int"),
        ("email", {"firstname": "a", "lastname": False, "domain": "d.io"}, "lastname", "must be text, not bool"),
        ("email", {"firstname": "a", "lastname": "b", "domain": ["d.io"]}, "domain", "domain must be text, not list"),
        ("email", {"firstname": "a", "lastname": "b", "company_name": {"n": 1}}, "company_name", "not dict"),
        ("phone", {"firstname": "a", "lastname": "b", "linkedin_url": 7}, "linkedin_url", "must be text, not int"),
        ("email", {"firstname": "a", "lastname": "  ", "domain": "d.io"}, "lastname", "lastname is required"),
    ],
)
def test_pronto_required_fields_must_be_text(kind: str, contact: dict, field: str, message: str) -> None:
    """A number, boolean, list or object in a required field is that row's problem, not the whole chunk's refusal
    (Pronto refuses a batch with one such contact: up to 100 rows); the other rows still go."""
    good = {"firstname": "a", "lastname": "b", "domain": "d.io", "linkedin_url": "https://linkedin.com/in/a"}
    chunks, problems, _ = prepare(Pronto(enrichment_type=kind, webhook_url="http://h/x"), [good, contact, good])
    assert [(p.row, p.field) for p in problems] == [(1, field)] and message in problems[0].message
    assert [chunk.rows for chunk in chunks] == [(0, 2)]


def test_pronto_options_are_checked() -> None:
    """Unknown enrichment types, non-ISO country codes and non-URL webhooks are refused up front."""
    with pytest.raises(ConfigError, match="enrichment_type"):
        Pronto(enrichment_type="fax")
    with pytest.raises(ConfigError, match=r"alpha-2.*'FRA'"):
        Pronto(phone_country_codes=["US", "FRA"])
    with pytest.raises(ConfigError, match="webhook_url"):
        Pronto(webhook_url="ftp://x")


def test_strict_mode_raises_contact_error() -> None:
    """strict=True turns the first invalid row into a ContactError naming row and field."""
    with pytest.raises(ContactError, match="row 1: field 'email'"):
        prepare(Datananas(list="L"), [{"email": "a@b.c"}, {"email": "nope"}], strict=True)


# --- reading answers ------------------------------------------------------------------------


def test_pronto_readings() -> None:
    """202 is accepted; 422 is account-level with the provider's code; 429/5xx are retry signals."""
    p = Pronto(webhook_url="http://h/x")
    chunk = prepare(p, [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2)[0][0]
    assert p.read_submit(chunk, resp(202, {"enrichment_id": "e1"})) == Accepted("e1", total=2)
    refused = p.read_submit(chunk, resp(422, {"error": "insufficient_credits", "message": "2 needed"}))
    assert isinstance(refused, Refused) and refused.account and refused.code == "insufficient_credits"
    assert p.read_submit(chunk, resp(429, retry_after="3")) == Throttle(3.0)
    assert isinstance(p.read_submit(chunk, resp(503, b"down")), ServerFailure)
    bad = p.read_submit(
        chunk,
        resp(
            400, {"error": "validation_failed", "details": [{"index": 1, "field": "lastname", "message": "required"}]}
        ),
    )
    assert isinstance(bad, Refused) and "row 1 lastname: required" in bad.reason and not bad.account
    rows = prepare(p, [{"x": 1}] + [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2)[0][0]  # rows 1 and 2
    bad = p.read_submit(rows, resp(400, {"details": [{"index": 1, "field": "domain"}, {"index": 5, "field": "x"}]}))
    assert isinstance(bad, Refused) and "row 2 domain; contact 5 x" in bad.reason  # 5: no contact of this chunk


def test_datananas_readings_and_custom_fields() -> None:
    """Unknown fields go to vars; 402 carries the quota reason; 200 gives the uuid as job id."""
    d = Datananas(list={"id": "L1"})
    chunks, _, _ = prepare(d, [{"Email": "a@b.c", "Job Title": "CTO", "shoe_size": 44}])
    assert chunks[0].contacts[0] == {"email": "a@b.c", "title": "CTO", "vars": {"shoe_size": 44}}
    assert d.read_submit(chunks[0], resp(200, {"uuid": "u1", "listId": "L1", "total": 1})) == Accepted("u1", 1)
    quota = d.read_submit(chunks[0], resp(402, {"reason": "contact_total_quotas"}))
    assert isinstance(quota, Refused) and quota.account and quota.code == "contact_total_quotas"
    with pytest.raises(ConfigError, match="list"):
        Datananas()


def test_datananas_vars_given_as_an_object_are_merged_with_the_unknown_fields() -> None:
    """A contact's own vars object is Datananas's vars, with the unknown fields added (it was sent as vars.vars);
    vars that are not an object are refused, naming the row and the field."""
    d = Datananas(list="L1")
    given = [
        {"email": "a@b.c", "vars": {"plan": "gold"}, "score": 5},
        {"email": "b@b.c", "vars": {"plan": "silver"}},
        {"email": "c@b.c", "vars": "gold"},  # a CSV column named vars: text
    ]
    chunks, problems, _ = prepare(d, given)
    assert [c for chunk in chunks for c in chunk.contacts] == [
        {"email": "a@b.c", "vars": {"plan": "gold", "score": 5}},
        {"email": "b@b.c", "vars": {"plan": "silver"}},
    ]
    assert [(p.row, p.field) for p in problems] == [(2, "vars")]
    assert "vars must be an object of custom properties, not str" in problems[0].message


def test_mautic_batch_items_and_token() -> None:
    """The batch endpoint answers per contact; the token answer is read into a grant; a bad one is AuthError."""
    m = Mautic(endpoint="batch")
    chunk = prepare(m, [{"email": "a@b.c"}, {"email": "c@d.e"}])[0][0]
    items = m.read_submit(
        chunk,
        resp(
            201,
            {
                "contacts": [{"id": 5}],
                "statusCodes": [201, 400],
                "errors": {"1": {"code": 400, "message": "bad", "details": {"email": []}}},
            },
        ),
    )
    assert isinstance(items, Items)
    assert [(r[1], r[2], r[3]) for r in items.results] == [("0", True, "created"), ("1", False, "400")]
    assert items.results[0][5] == {"id": 5}  # keyed by input row; Mautic's contact id is data
    assert m.read_token(resp(200, {"access_token": "t", "expires_in": 3600, "token_type": "bearer"})).token == "t"
    with pytest.raises(AuthError, match="refused the client credentials"):
        m.read_token(resp(401, {"error": "invalid_client"}))
    assert prepare(Mautic(endpoint="patch"), [{"email": "a@b.c"}])[1][0].field == "id"


def test_insideview_reads_json_and_xml() -> None:
    """A job answer is read whether JSON or InsideView's default XML."""
    xml = (
        b'<?xml version="1.0"?><BulkJobStatus><jobId>lnjkd7</jobId>'
        b"<status>accepted</status><type>t</type></BulkJobStatus>"
    )
    assert parse_job_status(resp(200, xml)).jobId == "lnjkd7"
    assert parse_job_status(resp(200, {"jobId": "j2", "status": "accepted", "type": "t"})).jobId == "j2"
    with pytest.raises(ValueError, match="malformed XML"):
        parse_job_status(resp(200, b"<BulkJobStatus><jobId>"))
    with pytest.raises(ValueError):
        parse_job_status(resp(200, b"[]"))


def test_insideview_ids_validated_and_collapsed() -> None:
    """Non-numeric ids are problems; duplicate ids are sent once; fetch chunks hold at most 50."""
    iv = InsideView(endpoint="fetch")
    chunks, problems, _ = prepare(iv, ["1", "abc", "1", *[str(i) for i in range(2, 102)], "\u00b9", "\u0661"])
    assert [p.row for p in problems] == [1, 103, 104]  # superscript and Arabic-Indic digits are not ids
    assert [len(c.rows) for c in chunks] == [50, 50, 1]
    assert chunks[0].rows[:2] == (0, 3)


def test_insideview_token_expiry_forms() -> None:
    """expirationTime may be ISO-8601 or epoch seconds/milliseconds."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    iv = InsideView()
    iso = iv.read_token(
        resp(200, {"accessTokenDetails": {"accessToken": "a", "expirationTime": "2026-01-01T01:00:00Z"}}), now
    )
    epoch = iv.read_token(
        resp(200, {"accessTokenDetails": {"accessToken": "a", "expirationTime": now.timestamp() + 60}}), now
    )
    millis = iv.read_token(
        resp(200, {"accessTokenDetails": {"accessToken": "a", "expirationTime": (now.timestamp() + 120) * 1000}}), now
    )
    assert (iso.expires_in, epoch.expires_in, millis.expires_in) == (3600, 60, 120)


def test_insideview_quota_is_account_level() -> None:
    """A 400 about the transaction quota stops the whole account; 'too many jobs' is retriable."""
    iv = InsideView()
    chunk = prepare(iv, ["1"])[0][0]
    quota = iv.read_submit(chunk, resp(400, {"message": "insufficient transaction quota"}))
    busy = iv.read_submit(chunk, resp(400, {"message": "too many jobs already queued (20)"}))
    assert quota.account and not busy.account and busy.retriable


def test_insideview_fetch_answers_per_id() -> None:
    """Bulk Contact Fetch: found contacts (unknown fields kept) and per-id errors, in request order."""
    iv = InsideView(endpoint="fetch")
    chunk = prepare(iv, ["16935075", "999", "16935075"])[0][0]
    body = [
        {"requestedContactId": "16935075", "contact": {"contactId": 16935075, "firstName": "Ann", "newField": [1]}},
        {"requestedContactId": "999", "error": {"errorCode": "404-602", "errorMessage": "contact not found."}},
    ]
    items = iv.read_submit(chunk, resp(200, body))
    assert isinstance(items, Items)
    assert [(row, key, ok, what) for row, key, ok, what, _, _ in items.results] == [
        (0, "16935075", True, "found"),
        (1, "999", False, "404-602"),
    ]
    assert items.results[0][5]["newField"] == [1] and items.results[1][4] == "contact not found."
    assert msgspec.json.decode(iv.build_submit(chunk).content) == {"contactIds": ["16935075", "999"]}


def test_insideview_job_request_shape() -> None:
    """A job is ids one per line as text/plain, asking for JSON, with the optional webhook and company flag."""
    iv = InsideView(webhook="https://h/hook", company=True)
    request = iv.build_submit(prepare(iv, ["1", "2", "3"])[0][0])
    assert (request.method, request.path, request.content) == ("POST", "/target/contact/job", b"1\n2\n3")
    assert request.headers == {"Content-Type": "text/plain", "Accept": "application/json"}
    assert request.params == {"retrieveCompanyDetails": "true", "webhook": "https://h/hook"}
    assert iv.auth_headers("tok") == {"accessToken": "tok"}


def test_insideview_refusals() -> None:
    """A bare 429 leaves the wait to the client; 415 and other 400s are chunk-level, not retried."""
    iv = InsideView()
    chunk = prepare(iv, ["1"])[0][0]
    assert iv.read_submit(chunk, resp(429)) == Throttle(None)
    wrong_type = iv.read_submit(chunk, resp(415, b"Unsupported Media Type"))
    assert isinstance(wrong_type, Refused) and wrong_type.status == 415 and not wrong_type.account
    assert not wrong_type.retriable and "Unsupported Media Type" in wrong_type.reason


def test_mautic_bulk_readings() -> None:
    """bulk/new answers 202 with the job id; a 429 waits X-RateLimit-Reset seconds; edits need integer ids."""
    m = Mautic()
    chunk = prepare(m, [{"Email": "a@b.c", "First Name": "Ann", "score": 3}])[0][0]
    assert chunk.contacts[0] == {"email": "a@b.c", "firstname": "Ann", "score": 3}
    assert m.read_submit(chunk, resp(202, {"id": "8c1f"})) == Accepted("8c1f", total=1)
    limited = resp(429, x_ratelimit_limit="100", x_ratelimit_remaining="0", x_ratelimit_reset="42")
    assert m.read_submit(chunk, limited) == Throttle(42.0)
    edit = Mautic(endpoint="put")
    contacts = [{"id": "356", "email": "a@b.c"}, {"id": "x", "email": "b@c.d"}, {"id": "\u00b9", "email": "c@d.e"}]
    chunks, problems, _ = prepare(edit, contacts)  # "¹".isdigit() is true, but it is no id: a problem, not a crash
    assert chunks[0].contacts[0]["id"] == 356 and [(p.row, p.field) for p in problems] == [(1, "id"), (2, "id")]
    assert edit.build_submit(chunks[0]).method == "PUT"


def test_malformed_accept_bodies_are_refusals_not_crashes() -> None:
    """A 2xx whose body cannot be read is a non-retriable refusal naming the problem, never an exception."""
    chunk_p = prepare(Pronto(webhook_url="http://h/x"), [{"firstname": "a", "lastname": "b", "domain": "d"}] * 2)[0][0]
    assert isinstance(Pronto(webhook_url="http://h/x").read_submit(chunk_p, resp(202, b"<html>")), Refused)
    chunk_d = prepare(Datananas(list="L"), [{"email": "a@b.c"}])[0][0]
    assert isinstance(Datananas(list="L").read_submit(chunk_d, resp(200, b"{}")), Refused)
    chunk_i = prepare(InsideView(), ["1"])[0][0]
    refused = InsideView().read_submit(chunk_i, resp(200, b"<nope"))
    assert isinstance(refused, Refused) and "not understood" in refused.reason


@pytest.mark.parametrize("kind", ["datananas", "mautic"])
def test_emails_are_trimmed_and_one_address_each(kind: str) -> None:
    """White space around an email is taken off; white space inside, or a list of addresses, is the row's problem
    (one such email got a whole Datananas chunk of up to 10,000 refused); the check is the same in bulk."""
    make = (lambda: Datananas(list="L1")) if kind == "datananas" else Mautic
    given = [" a@x.com ", "b@x.com;c@x.com", "d @x.com", "e@x.com, f@x.com", "<g@x.com>", "h@x.com\t", "   "]
    chunks, problems, _ = prepare(make(), [{"email": e} for e in given])
    assert [c["email"] for chunk in chunks for c in chunk.contacts] == ["a@x.com", "h@x.com"]
    assert [p.row for p in problems] == [1, 2, 3, 4, 6]
    assert (
        "not one email address: 'b@x.com;c@x.com' holds white space, an unprintable character "
        "or one of , ; < >" in problems[0].message
    )
    alike = [{"email": f"p{i}@x.com"} for i in range(50)]
    fine = ("p7@x.com ", "pé7@x.com")  # trimmed; not ASCII (the bulk check scans such text another way)
    for email in (*fine, "p7 @x.com", "p7@x.com;q@x.com", "p7\u00a0@x.com", "pé7\u2003@x.com", "pé7@x.com<"):
        rows = [*alike[:7], {"email": email}, *alike[8:]]
        chunks, problems, _ = prepare(make(), rows)
        sent = sum(len(chunk.rows) for chunk in chunks)
        assert (sent, [p.row for p in problems]) == ((50, []) if email in fine else (49, [7])), email


def test_insideview_ids_longer_than_an_integer_are_invalid() -> None:
    """An id of 20 digits or more cannot be an InsideView contactId (an integer): the row's problem, not a job
    that fails at the provider; 19 digits go."""
    chunks, problems, _ = prepare(InsideView(), ["9" * 19, "1" * 20, "12"])
    assert [c["id"] for chunk in chunks for c in chunk.contacts] == ["9" * 19, "12"]
    assert [(p.row, p.field) for p in problems] == [(1, "id")] and "has 20 digits; at most 19" in problems[0].message
