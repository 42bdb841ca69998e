"""Bindings: Liquid that fills a template's placeholders for one recipient.

A campaign binds every placeholder of its template to a Liquid snippet, keyed like
``policy.template_parameters``: ``{"body": {"1": "{{ tags.first_name | default: 'Kunde' }}"},
"button:0": {"1": "{{ values.order_id }}"}}``. The snippet sees four names:

- ``subscriber``: name, phone, email, language, country, time_zone, external_id;
- ``tags``: the subscriber's tags by name, typed (integers, decimals, booleans, dates, lists),
  the built-in ones (``tags.language``) included. Tag names are compared as the project
  compares them, ignoring case, and a space may be written as ``_``: ``tags.time_zone``;
- ``values``: the per-recipient values given with the campaign or the API call;
- ``event``: the attributes of the event that started a journey.

Sandbox: python-liquid resolves names only by item lookup on the dicts we pass (never
attributes of Python objects), and the environment here has no template loader and no
``include``/``render`` tags, so a binding reads nothing but its context. Bounds, because a
binding is run once per recipient, hundreds of thousands of times: python-liquid's resource
limits (loop iterations, output size, local variables, block nesting, context depth), a
maximum source length, and a CPU-time budget per recipient (python-liquid has no time limit
of its own, and a worker thread cannot be interrupted: the budget is checked cooperatively on
variable and filter lookups, measured in the thread's CPU time so that waiting for the GIL or
the database never counts against it).

A binding that renders empty for a recipient skips that recipient with the reason: Meta
refuses empty parameters, and a message reading "Hello , your order  is ready" is worse than
none.
"""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.utils.formats import number_format
from django.utils.translation import gettext as _
from liquid import Environment
from liquid.builtin.expressions import FilteredExpression, Path
from liquid.builtin.output import OutputNode
from liquid.context import RenderContext
from liquid.exceptions import (
    LiquidError,
    LiquidInterrupt,
    LiquidSyntaxError,
    ResourceLimitError,
    StopRender,
    TemplateNotFoundError,
)
from liquid.output import LimitedStringIO
from liquid.stringify import to_liquid_string
from liquid.template import BoundTemplate

from controlpanel.models import Project
from subscribers import tags as tagtypes
from subscribers.errors import InvalidInput
from subscribers.models import ConsentState, Subscriber, TagDefinition, TagValue

from .outcomes import Skip

MAX_BINDING_LENGTH = 1_000  # characters of Liquid per placeholder
OUTPUT_LIMIT = 4_096  # bytes one placeholder may render (Meta's whole body is 1,024 characters)
DOCUMENT_OUTPUT_LIMIT = 262_144  # bytes one email part may render
CPU_BUDGET = 0.05  # seconds of CPU per recipient (all placeholders); a normal render takes ~10 µs
_BUDGET_EVERY = 256  # lookups between checks: reading the thread's CPU clock costs ~2 µs

ROOTS = ("subscriber", "tags", "values", "event")
SUBSCRIBER_FIELDS = ("name", "phone", "email", "language", "country", "time_zone", "external_id")
# Header parameters that are not text: the campaign's header media URL fills them, not a binding.
MEDIA_PARAMETERS = ("image", "video", "document")


class BudgetExceeded(ResourceLimitError):
    """A binding used more CPU time than CPU_BUDGET."""


class _BudgetedContext(RenderContext):
    """A render context that stops a binding once it has used its share of CPU time.

    The clock starts only after _BUDGET_EVERY lookups, so an ordinary binding (a handful of
    lookups) never reads it.
    """

    __slots__ = ("_cpu_deadline", "_lookups")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._lookups = 0
        self._cpu_deadline = 0.0

    def _tick(self) -> None:
        self._lookups += 1
        if self._lookups % _BUDGET_EVERY:
            return
        now = time.thread_time()
        if not self._cpu_deadline:
            self._cpu_deadline = now + CPU_BUDGET
        elif now > self._cpu_deadline:
            raise BudgetExceeded("the binding took too long to render", token=None)

    def get(self, path: list[object], *, token: Any, default: object = ...) -> object:
        self._tick()
        if default is ...:
            return super().get(path, token=token)
        return super().get(path, token=token, default=default)

    def filter(self, name: str, token: Any) -> Any:
        self._tick()
        return super().filter(name, token)


