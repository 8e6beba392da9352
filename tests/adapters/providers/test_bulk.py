"""Contacts prepared in bulk (a table of columns) give exactly what contact-by-contact preparation gives."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.contacts import read_contacts
from adapters.providers.base import Chunk, Provider, Table
from adapters.providers.datananas import Datananas
from adapters.providers.mautic import Mautic
from adapters.providers.pronto import KEY_FIELD, Pronto
from adapters.submit import prepare
from eventbus.exceptions import ContactError


class OneByOneDatananas(Datananas):
    """Datananas without the bulk path: every contact mapped and validated on its own."""

    def valid_in_bulk(self, table: Table) -> bool:
        return False


class OneByOneMautic(Mautic):
    """Mautic without the bulk path."""

    def valid_in_bulk(self, table: Table) -> bool:
        return False


def providers(kind: str, **options: Any) -> tuple[Provider, Provider]:
    """The provider with its bulk path, and the same provider without it."""
    if kind == "datananas":
        return Datananas(list="L1", **options), OneByOneDatananas(list="L1", **options)
    return Mautic(**options), OneByOneMautic(**options)


def people(n: int) -> list[dict[str, Any]]:
    return [{"email": f"p{i}@example.com", "first_name": f"First{i}", "Last Name": f"Last{i}"} for i in range(n)]


def bodies(provider: Provider, chunks: list[Chunk]) -> list[bytes | None]:
    return [provider.build_submit(c).content for c in chunks]


# --- the bulk path is taken, and gives the same bytes ----------------------------------------------


@pytest.mark.parametrize("kind", ["datananas", "mautic"])
def test_clean_alike_contacts_are_prepared_in_bulk_into_the_same_bodies(kind: str) -> None:
    """Plain dicts with one set of fields become tables, and each request body is byte for byte the same."""
    bulk, one_by_one = providers(kind)
    contacts = people(25_000)
    chunks, problems, count = prepare(bulk, contacts)
    expected, _, _ = prepare(one_by_one, contacts)
    assert count == 25_000 and problems == [] and [len(c.rows) for c in chunks] == [10_000, 10_000, 5_000]
    assert all(c.table is not None for c in chunks) and all(c.table is None for c in expected)
    assert chunks == expected
    assert bodies(bulk, chunks) == bodies(one_by_one, expected)


def test_a_table_chunk_gives_dicts_in_the_providers_names_on_demand() -> None:
    """A table-backed chunk's contacts are the renamed dicts, row numbers run on from chunk to chunk."""
    chunks, _, _ = prepare(Datananas(list="L1"), people(3) * 2)
    assert [c.rows for c in chunks] == [(0, 1, 2, 3, 4, 5)]
    assert chunks[0].contacts[1] == {"email": "p1@example.com", "firstname": "First1", "lastname": "Last1"}
    assert "table of 6" in repr(chunks[0])


@pytest.mark.parametrize("kind", ["datananas", "mautic"])
def test_empty_values_are_left_out_in_bulk_as_contact_by_contact(kind: str) -> None:
    """None and "" (a CSV's empty cells) stay in bulk: the field is left out of that contact, as one by one."""
    bulk, one_by_one = providers(kind)
    contacts = [*people(3), {"email": "x@y.z", "first_name": "", "Last Name": None}]
    chunks, problems, count = prepare(bulk, contacts)
    expected = prepare(one_by_one, contacts)
    assert chunks[0].table is not None and chunks[0].table.sparse
    assert (chunks, problems, count) == expected and chunks[0].contacts[3] == {"email": "x@y.z"}
    assert bodies(bulk, chunks) == bodies(one_by_one, expected[0])


