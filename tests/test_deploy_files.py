"""The ready-to-copy deploy files parse with the tools that will read them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "example_project" / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_the_systemd_unit_verifies_without_a_warning(tmp_path):
    # systemd checks that ExecStart's program exists: give it the venv the unit names.
    root = tmp_path / "srv" / "mysite"
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").symlink_to(sys.executable)
    unit = tmp_path / "dbtasks-worker.service"
    text = (DEPLOY / "dbtasks-worker.service").read_text()
    assert "manage.py runtasks" in text and "KillSignal=SIGTERM" in text
    unit.write_text(text.replace("/srv/mysite", str(root)))
    verified = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stderr.strip() == "", verified.stderr  # unknown keys are only warned about


def test_the_supervisor_program_parses_with_supervisors_own_parser(tmp_path):
    from supervisor.options import ServerOptions

    config = tmp_path / "supervisord.conf"
    config.write_text(
        f"[supervisord]\nlogfile={tmp_path}/supervisord.log\npidfile={tmp_path}/s.pid\n\n"
        + (DEPLOY / "supervisor.conf").read_text()
    )
    options = ServerOptions()
    options.realize(args=["-c", str(config)])
    [group] = options.process_group_configs
    programs = group.process_configs
    assert [program.name for program in programs] == ["dbtasks-worker-0", "dbtasks-worker-1"]
    for program in programs:
        assert program.command.endswith("manage.py runtasks --concurrency 4")
        assert program.stopsignal.name == "SIGTERM"
        # Longer than the default grace period (30 s), so running jobs can finish.
        assert program.stopwaitsecs > 30
        assert program.killasgroup and program.stopasgroup
