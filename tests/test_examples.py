"""Interests by example: references and library exports parsed, papers resolved from the
store, else from arXiv's export API (`id_list`) on a local HTTP server answering with
entries of the recorded export-API feed (../shared/fixtures/arxiv/), paced at 3 s."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import replace
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from httpfixture import ARXIV_DIR, FixtureServer

from digest.cli import main
from digest.config import ArxivConfig, Config, HttpConfig, SourcesConfig, StoreConfig
from digest.errors import FetchError, InputError
from digest.examples import (
    find_papers,
    paper_ref,
    parse_papers,
    read_library,
)
from digest.models import Paper
from digest.sources.arxiv import RateLimiter
from digest.store import open_store

RECORDED = (ARXIV_DIR / "api_query_cat-cs.AI-cs.LG-cs.CL_2026-08-02.xml").read_text("utf-8")
# Ids in the recorded feed (as arXiv wrote them, with versions).
IDS = re.findall(r"<id>http://arxiv.org/abs/([\d.]+)v\d+</id>", RECORDED)
HEAD, _, REST = RECORDED.partition("<entry>")
ENTRIES = {
    re.search(r"abs/([\d.]+)v\d", e).group(1): "<entry>" + e.split("</entry>")[0] + "</entry>"  # type: ignore[union-attr]
    for e in RECORDED.split("<entry>")[1:]
    if "arxiv.org/abs/" in e
}


class IdListServer:
    """arXiv's export API for `id_list` queries, from recorded entries."""

    def __init__(self) -> None:
        self.queries: list[list[str]] = []
        outer = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                q = parse_qs(urlsplit(self.path).query)
                ids = q.get("id_list", [""])[0].split(",")
                outer.queries.append(ids)
                body = (HEAD + "".join(ENTRIES.get(i, "") for i in ids) + "</feed>").encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/atom+xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/query"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def arxiv():
    srv = IdListServer()
    yield srv
    srv.close()


def config(tmp_path: Path, api: str) -> Config:
    return replace(
        Config(),
        store=StoreConfig(path=tmp_path / "data", fsync=False),
        http=replace(HttpConfig(), retries=0, backoff=0.0),
        sources=replace(SourcesConfig(), arxiv=replace(ArxivConfig(), api_base_url=api)),
    )


# ------------------------------------------------------------------------- references


@pytest.mark.parametrize(
    "ref",
    [
        "2607.28628",
        "2607.28628v3",
        "arXiv:2607.28628",
        "https://arxiv.org/abs/2607.28628v1",
        "http://arxiv.org/pdf/2607.28628v2.pdf",
        "https://arxiv.org/pdf/2607.28628",
        "https://huggingface.co/papers/2607.28628",
        "https://doi.org/10.48550/arXiv.2607.28628",
        "https://www.alphaxiv.org/abs/2607.28628",
    ],
)
def test_a_reference_is_an_id_or_a_paper_url(ref: str) -> None:
    assert paper_ref(ref) == "2607.28628"


def test_parse_papers_keeps_order_drops_duplicates_and_names_a_bad_one() -> None:
    got = parse_papers(
        "2607.28628, https://huggingface.co/papers/2607.28627 2607.28628v2;hep-th/9901001"
    )
    assert got == ("2607.28628", "2607.28627", "hep-th/9901001")
    assert parse_papers("  ") == ()
    with pytest.raises(
        InputError, match=r"papers: 'https://example.org/x' is not an arXiv id"
    ) as e:
        parse_papers("2607.28628, https://example.org/x")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------- libraries

