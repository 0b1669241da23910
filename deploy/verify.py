"""I/O edge: reads the deploy recipes and checks what no off-the-shelf linter knows.

The linters (hadolint, actionlint, systemd-analyze, kubernetes-validate, check-jsonschema)
check each file's own syntax. This checks the recipes against the product and each other:

  crontab      every job line has five valid time fields, calls `digest run`, and has no
               bare `%` (cron turns it into a newline, crontab(5)).
  configs      every example TOML (including the one inside the Kubernetes ConfigMap) is
               accepted by digest's own config loader, with the offline fallback off.
  wiring       every environment variable a config names (SMTP user/password, signing
               secret) is provided by the runner that uses that config; the config is
               mounted where DIGEST_CONFIG points; the store is on the persistent volume
               (or under the systemd units' ReadWritePaths); in containers the web service
               listens on all interfaces, on the port that is published and health-checked;
               the Dockerfile copies existing files, enough for `pip install .` (which
               puts the templates inside the package).
  (scaled)     the PostgreSQL recipes (compose.postgres.yaml, k8s/scale.yaml): the database
               URL's variable reaches every digest container (from a Secret in Kubernetes),
               no store volume, several workers and web replicas.
  cli          every `digest ...` command line in the recipes parses with digest's own
               argument parser (the commands and flags exist).

Usage: python deploy/verify.py {crontab,configs,wiring,cli,all}. Prints one line per problem,
exits 1 if there is any. Needs PyYAML for the YAML recipes.
"""

from __future__ import annotations

import configparser
import contextlib
import importlib
import io
import json
import re
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent

CRON_FIELDS = (  # name, low, high, names (crontab(5))
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    (
        "month",
        1,
        12,
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
    ),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)
CRON_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\s*=")


def _yaml_docs(path: Path) -> list[dict[str, Any]]:
    import yaml  # only the YAML checks need it

    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d]


