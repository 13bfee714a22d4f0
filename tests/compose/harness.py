#!/usr/bin/env python3
"""Offline image harness for the stack test: a Docker engine, Compose v2 and every image compose.yaml
needs, on a machine that reaches package registries but no image registry (our CI).

    python3 tests/compose/harness.py engine   # the engine and Compose v2, installed/started if missing
    python3 tests/compose/harness.py images   # the Debian base and the stand-in images
    python3 tests/compose/harness.py all      # both (what .ci/run calls)
    python3 tests/compose/harness.py check    # exit 0 only if the stack test can run now

The stand-in images exist ONLY because CI cannot pull images: they are built from Debian packages and
PyPI under the exact tags compose.yaml and the Dockerfile name, so compose.yaml and the project's
Dockerfile are tested unchanged. A user runs the real images. Every step is idempotent: an image built
from the same recipe (a hash stored in a label) is reused, a running engine is left alone.

Standard library only: this runs before any virtualenv exists. Each phase prints its seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STANDINS = HERE / "standins"
BASE_IMAGE = "local/debian:bookworm"
RECIPE_LABEL = "org.claude-mem.test-recipe"
CACHE = Path(os.environ.get("CLAUDE_MEM_HARNESS_CACHE", "/var/cache/claude-mem-harness"))
PLUGIN_DIR = Path("/usr/local/lib/docker/cli-plugins")
DOCKERD_LOG = Path("/var/log/claude-mem-dockerd.log")
CA_DIR = Path("/usr/local/share/ca-certificates")
# Project files a stand-in's build context needs (the LiteLLM stand-in pins its dependencies by the lock).
PROJECT_FILES = {"litellm": ("requirements-test.lock",)}
COMPOSE_SUITE = "trixie"  # Debian's docker-compose there is Compose v2 (bookworm's is v1)


class HarnessError(Exception):
    """A step that cannot be done here; the message says why, for the test's skip reason."""


def log(message: str) -> None:
    print(f"[harness] {message}", flush=True)


@contextmanager
def phase(name: str) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        log(f"phase {name}: {time.monotonic() - start:.1f} s")