class _BindingTemplate(BoundTemplate):
    context_class = _BudgetedContext


class _BindingEnvironment(Environment):
    # python-liquid's own resource limits (all off by default).
    loop_iteration_limit = 1_000  # iterations of all nested loops together (their product)
    output_stream_limit = OUTPUT_LIMIT
    local_namespace_limit = 16_384  # bytes of {% assign %}/{% capture %} values
    context_depth_limit = 5
    block_nesting_limit = 10
    template_class = _BindingTemplate


class _DocumentEnvironment(_BindingEnvironment):
    # A whole email body (mail.services), not one placeholder: the same sandbox and CPU budget,
    # with room for an HTML document (Gmail clips a message at about 100 KB anyway).
    output_stream_limit = DOCUMENT_OUTPUT_LIMIT


def _environment(cls: type[Environment] = _BindingEnvironment, *, autoescape: bool = False) -> Environment:
    env = cls(autoescape=autoescape)  # strict: unknown filters and bad syntax are errors
    # No loader and no tags that would use one: a binding cannot read files or other templates.
    for name in ("include", "render"):
        env.tags.pop(name, None)
    return env


ENV = _environment()
# Email parts: plain text (subject, preheader, text body) and HTML, where every output is escaped
# (a subscriber's name "<b>" must not become markup; the template's own markup is kept).
TEXT_DOCUMENT_ENV = _environment(_DocumentEnvironment)
HTML_DOCUMENT_ENV = _environment(_DocumentEnvironment, autoescape=True)


# --- compiling and checking ----------------------------------------------------------------


def placeholder_label(component: str, name: str) -> str:
    """How people call a placeholder: "body {{1}}", "header {{name}}", "button 1 {{1}}"."""
    where = component
    if component.startswith("button:"):
        where = f"button {int(component.split(':', 1)[1]) + 1}"
    return f"{where} {{{{{name}}}}}"


def _position(source: str, index: int) -> str:
    line = source.count("\n", 0, index) + 1
    column = index - (source.rfind("\n", 0, index) + 1) + 1
    if "\n" in source:
        return _("line %(line)s, column %(column)s") % {"line": line, "column": column}
    return _("character %(column)s") % {"column": column}


def _error_message(err: LiquidError) -> str:
    if isinstance(err, TemplateNotFoundError):
        return _("bindings cannot include other templates")
    message = str(err.message) if getattr(err, "message", None) else str(err).split("\n")[0]
    return message.rstrip(".")


def compile_binding(source: Any, *, component: str, name: str) -> BoundTemplate:
    """Parse one binding; InvalidInput naming the placeholder and the position of the error."""
    field_name = f"bindings.{component}.{name}"
    label = placeholder_label(component, name)
    if not isinstance(source, str):
        raise InvalidInput(
            _("The binding of %(label)s must be text.") % {"label": label},
            field=field_name,
            code="invalid_binding",
        )
    if len(source) > MAX_BINDING_LENGTH:
        raise InvalidInput(
            _("The binding of %(label)s is %(length)s characters long; at most %(limit)s are allowed.")
            % {
                "label": label,
                "length": number_format(len(source), force_grouping=True),
                "limit": number_format(MAX_BINDING_LENGTH, force_grouping=True),
            },
            field=field_name,
            code="invalid_binding",
        )
    return compile_document(
        source, env=ENV, field=field_name, what=_("The binding of %(label)s") % {"label": label}
    )


def compile_document(
    source: str, *, env: Environment, field: str, what: str, roots: Sequence[str] = ROOTS
) -> BoundTemplate:
    """Parse Liquid of ``env`` (ENV, or an email part's) and check the names it reads.

    InvalidInput for ``field`` whose message starts with ``what`` ("The binding of body {{1}}",
    "The subject") and names the position of the error. ``roots``: the top-level names the
    context will have (email adds ``unsubscribe_url``).
    """
    try:
        template = env.from_string(source)
    except LiquidError as err:
        problem = _error_message(err)
        if isinstance(err, LiquidSyntaxError) and "unexpected tag" in str(err.message):
            problem += " (" + _("Liquid here may use output, if/unless/case, for, assign and capture") + ")"
        if err.token is not None and err.token.start_index >= 0:
            message = _("%(what)s is not valid Liquid at %(position)s: %(problem)s.") % {
                "what": what,
                "position": _position(source, err.token.start_index),
                "problem": problem,
            }
        else:
            message = _("%(what)s is not valid Liquid: %(problem)s.") % {"what": what, "problem": problem}
        raise InvalidInput(
            message,
            field=field,
            code="invalid_binding",
        ) from None
    _check_names(template, source, field, what, roots)
    return template