BIB = r"""
@article{a, title = {Liked Paper One}, eprint = {2607.28628}, archivePrefix = {arXiv}}
@misc{b, title = {From a URL}, url = {https://arxiv.org/abs/2607.28627v1}}
@inproceedings{c, title = {A Note}, note = {arXiv:2607.28623}}
@article{d, title = {A Journal Paper}, journal = {Nature}, doi = {10.1038/xyz}}
@article{e, title = {Preprint}, journal = {arXiv preprint arXiv:2607.28618}}
@misc{f, title = {Zotero Style}, publisher = {arXiv}, number = {arXiv:2607.28601}}
"""
ER = "ER  - "  # RIS ends a record with "ER  - " (trailing space included)
RIS = "\n".join(
    [
        "TY  - JOUR",
        "TI  - Via RIS",
        "UR  - http://arxiv.org/abs/2607.28628v1",
        ER,
        "TY  - JOUR",
        "TI  - With a DOI",
        "DO  - 10.48550/arXiv.2607.28627",
        ER,
        "TY  - PREP",
        "TI  - A note only",
        "N1  - arXiv:2607.28601 [cs]",
        ER,
        "TY  - BOOK",
        "TI  - No arXiv here",
        ER,
        "",
    ]
)
ZOTERO = (
    '"Key","Item Type","Publication Year","Author","Title","Publication Title","DOI","Url",'
    '"Extra","Archive Location"\n'
    '"K1","preprint","2026","A","Zotero One","","","","arXiv: 2607.28628",""\n'
    '"K2","preprint","2026","B","Zotero Two","","10.48550/arXiv.2607.28627","","",""\n'
    '"K3","journalArticle","2020","C","Unrelated Book","Some Journal","10.1/x","","",""\n'
)


def test_bibtex_ris_and_zotero_exports_give_ids_and_report_the_rest() -> None:
    bib = read_library(BIB.encode(), "mine.bib")
    assert bib.ids == ("2607.28628", "2607.28627", "2607.28623", "2607.28618", "2607.28601")
    assert bib.unmatched == ("A Journal Paper",) and bib.entries == 6
    ris = read_library(RIS.encode(), "export.ris")
    assert ris.ids == ("2607.28628", "2607.28627", "2607.28601")
    assert ris.unmatched == ("No arXiv here",)
    zot = read_library(ZOTERO.encode(), "My Library.csv")
    assert zot.ids == ("2607.28628", "2607.28627") and zot.unmatched == ("Unrelated Book",)
    # Detected by content too (no extension).
    assert read_library(BIB.encode()).ids == bib.ids
    assert read_library(RIS.encode()).ids == ris.ids


@pytest.mark.parametrize(
    "data,name", [(b"hello world", "x.txt"), (b"\x00\x01\x02", "x.bib"), (b"a,b\n1,2\n", "x.csv")]
)
def test_other_files_are_refused_in_one_line(data: bytes, name: str) -> None:
    with pytest.raises(InputError) as e:
        read_library(data, name)
    assert "\n" not in str(e.value) and str(e.value).startswith("library:")


# ------------------------------------------------------------------------- resolving


def test_papers_come_from_the_store_first_then_one_paced_id_list_request(tmp_path, arxiv) -> None:
    cfg = config(tmp_path, arxiv.url)
    store = open_store(cfg.store)
    try:
        mine = Paper("2607.28628", "Already Stored", "abstract", listed_on=date(2026, 8, 1))
        store.record_seen([mine], date(2026, 8, 1))
        waits: list[float] = []
        now = [100.0]
        pacer = RateLimiter(
            3.0,
            clock=lambda: now[0],
            sleep=lambda s: (waits.append(s), now.__setitem__(0, now[0] + s)),
        )
        papers, missing = find_papers(
            cfg, store, ["2607.28628", "2607.28627", "2607.99999"], pacer=pacer, sleep=waits.append
        )
        assert papers["2607.28628"].title == "Already Stored"  # the store's, no request for it
        assert papers["2607.28627"].abstract and "2607.28627" in papers
        assert missing == ["2607.99999"]
        assert arxiv.queries == [["2607.28627", "2607.99999"]]
        # Kept in the store (with its abstract) under its own publication day: not new today.
        assert store.get_papers(["2607.28627"])["2607.28627"].abstract
        assert store.first_seen(["2607.28627"])["2607.28627"] < date(2026, 8, 2)
        # More than one request's worth: the second waits 3 s (injected clock, no sleep).
        many = [*IDS[:3], *[f"2601.{i:05d}" for i in range(150)]]
        find_papers(cfg, store, many, pacer=pacer, sleep=waits.append)
        assert len(arxiv.queries) == 3 and len(arxiv.queries[1]) == 100
        assert waits and all(w <= 3.0 for w in waits) and sum(waits) >= 3.0 - 1e-9
    finally:
        store.close()


