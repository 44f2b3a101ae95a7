"""Every operation of a UserSpace, shared by the sync and async APIs: the domains'
parts put together as the one :class:`Core` the facades hold."""

from pgusers._core.audit import AuditPart
from pgusers._core.base import Part
from pgusers._core.email_login import EmailLoginPart
from pgusers._core.factors import FactorsPart
from pgusers._core.federation import FederationPart
from pgusers._core.importer import LegacyPart
from pgusers._core.logins import LoginsPart
from pgusers._core.outbox import OutboxPart
from pgusers._core.passkeys import PasskeysPart
from pgusers._core.roles import RolesPart
from pgusers._core.service import ServicePart
from pgusers._core.sessions import SessionsPart
from pgusers._core.settings import SettingsPart
from pgusers._core.tokens import TokensPart
from pgusers._core.users import UsersPart


class Core(
    UsersPart,
    LoginsPart,
    TokensPart,
    SessionsPart,
    FactorsPart,
    PasskeysPart,
    RolesPart,
    FederationPart,
    EmailLoginPart,
    OutboxPart,
    SettingsPart,
    AuditPart,
    ServicePart,
    LegacyPart,
    Part,
):
    """What a UserSpace knows besides its connections, and every operation on it.

    Each part holds one domain's statements beside the operations that run them;
    they share the state :class:`~pgusers._core.base.Part` keeps, and no part calls
    another's methods."""
