"""The subscriber timeline in words: events described by the app that knows them, a message's statuses
grouped into one line.

The subscribers app knows events only as names and attributes. Apps below it (whatsapp) register a
describer for the events they record, from their ``AppConfig.ready()``; the email and push events
are described at the end of this module. An event without one is shown by name with its
attributes. A describer may give a ``group`` key: the events of one page of the timeline that
share it (the delivered, read and failed statuses of one message) become one entry, at the place
of the newest, with each status as a step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from .models import Event


@dataclass(frozen=True)
class Description:
    title: str  # "WhatsApp template order_update"
    detail: str = ""  # "Failed: (131026) Message undeliverable"
    step: str = ""  # the label of this event inside a group: "Delivered"
    group: str = ""  # events with the same key on one page become one entry
    tone: str = ""  # "", "success", "danger": the badge colour of the step


Describer = Callable[[Event], Description]
CHANNEL_NAMES = {"whatsapp": "WhatsApp", "email": "email", "push": "push"}
# Where a consent change or sign-up came from (ConsentSource values, and "whatsapp" for people who
# first wrote to the business), in the words the timeline uses.
SOURCE_NAMES = {
    "panel": "the control panel",
    "import": "a CSV import",
    "api": "the API",
    "keyword": "an inbound keyword",
    "meta_preference": "Meta's preference webhook",
    "unsubscribe_link": "the unsubscribe link in an email",
    "email_provider": "a complaint to the email provider",
    "push_device": "the push settings of a device",
    "whatsapp": "a WhatsApp message",
}
_describers: dict[str, Describer] = {}


def register(names: Iterable[str], describer: Describer) -> None:
    for name in names:
        _describers[name] = describer


@dataclass
class Step:
    label: str
    at: datetime
    tone: str = ""


@dataclass
class Entry:
    occurred_at: datetime  # the newest event of the entry
    event: Event  # the newest event: its name links to the event's page
    title: str
    detail: str = ""
    steps: list[Step] = field(default_factory=list)
    attributes: dict = field(default_factory=dict)  # shown for events nobody describes


def entries(events: Iterable[Event]) -> list[Entry]:
    """One entry per event, or per group of events, newest first as the events come."""
    result: list[Entry] = []
    groups: dict[str, Entry] = {}
    for event in events:
        describer = _describers.get(event.name)
        if describer is None:
            result.append(Entry(event.occurred_at, event, event.name, attributes=event.attributes))
            continue
        described = describer(event)
        step = Step(described.step, event.occurred_at, described.tone) if described.step else None
        entry = groups.get(described.group) if described.group else None
        if entry is None:
            entry = Entry(event.occurred_at, event, described.title, described.detail)
            result.append(entry)
            if described.group:
                groups[described.group] = entry
        elif described.detail and not entry.detail:
            entry.detail = described.detail
        if step is not None:
            entry.steps.append(step)
    for entry in result:
        entry.steps.sort(key=lambda s: s.at)
    return result


def describe_consent(event: Event) -> Description:
    attributes = event.attributes
    channel = CHANNEL_NAMES.get(attributes.get("channel") or "whatsapp", attributes.get("channel"))
    source = attributes.get("source") or ""
    if event.name == "Subscribed":
        title = f"Subscribed ({channel})" if attributes.get("channel") else "Subscribed"
    else:
        title = f"Opted out of {channel}"
    return Description(title=title, detail=f"via {SOURCE_NAMES.get(source, source)}" if source else "")


register(["Subscribed", "Unsubscribed"], describe_consent)


# The events of an email or a push after it left (campaigns.channel_events records them, with the
# message's public id in ``message``): event name -> (channel word, step label, badge tone). The
# names are campaigns' EVENT_NAMES; the words stay here, as the subscribers app cannot import
# campaigns.
CHANNEL_STEPS = {
    "EmailDelivered": ("Email", "Delivered", ""),
    "EmailOpened": ("Email", "Opened", "success"),
    "EmailClicked": ("Email", "Clicked", "success"),
    "EmailBounced": ("Email", "Bounced", "danger"),
    "EmailComplained": ("Email", "Marked as spam", "danger"),
    "PushOpened": ("Push", "Opened", "success"),
}


def describe_channel_event(event: Event) -> Description:
    """One entry per email or push: its subject (or title) when the event names it, each report
    (delivered, opened, clicked, bounced) as a step, a clicked link or a bounce's reason below."""
    attributes = event.attributes
    channel, step, tone = CHANNEL_STEPS[event.name]
    subject = attributes.get("subject") or attributes.get("title") or ""
    title = f"{channel} “{subject}”" if subject else f"{channel} message"
    if event.name == "EmailClicked":
        detail = f"Clicked {attributes.get('url')}" if attributes.get("url") else ""
    elif event.name == "EmailBounced":
        kind = "Hard bounce" if attributes.get("bounce", "hard") == "hard" else "Soft bounce"
        detail = f"{kind}: {attributes.get('reason') or 'no reason given'}"
    elif event.name == "EmailComplained":
        detail = "The recipient marked it as spam: no more email to this address."
    else:
        detail = ""
    message = attributes.get("message") or ""
    return Description(
        title=title, detail=detail, step=step, tone=tone, group=f"{channel}:{message}" if message else ""
    )


register(CHANNEL_STEPS, describe_channel_event)
