"""The deploy recipes (deploy/, .github/workflows/digest.yml): linted and structurally sound.

`test_check_sh_passes` runs deploy/check.sh (hadolint, actionlint, systemd-analyze,
kubernetes-validate, check-jsonschema, shellcheck, deploy/verify.py). Its tools come from
`bash deploy/install-tools.sh`; without them the test FAILS under CI and is skipped only on
a developer machine (CI unset). The other tests read the files in plain Python.
"""

from __future__ import annotations

import configparser
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
WORKFLOW = ROOT / ".github" / "workflows" / "digest.yml"
TOOLS = (
    "hadolint",
    "actionlint",
    "shellcheck",
    "check-jsonschema",
    "kubernetes-validate",
    "systemd-analyze",
)
CHECKS = (
    "shellcheck",
    "crontab",
    "crontab-shell",
    "systemd",
    "systemd-security",
    "hadolint",
    "compose",
    "compose-postgres",
    "k8s-1.27.0",
    "k8s-1.37.0",
    "actionlint",
    "workflow-schema",
    "configs",
    "wiring",
    "cli",
)


def _missing(what: str) -> None:
    """A missing tool fails in CI (install-tools.sh provides it); locally it only skips."""
    msg = f"{what} missing: run `bash deploy/install-tools.sh`"
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _yaml() -> ModuleType:
    try:
        import yaml
    except ModuleNotFoundError:
        _missing("PyYAML")
    return yaml


def _docs(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in _yaml().safe_load_all(f) if d]


def _kind(path: Path, kind: str) -> dict[str, Any]:
    (doc,) = [d for d in _docs(path) if d["kind"] == kind]
    return doc


def _unit(name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]
    cp.read(DEPLOY / "systemd" / name, encoding="utf-8")
    return cp


def _verify() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_verify", DEPLOY / "verify.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# --------------------------------------------------------------------------- the linters


def test_check_sh_passes() -> None:
    scripts = sysconfig.get_path("scripts")
    path = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    missing = [t for t in TOOLS if shutil.which(t, path=path) is None]
    if missing:
        _missing(", ".join(missing))
    env = {**os.environ, "PYTHON": sys.executable}
    proc = subprocess.run(
        ["bash", str(DEPLOY / "check.sh")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    verdicts = [ln for ln in proc.stdout.splitlines() if ln.startswith(("PASS ", "FAIL "))]
    assert [ln.split()[1].rstrip(":") for ln in verdicts] == list(CHECKS), out
    assert all(ln.startswith("PASS ") for ln in verdicts), out
    assert f"{len(CHECKS)} passed, 0 failed" in proc.stdout


# --------------------------------------------------------------------------- cron


def test_crontab_calls_digest_run_daily() -> None:
    verify = _verify()
    path = DEPLOY / "cron" / "crontab"
    assert verify.check_crontab(path) == []
    command = verify.crontab_command(path)
    assert "/digest run" in command and ">>" in command  # logs to a file
    assert "flock" not in command  # the built-in lock makes overlaps harmless
    text = path.read_text(encoding="utf-8")
    assert "DIGEST_CONFIG=/etc/digest/digest.toml" in text
    job = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")][-1]
    assert job.split()[2:5] == ["*", "*", "*"]  # every day


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("61 7 * * * digest run", "bad minute field '61'"),
        ("0 7 * 13 * digest run", "bad month field '13'"),
        ("0 7 * * mon-fri digest run", None),
        ("0 7 * * * date +%F && digest run", "unescaped %"),
        ("0 7 * * * digest status", "does not call `digest run`"),
        ("0 7 * * digest run", "does not call `digest run`"),
        ("@daily digest run", None),
    ],
)
def test_crontab_verifier_catches_bad_lines(tmp_path: Path, line: str, problem: str | None) -> None:
    path = tmp_path / "crontab"
    path.write_text(f"# test\nDIGEST_CONFIG=/x.toml\n{line}\n", encoding="utf-8")
    errors = _verify().check_crontab(path)
    if problem is None:
        assert errors == []
    else:
        assert any(problem in e for e in errors), errors


# --------------------------------------------------------------------------- systemd


