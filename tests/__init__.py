"""The test suite (see scripts/test.sh)."""

import pytest

# Helper modules whose asserts should explain themselves like a test's do.
pytest.register_assert_rewrite("tests.turns")