def _check_names(
    template: BoundTemplate, source: str, field_name: str, what: str, roots: Sequence[str]
) -> None:
    """Refuse names a binding can never find: a typo would otherwise render empty for everyone."""
    analysis = template.analyze(include_partials=False)
    for filter_name, spans in analysis.filters.items():
        if filter_name not in ENV.filters:
            raise InvalidInput(
                _("%(what)s is not valid Liquid at %(position)s: there is no filter “%(filter)s”.")
                % {"what": what, "position": _position(source, spans[0].index), "filter": filter_name},
                field=field_name,
                code="invalid_binding",
            )
    for root, variables in analysis.globals.items():
        var = variables[0]
        where = _position(source, var.span.index)
        if root not in roots:
            raise InvalidInput(
                _(
                    "%(what)s uses “%(root)s” (%(position)s), which does not exist: use %(roots)s or "
                    "%(last)s, e.g. {{ tags.first_name }}."
                )
                % {
                    "what": what,
                    "root": root,
                    "position": where,
                    "roots": ", ".join(roots[:-1]),
                    "last": roots[-1],
                },
                field=field_name,
                code="invalid_binding",
            )
        if root == "subscriber":
            for variable in variables:
                segments = variable.segments
                if (
                    len(segments) > 1
                    and isinstance(segments[1], str)
                    and segments[1] not in SUBSCRIBER_FIELDS
                ):
                    raise InvalidInput(
                        _(
                            "%(what)s uses subscriber.%(name)s (%(position)s), which does not exist: a "
                            "subscriber has %(fields)s. Other data is in tags, e.g. {{ tags.%(name)s }}."
                        )
                        % {
                            "what": what,
                            "name": segments[1],
                            "position": _position(source, variable.span.index),
                            "fields": ", ".join(SUBSCRIBER_FIELDS),
                        },
                        field=field_name,
                        code="invalid_binding",
                    )


def shape_bindings(bindings: Any) -> dict[str, dict[str, Any]]:
    if bindings in (None, ""):
        return {}
    if not isinstance(bindings, Mapping) or not all(isinstance(v, Mapping) for v in bindings.values()):
        raise InvalidInput(
            _('Bindings are an object per component, e.g. {"body": {"1": "{{ tags.first_name }}"}}.'),
            field="bindings",
            code="invalid_binding",
        )
    return {str(component): {str(n): s for n, s in names.items()} for component, names in bindings.items()}


def compile_bindings(bindings: Any) -> dict[tuple[str, str], BoundTemplate]:
    """Every binding parsed, by (component, name); InvalidInput on the first bad one."""
    compiled = {}
    for component, names in shape_bindings(bindings).items():
        for name, source in names.items():
            compiled[(component, name)] = compile_binding(source, component=component, name=name)
    return compiled


def check_bindings(
    bindings: dict[str, dict[str, str]], expected: dict[str, list[str]], *, partial: bool = False
) -> None:
    """Check ``bindings`` against the template's placeholders (``policy.template_parameters``).

    Every binding must be valid Liquid and name a placeholder the template has; unless
    ``partial`` (a draft being written), every placeholder must be bound. Media headers are
    filled by the campaign's header media URL, not by a binding.
    """
    shaped = shape_bindings(bindings)
    compile_bindings(shaped)
    for component, names in shaped.items():
        for name in names:
            if name not in expected.get(component, []) or name in MEDIA_PARAMETERS:
                label = placeholder_label(component, name)
                known = ", ".join(
                    placeholder_label(c, n)
                    for c, ns in expected.items()
                    for n in ns
                    if n not in MEDIA_PARAMETERS
                )
                raise InvalidInput(
                    (
                        _("The template has no placeholder %(label)s; its placeholders are %(known)s.")
                        % {"label": label, "known": known}
                        if known
                        else _("The template has no placeholder %(label)s; it has no placeholders.")
                        % {"label": label}
                    ),
                    field=f"bindings.{component}.{name}",
                    code="unknown_placeholder",
                )
    if partial:
        return
    for component, names in expected.items():
        for name in names:
            if component == "header" and name in MEDIA_PARAMETERS:
                continue
            if not str(shaped.get(component, {}).get(name) or "").strip():
                raise InvalidInput(
                    _(
                        "Bind %(label)s: say what it is filled with, e.g. "
                        '{{ tags.first_name | default: "there" }}.'
                    )
                    % {"label": placeholder_label(component, name)},
                    field=f"bindings.{component}.{name}",
                    code="missing_binding",
                )


