"""The wheel installs beside PyPI's ``validators``: ondevice owns one top-level name, ``ondevice``.

converters/ and validators/ sit at the top of the repository but install as ``ondevice.converters`` and
``ondevice.validators`` (pyproject's package-dir). Two distributions that owned one top-level package would
overwrite each other's files; this builds the wheel, installs it into a fresh venv that already holds
PyPI's validators, and imports both. Offline: scripts/setup fetched validators' and numpy's wheels into
.venv/wheelhouse.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WHEELHOUSE = ROOT / ".venv" / "wheelhouse"
# What the build reads: the wheel is built from a copy, so no build/ or egg-info lands in the checkout.
BUILD_INPUTS = ("pyproject.toml", "README.md", "ondevice", "converters", "validators")

PROBE = """
import json, sys, sysconfig
import validators
import ondevice.converters.registry, ondevice.validators.parity
site = sysconfig.get_paths()["purelib"]
print(json.dumps({
    "email": bool(validators.email("a@b.co")),
    "bad_email": bool(validators.email("not an address")),
    "validators": validators.__file__,
    "registry": ondevice.converters.registry.__file__,
    "parity": ondevice.validators.parity.__file__,
    "site": site,
    "strategies": len(ondevice.converters.registry.strategies_for("onnx", "onnx")),
}))
"""


def _run(*args: str | Path, cwd: Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=600)
    assert proc.returncode == 0, f"{' '.join(map(str, args))}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc.stdout


def _wheelhouse() -> dict[str, Path]:
    wheels = {p.name.split("-")[0]: p for p in WHEELHOUSE.glob("*.whl")}
    missing = {"validators", "numpy"} - set(wheels)
    assert not missing, f"{WHEELHOUSE} lacks {sorted(missing)}: run scripts/setup (it fetches them once)"
    return wheels


def _build(tmp: Path) -> Path:
    """The wheel, built from a copy of what the build reads (symlinks kept as links, as in the checkout)."""
    src = tmp / "src"
    src.mkdir()
    for name in BUILD_INPUTS:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "-q",
        "--no-deps",
        "--no-build-isolation",
        "-w",
        tmp / "dist",
        ".",
        cwd=src,
    )
    (wheel,) = (tmp / "dist").glob("ondevice-*.whl")
    return wheel


@pytest.mark.slow
def test_wheel_installs_beside_pypi_validators(tmp_path):
    wheels = _wheelhouse()
    wheel = _build(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {"ondevice/converters/registry.py", "ondevice/validators/parity.py", "ondevice/core/vocab.py"} <= set(names)
    assert {n.split("/")[0] for n in names} == {"ondevice", wheel.name.split("-py3")[0] + ".dist-info"}

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    pip = (python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "--no-index")
    # validators first, as a user's environment would already hold it; then ondevice and numpy beside it.
    _run(*pip, "--find-links", WHEELHOUSE, "validators", cwd=tmp_path)
    _run(*pip, "--find-links", WHEELHOUSE, wheel, wheels["numpy"], cwd=tmp_path)

    # Run from an empty folder: the checkout's own validators/ folder must not be on the path.
    (tmp_path / "elsewhere").mkdir()
    found = json.loads(_run(python, "-I", "-c", PROBE, cwd=tmp_path / "elsewhere"))
    site = Path(found["site"])
    assert found["email"] is True and found["bad_email"] is False
    assert Path(found["validators"]) == site / "validators" / "__init__.py"
    assert Path(found["registry"]) == site / "ondevice" / "converters" / "registry.py"
    assert Path(found["parity"]) == site / "ondevice" / "validators" / "parity.py"
    assert found["strategies"] >= 1  # the route modules import too (their frameworks only when they run)
