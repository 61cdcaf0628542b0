"""The one exception the SMPP codec and session raise."""

from __future__ import annotations

from .constants import CommandStatus

__all__ = ["SmppError"]


class SmppError(Exception):
    """A PDU that cannot be decoded, encoded or sent, with the status to answer it.

    ``command_status`` is what a peer should put in the ``generic_nack`` or the
    error response (section 5.1.3); ``command_id`` and ``sequence_number`` are
    set whenever the 16-octet header was readable, so the caller can answer the
    right request.
    """

    command_status: int
    command_id: int | None
    sequence_number: int | None

    def __init__(
        self,
        command_status: int,
        message: str = "",
        *,
        command_id: int | None = None,
        sequence_number: int | None = None,
    ) -> None:
        self.command_status = command_status
        self.command_id = command_id
        self.sequence_number = sequence_number
        if not message:
            try:
                message = CommandStatus(command_status).name
            except ValueError:
                message = f"command_status 0x{command_status:08x}"
        super().__init__(message)

    def __repr__(self) -> str:
        return (
            f"SmppError({self.command_status:#x}, {self.args[0]!r}, "
            f"command_id={self.command_id!r}, sequence_number={self.sequence_number!r})"
        )