# --- what recipients must have -------------------------------------------------------------


def tag_key(name: str) -> str:
    """A tag name as bindings look it up: case-insensitive, runs of spaces written as ``_``."""
    return re.sub(r"\s+", "_", name.strip().lower())


# Built-in tags by the key a binding uses (``tags.time_zone``) -> Subscriber column.
BUILTIN_BY_KEY: dict[str, tagtypes.BuiltinTag] = {tag_key(t.name): t for t in tagtypes.BUILTIN_TAGS.values()}


@dataclass(frozen=True)
class RequiredFields:
    """What recipients must have so that no binding renders empty.

    ``tags``: custom tag keys (``tag_key``), ``subscriber_fields``: Subscriber columns (built-in
    tags included: ``tags.language`` needs ``language``), ``values``: per-recipient value names.
    """

    tags: set[str] = field(default_factory=set)
    subscriber_fields: set[str] = field(default_factory=set)
    values: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.tags or self.subscriber_fields or self.values)


# What bindings see without a recipient (a sample render, a test to a typed address).
EMPTY_CONTEXT = {"subscriber": {}, "tags": {}, "values": {}, "event": {}}


def required_fields(bindings: dict[str, dict[str, str]]) -> RequiredFields:
    """What a recipient must have for the bindings without a fallback (preflight counts who lacks it).

    A binding needs nothing when it renders something without any data (it has a ``default``
    or text of its own). Otherwise, when it reads exactly one value, that value is required;
    a binding reading several (``{{ tags.first_name }} {{ tags.last_name }}``) is empty only
    when all of them are, which a set of fields cannot express: the send decides for those.
    """
    required = RequiredFields()
    for template in compile_bindings(bindings).values():
        try:
            if _render_one(template, EMPTY_CONTEXT).strip():
                continue
        except LiquidError:
            pass  # fails without data: it needs some, found below
        paths = {
            tuple(v.segments[:2])
            for variables in template.analyze(include_partials=False).globals.values()
            for v in variables
        }
        if len(paths) != 1:
            continue
        path = next(iter(paths))
        if len(path) != 2 or not isinstance(path[1], str):
            continue
        root, key = path
        if root == "subscriber":
            required.subscriber_fields.add(key)
        elif root == "tags":
            builtin = BUILTIN_BY_KEY.get(tag_key(key))
            if builtin is not None:
                required.subscriber_fields.add(builtin.field)
            else:
                required.tags.add(tag_key(key))
        elif root == "values":
            required.values.add(key)
    return required


def tag_names_used(bindings: dict[str, dict[str, str]]) -> set[str] | None:
    """The tag keys the bindings read, or None when they read tags by a computed name or loop over them."""
    return _tag_names(compile_bindings(bindings).values())


def _tag_names(templates: Iterable[BoundTemplate]) -> set[str] | None:
    used: set[str] = set()
    for template in templates:
        for variable in template.analyze(include_partials=False).globals.get("tags", []):
            segments = variable.segments
            if len(segments) < 2 or not isinstance(segments[1], str):
                return None
            used.add(tag_key(segments[1]))
    return used


# --- contexts ----------------------------------------------------------------------------


class TagValues(dict):
    """A subscriber's tags by tag_key; other spellings of a name find the same tag."""

    __slots__ = ()

    def __missing__(self, key: object) -> object:
        if isinstance(key, str):
            folded = tag_key(key)
            if folded != key and dict.__contains__(self, folded):
                return dict.__getitem__(self, folded)
        raise KeyError(key)