def test_a_csv_with_empty_cells_is_prepared_in_bulk(tmp_path: Path) -> None:
    """Rows read from a CSV share the header's keys, so empty cells do not send the file contact by contact."""
    path = tmp_path / "people.csv"
    path.write_text("Email,First Name,Company\na@b.c,Ann,\nb@c.d,,Acme\nc@d.e,Cy\n")
    chunks, problems, _ = prepare(Mautic(), read_contacts(path))
    expected, _, _ = prepare(OneByOneMautic(), read_contacts(path))
    assert chunks[0].table is not None and problems == [] and chunks == expected
    assert chunks[0].contacts == (
        {"email": "a@b.c", "firstname": "Ann"},
        {"email": "b@c.d", "company": "Acme"},
        {"email": "c@d.e", "firstname": "Cy"},
    )


def test_unhashable_values_next_to_empty_ones_stay_in_bulk() -> None:
    """A column of lists with an empty cell is compared value by value, and the empty one is left out."""
    contacts = [{"email": "a@b.c", "tags": ["x"]}, {"email": "b@c.d", "tags": ""}]
    chunks, _, _ = prepare(Mautic(), contacts)
    assert chunks[0].table is not None
    assert msgspec.json.decode(Mautic().build_submit(chunks[0]).content) == [
        {"email": "a@b.c", "tags": ["x"]},
        {"email": "b@c.d"},
    ]


def test_contacts_from_a_generator_are_prepared_in_bulk_too() -> None:
    """An iterator of contacts (as read from a file) is read once and still takes the bulk path."""
    chunks, problems, count = prepare(Mautic(), iter(people(10)))
    assert count == 10 and problems == [] and chunks[0].table is not None and len(chunks[0].contacts) == 10


def test_mautic_custom_fields_are_sent_as_they_are_in_bulk() -> None:
    """Mautic sends unknown fields under their own names, so they stay in the table."""
    contacts = [{"Email": f"a{i}@b.c", "score": i} for i in range(3)]
    chunks, _, _ = prepare(Mautic(), contacts)
    assert chunks[0].table is not None and chunks[0].table.names == ("email", "score")
    assert msgspec.json.decode(Mautic().build_submit(chunks[0]).content) == [
        {"email": "a0@b.c", "score": 0},
        {"email": "a1@b.c", "score": 1},
        {"email": "a2@b.c", "score": 2},
    ]


def test_mautic_edits_take_the_bulk_path_only_with_integer_ids() -> None:
    """put/patch need integer ids: ints go in bulk; digit strings are converted contact by contact."""
    ints, _, _ = prepare(Mautic(endpoint="put"), [{"id": i, "email": f"a{i}@b.c"} for i in range(3)])
    strings, _, _ = prepare(Mautic(endpoint="put"), [{"id": str(i), "email": f"a{i}@b.c"} for i in range(3)])
    assert ints[0].table is not None and strings[0].table is None
    assert ints == strings


# --- anything not clean and alike goes contact by contact --------------------------------------------

UNALIKE = {
    "an empty email": [*people(3), {"email": "", "first_name": "F", "Last Name": "L"}],
    "a None email": [*people(3), {"email": None, "first_name": "F", "Last Name": "L"}],
    "a missing field": [*people(3), {"email": "x@y.z", "first_name": "F"}],
    "an extra field": [*people(3), {"email": "x@y.z", "first_name": "F", "Last Name": "L", "city": "Lyon"}],
    "other fields, same count": [*people(3), {"email": "x@y.z", "first_name": "F", "city": "Lyon"}],
    "two inputs for one field": [{"email": "a@b.c", "first": "A", "firstname": "B"}] * 3,
    "a row that is not a dict": [*people(3), ["email", "x@y.z"]],
    "a mapping that is not a plain dict": [*people(3), OrderedDict(people(1)[0])],
    "an invalid email": [*people(3), {"email": "nobody", "first_name": "F", "Last Name": "L"}],
    "an email that is not a string": [*people(3), {"email": 7, "first_name": "F", "Last Name": "L"}],
    "a non-string key": [{"email": "a@b.c", 1: "one"}] * 2,
}


