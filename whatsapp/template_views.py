"""Template pages: the list with filters, a template's page with a phone-like preview, and the
"new template" form that lints a draft and submits it to Meta.

The preview is rendered from components in Meta's shape, both for synced templates and for the
payload a draft would send, so what the form shows is what Meta receives.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Count, Max, Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path
from django.utils.cache import patch_vary_headers
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from controlpanel.models import Role
from controlpanel.services import Actor
from controlpanel.tenancy import project_view
from controlpanel.wording import mid_sentence

from . import placeholders, services
from . import templates_lint as lint
from .errors import GraphError
from .models import MessageTemplate, TemplateCategory, TemplateStatus, WhatsAppAccount
from .template_forms import BUTTON_CHOICES, BUTTON_INPUTS, TemplateForm

STATUS_BADGES = {
    "APPROVED": "bg-green-lt",
    "PENDING": "bg-yellow-lt",
    "IN_APPEAL": "bg-yellow-lt",
    "REJECTED": "bg-red-lt",
    "PAUSED": "bg-orange-lt",
    "DISABLED": "bg-dark-lt",
    "FLAGGED": "bg-orange-lt",
    "LIMIT_EXCEEDED": "bg-orange-lt",
}
QUALITY = {
    "GREEN": (pgettext_lazy("quality", "High"), "bg-green"),
    "YELLOW": (pgettext_lazy("quality", "Medium"), "bg-yellow"),
    "RED": (pgettext_lazy("quality", "Low"), "bg-red"),
}
HIDDEN_BY_DEFAULT = ("DELETED",)
# A pending template's page asks for its status this often (the simulator decides in seconds,
# Meta in minutes); htmx stops polling when the answer has this status.
POLL_SECONDS = 3
STOP_POLLING = 286


def _is_partial(request: HttpRequest, target: str) -> bool:
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and htmx.target == target and not htmx.history_restore_request


def _render(
    request: HttpRequest, template: str, context: dict, partial: str, status: int = 200
) -> HttpResponse:
    """The whole page, or only ``partial`` when htmx asks to swap the element with that id."""
    name = f"{template}#{partial}" if _is_partial(request, partial) else template
    response = render(request, name, context, status=status)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def _accounts(request: HttpRequest) -> list[WhatsAppAccount]:
    return list(WhatsAppAccount.objects.for_project(request.project).order_by("created_at"))


def status_label(status: str) -> str:
    return TemplateStatus.label_of(status) or _("Unknown")


def category_label(category: str) -> str:
    if category in TemplateCategory.values:
        return str(TemplateCategory(category).label)
    return category.title()


def _decorate(template: MessageTemplate) -> MessageTemplate:
    template.badge = STATUS_BADGES.get(template.status, "bg-secondary-lt")  # type: ignore[attr-defined]
    template.status_label = status_label(template.status)  # type: ignore[attr-defined]
    # Meta's reason codes (INVALID_FORMAT, TAG_CONTENT_MISMATCH) in words.
    template.reason_label = template.rejected_reason.replace("_", " ").capitalize()  # type: ignore[attr-defined]
    template.category_label = category_label(template.category)  # type: ignore[attr-defined]
    template.previous_category_label = category_label(template.previous_category)  # type: ignore[attr-defined]
    label, css = QUALITY.get(template.quality_score, (_("Unknown"), "bg-secondary"))
    template.quality_label, template.quality_css = label, css  # type: ignore[attr-defined]
    return template


# --- preview -------------------------------------------------------------------------------------

# Placeholders for parameters while WhatsApp's *bold* _italic_ ~strike~ ```mono``` are applied, so
# sample values are never read as formatting.
_MARK = "\ue000{}\ue001"
_MARKED = re.compile("\ue000(\\d+)\ue001")
_FORMATS = [
    (re.compile(r"```(.+?)```", re.DOTALL), "code"),
    (re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])"), "strong"),
    (re.compile(r"(?<![\w_])_(?=\S)([^_\n]+?)(?<=\S)_(?![\w_])"), "em"),
    (re.compile(r"(?<![\w~])~(?=\S)([^~\n]+?)(?<=\S)~(?![\w~])"), "del"),
]


def render_text(text: str, samples: dict[str, str]) -> SafeString:
    """WhatsApp text as HTML: parameters replaced by their samples (marked), formatting applied."""
    slots: list[str] = []

    def hold(match: re.Match) -> str:
        name = match.group(1).strip()
        value = samples.get(name, "")
        if value:
            slots.append(f'<span class="wa-param" title="{{{{{escape(name)}}}}}">{escape(value)}</span>')
        else:
            slots.append(f'<span class="wa-param wa-param-missing">{escape(match.group(0))}</span>')
        return _MARK.format(len(slots) - 1)

    html = str(escape(placeholders.TOKEN.sub(hold, text or "")))
    for pattern, tag in _FORMATS:
        html = pattern.sub(lambda m, tag=tag: f"<{tag}>{m.group(1)}</{tag}>", html)
    html = _MARKED.sub(lambda m: slots[int(m.group(1))], html)
    # Every piece of text was escaped above; only our own tags are raw.
    return mark_safe(html)


@dataclass
class PreviewButton:
    kind: str  # reply, url, phone, copy, autofill, other
    label: str
    detail: str = ""


@dataclass
class Preview:
    header: SafeString | str = ""
    media: str = ""  # IMAGE, VIDEO, DOCUMENT, LOCATION
    media_sample: str = ""
    body: SafeString | str = ""
    footer: str = ""
    buttons: list[PreviewButton] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.header or self.media or self.body or self.footer or self.buttons)


def _find(components: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    for component in components if isinstance(components, list) else []:
        if isinstance(component, dict) and str(component.get("type", "")).upper() == kind:
            return component
    return {}


def build_preview(components: list[dict[str, Any]], *, category: str) -> Preview:
    """How a phone shows the template, with Meta's sample values in place of the parameters."""
    preview = Preview()
    header = _find(components, "HEADER")
    if header:
        fmt = str(header.get("format") or "TEXT").upper()
        if fmt == "TEXT":
            preview.header = render_text(str(header.get("text") or ""), lint.text_examples(header, "header"))
        else:
            preview.media = fmt
            preview.media_sample = lint.media_sample(header)
    body = _find(components, "BODY")
    samples = lint.text_examples(body, "body")
    text = str(body.get("text") or "")
    if category == lint.AUTHENTICATION:
        samples.setdefault("1", lint.AUTH_SAMPLE_CODE)
        if not text:
            security = body.get("add_security_recommendation")
            text = lint.AUTH_BODY + (f" {lint.AUTH_SECURITY}" if security else "")
    preview.body = render_text(text, samples) if text else ""
    footer = _find(components, "FOOTER")
    if footer.get("text"):
        preview.footer = str(footer["text"])
    elif footer.get("code_expiration_minutes"):
        preview.footer = lint.expiry_text(int(footer["code_expiration_minutes"]))
    buttons = _find(components, "BUTTONS").get("buttons") or []
    for button in buttons if isinstance(buttons, list) else []:
        if isinstance(button, dict):
            preview.buttons.append(_preview_button(button, category))
    return preview


