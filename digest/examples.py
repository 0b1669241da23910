"""Interests by example: paper references, library exports, and looking the papers up.

Pure parsers (no I/O):
    parse_papers("2401.00001, https://arxiv.org/abs/2401.00002v2, ...") -> ids  (InputError)
    read_library(data, filename) -> Library          BibTeX / RIS / Zotero CSV export
I/O edge:
    resolve(ids, store, cfg) -> {id: Paper}          the store first, else arXiv's export API

A reference is an arXiv id ("2401.00001", "2401.00001v2", "arXiv:2401.00001",
"hep-th/9901001") or a URL of an arXiv abstract or PDF, a Hugging Face paper page or an
arXiv DOI (10.48550/arXiv.2401.00001). In a library export the arXiv id is looked for
in the fields that carry it: BibTeX `eprint` (with `archiveprefix` arXiv), `url`, `doi`,
`note`, `journal`, `number`; RIS `UR`, `DO`, `N1`, `M1`, `JO`/`JF`/`T2`, `IS`, `AN`, `L1`;
Zotero CSV `Url`, `DOI`, `Extra` ("arXiv: 2401.00001"), `Archive Location`, `Number`,
`Publication Title`, `Notes`. Entries without
one are reported by title, never silently dropped.

arXiv's export API (`id_list`, up to ID_BATCH ids a request) is asked only for ids the
store does not know, at most one request every 3 seconds (digest/sources/arxiv.py's
RateLimiter: arXiv's terms of use). The papers found there are kept in the store's paper
table under their own publication day (so they are never "new" papers of a later day),
which gives the model their abstracts.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from digest.errors import FetchError, InputError
from digest.models import MAX_EXAMPLES, Paper
from digest.sources.clean import normalise_arxiv_id

if TYPE_CHECKING:
    from digest.config import Config
    from digest.store import Store

ID_BATCH = 100  # ids per export-API request
ARXIV_INTERVAL = 3.0  # seconds between requests to arXiv (its terms of use)
MAX_LIBRARY_BYTES = 5 * 2**20

_NEW = r"\d{4}\.\d{4,5}(?:v\d+)?"
_OLD = r"[a-z][a-z.-]*(?:\.[A-Z]{2})?/\d{7}(?:v\d+)?"
# An arXiv id inside free text: after "arXiv:" / "arXiv " / an arXiv or HF URL / the DOI.
_IN_TEXT = re.compile(
    rf"(?:arxiv(?:\.org)?(?:/abs|/pdf)?[:/ ]\s*|huggingface\.co/papers/|10\.48550/arxiv\.)"
    rf"({_NEW}|{_OLD})",
    re.IGNORECASE,
)
_BARE_NEW = re.compile(rf"\b({_NEW})\b")
_URL = re.compile(
    rf"^(?:https?://)?(?:www\.|export\.)?(?:arxiv\.org/(?:abs|pdf|html)/|huggingface\.co/papers/"
    rf"|alphaxiv\.org/(?:abs|overview)/|doi\.org/10\.48550/arxiv\.)({_NEW}|{_OLD})(?:\.pdf)?/?"
    r"(?:[?#].*)?$",
    re.IGNORECASE,
)


def paper_ref(text: str) -> str | None:
    """The bare arXiv id (no version) of one reference, or None."""
    t = text.strip().strip("<>\"'")
    m = _URL.match(t)
    if m:
        return normalise_arxiv_id(m.group(1))
    return normalise_arxiv_id(t)


def parse_papers(value: str) -> tuple[str, ...]:
    """The ids of a comma/space separated list of references, in order, duplicates
    dropped. InputError naming the first reference that is not one."""
    out: dict[str, None] = {}
    for part in re.split(r"[\s,;]+", value or ""):
        if not part:
            continue
        pid = paper_ref(part)
        if pid is None:
            shown = part if len(part) <= 80 else part[:77] + "..."
            raise InputError(
                f"papers: {shown!r} is not an arXiv id (2401.00001) or an arXiv / Hugging Face "
                "paper URL"
            )
        out[pid] = None
    if len(out) > MAX_EXAMPLES:
        raise InputError(f"papers: {len(out)} given, at most {MAX_EXAMPLES}")
    return tuple(out)


def ids_in_text(text: str) -> list[str]:
    """arXiv ids mentioned in a free-text field (a URL, a note, "arXiv:2401.00001")."""
    found = [m.group(1) for m in _IN_TEXT.finditer(text or "")]
    out = [pid for f in found if (pid := normalise_arxiv_id(f)) is not None]
    return list(dict.fromkeys(out))


# ---------------------------------------------------------------------- library files


@dataclass(frozen=True, slots=True)
class Library:
    """What a library export gave: the arXiv ids found (file order, no duplicates) and
    the entries without one (their titles, or "entry N")."""

    ids: tuple[str, ...]
    unmatched: tuple[str, ...]
    entries: int


def _entry_id(
    fields: Mapping[str, str], eprint_keys: Sequence[str], text_keys: Sequence[str]
) -> str | None:
    for k in eprint_keys:
        v = (fields.get(k) or "").strip()
        if v:
            pid = paper_ref(v)
            if pid is not None:
                return pid
    for k in text_keys:
        found = ids_in_text(fields.get(k) or "")
        if found:
            return found[0]
    return None


def _collect(entries: Iterable[tuple[str, str | None]]) -> Library:
    ids: dict[str, None] = {}
    unmatched: list[str] = []
    n = 0
    for title, pid in entries:
        n += 1
        if pid is None:
            unmatched.append(" ".join(title.split())[:120] or f"entry {n}")
        else:
            ids[pid] = None
    return Library(tuple(ids), tuple(unmatched), n)


def read_bibtex(text: str) -> Library:
    from bibtexparser.entrypoint import parse_string

    lib = parse_string(text)
    if not lib.entries and lib.failed_blocks:
        raise InputError("library: not a BibTeX file (no entry could be read)")

    def one(e: object) -> tuple[str, str | None]:
        fields = {f.key.lower(): str(f.value) for f in e.fields}  # type: ignore[attr-defined]
        eprint = (
            ("eprint",)
            if fields.get("archiveprefix", "arxiv").lower() == "arxiv"
            or fields.get("eprinttype", "").lower() == "arxiv"
            else ()
        )
        pid = _entry_id(fields, eprint, ("url", "doi", "note", "journal", "number", "howpublished"))
        return fields.get("title", "").strip("{} "), pid

    return _collect(one(e) for e in lib.entries)


def read_ris(text: str) -> Library:
    import rispy

    try:
        entries = rispy.loads(text)
    except Exception as e:  # noqa: BLE001 - rispy raises bare exceptions on bad input
        raise InputError(f"library: not a RIS file ({type(e).__name__}: {e})") from None
    if not entries:
        raise InputError("library: not a RIS file (no TY ... ER record)")

    def one(e: Mapping[str, object]) -> tuple[str, str | None]:
        def s(k: str) -> str:
            v = e.get(k)
            if isinstance(v, list):
                return " ".join(str(x) for x in v)
            return "" if v is None else str(v)

        fields = {
            k: s(k)
            for k in (
                "urls",
                "doi",
                "notes",
                "note",
                "journal_name",
                "secondary_title",
                "alternate_title3",
                "number",
                "accession_number",
                "file_attachments1",
                "file_attachments2",
            )
        }
        title = s("title") or s("primary_title")
        return title, _entry_id(fields, (), tuple(fields))

    return _collect(one(e) for e in entries)


def read_zotero_csv(text: str) -> Library:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or "Title" not in (rows[0].keys() if rows else ()):
        raise InputError("library: not a Zotero CSV export (no Title column)")
    keys = (
        "Url",
        "DOI",
        "Extra",
        "Archive Location",
        "Number",
        "Report Number",
        "Publication Title",
        "Notes",
    )

    def one(r: Mapping[str, str | None]) -> tuple[str, str | None]:
        fields = {k: r.get(k) or "" for k in keys}
        return r.get("Title") or "", _entry_id(fields, (), keys)

    return _collect(one(r) for r in rows)


def read_library(data: bytes, filename: str = "") -> Library:
    """A BibTeX, RIS or Zotero CSV export (by extension, else by content). InputError
    for a file that is none of them, too big or not text."""
    if len(data) > MAX_LIBRARY_BYTES:
        raise InputError(f"library: larger than {MAX_LIBRARY_BYTES // 2**20} MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            text = data.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes any bytes
            raise InputError("library: not a text file") from None
    if "\x00" in text:
        raise InputError("library: not a text file")
    name = filename.lower()
    head = text.lstrip()[:2000]
    if name.endswith(".bib") or (not name.endswith((".ris", ".csv")) and head.startswith("@")):
        return read_bibtex(text)
    if name.endswith(".ris") or re.match(r"TY  - ", head):
        return read_ris(text)
    if name.endswith(".csv") or head.startswith(('"Key"', "Key,")):
        return read_zotero_csv(text)
    raise InputError("library: not a BibTeX (.bib), RIS (.ris) or Zotero CSV (.csv) export")


# --------------------------------------------------------------------- looking them up

# (ids) -> the Atom feed of arXiv's export API for them; the I/O of `resolve`, replaced in
# tests by nothing at all: they point the real client at a local server.
Lookup = Callable[[Sequence[str]], Sequence[Paper]]


def arxiv_lookup(
    api_base_url: str,
    fetcher_factory: Callable[[], object],
) -> Lookup:
    """Look ids up with arXiv's export API (`id_list`), paced by the fetcher."""
    from digest.sources.arxiv import _api_error_detail, parse_atom

    def lookup(ids: Sequence[str]) -> list[Paper]:
        fetcher = fetcher_factory()
        out: list[Paper] = []
        for i in range(0, len(ids), ID_BATCH):
            part = ids[i : i + ID_BATCH]
            params = {"id_list": ",".join(part), "max_results": str(len(part))}
            r = fetcher.get(  # type: ignore[attr-defined]
                api_base_url.rstrip("/"), params, error_detail=_api_error_detail
            )
            try:
                papers, _ = parse_atom(r.content)
            except ValueError as e:
                raise FetchError(f"arxiv: id_list lookup: {e}") from e
            out.extend(papers)
        return out

    return lookup


