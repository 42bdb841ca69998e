// The visual segment builder. It edits the rule tree (the same JSON the server validates, counts
// and stores), keeps it in the form's hidden "rule" field, and asks for a new audience preview
// (htmx, debounced in the template) after every change. The text box is the same rule in text
// form: typing there sends the text instead, and the builder is rebuilt from the server's answer.
(() => {
  "use strict";

  const root = document.getElementById("segment-builder");
  if (!root) return;
  const schema = JSON.parse(document.getElementById("segment-schema").textContent);
  const ruleInput = document.getElementById("segment-rule-input");
  const sourceInput = document.getElementById("segment-source");
  const textBox = document.getElementById("segment-text");
  let tree = asGroup(JSON.parse(document.getElementById("segment-rule").textContent));

  const tagsByName = new Map(schema.tags.map((t) => [t.name.toLowerCase(), t]));
  const eventsByName = new Map(schema.events.map((e) => [e.name, e]));
  const fieldsByName = new Map(schema.fields.map((f) => [f.name, f]));

  const KINDS = [
    ["tag", pgettext("noun", "Tag")],
    ["event", gettext("Event")],
    ["field", gettext("Profile field")],
    ["segment", gettext("In segment")],
    ["reachability", gettext("Reachable")],
    ["all", gettext("Everyone")],
    ["none", gettext("Nobody")],
  ];
  const WINDOWS = [
    ["", gettext("at any time")],
    ["days", gettext("in the last … days")],
    ["hours", gettext("in the last … hours")],
    ["since", gettext("since …")],
    ["between", gettext("between …")],
  ];

  function asGroup(node) {
    if (node && node.type === "group") return node;
    return { type: "group", op: "and", negate: false, children: node && node.type ? [node] : [] };
  }

  // ---- small DOM helpers ------------------------------------------------------------------------

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "value") node.value = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of [].concat(children)) if (child) node.append(child);
    return node;
  }

  function select(key, label, options, value, onChange, extra = {}) {
    const s = el("select", { class: "form-select form-select-sm", "data-key": key, "aria-label": label, ...extra });
    let found = false;
    for (const option of options) {
      if (option.group) {
        const group = el("optgroup", { label: option.group });
        for (const [v, text] of option.options) {
          group.append(el("option", { value: v, text }));
          found = found || String(v) === String(value);
        }
        if (option.options.length) s.append(group);
      } else {
        const [v, text] = option;
        s.append(el("option", { value: v, text }));
        found = found || String(v) === String(value);
      }
    }
    if (!found && value !== undefined && value !== null && value !== "") {
      s.prepend(el("option", { value, text: interpolate(gettext("%(value)s (unknown)"), { value }, true) }));
    }
    s.value = value === undefined || value === null ? "" : String(value);
    s.addEventListener("change", () => onChange(s.value));
    return s;
  }

  function input(key, label, value, onInput, extra = {}) {
    const i = el("input", { class: "form-control form-control-sm", "data-key": key, "aria-label": label, ...extra });
    i.value = value === undefined || value === null ? "" : String(value);
    i.addEventListener("input", () => onInput(i.value));
    return i;
  }

  function button(text, label, onClick, cls = "btn btn-sm") {
    return el("button", { type: "button", class: cls, text, "aria-label": label, onclick: onClick });
  }

  function words(text) {
    return el("span", { class: "sb-words", text });
  }

  // ---- the model --------------------------------------------------------------------------------

  function changed(rerender = false, focusKey = null) {
    sourceInput.value = "builder";
    if (rerender) render(focusKey);
    ruleInput.value = JSON.stringify(tree);
    document.body.dispatchEvent(new CustomEvent("segment-change"));
  }

  function typeOfTag(name) {
    const tag = tagsByName.get(String(name || "").toLowerCase());
    return tag ? tag.type : "string";
  }

  function opsFor(list, type) {
    const found = list.find((x) => x.type === type);
    return found ? found.ops : [];
  }

  function defaultOps(type) {
    return (schema.tags.find((t) => t.type === type) || schema.fields.find((f) => f.type === type) || {}).ops || [];
  }

  function fitOp(op, ops) {
    return ops.some(([o]) => o === op) ? op : ops.length ? ops[0][0] : "eq";
  }

  // Texts compare without case and accents ("asian" finds "Asian", "koln" finds "Köln");
  // "match case" ("match_case": true, eq_cs in the text form) compares them exactly.
  const TEXT_OPS = new Set(["eq", "noteq", "in", "notin", "contains", "startswith"]);

  function matchesCase(type, op) {
    return (type === "string" || type === "list") && TEXT_OPS.has(op);
  }

  function fitValue(holder, type, op) {
    if (!matchesCase(type, op)) delete holder.match_case;
    if (op === "any" || op === "none") {
      delete holder.value;
    } else if (op === "between") {
      if (!Array.isArray(holder.value) || holder.value.length !== 2) holder.value = ["", ""];
    } else if (op === "in" || op === "notin") {
      if (!Array.isArray(holder.value)) holder.value = holder.value === undefined || holder.value === "" ? [] : [holder.value];
    } else if (op === "within") {
      if (typeof holder.value !== "number") holder.value = 30;
    } else if (Array.isArray(holder.value) || holder.value === undefined) {
      holder.value = type === "boolean" ? true : type === "consent" ? "opted_in" : "";
    }
  }

  function newCondition(kind) {
    switch (kind) {
      case "tag": {
        const tag = schema.tags.find((t) => !t.builtin) || schema.tags[0];
        const node = { type: "tag", tag: tag.name, op: tag.ops[0][0] };
        fitValue(node, tag.type, node.op);
        return node;
      }
      case "event": {
        const custom = schema.events.find((e) => !e.name.startsWith("WhatsApp") && !e.name.startsWith("Email") &&
          !e.name.startsWith("Push") && !["Subscribed", "Unsubscribed"].includes(e.name));
        const event = custom || schema.events[0];
        return { type: "event", event: event ? event.name : "", op: "gte", count: 1, window: null, where: [] };
      }
      case "field":
        return { type: "field", field: "language", op: "eq", value: "" };
      case "segment": {
        const first = schema.segments[0];
        return { type: "segment", segment: first ? first.id : "", name: first ? first.name : "" };
      }
      case "reachability":
        return { type: "reachability", channel: "whatsapp" };
      default:
        return { type: kind };
    }
  }

  // ---- values -----------------------------------------------------------------------------------

  function convert(type, raw) {
    if (type === "integer" || type === "decimal") {
      const trimmed = String(raw).trim().replace(",", ".");
      return trimmed !== "" && !Number.isNaN(Number(trimmed)) ? Number(trimmed) : trimmed;
    }
    if (type === "boolean") return raw === true || raw === "true";
    return raw;
  }

  function scalarInput(key, label, type, value, onValue) {
    if (type === "boolean") {
      return select(key, label, [["true", gettext("true")], ["false", gettext("false")]], String(value), (v) => onValue(v === "true"));
    }
    if (type === "consent") {
      return select(key, label, schema.consentValues.map((v) => [v, v.replace("_", " ")]), value, onValue);
    }
    const attrs = { placeholder: gettext("value") };
    if (type === "integer" || type === "decimal") Object.assign(attrs, { type: "number", step: "any", class: "form-control form-control-sm sb-number" });
    if (type === "date" || (type === "datetime" && (!value || String(value).length === 10))) attrs.type = "date";
    if (type === "datetime" && attrs.type !== "date") attrs.placeholder = "YYYY-MM-DDTHH:MM";
    return input(key, label, value, (v) => onValue(convert(type, v)), attrs);
  }

  function valueControls(holder, type, op, key) {
    if (op === "any" || op === "none") return [];
    if (op === "within") {
      return [
        input(`${key}:value`, gettext("days"), holder.value, (v) => { holder.value = convert("integer", v); changed(); },
          { type: "number", min: "1", step: "1", class: "form-control form-control-sm sb-number" }),
        words(gettext("days")),
      ];
    }
    if (op === "between") {
      const pair = Array.isArray(holder.value) ? holder.value : ["", ""];
      return [
        scalarInput(`${key}:from`, gettext("from"), type, pair[0], (v) => { pair[0] = v; holder.value = pair; changed(); }),
        words(gettext("and")),
        scalarInput(`${key}:to`, gettext("to"), type, pair[1], (v) => { pair[1] = v; holder.value = pair; changed(); }),
      ];
    }
    if (op === "in" || op === "notin") {
      const list = Array.isArray(holder.value) ? holder.value.join(", ") : "";
      return [
        input(`${key}:list`, gettext("values, separated by commas"), list, (v) => {
          holder.value = v.split(",").map((x) => x.trim()).filter((x) => x !== "").map((x) => convert(type, x));
          changed();
        }, { placeholder: "a, b, c", class: "form-control form-control-sm sb-list" }),
      ];
    }
    return [scalarInput(`${key}:value`, gettext("value"), type, holder.value, (v) => { holder.value = v; changed(); })];
  }

  // ---- rendering --------------------------------------------------------------------------------

  function render(focusKey = null) {
    const active = focusKey ||
      (document.activeElement && root.contains(document.activeElement) ? document.activeElement.dataset.key : null);
    root.replaceChildren(renderGroup(tree, "rule", null, -1));
    ruleInput.value = JSON.stringify(tree);
    if (active) {
      const again = root.querySelector(`[data-key="${CSS.escape(active)}"]`);
      if (again) again.focus();
    }
  }

  function renderGroup(node, path, parent, index) {
    node.children = node.children || [];
    const box = el("div", {
      class: `sb-group${node.negate ? " sb-negated" : ""}${parent ? "" : " sb-root"}`,
      "data-path": path,
      "data-testid": "group",
    });
    const negate = el("input", { type: "checkbox", class: "form-check-input", "data-key": `${path}:negate`, checked: node.negate });
    negate.addEventListener("change", () => { node.negate = negate.checked; changed(true); });
    const header = el("div", { class: "sb-group-header" }, [
      el("label", { class: "form-check form-switch mb-0 sb-not", title: gettext("Match everyone who does NOT match this group") }, [
        negate, el("span", { class: "form-check-label", text: gettext("NOT") }),
      ]),
      words(node.negate ? gettext("Exclude subscribers matching") : gettext("Subscribers matching")),
      select(`${path}:op`, gettext("all or any"), [["and", gettext("all")], ["or", gettext("any")]], node.op, (v) => { node.op = v; changed(true); },
        { class: "form-select form-select-sm sb-op" }),
      words(gettext("of:")),
    ]);
    if (parent) {
      header.append(button("×", gettext("Remove this group"), () => { parent.children.splice(index, 1); changed(true); },
        "btn btn-sm btn-ghost-danger ms-auto sb-remove"));
    }
    box.append(header);
    const list = el("div", { class: "sb-children" });
    node.children.forEach((child, i) => {
      if (i > 0) list.append(el("div", { class: "sb-connector", text: node.op === "or" ? gettext("OR") : gettext("AND") }));
      const childPath = `${path}.${i}`;
      list.append(child && child.type === "group" ? renderGroup(child, childPath, node, i) : renderCondition(child, childPath, node, i));
    });
    if (!node.children.length) list.append(el("div", { class: "text-secondary small sb-hint", text: gettext("No conditions yet.") }));
    box.append(list);
    box.append(el("div", { class: "sb-group-footer" }, [
      button(gettext("+ Condition"), gettext("Add a condition"), () => {
        node.children.push(newCondition("tag"));
        changed(true, `${path}.${node.children.length - 1}:kind`);
      }, "btn btn-sm"),
      button(gettext("+ Group"), gettext("Add a nested group"), () => {
        node.children.push({ type: "group", op: node.op === "and" ? "or" : "and", negate: false, children: [newCondition("tag")] });
        changed(true, `${path}.${node.children.length - 1}.0:kind`);
      }, "btn btn-sm btn-ghost-primary"),
    ]));
    return box;
  }

  function renderCondition(node, path, parent, index) {
    const controls = el("div", { class: "sb-controls" });
    const row = el("div", { class: "sb-condition", "data-path": path, "data-testid": "condition" }, [controls]);
    controls.append(select(`${path}:kind`, gettext("Condition kind"), KINDS, node.type, (kind) => {
      parent.children[index] = newCondition(kind);
      changed(true);
    }, { class: "form-select form-select-sm sb-kind" }));
    const kindControls = {
      tag: tagControls,
      field: fieldControls,
      event: eventControls,
      segment: segmentControls,
      reachability: reachControls,
    }[node.type];
    if (kindControls) controls.append(...kindControls(node, path));
    else if (node.type === "all") controls.append(words(gettext("every subscriber")));
    else if (node.type === "none") controls.append(words(gettext("no subscriber")));
    row.append(button("×", gettext("Remove this condition"), () => { parent.children.splice(index, 1); changed(true); },
      "btn btn-sm btn-ghost-danger sb-remove"));
    return row;
  }

  function opAndValue(node, path, type, ops) {
    node.op = fitOp(node.op, ops);
    return [
      select(`${path}:op`, gettext("Operator"), ops, node.op, (op) => { node.op = op; fitValue(node, type, op); changed(true); },
        { class: "form-select form-select-sm sb-operator" }),
      ...valueControls(node, type, node.op, path),
      ...matchCase(node, type, path),
    ];
  }

  function matchCase(holder, type, key) {
    if (!matchesCase(type, holder.op)) return [];
    const box = el("input", { type: "checkbox", class: "form-check-input", "data-key": `${key}:match_case`,
      "data-testid": "match-case", checked: holder.match_case === true });
    box.addEventListener("change", () => {
      if (box.checked) holder.match_case = true;
      else delete holder.match_case;
      changed();
    });
    return [el("label", { class: "form-check form-check-inline mb-0 small sb-match-case",
      title: gettext("Compare upper and lower case and accents exactly") }, [
      box, el("span", { class: "form-check-label", text: gettext("match case") }),
    ])];
  }

  function tagControls(node, path) {
    const type = typeOfTag(node.tag);
    const tag = tagsByName.get(String(node.tag || "").toLowerCase());
    const options = [
      { group: gettext("Custom tags"), options: schema.tags.filter((t) => !t.builtin).map((t) => [t.name, `${t.name} (${t.type})`]) },
      { group: gettext("Built-in"), options: schema.tags.filter((t) => t.builtin).map((t) => [t.name, t.label || t.name]) },
    ];
    return [
      select(`${path}:tag`, pgettext("noun", "Tag"), options, tag ? tag.name : node.tag, (name) => {
        node.tag = name;
        const newType = typeOfTag(name);
        const ops = (tagsByName.get(name.toLowerCase()) || {}).ops || [];
        node.op = fitOp(node.op, ops);
        if (newType !== type) delete node.value;
        fitValue(node, newType, node.op);
        changed(true);
      }, { class: "form-select form-select-sm sb-subject", "data-testid": "tag-select" }),
      ...opAndValue(node, path, type, tag ? tag.ops : defaultOps(type)),
    ];
  }

  function fieldControls(node, path) {
    const field = fieldsByName.get(node.field) || schema.fields[0];
    return [
      select(`${path}:field`, gettext("Field"), schema.fields.map((f) => [f.name, f.label]), node.field, (name) => {
        const newField = fieldsByName.get(name);
        if (newField.type !== field.type) delete node.value;
        node.field = name;
        node.op = fitOp(node.op, newField.ops);
        fitValue(node, newField.type, node.op);
        changed(true);
      }, { class: "form-select form-select-sm sb-subject" }),
      ...opAndValue(node, path, field.type, field.ops),
    ];
  }

  function eventControls(node, path) {
    node.where = node.where || [];
    const event = eventsByName.get(node.event);
    const performed = !(node.op === "eq" && Number(node.count) === 0);
    const parts = [
      select(`${path}:performed`, gettext("Performed or not"), [["yes", gettext("performed")], ["no", gettext("did not perform")]], performed ? "yes" : "no",
        (v) => { Object.assign(node, v === "yes" ? { op: "gte", count: 1 } : { op: "eq", count: 0 }); changed(true); },
        { class: "form-select form-select-sm sb-performed" }),
      select(`${path}:event`, gettext("Event"), schema.events.map((e) => [e.name, e.name]), node.event, (name) => {
        node.event = name;
        const attributes = new Set(((eventsByName.get(name) || {}).attributes || []).map((a) => a.name));
        node.where = node.where.filter((w) => attributes.has(w.attribute));
        changed(true);
      }, { class: "form-select form-select-sm sb-subject", "data-testid": "event-select" }),
    ];
    if (performed) {
      parts.push(
        select(`${path}:countop`, gettext("How often"), schema.countOps, node.op, (op) => { node.op = op; changed(true); },
          { class: "form-select form-select-sm sb-operator" }),
        input(`${path}:count`, gettext("times"), node.count, (v) => { node.count = convert("integer", v); changed(); },
          { type: "number", min: "0", step: "1", class: "form-control form-control-sm sb-number" }),
        words(ngettext("time", "times", Number(node.count))),
      );
    }
    const window = node.window || {};
    parts.push(select(`${path}:window`, gettext("When"), WINDOWS, window.kind || "", (kind) => {
      const today = new Date().toISOString().slice(0, 10);
      node.window = kind === "" ? null
        : kind === "days" ? { kind, n: 30 }
        : kind === "hours" ? { kind, n: 24 }
        : kind === "since" ? { kind, from: today }
        : { kind, from: today, to: today };
      changed(true);
    }, { class: "form-select form-select-sm sb-window" }));
    if (window.kind === "days" || window.kind === "hours") {
      const unit = window.kind === "days" ? gettext("days") : gettext("hours");
      parts.push(input(`${path}:n`, unit, window.n, (v) => { window.n = convert("integer", v); changed(); },
        { type: "number", min: "1", step: "1", class: "form-control form-control-sm sb-number" }), words(unit));
    } else if (window.kind === "since" || window.kind === "between") {
      parts.push(input(`${path}:from`, gettext("from"), window.from, (v) => { window.from = v; changed(); }, { type: "date" }));
      if (window.kind === "between") {
        parts.push(words(gettext("and")), input(`${path}:to`, gettext("to"), window.to, (v) => { window.to = v; changed(); }, { type: "date" }));
      }
    }
    const attributes = event ? event.attributes : [];
    const where = el("div", { class: "sb-where" });
    node.where.forEach((cond, i) => {
      const attribute = attributes.find((a) => a.name === cond.attribute);
      const type = attribute ? attribute.type : "string";
      const ops = attribute ? attribute.ops : defaultOps(type);
      cond.op = fitOp(cond.op, ops);
      const key = `${path}:where${i}`;
      where.append(el("div", { class: "sb-where-row", "data-testid": "attribute-condition" }, [
        words(gettext("where")),
        select(`${key}:attribute`, gettext("Attribute"), attributes.map((a) => [a.name, `${a.name} (${a.type})`]), cond.attribute, (name) => {
          const next = attributes.find((a) => a.name === name);
          if (!next || next.type !== type) delete cond.value;
          cond.attribute = name;
          cond.op = fitOp(cond.op, next ? next.ops : []);
          fitValue(cond, next ? next.type : "string", cond.op);
          changed(true);
        }, { class: "form-select form-select-sm sb-subject" }),
        select(`${key}:op`, gettext("Operator"), ops, cond.op, (op) => { cond.op = op; fitValue(cond, type, op); changed(true); },
          { class: "form-select form-select-sm sb-operator" }),
        ...valueControls(cond, type, cond.op, key),
        ...matchCase(cond, type, key),
        button("×", gettext("Remove this attribute condition"), () => { node.where.splice(i, 1); changed(true); },
          "btn btn-sm btn-ghost-danger sb-remove"),
      ]));
    });
    const add = button(gettext("+ where …"), gettext("Add an attribute condition"), () => {
      const first = attributes[0];
      const cond = { attribute: first.name, op: first.ops[0][0] };
      fitValue(cond, first.type, cond.op);
      node.where.push(cond);
      changed(true);
    }, "btn btn-sm btn-ghost-secondary");
    if (!attributes.length) {
      add.disabled = true;
      add.title = gettext("This event has no attributes");
    }
    where.append(add);
    parts.push(where);
    return parts;
  }

  function segmentControls(node, path) {
    if (!schema.segments.length) return [words(gettext("No other segments yet."))];
    return [select(`${path}:segment`, gettext("Segment"), schema.segments.map((s) => [s.id, s.name]), node.segment, (id) => {
      node.segment = id;
      node.name = (schema.segments.find((s) => s.id === id) || {}).name || "";
      changed(true);
    }, { class: "form-select form-select-sm sb-subject" })];
  }

  function reachControls(node, path) {
    return [select(`${path}:channel`, gettext("Channel"), schema.reachability, node.channel, (v) => { node.channel = v; changed(); },
      { class: "form-select form-select-sm sb-subject" })];
  }

  // ---- the text form and the preview ------------------------------------------------------------

  textBox.addEventListener("input", () => {
    sourceInput.value = "text";
    document.body.dispatchEvent(new CustomEvent("segment-change"));
  });

  document.body.addEventListener("htmx:configRequest", (event) => {
    if (event.detail.elt.id !== "segment-preview-trigger") return;
    // Send only what was edited last: GET URLs stay short.
    if (sourceInput.value === "builder") delete event.detail.parameters.text;
    else delete event.detail.parameters.rule;
  });

  function markError(path, kind = "invalid") {
    for (const old of root.querySelectorAll(".sb-invalid, .sb-incomplete")) old.classList.remove("sb-invalid", "sb-incomplete");
    if (!path) return;
    const target = root.querySelector(`[data-path="${CSS.escape(path)}"]`);
    if (target) target.classList.add(kind === "incomplete" ? "sb-incomplete" : "sb-invalid");
  }

  // Each fresh preview (a new element after every swap) may carry the canonical rule back.
  function takePreview() {
    const preview = document.getElementById("segment-preview");
    if (!preview || preview.dataset.seen) return;
    preview.dataset.seen = "1";
    const { rule, ruleText, errorPath, errorKind, source } = preview.dataset;
    if (rule && source === "text" && sourceInput.value === "text") {
      tree = asGroup(JSON.parse(rule));
      render();
    } else if (ruleText !== undefined && source === "builder" && sourceInput.value === "builder" &&
               document.activeElement !== textBox) {
      textBox.value = ruleText;
    }
    markError(source === "builder" ? errorPath : null, errorKind);
  }

  document.body.addEventListener("htmx:afterSettle", takePreview);

  render();
  ruleInput.value = JSON.stringify(tree);
  if (sourceInput.value !== "text") sourceInput.value = "builder";
  takePreview();
  const initialError = document.querySelector("[data-testid=rule-error]");
  if (initialError && initialError.dataset.errorPath) markError(initialError.dataset.errorPath);
})();
