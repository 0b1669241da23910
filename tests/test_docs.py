"""The docs name only files that exist: every repository path like `config/x.toml`,
`deploy/...` or `docs/...` in README.md, docs/ and deploy/README.md is in the checkout.
(Absolute paths such as /etc/digest/digest.toml or /config/digest.toml are the operator's
or a container's, not ours.)"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "deploy" / "README.md"]  # not CHANGELOG: history
DOCS += sorted((ROOT / "docs").glob("*.md"))
# A repository-relative path: not preceded by a word character, "/", "." or "-".
PATH = re.compile(
    r"(?<![\w/.\-])((?:config|deploy|docs|templates|bench|tests|digest)/[\w./\-]*[\w\-])"
)


def test_docs_name_only_files_that_exist() -> None:
    missing = []
    for doc in DOCS:
        base = doc.parent
        for m in PATH.finditer(doc.read_text(encoding="utf-8")):
            rel = m.group(1).rstrip(".")
            if "*" in rel or "{" in rel or "<" in rel:
                continue
            if not ((ROOT / rel).exists() or (base / rel).exists()):
                missing.append(f"{doc.relative_to(ROOT)}: {rel}")
    assert missing == []


def test_no_doc_names_config_digest_toml() -> None:
    """It never existed: the example is config/example.toml."""
    for doc in DOCS:
        assert not re.search(r"(?<![\w/])config/digest\.toml", doc.read_text(encoding="utf-8"))
