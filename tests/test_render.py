"""digest.render: golden output, escaping, links, size budget, empty digests.

Golden files live in tests/golden/; regenerate them with `UPDATE_GOLDEN=1 pytest
tests/test_render.py tests/test_mail_message.py` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digest.errors import ConfigError
from digest.models import MATCH, TRENDING, Digest, Paper, Pick, Subscriber
from digest.rank.why import why_sentence
from digest.render import (
    GMAIL_CLIP_BYTES,
    SUMMARY_CHARS,
    Rendered,
    Renderer,
    default_templates_dir,
    short_authors,
    shorten,
)
from digest.tokens import Links

GOLDEN = Path(__file__).resolve().parent / "golden"
FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures"
DAY = date(2026, 1, 14)
LINKS = Links(
    unsubscribe_url="https://digest.example.org/unsubscribe/TOKEN-U",
    manage_url="https://digest.example.org/manage/TOKEN-M",
    feed_url="https://digest.example.org/feed/TOKEN-F.atom",
)


def check_golden(name: str, actual: str) -> None:
    """Compare with tests/golden/<name>; UPDATE_GOLDEN=1 rewrites it instead."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.mkdir(exist_ok=True)
        path.write_bytes(actual.encode("utf-8"))
    assert path.exists(), f"missing golden file {path}: run with UPDATE_GOLDEN=1"
    assert actual == path.read_bytes().decode("utf-8"), f"{name} differs from the golden file"


def papers_sample() -> dict[str, Paper]:
    ps = [
        Paper(
            id="2601.00001",
            title="Continual Pretraining for Low-Resource Languages",
            abstract="We study continual pretraining of large language models on "
            "low-resource languages. " * 8,
            authors=("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra"),
            ai_summary="Continual pretraining with replay keeps English skills while "
            "adding Swahili and Yoruba.",
            upvotes=42,
            github_repo="https://github.com/example/cpt",
            github_stars=1234,
            project_page="https://example.org/cpt",
        ),
        Paper(
            id="2601.00002",
            title="A Survey-Free Look at Tokenizers",
            abstract="Tokenizers matter. " * 40,
            authors=("Barbara Liskov",),
            upvotes=7,
        ),
        Paper(
            id="2601.00003",
            title="Über-efficient Attention — with ünïcode",
            abstract="Short abstract.",
            authors=(),
            upvotes=None,
            github_repo="https://github.com/example/attn",
            github_stars=None,
        ),
    ]
    return {p.id: p for p in ps}


def digest_for(
    picks: tuple[Pick, ...],
    keywords: tuple[str, ...] = ("continual pretraining", "low-resource", "-survey"),
    email: str = "reader@example.org",
    day: date = DAY,
) -> Digest:
    return Digest(Subscriber(email, keywords), day, picks)


SAMPLE_PICKS = (
    Pick("2601.00001", 83.2, ("continual pretraining", "low-resource")),
    Pick("2601.00003", 60.9, ("attention",)),
    Pick("2601.00002", 100.0, (), TRENDING),
)
TRENDING_ONLY = (Pick("2601.00002", 100.0, (), TRENDING), Pick("2601.00003", 40.0, (), TRENDING))


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_golden_files(renderer: Renderer) -> None:
    out = renderer.render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    check_golden("digest_email.html", out.html)
    check_golden("digest_email.txt", out.text)
    check_golden("subject.txt", out.subject + "\n")
    empty = renderer.render(digest_for(()), papers_sample(), LINKS)
    check_golden("digest_empty.html", empty.html)
    check_golden("digest_empty.txt", empty.text)
    # a day without a match: the trending papers, under a subject that says so
    quiet = renderer.render(digest_for(TRENDING_ONLY), papers_sample(), LINKS)
    check_golden("digest_nomatch.html", quiet.html)
    check_golden("digest_nomatch.txt", quiet.text)
    check_golden("subject_nomatch.txt", quiet.subject + "\n")