@pytest.mark.parametrize("kind", ["datananas", "mautic"])
@pytest.mark.parametrize("case", list(UNALIKE))
def test_contacts_that_are_not_clean_and_alike_go_one_by_one_with_the_same_result(kind: str, case: str) -> None:
    """Each reason to leave the bulk path leaves it, and the result is the one-by-one result."""
    bulk, one_by_one = providers(kind)
    contacts = UNALIKE[case]
    chunks, problems, count = prepare(bulk, contacts)
    expected = prepare(one_by_one, contacts)
    assert all(c.table is None for c in chunks)
    assert (chunks, problems, count) == expected
    assert bodies(bulk, chunks) == bodies(one_by_one, expected[0])


@pytest.mark.parametrize("kind", ["datananas", "mautic"])
def test_two_columns_for_one_field_with_different_values_hold_that_contact_back(kind: str) -> None:
    """`First Name` and `first_name` both mean the first name: different values are a problem, not a guess."""
    bulk, _ = providers(kind)
    contacts = [
        {"email": "a@b.c", "First Name": "Ann", "first_name": "Anne"},
        {"email": "b@b.c", "First Name": "Bob", "first_name": ""},
        {"email": "c@b.c", "First Name": None, "first_name": "Cy"},
        {"email": "d@b.c", "First Name": "Di", "first_name": "Di"},
    ]
    chunks, problems, count = prepare(bulk, contacts)
    target = "firstname"
    assert count == 4 and [(p.row, p.field) for p in problems] == [(0, target)]
    assert "'First Name' and 'first_name' both give it, with different values ('Ann', 'Anne')" in problems[0].message
    assert chunks[0].rows == (1, 2, 3)
    assert [c[target] for c in chunks[0].payload()] == ["Bob", "Cy", "Di"]  # the value that was given, sent once
    with pytest.raises(ContactError, match="row 0: field 'firstname'"):
        prepare(bulk, contacts, strict=True)


def test_a_clash_in_a_later_contact_with_other_fields_is_found() -> None:
    """Contacts without such a pair come first (nothing to look for yet); the later one is still caught."""
    provider = Datananas(list="L1")
    contacts = [{"email": "x@b.c", "first_name": "X"}, {"email": "a@b.c", "First Name": "Ann", "first": "Anne"}]
    chunks, problems, _ = prepare(provider, contacts)
    assert [(p.row, p.field) for p in problems] == [(1, "firstname")] and chunks[0].rows == (0,)
    chunks, problems, _ = prepare(provider, contacts)  # the plans are cached by now: the same answer
    assert [(p.row, p.field) for p in problems] == [(1, "firstname")] and chunks[0].rows == (0,)


def test_a_value_of_another_type_in_the_second_column_is_a_different_value() -> None:
    """1 and "1" are not the same value: the contact is held back, and the message shows both."""
    _, problems, _ = prepare(Datananas(list="L1"), [{"email": "a@b.c", "zip": 1, "zipcode": "1"}])
    assert [(p.row, p.field) for p in problems] == [(0, "zipcode")] and "(1, '1')" in problems[0].message


def test_datananas_custom_fields_go_one_by_one_into_vars() -> None:
    """Datananas moves unknown fields into vars, which a table cannot hold: no bulk path."""
    chunks, _, _ = prepare(Datananas(list="L1"), [{"email": f"a{i}@b.c", "shoe_size": 40 + i} for i in range(2)])
    assert chunks[0].table is None and chunks[0].contacts[1] == {"email": "a1@b.c", "vars": {"shoe_size": 41}}


def test_datananas_without_email_needs_a_linkedin_url_in_every_row() -> None:
    """Rows without an email go in bulk when each has a LinkedIn URL that is not falsy; else one by one."""
    good = [{"linkedin": f"https://linkedin.com/in/p{i}"} for i in range(3)]
    falsy = [*good, {"linkedin": 0}]
    assert prepare(Datananas(list="L1"), good)[0][0].table is not None
    chunks, problems, _ = prepare(Datananas(list="L1"), falsy)
    assert chunks[0].table is None and [(p.row, p.field) for p in problems] == [(3, "email")]


