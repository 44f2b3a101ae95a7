"""How often a password appears in known data breaches, by k-anonymity: only the first
five hex digits of its SHA-1 leave the process.

The source is the Have I Been Pwned range API (or any server that answers as it
does: ``GET <url><PREFIX>`` → lines ``SUFFIX:COUNT``, asked with the padding
header so the answer's size tells nothing), or, for machines without internet, a
directory of range files in the same format, one per prefix (``<dir>/<PREFIX>``, as
the API serves them). The core asks through an ``Offload`` step; the answer is the
count, or None and the reason when the source could not answer.
"""

import urllib.error
import urllib.request
from pathlib import Path
from typing import Final

DEFAULT_SOURCE: Final = "https://api.pwnedpasswords.com/range/"
TIMEOUT: Final = 2.0
"""Seconds the range API may take; past that, the check could not be made."""
MAX_ANSWER: Final = 4 * 1024 * 1024
"""Bytes of a range answer read at most (a padded answer is about 40 KB)."""

Lookup = tuple[int | None, str]
"""The count of breaches (None: not known), and why not when it is None."""


class BreachedPasswords:
    """Counts a password's breaches from a range API or a directory of range files."""

    def __init__(self, source: str = DEFAULT_SOURCE) -> None:
        self.source = source

    def __repr__(self) -> str:
        return f"BreachedPasswords({self.source!r})"

    def count(self, sha1_hex: str) -> Lookup:
        """The breaches of the password whose SHA-1 (hex, upper case) this is."""
        prefix, suffix = sha1_hex[:5], sha1_hex[5:]
        try:
            for line in self._range(prefix).splitlines():
                found, _, times = line.strip().partition(":")
                if found.upper() == suffix:
                    return int(times), ""
        except (OSError, ValueError) as error:  # unreachable, timed out, refused, malformed
            return None, type(error).__name__
        return 0, ""

    def _range(self, prefix: str) -> str:
        if not self.source.startswith(("http://", "https://")):
            return (Path(self.source) / prefix).read_text("ascii")
        request = urllib.request.Request(  # noqa: S310 - http(s) only, checked above
            self.source + prefix, headers={"Add-Padding": "true", "User-Agent": "pgusers"}
        )
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            body: bytes = response.read(MAX_ANSWER + 1)
        if len(body) > MAX_ANSWER:
            raise ValueError("range answer too large")
        return body.decode("ascii")
