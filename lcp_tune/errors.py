"""The one user-facing error class: every bad input becomes one of these, never a traceback."""


class LcpTuneError(ValueError):
    """A user-facing error: its message is one sentence naming the input and what is allowed."""


def first_line(exc: BaseException) -> str:
    """`Type: first line` of an exception, short enough to quote in a one-line error."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:160]}" if text else type(exc).__name__
