"""Installing digest the way a user does: a wheel (and a wheel built from the sdist) in a
fresh virtualenv, run from another folder, finds its templates inside the package.

No network: the wheel and the sdist are built with the test environment's own setuptools
(`--no-build-isolation`, PEP 517 hooks), the fresh venv gets the wheel with `--no-deps`,
and its dependencies come from the test environment through a `.pth` line (what a
wheelhouse would otherwise provide). The fresh venv's own site-packages comes first, so
`import digest` there is the installed wheel, never this checkout (asserted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import default as default_policy
from pathlib import Path

import pytest
from httpfixture import FixtureServer

ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT = 300


def _source_tree(dest: Path) -> Path:
    """A copy of the project's files (tracked and new, not ignored), so building writes
    nothing into the checkout."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.split(b"\0")
        files = [ROOT / f.decode() for f in listed if f]
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: cannot tell the project's files")
    for f in files:
        if f.is_file():
            target = dest / f.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, target)
    return dest


def _hook(tree: Path, hook: str, out: Path) -> Path:
    """Run a PEP 517 hook of the project's build backend (setuptools) in `tree`."""
    out.mkdir(parents=True, exist_ok=True)
    code = (
        "import sys, setuptools.build_meta as b; "
        f"print(b.{hook}(sys.argv[1]))"  # build_wheel / build_sdist
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out / r.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def srv() -> Iterator[FixtureServer]:
    with FixtureServer() as server:
        yield server


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    return _hook(_source_tree(tmp / "src"), "build_wheel", tmp / "dist")


def _template_files() -> set[str]:
    return {
        p.relative_to(ROOT / "templates").as_posix()
        for p in (ROOT / "templates").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_wheel_carries_the_templates_the_recorded_day_and_the_license(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.removeprefix("digest/templates/") for n in names if n.startswith("digest/")}
    assert _template_files() <= shipped, _template_files() - shipped
    assert "digest/data/recorded/hf_2026-03-10.json" in names
    assert not any(n.startswith("templates/") for n in names)  # no top-level "templates"
    (lic,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
    text = zipfile.ZipFile(wheel).read(lic).decode()
    assert text.startswith("MIT License") and text == (ROOT / "LICENSE").read_text()
    (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
    headers = BytesParser(policy=default_policy).parsebytes(zipfile.ZipFile(wheel).read(meta))
    assert headers["License-Expression"] == "MIT"


def test_sdist_builds_a_wheel_with_the_templates(tmp_path: Path) -> None:
    sdist = _hook(_source_tree(tmp_path / "src"), "build_sdist", tmp_path / "sdist")
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    (tree,) = (tmp_path / "unpacked").iterdir()
    assert (tree / "LICENSE").is_file() and (tree / "templates" / "subject.txt").is_file()
    built = _hook(tree, "build_wheel", tmp_path / "dist")
    names = set(zipfile.ZipFile(built).namelist())
    for name in _template_files():
        assert f"digest/templates/{name}" in names, name


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """pyproject lists the packages explicitly (package-dir maps templates/, which
    find cannot): a new folder under digest/ or templates/ must be added there."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    listed = set(cfg["setuptools"]["packages"])
    found = set()
    for base, name in ((ROOT / "digest", "digest"), (ROOT / "templates", "digest.templates")):
        for folder in [base, *base.rglob("*")]:
            if folder.is_dir() and "__pycache__" not in folder.parts:
                if any(p.is_file() for p in folder.iterdir()):
                    rel = folder.relative_to(base).parts
                    found.add(".".join((name, *rel)))
    assert found == listed, f"missing: {found - listed}; listed but absent: {listed - found}"


def test_editable_install_reads_the_checkouts_templates() -> None:
    from importlib import resources

    from digest.render import default_templates_dir

    assert Path(str(resources.files("digest.templates"))) == ROOT / "templates"
    assert default_templates_dir() == ROOT / "templates"


def _fresh_venv(tmp: Path, wheel: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120
    )
    py = venv / "bin" / "python"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            str(wheel),
        ],
        check=True,
        timeout=BUILD_TIMEOUT,
    )
    site = subprocess.run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # The dependencies (httpx, jinja2, ...) from the test environment, after the venv's
    # own site-packages. Its .pth files are not read from there, so this checkout's
    # editable install does not come along.
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(site) / "_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    return venv


def test_wheel_in_a_fresh_venv_runs_from_another_folder(
    wheel: Path, tmp_path: Path, srv: FixtureServer
) -> None:
    venv = _fresh_venv(tmp_path, wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    cfg = elsewhere / "digest.toml"
    cfg.write_text(
        f"""
[http]
retries = 0
[sources.huggingface]
base_url = "{srv.hf_base_url}"
lookback_days = 1
[store]
path = "state"
[outbox]
path = "mail"
[[subscribers]]
email = "ada@example.org"
keywords = "language models, reasoning"
""",
        encoding="utf-8",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DIGEST_TEMPLATES", "DIGEST_CONFIG", "PYTHONPATH", "VIRTUAL_ENV")
    }
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"

    def digest(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(venv / "bin" / "digest"), *args],
            cwd=elsewhere,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import digest; print(digest.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where  # the wheel, not this checkout

    # (--config before the command, as every version of digest accepts it)
    run = digest("--config", str(cfg), "run", "--date", "2026-01-14", "--no-progress")
    assert run.returncode == 0, run.stdout + run.stderr  # before: "templates: ... not a folder"
    assert "sent 1" in run.stdout
    (eml,) = (elsewhere / "mail").glob("*.eml")
    text = eml.read_text(encoding="utf-8")
    assert "Subject:" in text and "List-Unsubscribe:" in text
    assert (elsewhere / "state").is_dir()
    assert not (elsewhere / "data").exists()

    check = digest("--config", str(cfg), "check-config")
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip().splitlines()[-1] == f"config OK: {cfg}"
    assert str(venv) in check.stdout  # the templates it checked are the installed ones