def _preview_button(button: dict[str, Any], category: str) -> PreviewButton:
    kind = str(button.get("type") or "").upper()
    text = str(button.get("text") or "")
    if kind == "QUICK_REPLY":
        return PreviewButton("reply", text)
    if kind == "OTP" or (kind == "URL" and category == lint.AUTHENTICATION):
        if str(button.get("otp_type") or "").upper() == "ONE_TAP":
            return PreviewButton(
                "autofill", str(button.get("autofill_text") or _("Autofill")), _("copy code fallback")
            )
        return PreviewButton("copy", text or _("Copy code"), lint.AUTH_SAMPLE_CODE)
    if kind == "URL":
        url = str(button.get("url") or "")
        examples = button.get("example") or []
        if placeholders.tokens(url) and examples:
            url = str(examples[0] if isinstance(examples, list) else examples)
        return PreviewButton("url", text, url)
    if kind == "PHONE_NUMBER":
        return PreviewButton("phone", text, str(button.get("phone_number") or ""))
    if kind == "COPY_CODE":
        example = button.get("example")
        code = example[0] if isinstance(example, list) and example else example
        return PreviewButton("copy", text or _("Copy offer code"), str(code or ""))
    return PreviewButton("other", text or kind.replace("_", " ").title())


# --- list ----------------------------------------------------------------------------------------