def _digest(module: str) -> Any:
    """A digest module, from the installed package or else from this checkout."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        sys.path.insert(0, str(ROOT))  # run from a checkout without `pip install .`
        return importlib.import_module(module)


def _load_config(path: Path) -> Any:
    return _digest("digest.config").load_config(path)


# --------------------------------------------------------------------------- crontab


def _cron_field(text: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    def value(v: str) -> int | None:
        if v.isdigit():
            return int(v)
        return names.index(v.lower()) + low if v.lower() in names else None

    for part in text.split(","):
        rng, _, step = part.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return False
        if rng == "*":
            continue
        lo, _, hi = rng.partition("-")
        ends = [value(lo)] + ([value(hi)] if hi else [])
        if any(e is None or not low <= e <= high for e in ends):
            return False
        if hi and ends[0] > ends[1]:  # type: ignore[operator]
            return False
    return True


def check_crontab(path: Path) -> list[str]:
    """Problems in a crontab file, one line each; [] when it is fine."""
    errors: list[str] = []
    jobs = 0
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#") or CRON_ENV.match(line):
            continue
        parts = line.split(None, 5)
        if line.startswith("@"):
            parts = [line.split(None, 1)[0]] + line.split(None, 1)[1:]
            if parts[0] not in (
                "@daily",
                "@midnight",
                "@hourly",
                "@weekly",
                "@monthly",
                "@yearly",
                "@annually",
                "@reboot",
            ):
                errors.append(f"{path.name}:{n}: unknown special schedule {parts[0]}")
                continue
            command = parts[1] if len(parts) > 1 else ""
        else:
            if len(parts) < 6:
                errors.append(f"{path.name}:{n}: expected 5 time fields and a command")
                continue
            for text, (name, low, high, names) in zip(parts[:5], CRON_FIELDS, strict=True):
                if not _cron_field(text, low, high, names):
                    errors.append(f"{path.name}:{n}: bad {name} field {text!r}")
            command = parts[5]
        jobs += 1
        if re.search(r"(?<!\\)%", command):
            errors.append(f"{path.name}:{n}: unescaped % in the command (cron makes it a newline)")
        if not re.search(r"(^|[\s/])digest run(\s|$)", command):
            errors.append(f"{path.name}:{n}: the command does not call `digest run`")
    if jobs == 0:
        errors.append(f"{path.name}: no job line")
    return errors


def crontab_command(path: Path) -> str:
    """The command part of the first job line (for shellcheck)."""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#") and not CRON_ENV.match(line):
            return line.split(None, 5)[5]
    raise ValueError(f"{path}: no job line")


# --------------------------------------------------------------------------- configs


def configmap_toml(path: Path) -> str:
    for doc in _yaml_docs(path):
        if doc.get("kind") == "ConfigMap" and "digest.toml" in doc.get("data", {}):
            return str(doc["data"]["digest.toml"])
    raise ValueError(f"{path}: no ConfigMap with a digest.toml key")


def example_configs() -> dict[str, Any]:
    """name -> loaded Config for every example config in deploy/ (raises ConfigError)."""
    out: dict[str, Any] = {}
    for rel in ("docker/digest.toml", "systemd/digest.toml", "github/digest.toml"):
        out[rel] = _load_config(DEPLOY / rel)
    out["docker/digest.postgres.toml"] = _load_config(DEPLOY / "docker" / "digest.postgres.toml")
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("cronjob.yaml", "scale.yaml"):
            p = Path(tmp) / "digest.toml"
            p.write_text(configmap_toml(DEPLOY / "k8s" / name), encoding="utf-8")
            out[f"k8s/{name} ConfigMap"] = _load_config(p)
    return out


def check_configs() -> list[str]:
    config_error = _digest("digest.errors").ConfigError
    try:
        configs = example_configs()
    except (config_error, ValueError) as e:
        return [str(e)]
    # The bundled sample day is for trying digest out: a recipe runs for real people, so
    # an outage must stop the run instead of mailing it (digest refuses it with an SMTP
    # host anyway; this also covers the recipes that write to an outbox).
    return [
        f"{name}: [sources] offline_fallback is on; recipes must leave it off"
        for name, cfg in configs.items()
        if cfg.sources.offline_fallback
    ]


# --------------------------------------------------------------------------- wiring


def _needed_env(cfg: Any) -> set[str]:
    names = {cfg.web.secret_env}
    if cfg.store.backend == "postgresql":
        names.add(cfg.store.url_env)  # the database URL (with its password)
    if cfg.smtp.host:
        names |= {cfg.smtp.username_env, cfg.smtp.password_env}
    return {n for n in names if n}


def _k8s_containers(path: Path) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(kind, pod spec, container) for every workload in a manifest file."""
    out = []
    for doc in _yaml_docs(path):
        spec = doc.get("spec", {})
        if doc.get("kind") == "CronJob":
            pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        elif doc.get("kind") in ("Deployment", "StatefulSet", "Job"):
            pod = spec["template"]["spec"]
        else:
            continue
        out += [(doc["kind"], pod, c) for c in pod["containers"]]
    return out