def run(*argv: str, check: bool = True, quiet: bool = False, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a command; on failure raise HarnessError with its output's tail."""
    result = subprocess.run(argv, text=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        tail = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise HarnessError(f"`{' '.join(argv[:4])} ...` exited {result.returncode}:\n" + "\n".join(tail))
    if not quiet and result.returncode == 0 and os.environ.get("HARNESS_VERBOSE"):
        print(result.stdout, end="")
    return result


def ok(*argv: str) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


# --------------------------------------------------------------------------------------------------
# What compose.yaml and the Dockerfile name (never hard-coded here)
# --------------------------------------------------------------------------------------------------


def compose_images() -> dict[str, str]:
    """image name (without tag) -> full reference, from compose.yaml's `image:` lines."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^\s*image:\s*[\"']?([^\s\"'#]+)", (ROOT / "compose.yaml").read_text(), re.M):
        reference = match.group(1)
        found[reference.rsplit(":", 1)[0]] = reference
    return found


def dockerfile_bases() -> set[str]:
    """The external images the project's Dockerfile builds FROM (stage names excluded)."""
    bases: set[str] = set()
    stages: set[str] = set()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = line.split()
        if len(words) >= 2 and words[0].upper() == "FROM":
            if words[1] not in stages:
                bases.add(words[1])
            if len(words) >= 4 and words[2].upper() == "AS":
                stages.add(words[3])
    return bases


def locked_version(package: str, lock: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)", (ROOT / lock).read_text(), re.M | re.I)
    if not match:
        raise HarnessError(f"{package} is not pinned in {lock}")
    return match.group(1)


def standin_specs() -> list[tuple[str, str, dict[str, str]]]:
    """(stand-in directory, tag to build, build args), in build order (python first: the others use it)."""
    images = compose_images()
    pythons = [b for b in dockerfile_bases() if b.startswith("python:")]
    if len(pythons) != 1:
        raise HarnessError(f"expected one python base in the Dockerfile, found {sorted(pythons)}")
    python = pythons[0]
    for name in ("chromadb/chroma", "postgres", "ghcr.io/berriai/litellm"):
        if name not in images:
            raise HarnessError(f"compose.yaml has no {name} image")
    chroma_tag = images["chromadb/chroma"].rsplit(":", 1)[1]
    postgres_tag = images["postgres"].rsplit(":", 1)[1]
    return [
        ("python", python, {"BASE": BASE_IMAGE}),
        # The Chroma server at the version compose.yaml names.
        ("chroma", images["chromadb/chroma"], {"PYTHON": python, "CHROMADB_VERSION": chroma_tag}),
        # Debian's own PostgreSQL (the stand-in only needs to answer pg_isready and accept LiteLLM).
        ("postgres", images["postgres"], {"BASE": BASE_IMAGE, "POSTGRES_TAG": postgres_tag}),
        # The LiteLLM proxy at the version the test suite runs (requirements-test.lock), so the unit
        # tests, the stack test and users' gateway behave alike; see README "What is tested here".
        (
            "litellm",
            images["ghcr.io/berriai/litellm"],
            {"PYTHON": python, "LITELLM_VERSION": locked_version("litellm", "requirements-test.lock")},
        ),
    ]


# --------------------------------------------------------------------------------------------------
# Engine and Compose v2
# --------------------------------------------------------------------------------------------------


def debian_uri() -> str:
    """The Debian archive URI this machine's apt already uses (so no mirror is named here)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace")
        # deb822: a stanza whose Suites include bookworm proper (not -security).
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
        for line in text.splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and not words[1].startswith("["):
                if words[2] == "bookworm":
                    return words[1]
    raise HarnessError("no Debian bookworm source in /etc/apt: cannot fetch the engine or the base image")


def apt(*args: str) -> None:
    if not shutil.which("apt-get"):
        raise HarnessError("apt-get is missing: install a Docker engine and Compose v2 by hand")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", "-o", "DPkg::Lock::Timeout=900", *args, env=env)


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise HarnessError(f"{what} needs root (this is uid {os.geteuid()})")


def ensure_engine() -> None:
    if ok("docker", "info"):
        log("engine: already running")
        return
    require_root("starting a Docker engine")
    if not shutil.which("dockerd"):
        log("engine: installing Debian's docker.io")
        apt("update", "-q")
        apt("install", "-y", "-q", "docker.io")
    if not shutil.which("docker"):
        raise HarnessError("docker.io installed no docker CLI")
    log(f"engine: starting dockerd (log {DOCKERD_LOG})")
    with DOCKERD_LOG.open("ab") as out:
        subprocess.Popen(["dockerd"], stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if ok("docker", "info"):
            log("engine: up")
            return
        time.sleep(1)
    tail = DOCKERD_LOG.read_text(errors="replace").splitlines()[-15:]
    raise HarnessError("dockerd did not answer within 60 s:\n" + "\n".join(tail))


def compose_v2() -> str | None:
    result = subprocess.run(["docker", "compose", "version", "--short"], capture_output=True, text=True)
    version = result.stdout.strip().lstrip("v")
    return version if result.returncode == 0 and version[:1] == "2" else None


def ensure_compose() -> None:
    if version := compose_v2():
        log(f"compose: v{version} already installed")
        return
    require_root("installing Compose v2")
    work = CACHE / "compose-apt"
    lists, cache, out = work / "lists", work / "cache", work / "deb"
    for directory in (lists / "partial", cache / "archives" / "partial", out):
        directory.mkdir(parents=True, exist_ok=True)
    source_list = work / "sources.list"
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    source_list.write_text(f"deb [signed-by={keyring}] {debian_uri()} {COMPOSE_SUITE} main\n")
    # A separate sources list, lists and cache: the system's apt state stays untouched.
    options = [
        f"-o=Dir::Etc::SourceList={source_list}",
        "-o=Dir::Etc::SourceParts=/nonexistent",
        f"-o=Dir::State::Lists={lists}",
        f"-o=Dir::Cache={cache}",
    ]
    log(f"compose: fetching Debian {COMPOSE_SUITE}'s docker-compose (Compose v2)")
    apt(*options, "update", "-q")
    for old in out.glob("*.deb"):
        old.unlink()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run("apt-get", *options, "download", "docker-compose", cwd=out, env=env)
    debs = sorted(out.glob("docker-compose_*.deb"))
    if not debs:
        raise HarnessError("apt-get download docker-compose produced no package")
    extracted = work / "x"
    shutil.rmtree(extracted, ignore_errors=True)
    run("dpkg-deb", "-x", str(debs[-1]), str(extracted))
    plugin = extracted / "usr/libexec/docker/cli-plugins/docker-compose"
    if not plugin.is_file():
        raise HarnessError(f"{debs[-1].name} has no usr/libexec/docker/cli-plugins/docker-compose")
    PLUGIN_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copy2(plugin, PLUGIN_DIR / "docker-compose")
    (PLUGIN_DIR / "docker-compose").chmod(0o755)
    if not (version := compose_v2()):
        raise HarnessError("docker compose still does not answer as v2 after installing the plugin")
    log(f"compose: v{version} installed in {PLUGIN_DIR}")


# --------------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------------


def image_label(reference: str) -> str | None:
    result = subprocess.run(
        ["docker", "image", "inspect", "--format", f'{{{{index .Config.Labels "{RECIPE_LABEL}"}}}}', reference],
        capture_output=True,
        text=True,
    )
    return result.stdout.strip() if result.returncode == 0 else None


def ensure_base() -> str:
    """local/debian:bookworm from debootstrap (minbase); its recipe hash feeds the stand-ins' hashes."""
    uri = debian_uri()
    recipe = hashlib.sha256(f"debootstrap minbase bookworm {uri}".encode()).hexdigest()[:16]
    if image_label(BASE_IMAGE) == recipe:
        log(f"base: {BASE_IMAGE} reused")
        return recipe
    require_root("debootstrap")
    if not shutil.which("debootstrap"):
        log("base: installing debootstrap")
        apt("install", "-y", "-q", "debootstrap")
    with tempfile.TemporaryDirectory(prefix="debootstrap-", dir=CACHE if CACHE.is_dir() else None) as tmp:
        rootfs = Path(tmp) / "rootfs"
        log("base: debootstrap --variant=minbase bookworm (a few minutes)")
        run("debootstrap", "--variant=minbase", "bookworm", str(rootfs), uri)
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        (rootfs / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        run(
            "docker",
            "import",
            "--change",
            f"LABEL {RECIPE_LABEL}={recipe}",
            "--change",
            'CMD ["bash"]',
            "-",
            BASE_IMAGE,
            stdin=tar.stdout,
        )
        tar.wait()
    log(f"base: {BASE_IMAGE} built")
    return recipe


def ca_certificates() -> list[Path]:
    """This machine's extra CA certs: its egress intercepts TLS, so a container's pip needs them too."""
    return sorted(CA_DIR.glob("*.crt")) if CA_DIR.is_dir() else []


def build_standin(directory: str, tag: str, args: dict[str, str], base_recipe: str) -> None:
    dockerfile = STANDINS / directory / "Dockerfile"
    certs = ca_certificates()
    digest = hashlib.sha256()
    digest.update(base_recipe.encode())
    digest.update(dockerfile.read_bytes())
    for extra in sorted((STANDINS / directory).iterdir()):
        if extra.is_file() and extra.name != "Dockerfile":
            digest.update(extra.name.encode() + extra.read_bytes())
    for name in PROJECT_FILES.get(directory, ()):
        digest.update(name.encode() + (ROOT / name).read_bytes())
    for key in sorted(args):
        digest.update(f"{key}={args[key]}".encode())
        if key in ("PYTHON", "BASE"):
            digest.update((image_label(args[key]) or "").encode())
    for cert in certs:
        digest.update(cert.read_bytes())
    recipe = digest.hexdigest()[:16]
    if image_label(tag) == recipe:
        log(f"stand-in {tag}: reused")
        return
    with tempfile.TemporaryDirectory(prefix=f"standin-{directory}-") as tmp:
        context = Path(tmp)
        shutil.copytree(STANDINS / directory, context, dirs_exist_ok=True)
        for name in PROJECT_FILES.get(directory, ()):
            shutil.copy2(ROOT / name, context / name)
        (context / "certs").mkdir(exist_ok=True)
        for cert in certs:
            shutil.copy2(cert, context / "certs" / cert.name)
        build_args = [item for key, value in args.items() for item in ("--build-arg", f"{key}={value}")]
        start = time.monotonic()
        run(
            "docker",
            "build",
            "--label",
            f"{RECIPE_LABEL}={recipe}",
            *build_args,
            "-t",
            tag,
            str(context),
            env={**os.environ, "DOCKER_BUILDKIT": "0"},
        )
        log(f"stand-in {tag}: built in {time.monotonic() - start:.0f} s")


def ensure_images() -> None:
    with phase("base image"):
        base_recipe = ensure_base()
    for directory, tag, args in standin_specs():
        with phase(f"stand-in {directory}"):
            build_standin(directory, tag, args, base_recipe)


def check() -> str | None:
    """None when the stack test can run now, else the reason it cannot."""
    if not shutil.which("docker"):
        return "no docker CLI"
    if not ok("docker", "info"):
        return "no Docker engine answers `docker info`"
    if not compose_v2():
        return "docker compose v2 is not installed"
    try:
        specs = standin_specs()
    except HarnessError as error:
        return str(error)
    missing = [tag for _, tag, _ in specs if image_label(tag) is None and not ok("docker", "image", "inspect", tag)]
    return f"images missing: {', '.join(missing)} (run tests/compose/harness.py images)" if missing else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=("engine", "images", "all", "check"))
    step = parser.parse_args().step
    try:
        if step == "check":
            reason = check()
            print(reason or "ready")
            return 0 if reason is None else 1
        if step in ("engine", "all"):
            with phase("engine + compose v2"):
                ensure_engine()
                ensure_compose()
        if step in ("images", "all"):
            CACHE.mkdir(parents=True, exist_ok=True)
            ensure_images()
    except HarnessError as error:
        print(f"[harness] CANNOT RUN THE DOCKER ENGINE OR BUILD THE IMAGES: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
