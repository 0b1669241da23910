"""Config: validated at start, errors name the key, example.toml documents every key."""

import re
from pathlib import Path

import pytest

from digest.config import Config, load_config, parse_config
from digest.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_example_config_loads_and_documents_every_key():
    cfg = load_config(ROOT / "config" / "example.toml")
    assert cfg.store.path == ROOT / "data"
    text = (ROOT / "config" / "example.toml").read_text()
    for section, cls in [
        ("http", "HttpConfig"),
        ("sources.huggingface", "HuggingFaceConfig"),
        ("sources.arxiv", "ArxivConfig"),
        ("store", "StoreConfig"),
        ("smtp", "SmtpConfig"),
        ("outbox", "OutboxConfig"),
        ("web", "WebConfig"),
        ("ranking", "RankingConfig"),
        ("schedule", "ScheduleConfig"),
    ]:
        import digest.config as c

        for key in getattr(c, cls).__dataclass_fields__:
            assert re.search(rf"^#?\s*{key}\s*=", text, re.M), f"[{section}] {key} undocumented"


@pytest.mark.parametrize(
    "data, fragment",
    [
        ({"smtp": {"port": "abc"}}, "[smtp] port"),
        ({"smtp": {"port": 70000}}, "[smtp] port"),
        ({"smtp": {"security": "tls"}}, "[smtp] security"),
        ({"smtp": {"sender": "a\r\nBcc: x@y.org"}}, "[smtp] sender"),
        ({"smtp": {"password_env": "my password"}}, "[smtp] password_env"),
        ({"sources": {"huggingface": {"base_url": "ftp://x"}}}, "[sources.huggingface] base_url"),
        ({"sources": {"huggingface": {"lookback_days": 0}}}, "lookback_days"),
        ({"sources": {"arxiv": {"categories": ["cs.CL", "bad cat"]}}}, "categories"),
        ({"schedule": {"time": "25:00"}}, "[schedule] time"),
        ({"schedule": {"timezone": "Mars/Olympus"}}, "[schedule] timezone"),
        ({"store": {"pth": "x"}}, "[store] pth: unknown key"),
        ({"subscribers": [{"keywords": "x"}]}, "email: missing"),
        ({"ranking": {"popularity_weight": True}}, "popularity_weight"),
        ({"web": {"rate_ip": "lots"}}, "[web] rate_ip"),
        ({"web": {"rate_email": "0/3600"}}, "[web] rate_email"),
        ({"web": {"rate_preview": "10/-1"}}, "[web] rate_preview"),
        ({"web": {"max_body": 10}}, "[web] max_body"),
        ({"web": {"preview_days": 0}}, "[web] preview_days"),
        ({"web": {"min_fill_seconds": "2"}}, "[web] min_fill_seconds"),
    ],
)
def test_bad_values_name_the_key(data, fragment):
    with pytest.raises(ConfigError) as e:
        parse_config(data, "test.toml")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[smtp\nhost=1")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_env_var_selects_config(tmp_path, monkeypatch):
    f = tmp_path / "c.toml"
    f.write_text('site_name = "Lab Papers"\n[store]\npath = "st"\n')
    monkeypatch.setenv("DIGEST_CONFIG", str(f))
    cfg = load_config(None)
    assert cfg.site_name == "Lab Papers" and cfg.store.path == tmp_path / "st"
    assert isinstance(cfg, Config) and cfg.path == f


def test_defaults_are_the_dataclasses_own():
    # One default per key: an empty file parses to exactly the dataclass defaults, and an
    # "ssl" SMTP setup without a port gets 465 (the one default that depends on another key).
    assert parse_config({}) == Config()
    assert parse_config({"smtp": {"security": "ssl"}}).smtp.port == 465
    assert parse_config({"smtp": {"security": "ssl", "port": 2465}}).smtp.port == 2465


def test_seed_keywords_as_list_and_max_key():
    cfg = parse_config(
        {"subscribers": [{"email": "a@example.org", "keywords": ["x", "y z"], "max": 5}]}
    )
    (seed,) = cfg.subscribers
    assert seed.keywords == "x, y z" and seed.max_papers == 5 and seed.min_score is None
    with pytest.raises(ConfigError, match=r"\[subscribers #1\] keywords"):
        parse_config({"subscribers": [{"email": "a@example.org", "keywords": [1]}]})
    with pytest.raises(ConfigError, match=r"\[\[subscribers\]\] must be an array"):
        parse_config({"subscribers": {"email": "a@example.org"}})


def test_offline_fallback_is_off_by_default_on_in_the_example_and_refused_with_smtp():
    assert Config().sources.offline_fallback is False
    assert parse_config({}).sources.offline_fallback is False
    example = load_config(ROOT / "config" / "example.toml")
    assert example.sources.offline_fallback is True and example.smtp.host == ""  # Quickstart
    with pytest.raises(ConfigError) as e:
        parse_config(
            {"sources": {"offline_fallback": True}, "smtp": {"host": "smtp.example.org"}},
            "test.toml",
        )
    msg = str(e.value)
    assert msg.startswith("test.toml: [sources] offline_fallback: ") and "[smtp] host" in msg
    assert "\n" not in msg
    # either alone is fine
    parse_config({"sources": {"offline_fallback": True}})
    parse_config({"smtp": {"host": "smtp.example.org"}})


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a", False),
        ("x" * 31, False),
        ("é" * 15, False),  # 30 bytes: counted in bytes, not characters
        ("x" * 32, True),
        ("é" * 16, True),
        ("", True),  # unset: the store's generated secret is used
    ],
)
def test_a_short_secret_is_refused_at_load(tmp_path, monkeypatch, value, ok):
    monkeypatch.setenv("DIGEST_SECRET", value)
    f = tmp_path / "c.toml"
    f.write_text("")
    if ok:
        assert load_config(f).secret() == (value or None)
        assert load_config(None).secret() == (value or None)
        return
    for path in (f, None):
        with pytest.raises(ConfigError) as e:
            load_config(path)
        assert "$DIGEST_SECRET" in str(e.value) and "at least 32" in str(e.value)


def test_a_short_secret_stops_every_command(tmp_path):
    """check-config, run, web and serve all refuse it, before touching anything."""
    import os
    import subprocess
    import sys

    f = tmp_path / "c.toml"
    f.write_text(f'[store]\npath = "{tmp_path / "st"}"\n[web]\nsecret_env = "MY_SECRET"\n')
    env = {**os.environ, "MY_SECRET": "a"}
    for cmd in (["check-config"], ["run"], ["web"], ["serve", "--web"], ["send-test", "a@b.org"]):
        r = subprocess.run(
            [sys.executable, "-m", "digest", *cmd, "--config", str(f)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        (line,) = r.stderr.splitlines()
        assert line.startswith("digest: error: $MY_SECRET: the link-signing secret is 1 bytes")
    assert not (tmp_path / "st").exists()