def test_a_chunk_cannot_hold_a_table_of_another_length() -> None:
    """A table must have one row per input row of its chunk."""
    with pytest.raises(ValueError, match="2 rows cannot hold a table of 1"):
        Chunk(0, (0, 1), table=Table(("email",), (["a@b.c"],)))


# --- property: the two ways agree on any input ----------------------------------------------------------

KEYS = ["email", "Email", "first_name", "firstname", "Last Name", "company", "id", "linkedin", "shoe_size", "vars"]
VALUES = st.one_of(
    st.sampled_from(["", "a@b.c", "x@y", "nobody", "0", "12", " "]),
    st.none(),
    st.integers(-3, 3),
    st.booleans(),
    st.text(max_size=6),
    st.lists(st.integers(0, 2), max_size=2),
    st.dictionaries(st.sampled_from(["k", "email"]), st.integers(0, 2), max_size=2),
)


@st.composite
def contact_lists(draw: st.DrawFn) -> list[Any]:
    """Mostly lists of alike dicts (so the bulk path is tried), sometimes with odd rows mixed in."""
    keys = draw(st.lists(st.sampled_from(KEYS), min_size=1, max_size=4, unique=True))
    rows = draw(st.lists(st.fixed_dictionaries({k: VALUES for k in keys}), min_size=1, max_size=8))
    if draw(st.booleans()):
        rows = [{k: (f"{k}{i}@b.c" if "mail" in k else f"v{i}") for k in keys} for i in range(len(rows))]
    odd = draw(st.lists(st.one_of(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3), st.text(max_size=3))))
    return rows + odd if draw(st.integers(0, 3)) == 0 else rows


@settings(max_examples=400, deadline=None)
@given(
    contacts=contact_lists(),
    kind=st.sampled_from(["datananas", "mautic"]),
    endpoint=st.sampled_from(["new", "put", "batch"]),
)
def test_bulk_and_one_by_one_preparation_agree_on_any_input(contacts: list[Any], kind: str, endpoint: str) -> None:
    """Chunks, problems, counts and the JSON sent are the same whichever way the contacts were prepared."""
    bulk, one_by_one = providers(kind, **({"endpoint": endpoint} if kind == "mautic" else {}))
    got = prepare(bulk, contacts)
    expected = prepare(one_by_one, contacts)
    assert got == expected
    assert [msgspec.json.decode(b or b"null") for b in bodies(bulk, got[0])] == [
        msgspec.json.decode(b or b"null") for b in bodies(one_by_one, expected[0])
    ]


@settings(max_examples=300, deadline=None)
@given(
    contacts=contact_lists(),
    kind=st.sampled_from(["datananas", "mautic", "pronto"]),
    data=st.data(),
)
def test_given_row_numbers_only_renumber(contacts: list[Any], kind: str, data: st.DataObject) -> None:
    """prepare(rows=...) gives what prepare gives without them, every row number replaced by the one given.

    Both paths (bulk and one by one) and Pronto, which sends each contact's row along as its eventbus_key.
    """
    numbers = data.draw(st.lists(st.integers(0, 10**6), min_size=len(contacts), max_size=len(contacts), unique=True))
    provider = Pronto(webhook_url="http://127.0.0.1:9/h") if kind == "pronto" else providers(kind)[0]
    plain_chunks, plain_problems, count = prepare(provider, contacts)
    chunks, problems, numbered_count = prepare(provider, contacts, rows=numbers)
    assert numbered_count == count
    assert [p._replace(row=numbers[p.row]) for p in plain_problems] == problems
    assert [tuple(numbers[r] for r in c.rows) for c in plain_chunks] == [c.rows for c in chunks]
    if kind == "pronto":
        for chunk in chunks:
            assert [c[KEY_FIELD] for c in chunk.contacts] == [str(r) for r in chunk.rows]
    else:  # the same bodies: the row numbers are not sent
        assert bodies(provider, chunks) == bodies(provider, plain_chunks)
