"""The worker image carries no torch, scikit-learn, treelite, matplotlib or honcho (deploy/worker/Dockerfile's
WITHOUT): every command it runs must import without them."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.deploy.manifests import ROOT

ABSENT = ("torch", "sklearn", "treelite", "matplotlib", "honcho")


def test_the_worker_commands_import_without_what_the_lean_image_leaves_out() -> None:
    dockerfile = (ROOT / "deploy/worker/Dockerfile").read_text()
    assert 'ARG WITHOUT="torch scikit-learn treelite matplotlib honcho"' in dockerfile
    code = (
        "import sys\n"
        f"for name in {ABSENT!r}: sys.modules[name] = None  # import fails as if not installed\n"
        "import stream.worker.runtime, stream.cli, stream.produce, stream.tail, stream.topics\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
