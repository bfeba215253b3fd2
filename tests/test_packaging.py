"""The package list in pyproject.toml must name every package, or the wheel silently lacks it."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from tests.conftest import REPO_ROOT


def test_every_package_is_listed_in_pyproject():
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {"rgfl." + ".".join(p.parent.relative_to(REPO_ROOT / "rgfl").parts) for p in (REPO_ROOT / "rgfl").rglob("__init__.py")}
    found = {name.rstrip(".") for name in found}
    found |= {"rgfl.cli." + ".".join(p.parent.relative_to(REPO_ROOT / "cli").parts) for p in (REPO_ROOT / "cli").rglob("__init__.py")}
    found = {name.rstrip(".") for name in found}
    found |= {"rgfl.configs"} if (REPO_ROOT / "configs" / "__init__.py").is_file() else set()
    assert found == listed


def test_no_shadowing_cli_inside_rgfl():
    # rgfl/cli.py or an rgfl/cli/ folder would shadow the mapping of cli/ onto rgfl.cli.
    assert not (REPO_ROOT / "rgfl" / "cli.py").exists()
    assert not (REPO_ROOT / "rgfl" / "cli").exists()


def test_python_dash_m_and_version():
    out = subprocess.run([sys.executable, "-m", "rgfl", "--version"], capture_output=True, text=True, check=True)
    import rgfl

    assert out.stdout.strip() == f"rgfl {rgfl.__version__}"
    assert "cli" not in sys.modules or not hasattr(sys.modules["cli"], "main")


def test_wheel_contains_cli_under_rgfl_and_no_top_level_cli(tmp_path):
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(REPO_ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("rgfl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "rgfl/cli/main.py" in names
    assert "rgfl/py.typed" in names
    assert "rgfl/configs/rgfl_r18_tiny_cpu.yaml" in names  # `rgfl demo` needs it after a wheel install
    assert "rgfl/configs/rgfl_r50_fpn_1x_dota_le135.yaml" in names
    assert not any(name.startswith("cli/") for name in names)
