"""The Dockerfile passes hadolint (the podman build and run are in scripts/podman-build-check.sh)."""
import shutil
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def test_dockerfile_passes_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([hadolint, str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_runs_migrations_then_the_server_as_non_root() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entrypoint = (ROOT / "docker" / "entrypoint.sh").read_text()
    assert "HEALTHCHECK" in dockerfile and "/healthz" in dockerfile
    assert "\nUSER " in dockerfile and "USER root" not in dockerfile
    assert entrypoint.index("shop migrate") < entrypoint.index("exec shop serve")