@dataclass
class Filters:
    q: str = ""
    status: str = ""
    category: str = ""
    language: str = ""
    errors: list[str] = field(default_factory=list)

    PARAMS = ("q", "status", "category", "language")

    @classmethod
    def from_data(cls, data, languages: list[str]) -> Filters:
        f = cls(**{p: (data.get(p) or "").strip() for p in cls.PARAMS})
        if f.status and f.status not in TemplateStatus.values:
            f.errors.append(_("Unknown status “%(status)s”.") % {"status": f.status})
            f.status = ""
        if f.category and f.category not in TemplateCategory.values:
            f.errors.append(_("Unknown category “%(category)s”.") % {"category": f.category})
            f.category = ""
        if f.language and f.language not in languages:
            f.errors.append(_("No template is in the language “%(language)s”.") % {"language": f.language})
            f.language = ""
        return f

    @property
    def active(self) -> bool:
        return any(getattr(self, p) for p in self.PARAMS)

    def query(self) -> str:
        params = {p: getattr(self, p) for p in self.PARAMS if getattr(self, p)}
        return "?" + urlencode(params) if params else ""


@project_view(section="templates")
def template_list(request: HttpRequest) -> HttpResponse:
    accounts = _accounts(request)
    context: dict[str, Any] = {"accounts": accounts}
    if not accounts:
        return render(request, "whatsapp/templates.html", context)
    templates = MessageTemplate.objects.for_project(request.project)
    stats = templates.aggregate(
        last_synced=Max("synced_at"), hidden=Count("pk", filter=Q(status__in=HIDDEN_BY_DEFAULT))
    )
    languages = sorted(set(templates.values_list("language", flat=True)))
    filters = Filters.from_data(request.GET, languages)
    shown = templates.select_related("account")
    if filters.status:
        shown = shown.filter(status=filters.status)
    else:
        shown = shown.exclude(status__in=HIDDEN_BY_DEFAULT)
    if filters.category:
        shown = shown.filter(category=filters.category)
    if filters.language:
        shown = shown.filter(language=filters.language)
    if filters.q:
        shown = shown.filter(Q(name__icontains=filters.q.replace(" ", "_")) | Q(name__icontains=filters.q))
    rows = [_decorate(t) for t in shown.order_by("name", "language")]
    for row in rows:
        body = _find(row.components, "BODY")
        row.body_text = str(body.get("text") or "")  # type: ignore[attr-defined]
    context.update(
        rows=rows,
        filters=filters,
        languages=languages,
        statuses=TemplateStatus.choices,
        categories=TemplateCategory.choices,
        last_synced=stats["last_synced"],
        hidden_count=stats["hidden"] if not filters.status else 0,
        many_accounts=len(accounts) > 1,
    )
    response = _render(request, "whatsapp/templates.html", context, "template-results")
    if _is_partial(request, "template-results"):
        # Push the clean filter URL (no empty fields) so a shared link shows the same list.
        response["HX-Push-Url"] = request.path + filters.query()
    return response


# --- detail --------------------------------------------------------------------------------------


