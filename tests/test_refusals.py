"""One rule for answering a refused login over HTTP, used by the service, the
console and the Starlette integration alike."""

from typing import Any

import pytest

from pgusers import DISABLED, MFA_REQUIRED, OK, REJECTED, THROTTLED, LoginOutcome
from pgusers.integrations._common import Refusal, refusal


@pytest.mark.parametrize(
    ("retry_after", "seconds"), [(0.0, 1), (0.2, 1), (1.0, 1), (2.5, 3), (3.0, 3), (899.1, 900)]
)
def test_a_throttled_login_waits_whole_seconds_rounded_up(retry_after: Any, seconds: Any) -> None:
    answer = refusal(LoginOutcome(THROTTLED, "", False, None, retry_after))
    assert answer is not None
    assert answer == Refusal(
        429, "throttled", f"too many failed logins: try again in {seconds} s", seconds
    )
    assert answer.headers() == {"Retry-After": str(seconds)}


def test_the_other_refusals_and_a_success() -> None:
    disabled = refusal(LoginOutcome(DISABLED, "", False, None, 0.0))
    rejected = refusal(LoginOutcome(REJECTED, "", False, None, 0.0))
    assert disabled is not None and rejected is not None
    assert (disabled.status, disabled.code, disabled.headers()) == (403, "account_disabled", {})
    assert (rejected.status, rejected.code) == (401, "login_failed")
    assert refusal(LoginOutcome(OK, "k" * 43, False, 1, 0.0)) is None
    due = refusal(LoginOutcome(MFA_REQUIRED, "", False, 1, 0.0, "t" * 43, ("totp",)))
    assert due is not None and (due.status, due.code) == (401, "mfa_required")
