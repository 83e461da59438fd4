"""The systemd units of deploy/ (docs/deploy.md): each one parses, starts a real entry point of the
project with arguments it accepts, reads the environment file, and passes `systemd-analyze verify`
where that tool exists (with the install paths pointed at this checkout)."""

from __future__ import annotations

import configparser
import importlib
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from command.__main__ import build_parser

from .conftest import ROOT

DEPLOY = ROOT / "deploy"
UNITS = sorted(DEPLOY.glob("*.service"))
INSTALL = "/opt/flood-command"
PYTHON = f"{INSTALL}/.venv/bin/python"
ENV_FILE = "/etc/flood-command/flood-command.env"
ROLES = {"web", "engine@", "drills", "worker", "backtests", "feeds", "audit"}


def unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(interpolation=None, strict=True)
    cp.optionxform = str  # systemd's keys are case-sensitive
    cp.read_string(path.read_text(encoding="utf-8"))
    return cp


def exec_argv(path: Path) -> list[str]:
    # systemd specifiers: %H the host name, %i the instance
    return shlex.split(unit(path)["Service"]["ExecStart"].replace("%H", "host").replace("%i", "1"))


def test_one_unit_per_role():
    assert {p.name.removeprefix("flood-command-").removesuffix("service").rstrip(".") for p in UNITS} == ROLES


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_each_unit_parses_and_names_its_pieces(path):
    cp = unit(path)
    assert set(cp.sections()) == {"Unit", "Service", "Install"}
    service = cp["Service"]
    assert service["EnvironmentFile"] == ENV_FILE
    assert service["WorkingDirectory"] == INSTALL
    assert service["Restart"] == "always" and service["KillSignal"] == "SIGTERM"
    assert service["User"] == "flood-command"  # never root
    assert cp["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("path", [p for p in UNITS if "web" not in p.name], ids=lambda p: p.name)
def test_exec_start_is_a_real_subcommand_with_arguments_it_accepts(path):
    argv = exec_argv(path)
    assert argv[:3] == [PYTHON, "-m", "command"]
    args = build_parser().parse_args(argv[3:])  # an unknown subcommand or option exits 2 here
    assert args.cmd in {"engine", "drills", "worker", "feeds", "audit"}
    assert callable(getattr(args, "handler", None)) or args.cmd in {"engine", "drills", "worker"}


def test_the_web_unit_runs_gunicorn_on_the_app_factory():
    argv = exec_argv(DEPLOY / "flood-command-web.service")
    assert argv[:3] == [PYTHON, "-m", "gunicorn"]
    assert argv[-1] == "app:create_server()"
    import app

    assert callable(app.create_server)
    helptext = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True, text=True,
                              check=True).stdout
    for opt in (a for a in argv[3:-1] if a.startswith("--")):
        assert opt in helptext, opt
    # operators first (layouts/admission.py), as `python app.py` runs it: a class gunicorn can load
    module, _, name = argv[argv.index("--worker-class") + 1].rpartition(".")
    from gunicorn.workers.gthread import ThreadWorker

    assert issubclass(getattr(importlib.import_module(module), name), ThreadWorker)


def test_the_environment_example_names_what_the_roles_read():
    from command.config import Settings

    env = {}
    for line in (DEPLOY / "flood-command.env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            k, _, v = line.partition("=")
            env[k.strip()] = v.strip()
    assert {"REDIS_URL", "ECD_RQ_REDIS_URL", "ECD_DATA_DIR", "ECD_SECRET_KEY", "ECD_AUDIT_KEY"} <= set(env)
    fields = {f"ECD_{name.upper()}" for name in Settings.model_fields} | {"REDIS_URL"}
    # read by the web app and the audit trail themselves (layouts/signin.py, web_basics.py, command/trust/audit_keys.py)
    known = fields | {"ECD_SECRET_KEY", "ECD_AUDIT_KEY", "ECD_PROXY_HOPS", "ECD_SECURE_COOKIES", "PYTHONUNBUFFERED"}
    assert set(env) <= known, set(env) - known  # no setting the code would not read


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    """Pointed at this checkout (its virtualenv's python, the example environment), every unit verifies."""
    env_file = tmp_path / "flood-command.env"
    shutil.copy(DEPLOY / "flood-command.env.example", env_file)
    data = tmp_path / "data"
    data.mkdir()
    paths = []
    for path in UNITS:
        text = (path.read_text(encoding="utf-8").replace(PYTHON, sys.executable).replace(INSTALL, str(ROOT))
                .replace(ENV_FILE, str(env_file)).replace("/var/lib/flood-command", str(data))
                .replace("/etc/flood-command/feeds.yaml", str(ROOT / "feeds.yaml")))
        name = path.name.replace("@.service", "@1.service")  # a template is verified as an instance
        (tmp_path / name).write_text(text, encoding="utf-8")
        paths.append(str(tmp_path / name))
    out = subprocess.run(["systemd-analyze", "verify", "--man=no", *paths], capture_output=True, text=True,
                         cwd=tmp_path)
    problems = [line for line in (out.stdout + out.stderr).splitlines()
                if "flood-command" in line and "user" not in line.lower()]  # the service user needn't exist here
    assert out.returncode == 0 or not problems, out.stdout + out.stderr
    assert not problems, problems


def test_the_first_load_of_live_in_deploy_md_keeps_the_shard_count(r, redis_url, tmp_path):
    """docs/deploy.md's snippet, run as written (its python part), loads live with ECD_SHARDS shards."""
    from command.keys import Keys
    from command.streams import shard_count

    doc = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    code = doc.split('.venv/bin/python -c "', 1)[1].split('"\n```', 1)[0]
    env = {"PATH": "/usr/bin:/bin", "REDIS_URL": redis_url, "ECD_SHARDS": "16", "ECD_DATA_DIR": str(tmp_path),
           "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert r.exists(Keys("live").rules)
    assert shard_count(r, Keys("live")) == 16
