"""Pure: no I/O after construction (the Renderer reads its templates once, when built).

Turns one Digest (a subscriber's picks for a day) into the subject, plain text and HTML
of its e-mail, with Jinja2 templates from templates/ (autoescape ON for HTML: titles,
abstracts and author names come from the internet). Two sections: "For you" (the
matches, each with why: the matched terms and the sentence where they occur, its
matched words highlighted; digest/rank/why.py) and "Trending today" (the day's most
popular other papers, labelled as not matched). Every card carries data-paper-id and
data-section ("match" / "trending"): what was mailed can be read back from the HTML.

Speed: a run renders thousands of digests of the same few dozen papers. So
  * the CSS (templates/_style.css) is inlined into the template SOURCE once, at load time,
    with css-inline (mail clients drop <style>; Gmail keeps only inline styles), instead of
    inlining every rendered message;
  * each paper's card (HTML and text) is rendered once per section per Renderer and
    cached; so is each (paper, matched terms) "why" line; per subscriber only the
    header, the links and the subject are rendered.

Size: Gmail clips messages whose HTML exceeds ~102 KB; summaries are capped, digests with
many picks use shorter ones, and absurd source data falls back further (see `_levels`);
tested at 100 papers.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path

import css_inline
import jinja2
from markupsafe import Markup, escape

from digest.errors import ConfigError
from digest.models import MATCH, TRENDING, Digest, Paper, Pick
from digest.rank.why import WHY_CHARS, Why, why_sentence
from digest.tokens import Links

# Templates whose source gets the stylesheet inlined at load time.
_INLINED = frozenset({"digest_email.html", "_paper.html", "_matched.html", "_why.html"})
_STYLE = "_style.css"
# Stands for the per-subscriber part of a cached card. Autoescaped source text can never
# contain "<", so no title or abstract can fake it.
_SLOT = "<digest-slot/>"
# Jinja tags and HTML tag names, in order: inlining must not move or alter any of them.
# Inside one start tag only the set counts: the inliner may reorder a tag's attributes.
_STRUCTURE = re.compile(
    r"<([a-zA-Z][a-zA-Z0-9]*)([^<>]*)>|{{.*?}}|{%.*?%}|</[a-zA-Z][a-zA-Z0-9]*", re.S
)
_JINJA = re.compile(r"{{.*?}}|{%.*?%}", re.S)
_CLASS_ATTR = re.compile(r' class="[^"{}%]*"')
_JINJA_COMMENT = re.compile(r"{#.*?#}", re.S)
_WS = re.compile(r"\s+")
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)

SUMMARY_CHARS = 350  # per paper, at a word boundary
SUMMARY_CHARS_MIN = 160  # for digests with very many picks (Gmail's 102 KB clip)
TITLE_CHARS = 300  # a runaway title from bad source data must not blow the size budget
MAX_AUTHORS = 3  # then "et al."
MATCHED_CHARS = 160  # the "matched:" line
# How the matched words of the "why" sentence are highlighted in the HTML part. Inline
# style, not a class: this markup is made per paper, after the CSS was inlined.
HIGHLIGHT = '<strong style="background-color:#fff1a8">'

SUBJECT_TITLE_CHARS = 70
GMAIL_CLIP_BYTES = 102_000  # Gmail shows "[Message clipped]" above ~102 KB of HTML
HTML_BUDGET = 100_000  # what render aims below, leaving room for the List-* headers


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def default_templates_dir() -> Path:
    """$DIGEST_TEMPLATES if set, else the templates shipped inside the package.

    The repository's top-level templates/ is the package `digest.templates`
    (pyproject's package-dir), so an editable install finds it in the checkout and a
    wheel in site-packages; both through importlib.resources, from any working folder."""
    env = os.environ.get("DIGEST_TEMPLATES")
    if env:
        return Path(env)
    try:
        folder = resources.files("digest.templates")
    except ModuleNotFoundError as e:
        raise ConfigError(
            "templates: the package digest.templates is not installed (a broken install: "
            "reinstall digest, or set $DIGEST_TEMPLATES to a templates folder)"
        ) from e
    # Jinja's FileSystemLoader needs a real folder: a zip import has none.
    if not isinstance(folder, Path):
        raise ConfigError(
            f"templates: {folder} is not a folder on disk (zip import?); "
            "set $DIGEST_TEMPLATES to a templates folder"
        )
    return folder


def shorten(text: str, limit: int, ellipsis: str = "…") -> str:
    """`text` with whitespace collapsed, cut at a word boundary to at most `limit` chars."""
    text = _WS.sub(" ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ellipsis) + 1]
    space = cut.rfind(" ")
    if space > limit // 2:  # a word boundary not absurdly early; else cut mid-word
        cut = cut[:space]
    else:
        cut = cut[: limit - len(ellipsis)]
    return cut.rstrip(" ,;:.-–—") + ellipsis


def short_authors(authors: tuple[str, ...], n: int = MAX_AUTHORS) -> str:
    names = [shorten(a, 60) for a in authors[: n + 1]]
    names = [a for a in names if a]
    if len(names) <= n:
        return ", ".join(names)
    return ", ".join(names[:n]) + " et al."


def safe_url(url: str | None) -> str | None:
    """The URL if it is a plain http(s) URL, else None: a `javascript:` URL or one that
    would break out of the attribute is never linked."""
    if not url:
        return None
    url = url.strip()
    if not (url.startswith("https://") or url.startswith("http://")):
        return None
    if any(c.isspace() or c in "\"'<>\\" for c in url) or len(url) > 300:
        return None
    return url


def day_label(day: date) -> str:
    # Not strftime: its names depend on the process locale.
    return f"{_WEEKDAYS[day.weekday()]}, {day.day} {_MONTHS[day.month - 1]} {day.year}"


def _levels(count: int) -> tuple[tuple[int, int, int], ...]:
    """(summary chars, title chars, why chars) to try in turn, for Gmail's clip. The
    first level fits typical papers; later ones are used only when a digest still comes
    out too big (very long titles, author names, URLs from bad source data)."""
    if count <= 30:
        first, why = SUMMARY_CHARS, WHY_CHARS
    elif count <= 60:
        first, why = 250, 160
    else:
        first, why = SUMMARY_CHARS_MIN, 0
    levels = [(first, TITLE_CHARS, why)]
    levels += [(s, TITLE_CHARS, 0) for s in (250, SUMMARY_CHARS_MIN) if s < first]
    levels += [(100, 200, 0), (0, 120, 0)]
    return tuple(levels)


class _InliningLoader(jinja2.FileSystemLoader):
    """Loads templates; for the e-mail HTML ones, inlines _style.css into the source."""

    def __init__(self, folder: Path):
        super().__init__(str(folder))
        self.folder = folder
        self._css: str | None = None

    def css(self) -> str:
        if self._css is None:
            try:
                self._css = (self.folder / _STYLE).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(
                    f"templates: cannot read {self.folder / _STYLE}: {e.strerror}"
                ) from e
        return self._css

    def get_source(self, environment, template):  # type: ignore[no-untyped-def]
        source, filename, uptodate = super().get_source(environment, template)
        if template in _INLINED:
            source = self._inline(template, source)
        return source, filename, uptodate

    def _inline(self, name: str, source: str) -> str:
        # Jinja comments would be parsed as text (and moved around) by the HTML parser.
        source = _JINJA_COMMENT.sub("", source).lstrip()
        structure = _structure(source)
        try:
            # minify_css: "a:b;c:d" instead of "a: b;c: d" on every element (Gmail's clip).
            if source.lower().startswith("<!doctype") or "<html" in source[:200].lower():
                out = css_inline.CSSInliner(
                    keep_style_tags=False,
                    load_remote_stylesheets=False,
                    minify_css=True,
                    extra_css=self.css(),
                ).inline(source)
            else:
                out = css_inline.CSSInliner(
                    keep_style_tags=False,
                    load_remote_stylesheets=False,
                    minify_css=True,
                ).inline_fragment(source, self.css())
        except (css_inline.InlineError, ValueError) as e:
            raise ConfigError(f"templates: cannot inline CSS into {name}: {e}") from e
        # The HTML parser must not have moved or escaped any Jinja tag (e.g. text in <head>
        # is moved into <body>; '<' in a tag is escaped); if it did, the template is wrong:
        # say so at start rather than render a mangled mail.
        if _structure(out) != structure:
            raise ConfigError(
                f"templates: {name}: a Jinja tag does not survive CSS inlining "
                "(keep tags between elements, outside <head>, without < or &)"
            )
        # Mail clients ignore the classes once styles are inline; drop them (Gmail's clip).
        return _CLASS_ATTR.sub("", out)


def _structure(html: str) -> list[str]:
    out: list[str] = []
    for m in _STRUCTURE.finditer(html):
        if m.group(1):
            out.append("<" + m.group(1))
            out.extend(sorted(_JINJA.findall(m.group(2))))
        else:
            out.append(m.group(0))
    return out


def _terms(matched: tuple[str, ...]) -> str:
    return shorten(", ".join(t.strip().strip('"') for t in matched if t.strip()), MATCHED_CHARS)


def why_html(why: Why) -> Markup:
    """The sentence, escaped, its matched words highlighted."""
    return Markup(
        "".join(
            f"{HIGHLIGHT}{escape(text)}</strong>" if hit else str(escape(text))
            for text, hit in why.parts()
        )
    )


def why_text(why: Why) -> str:
    """The sentence for the plain-text part: matched words between asterisks."""
    return "".join(f"*{text}*" if hit else text for text, hit in why.parts())


_PROBE = Paper(
    id="0000.00000",
    title="t",
    abstract="a",
    authors=("a",),
    upvotes=1,
    github_repo="https://github.com/o/r",
    github_stars=1,
    project_page="https://example.org",
)


class Renderer:
    """Renders digests. Build one per run (it caches each paper's card)."""

    def __init__(
        self,
        templates_dir: Path | None = None,
        site_name: str = "Paper Digest",
        sample_day: date | None = None,
    ):
        """`sample_day`: the digests are built from the bundled sample day (the offline
        fallback): every subject and every first line (HTML and text) says so."""
        folder = Path(templates_dir) if templates_dir is not None else default_templates_dir()
        if not folder.is_dir():
            raise ConfigError(f"templates: {folder}: not a folder")
        self.site_name = site_name
        self.sample_day = sample_day
        loader = _InliningLoader(folder)
        html_env = jinja2.Environment(
            loader=loader,
            autoescape=True,
            trim_blocks=True,
            lstrip_blocks=True,
            undefined=jinja2.StrictUndefined,
        )
        text_env = jinja2.Environment(
            loader=loader,
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            undefined=jinja2.StrictUndefined,
        )
        try:
            self._html = html_env.get_template("digest_email.html")
            self._card_html = html_env.get_template("_paper.html")
            self._text = text_env.get_template("digest_email.txt")
            self._card_text = text_env.get_template("_paper.txt")
            self._subject = text_env.get_template("subject.txt")
            matched = html_env.get_template("_matched.html").render(terms=Markup(_SLOT))
            why = html_env.get_template("_why.html").render(why=Markup(_SLOT))
        except jinja2.TemplateError as e:
            raise ConfigError(f"templates: {folder}: {e}") from e
        self._matched_head, self._matched_tail = _split_slot(matched.strip(), "_matched.html")
        self._why_head, self._why_tail = _split_slot(why.strip(), "_why.html")
        # (paper id, section, summary chars, title chars) -> (paper, (html head, tail), text)
        self._cards: dict[tuple[str, str, int, int], tuple[Paper, tuple[str, str], str]] = {}
        self._matched_lines: dict[tuple[str, ...], tuple[str, str]] = {}
        # (paper id, matched terms, chars) -> (paper, (HTML, text) of the why sentence)
        self._whys: dict[tuple[str, tuple[str, ...], int], tuple[Paper, tuple[str, str]]] = {}
        # Render a probe card now: a broken card template fails at start, not mid-run.
        try:
            self._card(_PROBE, (SUMMARY_CHARS, TITLE_CHARS, 0), MATCH)
        except jinja2.TemplateError as e:
            raise ConfigError(f"templates: {folder}: _paper: {e}") from e
        self._cards.clear()

    # ------------------------------------------------------------------ per paper (cached)

    def _card(
        self, paper: Paper, limit: tuple[int, int, int], section: str
    ) -> tuple[tuple[str, str], str]:
        key = (paper.id, section, *limit[:2])
        hit = self._cards.get(key)
        if hit is not None and (hit[0] is paper or hit[0] == paper):
            return hit[1], hit[2]
        summary_chars, title_chars = limit[:2]
        summary = (
            shorten(paper.ai_summary or paper.abstract or "", summary_chars)
            if summary_chars
            else ""
        )
        ctx = {
            "p": paper,
            "section": section,
            "title": shorten(paper.title, title_chars) or paper.id,
            "authors": short_authors(paper.authors),
            "summary": summary,
            "github_url": safe_url(paper.github_repo),
            "project_url": safe_url(paper.project_page),
        }
        html = _split_slot(
            self._card_html.render(ctx, matched=Markup(_SLOT)).strip(), "_paper.html"
        )
        text_summary = (
            textwrap.fill(
                summary,
                width=76,
                initial_indent="   ",
                subsequent_indent="   ",
                break_long_words=False,
                break_on_hyphens=False,
            )
            if summary
            else ""
        )
        text = self._card_text.render(ctx, summary=text_summary).rstrip("\n")
        if len(self._cards) > 20_000:  # a long-lived Renderer (the scheduler) must not grow
            self._cards.clear()
        self._cards[key] = (paper, html, text)
        return html, text

    # ------------------------------------------------------------------ per subscriber

    def render(
        self,
        digest: Digest,
        papers: Mapping[str, Paper],
        links: Links,
        *,
        view_url: str = "",
        web_copy: bool = False,
    ) -> Rendered:
        """Subject, text and HTML of `digest`. Picks whose paper is not in `papers` are
        skipped (the store forgot it); zero picks renders the "nothing new" message.
        `view_url`: the digest's "view in browser" link, shown at the top. `web_copy`: the
        web copy of a mailed digest (digest/web/papers.py): no address, no personal links."""
        matches: list[tuple[Pick, Paper]] = []
        hot: list[tuple[Pick, Paper]] = []
        for pick in digest.picks:
            paper = papers.get(pick.paper_id)
            if paper is not None:
                (hot if pick.section == TRENDING else matches).append((pick, paper))
        count, n_hot = len(matches), len(hot)
        keywords = ", ".join(digest.subscriber.query.includes)
        top = matches[0][1] if matches else hot[0][1] if hot else None
        ctx = {
            "site_name": self.site_name,
            "sample_day": self.sample_day.isoformat() if self.sample_day else "",
            "day": digest.day.isoformat(),
            "day_label": day_label(digest.day),
            "count": count,
            "plural": "" if count == 1 else "s",
            "trending_count": n_hot,
            "keywords": keywords,
            "email": digest.subscriber.email,
            "links": links,
            "view_url": view_url,
            "web_copy": web_copy,
            "top_title": (shorten(top.title, SUBJECT_TITLE_CHARS) or top.id) if top else "",
        }
        subject = _WS.sub(" ", self._subject.render(ctx)).strip()
        picks = matches + hot
        for limit in _levels(len(picks)):
            html_cards, text_cards = self._cards_for(picks, limit)
            html = self._html.render(
                ctx,
                subject=subject,
                more=0,
                cards=Markup("\n".join(html_cards[:count])),
                trending_cards=Markup("\n".join(html_cards[count:])),
            )
            if _size(html) <= HTML_BUDGET:
                break
        else:
            # Still too big at the smallest level (absurd source data): the HTML shows the
            # best picks that fit and points to the rest; the text part keeps them all.
            room = HTML_BUDGET - (_size(html) - sum(_size(c) + 1 for c in html_cards)) - 400
            kept = 0
            while kept < len(html_cards) and _size(html_cards[kept]) + 1 <= room:
                room -= _size(html_cards[kept]) + 1
                kept += 1
            html = self._html.render(
                ctx | {"count": min(count, kept), "trending_count": max(0, kept - count)},
                subject=subject,
                more=len(html_cards) - kept,
                cards=Markup("\n".join(html_cards[: min(count, kept)])),
                trending_cards=Markup("\n".join(html_cards[count:kept])),
            )
        text = self._text.render(
            ctx,
            cards="\n\n".join(text_cards[:count]),
            trending_cards="\n\n".join(text_cards[count:]),
        )
        return Rendered(subject=subject, text=text, html=html)

    def _why(self, paper: Paper, matched: tuple[str, ...], chars: int) -> tuple[str, str]:
        """(HTML, text) of the "why" sentence of a match; cached per paper and terms."""
        hit = self._whys.get((paper.id, matched, chars))
        if hit is not None and (hit[0] is paper or hit[0] == paper):
            return hit[1]
        why = why_sentence(paper, matched, chars)
        lines = (
            (
                self._why_head + str(why_html(why)) + self._why_tail,
                "\n"
                + textwrap.fill(
                    f"why: “{why_text(why)}”",
                    width=76,
                    initial_indent="   ",
                    subsequent_indent="        ",
                    break_long_words=False,
                    break_on_hyphens=False,
                ),
            )
            if why is not None
            else ("", "")
        )
        if len(self._whys) > 50_000:
            self._whys.clear()
        self._whys[(paper.id, matched, chars)] = (paper, lines)
        return lines

    def _matched_line(self, matched: tuple[str, ...]) -> tuple[str, str]:
        """(HTML, text) of a "matched:" line; cached, as subscribers share terms."""
        terms = _terms(matched)
        lines = (
            (self._matched_head + str(escape(terms)) + self._matched_tail, f"\n   matched: {terms}")
            if terms
            else ("", "")
        )
        if len(self._matched_lines) > 50_000:
            self._matched_lines.clear()
        self._matched_lines[matched] = lines
        return lines

    def _cards_for(
        self, picks: list[tuple[Pick, Paper]], limit: tuple[int, int, int]
    ) -> tuple[list[str], list[str]]:
        """HTML and text cards of the picks, numbered from 1 within each section."""
        html_cards: list[str] = []
        text_cards: list[str] = []
        matched_lines = self._matched_lines
        n = {MATCH: 0, TRENDING: 0}
        for pick, paper in picks:
            section = TRENDING if pick.section == TRENDING else MATCH
            n[section] += 1
            (head, tail), text = self._card(paper, limit, section)
            if section == TRENDING or not pick.matched:
                html_cards.append(head + tail)
                text_cards.append(f"{n[section]}. {text}")
                continue
            lines = matched_lines.get(pick.matched)
            if lines is None:
                lines = self._matched_line(pick.matched)
            why = self._why(paper, pick.matched, limit[2]) if limit[2] else ("", "")
            html_cards.append(head + lines[0] + why[0] + tail)
            text_cards.append(f"{n[section]}. {text}{lines[1]}{why[1]}")
        return html_cards, text_cards


def _size(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8"))


def _split_slot(rendered: str, name: str) -> tuple[str, str]:
    parts = rendered.split(_SLOT)
    if len(parts) != 2:
        raise ConfigError(f"templates: {name} must use its per-subscriber variable exactly once")
    return parts[0], parts[1]