@project_view(section="templates")
def template_detail(request: HttpRequest, template_id) -> HttpResponse:
    template = get_object_or_404(
        MessageTemplate.objects.for_project(request.project).select_related("account"), public_id=template_id
    )
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET"])
    _decorate(template)
    polling = template.status == TemplateStatus.PENDING
    if _is_partial(request, "template-status"):
        context = {"template": template, "polling": polling, "poll_seconds": POLL_SECONDS, "oob": True}
        response = _render(request, "whatsapp/template_detail.html", context, "template-status")
        if not polling:
            response.status_code = STOP_POLLING
        return response
    return render(
        request,
        "whatsapp/template_detail.html",
        {
            "polling": polling,
            "poll_seconds": POLL_SECONDS,
            "template": template,
            "preview": build_preview(template.components, category=template.category),
            "parameters": lint.template_parameters(
                template.components, category=template.category, parameter_format=template.parameter_format
            ),
            "components_json": json.dumps(template.components, indent=2, ensure_ascii=False),
            "extra_json": json.dumps(template.extra, indent=2, ensure_ascii=False) if template.extra else "",
            "business_name": template.account.verified_name or template.account.display_phone_number,
        },
    )


# --- create --------------------------------------------------------------------------------------

FIELD_LABELS = {
    "account": gettext_lazy("WhatsApp number"),
    "name": gettext_lazy("Name"),
    "language": gettext_lazy("Language"),
    "category": gettext_lazy("Category"),
    "parameter_format": gettext_lazy("Parameters"),
    "header_format": gettext_lazy("Header"),
    "header_text": gettext_lazy("Header text"),
    "header_example": gettext_lazy("Header sample"),
    "header_media": gettext_lazy("Header sample file"),
    "body": gettext_lazy("Body"),
    "footer": gettext_lazy("Footer"),
    "buttons": gettext_lazy("Buttons"),
    "otp_type": gettext_lazy("Code button"),
    "otp_button_text": gettext_lazy("Button label"),
    "autofill_text": gettext_lazy("Autofill label"),
    "package_name": gettext_lazy("Package name"),
    "signature_hash": gettext_lazy("Signature hash"),
    "code_expiration_minutes": gettext_lazy("Code expiry"),
}


def field_label(key: str) -> str:
    if key.startswith("example:"):
        return _("Sample for %(parameter)s") % {"parameter": "{{" + key.removeprefix("example:") + "}}"}
    if key.startswith("button-"):
        __, index, part = key.split("-", 2)
        names = {
            "type": _("Button %(number)s type"),
            "text": _("Button %(number)s label"),
            "url": _("Button %(number)s address"),
            "example": _("Button %(number)s sample"),
            "phone_number": _("Button %(number)s number"),
        }
        number = int(index) + 1
        if part in names:
            return names[part] % {"number": number}
        return _("Button %(number)s %(part)s") % {"number": number, "part": part}
    return str(FIELD_LABELS.get(key, key))


def _button_rows(form: TemplateForm, problems: dict[str, list[lint.Problem]]) -> list[dict[str, Any]]:
    rows = []
    for index, row in enumerate(form.button_rows()):
        row_problems = {name: problems.get(lint.button_field(index, name), []) for name in BUTTON_INPUTS}
        rows.append({**row, "index": index, "problems": row_problems})
    return rows


def _example_rows(form: TemplateForm, draft: lint.Draft, problems: dict[str, list[lint.Problem]]):
    values = form.examples() if form.is_bound else {}
    return [
        {"name": name, "value": values.get(name, ""), "problems": problems.get(f"example:{name}", [])}
        for name in lint.parameters(draft.body)
    ]


def _by_field(problems: list[lint.Problem]) -> dict[str, list[lint.Problem]]:
    grouped: dict[str, list[lint.Problem]] = {}
    for problem in problems:
        grouped.setdefault(problem.field, []).append(problem)
    return grouped