def _typed(type_: str, rows: list[tuple]) -> Any:
    """Stored TagValue columns (VALUE_COLUMNS order) as the Python value Liquid works with."""
    text, number, boolean, day, moment = rows[0]
    match type_:
        case "string":
            return text
        case "integer":
            return int(number)
        case "decimal":
            # A float, as Liquid's math filters and comparisons know floats (not Decimal).
            return float(number)
        case "boolean":
            return boolean
        case "date":
            return day
        case "datetime":
            return moment
        case "list":
            return [r[0] for r in rows]
    return None


def _builtin_value(tag: tagtypes.BuiltinTag, row: Mapping[str, Any]) -> Any:
    value = row.get(tag.field)
    if tag.field == "whatsapp_consent":
        return value == ConsentState.OPTED_IN
    return value


_SUBSCRIBER_COLUMNS = tuple(
    dict.fromkeys(("id", *SUBSCRIBER_FIELDS, *(t.field for t in BUILTIN_BY_KEY.values())))
)


def context_of(project: Project, subscriber: Subscriber, values: dict | None = None) -> dict | None:
    """The render context of one subscriber (None when gone or of another project)."""
    return contexts_for(project, [subscriber.pk], values={subscriber.pk: values or {}}).get(subscriber.pk)


def contexts_for(
    project: Project | int,
    subscriber_ids: Sequence[int],
    values: dict[int, dict] | None = None,
    event: dict | None = None,
    *,
    tag_names: Collection[str] | None = None,
    loaded: Mapping[int, Subscriber] | None = None,
) -> dict[int, dict]:
    """The render context of each subscriber (of ``project``) by id, in a fixed number of queries.

    ``values``: per-recipient values by subscriber id. ``tag_names``: only these tag keys
    (``tag_names_used``), None for all; with an empty set no tag value is read.
    ``loaded``: subscribers the caller holds already, by id (the sender's batch loads them with
    its rows): their columns are read instead of the database's.
    Subscribers not in the project (or gone) are left out.
    """
    ids = list(dict.fromkeys(subscriber_ids))
    if not ids:
        return {}
    if loaded is not None:
        project_id = project if isinstance(project, int) else project.pk
        held = [loaded[pk] for pk in ids if pk in loaded and loaded[pk].project_id == project_id]
        rows = [{column: getattr(s, column) for column in _SUBSCRIBER_COLUMNS} for s in held]
    else:
        rows = list(Subscriber.objects.for_project(project).filter(pk__in=ids).values(*_SUBSCRIBER_COLUMNS))
    wanted = None if tag_names is None else {tag_key(n) for n in tag_names}
    builtins = [(k, t) for k, t in BUILTIN_BY_KEY.items() if wanted is None or k in wanted]
    custom: dict[int, tuple[str, str]] = {}
    if wanted is None or wanted - set(BUILTIN_BY_KEY):
        for definition in TagDefinition.objects.for_project(project).only("id", "name", "type"):
            key = tag_key(definition.name)
            if key in BUILTIN_BY_KEY or (wanted is not None and key not in wanted):
                continue
            custom[definition.pk] = (key, definition.type)
    stored: dict[int, dict[int, list[tuple]]] = {}
    if custom and rows:
        found = (
            TagValue.objects.for_project(project)
            .filter(subscriber_id__in=[r["id"] for r in rows], tag_id__in=list(custom))
            .order_by("id")
            .values_list("subscriber_id", "tag_id", *tagtypes.VALUE_COLUMNS)
        )
        for subscriber_id, tag_id, *columns in found:
            stored.setdefault(subscriber_id, {}).setdefault(tag_id, []).append(tuple(columns))
    contexts: dict[int, dict] = {}
    values = values or {}
    event = dict(event or {})
    for row in rows:
        tags = TagValues((key, _builtin_value(tag, row)) for key, tag in builtins)
        for tag_id, tag_rows in stored.get(row["id"], {}).items():
            key, type_ = custom[tag_id]
            tags[key] = _typed(type_, tag_rows)
        contexts[row["id"]] = {
            "subscriber": {name: row[name] for name in SUBSCRIBER_FIELDS},
            "tags": tags,
            "values": dict(values.get(row["id"]) or {}),
            "event": event,
        }
    return contexts


# --- rendering ---------------------------------------------------------------------------


