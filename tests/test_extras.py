"""``pip install prefloop`` and ``pip install prefloop[serve]`` each work on their own.

Each check runs in a fresh interpreter whose site-packages is a view of this environment's
without the packages of every extra that install would not bring (by the dependency lists of
pyproject.toml itself), as if they had never been installed.
"""

import os
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

PYPROJECT = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
MODULE_OF = {"psycopg": "psycopg", "pyyaml": "yaml"}  # distribution → import name, where differ


def modules(requirements: list[str]) -> set[str]:
    names = {re.split(r"[\[<>=!~ ;]", r, maxsplit=1)[0].lower() for r in requirements}
    return {MODULE_OF.get(n, n.replace("-", "_")) for n in names}


CORE = modules(PYPROJECT["dependencies"])
EXTRAS = {name: modules(reqs) for name, reqs in PYPROJECT["optional-dependencies"].items()}
SOURCE = Path(__file__).parents[1] / "src"


def run_without(blocked: set[str], code: str, root: Path) -> subprocess.CompletedProcess:
    """Run ``code`` with a site-packages that lacks the packages named ``blocked``."""
    view = root / "site-packages"
    view.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        top = re.split(r"[.-]", entry.name, maxsplit=1)[0].lower()
        if entry.suffix != ".pth" and top not in blocked and top != "prefloop":
            (view / entry.name).symlink_to(entry)
    env = os.environ | {"PYTHONPATH": f"{SOURCE}{os.pathsep}{view}"}
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          env=env, cwd=root)  # fmt: skip


def test_the_core_install_trains_and_runs_the_cli_without_any_extra(tmp_path):
    blocked = set().union(*EXTRAS.values()) - CORE | {"starlette"}
    done = run_without(
        blocked,
        """
from typer.testing import CliRunner
from prefloop.cli import app
import prefloop.train.methods, prefloop.lab.demo, prefloop.eval.rm_suite
for args in (["--help"], ["train", "dpo", "--help"], ["train-rm", "--help"]):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, (args, result.output)
print("ok")
""",
        tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.parametrize("probe", ["fastapi", "httpx"])
def test_a_left_out_package_cannot_be_imported(probe, tmp_path):
    done = run_without({probe}, f"import {probe}", tmp_path)
    assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr


def test_the_serve_extra_alone_starts_the_service(tmp_path):
    blocked = set().union(*EXTRAS.values()) - CORE - EXTRAS["serve"]
    assert blocked >= {"pytest", "selenium", "hypothesis"}
    done = run_without(
        blocked,
        """
import pkgutil, importlib
import prefloop.serve
for info in pkgutil.walk_packages(prefloop.serve.__path__, "prefloop.serve."):
    if ".migrations" not in info.name and not info.name.endswith("__main__"):  # run below
        importlib.import_module(info.name)
from prefloop.serve.app import create_app
from prefloop.serve.db import make_engine
from prefloop.serve.migrate import upgrade
engine = make_engine("sqlite:///feedback.db")
upgrade(engine)
create_app(engine)
print("ok")
""",
        tmp_path,
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