def test_an_arxiv_error_is_one_line_and_changes_nothing(tmp_path) -> None:
    with FixtureServer() as fx:  # answers id_list with arXiv's recorded HTTP 400 error feed
        cfg = config(tmp_path, fx.api_base_url)
        store = open_store(cfg.store)
        try:
            with pytest.raises(FetchError, match="incorrect id format") as e:
                find_papers(cfg, store, ["2607.28627"], pacer=RateLimiter(0.0))
            assert "\n" not in str(e.value)
            assert store.get_papers(["2607.28627"]) == {}
        finally:
            store.close()


def test_cli_add_and_update_with_papers(tmp_path, arxiv, capsys) -> None:
    f = tmp_path / "digest.toml"
    f.write_text(
        f'[store]\npath = "{tmp_path / "st"}"\n[http]\nretries = 0\n'
        f'[sources.arxiv]\napi_base_url = "{arxiv.url}"\n'
    )
    base = ["--config", str(f), "subscribers"]
    a, b = IDS[0], IDS[1]
    assert (
        main([*base, "add", "ex@example.org", "--papers", f"https://arxiv.org/abs/{a}v1, {b}"]) == 0
    )
    assert "2 example papers" in capsys.readouterr().out
    store = open_store(StoreConfig(path=tmp_path / "st"))
    try:
        sub = store.get_subscriber("ex@example.org")
        assert sub is not None and sub.keywords == ()  # keywords are optional with examples
        assert [pid for pid, _ in sub.examples] == [a, b] and all(t for _, t in sub.examples)
    finally:
        store.close()
    # Unknown ids: one line, nothing changed.
    assert main([*base, "update", "ex@example.org", "--papers", "2607.99999"]) != 0
    err = capsys.readouterr().err
    assert "not found on arXiv: 2607.99999" in err and len(err.strip().splitlines()) == 1
    assert main([*base, "update", "ex@example.org", "--papers", "not-a-paper"]) != 0
    assert main([*base, "update", "ex@example.org", "--papers", IDS[2], "--max", "4"]) == 0
    store = open_store(StoreConfig(path=tmp_path / "st"))
    try:
        sub = store.get_subscriber("ex@example.org")
        assert sub is not None and [p for p, _ in sub.examples] == [IDS[2]] and sub.max_papers == 4
    finally:
        store.close()
    capsys.readouterr()
    assert main([*base, "list", "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["papers"] == [IDS[2]] and listed["ratings"] == {"up": 0, "down": 0}
    assert main([*base, "list"]) == 0
    assert "1 example papers, 0 ratings" in capsys.readouterr().out
    assert main([*base, "update", "ex@example.org", "--papers", ""]) == 0
    store = open_store(StoreConfig(path=tmp_path / "st"))
    try:
        assert store.get_subscriber("ex@example.org").examples == ()  # type: ignore[union-attr]
    finally:
        store.close()


def test_csv_import_with_a_papers_column(tmp_path, arxiv, capsys) -> None:
    f = tmp_path / "digest.toml"
    f.write_text(
        f'[store]\npath = "{tmp_path / "st"}"\n[http]\nretries = 0\n'
        f'[sources.arxiv]\napi_base_url = "{arxiv.url}"\n'
    )
    csvfile = tmp_path / "subs.csv"
    csvfile.write_text(
        "email,keywords,max,papers\n"
        f'one@example.org,,5,"{IDS[0]} https://huggingface.co/papers/{IDS[1]}"\n'
        f"two@example.org,agents,5,{IDS[2]}\n"
        "three@example.org,agents,5,2607.99999\n"
        "four@example.org,agents,5,not-a-paper\n"
    )
    assert main(["--config", str(f), "subscribers", "import", str(csvfile)]) == 1
    cap = capsys.readouterr()
    assert "three@example.org: papers not found on arXiv: 2607.99999" in cap.err
    assert "not-a-paper" in cap.err
    assert len(arxiv.queries) == 1  # every row's papers in one request
    store = open_store(StoreConfig(path=tmp_path / "st"))
    try:
        one = store.get_subscriber("one@example.org")
        assert one is not None and [p for p, _ in one.examples] == [IDS[0], IDS[1]]
        assert all(t for _, t in one.examples)
        assert [p for p, _ in store.get_subscriber("two@example.org").examples] == [IDS[2]]  # type: ignore[union-attr]
        assert store.get_subscriber("three@example.org") is None
        assert store.get_subscriber("four@example.org") is None
    finally:
        store.close()
