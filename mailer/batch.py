"""What one Dramatiq message asks for: one kind, one purpose, one intent, up to 1000 recipients."""

from __future__ import annotations

from dataclasses import dataclass

#: Recipients one message carries: SendGrid's limit of personalizations per request, and what one
#: gate query and one bulk write handle well (DESIGN.md section 4).
MAX_BATCH_SIZE = 1000


@dataclass(frozen=True)
class BatchSpec:
    """A batch of intended sends. With a recipient id, it makes each send key."""

    kind: str
    purpose: str
    #: What the sends are: ``campaign:42``, ``digest:daily:2026-11-26``, ``test:<uuid>``.
    belongs_to: str
    recipient_ids: tuple[int, ...]
    #: Partner offers about one partner: the partner list versions naming it; the gate then
    #: requires consent given for one of them. Not carried in message arguments: the campaign
    #: actor rebuilds it from the campaign.
    partner_list_versions: tuple[str, ...] | None = None
    #: Campaign sends (a campaign batch's, test sends): the campaign they come from. The campaign
    #: actor reads it from the batch; a campaign spec sent to the ``deliver`` actor carries it as
    #: its last argument.
    campaign_id: int | None = None

    def __post_init__(self) -> None:
        if len(self.recipient_ids) > MAX_BATCH_SIZE:
            raise ValueError(f"a batch holds at most {MAX_BATCH_SIZE} recipients")

    def as_message_args(self) -> tuple[str, str, str, list[int]] | tuple[str, str, str, list[int], int]:
        """The ``deliver`` actor's arguments: ids and keys only, never personal data; the campaign id
        last, only when there is one (messages of other kinds keep their four arguments)."""
        args = (self.kind, self.purpose, self.belongs_to, list(self.recipient_ids))
        return args if self.campaign_id is None else (*args, self.campaign_id)


def split(
    kind: str, purpose: str, belongs_to: str, recipient_ids: list[int], *, size: int = MAX_BATCH_SIZE
) -> list[BatchSpec]:
    """Cut a list of recipients into batches of at most ``size`` (MAX_BATCH_SIZE by default)."""
    return [
        BatchSpec(kind, purpose, belongs_to, tuple(recipient_ids[i : i + size]))
        for i in range(0, len(recipient_ids), size)
    ]
