"""The service's people: sign-in, the rights policy they are given, and reading the audit log."""

from __future__ import annotations

import contextlib
import functools
from datetime import datetime
from typing import TYPE_CHECKING

from pipelines.errors import (
    AccessError,
    AuditError,
    PermissionDeniedError,
)
from pipelines.service.audit import AuditEntry
from pipelines.service.policy import PolicySource, load_policy
from pipelines.service.results import (
    Caller,
    Face,
)

if TYPE_CHECKING:
    from pipelines.service.signin import Person

from pipelines.service.core import ServiceCore


class People(ServiceCore):
    """Who signs in (a directory's password, a provider's person), with which policy; the audit log's reading."""

    # -- the audit log --------------------------------------------------------------------------------

    def audit(self, caller: Caller, since: datetime | None = None, limit: int | None = None) -> list[AuditEntry]:
        """The audit log's rows at or after ``since``, oldest first (``limit``: the latest that many).

        Only for a caller who administers every collection (``reads_audit``).
        """
        if not self.reads_audit(caller):
            message = (
                "監査ログを読む権限がありません（すべてのコレクションの管理権限が要ります）。管理者に確かめてください。"
            )
            self._refused(caller, "*", message)
            raise PermissionDeniedError(message)
        return self.library.audit.entries(since, limit)

    def reads_audit(self, caller: Caller) -> bool:
        """Whether the caller may read the audit log: every right, or ``admin`` of every collection (``*``)."""
        return caller.may("*", "admin")

    @functools.cached_property
    def policy(self) -> PolicySource:
        """``RAG_POLICY_FILE``'s rights for signed-in people, reread as it changes, each reading audited."""
        return load_policy(self.settings.policy_file, on_change=self._policy_changed)

    def _policy_changed(self, detail: str) -> None:
        with contextlib.suppress(AuditError):  # the policy in force does not wait on the log
            self.policy_reloaded(Caller("cli", "system"), detail)

    def sign_in(self, face: Face, user: str, password: str, address: str = "") -> Caller:
        """A person signed in with their directory's user name and password (LDAP / Active Directory).

        Refused with the same words for an unknown user and a wrong password; both ways audited.
        """
        from pipelines.service.signin import LdapDirectory

        try:
            person = LdapDirectory.from_settings(self.settings).authenticate(user, password)
        except AccessError as error:
            self.sign_in_refused(Caller(face, user, address), str(error))
            raise
        caller = self.person(face, person, address)
        self.signed_in(caller)
        return caller

    def person(self, face: Face, person: Person, address: str = "") -> Caller:
        """The caller of a person someone else signed in (an OpenID Connect provider), with the policy's rights."""
        return Caller(face, person.user, address, self.policy, user=person.user, groups=person.groups)

    def signed_in(self, caller: Caller) -> None:
        """Record a sign-in (a face that signs people in calls this once it knows who they are)."""
        self._audit(caller, "sign_in")

    def sign_in_refused(self, caller: Caller, reason: str) -> None:
        """Record a refused sign-in (an unknown API key); the face refuses it whether or not the row is written."""
        with contextlib.suppress(AuditError):
            self._audit(caller, "sign_in_failed", detail=reason, outcome="refused")

    def policy_reloaded(self, caller: Caller, detail: str = "") -> None:
        """Record that the rights were read again (what changed in ``detail``)."""
        self._audit(caller, "policy_reloaded", detail=detail)