def test_serve_unit_is_hardened_and_restarts() -> None:
    s = _unit("digest.service")["Service"]
    assert s["Type"] == "simple"
    assert s["Restart"] == "on-failure"
    assert s["User"] == "digest"
    assert s["ExecStart"].endswith("digest serve --web")
    assert s["NoNewPrivileges"] == "yes"
    assert s["ProtectSystem"] == "strict"
    assert s["ReadWritePaths"] == "/var/lib/digest"
    assert s["EnvironmentFile"] == "/etc/digest/digest.env"
    assert s["KillSignal"] == "SIGTERM"
    assert s["TimeoutStopSec"]


def test_timer_runs_oneshot_daily_and_catches_up() -> None:
    s = _unit("digest-run.service")["Service"]
    assert s["Type"] == "oneshot"
    assert "digest run" in s["ExecStart"]
    assert "75" in s["SuccessExitStatus"].split()  # lock held by another run: harmless
    t = _unit("digest-run.timer")["Timer"]
    assert t["OnCalendar"] == "*-*-* 07:00:00"
    assert t["Persistent"] == "true"
    assert t["RandomizedDelaySec"]
    assert t["Unit"] == "digest-run.service"


# --------------------------------------------------------------------------- docker


def test_dockerfile_runs_as_non_root_with_healthcheck() -> None:
    lines = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8").splitlines()
    final = lines[max(i for i, ln in enumerate(lines) if ln.startswith("FROM ")) :]
    assert final[0].startswith("FROM python:3.11-slim")
    users = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    text = "\n".join(final)
    assert "HEALTHCHECK" in text and "urllib.request" in text
    assert "http://127.0.0.1:8000/healthz" in text
    assert 'VOLUME ["/data"]' in text
    assert 'ENTRYPOINT ["digest"]' in text
    # The templates ship inside the package: copied into the build stage, not beside it.
    assert "DIGEST_TEMPLATES" not in text and "COPY templates/" not in text
    build = "\n".join(lines[: lines.index(final[0])])
    assert "COPY templates/ templates/" in build and "LICENSE" in build


def test_compose_has_serve_web_and_mail_catcher_on_one_store() -> None:
    compose = _docs(DEPLOY / "docker" / "compose.yaml")[0]
    svc = compose["services"]
    assert svc["digest"]["command"] == ["serve", "--web"]
    assert svc["web"]["command"] == ["web"] and svc["web"]["profiles"] == ["split"]
    assert "8000:8000" in svc["digest"]["ports"]
    assert svc["mailpit"]["image"].startswith("axllent/mailpit:")
    assert "store" in compose["volumes"]
    for name in ("digest", "web"):
        assert "store:/data" in svc[name]["volumes"]
        assert "./digest.toml:/config/digest.toml:ro" in svc[name]["volumes"]
    cfg = _verify().example_configs()["docker/digest.toml"]
    assert (cfg.smtp.host, cfg.smtp.port, cfg.smtp.security) == ("mailpit", 1025, "none")


# --------------------------------------------------------------------------- kubernetes


