"""The registry of open userspaces: the same target gives the same object."""

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from pgusers._drivers.target import SECURITY_PARAMETERS, Target, differences
from pgusers._errors import BadCallError
from pgusers._options import SECURITY_OPTIONS, Options

S = TypeVar("S")


class Registry(Generic[S]):
    """Open userspaces by target, so the same target gives the same object."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._spaces: dict[Hashable, tuple[S, Options, Target]] = {}

    def get_or_open(
        self, key: Hashable, options: Options, where: Target, open_space: Callable[[], S]
    ) -> S:
        """Return the open userspace for ``key``, or open one with ``open_space``. An
        open one whose options or connection parameters differ is refused, naming them."""
        with self.lock:
            found = self._spaces.get(key)
            if found is not None:
                space, opened_with, opened_at = found
                clashes = options.conflicts(opened_with) + differences(where, opened_at)
                if clashes:
                    raise BadCallError(
                        f"this userspace is already open with another {' and '.join(clashes)}; "
                        "pass the same options, or close it first"
                        + (
                            " (options and connection parameters that decide security are "
                            "never taken over from an object opened elsewhere, even when "
                            "not given)"
                            if (SECURITY_OPTIONS | SECURITY_PARAMETERS).intersection(clashes)
                            else ""
                        )
                    )
                return space
            space = open_space()
            self._spaces[key] = (space, options, where)
            return space

    def open_spaces(self) -> list[S]:
        """Return the userspaces open now."""
        with self.lock:
            return [space for space, _, _ in self._spaces.values()]

    def forget(self, key: Hashable, space: S) -> None:
        """Drop ``space`` from the registry (when it is closed)."""
        with self.lock:
            found = self._spaces.get(key)
            if found is not None and found[0] is space:
                del self._spaces[key]
