"""``runtasks --reload``: restart the worker when code changes (development only).

Django's autoreloader (the one ``runserver`` uses) watches the files of every
imported module. ``runserver`` runs the server in a thread under the watcher;
a worker cannot, since signal handlers and forking belong to the main thread.
So the roles are turned around: the worker keeps the main thread, the
watcher runs in a thread beside it, and a change asks the worker for the
usual graceful stop (running jobs finish) and an exit with code 3, which the
supervising parent process answers by starting a fresh worker.

Broken code does not end the session, as with ``runserver``: a worker that
cannot start (a ``SyntaxError`` in a ``tasks.py``, say) logs the error with
its file and line and waits, its watcher still running, for the next change;
``autoreload.check_errors`` adds the file that failed to import to the
watched ones, though no module holds it. A worker that dies before our code
runs (the error is in the settings or a models module, imported by
``django.setup()``) exits; the parent then logs that and itself watches the
files it imported (the same settings and models) until one changes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import traceback
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

    def interrupt(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True  # the child has it too, from the terminal's process group

    # Ctrl-C reaches the child through the terminal's process group; SIGTERM
    # (a process manager, a test) is passed on. Either way the child decides.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, forward)
    environment = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    while True:
        child = subprocess.Popen(autoreload.get_child_arguments(), env=environment)
        code = child.wait()
        if stopping:
            return 0 if code == RESTART else code
        if code not in (0, RESTART):
            sys.stderr.write(
                f"The worker exited with code {code} (its error is above). Waiting for a "
                "Python file to change to start it again.\n"
            )
            if not _wait_for_change(lambda: stopping):
                return 0
        elif code != RESTART:
            return code
        sys.stderr.write("Code changed: starting the worker again.\n")


def _watch(on_change: Callable[[str], None]) -> Callable[[], None]:
    """Start Django's reloader in a thread, calling ``on_change(path)`` at each change;
    return the function that stops it."""

    def changed(sender: Any, file_path: Any, **kwargs: Any) -> bool:
        on_change(str(file_path))
        return True  # handled: the reloader must not exit this process itself

    autoreload.file_changed.connect(changed, weak=False)
    reloader = autoreload.get_reloader()
    watcher = threading.Thread(
        target=reloader.run, args=(threading.main_thread(),), name="dbtasks-reloader", daemon=True
    )
    watcher.start()

    def stop() -> None:
        reloader.stop()
        autoreload.file_changed.disconnect(changed)

    return stop


def _wait_for_change(stopping: Callable[[], bool]) -> bool:
    """Block until a watched file changes (True) or ``stopping()`` turns true (False)."""
    changed = threading.Event()
    stop_watching = _watch(lambda path: changed.set())
    try:
        while not changed.wait(0.2):
            if stopping():
                return False
        return True
    finally:
        stop_watching()


def _run_watched(run_worker: Callable[[], int]) -> int:
    changed = threading.Event()
    running = True  # only a running worker is asked to stop: a broken one just waits

    def on_change(path: str) -> None:
        if changed.is_set():
            return
        changed.set()
        if running:
            sys.stderr.write(f"{path} changed: stopping the worker to reload it.\n")
            os.kill(os.getpid(), signal.SIGTERM)  # the worker's own graceful stop
        else:
            sys.stderr.write(f"{path} changed: starting the worker again.\n")

    stop_watching = _watch(on_change)
    try:
        code: int = autoreload.check_errors(run_worker)()  # type: ignore[assignment]
    except Exception as error:
        running = False
        _report_broken(error)
        code = 0 if _wait_for_change_or_signal(changed) else RESTART
    stop_watching()
    return RESTART if changed.is_set() else code


def _report_broken(error: Exception) -> None:
    """Log why the worker could not start, with the traceback and its file and line."""
    if isinstance(error, SyntaxError):
        where = f"{error.filename}, line {error.lineno}"
    else:
        frames = traceback.extract_tb(error.__traceback__)
        where = f"{frames[-1].filename}, line {frames[-1].lineno}" if frames else "unknown"
    traceback.print_exception(error, file=sys.stderr)
    sys.stderr.write(
        f"The worker could not start: {type(error).__name__} in {where}: "
        f"{getattr(error, 'msg', None) or error}. Waiting for a file to change to start "
        "it again.\n"
    )


def _wait_for_change_or_signal(changed: threading.Event) -> bool:
    """Wait for ``changed``; return True if SIGTERM or SIGINT came first (stop: no restart)."""
    stopped = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopped.set()

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not (changed.wait(0.2) or stopped.is_set()):
            pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return stopped.is_set() and not changed.is_set()
