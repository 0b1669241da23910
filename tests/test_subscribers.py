"""Subscriber input: addresses, keywords, CSV import (pure)."""

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from digest.errors import InputError
from digest.models import ACTIVE, PAUSED, UNSUBSCRIBED, Subscriber
from digest.subscribers import (
    make_subscriber,
    normalise_email,
    parse_csv,
    parse_keywords,
    plan_import,
    sniff_delimiter,
    update_subscriber,
)


def test_keywords_phrases_and_exclusions():
    assert parse_keywords("continual pretraining, low-resource, -survey") == (
        "continual pretraining",
        "low-resource",
        "-survey",
    )
    assert parse_keywords('"large language model, LLM", -"autonomous driving"') == (
        "large language model, LLM",
        "-autonomous driving",
    )
    assert parse_keywords("  RAG ;  rag , ") == ("RAG",)  # duplicates dropped, case-insensitive
    assert parse_keywords("") == ()
    sub = Subscriber("a@example.org", parse_keywords('llm, -survey, -"x y"'))
    assert sub.query.includes == ("llm",)
    assert sub.query.excludes == ("survey", "x y")


@pytest.mark.parametrize(
    "bad",
    [
        '"unbalanced',
        "x" * 81,
        "a\x00b",
        ", ".join(["t"] * 1) + "," + ",".join(f"t{i}" for i in range(40)),
        "!!!",
    ],
)
def test_bad_keywords_are_refused_with_one_line(bad):
    with pytest.raises(InputError) as e:
        parse_keywords(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "addr",
    [
        "a@b",
        "nope",
        "x@example.org\r\nBcc: v@example.org",
        "x@example.org\nBcc: v@example.org",
        "",
        " ",
    ],
)
def test_bad_addresses_and_header_injection_are_refused(addr):
    with pytest.raises(InputError):
        normalise_email(addr)


def test_address_normal_form():
    assert normalise_email("  Ada@Example.ORG ") == "Ada@example.org"


@given(st.text(max_size=200))
def test_parse_keywords_never_crashes_and_never_lets_control_chars_through(text):
    try:
        terms = parse_keywords(text)
    except InputError:
        return
    for t in terms:
        assert not any(ord(c) < 32 for c in t)
        assert t.strip() and t.lstrip("-").strip()


def test_update_keeps_what_is_not_given():
    sub = make_subscriber("a@example.org", "llm", 5)
    new = update_subscriber(sub, max_papers="7")
    assert new.keywords == ("llm",) and new.max_papers == 7
    with pytest.raises(InputError):
        update_subscriber(sub, status="gone")


def test_csv_reports_bad_rows_by_line_and_keeps_good_ones():
    text = (
        "email,keywords,max\n"
        'a@example.org,"llm, rag",5\n'
        "bad-address,x,3\n"
        "c@example.org,,500\n"
        "\n"
        "d@example.org,speech,\n"
    )
    subs, errors = parse_csv(text)
    assert [s.email for s in subs] == ["a@example.org", "d@example.org"]
    assert subs[0].keywords == ("llm", "rag") and subs[1].max_papers == 10
    assert [line for line, _ in errors] == [3, 4]


def test_csv_without_email_column_is_refused():
    with pytest.raises(InputError, match="line 1"):
        parse_csv("name,keywords\nx,y\n")


def test_csv_ten_thousand_rows_parse():
    rows = "\n".join(
        f'user{i}@example.org,"topic {i % 50}, -survey",{1 + i % 20}' for i in range(10_000)
    )
    t0 = time.perf_counter()
    subs, errors = parse_csv("email,keywords,max\n" + rows + "\n")
    elapsed = time.perf_counter() - t0
    assert len(subs) == 10_000 and errors == []
    print(f"parsed 10,000 rows in {elapsed:.2f}s")  # information, not an assertion


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("email,keywords,max", ","),
        ("email;keywords;max", ";"),
        ("email\tkeywords\tmax", "\t"),
        ("\ufeffemail|keywords", "|"),
        ("email", ","),  # one column: nothing to tell, comma
    ],
)
def test_csv_delimiter_is_sniffed_from_the_header(header: str, delimiter: str) -> None:
    assert sniff_delimiter(header + "\nx@example.org\n") == delimiter


def test_csv_semicolon_file_keeps_quoted_commas_and_semicolons() -> None:
    text = (
        "email;keywords;max\n"
        'a@example.org;"llm, rag; agents";5\n'  # a quoted field with both separators
        "b@example.org;speech;\n"
    )
    subs, errors = parse_csv(text)
    assert errors == []
    assert [s.keywords for s in subs] == [("llm", "rag", "agents"), ("speech",)]
    assert [s.max_papers for s in subs] == [5, 10]


def test_csv_duplicates_are_reported_and_the_first_kept() -> None:
    subs, errors = parse_csv("email,max\na@example.org,3\nb@example.org,4\nA@example.org,9\n")
    assert [(s.email, s.max_papers) for s in subs] == [("a@example.org", 3), ("b@example.org", 4)]
    assert errors == [(4, "A@example.org is already on line 2 (kept)")]


def test_plan_import_adds_updates_and_never_reactivates() -> None:
    known = {
        "paused@example.org": Subscriber("paused@example.org", ("old",), 3, status=PAUSED),
        "gone@example.org": Subscriber("gone@example.org", ("old",), 3, status=UNSUBSCRIBED),
    }
    rows = [
        make_subscriber("new@example.org", "x"),
        make_subscriber("paused@example.org", "fresh", 7),
        make_subscriber("gone@example.org", "fresh", 7),
    ]
    plan = plan_import(rows, known.get)
    assert (plan.added, plan.updated, plan.unsubscribed) == (1, 1, ["gone@example.org"])
    by = {s.email: s for s in plan.put}
    assert set(by) == {"new@example.org", "paused@example.org"}
    assert by["paused@example.org"].status == PAUSED  # the row's keywords, her own status
    assert by["paused@example.org"].keywords == ("fresh",)
    assert by["paused@example.org"].max_papers == 7


def test_update_brings_an_unsubscribed_address_back_only_with_resubscribe() -> None:
    gone = Subscriber("gone@example.org", ("x",), status=UNSUBSCRIBED)
    for status in (ACTIVE, PAUSED):
        with pytest.raises(InputError, match="--resubscribe"):
            update_subscriber(gone, status=status)
    assert update_subscriber(gone, keywords="y").status == UNSUBSCRIBED  # edits are fine
    assert update_subscriber(gone, resubscribe=True).status == ACTIVE
    with pytest.raises(InputError, match="leave out --status"):
        update_subscriber(gone, status=PAUSED, resubscribe=True)
    with pytest.raises(InputError, match="not unsubscribed"):
        update_subscriber(Subscriber("a@example.org"), resubscribe=True)
