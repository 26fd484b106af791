#!/usr/bin/env bash
# Build what users install, then use it as they would, with nothing of the checkout:
#
#   bash scripts/package.sh
#
# 1. `python -m build`: the sdist, then the wheel built from that sdist, into dist/; the
#    build must print no warning (setuptools' "package would be ignored" and the like);
# 2. `twine check --strict`: the metadata and the README as the package index renders it;
# 3. what each archive holds: the sdist every docs page and deploy file, the wheel every
#    file of the package (templates, migrations, py.typed) and nothing else;
# 4. docs/quickstart.md in a new `django-admin startproject` site, with only the wheel
#    (and its dependencies from the package index) installed in a fresh virtualenv:
#    Django 6 on Python 3.12, then Django 5.2 with [compat] on Python 3.11.
#
# Its own tools (build, twine) and virtualenvs live in a temporary folder, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
source scripts/venvs.sh # find_python

WORK="$(mktemp -d "${TMPDIR:-/tmp}/dbtasks-package.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# One pip, the tools venv's, installs into every venv: the others are made without pip
# (hold nothing but what is installed) and made faster (no ensurepip each).
pip_install() {
  local venv="$1"
  shift
  "$WORK/tools/bin/python" -m pip --python "$venv/bin/python" install -q --no-compile \
    --disable-pip-version-check "$@"
}