def _edited_rows(request: HttpRequest) -> QueryDict:
    """The POST with a button row added or removed (for browsers without JavaScript)."""
    data = request.POST.copy()
    if "add_button" in data:
        for name in BUTTON_INPUTS:
            values = data.getlist(f"button_{name}")
            data.setlist(f"button_{name}", [*values, "QUICK_REPLY" if name == "type" else ""])
    elif "remove_button" in data and data["remove_button"].isdigit():
        index = int(data["remove_button"])
        for name in BUTTON_INPUTS:
            values = data.getlist(f"button_{name}")
            data.setlist(f"button_{name}", [v for i, v in enumerate(values) if i != index])
    return data


def _template_or_404(request: HttpRequest, public_id: str) -> MessageTemplate:
    try:
        key = uuid.UUID(str(public_id))
    except ValueError:
        raise Http404(_("No such template.")) from None
    return get_object_or_404(MessageTemplate.objects.for_project(request.project), public_id=key)


def copy_data(template: MessageTemplate) -> QueryDict:
    """The form's input for a new template like ``template`` (e.g. to fix a rejected one)."""
    data = QueryDict(mutable=True)
    components = template.components or []
    data.update(
        {
            "account": str(template.account.public_id),
            "name": f"{template.name}_v2"[: lint.MAX_NAME],
            "language": template.language,
            "category": template.category,
            "parameter_format": template.parameter_format or lint.POSITIONAL,
        }
    )
    header = _find(components, "HEADER")
    fmt = str(header.get("format") or "TEXT").upper() if header else ""
    if fmt == "TEXT":
        data["header_format"], data["header_text"] = "TEXT", str(header.get("text") or "")
        samples = list(lint.text_examples(header, "header").values())
        data["header_example"] = samples[0] if samples else ""
    elif fmt in lint.MEDIA_FORMATS:
        data["header_format"], data["header_media"] = fmt, lint.media_sample(header)
    body, footer = _find(components, "BODY"), _find(components, "FOOTER")
    buttons = _find(components, "BUTTONS").get("buttons") or []
    buttons = [b for b in buttons if isinstance(b, dict)] if isinstance(buttons, list) else []
    if template.category == lint.AUTHENTICATION:
        if body.get("add_security_recommendation"):
            data["add_security_recommendation"] = "on"
        if footer.get("code_expiration_minutes"):
            data["code_expiration_minutes"] = str(footer["code_expiration_minutes"])
        for button in buttons[:1]:
            data["otp_type"] = str(button.get("otp_type") or "COPY_CODE").upper()
            data["otp_button_text"] = str(button.get("text") or "")
            data["autofill_text"] = str(button.get("autofill_text") or "")
            apps = button.get("supported_apps")
            app = apps[0] if isinstance(apps, list) and apps and isinstance(apps[0], dict) else button
            data["package_name"] = str(app.get("package_name") or "")
            data["signature_hash"] = str(app.get("signature_hash") or "")
        return data
    data["body"] = str(body.get("text") or "")
    for name, value in lint.text_examples(body, "body").items():
        data[f"example:{name}"] = value
    data["footer"] = str(footer.get("text") or "")
    for button in buttons:
        kind = str(button.get("type") or "").upper()
        url = str(button.get("url") or "")
        example = button.get("example") or ""
        example = str(example[0] if example else "") if isinstance(example, list) else str(example)
        prefix = placeholders.link_prefix(url)
        if kind == "URL" and prefix != url and example.startswith(prefix):
            example = example[len(prefix) :]
        row = {"type": kind, "text": str(button.get("text") or ""), "url": url, "example": example,
               "phone_number": str(button.get("phone_number") or "")}  # fmt: skip
        for name in BUTTON_INPUTS:
            data.appendlist(f"button_{name}", row[name])
    return data