def check_wiring() -> list[str]:
    errors: list[str] = []
    cfgs = example_configs()

    # Docker Compose: env names provided, config mounted at DIGEST_CONFIG, store on a volume.
    compose = _yaml_docs(DEPLOY / "docker" / "compose.yaml")[0]
    cfg = cfgs["docker/digest.toml"]
    for name, svc in compose["services"].items():
        if "build" not in svc:
            continue  # mailpit
        env = svc.get("environment", {})
        for var in sorted(_needed_env(cfg) - set(env)):
            errors.append(f"compose.yaml: service {name} does not pass {var}")
        mounts = {}  # container path -> source, from "source:target[:mode]"
        for volume in svc.get("volumes", []):
            source, target = volume.split(":")[:2]
            mounts[target] = source
        if mounts.get(env.get("DIGEST_CONFIG", "")) != "./digest.toml":
            errors.append(
                f"compose.yaml: service {name}: DIGEST_CONFIG is not the mounted digest.toml"
            )
        if not any(str(cfg.store.path).startswith(m + "/") for m in mounts):
            errors.append(f"compose.yaml: service {name}: store {cfg.store.path} is on no volume")

    # The published port and the image's HEALTHCHECK reach the web service in the container.
    if cfg.web.host != "0.0.0.0":
        errors.append(
            f"docker/digest.toml: [web] host {cfg.web.host!r} is unreachable from "
            'outside the container; use "0.0.0.0"'
        )
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8")
    if f"DIGEST_HEALTH_URL=http://127.0.0.1:{cfg.web.port}/healthz" not in dockerfile:
        errors.append(f"Dockerfile: DIGEST_HEALTH_URL does not poll port {cfg.web.port}/healthz")
    for name, svc in compose["services"].items():
        if "build" in svc and not all(
            str(p).endswith(f":{cfg.web.port}") for p in svc.get("ports", [])
        ):
            errors.append(
                f"compose.yaml: service {name} publishes a port other than "
                f"[web] port {cfg.web.port}"
            )

    # The image build: what the Dockerfile copies from the context exists, and the build
    # stage has what `pip install .` needs (pyproject's readme, the package).
    build_copies: list[str] = []
    for line in dockerfile.replace("\\\n", " ").splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and not any(w.startswith("--from") for w in words):
            for src in words[1:-1]:
                if not (ROOT / src).exists():
                    errors.append(f"Dockerfile: COPY {src}: no such file in the repository")
                build_copies.append(src.rstrip("/"))
    for needed in ("pyproject.toml", "README.md", "LICENSE", "digest", "templates"):
        if needed not in build_copies:
            errors.append(f"Dockerfile: {needed} is not copied into the image build")

    # Kubernetes: env from the Secret, ConfigMap mounted at DIGEST_CONFIG, store on the PVC.
    cfg = cfgs["k8s/cronjob.yaml ConfigMap"]
    if cfg.web.host != "0.0.0.0":
        errors.append(
            f"k8s ConfigMap: [web] host {cfg.web.host!r} is unreachable from the "
            'Service; use "0.0.0.0"'
        )
    for fname in ("cronjob.yaml", "serve.yaml"):
        for kind, pod, c in _k8s_containers(DEPLOY / "k8s" / fname):
            env = {e["name"]: e for e in c.get("env", [])}
            for var in sorted(_needed_env(cfg) - set(env)):
                errors.append(f"{fname}: {kind} does not set {var}")
            for var in sorted(_needed_env(cfg) & set(env)):
                if "secretKeyRef" not in env[var].get("valueFrom", {}):
                    errors.append(f"{fname}: {kind}: {var} is not read from a Secret")
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            mounts = {m["mountPath"]: vols.get(m["name"], {}) for m in c.get("volumeMounts", [])}
            conf = env.get("DIGEST_CONFIG", {}).get("value", "")
            if "configMap" not in mounts.get(str(Path(conf).parent), {}):
                errors.append(f"{fname}: {kind}: DIGEST_CONFIG {conf!r} is not in the ConfigMap")
            if not any(
                str(cfg.store.path).startswith(m + "/") and "persistentVolumeClaim" in v
                for m, v in mounts.items()
            ):
                errors.append(f"{fname}: {kind}: store {cfg.store.path} is not on the PVC")
            for port in c.get("ports", []):
                if port["containerPort"] != cfg.web.port:
                    errors.append(
                        f"{fname}: {kind}: containerPort {port['containerPort']} is "
                        f"not [web] port {cfg.web.port}"
                    )

    errors += _check_scaled_out(cfgs)

    # systemd (and cron, same config): env file provides the names, store is writable.
    cfg = cfgs["systemd/digest.toml"]
    env_file = (DEPLOY / "systemd" / "digest.env.example").read_text(encoding="utf-8")
    provided = {ln.split("=", 1)[0] for ln in env_file.splitlines() if CRON_ENV.match(ln)}
    for var in sorted(_needed_env(cfg) - provided):
        errors.append(f"digest.env.example does not set {var}")
    for unit in ("digest.service", "digest-run.service"):
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        cp.optionxform = str  # type: ignore[assignment,method-assign]
        cp.read(DEPLOY / "systemd" / unit, encoding="utf-8")
        rw = cp.get("Service", "ReadWritePaths", fallback="").split()
        for p in (cfg.store.path, cfg.outbox.path):
            if not any(str(p).startswith(d.lstrip("-") + "/") for d in rw):
                errors.append(f"{unit}: {p} is not under ReadWritePaths")

    # GitHub Actions: every name the config wants comes from a repository secret.
    wf = _yaml_docs(ROOT / ".github" / "workflows" / "digest.yml")[0]
    cfg = cfgs["github/digest.toml"]
    for job_name, job in wf["jobs"].items():
        env = job.get("env", {})
        for var in sorted(_needed_env(cfg)):
            if "secrets." not in str(env.get(var, "")):
                errors.append(f"digest.yml: job {job_name}: {var} is not set from a secret")
    return errors


