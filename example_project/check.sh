#!/usr/bin/env bash
# What a newcomer does, scripted: run the README's first command, wait for the site,
# sign up through the form, find the verification email, press Ctrl-C (SIGINT), and
# expect everything to exit 0. Then the example's own tests (signup, worker, CSV export).
set -euo pipefail
cd "$(dirname "$0")"
ROOT="$(cd .. && pwd)"
export EXAMPLE_VAR_DIR
EXAMPLE_VAR_DIR="$(mktemp -d)"
export PORT="${PORT:-8765}"
export EXPORT_SECONDS_PER_POST=0.01
log="$EXAMPLE_VAR_DIR/run.log"

set -m  # run.sh in its own process group, so that it can receive SIGINT like from a terminal
bash run.sh >"$log" 2>&1 </dev/null &
run=$!
set +m
cleanup() { kill -TERM -- "-$run" 2>/dev/null || true; }
trap cleanup EXIT

# The standard library is enough to act like a browser; run.sh is still creating its venv.
python3 - <<'PYTHON' || { cat "$log"; exit 1; }
import http.cookiejar, os, pathlib, re, time, urllib.parse, urllib.request

base = f"http://127.0.0.1:{os.environ['PORT']}"
deadline = time.monotonic() + 240  # the first run installs the virtualenv
while True:
    try:
        urllib.request.urlopen(base + "/signup/", timeout=2)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise SystemExit("the web server never answered")
        time.sleep(0.5)
opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
page = opener.open(base + "/signup/").read().decode()
token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
form = urllib.parse.urlencode(
    {"csrfmiddlewaretoken": token, "username": "newcomer", "email": "newcomer@example.com"}
).encode()
answer = opener.open(urllib.request.Request(base + "/signup/", data=form, headers={"Referer": base + "/signup/"}))
assert "/welcome/" in answer.url, answer.url
emails = pathlib.Path(os.environ["EXAMPLE_VAR_DIR"]) / "emails"
deadline = time.monotonic() + 60
while not any("newcomer@example.com" in p.read_text() for p in emails.glob("*.log")):
    if time.monotonic() > deadline:
        raise SystemExit("no verification email for newcomer@example.com")
    time.sleep(0.2)
print("check: signed up through the form; the worker wrote the verification email")
PYTHON

kill -INT "$run"
status=0
wait "$run" || status=$?
trap - EXIT
grep -q "== Stopped" "$log" || { cat "$log"; echo "check: run.sh did not stop cleanly"; exit 1; }
if [ "$status" -ne 0 ]; then cat "$log"; echo "check: run.sh exited $status after Ctrl-C"; exit 1; fi
echo "check: Ctrl-C stopped the web server and the worker; run.sh exited 0"

PY="${EXAMPLE_VENV:-$ROOT/.venv/example}/bin/python"
"$PY" -m pip install -q --disable-pip-version-check pytest pytest-django
"$PY" -m pytest -q tests