echo "== Building the sdist and the wheel into dist/"
python3 -m venv "$WORK/tools"
pip_install "$WORK/tools" build twine
# A stale egg-info's SOURCES.txt would put files in the sdist that MANIFEST.in no longer names.
rm -rf dist build ./*.egg-info
# setuptools warns that it cannot byte-compile when the caller's environment forbids it.
if ! env -u PYTHONDONTWRITEBYTECODE "$WORK/tools/bin/python" -m build --outdir dist . \
  >"$WORK/build.log" 2>&1; then
  cat "$WORK/build.log"
  exit 1
fi
# setuptools' warnings ("WARNING Package ... is absent", "warning: no files found",
# "...Warning: ..."); pip's own notes about the machine's indexes ("WARNING: ...") are not ours.
if grep -E "^WARNING [^:]|^warning: |Warning: " "$WORK/build.log"; then
  echo "package: the build printed the warnings above; fix setup.cfg or MANIFEST.in"
  exit 1
fi
rm -rf build ./*.egg-info
ls dist

echo "== twine check --strict (at ${SECONDS} s)"
"$WORK/tools/bin/twine" check --strict dist/*

echo "== What the sdist and the wheel hold"
"$WORK/tools/bin/python" - dist <<'PYTHON'
import email, subprocess, sys, tarfile, zipfile
from pathlib import Path

dist = Path(sys.argv[1])
(sdist,) = dist.glob("*.tar.gz")
(wheel,) = dist.glob("*.whl")
with tarfile.open(sdist) as archive:
    in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
with zipfile.ZipFile(wheel) as archive:
    in_wheel = set(archive.namelist())
    (metadata_name,) = [n for n in in_wheel if n.endswith(".dist-info/METADATA")]
    metadata = email.message_from_bytes(archive.read(metadata_name))


def tracked(*patterns: str) -> set[str]:
    """The checkout's files (as git knows them) that match the patterns."""
    found = subprocess.run(["git", "ls-files", "--", *patterns], capture_output=True, text=True)
    return set(found.stdout.split())


def require(archive: str, files: set[str], holds: set[str], what: str) -> None:
    missing = sorted(files - holds)
    if not files or missing:
        sys.exit(f"package: the {archive} lacks {what}: {missing or 'none found in the checkout'}")
    print(f"package: the {archive} holds {what} ({len(files)} files)")


require("sdist", tracked("docs/*.md"), in_sdist, "the docs")
require("sdist", tracked("example_project/deploy/*"), in_sdist, "the deploy files")
require("sdist", {"README.md", "CHANGELOG.md", "LICENSE"}, in_sdist, "README, changelog, licence")
require("sdist", tracked("django_dbtasks"), in_sdist, "the package's files")
require("wheel", tracked("django_dbtasks/templates"), in_wheel, "the admin templates")
require("wheel", tracked("django_dbtasks/migrations/*.py"), in_wheel, "the migrations")
require("wheel", {"django_dbtasks/py.typed"}, in_wheel, "py.typed")
require("wheel", tracked("django_dbtasks"), in_wheel, "every file of the package")
strays = sorted(n for n in in_wheel if not n.startswith(("django_dbtasks/", metadata_name.split("/")[0])))
if strays:
    sys.exit(f"package: the wheel holds files outside the package: {strays}")
if any(name.startswith("tests/") for name in in_sdist):
    sys.exit("package: the sdist holds tests/; MANIFEST.in prunes it")
urls = {value.split(",", 1)[0] for value in metadata.get_all("Project-URL", [])}
if urls != {"Documentation", "Changelog", "Issues", "Source"} or not metadata["Home-page"]:
    sys.exit(f"package: Home-page and the Project-URLs of setup.cfg are missing: {urls}")
print(f"package: {metadata['Name']} {metadata['Version']}, {metadata['License-Expression']}")
PYTHON

# The quickstart, as a reader of docs/quickstart.md does it: its settings block appended to
# a new project's settings, its task module as myapp/tasks.py, its Python blocks run in
# order in one process; where the page shows `runtasks --burst`, a burst worker runs, and
# for the blocks after it a worker runs alongside, stopped with SIGTERM at the end.
cat >"$WORK/quickstart.py" <<'PYTHON'
import contextlib, io, os, re, signal, subprocess, sys
from importlib.metadata import version
from pathlib import Path

FENCE = re.compile(r"(?:<!--\s*(?P<marker>[^>]*?)\s*-->\s*\n)?```(?P<lang>\w*)\n(?P<code>.*?)```", re.S)
page = Path(sys.argv[2]).read_text()
blocks = [(m["marker"] or "", m["lang"], m["code"]) for m in FENCE.finditer(page)]
manage = [sys.executable, "manage.py"]


def setup() -> None:
    """Write the page's settings and task module into the new project."""
    (settings,) = [code for marker, _, code in blocks if marker == "settings"]
    (module,) = [code for marker, _, code in blocks if marker.startswith("module:")]
    Path("myapp/tasks.py").write_text(module)
    with open("mysite/settings.py", "a") as file:
        file.write("\n# From docs/quickstart.md\n" + settings)
        file.write('\nINSTALLED_APPS.append("myapp")\n')
        file.write(EMAILS_AS_FILES)


# Django 6.1's startproject configures MAILERS; before it, the EMAIL_* settings.
EMAILS_AS_FILES = '''
FILES = "django.core.mail.backends.filebased.EmailBackend"
if "MAILERS" in globals():
    MAILERS = {"default": {"BACKEND": FILES, "OPTIONS": {"file_path": BASE_DIR / "emails"}}}
else:
    EMAIL_BACKEND, EMAIL_FILE_PATH = FILES, BASE_DIR / "emails"
'''


def run() -> None:
    """Run the page's Python blocks, with a worker where the page says to run one."""
    import django

    sys.path.insert(0, os.getcwd())  # the project, as manage.py has it
    django.setup()
    import django_dbtasks
    from django.db import connection

    here = Path(django_dbtasks.__file__)
    assert here.is_relative_to(sys.prefix), f"django_dbtasks imported from {here}, not the venv"
    assert version("django-dbtasks-queue") == django_dbtasks.__version__
    print(f"quickstart: django_dbtasks {django_dbtasks.__version__} from {here.parent}")
    namespace: dict = {"__name__": "quickstart"}
    worker = None
    for marker, lang, code in blocks:
        if lang == "bash" and worker is None and "runtasks --burst" in code:
            connection.close()  # SQLite: the worker needs the write lock
            burst = subprocess.run([*manage, "runtasks", "--burst"], capture_output=True, text=True)
            print(burst.stderr + burst.stdout, end="")
            assert burst.returncode == 0, f"runtasks --burst exited {burst.returncode}"
            worker = subprocess.Popen([*manage, "runtasks"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        elif lang == "python" and marker == "":
            output = io.StringIO()
            with contextlib.redirect_stdout(output):
                exec(compile(code, "docs/quickstart.md", "exec"), namespace)
            print(output.getvalue(), end="")
    assert worker is not None, "the page never shows runtasks --burst"
    worker.send_signal(signal.SIGTERM)
    stopped = worker.wait(timeout=60)
    log = worker.stdout.read()
    assert stopped == 0, f"the worker exited {stopped} after SIGTERM:\n{log}"
    check_outcomes(namespace)


def check_outcomes(namespace: dict) -> None:
    """Every job the page enqueued succeeded, sent its email, and shows in the admin."""
    from django.contrib.auth.models import User
    from django.test import Client
    from django.urls import reverse

    from django_dbtasks.models import Job

    jobs = list(Job.objects.order_by("id"))
    assert len(jobs) >= 3, jobs
    assert {job.status for job in jobs} == {"SUCCESSFUL"}, [(j.id, j.status, j.errors) for j in jobs]
    assert namespace["result"].return_value == "ada@example.com", namespace["result"]
    emails = "".join(path.read_text() for path in Path("emails").glob("*.log"))
    assert "ada@example.com" in emails and "grace@example.com" in emails, emails
    print(f"quickstart: {len(jobs)} jobs SUCCESSFUL, their emails written")
    admin = Client(HTTP_HOST="localhost")
    admin.force_login(User.objects.create_superuser("admin", "admin@example.com", "admin"))
    pages = [
        reverse("admin:django_dbtasks_job_changelist"),
        reverse("admin:django_dbtasks_job_change", args=[jobs[0].pk]),
        reverse("admin:django_dbtasks_job_overview"),
        reverse("admin:django_dbtasks_schedule_changelist"),
        reverse("admin:django_dbtasks_worker_changelist"),
    ]
    for url in pages:
        answer = admin.get(url)
        assert answer.status_code == 200, (url, answer.status_code)
    print(f"quickstart: the admin's {len(pages)} pages render from the installed templates")


{"setup": setup, "run": run}[sys.argv[1]]()
PYTHON

quickstart() {
  local python="$1" extras="$2" name="$3"
  local dir="$WORK/$name"
  echo "== The quickstart against the wheel alone: $name (at ${SECONDS} s)"
  "$python" -m venv --without-pip "$dir/venv"
  pip_install "$dir/venv" "$(ls "$ROOT"/dist/*.whl)$extras"
  mkdir "$dir/site"
  (
    cd "$dir/site"
    # Nothing of the checkout may be importable: only the wheel, installed in the venv.
    unset PYTHONPATH
    export DJANGO_SETTINGS_MODULE=mysite.settings
    "$dir/venv/bin/django-admin" startproject mysite .
    "$dir/venv/bin/python" manage.py startapp myapp
    "$dir/venv/bin/python" "$WORK/quickstart.py" setup "$ROOT/docs/quickstart.md"
    "$dir/venv/bin/python" manage.py check
    "$dir/venv/bin/python" manage.py migrate --verbosity 0
    "$dir/venv/bin/python" "$WORK/quickstart.py" run "$ROOT/docs/quickstart.md"
  )
}

quickstart "$(find_python 3.12)" "" "django6-python3.12"
quickstart "$(find_python 3.11)" "[compat]" "django5.2-python3.11"
echo "package: built, checked, installed from the wheel alone, and the quickstart ran (${SECONDS} s)"
