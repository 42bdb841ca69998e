"""The targets a column can be mapped to: the first guess from the header, and the check of
a mapping chosen on the mapping page."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from controlpanel.models import Project
from controlpanel.wording import mid_sentence

from .. import tags as tagtypes
from ..errors import InvalidInput
from ..models import ConsentState, TagDefinition

PROFILE_TARGETS = ("name", "email", "language", "country", "time_zone")

TARGET_LABELS = {
    "": gettext_lazy("Ignore"),
    "phone": gettext_lazy("Phone"),
    "external_id": gettext_lazy("External id"),
    "name": gettext_lazy("Name"),
    "email": gettext_lazy("Email"),
    "language": gettext_lazy("Language"),
    "country": gettext_lazy("Country"),
    "time_zone": gettext_lazy("Time zone"),
    "consent": gettext_lazy("WhatsApp consent"),
    "email_consent": gettext_lazy("Email consent"),
    "consent_evidence": gettext_lazy("Consent evidence"),
    "new": gettext_lazy("New tag"),
}

# Columns of a consent state, by the channel they write (the evidence column serves both).
CONSENT_TARGETS = ("consent", "email_consent")

SINGLE_TARGETS = ("phone", "external_id", *PROFILE_TARGETS, *CONSENT_TARGETS, "consent_evidence")

CONSENT_VALUES = {
    "yes": ConsentState.OPTED_IN,
    "y": ConsentState.OPTED_IN,
    "true": ConsentState.OPTED_IN,
    "1": ConsentState.OPTED_IN,
    "opted_in": ConsentState.OPTED_IN,
    "opted in": ConsentState.OPTED_IN,
    "opt-in": ConsentState.OPTED_IN,
    "no": ConsentState.OPTED_OUT,
    "n": ConsentState.OPTED_OUT,
    "false": ConsentState.OPTED_OUT,
    "0": ConsentState.OPTED_OUT,
    "opted_out": ConsentState.OPTED_OUT,
    "opted out": ConsentState.OPTED_OUT,
    "opt-out": ConsentState.OPTED_OUT,
}

_FORMULA_START = ("=", "+", "-", "@")

# Our own export writes "unknown" for people who never answered: no change, not an error.
CONSENT_NO_CHANGE = {"unknown"}


def parse_consent(text: str) -> ConsentState | None:
    """A consent cell (any consent column): the state to write, None for "no change"; an
    InvalidInput naming the value otherwise."""
    lowered = text.strip().lower()
    if lowered in CONSENT_NO_CHANGE:
        return None
    consent = CONSENT_VALUES.get(lowered)
    if consent is None:
        raise InvalidInput(f"Consent {text!r} is not one of yes, no, true, false, 1, 0, opted_in, opted_out.")
    return consent


_HEADER_TARGETS = {
    "phone": "phone",
    "phonenumber": "phone",
    "mobile": "phone",
    "mobilephone": "phone",
    "mobilenumber": "phone",
    "msisdn": "phone",
    "cell": "phone",
    "cellphone": "phone",
    "telephone": "phone",
    "tel": "phone",
    "whatsapp": "phone",
    "whatsappnumber": "phone",
    "whatsappphone": "phone",
    "handy": "phone",
    "telefon": "phone",
    "externalid": "external_id",
    "userid": "external_id",
    "customerid": "external_id",
    "clientid": "external_id",
    "crmid": "external_id",
    "name": "name",
    "fullname": "name",
    "contactname": "name",
    "customername": "name",
    "email": "email",
    "emailaddress": "email",
    "mail": "email",
    "language": "language",
    "lang": "language",
    "locale": "language",
    "country": "country",
    "countrycode": "country",
    "timezone": "time_zone",
    "tz": "time_zone",
    "consent": "consent",
    "optin": "consent",
    "whatsappoptin": "consent",
    "whatsappconsent": "consent",
    "marketingconsent": "consent",
    "emailconsent": "email_consent",
    "emailoptin": "email_consent",
    "newsletteroptin": "email_consent",
    "consentevidence": "consent_evidence",
    "optinevidence": "consent_evidence",
    "evidence": "consent_evidence",
    # Columns of our own export and of the rejected-rows report that are not imported.
    "line": "",
    "reason": "",
    "id": "",
    "createdat": "",
    "updatedat": "",
    "lastinboundat": "",
    "emailundeliverableat": "",
    "pushconsent": "",
    "pushdevices": "",
}


def _header_key(header: str) -> str:
    return re.sub(r"[\s_\-.]", "", header.strip().lower())


def auto_targets(headers: list[str], definitions: dict[str, TagDefinition]) -> list[dict[str, str]]:
    """A first guess at the mapping: known header names, existing tags, else a new tag."""
    used: set[str] = set()
    out = []
    for header in headers:
        key = _header_key(header)
        target = _HEADER_TARGETS.get(key)
        new_name = ""
        if target is None:
            existing = definitions.get(header.strip().lower())
            if existing is not None:
                target = f"tag:{existing.name}"
            elif tagtypes.builtin(header) is not None or not tagtypes.TAG_NAME_RE.match(header.strip()):
                target = ""
            else:
                target, new_name = "new", header.strip()
        if target in SINGLE_TARGETS and target in used:
            target = ""
        used.add(target)
        out.append({"target": target, "new_tag": new_name or header.strip()[:64]})
    return out


def clean_mapping(
    *,
    project: Project,
    headers: list[str],
    columns: list[dict[str, str]],
    key: str,
    default_evidence: str,
    opt_ins: Callable[[int], bool] | None = None,
) -> dict[str, Any]:
    """Check a mapping chosen on the mapping page; raise InvalidInput naming the column.

    ``opt_ins(column)`` says whether the file opts anyone in through that column: only then is
    evidence required (a file of opt-outs needs none).
    """
    if len(columns) != len(headers):
        raise InvalidInput(_("The mapping does not match the file's columns."), field="columns")
    definitions = tagtypes.definitions(project)
    seen: dict[str, str] = {}
    tag_names: dict[str, str] = {}
    cleaned = []
    for i, (header, col) in enumerate(zip(headers, columns, strict=True)):
        target = col.get("target", "")
        new_tag = (col.get("new_tag") or "").strip()
        field_name = f"col_{i}"
        if target in SINGLE_TARGETS:
            if target in seen:
                raise InvalidInput(
                    _("“%(header)s” and “%(other)s” are both mapped to %(target)s; choose one.")
                    % {"header": header, "other": seen[target], "target": TARGET_LABELS[target]},
                    field=field_name,
                )
            seen[target] = header
        elif target == "new":
            new_tag = tagtypes.validate_tag_name(new_tag or header)
            if tagtypes.builtin(new_tag) is not None:
                raise InvalidInput(
                    _("“%(tag)s” is a built-in field: map “%(header)s” to it directly.")
                    % {"tag": new_tag, "header": header},
                    field=field_name,
                )
            existing = definitions.get(new_tag.lower())
            if existing is not None:
                target, new_tag = f"tag:{existing.name}", ""
        elif target.startswith("tag:"):
            if target[4:].lower() not in definitions:
                raise InvalidInput(
                    _("The tag %(name)r no longer exists.") % {"name": target[4:]}, field=field_name
                )
            target = f"tag:{definitions[target[4:].lower()].name}"
            new_tag = ""
        elif target != "":
            raise InvalidInput(_("Unknown target for “%(header)s”.") % {"header": header}, field=field_name)
        tag_name = target[4:] if target.startswith("tag:") else new_tag if target == "new" else None
        if tag_name is not None:
            if tag_name.lower() in tag_names:
                raise InvalidInput(
                    _("“%(header)s” and “%(other)s” both write the tag %(tag)r.")
                    % {"header": header, "other": tag_names[tag_name.lower()], "tag": tag_name},
                    field=field_name,
                )
            tag_names[tag_name.lower()] = header
        cleaned.append({"target": target, "new_tag": new_tag if target == "new" else ""})
    if key not in ("phone", "external_id"):
        raise InvalidInput(_("Choose whether rows are matched by phone or by external id."), field="key")
    if key not in seen:
        raise InvalidInput(
            _("Rows are matched by %(key)s, so map a column to %(target)s.")
            % {"key": mid_sentence(TARGET_LABELS[key]), "target": TARGET_LABELS[key]},
            field="key",
        )
    default_evidence = (default_evidence or "").strip()
    consent_columns = [i for i, c in enumerate(cleaned) if c["target"] in CONSENT_TARGETS]
    if (
        consent_columns
        and "consent_evidence" not in seen
        and not default_evidence
        and any(opt_ins is None or opt_ins(column) for column in consent_columns)
    ):
        raise InvalidInput(
            _(
                "Opt-ins need evidence: map a consent evidence column or describe how these people "
                "agreed (e.g. “Signed up in store, paper form 2025”)."
            ),
            field="default_evidence",
        )
    if "consent_evidence" in seen and not consent_columns:
        raise InvalidInput(_("A consent evidence column needs a consent column too."), field="key")
    return {"columns": cleaned, "key": key, "default_evidence": default_evidence}
