"""Pure: validating and parsing subscriber input (CLI, CSV import, config seeds, web form).

Every function either returns clean values or raises InputError with one line that says
what is wrong, e.g. `keywords: term 3 is longer than 80 characters`.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from digest.errors import InputError
from digest.models import (
    ACTIVE,
    NO_MATCH_CHOICES,
    NO_MATCH_SEND,
    STATUSES,
    UNSUBSCRIBED,
    Subscriber,
)

MAX_TERMS = 30
MAX_TERM_LEN = 80
MAX_KEYWORDS_LEN = 1000
MAX_PAPERS = 100
MAX_TRENDING = 20

# Control characters (incl. CR/LF, which would break mail headers) are refused outright
# rather than stripped: silently changing what someone typed is worse than saying no.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u0085]")


def normalise_email(raw: str) -> str:
    """Validate an address (syntax only: no DNS at input time) and return its normal form."""
    if not isinstance(raw, str) or not raw.strip():
        raise InputError("email: missing")
    if _CONTROL.search(raw):
        raise InputError("email: contains control characters (CR/LF are not allowed)")
    raw = raw.strip()
    if len(raw) > 254:
        raise InputError("email: longer than 254 characters")
    # Imported here: it pulls in dnspython (~35 ms), which a run that validates no
    # address (every `digest run` without seeds, each worker) never needs.
    from email_validator import EmailNotValidError, validate_email

    try:
        info = validate_email(raw, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as e:
        raise InputError(f"email: {raw!r} is not a valid address: {e}") from e
    local, _, domain = info.normalized.rpartition("@")
    return f"{local}@{domain.lower()}"


def parse_keywords(text: str | Iterable[str]) -> tuple[str, ...]:
    """Split a keyword string into terms.

    Commas separate terms; "quoted phrases" may contain commas; a leading `-` makes a
    term an exclusion (`-survey`, `-"autonomous driving"`). Whitespace is collapsed,
    duplicates (case-insensitive) are dropped, order is kept.
    """
    if not isinstance(text, str):
        text = ", ".join(text)
    if _CONTROL.search(text.replace("\n", ",").replace("\r", "")):
        raise InputError("keywords: contain control characters")
    text = text.replace("\r", "").replace("\n", ",")
    if len(text) > MAX_KEYWORDS_LEN:
        raise InputError(f"keywords: longer than {MAX_KEYWORDS_LEN} characters")
    text = unicodedata.normalize("NFKC", text)
    terms: list[str] = []
    for field in _split_terms(text):
        neg = field.startswith("-")
        body = field[1:].strip() if neg else field
        body = body.strip().strip('"').strip()
        body = " ".join(body.split())
        if not body or body == "-":
            continue
        if len(body) > MAX_TERM_LEN:
            raise InputError(f"keywords: {body[:20]!r}... is longer than {MAX_TERM_LEN} characters")
        if not any(ch.isalnum() for ch in body):
            raise InputError(f"keywords: {body!r} has no letters or digits")
        terms.append(("-" if neg else "") + body)
    seen: set[str] = set()
    out = []
    for t in terms:
        if t.lower() not in seen:
            seen.add(t.lower())
            out.append(t)
    if len(out) > MAX_TERMS:
        raise InputError(f"keywords: more than {MAX_TERMS} terms")
    return tuple(out)


def _split_terms(text: str) -> list[str]:
    parts, buf, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            buf.append(ch)
        elif ch in ",;" and not quoted:
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise InputError("keywords: unbalanced quote")
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


def check_max(value: object, default: int = 10) -> int:
    if value is None or value == "":
        return default
    try:
        n = int(str(value).strip())
    except ValueError:
        msg = f"max: expected a whole number from 1 to {MAX_PAPERS}, got {value!r}"
        raise InputError(msg) from None
    if not 1 <= n <= MAX_PAPERS:
        raise InputError(f"max: expected a whole number from 1 to {MAX_PAPERS}, got {n}")
    return n


def check_min_score(value: object) -> float | None:
    if value is None or value == "":
        return None
    try:
        x = float(str(value).strip())
    except ValueError:
        raise InputError(f"min score: expected a number, got {value!r}") from None
    if not 0 <= x < 1e9 or x != x:
        raise InputError(f"min score: expected a number >= 0, got {value!r}")
    return x


def check_trending(value: object) -> int | None:
    """Trending papers per digest (0 turns the section off), or None ("" too) for the
    site's [digest] trending."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        n = int(str(value).strip())
    except ValueError:
        raise InputError(
            f"trending: expected a whole number from 0 to {MAX_TRENDING}, got {value!r}"
        ) from None
    if not 0 <= n <= MAX_TRENDING:
        raise InputError(f"trending: expected a whole number from 0 to {MAX_TRENDING}, got {n}")
    return n


