"""``runtasks --reload``: restart the worker when code changes (development only).

Django's autoreloader (the one ``runserver`` uses) watches the files of every
imported module. ``runserver`` runs the server in a thread under the watcher;
a worker cannot, since signal handlers and forking belong to the main thread.
So the roles are turned around: the worker keeps the main thread, the
watcher runs in a thread beside it, and a change asks the worker for the
usual graceful stop (running jobs finish) and an exit with code 3, which the
supervising parent process answers by starting a fresh worker.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections
from django.utils import autoreload

#: The exit code that asks the supervising process for a restart (as in Django).
RESTART = 3


def run_with_reload(run_worker: Callable[[], int]) -> int:
    """Run ``run_worker`` in a child process that is restarted on each code change."""
    if os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) == "true":
        return _run_watched(run_worker)
    return _supervise()


def _supervise() -> int:
    """Start the worker child again each time it exits with ``RESTART``."""
    connections.close_all()  # this process only waits; the child has its own
    child: subprocess.Popen[bytes] | None = None
    stopping = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True  # even between two children: no restart after a stop request
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    # Ctrl-C reaches the child through the terminal's process group; SIGTERM
    # (a process manager, a test) is passed on. Either way the child decides.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, forward)
    environment = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    while True:
        child = subprocess.Popen(autoreload.get_child_arguments(), env=environment)
        code = child.wait()
        if code != RESTART or stopping:
            return 0 if code == RESTART else code
        sys.stderr.write("Code changed: starting the worker again.\n")


def _run_watched(run_worker: Callable[[], int]) -> int:
    changed = threading.Event()

    def on_change(sender: Any, file_path: Any, **kwargs: Any) -> bool:
        if not changed.is_set():
            changed.set()
            sys.stderr.write(f"{file_path} changed: stopping the worker to reload it.\n")
            os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful stop
        return True  # handled: the reloader must not exit this process itself

    autoreload.file_changed.connect(on_change, weak=False)
    reloader = autoreload.get_reloader()
    watcher = threading.Thread(
        target=reloader.run, args=(threading.main_thread(),), name="dbtasks-reloader", daemon=True
    )
    watcher.start()
    code = run_worker()
    reloader.stop()
    return RESTART if changed.is_set() else code