def _check_scaled_out(cfgs: dict[str, Any]) -> list[str]:
    """The PostgreSQL recipes (compose.postgres.yaml, k8s/scale.yaml): the store is the
    database named by [store] url_env, which every digest container gets (in Kubernetes
    from a Secret: the URL holds the password); config mounted at DIGEST_CONFIG; several
    workers and web replicas."""
    errors: list[str] = []
    compose = _yaml_docs(DEPLOY / "docker" / "compose.postgres.yaml")[0]
    cfg = cfgs["docker/digest.postgres.toml"]
    if cfg.store.backend != "postgresql":
        errors.append("docker/digest.postgres.toml: [store] backend is not postgresql")
    if "postgres" not in compose["services"]:
        errors.append("compose.postgres.yaml: no postgres service")
    for name, svc in compose["services"].items():
        if "build" not in svc:
            continue
        env = svc.get("environment", {})
        for var in sorted(_needed_env(cfg) - set(env)):
            errors.append(f"compose.postgres.yaml: service {name} does not pass {var}")
        url = str(env.get(cfg.store.url_env, ""))
        if "@postgres:" not in url:
            errors.append(
                f"compose.postgres.yaml: service {name}: {cfg.store.url_env} "
                "does not point at the postgres service"
            )
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc.get("volumes", [])}
        if mounts.get(env.get("DIGEST_CONFIG", "")) != "./digest.postgres.toml":
            errors.append(
                f"compose.postgres.yaml: service {name}: DIGEST_CONFIG is not "
                "the mounted digest.postgres.toml"
            )
        if "postgres" not in svc.get("depends_on", {}):
            errors.append(f"compose.postgres.yaml: service {name} does not wait for postgres")
    if compose["services"].get("web", {}).get("deploy", {}).get("replicas", 1) < 2:
        errors.append("compose.postgres.yaml: web has fewer than 2 replicas")

    cfg = cfgs["k8s/scale.yaml ConfigMap"]
    if cfg.store.backend != "postgresql":
        errors.append("k8s/scale.yaml ConfigMap: [store] backend is not postgresql")
    kinds = set()
    for kind, pod, c in _k8s_containers(DEPLOY / "k8s" / "scale.yaml"):
        kinds.add(kind)
        env = {e["name"]: e for e in c.get("env", [])}
        for var in sorted(_needed_env(cfg) - set(env)):
            errors.append(f"scale.yaml: {kind} does not set {var}")
        for var in sorted(_needed_env(cfg) & set(env)):
            if "secretKeyRef" not in env[var].get("valueFrom", {}):
                errors.append(f"scale.yaml: {kind}: {var} is not read from a Secret")
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        mounts = {m["mountPath"]: vols.get(m["name"], {}) for m in c.get("volumeMounts", [])}
        conf = env.get("DIGEST_CONFIG", {}).get("value", "")
        if "configMap" not in mounts.get(str(Path(conf).parent), {}):
            errors.append(f"scale.yaml: {kind}: DIGEST_CONFIG {conf!r} is not in the ConfigMap")
        if any("persistentVolumeClaim" in v for v in vols.values()):
            errors.append(f"scale.yaml: {kind}: mounts a PVC; the store is the database")
    docs = {d["kind"]: d for d in _yaml_docs(DEPLOY / "k8s" / "scale.yaml")}
    job = docs.get("CronJob", {}).get("spec", {}).get("jobTemplate", {}).get("spec", {})
    if job.get("parallelism", 1) < 2:
        errors.append("scale.yaml: the worker Job has parallelism below 2")
    if docs.get("Deployment", {}).get("spec", {}).get("replicas", 1) < 2:
        errors.append("scale.yaml: the web Deployment has fewer than 2 replicas")
    if {"CronJob", "Deployment"} - kinds:
        errors.append("scale.yaml: needs a worker CronJob and a web Deployment")
    secret = _yaml_docs(DEPLOY / "k8s" / "secret.example.yaml")[0]
    if "database-url" not in secret.get("stringData", {}):
        errors.append("secret.example.yaml: no database-url key (scale.yaml reads it)")
    return errors