def resolve(
    ids: Sequence[str],
    known: Callable[[Iterable[str]], dict[str, Paper]],
    lookup: Lookup,
) -> tuple[dict[str, Paper], list[str], list[Paper]]:
    """(papers by id, ids found nowhere, the papers that came from arXiv). `known` is the
    store's get_papers; `lookup` asks arXiv for the rest (one call)."""
    found = dict(known(ids))
    rest = [i for i in ids if i not in found]
    fetched: list[Paper] = []
    if rest:
        for p in lookup(rest):
            if p.id in rest and p.id not in found:
                found[p.id] = p
                fetched.append(p)
    missing = [i for i in ids if i not in found]
    return {i: found[i] for i in ids if i in found}, missing, fetched


def examples_of(ids: Sequence[str], papers: Mapping[str, Paper]) -> list[tuple[str, str]]:
    """(id, title) pairs, what Subscriber.examples holds, for the resolved ids."""
    return [(i, papers[i].title) for i in ids if i in papers]


def seen_day(p: Paper) -> date:
    """The day a paper from arXiv is filed under in the store: its own listing day."""
    return p.listed_on or date(1991, 8, 14)  # arXiv's first day: never "new" today


# One pacer per process and arXiv host: the CLI, every web upload and retries share it.
_PACERS: dict[str, object] = {}


