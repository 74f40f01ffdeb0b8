"""deploy/: the systemd units pass `systemd-analyze verify` and the nginx site `nginx -t`
(deploy/check.sh); the units run the commands that exist, with the settings the app reads."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eutirads.cli import build_parser

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def test_the_deployment_examples_pass_their_syntax_checks():
    if shutil.which("systemd-analyze") is None and shutil.which("nginx") is None:
        pytest.skip("neither systemd-analyze nor nginx is installed")
    done = subprocess.run(["bash", str(DEPLOY / "check.sh")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_units_run_existing_commands_with_valid_options():
    parser = build_parser()
    for unit in ("eutirads-serve.service", "eutirads-listen.service"):
        text = (DEPLOY / "systemd" / unit).read_text().replace("\\\n", " ")
        command = re.search(r"^ExecStart=\S+/eutirads (.+)$", text, re.M).group(1).split()
        parser.parse_args(command)  # exits (fails the test) on an unknown option


def test_the_env_example_sets_only_settings_the_app_reads():
    source = Path(__file__).resolve().parents[1] / "src" / "eutirads"
    settings = "\n".join(p.read_text() for p in source.rglob("*.py"))
    for line in (DEPLOY / "systemd" / "eutirads.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name = line.split("=", 1)[0]
            assert f'"{name}"' in settings, name