# --------------------------------------------------------------------------- cli


def recipe_commands() -> dict[str, list[str]]:
    """where -> the arguments after `digest`, for every command line in the recipes."""

    def after_digest(line: str) -> list[str]:
        words = shlex.split(line.split(">>")[0])
        i = max(i for i, w in enumerate(words) if w == "digest" or w.endswith("/digest"))
        return words[i + 1 :]

    out: dict[str, list[str]] = {}
    out["cron/crontab"] = after_digest(crontab_command(DEPLOY / "cron" / "crontab"))
    for unit in ("digest.service", "digest-run.service"):
        cp = configparser.ConfigParser(strict=False, interpolation=None)
        cp.read(DEPLOY / "systemd" / unit, encoding="utf-8")
        out[f"systemd/{unit}"] = after_digest(cp.get("Service", "ExecStart"))
    for line in (DEPLOY / "docker" / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if line.startswith("CMD "):
            out["docker/Dockerfile CMD"] = json.loads(line[4:])
    for cname in ("compose.yaml", "compose.postgres.yaml"):
        compose = _yaml_docs(DEPLOY / "docker" / cname)[0]
        for name, svc in compose["services"].items():
            if "build" in svc:
                out[f"docker/{cname} {name}"] = list(svc["command"])
    for fname in ("cronjob.yaml", "serve.yaml", "scale.yaml"):
        for kind, _pod, c in _k8s_containers(DEPLOY / "k8s" / fname):
            out[f"k8s/{fname} {kind}"] = list(c["args"])
    wf = _yaml_docs(ROOT / ".github" / "workflows" / "digest.yml")[0]
    for job_name, job in wf["jobs"].items():
        for step in job["steps"]:
            run = str(step.get("run", ""))
            if run.startswith("digest "):
                # The optional ${RUN_DATE:+...} expands to nothing or to `--date DAY`.
                base = run.split("${")[0]
                out[f"digest.yml {job_name}"] = after_digest(base)
                out[f"digest.yml {job_name} --date"] = after_digest(base) + ["--date", "2026-01-05"]
    return out


def check_cli() -> list[str]:
    parser = _digest("digest.cli").build_parser()
    errors = []
    for where, argv in recipe_commands().items():
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err):
                parser.parse_args(argv)
        except SystemExit:
            last = (err.getvalue().strip().splitlines() or ["?"])[-1]
            errors.append(f"{where}: `digest {' '.join(argv)}` does not parse: {last}")
    return errors


def main(argv: list[str]) -> int:
    what = argv[0] if argv else "all"
    checks = {
        "crontab": lambda: check_crontab(DEPLOY / "cron" / "crontab"),
        "configs": check_configs,
        "wiring": check_wiring,
        "cli": check_cli,
    }
    if what not in checks and what != "all":
        print(f"usage: verify.py {{{','.join(checks)},all}}", file=sys.stderr)
        return 2
    errors = [e for name, fn in checks.items() if what in (name, "all") for e in fn()]
    for e in errors:
        print(e)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
