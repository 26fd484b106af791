"""A stand-in for an external service that fails now and then.

Deterministic, so the demo and the tests behave the same every time: the
first two attempts for a post fail, the third succeeds.
"""


class SearchEngineUnavailable(Exception):
    pass


FAILURES_BEFORE_SUCCESS = 2


def ping_search_engine(post_id: int, api_key: str, attempt: int) -> str:
    if not api_key:
        raise ValueError("an API key is required")
    if attempt <= FAILURES_BEFORE_SUCCESS:
        raise SearchEngineUnavailable(f"503 Service Unavailable (attempt {attempt})")
    return f"indexed post {post_id}"
