"""Every code folder with an __init__.py is in the wheel, the built wheel imports and builds
without warnings, every imported distribution is declared, and the lock file holds them all."""

import ast
import importlib.metadata
import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

from cityhub.schemas.validation import SCHEMA_NAMES

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "schemas": "cityhub.schemas",
    "connectors": "cityhub.connectors",
    "streams": "cityhub.streams",
}
DEV_FOLDERS = ("bench", "tests")
LOCK = ROOT / "requirements.lock"


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _listed_packages() -> set[str]:
    return set(_config()["tool"]["setuptools"]["packages"])


def _code_packages() -> set[str]:
    packages = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            packages.add(".".join([package, *rel.parts]))
    return packages


def test_every_subpackage_is_listed():
    assert _code_packages() <= _listed_packages()


def test_every_other_listed_package_is_a_data_folder():
    # Data folders are listed so that setuptools ships them without a warning; they hold no code.
    for package in _listed_packages() - _code_packages():
        top, *rest = package.split(".")[1:]
        folder = ROOT.joinpath(top, *rest)
        assert folder.is_dir(), package
        assert not list(folder.glob("*.py")), f"{package} holds code but has no __init__.py"
        assert list(folder.iterdir()), f"{package} is empty"


def test_built_wheel_contains_every_module_and_the_schemas(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
    )
    # pip shows the build backend's warnings (a deprecated setting, a data folder missing from
    # `packages`); the set-up promises to print none.
    assert "warning" not in (build.stdout + build.stderr).lower(), build.stdout + build.stderr
    wheel = next(tmp_path.glob("cityhub-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, package in FOLDERS.items():
        for source in (ROOT / folder).rglob("*.py"):
            rel = source.relative_to(ROOT / folder)
            assert "/".join([*package.split("."), *rel.parts]) in names, source
    # Every JSON Schema of the topics' records, and the AsyncAPI document that refers to them.
    schemas = {path.name for path in (ROOT / "schemas" / "json").glob("*.json")}
    assert {f"{name}.schema.json" for name in SCHEMA_NAMES} <= schemas
    for schema in schemas:
        assert f"cityhub/schemas/json/{schema}" in names, schema
    assert "cityhub/schemas/asyncapi.yaml" in names
    migrations = sorted((ROOT / "streams" / "history" / "migrations").glob("*.sql"))
    assert migrations
    for migration in migrations:
        assert f"cityhub/streams/history/migrations/{migration.name}" in names
    # The console's templates, its own CSS and scripts, and the third-party ones that
    # `make console-assets` built from the npm registry (make setup builds them before the tests).
    console = ROOT / "streams" / "console"
    third_party = [
        *console.glob("static/third-party/*.js"),
        *console.glob("static/third-party/*.css"),
    ]
    assert len(third_party) >= 3, "run make console-assets"
    own = [
        *console.glob("templates/*.html"),
        *console.glob("static/*.css"),
        *console.glob("static/*.js"),
        *third_party,
    ]
    assert len(own) > 5
    for path in own:
        assert "cityhub/streams/" + path.relative_to(ROOT / "streams").as_posix() in names, path
    metadata = zipfile.ZipFile(wheel).read("cityhub-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata


# Declared dependencies ------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(*groups: str) -> dict[str, Requirement]:
    project = _config()["project"]
    requirements = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        requirements += [Requirement(r) for r in project["optional-dependencies"][group]]
    return {_canonical(r.name): r for r in requirements}


def _third_party_imports(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level modules imported anywhere under ``folders`` (imports inside functions and
    ``TYPE_CHECKING`` blocks too) that are neither the standard library nor this repository's
    own, each with the files importing it."""
    local = {"cityhub", *FOLDERS, *DEV_FOLDERS}
    found: dict[str, set[str]] = {}
    for folder in folders:
        for source in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text(), str(source))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, set()).add(str(source.relative_to(ROOT)))
    return found


def _undeclared(imports: dict[str, set[str]], declared: set[str]) -> dict[str, str]:
    providers = importlib.metadata.packages_distributions()
    missing = {}
    for module, files in sorted(imports.items()):
        distributions = {_canonical(d) for d in providers.get(module, [])}
        if not distributions & declared:
            names = ", ".join(sorted(distributions)) or "no installed distribution"
            missing[module] = f"provided by {names}; imported in {', '.join(sorted(files))}"
    return missing


def test_every_module_the_code_imports_comes_from_a_declared_dependency():
    imports = _third_party_imports(tuple(FOLDERS))
    assert {"aiokafka", "pydantic", "aiohttp"} <= set(imports)  # the scan sees the imports
    assert _undeclared(imports, set(_declared())) == {}


def test_every_module_tests_and_benchmarks_import_is_declared_with_the_dev_extra():
    imports = _third_party_imports(DEV_FOLDERS)
    assert {"pytest", "hypothesis"} <= set(imports)
    assert _undeclared(imports, set(_declared("dev"))) == {}


# The lock file --------------------------------------------------------------------------------


def _locked() -> dict[str, Version]:
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", LOCK.read_text(), re.M)
    return {_canonical(name): Version(version) for name, version in pins}


def test_the_lock_satisfies_every_declared_requirement():
    # Fails when pyproject.toml changed without `make lock`.
    locked = _locked()
    problems = []
    for name, requirement in _declared("dev").items():
        if name not in locked:
            problems.append(f"{requirement} is not in {LOCK.name}")
        elif not requirement.specifier.contains(locked[name], prereleases=True):
            problems.append(f"{LOCK.name} pins {name}=={locked[name]}, outside {requirement}")
    assert problems == []


def test_every_locked_package_has_hashes():
    blocks = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    pinned = [block for block in blocks if re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*==", block)]
    assert len(pinned) == len(_locked()) > 0
    assert [b.split()[0] for b in pinned if "--hash=sha256:" not in b] == []
