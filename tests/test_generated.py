"""The blocking driver is generated from the asyncio one, and CI notices when the
committed file is not what the generator makes."""

import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "async_to_sync.py"
GENERATED = ROOT / "src" / "pgusers" / "_drivers" / "driver_sync.py"


def check(target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOOL), "--check", "--target", str(target)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_committed_blocking_driver_is_what_the_generator_makes() -> None:
    result = check(GENERATED)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_hand_edit_of_the_blocking_driver_fails_the_check(tmp_path: Path) -> None:
    edited = tmp_path / "driver_sync.py"
    text = GENERATED.read_text()
    edited.write_text(text.replace('f"{self._name} is closed"', 'f"{self._name} was closed"'))
    assert edited.read_text() != text
    result = check(edited)
    assert result.returncode == 1
    assert '+            raise BadCallError(f"{self._name} was closed")' in result.stdout
    assert "edit the asyncio driver and run the tool" in result.stderr


def test_the_blocking_driver_has_no_async_code_left() -> None:
    with GENERATED.open() as source:
        names = {
            token.string
            for token in tokenize.generate_tokens(source.readline)
            if token.type == tokenize.NAME
        }
    assert not {"async", "await", "asyncio"} & names
    assert not [name for name in names if "async" in name.lower()]