def check_no_match(value: object) -> str:
    """What a day without a match brings: "send" (the trending papers) or "skip" (no mail)."""
    v = str(value).strip().lower() if value is not None else ""
    if v not in NO_MATCH_CHOICES:
        raise InputError(
            f"no match: expected one of {', '.join(NO_MATCH_CHOICES)}, got {str(value)[:40]!r}"
        )
    return v


def make_subscriber(
    email: str,
    keywords: str | Iterable[str] = "",
    max_papers: object = None,
    min_score: object = None,
    status: str = ACTIVE,
    created: str = "",
    default_max: int = 10,
    trending: object = None,
    no_match: object = None,
) -> Subscriber:
    if status not in STATUSES:
        raise InputError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
    return Subscriber(
        email=normalise_email(email),
        keywords=parse_keywords(keywords),
        max_papers=check_max(max_papers, default_max),
        min_score=check_min_score(min_score),
        status=status,
        created=created,
        trending=check_trending(trending),
        no_match=check_no_match(no_match) if no_match is not None else NO_MATCH_SEND,
    )


def update_subscriber(
    sub: Subscriber,
    keywords: str | None = None,
    max_papers: object = None,
    min_score: object = None,
    status: str | None = None,
    send_hour: str | None = None,
    timezone: str | None = None,
    trending: str | None = None,
    no_match: str | None = None,
    *,
    resubscribe: bool = False,
) -> Subscriber:
    """The subscriber with the given fields changed (None: unchanged). For send_hour,
    timezone and trending an empty string goes back to the site's default.

    An unsubscribed address stays unsubscribed unless `resubscribe` (the operator's
    explicit "they asked me"), which makes it active; a status alone never does."""
    changes: dict[str, object] = {}
    if trending is not None:
        changes["trending"] = check_trending(trending)
    if no_match is not None:
        changes["no_match"] = check_no_match(no_match)
    if resubscribe:
        if sub.status != UNSUBSCRIBED:
            raise InputError(f"{sub.email} is {sub.status}, not unsubscribed: use --status")
        if status not in (None, ACTIVE):
            raise InputError("--resubscribe makes the address active: leave out --status")
        status = ACTIVE
    elif sub.status == UNSUBSCRIBED and status not in (None, UNSUBSCRIBED):
        raise InputError(
            f"{sub.email} unsubscribed: only its owner brings it back (the web page's double "
            "opt-in), or, if they asked you, --resubscribe"
        )
    if send_hour is not None:
        changes["send_hour"] = check_hour(send_hour)
    if timezone is not None:
        changes["timezone"] = check_timezone(timezone)
    if keywords is not None:
        changes["keywords"] = parse_keywords(keywords)
    if max_papers is not None:
        changes["max_papers"] = check_max(max_papers)
    if min_score is not None:
        changes["min_score"] = check_min_score(min_score)
    if status is not None:
        if status not in STATUSES:
            raise InputError(f"status: expected one of {', '.join(STATUSES)}, got {status!r}")
        changes["status"] = status
    return replace(sub, **changes)  # type: ignore[arg-type]


def check_hour(value: str) -> int | None:
    """The subscriber's own send hour (0-23), or None for the site's [schedule] time."""
    value = value.strip()
    if not value:
        return None
    if not value.isdigit() or not 0 <= int(value) <= 23:
        raise InputError(f"send hour: expected a whole hour from 0 to 23, got {value!r}")
    return int(value)


_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*")


