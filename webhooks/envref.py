"""`${VAR}` in the service's files (connections, alert channels): replaced with the
environment's value, so secrets stay out of the files."""

from __future__ import annotations

import os
import re
from collections.abc import Callable

_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, *, missing: Callable[[str], Exception]) -> str:
    """`text` with every ${VAR} replaced; `missing(name)` is raised for a variable not set."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise missing(name)
        return os.environ[name]

    return _REFERENCE.sub(value, text)
