"""The README's lab command: JupyterLab on 127.0.0.1, refusing requests that lack its token."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def test_lab_command_binds_to_localhost_and_requires_a_token(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "lab.log"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    with log.open("w") as out:
        server = subprocess.Popen([sys.executable, str(ROOT / "lab.py"), "--no-browser", f"--port={port}"],
                                  cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        token = None
        deadline = time.monotonic() + 120
        while token is None and time.monotonic() < deadline:
            assert server.poll() is None, f"the lab exited early:\n{log.read_text()}"
            match = re.search(rf"http://127\.0\.0\.1:{port}/lab\?token=(\w+)", log.read_text())
            token = match.group(1) if match else None
            time.sleep(0.5)
        assert token, f"no tokenised URL on 127.0.0.1 in the log:\n{log.read_text()}"
        api = f"http://127.0.0.1:{port}/api/sessions"
        assert _status(api) == 403
        assert _status(f"{api}?token=wrong{token}") == 403
        assert _status(f"{api}?token={token}") == 200
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
