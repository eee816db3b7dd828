"""Domain errors. The hub maps each class to one HTTP status in its error middleware."""

from __future__ import annotations


class DomainError(Exception):
    """A command that the domain refuses. ``code`` is the machine-readable reason."""

    code = "domain_error"

    def __init__(self, detail: str, *, field: str | None = None, code: str | None = None) -> None:
        """``code``: a more precise machine code than the class's (the status stays the class's)."""
        super().__init__(detail)
        self.detail = detail
        self.field = field
        if code is not None:
            self.code = code


class NotFound(DomainError):
    code = "not_found"


class AlreadyExists(DomainError):
    code = "already_exists"


class Conflict(DomainError):
    """A state change that the current state forbids (a second active card, revoking twice)."""

    code = "conflict"


class Forbidden(DomainError):
    """A caller acting on a record that is not its own (a cardholder and another account's card),
    known only where the record is (the writer)."""

    code = "forbidden"


class Invalid(DomainError):
    """A value that breaks a rule of DESIGN §1–2 (e.g. a pos device without a merchant)."""

    code = "invalid"