@project_view(section="templates", read=Role.MARKETER, write=Role.MARKETER)
def template_create(request: HttpRequest) -> HttpResponse:
    accounts = _accounts(request)
    context: dict[str, Any] = {"accounts": accounts, "button_choices": BUTTON_CHOICES}
    if not accounts:
        return render(request, "whatsapp/template_create.html", context)
    live = request.method == "GET" and _is_partial(request, "template-live")
    editing_rows = request.method == "POST" and (
        "add_button" in request.POST or "remove_button" in request.POST
    )
    copied_from = None
    if live:
        form = TemplateForm(request.GET, accounts=accounts)
    elif request.method == "GET" and request.GET.get("from"):
        copied_from = _template_or_404(request, request.GET["from"])
        form = TemplateForm(copy_data(copied_from), accounts=accounts)
    elif editing_rows:
        form = TemplateForm(_edited_rows(request), accounts=accounts)
    elif request.method == "POST":
        form = TemplateForm(request.POST, accounts=accounts)
    else:
        form = TemplateForm(accounts=accounts)
    if form.is_bound:
        form.is_valid()
        draft = form.draft()
        problems = lint.lint(draft)
        problems += [lint.Problem(name, str(e)) for name, errs in form.errors.items() for e in errs]
    else:
        draft = lint.Draft(category=lint.MARKETING, language="en_US", add_security_recommendation=True)
        problems = []
    account = form.selected_account() if form.is_bound else accounts[0]
    if form.is_bound and account is None:
        problems.append(lint.Problem("account", _("Choose the WhatsApp number the template belongs to.")))
    if account is not None and draft.name and draft.language:
        taken = (
            MessageTemplate.objects.filter(account=account, name=draft.name, language=draft.language)
            .exclude(status__in=HIDDEN_BY_DEFAULT)
            .first()
        )
        if taken:
            problems.insert(
                0,
                lint.Problem(
                    "name",
                    _(
                        "This number already has a template %(name)s in %(language)s (%(status)s); "
                        "choose another name or language."
                    )
                    % {
                        "name": draft.name,
                        "language": draft.language,
                        "status": status_label(taken.status),
                    },
                ),
            )
    meta_error: GraphError | None = None
    submitting = request.method == "POST" and not editing_rows
    if submitting and not lint.errors(problems) and account is not None:
        try:
            template = services.submit_template(account=account, draft=draft, actor=Actor(user=request.user))
        except GraphError as exc:
            meta_error = exc
        else:
            messages.success(
                request,
                _("%(name)s was sent to Meta for review: %(status)s.")
                % {"name": template.name, "status": mid_sentence(status_label(template.status))},
            )
            return redirect("whatsapp:template_detail", request.project.slug, template.public_id)
    show_problems = submitting or live or copied_from is not None
    by_field = _by_field(problems) if show_problems else {}
    form.mark_problems(by_field)
    payload = lint.build_payload(draft)
    context.update(
        form=form,
        draft=draft,
        problems=problems if show_problems else [],
        field_problems=by_field,
        labelled_problems=[(field_label(p.field), p) for p in problems] if show_problems else [],
        # The fields that still have a problem: the page drops notes an earlier submit left next
        # to fields that are fixed since.
        problem_fields=json.dumps(sorted(by_field)),
        error_count=len(lint.errors(problems)),
        button_rows=_button_rows(form, by_field),
        example_rows=_example_rows(form, draft, by_field),
        preview=build_preview(payload["components"], category=draft.category),
        payload_json=json.dumps(payload, indent=2, ensure_ascii=False),
        meta_error=meta_error,
        copied_from=copied_from,
        business_name=(account or accounts[0]).verified_name or (account or accounts[0]).display_phone_number,
        max_buttons=lint.MAX_BUTTONS,
    )
    return _render(request, "whatsapp/template_create.html", context, "template-live")


urlpatterns = [
    path("templates/", template_list, name="templates"),
    path("templates/new/", template_create, name="template_create"),
    path("templates/<uuid:template_id>/", template_detail, name="template_detail"),
]