def _render_nodes(template: BoundTemplate, render_context: RenderContext, buffer: LimitedStringIO) -> None:
    try:
        for node in template.nodes:
            node.render(render_context, buffer)
    except StopRender:
        pass
    except LiquidInterrupt as err:  # break/continue outside a loop
        raise LiquidSyntaxError(f"unexpected '{err}'", token=None) from None


def _render_one(template: BoundTemplate, context: Mapping[str, Any]) -> str:
    buffer = LimitedStringIO(limit=OUTPUT_LIMIT)
    _render_nodes(template, _BudgetedContext(template, globals=context), buffer)
    return buffer.getvalue()


def _simple_output(template: BoundTemplate) -> tuple[str, str, list] | None:
    """("tags", "first_name", filters) for a binding that is one ``{{ tags.first_name | ... }}``."""
    if len(template.nodes) != 1 or not isinstance(template.nodes[0], OutputNode):
        return None
    expression = template.nodes[0].expression
    if not isinstance(expression, FilteredExpression):
        return None
    path = expression.left.path if isinstance(expression.left, Path) else None
    if (
        path is None
        or len(path) != 2
        or not all(isinstance(p, str) for p in path)
        or path[0] not in ROOTS
        or path[1] in ("size", "first", "last")  # Liquid's special properties
    ):
        return None
    return path[0], path[1], list(expression.filters or [])


class Renderer:
    """The bindings of a campaign, compiled once; renders them for one recipient after another.

    Python-liquid spends most of a small render on setting up (a render context, a namespace
    chain, an output buffer) and resolving a path, so a recipient's bindings share one context
    and one buffer, and the most common bindings, one output of a variable with or without
    filters (``{{ tags.first_name }}``, ``{{ tags.city | upcase }}``), look the variable up in
    the dictionaries directly (missing: Liquid's Undefined, as the context would give) and apply
    the parsed filters to it.
    """

    def __init__(self, bindings: dict[str, dict[str, str]]):
        self.sources = shape_bindings(bindings)
        self.templates = compile_bindings(self.sources)
        self._simple = {key: _simple_output(template) for key, template in self.templates.items()}
        # The tag keys read (contexts_for(tag_names=...)), None: all of them.
        self.tag_names = _tag_names(self.templates.values())

    def render(self, context: Mapping[str, Any]) -> dict[str, dict[str, str]] | Skip:
        """Each placeholder's text (stripped), or Skip with the reason when one renders empty or fails."""
        result: dict[str, dict[str, str]] = {}
        # The same snippet bound twice (an authentication code in the body and the button) is
        # rendered once.
        rendered: dict[str, str] = {}
        render_context: RenderContext | None = None
        buffer: LimitedStringIO | None = None
        for (component, name), template in self.templates.items():
            source = self.sources[component][name]
            text = rendered.get(source)
            if text is None:
                simple = self._simple[(component, name)]
                if render_context is None and (simple is None or simple[2]):
                    render_context = _BudgetedContext(template, globals=context)
                try:
                    if simple is not None:
                        root, key, filters = simple
                        try:
                            value = context[root][key]
                        except (KeyError, TypeError):
                            value = ENV.undefined(root)
                        for liquid_filter in filters:
                            value = liquid_filter.evaluate(value, render_context)
                        text = to_liquid_string(value, False)
                        if len(text) > OUTPUT_LIMIT:
                            raise ResourceLimitError("output stream limit reached", token=None)
                        text = text.strip()
                    else:
                        buffer = buffer or LimitedStringIO(limit=OUTPUT_LIMIT)
                        start = buffer.tell()
                        _render_nodes(template, render_context, buffer)
                        text = buffer.getvalue()[start:].strip()
                except LiquidError as err:
                    return Skip(
                        f"The binding of {placeholder_label(component, name)} ({source.strip()}) could "
                        f"not be rendered for this subscriber: {_error_message(err)}."
                    )
                finally:
                    # The next binding starts without this one's variables, as if rendered alone.
                    if render_context is not None and render_context.locals:
                        render_context.locals.clear()
                rendered[source] = text
            if not text:
                return Skip(
                    f"{source.strip()} is empty for this subscriber ({placeholder_label(component, name)}), "
                    "and WhatsApp refuses empty placeholders. Give it a fallback, e.g. "
                    '{{ tags.first_name | default: "there" }}.'
                )
            result.setdefault(component, {})[name] = text
        return result
