# Sourced by the scripts: builds the two virtualenvs of the test matrix.
#   .venv/dj6   Python 3.12, Django 6.x (built-in django.tasks)
#   .venv/dj52  Python 3.11, Django 5.2 + the django-tasks backport

find_python() {
  local version="$1" candidate
  # pyenv's shims answer to "command -v" even when the version is not selected,
  # so each candidate is tried for real.
  for candidate in "$(pyenv root 2>/dev/null)/versions/$version"*/bin/"python$version" "python$version"; do
    if "$candidate" -c "import sys" >/dev/null 2>&1; then
      echo "$candidate"
      return
    fi
  done
  echo "Python $version not found (install it, e.g. with pyenv)" >&2
  return 1
}

make_venv() {
  local dir="$1" python="$2" django="$3" extras="$4"
  if [ ! -x "$dir/bin/python" ]; then
    "$python" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
  "$dir/bin/python" -m pip install -q --disable-pip-version-check -e ".[$extras]" "$django"
}

ensure_chromium() {
  # The admin's browser tests drive Debian's Chromium (Playwright's own download is
  # not used); install it once, only when it is missing.
  if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium not found; installing Debian's chromium for the browser tests" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  fi
}

ensure_venvs() {
  ensure_chromium
  mkdir -p .venv
  make_venv .venv/dj6 "$(find_python 3.12)" "Django>=6.0,<6.2" "dev"
  make_venv .venv/dj52 "$(find_python 3.11)" "Django>=5.2,<6.0" "test,compat"
}
