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

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from .models import Event


@dataclass(frozen=True)
class Description:
    title: str  # "WhatsApp template order_update"
    detail: str = ""  # "Failed: (131026) Message undeliverable"
    step: str = ""  # the label of this event inside a group: "Delivered"
    group: str = ""  # events with the same key on one page become one entry
    tone: str = ""  # "", "success", "danger": the badge colour of the step


Describer = Callable[[Event], Description]
CHANNEL_NAMES = {"whatsapp": "WhatsApp", "email": gettext_lazy("email"), "push": gettext_lazy("push")}
# Where a consent change or sign-up came from (ConsentSource values, and "whatsapp" for people who
# first wrote to the business), in the words the timeline uses.
SOURCE_NAMES = {
    "panel": gettext_lazy("the control panel"),
    "import": gettext_lazy("a CSV import"),
    "api": gettext_lazy("the API"),
    "keyword": gettext_lazy("an inbound keyword"),
    "meta_preference": gettext_lazy("Meta's preference webhook"),
    "unsubscribe_link": gettext_lazy("the unsubscribe link in an email"),
    "email_provider": gettext_lazy("a complaint to the email provider"),
    "push_device": gettext_lazy("the push settings of a device"),
    "whatsapp": gettext_lazy("a WhatsApp message"),
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
        title = (
            _("Subscribed (%(channel)s)") % {"channel": channel}
            if attributes.get("channel")
            else _("Subscribed")
        )
    else:
        title = _("Opted out of %(channel)s") % {"channel": channel}
    detail = _("via %(source)s") % {"source": SOURCE_NAMES.get(source, source)} if source else ""
    return Description(title=title, detail=detail)


register(["Subscribed", "Unsubscribed"], describe_consent)


# The events of an email or a push after it left (campaigns.channel_events records them, with the
# message's public id in ``message``): event name -> (channel word, step label, badge tone). The
# names are campaigns' EVENT_NAMES; the words stay here, as the subscribers app cannot import
# campaigns.
CHANNEL_STEPS = {
    "EmailDelivered": (gettext_lazy("Email"), pgettext_lazy("status", "Delivered"), ""),
    "EmailOpened": (gettext_lazy("Email"), pgettext_lazy("status", "Opened"), "success"),
    "EmailClicked": (gettext_lazy("Email"), pgettext_lazy("status", "Clicked"), "success"),
    "EmailBounced": (gettext_lazy("Email"), pgettext_lazy("status", "Bounced"), "danger"),
    "EmailComplained": (gettext_lazy("Email"), pgettext_lazy("status", "Marked as spam"), "danger"),
    "PushOpened": (gettext_lazy("Push"), pgettext_lazy("status", "Opened"), "success"),
    "EmailFailed": (gettext_lazy("Email"), pgettext_lazy("status", "Failed"), "danger"),
    "PushFailed": (gettext_lazy("Push"), pgettext_lazy("status", "Failed"), "danger"),
}


def describe_channel_event(event: Event) -> Description:
    """One entry per email or push: its subject (or title) when the event names it, each report
    (delivered, opened, clicked, bounced) as a step, a clicked link or a bounce's reason below."""
    attributes = event.attributes
    channel, step, tone = CHANNEL_STEPS[event.name]
    subject = attributes.get("subject") or attributes.get("title") or ""
    if subject:
        title = _("%(channel)s “%(subject)s”") % {"channel": channel, "subject": subject}
    else:
        title = _("%(channel)s message") % {"channel": channel}
    if event.name == "EmailClicked":
        detail = _("Clicked %(url)s") % {"url": attributes.get("url")} if attributes.get("url") else ""
    elif event.name == "EmailBounced":
        kind = _("Hard bounce") if attributes.get("bounce", "hard") == "hard" else _("Soft bounce")
        detail = _("%(kind)s: %(reason)s") % {
            "kind": kind,
            "reason": attributes.get("reason") or _("no reason given"),
        }
    elif event.name == "EmailComplained":
        detail = _("The recipient marked it as spam: no more email to this address.")
    elif event.name in ("EmailFailed", "PushFailed"):
        detail = attributes.get("reason") or attributes.get("error_title") or ""
    else:
        detail = ""
    message = attributes.get("message") or ""
    return Description(
        title=title,
        detail=detail,
        step=step,
        tone=tone,
        group=f"{event.name[:4]}:{message}" if message else "",
    )


register(CHANNEL_STEPS, describe_channel_event)