def find_papers(
    cfg: Config,
    store: Store,
    ids: Sequence[str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    pacer: Any = None,
    lock: AbstractContextManager[Any] | None = None,
) -> tuple[dict[str, Paper], list[str]]:
    """I/O: (papers by id, ids found nowhere) for `ids`: the store's papers, else arXiv's
    export API (`[sources.arxiv] api_base_url`, paced at `min_interval`, at least 3 s);
    the papers found there are kept in the store. FetchError when arXiv cannot be asked.
    `lock`: held around each store call (the web service's), never while arXiv is asked."""
    guard: AbstractContextManager[Any] = lock if lock is not None else nullcontext()

    def known(want: Iterable[str]) -> dict[str, Paper]:
        with guard:
            return store.get_papers(want)

    from digest.sources.arxiv import RateLimiter
    from digest.sources.http import Fetcher, make_client

    axc = cfg.sources.arxiv
    key = axc.api_base_url
    if pacer is None:
        pacer = _PACERS.get(key)
    if pacer is None:  # the process-wide one, on the real clock
        pacer = _PACERS[key] = RateLimiter(max(axc.min_interval, ARXIV_INTERVAL))
    client = make_client(cfg.http)
    try:
        lookup = arxiv_lookup(
            axc.api_base_url,
            lambda: Fetcher(client, cfg.http, "arxiv", sleep=sleep, pace=pacer.wait),
        )
        papers, missing, fetched = resolve(ids, known, lookup)
    finally:
        client.close()
    by_day: dict[date, list[Paper]] = {}
    for p in fetched:
        by_day.setdefault(seen_day(p), []).append(p)
    for day, group in sorted(by_day.items()):
        with guard:
            store.record_seen(group, day)
    return papers, missing


def examples_for(cfg: Config, store: Store, value: str, **kw: Any) -> list[tuple[str, str]]:
    """I/O: the (id, title) examples for a `--papers` value; InputError naming the
    references found nowhere (nothing is changed then)."""
    ids = parse_papers(value)
    if not ids:
        return []
    papers, missing = find_papers(cfg, store, ids, **kw)
    if missing:
        raise InputError(
            f"papers: not found on arXiv: {', '.join(missing)} (check the ids; nothing was changed)"
        )
    return examples_of(ids, papers)