def check_timezone(value: str) -> str | None:
    """An IANA time zone name, or None for the site's [schedule] timezone. Only names
    ZoneInfo knows are kept (never a path: ZoneInfo reads files named by its argument)."""
    value = value.strip()
    if not value:
        return None
    if len(value) > 64 or not _ZONE_NAME.fullmatch(value):
        raise InputError(f"time zone: {value[:64]!r} is not a time zone name like Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InputError(
            f"time zone: {value!r} is not a known time zone (like "
            f"Europe/Berlin or America/New_York)"
        ) from None
    return value


CSV_DELIMITERS = ",;\t|"


def sniff_delimiter(text: str) -> str:
    """The CSV file's delimiter, from its header line (csv.Sniffer, restricted to
    CSV_DELIMITERS): a spreadsheet in a locale with a decimal comma writes ";".
    Only the delimiter is taken; quoting stays Excel's. Comma when it cannot tell."""
    header = text.lstrip("\ufeff").split("\n", 1)[0]
    try:
        return csv.Sniffer().sniff(header, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:  # one column, or nothing to go by
        return ","


def parse_csv(
    text: str, created: str = "", default_max: int = 10
) -> tuple[list[Subscriber], list[tuple[int, str]]]:
    """Parse an import file with columns email, keywords, max (header required;
    min_score optional; comma, semicolon, tab or | separated: sniffed).

    Returns the good rows and (line number, one-line error) for each bad row. A second
    row for an address already given is a bad row too (the first one is kept): which of
    two different rows was meant is for the file's owner to say.
    """
    reader = csv.reader(io.StringIO(text), delimiter=sniff_delimiter(text))
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("CSV: empty file") from None
    except csv.Error as e:
        raise InputError(f"CSV line 1: {e}") from e
    cols = [h.strip().lower().lstrip("\ufeff") for h in header]
    if "email" not in cols:
        raise InputError("CSV line 1: header must name the columns email, keywords, max")
    idx: dict[str, int] = {
        name: cols.index(name)
        for name in ("email", "keywords", "max", "min_score", "papers")
        if name in cols
    }
    good: dict[str, tuple[int, Subscriber]] = {}
    errors: list[tuple[int, str]] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            errors.append((reader.line_num, str(e)))
            continue
        line = reader.line_num
        if not any(c.strip() for c in row):
            continue

        def col(name: str, row: list[str] = row) -> str:
            i = idx.get(name)
            return row[i] if i is not None and i < len(row) else ""

        try:
            sub = make_subscriber(
                col("email"),
                col("keywords"),
                col("max") or None,
                col("min_score") or None,
                created=created,
                default_max=default_max,
            )
            if "papers" in idx:  # interests by example: ids now, titles when resolved
                from digest.examples import parse_papers

                ids = parse_papers(col("papers"))
                sub = replace(sub, examples=tuple((i, "") for i in ids))
        except InputError as e:
            errors.append((line, str(e)))
            continue
        key = sub.email.lower()
        if key in good:
            errors.append((line, f"{sub.email} is already on line {good[key][0]} (kept)"))
            continue
        good[key] = (line, sub)
    return [sub for _, sub in good.values()], errors


@dataclass(frozen=True)
class ImportPlan:
    """What an import writes (`put`, one store write) and what it leaves alone."""

    put: list[Subscriber]
    added: int
    updated: int
    unsubscribed: list[str]  # known as unsubscribed: skipped, never re-activated


def plan_import(
    rows: Iterable[Subscriber],
    known: Callable[[str], Subscriber | None],
    examples: bool = False,
) -> ImportPlan:
    """New addresses are added as given; a known one gets the row's keywords, max and
    min_score and keeps everything else (its status: a paused subscriber stays paused);
    an unsubscribed one is skipped. `known(email)` looks an address up in the store.
    `examples`: the file has a papers column, so known ones get the row's examples too."""
    put: list[Subscriber] = []
    added = updated = 0
    skipped: list[str] = []
    for row in rows:
        old = known(row.email)
        if old is None:
            put.append(row)
            added += 1
        elif old.status == UNSUBSCRIBED:
            skipped.append(old.email)
        else:
            put.append(
                replace(
                    old,
                    keywords=row.keywords,
                    max_papers=row.max_papers,
                    min_score=row.min_score,
                    examples=row.examples if examples else old.examples,
                )
            )
            updated += 1
    return ImportPlan(put, added, updated, skipped)