class Cards(HTMLParser):
    """The paper blocks of a rendered mail: (data-paper-id, data-section) in order."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[tuple[str, str]] = []
        self.sections: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "data-paper-id" in a:
            self.cards.append((a["data-paper-id"] or "", a.get("data-section") or ""))
        if tag == "h2" and a.get("id"):
            self.sections.append(a["id"] or "")


def cards_of(html: str) -> Cards:
    c = Cards()
    c.feed(html)
    return c


def test_sections_and_markers(renderer: Renderer) -> None:
    out = renderer.render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    c = cards_of(out.html)
    assert c.cards == [("2601.00001", MATCH), ("2601.00003", MATCH), ("2601.00002", TRENDING)]
    assert c.sections == ["for-you", "trending"]
    assert "For you" in out.html and "Trending today" in out.html
    assert "not matched to your keywords" in out.html
    text = out.text
    assert text.index("FOR YOU") < text.index("Continual Pretraining") < text.index("TRENDING")
    assert text.index("TRENDING TODAY") < text.index("A Survey-Free Look")


def test_why_sentence_is_shown_and_highlighted(renderer: Renderer) -> None:
    out = renderer.render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    # the sentence covering both terms (the abstract's), adjacent matched words as one
    assert '<strong style="background-color:#fff1a8">continual pretraining</strong>' in out.html
    assert "why: “We study *continual pretraining* of large" in out.text
    # a trending paper has no why
    block = out.html.split('data-paper-id="2601.00002"')[1]
    assert "matched:" not in block and "why" not in block.split("</div>")[0]


def test_why_is_escaped(renderer: Renderer) -> None:
    p = Paper(id="2601.07777", title="t", abstract="Speech <script>x</script> recognition & more.")
    out = renderer.render(
        digest_for((Pick(p.id, 70.0, ("speech recognition",)),)), {p.id: p}, LINKS
    )
    assert "<script>" not in out.html and "&lt;script&gt;" in out.html
    assert "&amp; more" in out.html


def test_no_keyword_subscriber_gets_trending_only(renderer: Renderer) -> None:
    out = renderer.render(digest_for(TRENDING_ONLY, keywords=()), papers_sample(), LINKS)
    assert out.subject == "2 trending papers · A Survey-Free Look at Tokenizers"
    assert cards_of(out.html).sections == ["trending"]
    assert "not matched" not in out.html


def test_subject(renderer: Renderer) -> None:
    out = renderer.render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    # the subject counts the matches, not the trending papers
    assert out.subject == "2 papers for you · Continual Pretraining for Low-Resource Languages"
    one = renderer.render(digest_for(SAMPLE_PICKS[1:2]), papers_sample(), LINKS)
    assert one.subject == "1 paper for you · Über-efficient Attention — with ünïcode"
    quiet = renderer.render(digest_for(TRENDING_ONLY), papers_sample(), LINKS)
    assert quiet.subject == "No matches today · 2 trending papers: A Survey-Free Look at Tokenizers"
    long = Paper(id="2601.09999", title="word " * 60, abstract="x")
    out = renderer.render(digest_for((Pick(long.id, 1.0),)), {long.id: long}, LINKS)
    assert len(out.subject) < 130 and out.subject.endswith("…")
    assert "\n" not in out.subject


def test_site_name_is_used() -> None:
    out = Renderer(site_name="Lab Papers").render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    assert out.subject.startswith("2 papers for you")
    empty = Renderer(site_name="Lab Papers").render(digest_for(()), papers_sample(), LINKS)
    assert empty.subject.startswith("Lab Papers — nothing new")
    assert "Lab Papers" in out.html and "Lab Papers" in out.text


def test_links_and_paper_details_present(renderer: Renderer) -> None:
    out = renderer.render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    for part in (out.html, out.text):
        for url in (
            LINKS.unsubscribe_url,
            LINKS.manage_url,
            LINKS.feed_url,
            "https://huggingface.co/papers/2601.00001",
            "https://arxiv.org/abs/2601.00001",
            "https://github.com/example/cpt",
            "https://example.org/cpt",
        ):
            assert url in part, url
        assert "Ada Lovelace, Alan Turing, Grace Hopper et al." in part
        assert "Edsger" not in part
        assert "matched: continual pretraining, low-resource" in part
        assert "matched: attention" in part
        assert "1234" in part and "42 upvotes" in part
        assert "reader@example.org" in part
    # The title links to the paper's page; the AI summary is preferred to the abstract.
    assert '<a href="https://huggingface.co/papers/2601.00001"' in out.html
    assert "replay keeps English skills" in out.html
    assert out.html.count("matched:") == 2  # the trending paper has no line
    assert 'href="https://digest.example.org/unsubscribe/TOKEN-U"' in out.html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_css_is_inlined_for_mail_clients(renderer: Renderer) -> None:
    out = renderer.render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    parser = _Tags()
    parser.feed(out.html)
    assert "<style" not in out.html and "class=" not in out.html
    styled = [t for t, a in parser.tags if t in ("p", "a", "div") and a.get("style")]
    unstyled = [(t, a) for t, a in parser.tags if t in ("p", "a", "div") and not a.get("style")]
    assert styled and not unstyled, unstyled
    wrap = next(a["style"] for t, a in parser.tags if t == "div")
    assert "max-width:640px" in (wrap or "").replace(" ", "")  # single fluid column
    assert '<meta name="viewport"' in out.html


def test_everything_from_sources_is_escaped(renderer: Renderer) -> None:
    evil = "<script>alert(1)</script>"
    p = Paper(
        id="2601.66666",
        title=f"Title {evil}",
        abstract=f"Abstract {evil} & more",
        authors=(f"Mallory {evil}", "Bob"),
        ai_summary=None,
        github_repo="javascript:alert(1)",
        project_page='https://ok.example/"><x',
        upvotes=1,
    )
    d = digest_for(
        (Pick(p.id, 1.0, (f"term {evil}",)),), keywords=(f"kw {evil}",), email="a@example.org"
    )
    out = renderer.render(d, {p.id: p}, LINKS)
    assert "<script" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert out.html.count("&lt;script&gt;") >= 5  # title, abstract, author, term, keywords
    assert "javascript:" not in out.html and "javascript:" not in out.text
    assert "ok.example" not in out.html  # an URL that would break out of href is dropped
    assert "&amp; more" in out.html
    # The text part is plain text: shown as typed, never interpreted.
    assert evil in out.text


def test_source_text_cannot_fake_the_card_slot(renderer: Renderer) -> None:
    fake = "<digest-slot/>"
    p = Paper(id="2601.77777", title=f"A {fake} B", abstract=f"{fake} {fake}", authors=(fake,))
    out = renderer.render(digest_for((Pick(p.id, 1.0, (fake,)),)), {p.id: p}, LINKS)
    assert fake not in out.html and "&lt;digest-slot/&gt;" in out.html
    assert "matched: &lt;digest-slot/&gt;" in out.html


def test_cached_cards_do_not_leak_between_subscribers(renderer: Renderer) -> None:
    papers = papers_sample()
    a = renderer.render(digest_for(SAMPLE_PICKS, email="a@example.org"), papers, LINKS)
    b = renderer.render(
        digest_for(
            (Pick("2601.00001", 1.0, ("tokenizers",)),),
            keywords=("tokenizers",),
            email="b@example.org",
        ),
        papers,
        LINKS,
    )
    assert "matched: tokenizers" in b.html and "matched: tokenizers" not in a.html
    assert "a@example.org" not in b.html
    # A fresh renderer gives the same bytes: the cache changes speed, not output.
    again = Renderer().render(digest_for(SAMPLE_PICKS, email="a@example.org"), papers, LINKS)
    assert again == a
    # A changed paper under the same id (a later upvote count) is re-rendered.
    p = papers["2601.00002"]
    changed = {**papers, p.id: Paper(**{**{f: getattr(p, f) for f in p.__slots__}, "upvotes": 999})}
    c = renderer.render(digest_for(SAMPLE_PICKS), changed, LINKS)
    assert "999 upvotes" in c.html


def test_missing_papers_are_skipped(renderer: Renderer) -> None:
    picks = (Pick("2601.00404", 9.0, ("x",)), *SAMPLE_PICKS[:1])
    out = renderer.render(digest_for(picks), papers_sample(), LINKS)
    assert "1 paper for" in out.subject and "2601.00404" not in out.html


def test_zero_picks_renders_nothing_new(renderer: Renderer) -> None:
    out = renderer.render(digest_for(()), papers_sample(), LINKS)
    assert isinstance(out, Rendered)
    assert out.subject == "Paper Digest — nothing new for 2026-01-14"
    for part in (out.html, out.text):
        assert "Nothing new matched your keywords today" in part
        assert LINKS.unsubscribe_url in part and LINKS.manage_url in part
    assert "matched:" not in out.html


def test_summary_trimmed_at_word_boundary(renderer: Renderer) -> None:
    out = renderer.render(digest_for(SAMPLE_PICKS[2:3]), papers_sample(), LINKS)
    m = re.search(r"<p[^>]*>(Tokenizers matter\.[^<]*)</p>", out.html)
    assert m, out.html
    summary = m.group(1)
    assert len(summary) <= SUMMARY_CHARS and summary.endswith("matter.…") is False
    assert summary.endswith("…") and summary[-2] != " "
    assert "Tokenizers matter. Tokenizers" in summary


def _fixture_papers() -> list[Paper]:
    """Every paper of the recorded January 2026 HF daily listings (real data)."""
    out: dict[str, Paper] = {}
    for f in sorted((FIXTURES / "hf_daily_papers" / "2026-01").glob("*.json")):
        for item in json.loads(f.read_text(encoding="utf-8")):
            p = item["paper"]
            out[p["id"]] = Paper(
                id=p["id"],
                title=" ".join(p["title"].split()),
                abstract=p["summary"],
                authors=tuple(a["name"] for a in p.get("authors", [])),
                ai_summary=p.get("ai_summary"),
                upvotes=int(p.get("upvotes", 0)),
                github_repo=p.get("githubRepo"),
                github_stars=int(p["githubStars"]) if "githubStars" in p else None,
                project_page=p.get("projectPage"),
            )
    return list(out.values())


def _bulk(p: Paper) -> int:
    return (
        len(p.title)
        + len(p.ai_summary or p.abstract)
        + 60 * bool(p.github_repo)
        + 60 * bool(p.project_page)
        + sum(map(len, p.authors[:3]))
    )


def test_100_papers_stay_under_gmail_clip(renderer: Renderer) -> None:
    papers = sorted(_fixture_papers(), key=_bulk, reverse=True)[:100]  # the bulkiest
    assert len(papers) == 100
    picks = tuple(
        Pick(p.id, 1.0, ("continual pretraining", "large language model")) for p in papers
    )
    out = renderer.render(digest_for(picks), {p.id: p for p in papers}, LINKS)
    assert len(out.html.encode("utf-8")) < GMAIL_CLIP_BYTES
    assert out.html.count("https://huggingface.co/papers/") == 100
    assert LINKS.unsubscribe_url in out.html  # the footer is never what gets cut


def test_pathological_sizes_still_fit(renderer: Renderer) -> None:
    papers = [
        Paper(
            id=f"2601.{i:05d}",
            title="Very " * 400 + str(i),
            abstract="word " * 2000,
            authors=tuple("Author With A Very Long Name " * 5 for _ in range(50)),
            ai_summary="summary " * 500,
            github_repo=f"https://github.com/o/r{i}",
            github_stars=99999,
            project_page=f"https://example.org/{'p' * 200}/{i}",
            upvotes=99999,
        )
        for i in range(100)
    ]
    picks = tuple(Pick(p.id, 1.0, tuple(f"term number {j}" for j in range(10))) for p in papers)
    out = renderer.render(digest_for(picks), {p.id: p for p in papers}, LINKS)
    assert len(out.html.encode("utf-8")) < GMAIL_CLIP_BYTES
    # The HTML shows the best picks that fit and says how many more there are ...
    shown = out.html.count("https://huggingface.co/papers/")
    assert 50 <= shown < 100
    assert f"…and {100 - shown} more papers" in out.html
    assert "https://huggingface.co/papers/2601.00000" in out.html  # the best pick
    assert LINKS.feed_url in out.html and LINKS.unsubscribe_url in out.html
    # ... and the text part keeps them all.
    assert out.text.count("https://huggingface.co/papers/") == 100


def test_short_authors_and_shorten() -> None:
    assert short_authors(()) == ""
    assert short_authors(("A", "B", "C")) == "A, B, C"
    assert short_authors(("A", "B", "C", "D")) == "A, B, C et al."
    assert short_authors((" A\n B ", "", "C")) == "A B, C"
    assert shorten("one two three", 100) == "one two three"
    assert shorten("one  two\nthree four", 12) == "one two…"


@settings(deadline=None)
@given(st.text(max_size=600), st.integers(min_value=10, max_value=400))
def test_shorten_properties(text: str, limit: int) -> None:
    out = shorten(text, limit)
    assert len(out) <= limit
    collapsed = " ".join(text.split())
    if len(collapsed) <= limit:
        assert out == collapsed
    else:
        assert out.endswith("…") and collapsed.startswith(out[:-1].rstrip(" ,;:.-–—")[:1])


def test_templates_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), folder)
    (folder / "subject.txt").write_text("Custom {{ count }} for {{ day }}", encoding="utf-8")
    monkeypatch.setenv("DIGEST_TEMPLATES", str(folder))
    out = Renderer().render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    assert out.subject == "Custom 2 for 2026-01-14"  # count: the matches


def test_bad_templates_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        Renderer(tmp_path / "nope")
    folder = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), folder)
    html = (folder / "digest_email.html").read_text(encoding="utf-8")
    # A Jinja statement in <head> would be moved by the HTML parser during inlining.
    (folder / "digest_email.html").write_text(
        html.replace("<title>", "{% if count %}<title>").replace("</title>", "</title>{% endif %}"),
        encoding="utf-8",
    )
    with pytest.raises(ConfigError, match="does not survive CSS inlining"):
        Renderer(folder)
    shutil.copy(default_templates_dir() / "digest_email.html", folder / "digest_email.html")
    (folder / "_paper.html").write_text("<div>{{ title }}</div>", encoding="utf-8")
    with pytest.raises(ConfigError, match="exactly once"):
        Renderer(folder)
    (folder / "_paper.html").write_text("<div>{% if %}</div>", encoding="utf-8")
    with pytest.raises(ConfigError, match="templates"):
        Renderer(folder)


@pytest.mark.parametrize(
    "missing,message",
    [
        ("_style.css", "cannot read"),
        ("digest_email.html", "digest_email.html"),
        ("subject.txt", "subject.txt"),
    ],
)
def test_missing_template_files(tmp_path: Path, missing: str, message: str) -> None:
    folder = tmp_path / "tpl"
    shutil.copytree(default_templates_dir(), folder)
    (folder / missing).unlink()
    with pytest.raises(ConfigError, match=message) as info:
        Renderer(folder)
    assert "\n" not in str(info.value)


def test_sample_day_is_said_in_the_subject_and_first_lines() -> None:
    """The offline fallback's bundled day: every digest says it is sample data, in its
    subject and as the first line of both parts; a normal digest says nothing of it."""
    sample = Renderer(sample_day=date(2026, 3, 10))
    for picks in (SAMPLE_PICKS, ()):
        out = sample.render(digest_for(picks), papers_sample(), LINKS)
        assert out.subject.startswith("[sample data] ")
        assert out.subject.endswith(
            (
                "for you · Continual Pretraining for Low-Resource Languages",
                "nothing new for 2026-01-14",
            )
        )
        assert out.text.splitlines()[0] == (
            "SAMPLE DATA: these are the papers of the bundled recorded day 2026-03-10, "
            "not today's listings."
        )
        body = out.html[out.html.index("<body") :]
        first_p = body[body.index("<p") : body.index("</p>")]
        assert "Sample data: these are the papers of the bundled recorded day 2026-03-10" in (
            first_p
        )
    plain = Renderer().render(digest_for(SAMPLE_PICKS), papers_sample(), LINKS)
    assert "sample" not in plain.subject.lower()
    assert "SAMPLE DATA" not in plain.text and "Sample data" not in plain.html


def test_why_prefers_the_abstract_sentence_over_the_summary_already_shown() -> None:
    # The card shows the AI summary; quoting its sentence again adds nothing, so on a tie
    # (same terms, same words) the abstract's sentence is quoted.
    paper = Paper(
        id="2601.00001",
        title="T",
        abstract="We propose a method. Speech recognition improves by 10% on LibriSpeech.",
        ai_summary="A new speech recognition method.",
        listed_on=date(2026, 1, 14),
    )
    why = why_sentence(paper, ["speech recognition"])
    assert why is not None and why.sentence.startswith("Speech recognition improves")
    # ...but a summary sentence that covers more of the terms still wins.
    why = why_sentence(paper, ["speech recognition", "method"])
    assert why is not None and why.sentence == "A new speech recognition method."