def test_cronjob_forbids_overlap_and_reads_secrets() -> None:
    cj = _kind(DEPLOY / "k8s" / "cronjob.yaml", "CronJob")["spec"]
    assert cj["concurrencyPolicy"] == "Forbid"
    assert cj["startingDeadlineSeconds"] > 0
    assert cj["timeZone"]
    assert cj["jobTemplate"]["spec"]["backoffLimit"] >= 0
    pod = cj["jobTemplate"]["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"][0] == "run"
    env = {e["name"]: e for e in c["env"]}
    for name in ("DIGEST_SECRET", "DIGEST_SMTP_USER", "DIGEST_SMTP_PASSWORD"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "digest-secrets"
    vols = {v["name"]: v for v in pod["volumes"]}
    assert vols["store"]["persistentVolumeClaim"]["claimName"] == "digest-store"
    assert vols["config"]["configMap"]["name"] == "digest-config"
    assert pod["securityContext"]["runAsNonRoot"] is True
    _kind(DEPLOY / "k8s" / "cronjob.yaml", "PersistentVolumeClaim")
    _kind(DEPLOY / "k8s" / "secret.example.yaml", "Secret")


def test_serve_deployment_is_single_replica_store_owner() -> None:
    dep = _kind(DEPLOY / "k8s" / "serve.yaml", "Deployment")["spec"]
    assert dep["replicas"] == 1 and dep["strategy"]["type"] == "Recreate"
    (c,) = dep["template"]["spec"]["containers"]
    assert c["args"] == ["serve", "--web"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/healthz"


# --------------------------------------------------------------------------- github actions


def test_workflow_is_scheduled_serialised_and_uses_secrets() -> None:
    wf = _docs(WORKFLOW)[0]
    on = wf.get("on", wf.get(True))  # PyYAML reads the bare key `on` as True (YAML 1.1)
    assert on["schedule"][0]["cron"] and "workflow_dispatch" in on
    assert wf["concurrency"]["cancel-in-progress"] is False
    assert wf["permissions"] == {"contents": "write"}  # no keepalive: private repos only
    job = wf["jobs"]["run"]
    assert job["env"]["DIGEST_SMTP_USER"] == "${{ secrets.SMTP_USER }}"
    assert job["env"]["DIGEST_SMTP_PASSWORD"] == "${{ secrets.SMTP_PASSWORD }}"
    assert job["env"]["DIGEST_SECRET"] == "${{ secrets.DIGEST_SECRET }}"
    runs = "\n".join(s.get("run", "") for s in job["steps"])
    assert "digest run" in runs
    assert "pip install ." in runs
    assert "digest-state" in runs and "git push" in runs
    assert "DIGEST_TEMPLATES" not in job["env"]  # the templates ship inside the package


def test_github_recipe_manages_no_people_through_seeds() -> None:
    """Subscribers live in the store (the state branch), managed by `digest subscribers`
    through the manual run's input; the config on the default branch names nobody."""
    cfg = _verify().example_configs()["github/digest.toml"]
    assert cfg.subscribers == ()
    assert "[[subscribers]]" not in "".join(
        ln
        for ln in (DEPLOY / "github" / "digest.toml").read_text().splitlines(True)
        if not ln.lstrip().startswith("#")
    )
    wf = _docs(WORKFLOW)[0]
    on = wf.get("on", wf.get(True))
    assert "subscribers" in on["workflow_dispatch"]["inputs"]
    text = WORKFLOW.read_text(encoding="utf-8")
    assert "PRIVATE REPOSITORIES ONLY" in text and "addresses" in text
    readme = (DEPLOY / "README.md").read_text(encoding="utf-8")
    assert "private" in readme and "addresses" in readme


def _step_script(name: str) -> str:
    (step,) = [s for s in _docs(WORKFLOW)[0]["jobs"]["run"]["steps"] if s.get("name") == name]
    return str(step["run"])


@pytest.mark.parametrize(
    ("private", "secret", "ok"),
    [("true", "s" * 43, True), ("false", "s" * 43, False), ("true", "", False)],
)
def test_workflow_refuses_a_public_repository_or_a_missing_secret(
    tmp_path: Path, private: str, secret: str, ok: bool
) -> None:
    """The guard step, run for real: a public repository would publish the state branch's
    addresses; without DIGEST_SECRET digest would keep a generated one in the store,
    which the save step commits."""
    script = _step_script("Refuse a public repository or a missing secret")
    # A stand-in for the GitHub CLI: answers `gh api repos/OWNER/NAME --jq .private`.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    gh = bin_dir / "gh"
    gh.write_text(
        '#!/bin/sh\n[ "$1 $2 $3 $4" = "api repos/o/r --jq .private" ] || exit 9\n'
        'echo "$FAKE_PRIVATE"\n'
    )
    gh.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "GITHUB_REPOSITORY": "o/r",
        "FAKE_PRIVATE": private,
        "DIGEST_SECRET": secret,
    }
    r = subprocess.run(
        ["bash", "-eo", "pipefail", "-c", script], env=env, capture_output=True, text=True
    )
    assert (r.returncode == 0) is ok, r.stdout + r.stderr
    if not ok:
        assert "::error::" in r.stdout


def test_workflow_subscribers_input_runs_the_cli_without_a_shell(tmp_path: Path) -> None:
    """The manual run's "subscribers" input goes to `digest subscribers` through shlex:
    quoted keywords stay one argument and shell syntax is never evaluated."""
    script = _step_script("Manage subscribers (instead of the run)")
    script = script.replace("python ", f"{sys.executable} ", 1)
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[store]\npath = "{tmp_path / "store"}"\n', encoding="utf-8")

    def step(subscribers: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DIGEST_CONFIG": str(cfg), "SUBSCRIBERS": subscribers}
        return subprocess.run(
            ["bash", "-eo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    add = 'add ada@example.org --keywords "speech recognition, -survey" --max 5'
    r = step(add + "; touch pwned")
    # ";", "touch" and "pwned" are mere arguments (refused by argparse); no shell ran them.
    assert r.returncode == 2 and "unrecognized arguments: touch pwned" in r.stderr, r.stderr
    assert not (tmp_path / "pwned").exists()
    r = step(add)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "added ada@example.org: keywords speech recognition, -survey; max 5" in r.stdout


# --------------------------------------------------------------------------- cross-checks


def test_example_configs_load_and_wiring_holds() -> None:
    verify = _verify()
    configs = verify.example_configs()
    assert set(configs) == {
        "docker/digest.toml",
        "systemd/digest.toml",
        "github/digest.toml",
        "k8s/cronjob.yaml ConfigMap",
        "docker/digest.postgres.toml",
        "k8s/scale.yaml ConfigMap",
    }
    assert verify.check_wiring() == []
    # The workflow checks the digest-state branch out at <repository>/.state.
    github = configs["github/digest.toml"]
    assert github.store.path.resolve() == ROOT / ".state" / "store"
    assert github.outbox.path.resolve() == ROOT / ".state" / "outbox"


def test_recipe_command_lines_parse_with_the_cli() -> None:
    verify = _verify()
    commands = verify.recipe_commands()
    assert commands["systemd/digest.service"] == ["serve", "--web"]
    assert commands["cron/crontab"][0] == "run"
    # the scaled-out recipes (PostgreSQL): workers run the day, web replicas serve pages
    assert commands["docker/compose.postgres.yaml worker"][0] == "run"
    assert commands["docker/compose.postgres.yaml web"] == ["web"]
    assert commands["k8s/scale.yaml CronJob"][0] == "run"
    assert commands["k8s/scale.yaml Deployment"] == ["web"]
    assert len(commands) == 14
    assert verify.check_cli() == []


def test_verifier_catches_broken_wiring(tmp_path: Path) -> None:
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copytree(WORKFLOW.parent, tmp_path / ".github" / "workflows")
    compose = tmp_path / "deploy" / "docker" / "compose.yaml"
    text = compose.read_text(encoding="utf-8")
    compose.write_text(
        text.replace("    DIGEST_SECRET: ${DIGEST_SECRET:-}\n", ""), encoding="utf-8"
    )
    serve = tmp_path / "deploy" / "k8s" / "serve.yaml"
    serve.write_text(
        serve.read_text(encoding="utf-8").replace("mountPath: /data", "mountPath: /srv"),
        encoding="utf-8",
    )
    toml = tmp_path / "deploy" / "docker" / "digest.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace('host = "0.0.0.0"', 'host = "127.0.0.1"'),
        encoding="utf-8",
    )
    scale = tmp_path / "deploy" / "k8s" / "scale.yaml"
    text = scale.read_text(encoding="utf-8")
    cut = text.rindex("            - name: DIGEST_DATABASE_URL")  # the web Deployment's
    end = text.index("key: database-url\n", cut) + len("key: database-url\n")
    text = (text[:cut] + text[end:]).replace("replicas: 3", "replicas: 1")
    scale.write_text(text, encoding="utf-8")
    unit = tmp_path / "deploy" / "systemd" / "digest.service"
    unit.write_text(
        unit.read_text(encoding="utf-8").replace("serve --web", "serve --webb"), encoding="utf-8"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "deploy" / "verify.py"), "all"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "compose.yaml: service digest does not pass DIGEST_SECRET" in proc.stdout
    assert "serve.yaml: Deployment: store /data/store is not on the PVC" in proc.stdout
    assert "docker/digest.toml: [web] host '127.0.0.1' is unreachable" in proc.stdout
    assert "systemd/digest.service: `digest serve --webb` does not parse" in proc.stdout
    assert "scale.yaml: Deployment does not set DIGEST_DATABASE_URL" in proc.stdout
    assert "scale.yaml: the web Deployment has fewer than 2 replicas" in proc.stdout


@pytest.mark.parametrize("smtp", [True, False])
def test_verifier_catches_a_recipe_with_the_sample_day_on(tmp_path: Path, smtp: bool) -> None:
    """No recipe may turn on the bundled sample day: with an SMTP host digest's loader
    refuses it, and verify.py refuses it for an outbox-only recipe as well."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    gh = tmp_path / "deploy" / "github" / "digest.toml"
    text = gh.read_text(encoding="utf-8") + "\n[sources]\noffline_fallback = true\n"
    if not smtp:
        text = text.replace('host = "smtp.example.org"', 'host = ""')
    gh.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "deploy" / "verify.py"), "configs"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    if smtp:
        assert "github/digest.toml: [sources] offline_fallback: must be false" in proc.stdout
    else:
        assert "github/digest.toml: [sources] offline_fallback is on" in proc.stdout


# --------------------------------------------------------------------------- behaviour


def _healthcheck_argv() -> list[str]:
    import json

    text = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
    joined = text.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if ln.startswith("HEALTHCHECK")]
    argv = json.loads(line[line.index("CMD") + 3 :].strip())
    assert argv[0] == "python"
    return [sys.executable, *argv[1:]]


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False), (None, False)])
def test_docker_healthcheck_command(status: int | None, healthy: bool) -> None:
    """The image's HEALTHCHECK, run for real against a local /healthz."""
    import http.server
    import socket
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port = server.server_address[1]
    if status is None:  # nothing listening: connection refused
        server.server_close()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {**os.environ, "DIGEST_HEALTH_URL": f"http://127.0.0.1:{port}/healthz"}
        proc = subprocess.run(
            _healthcheck_argv(), env=env, capture_output=True, text=True, timeout=30
        )
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()
    assert (proc.returncode == 0) is healthy, proc.stderr


def _workflow_step(name: str) -> str:
    (step,) = [s for s in _docs(WORKFLOW)[0]["jobs"]["run"]["steps"] if s.get("name") == name]
    return str(step["run"]).replace("${{ github.run_id }}", "4242")


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout


def test_workflow_keeps_the_store_on_the_state_branch(tmp_path: Path) -> None:
    """The restore and save steps, run for real against a local bare 'origin'."""
    restore = _workflow_step("Restore the store from the digest-state branch")
    save = _workflow_step("Save the store to the digest-state branch")
    origin, seed = tmp_path / "origin.git", tmp_path / "seed"
    _git("init", "-q", "--bare", "-b", "main", str(origin), cwd=tmp_path)
    _git("init", "-q", "-b", "main", str(seed), cwd=tmp_path)
    (seed / "README.md").write_text("repo\n", encoding="utf-8")
    _git("add", "README.md", cwd=seed)
    _git("commit", "-q", "-m", "init", cwd=seed)
    _git("push", "-q", str(origin), "main", cwd=seed)

    def run_job(n: int, write: str | None) -> str:
        work = tmp_path / f"run{n}"  # like actions/checkout: a fresh shallow clone
        _git("clone", "-q", "--depth", "1", f"file://{origin}", str(work), cwd=tmp_path)
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.org",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.org",
        }
        r = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", restore],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        store = work / ".state" / "store"
        before = (store / "seen.json").read_text(encoding="utf-8") if store.exists() else ""
        if write is not None:
            store.mkdir(parents=True, exist_ok=True)
            (store / "seen.json").write_text(write, encoding="utf-8")
            (store / "run.lock").write_text("", encoding="utf-8")
            (store / "secret.key").write_text("generated-by-the-store\n", encoding="utf-8")
        s = subprocess.run(
            ["bash", "-eo", "pipefail", "-c", save],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert s.returncode == 0, s.stdout + s.stderr
        return before

    assert run_job(1, '{"a": 1}') == ""  # first run: no branch yet, starts empty
    assert run_job(2, '{"a": 1, "b": 2}') == '{"a": 1}'  # the store came back
    assert run_job(3, None) == '{"a": 1, "b": 2}'  # unchanged: nothing committed
    log = _git("--git-dir", str(origin), "log", "--format=%s", "digest-state", cwd=tmp_path)
    assert log.splitlines() == ["digest state after run 4242"] * 2
    files = _git(
        "--git-dir", str(origin), "ls-tree", "-r", "--name-only", "digest-state", cwd=tmp_path
    ).split()
    # no lock files, no secret, no main-branch files
    assert files == [".gitignore", "store/seen.json"]
