"""Adding an authenticator app from a page, the same way in the console and on the
account pages: begin (a QR code and the key), confirm with a code the app shows,
and, for a user who has none yet, the first recovery codes at once."""

from typing import Any

from fastapi import Request
from fastapi.responses import Response

from pgusers._aio import AsyncUserSpace
from pgusers._door import acting_as
from pgusers._errors import BadCallError
from pgusers._results import NOT_FOUND, OK, REJECTED
from pgusers.web import _pages as pages
from pgusers.web._pages import Area


async def begin(
    request: Request,
    area: Area,
    space: AsyncUserSpace,
    userid: int,
    context: dict[str, Any],
) -> Response:
    """The page with a new enrollment's QR code, key and code form (it replaces any
    enrollment of the user's not confirmed yet)."""
    enrollment = await space.begin_totp(userid)
    shown = {**context, "enrollment": enrollment, "factor_id": enrollment.factor_id}
    return pages.page(request, area, "enroll.html", shown)


async def confirm(
    request: Request,
    area: Area,
    space: AsyncUserSpace,
    form: dict[str, str],
    *,
    who: tuple[int, str, str | None],
    context: dict[str, Any],
    going_to: str,
) -> Response:
    """Confirm the enrollment of the form's ``factor_id`` with its ``code``: on to
    ``going_to``, through the first recovery codes when the user has none; a wrong
    code asks again; an enrollment that has expired starts over."""
    userid, actor, source = who
    factor_id, code = form.get("factor_id", ""), form.get("code", "").replace(" ", "")
    with acting_as(actor, source=source):
        try:
            status = await space.confirm_totp(userid, factor_id, code)
        except BadCallError:  # not six digits, or not a factor id at all
            status = REJECTED if code and factor_id else NOT_FOUND
        if status == OK and (await space.factors(userid)).recovery_codes == 0:
            codes = await space.new_recovery_codes(userid)
            shown = {**context, "codes": codes, "next": going_to}
            return pages.page(request, area, "recovery_codes.html", shown)
    if status == OK:
        return pages.back_to(area, going_to, "enrolled")
    if status == REJECTED:
        error = "That code is not the one the app shows now. Enter its current code."
        shown = {**context, "factor_id": factor_id, "error": error}
        return pages.page(request, area, "enroll.html", shown, 400)
    error = "This setup has expired. Start again."
    return pages.page(request, area, "enroll.html", {**context, "error": error}, 400)
