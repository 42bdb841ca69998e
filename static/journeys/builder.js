// The journey builder: a Drawflow canvas over the journey JSON (docs/journeys.md, ADR 0007).
//
// The JSON is the model: each canvas node holds one step object; the node's outputs are the
// step's outlets for its current configuration (one per quick-reply button, per awaited event,
// per A/B variant), and the wires are the outlets' targets. The "Entry" node is not a step: the
// step it points at is written first in the list (runs start at the first step). Saving turns the
// canvas back into the JSON (positions in each step's "ui") and posts it; the server answers
// problems as {step, field, message}, shown on the node and on the field of the side panel.
// No inline scripts or styles (CSP): everything here is DOM calls and classes.
(() => {
  "use strict";

  const root = document.getElementById("journey-builder");
  if (!root || typeof Drawflow === "undefined") return;
  const DATA = JSON.parse(document.getElementById("journey-builder-data").textContent);
  const READONLY = Boolean(DATA.readonly);
  const TYPES = new Map(DATA.types.map((t) => [t.type, t]));
  const TEMPLATES = DATA.templates;
  const CHANNEL_TEMPLATES = DATA.channel_templates || { email: [], push: [] };
  const CHANNELS = DATA.channels || [["whatsapp", "WhatsApp"], ["email", gettext("Email")], ["push", gettext("Push")]];
  const CHANNEL_LABEL = Object.fromEntries(CHANNELS);
  // A send step of a channel: its templates in DATA.channel_templates, its step key "template".
  const CHANNEL_STEPS = { send_email: "email", send_push: "push" };
  const CSRF = document.querySelector("[name=csrfmiddlewaretoken]")?.value || csrfFromBody();
  const panel = document.getElementById("jb-panel");
  const statusBox = document.getElementById("jb-status");

  const OPS = [
    ["keyword", gettext("is the keyword")],
    ["eq", gettext("equals")],
    ["ne", gettext("does not equal")],
    ["contains", "contains"],
    ["starts_with", gettext("starts with")],
    ["regex", gettext("matches the pattern")],
    ["gt", ">"],
    ["gte", "≥"],
    ["lt", "<"],
    ["lte", "≤"],
    ["exists", "exists"],
  ];
  const UNITS = [
    ["M", gettext("minutes")],
    ["H", gettext("hours")],
    ["D", gettext("days")],
    ["W", gettext("weeks")],
  ];
  const FIXED_OUTLET_LABELS = {
    next: gettext("next"),
    outside_window: gettext("outside window"),
    yes: gettext("yes"),
    no: gettext("no"),
    timeout: gettext("not happened"),
    success: gettext("success"),
    failure: gettext("failure"),
    none: gettext("none reachable"),
  };
  // Every node shows these; a send step adds its channel's counters (the type's "counters").
  const FLOW_COUNT_KEYS = [["entered", gettext("entered")], ["waiting", gettext("waiting")]];
  const END_COUNT_KEYS = [["converted", gettext("converted")], ["exited", gettext("exited")]];

  function countKeys(type) {
    return [...FLOW_COUNT_KEYS, ...(type?.counters || []), ...END_COUNT_KEYS];
  }

  // ---- state ------------------------------------------------------------------------------------

  const definition = DATA.journey.definition || {};
  const meta = {
    name: definition.name || DATA.journey.name || "",
    entries: definition.entries ? [...definition.entries] : definition.entry ? [definition.entry] : [],
    settings: { ...(definition.settings || {}) },
    // Top-level keys this builder does not edit are kept as they are.
    extra: Object.fromEntries(
      Object.entries(definition).filter(([k]) => !["name", "entry", "entries", "settings", "steps"].includes(k)),
    ),
  };
  const nodes = new Map(); // drawflow node id -> step object
  const outletNames = new Map(); // drawflow node id -> outlet names, in output order
  let entryNode = null;
  let dirty = false;
  let problems = [];
  let warnings = [];
  let counts = DATA.counts || {};
  let openNode = null; // what the side panel shows: a node id, "entry" or "settings"

  const editor = new Drawflow(document.getElementById("drawflow"));
  editor.reroute = false;
  editor.editor_mode = READONLY ? "view" : "edit";
  editor.start();

  // ---- small helpers -----------------------------------------------------------------------------

  function csrfFromBody() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRFToken"] || "";
    } catch {
      return "";
    }
  }

  function el(tag, attrs = {}, children = []) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "value") node.value = value;
      else if (key === "checked") node.checked = Boolean(value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of [].concat(children)) if (child !== null && child !== undefined && child !== false) node.append(child);
    return node;
  }

  function options(select, pairs, value) {
    for (const [v, label] of pairs) select.append(el("option", { value: v, text: label, selected: String(v) === String(value ?? "") }));
    return select;
  }

  function field(label, input, key, hint) {
    const id = `jb-f-${Math.random().toString(36).slice(2, 9)}`;
    const inputs = input.matches?.("input, select, textarea") ? [input] : [...input.querySelectorAll("input, select, textarea")];
    if (inputs[0]) inputs[0].id = inputs[0].id || id;
    if (key) for (const i of inputs) i.dataset.field = i.dataset.field || key;
    return el("div", { class: "mb-2 jb-field", "data-field": key || null }, [
      el("label", { class: "form-label", for: inputs[0]?.id || id, text: label }),
      input,
      hint ? el("small", { class: "form-hint", text: hint }) : null,
    ]);
  }

  function textInput(value, onInput, attrs = {}) {
    return el("input", { class: "form-control form-control-sm", type: "text", value: value ?? "", oninput: (e) => onInput(e.target.value), ...attrs });
  }

  function dataList(id, values) {
    if (!document.getElementById(id)) document.body.append(el("datalist", { id }, values.map((v) => el("option", { value: v }))));
    return id;
  }

  function durationParts(iso) {
    const m = /^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$/.exec(String(iso || "").toUpperCase());
    if (!m) return { n: "", unit: "H" };
    const minutes = ((+m[1] || 0) * 7 * 24 + (+m[2] || 0) * 24 + (+m[3] || 0)) * 60 + (+m[4] || 0) + Math.ceil((+m[5] || 0) / 60);
    if (minutes && minutes % (7 * 24 * 60) === 0) return { n: minutes / (7 * 24 * 60), unit: "W" };
    if (minutes && minutes % (24 * 60) === 0) return { n: minutes / (24 * 60), unit: "D" };
    if (minutes && minutes % 60 === 0) return { n: minutes / 60, unit: "H" };
    return { n: minutes || "", unit: "M" };
  }

  function durationIso(n, unit) {
    const v = parseInt(n, 10);
    if (!Number.isFinite(v) || v <= 0) return "";
    return unit === "D" || unit === "W" ? `P${v}${unit}` : `PT${v}${unit}`;
  }

  function durationInput(value, onChange, key, negativeAllowed = false) {
    const raw = String(value || "");
    const negative = negativeAllowed && raw.startsWith("-");
    const parts = durationParts(negative ? raw.slice(1) : raw);
    const number = el("input", { class: "form-control form-control-sm", type: "number", min: "1", value: parts.n, "data-field": key, "aria-label": gettext("Amount") });
    const unit = options(el("select", { class: "form-select form-select-sm", "aria-label": gettext("Unit") }), UNITS, parts.unit);
    const sign = negativeAllowed ? options(el("select", { class: "form-select form-select-sm", "aria-label": gettext("Before or after") }), [["", gettext("after")], ["-", gettext("before")]], negative ? "-" : "") : null;
    const update = () => {
      const iso = durationIso(number.value, unit.value);
      onChange(iso ? `${sign?.value || ""}${iso}` : "");
    };
    number.addEventListener("input", update);
    unit.addEventListener("change", update);
    sign?.addEventListener("change", update);
    return el("div", { class: "input-group input-group-sm jb-duration" }, [number, unit, sign]);
  }

  // ---- outlets ------------------------------------------------------------------------------------

  function outletsOf(step) {
    // The chained reachability: one outlet per listed channel, then "none".
    if (step.type === "reachability" && Array.isArray(step.channels)) return [...step.channels, "none"];
    const type = TYPES.get(step.type);
    const names = [];
    if (Array.isArray(step.events)) step.events.forEach((_, i) => names.push(`event${i + 1}`));
    if (Array.isArray(step.variants)) step.variants.forEach((v) => v && v.name && names.push(String(v.name)));
    const fixed = type ? type.outlets : step.type === "exit" ? [] : ["next"];
    for (const name of fixed) if (!names.includes(name)) names.push(name);
    if (step.buttons && typeof step.buttons === "object") for (const text of Object.keys(step.buttons)) names.push(`button:${text}`);
    if (step.type === "ab_split" || step.type === "wait_event") return names.filter((n) => n !== "next");
    return names;
  }

  function outletLabel(step, name) {
    if (name.startsWith("button:")) return `“${name.slice(7)}”`;
    const ev = /^event(\d)$/.exec(name);
    if (ev && Array.isArray(step.events)) return step.events[+ev[1] - 1]?.event || name;
    const variant = Array.isArray(step.variants) ? step.variants.find((v) => v && v.name === name) : null;
    if (variant) return `${name} ${variant.percent ?? "?"} %`;
    if (name === "next" && step.buttons && Object.keys(step.buttons).length) return gettext("no click");
    return FIXED_OUTLET_LABELS[name] || name;
  }

  function getTarget(step, name) {
    if (name.startsWith("button:")) return step.buttons?.[name.slice(7)] ?? null;
    const ev = /^event(\d)$/.exec(name);
    if (ev && Array.isArray(step.events)) return step.events[+ev[1] - 1]?.next ?? null;
    const variant = Array.isArray(step.variants) ? step.variants.find((v) => v && v.name === name) : null;
    if (variant) return variant.next ?? null;
    return step[outletKey(step, name)] ?? null;
  }

  // Where a fixed outlet's target is written (the server asked the step type: "timeout" of a
  // wait for an event is a duration, its target is "timeout_next").
  function outletKey(step, name) {
    return TYPES.get(step.type)?.outlet_keys?.[name] || name;
  }

  function setTarget(step, name, target) {
    if (name.startsWith("button:")) {
      step.buttons = { ...(step.buttons || {}), [name.slice(7)]: target };
      return;
    }
    const ev = /^event(\d)$/.exec(name);
    if (ev && Array.isArray(step.events) && step.events[+ev[1] - 1]) {
      step.events[+ev[1] - 1].next = target;
      return;
    }
    const variant = Array.isArray(step.variants) ? step.variants.find((v) => v && v.name === name) : null;
    if (variant) {
      variant.next = target;
      return;
    }
    step[outletKey(step, name)] = target;
  }

  // ---- the canvas ---------------------------------------------------------------------------------

  function nodeOf(stepId) {
    for (const [id, step] of nodes) if (step.id === stepId) return id;
    return null;
  }

  function connectionsOf(id, output) {
    const node = editor.getNodeFromId(id);
    return node?.outputs?.[output]?.connections || [];
  }

  function newStepId(type) {
    const base = { whatsapp_template: "template", whatsapp_text: "reply", send_email: "email", send_push: "push", wait_event: "wait_for", segment_split: "segment", reachability: "reach", ab_split: "split", update_tags: "tags" }[type] || type;
    const taken = new Set([...nodes.values()].map((s) => s.id));
    if (!taken.has(base)) return base;
    for (let i = 2; ; i++) if (!taken.has(`${base}_${i}`)) return `${base}_${i}`;
  }

  function addStepNode(step, x, y) {
    const names = outletsOf(step);
    const id = editor.addNode(step.type, 1, names.length, x, y, `jb-step jb-type-${step.type}`, {}, "", false);
    nodes.set(id, step);
    outletNames.set(id, names);
    renderNode(id);
    return id;
  }

  function addEntryNode(x, y) {
    entryNode = editor.addNode("entry", 0, 1, x, y, "jb-entry", {}, "", false);
    renderEntryNode();
  }

  function stepSummary(step) {
    switch (step.type) {
      case "whatsapp_template":
        return step.template?.name ? `${step.template.name} (${step.template.language || "?"})` : gettext("Pick a template");
      case "whatsapp_text":
        return step.text ? step.text.slice(0, 70) : gettext("Write the reply");
      case "wait":
        if (step.duration) return interpolate(gettext("for %(time)s"), { time: durationText(step.duration) }, true);
        if (step.until_time) return interpolate(gettext("until %(time)s"), { time: step.until_time }, true);
        if (step.until_date) return interpolate(gettext("until %(time)s"), { time: new Date(step.until_date).toLocaleString(document.documentElement.lang) }, true);
        if (step.until_attribute) return interpolate(gettext("until %(time)s"), { time: `${step.until_attribute.source || "tag"} ${step.until_attribute.name || "?"}` }, true);
        return gettext("Set how long");
      case "wait_event":
        return `${(step.events || []).map((e) => e.event).filter(Boolean).join(gettext(" or ")) || gettext("Pick events")}${step.timeout ? interpolate(gettext(", up to %(time)s"), { time: durationText(step.timeout) }, true) : ""}`;
      case "segment_split":
        return DATA.segments.find((s) => s.id === step.segment)?.name || (step.segment ? gettext("A deleted segment") : gettext("Pick a segment"));
      case "reachability":
        if (Array.isArray(step.channels)) return step.channels.length ? interpolate(gettext("first of %(channels)s"), { channels: step.channels.map((c) => CHANNEL_LABEL[c] || c).join(" → ") }, true) : gettext("Pick channels");
        return interpolate(gettext("reachable on %(channel)s"), { channel: CHANNEL_LABEL[step.channel] || step.channel || "WhatsApp" }, true);
      case "send_email":
      case "send_push":
        return channelTemplate(step)?.name || (step.template ? interpolate(gettext("“%(name)s” (missing)"), { name: step.template }, true) : gettext("Pick a template"));
      case "ab_split":
        return (step.variants || []).map((v) => `${v.name} ${v.percent ?? "?"} %`).join(" / ") || gettext("Add variants");
      case "update_tags": {
        const set = Object.keys(step.set || {});
        const remove = step.remove || [];
        return [set.length ? interpolate(gettext("set %(tags)s"), { tags: set.join(", ") }, true) : "", remove.length ? interpolate(gettext("remove %(tags)s"), { tags: remove.join(", ") }, true) : ""].filter(Boolean).join("; ") || gettext("Pick tags");
      }
      case "webhook":
        try {
          return step.url ? `POST ${new URL(step.url).host}` : gettext("Set the URL");
        } catch {
          return step.url;
        }
      case "exit":
        return gettext("leaves the journey");
      default:
        return "";
    }
  }

  function durationText(iso) {
    const p = durationParts(iso);
    if (!p.n) return iso;
    const n = Number(p.n);
    const unit = {
      M: ngettext("%(n)s minute", "%(n)s minutes", n),
      H: ngettext("%(n)s hour", "%(n)s hours", n),
      D: ngettext("%(n)s day", "%(n)s days", n),
      W: ngettext("%(n)s week", "%(n)s weeks", n),
    }[p.unit];
    return interpolate(unit, { n }, true);
  }

  function contentOf(id) {
    return document.querySelector(`#node-${id} .drawflow_content_node`);
  }

  function showCounts() {
    return DATA.journey.version > 0 || DATA.journey.status !== "draft";
  }

  function stepCounts(step) {
    const c = counts[step.id] || {};
    let exited = c.exited || 0;
    let explicit = "exited" in c;
    for (const [key, n] of Object.entries(c)) if (key.startsWith("exited:")) { exited += n; explicit = true; }
    if (!explicit) {
      // Derived: those who left by an outlet that leads nowhere, or reached an exit step.
      if (step.type === "exit") exited = c.entered || 0;
      for (const name of outletsOf(step)) if (getTarget(step, name) === null) exited += c[`passed:${name}`] || 0;
    }
    return { ...c, exited };
  }

  function renderNode(id) {
    const step = nodes.get(id);
    const box = contentOf(id);
    if (!step || !box) return;
    const type = TYPES.get(step.type);
    const mine = problems.filter((p) => p.step === step.id);
    const c = stepCounts(step);
    box.replaceChildren(
      el("div", { class: "jb-node", "data-step": step.id, "data-testid": "step-node", "data-type": step.type }, [
        el("div", { class: "jb-node-head" }, [
          el("span", { class: `jb-node-type${type?.channel ? ` jb-channel-${type.channel}` : ""}`, text: type?.label || step.type }),
          el("span", { class: "jb-node-id", text: step.id }),
        ]),
        el("div", { class: "jb-node-summary", text: stepSummary(step) }),
        showCounts()
          ? el(
              "dl",
              { class: "jb-counts", "data-testid": "step-counts" },
              countKeys(type).flatMap(([key, label]) => [
                el("dt", { text: label }),
                el("dd", { "data-count": key, text: String(c[key] || 0) }),
              ]),
            )
          : null,
        mine.length ? el("ul", { class: "jb-node-problems", "data-testid": "step-problems" }, mine.map((p) => el("li", { text: p.message }))) : null,
      ]),
    );
    document.getElementById(`node-${id}`)?.classList.toggle("jb-has-problem", mine.length > 0);
    labelOutputs(id);
  }

  function renderEntryNode() {
    const box = contentOf(entryNode);
    if (!box) return;
    const mine = problems.filter((p) => !p.step && /^(entry|entries)/.test(p.field || ""));
    const c = counts[""] || {};
    box.replaceChildren(
      el("div", { class: "jb-node", "data-testid": "entry-node" }, [
        el("div", { class: "jb-node-head" }, [el("span", { class: "jb-node-type", text: gettext("Entry") })]),
        el("div", { class: "jb-node-summary", text: meta.entries.map(entrySummary).join(" · ") || gettext("Choose how subscribers enter") }),
        showCounts()
          ? el("dl", { class: "jb-counts", "data-testid": "entry-counts" }, [
              el("dt", { text: gettext("entered") }),
              el("dd", { "data-count": "entered", text: String(c.entered || 0) }),
              el("dt", { text: gettext("converted") }),
              el("dd", { "data-count": "converted", text: String(c.converted || 0) }),
            ])
          : null,
        mine.length ? el("ul", { class: "jb-node-problems", "data-testid": "entry-problems" }, mine.map((p) => el("li", { text: p.message }))) : null,
      ]),
    );
    document.getElementById(`node-${entryNode}`)?.classList.toggle("jb-has-problem", mine.length > 0);
  }

  function entrySummary(entry) {
    if (entry.type === "event") {
      const kw = keywordsOf(entry);
      return kw.words.length ? `${entry.event || "?"} “${kw.words.join("”, “")}”` : entry.event || gettext("an event");
    }
    if (entry.type === "segment") return entry.segment ? interpolate(gettext("segment %(name)s"), { name: DATA.segments.find((s) => s.id === entry.segment)?.name || gettext("(deleted)") }, true) : gettext("a segment (pick one)");
    return "API";
  }

  function labelOutputs(id) {
    const step = nodes.get(id);
    const names = outletNames.get(id) || [];
    document.querySelectorAll(`#node-${id} .outputs .output`).forEach((out, i) => {
      const name = names[i];
      if (!name) return;
      out.dataset.outlet = name;
      out.dataset.label = outletLabel(step, name);
      out.title = out.dataset.label;
    });
    const box = document.getElementById(`node-${id}`);
    if (box) box.dataset.outlets = String(names.length);
  }

  // The node's outputs follow its outlets. The step JSON always holds the targets (every wire
  // drawn or removed writes them), so the outputs are rebuilt from it: a renamed variant or a
  // removed event keeps the wires of the outlets that remain.
  let rebuilding = false;

  function syncOutputs(id) {
    const step = nodes.get(id);
    const want = outletsOf(step);
    const have = outletNames.get(id) || [];
    rebuilding = true;
    try {
      for (let i = have.length; i >= 1; i--) editor.removeNodeOutput(id, `output_${i}`);
      want.forEach(() => editor.addNodeOutput(id));
      outletNames.set(id, want);
      want.forEach((name, i) => {
        const target = nodeOf(getTarget(step, name));
        if (target !== null) editor.addConnection(id, target, `output_${i + 1}`, "input_1");
      });
    } finally {
      rebuilding = false;
    }
    labelOutputs(id);
    editor.updateConnectionNodes(`node-${id}`);
    labelConnections();
  }

  function outletAt(id, outputClass) {
    return (outletNames.get(Number(id)) || [])[Number(String(outputClass).slice(7)) - 1];
  }

  function labelConnections() {
    const show = showCounts();
    document.querySelectorAll("#drawflow svg.connection").forEach((svg) => {
      const from = [...svg.classList].find((c) => c.startsWith("node_out_node-"));
      const out = [...svg.classList].find((c) => /^output_\d+$/.test(c));
      const id = from ? from.slice("node_out_node-".length) : null;
      const step = nodes.get(Number(id));
      const fromEntry = Number(id) === entryNode;
      let text = svg.querySelector("text.jb-passed");
      if (!show || !(step || fromEntry) || !out) {
        text?.remove();
        return;
      }
      // The entry's wire carries everyone who entered the journey.
      const name = fromEntry ? "entered" : (outletNames.get(Number(id)) || [])[Number(out.slice(7)) - 1];
      const path = svg.querySelector("path.main-path");
      if (!name || !path) return;
      if (!text) {
        text = document.createElementNS("http://www.w3.org/2000/svg", "text");
        text.setAttribute("class", "jb-passed");
        text.setAttribute("text-anchor", "middle");
        svg.append(text);
      }
      const length = path.getTotalLength();
      const point = path.getPointAtLength(length / 2);
      text.setAttribute("x", String(point.x));
      text.setAttribute("y", String(point.y - 6));
      text.setAttribute("data-outlet", name);
      text.textContent = String((fromEntry ? (counts[""] || {}).entered : (counts[step.id] || {})[`passed:${name}`]) || 0);
    });
  }

  let labelFrame = 0;
  function labelConnectionsSoon() {
    if (labelFrame) return;
    labelFrame = requestAnimationFrame(() => {
      labelFrame = 0;
      labelConnections();
    });
  }

  function load() {
    const steps = Array.isArray(definition.steps) ? definition.steps : [];
    steps.forEach((raw, i) => {
      const step = JSON.parse(JSON.stringify(raw));
      const x = Number.isFinite(step.ui?.x) ? step.ui.x : 330 + (i % 3) * 290;
      const y = Number.isFinite(step.ui?.y) ? step.ui.y : 60 + Math.floor(i / 3) * 200;
      addStepNode(step, x, y);
    });
    const first = [...nodes.keys()][0];
    const firstStep = first ? nodes.get(first) : null;
    addEntryNode(firstStep?.ui ? firstStep.ui.x - 290 : 40, firstStep?.ui ? firstStep.ui.y : 60);
    for (const [id, step] of nodes) {
      (outletNames.get(id) || []).forEach((name, i) => {
        const target = nodeOf(getTarget(step, name));
        if (target) editor.addConnection(id, target, `output_${i + 1}`, "input_1");
      });
    }
    if (first) editor.addConnection(entryNode, first, "output_1", "input_1");
    labelConnections();
  }

  // ---- canvas <-> JSON ----------------------------------------------------------------------------

  function buildDefinition() {
    const data = editor.export().drawflow.Home.data;
    const stepIdOf = (nodeId) => nodes.get(Number(nodeId))?.id ?? null;
    const out = [];
    for (const [id, step] of nodes) {
      const copy = JSON.parse(JSON.stringify(step));
      (outletNames.get(id) || []).forEach((name, i) => {
        const c = data[id]?.outputs?.[`output_${i + 1}`]?.connections?.[0];
        setTarget(copy, name, c ? stepIdOf(c.node) : null);
      });
      copy.ui = { x: Math.round(data[id]?.pos_x ?? 0), y: Math.round(data[id]?.pos_y ?? 0) };
      out.push(copy);
    }
    // Runs start at the first step of the list: the one the Entry node points at.
    const start = entryNode ? data[entryNode]?.outputs?.output_1?.connections?.[0] : null;
    const startId = start ? stepIdOf(start.node) : null;
    out.sort((a, b) => (b.id === startId) - (a.id === startId));
    const result = { ...meta.extra, name: meta.name, settings: cleanSettings(meta.settings), steps: out };
    if (meta.entries.length === 1) result.entry = meta.entries[0];
    else if (meta.entries.length > 1) result.entries = meta.entries;
    return result;
  }

  function cleanSettings(settings) {
    const s = JSON.parse(JSON.stringify(settings));
    for (const [k, v] of Object.entries(s)) if (v === "" || v === null || v === undefined) delete s[k];
    if (s.reentry !== "any_time") delete s.reentry_gap;
    return s;
  }

  function markDirty() {
    if (READONLY) return;
    dirty = true;
    say(gettext("Unsaved changes."), "secondary");
  }

  // ---- server calls -------------------------------------------------------------------------------

  function say(message, kind = "info", extra = []) {
    statusBox.className = `alert alert-${kind}`;
    statusBox.replaceChildren(el("div", { text: message }), ...extra);
    statusBox.dataset.kind = kind;
  }

  async function post(url) {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": CSRF, Accept: "application/json" },
      body: JSON.stringify({ definition: buildDefinition() }),
      credentials: "same-origin",
    });
    let body = {};
    try {
      body = await response.json();
    } catch {
      body = { message: interpolate(gettext("The server answered %(status)s."), { status: response.status }, true) };
    }
    return { ok: response.ok, status: response.status, body };
  }

  function setProblems(list, warns = []) {
    problems = list || [];
    warnings = warns || [];
    for (const id of nodes.keys()) renderNode(id);
    renderEntryNode();
    if (openNode !== null) openPanel(openNode);
  }

  function problemList(list) {
    return el("ul", { class: "mb-0 jb-problem-list", "data-testid": "problem-list" }, list.map((p) => el("li", { text: `${p.step ? `${p.step}: ` : ""}${p.message}` })));
  }

  async function run(action) {
    if (READONLY) return;
    say(action === "save" ? gettext("Saving…") : action === "validate" ? gettext("Checking…") : gettext("Activating…"), "secondary");
    let answer;
    try {
      answer = await post(DATA.urls[action]);
    } catch {
      say(gettext("The server could not be reached; nothing changed."), "danger");
      return;
    }
    const { ok, body } = answer;
    if (!ok) {
      setProblems(body.problems || []);
      say(body.message || gettext("Not saved."), "danger", body.problems?.length ? [problemList(body.problems)] : []);
      return;
    }
    dirty = false;
    if (body.name) updateHeading(body.name);
    if (body.reload) {
      window.location.reload();
      return;
    }
    setProblems(body.problems || [], body.warnings || []);
    if (action === "validate") {
      const extra = [];
      if (body.problems?.length) extra.push(problemList(body.problems));
      if (body.warnings?.length) extra.push(el("div", { class: "mt-2", text: gettext("Warnings:") }), problemList(body.warnings));
      say(body.message, body.problems?.length ? "danger" : body.warnings?.length ? "warning" : "success", extra);
    } else {
      say(gettext("Saved."), "success");
    }
  }

  function updateHeading(name) {
    const heading = document.querySelector("[data-testid=journey-heading]");
    if (heading) heading.textContent = name;
  }

  async function poll() {
    if (document.hidden || !showCounts()) return;
    try {
      const response = await fetch(DATA.urls.counts, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) return;
      const body = await response.json();
      // Paused, resumed or stopped elsewhere: the buttons and the read-only state must follow.
      if (body.status && body.status !== DATA.journey.status && !dirty) {
        window.location.reload();
        return;
      }
      counts = body.counts || {};
      for (const id of nodes.keys()) renderNode(id);
      renderEntryNode();
      labelConnections();
    } catch {
      /* the next poll tries again */
    }
  }

  // ---- the side panel -----------------------------------------------------------------------------

  // Problems of the journey as a whole go to the entry panel or the settings panel by field.
  const ENTRY_FIELD = /^(entry|entries)/;

  function markFields(container, stepId, global = null) {
    const mine = problems.filter((p) => {
      if (!global) return p.step === stepId;
      if (p.step) return false;
      return global === "entry" ? ENTRY_FIELD.test(p.field || "") : !ENTRY_FIELD.test(p.field || "");
    });
    const shown = new Set();
    container.querySelectorAll("[data-field]").forEach((input) => {
      if (!input.matches("input, select, textarea")) return;
      const key = input.dataset.field;
      const hit = mine.find((p) => p.field && (p.field === key || p.field.startsWith(`${key}.`) || p.field.startsWith(`${key}[`)));
      if (!hit) return;
      input.classList.add("is-invalid");
      if (!shown.has(hit)) {
        input.closest(".jb-field, .jb-row")?.append(el("div", { class: "invalid-feedback d-block", "data-testid": "field-problem", "data-field": hit.field, text: hit.message }));
        shown.add(hit);
      }
    });
    const rest = mine.filter((p) => !shown.has(p));
    if (rest.length) container.prepend(el("div", { class: "alert alert-danger py-2", "data-testid": "panel-problems" }, [problemList(rest)]));
  }

  function openPanel(what) {
    openNode = what;
    let body;
    if (what === "entry") body = entryPanel();
    else if (what === "settings") body = settingsPanel();
    else {
      const step = nodes.get(what);
      if (!step) return closePanel();
      body = stepPanel(what, step);
    }
    const fieldset = el("fieldset", { disabled: READONLY }, body);
    panel.replaceChildren(fieldset);
    if (what === "entry" || what === "settings") markFields(panel, null, what);
    else markFields(panel, nodes.get(what).id);
    document.querySelectorAll(".drawflow-node.jb-open").forEach((n) => n.classList.remove("jb-open"));
    const nodeId = what === "entry" ? entryNode : typeof what === "number" ? what : null;
    if (nodeId !== null) document.getElementById(`node-${nodeId}`)?.classList.add("jb-open");
  }

  function closePanel() {
    openNode = null;
    panel.replaceChildren(el("p", { class: "text-secondary", text: READONLY ? gettext("Click a step to see how it is set up.") : gettext("Drag a step from the palette above onto the canvas, click it to set it up, and wire its outlets to the next steps.") }));
  }

  function changed(id, { outlets = false, redraw = false } = {}) {
    markDirty();
    if (outlets) syncOutputs(id);
    renderNode(id);
    if (redraw) openPanel(id);
  }

  function stepPanel(id, step) {
    const type = TYPES.get(step.type);
    const parts = [
      el("div", { class: "d-flex align-items-center mb-2" }, [
        el("h3", { class: "card-title mb-0 me-auto", text: type?.label || step.type }),
        el("code", { class: "small", "data-testid": "panel-step-id", text: step.id }),
      ]),
    ];
    const form = STEP_FORMS[step.type];
    parts.push(...(form ? form(id, step) : [el("p", { class: "text-secondary small", text: gettext("This step type has no form in this version of the builder; it keeps its settings as they are.") })]));
    parts.push(outletTargets(id, step));
    if (!READONLY) {
      parts.push(
        el("div", { class: "btn-list mt-3" }, [
          el("button", { type: "button", class: "btn btn-sm", "data-testid": "duplicate-step", text: gettext("Duplicate"), onclick: () => duplicate(id) }),
          el("button", { type: "button", class: "btn btn-sm btn-outline-danger", "data-testid": "delete-step", text: gettext("Delete"), onclick: () => editor.removeNodeId(`node-${id}`) }),
        ]),
      );
    }
    return parts;
  }

  // Where each outlet goes, as selects: the same as drawing the wire, without a mouse.
  function outletTargets(id, step) {
    const names = outletNames.get(id) || [];
    if (!names.length) return el("div");
    const others = [...nodes.entries()].filter(([nid]) => nid !== id);
    return el("div", { class: "mt-3" }, [
      el("div", { class: "jb-section", text: gettext("Where it goes") }),
      ...names.map((name, i) => {
        const current = connectionsOf(id, `output_${i + 1}`)[0]?.node;
        const select = options(
          el("select", {
            class: "form-select form-select-sm",
            "data-outlet": name,
            "data-testid": "outlet-target",
            onchange: (e) => {
              for (const c of connectionsOf(id, `output_${i + 1}`)) editor.removeSingleConnection(id, c.node, `output_${i + 1}`, "input_1");
              if (e.target.value) editor.addConnection(id, Number(e.target.value), `output_${i + 1}`, "input_1");
              markDirty();
              labelConnections();
            },
          }),
          [["", gettext("— leaves the journey")], ...others.map(([nid, s]) => [nid, `${s.id} (${TYPES.get(s.type)?.label || s.type})`])],
          current ?? "",
        );
        return field(outletLabel(step, name), select, name === "next" ? "next" : `next.${name}`);
      }),
    ]);
  }

  function duplicate(id) {
    const step = JSON.parse(JSON.stringify(nodes.get(id)));
    step.id = newStepId(step.type);
    for (const name of outletsOf(step)) setTarget(step, name, null);
    const pos = editor.getNodeFromId(id);
    const copy = addStepNode(step, pos.pos_x + 40, pos.pos_y + 140);
    markDirty();
    openPanel(copy);
  }

  // -- forms per step type: each returns the panel's fields; edits write into the step object.

  function templateForm(id, step) {
    // Bindings are edited in the flat form of the journey JSON ({"body.1": ...}); the nested form
    // campaigns keep ({"body": {"1": ...}}) is flattened once.
    if (step.bindings && Object.values(step.bindings).some((v) => v && typeof v === "object")) {
      step.bindings = Object.fromEntries(
        Object.entries(step.bindings).flatMap(([component, names]) =>
          names && typeof names === "object" ? Object.entries(names).map(([n, src]) => [`${component}.${n}`, src]) : [[component, names]],
        ),
      );
    }
    const chosen = TEMPLATES.find((t) => t.name === step.template?.name && t.language === step.template?.language);
    const select = options(
      el("select", {
        class: "form-select form-select-sm",
        "data-testid": "template-select",
        onchange: (e) => {
          const t = TEMPLATES[Number(e.target.value)];
          step.template = t ? { name: t.name, language: t.language } : {};
          const old = step.buttons || {};
          if (t && t.buttons.length) step.buttons = Object.fromEntries(t.buttons.map((b) => [b, old[b] ?? null]));
          else delete step.buttons;
          const keep = step.bindings || {};
          step.bindings = t ? Object.fromEntries(t.placeholders.map((p) => [p.key, keep[p.key] ?? ""])) : {};
          if (!t?.media) delete step.header_media_url;
          changed(id, { outlets: true, redraw: true });
        },
      }),
      [["", TEMPLATES.length ? gettext("— pick an approved template") : gettext("— no approved template in this project")], ...TEMPLATES.map((t, i) => [i, `${t.name} (${t.language}, ${t.category.toLowerCase()})`])],
      chosen ? TEMPLATES.indexOf(chosen) : step.template?.name ? "" : "",
    );
    const parts = [field(gettext("Template"), select, "template", step.template?.name && !chosen ? interpolate(gettext("“%(name)s” (%(language)s) is not an approved template of this project."), { name: step.template.name, language: step.template.language }, true) : null)];
    if (chosen?.body) parts.push(el("div", { class: "jb-template-body small text-secondary mb-2", text: chosen.body }));
    for (const p of chosen?.placeholders || []) {
      parts.push(
        field(
          p.label,
          textInput(step.bindings?.[p.key] ?? "", (v) => {
            step.bindings = { ...(step.bindings || {}), [p.key]: v };
            markDirty();
          }, { placeholder: p.example ? `e.g. ${p.example}` : "{{ subscriber.name }}", "data-testid": "binding", name: `bindings.${p.key}` }),
          `bindings.${p.key}`,
        ),
      );
    }
    if (chosen?.placeholders.length) parts.push(el("small", { class: "form-hint mb-2 d-block", text: gettext("Liquid: {{ subscriber.name }}, {{ tags.city }}, {{ event.text }} (the entry event), {{ values.code }} (API).") }));
    if (chosen?.media) {
      parts.push(field(`Header ${chosen.media} URL`, textInput(step.header_media_url, (v) => { step.header_media_url = v; markDirty(); }, { type: "url" }), "header_media_url"));
    }
    if (step.buttons && Object.keys(step.buttons).length) {
      parts.push(
        field(gettext("Wait for a button click up to"), durationInput(step.button_timeout || "P1D", (v) => { step.button_timeout = v; changed(id); }, "button_timeout"), "button_timeout", gettext("Each quick-reply button is an outlet; “no click” is taken when nobody taps within this time.")),
      );
    }
    return parts;
  }

  function textForm(id, step) {
    const area = el("textarea", { class: "form-control", rows: "5", maxlength: "4096", "data-testid": "text-input", oninput: (e) => { step.text = e.target.value; changed(id); } });
    area.value = step.text || "";
    const parts = [field(gettext("Message"), area, "text", gettext("Sent only inside the 24-hour window (an inbound message opens it); otherwise the run takes “outside window”. Liquid works: {{ subscriber.name }}."))];
    // Per-language texts: the subscriber's Language tag picks one (de_AT reads de); empty: the message above.
    const named = { de: gettext("Message in German"), en: gettext("Message in English") };
    const codes = ["de", "en", ...Object.keys(step.texts || {}).filter((c) => !(c in named))];
    for (const code of codes) {
      const input = el("textarea", {
        class: "form-control",
        rows: "3",
        maxlength: "4096",
        "data-testid": `text-input-${code}`,
        "data-language": code,
        oninput: (e) => {
          const texts = { ...(step.texts || {}) };
          if (e.target.value.trim()) texts[code] = e.target.value;
          else delete texts[code];
          if (Object.keys(texts).length) step.texts = texts;
          else delete step.texts;
          changed(id);
        },
      });
      input.value = step.texts?.[code] || "";
      const label = named[code] || interpolate(gettext("Message in %(code)s"), { code }, true);
      parts.push(field(label, input, `texts.${code}`, code === "de" ? gettext("For subscribers whose Language tag is this language; empty: the message above.") : null));
    }
    return parts;
  }

  function waitForm(id, step) {
    const modes = [["duration", gettext("for a time")], ["until_time", gettext("until a time of day")], ["until_date", gettext("until a date")], ["until_attribute", gettext("until a date from a tag or event")]];
    const mode = modes.find(([k]) => step[k] !== undefined)?.[0] || "duration";
    const pick = options(el("select", {
      class: "form-select form-select-sm",
      "data-testid": "wait-mode",
      onchange: (e) => {
        for (const [k] of modes) delete step[k];
        step[e.target.value] = e.target.value === "until_attribute" ? { source: "tag", name: "", offset: "" } : "";
        changed(id, { redraw: true });
      },
    }), modes, mode);
    const parts = [field(gettext("Wait"), pick, null)];
    if (mode === "duration") parts.push(field(gettext("How long"), durationInput(step.duration, (v) => { step.duration = v; changed(id); }, "duration"), "duration"));
    if (mode === "until_time") parts.push(field(gettext("Time of day (subscriber's zone)"), el("input", { class: "form-control form-control-sm", type: "time", value: step.until_time || "", oninput: (e) => { step.until_time = e.target.value; changed(id); } }), "until_time"));
    if (mode === "until_date") {
      parts.push(field(gettext("Date and time"), el("input", { class: "form-control form-control-sm", type: "datetime-local", value: String(step.until_date || "").slice(0, 16), oninput: (e) => { step.until_date = e.target.value ? `${e.target.value}:00` : ""; changed(id); } }), "until_date"));
    }
    if (mode === "until_attribute") {
      const a = step.until_attribute || (step.until_attribute = { source: "tag", name: "" });
      parts.push(field(gettext("From"), options(el("select", { class: "form-select form-select-sm", onchange: (e) => { a.source = e.target.value; changed(id); } }), [["tag", gettext("a tag")], ["event", gettext("the entry event's attribute")]], a.source), "until_attribute.source"));
      parts.push(field(gettext("Name"), textInput(a.name, (v) => { a.name = v; changed(id); }, { list: dataList("jb-tags", DATA.tags) }), "until_attribute.name"));
      parts.push(field(gettext("Offset"), durationInput(a.offset, (v) => { a.offset = v; changed(id); }, "until_attribute.offset", true), "until_attribute.offset", gettext("Optional: e.g. 1 day before the date.")));
    }
    return parts;
  }

  function conditionsEditor(list, onChange, key) {
    const box = el("div", { class: "jb-conditions", "data-testid": "conditions" });
    const draw = () => {
      box.replaceChildren(
        ...list.map((c, i) =>
          el("div", { class: "jb-row input-group input-group-sm mb-1" }, [
            el("input", { class: "form-control", value: c.attribute || "", placeholder: gettext("attribute"), "aria-label": gettext("Attribute"), "data-field": `${key}[${i}].attribute`, oninput: (e) => { c.attribute = e.target.value; onChange(); } }),
            options(el("select", { class: "form-select", "aria-label": gettext("Operator"), "data-field": `${key}[${i}].op`, onchange: (e) => { c.op = e.target.value; if (c.op === "exists") c.value = true; onChange(); draw(); } }), OPS, c.op || "eq"),
            c.op === "exists" ? null : el("input", { class: "form-control", value: Array.isArray(c.value) ? c.value.join(", ") : c.value ?? "", placeholder: gettext("value"), "aria-label": gettext("Value"), "data-field": `${key}[${i}].value`, oninput: (e) => { c.value = conditionValue(c.op, e.target.value); onChange(); } }),
            el("button", { type: "button", class: "btn", "aria-label": gettext("Remove condition"), text: "×", onclick: () => { list.splice(i, 1); onChange(); draw(); } }),
          ]),
        ),
        el("button", { type: "button", class: "btn btn-sm btn-ghost-primary", text: gettext("+ condition"), onclick: () => { list.push({ attribute: "", op: "eq", value: "" }); onChange(); draw(); } }),
      );
    };
    draw();
    return box;
  }

  function conditionValue(op, raw) {
    if (op === "keyword") {
      const words = raw.split(",").map((w) => w.trim()).filter(Boolean);
      return words.length > 1 ? words : words[0] || "";
    }
    if (["gt", "gte", "lt", "lte"].includes(op) && raw.trim() !== "" && Number.isFinite(Number(raw))) return Number(raw);
    return raw;
  }

  function waitEventForm(id, step) {
    if (!Array.isArray(step.events)) step.events = [{ event: "", conditions: [], next: null }];
    const sendSteps = [...nodes.values()].filter((s) => TYPES.get(s.type)?.channel && s.id !== step.id);
    const parts = [];
    step.events.forEach((ev, i) => {
      parts.push(
        el("div", { class: "jb-card mb-2" }, [
          field(`Event ${i + 1}`, textInput(ev.event, (v) => { ev.event = v; changed(id); labelOutputs(id); }, { list: dataList("jb-events", DATA.events) }), `events[${i}].event`),
          field(gettext("Only about the message of"), options(el("select", { class: "form-select form-select-sm", onchange: (e) => { if (e.target.value) ev.of_step = e.target.value; else delete ev.of_step; changed(id); } }), [["", gettext("any message")], ...sendSteps.map((s) => [s.id, s.id])], ev.of_step || ""), `events[${i}].of_step`),
          field(gettext("Conditions"), conditionsEditor((ev.conditions = ev.conditions || []), () => changed(id), `events[${i}].conditions`), null),
          step.events.length > 1 ? el("button", { type: "button", class: "btn btn-sm btn-ghost-danger", text: gettext("Remove this event"), onclick: () => { step.events.splice(i, 1); changed(id, { outlets: true, redraw: true }); } }) : null,
        ]),
      );
    });
    if (step.events.length < 3) parts.push(el("button", { type: "button", class: "btn btn-sm mb-2", text: gettext("+ event"), onclick: () => { step.events.push({ event: "", conditions: [], next: null }); changed(id, { outlets: true, redraw: true }); } }));
    parts.push(field(gettext("Give up after"), durationInput(step.timeout, (v) => { step.timeout = v; changed(id); }, "timeout"), "timeout", gettext("Then the run takes “not happened”.")));
    return parts;
  }

  function segmentForm(id, step) {
    return [field(gettext("Is the subscriber in"), options(el("select", { class: "form-select form-select-sm", onchange: (e) => { step.segment = e.target.value; changed(id); } }), [["", gettext("— pick a segment")], ...DATA.segments.map((s) => [s.id, s.name])], step.segment), "segment")];
  }

  // The step keeps the template's public id (a renamed template stays chosen); a name typed into
  // the JSON is found too.
  function channelTemplate(step) {
    const list = CHANNEL_TEMPLATES[CHANNEL_STEPS[step.type]] || [];
    return list.find((t) => t.id === step.template) || list.find((t) => t.name === step.template) || null;
  }

  function channelTemplateForm(id, step) {
    const channel = CHANNEL_STEPS[step.type];
    const list = CHANNEL_TEMPLATES[channel] || [];
    const chosen = channelTemplate(step);
    const select = options(
      el("select", { class: "form-select form-select-sm", "data-testid": "channel-template-select", onchange: (e) => { step.template = e.target.value; changed(id, { redraw: true }); } }),
      [["", list.length ? (channel === "email" ? gettext("— pick an email template") : gettext("— pick a push template")) : (channel === "email" ? gettext("— no email template in this project") : gettext("— no push template in this project"))], ...list.map((t) => [t.id, `${t.name}${t.marketing ? "" : gettext(" (transactional)")}`])],
      chosen ? chosen.id : "",
    );
    const parts = [field(gettext("Template"), select, "template", step.template && !chosen ? interpolate(channel === "email" ? gettext("“%(name)s” is not an email template of this project.") : gettext("“%(name)s” is not a push template of this project."), { name: step.template }, true) : null)];
    if (chosen?.preview) parts.push(el("div", { class: "jb-template-body small text-secondary mb-2", text: chosen.preview }));
    parts.push(el("small", { class: "form-hint mb-2 d-block", text: gettext("Rendered with {{ subscriber.* }}, {{ tags.* }}, {{ event.* }} (the entry event) and {{ values.* }}. Someone it may not reach is skipped with the reason; the run goes on.") }));
    return parts;
  }

  function reachabilityForm(id, step) {
    const chained = Array.isArray(step.channels);
    if (!chained && !step.channel) step.channel = "whatsapp";
    const mode = options(
      el("select", {
        class: "form-select form-select-sm",
        "data-testid": "reachability-mode",
        onchange: (e) => {
          const outlets = outletsOf(step);
          for (const name of outlets) setTarget(step, name, null);
          if (e.target.value === "chain") {
            delete step.channel; delete step.yes; delete step.no;
            step.channels = CHANNELS.map(([c]) => c);
          } else {
            for (const c of step.channels || []) delete step[c];
            delete step.channels; delete step.none;
            step.channel = "whatsapp";
          }
          changed(id, { outlets: true, redraw: true });
        },
      }),
      [["one", gettext("One channel: yes or no")], ["chain", gettext("The first reachable channel, in order")]],
      chained ? "chain" : "one",
    );
    const parts = [field(gettext("Check"), mode, null)];
    if (!chained) {
      parts.push(field(gettext("Reachable on"), options(el("select", { class: "form-select form-select-sm", onchange: (e) => { step.channel = e.target.value; changed(id); } }), CHANNELS, step.channel), "channel"));
      return parts;
    }
    // The order: tick the channels to try, move them up; each listed channel is an outlet.
    const rows = CHANNELS.map(([c, label]) => {
      const at = step.channels.indexOf(c);
      return el("div", { class: "jb-row input-group input-group-sm mb-1", "data-channel": c }, [
        el("label", { class: "input-group-text" }, [
          el("input", { class: "form-check-input m-0", type: "checkbox", checked: at >= 0, "aria-label": `Try ${label}`, onchange: (e) => {
            if (e.target.checked) step.channels.push(c);
            else { setTarget(step, c, null); step.channels = step.channels.filter((x) => x !== c); delete step[c]; }
            changed(id, { outlets: true, redraw: true });
          } }),
        ]),
        el("span", { class: "form-control", text: at >= 0 ? `${at + 1}. ${label}` : label }),
        at > 0 ? el("button", { type: "button", class: "btn", text: "↑", "aria-label": `Try ${label} earlier`, onclick: () => {
          step.channels.splice(at, 1); step.channels.splice(at - 1, 0, c);
          changed(id, { outlets: true, redraw: true });
        } }) : null,
      ]);
    });
    parts.push(field(gettext("Try in this order"), el("div", { "data-testid": "reachability-channels" }, rows), "channels", gettext("The run leaves by the first channel that reaches the subscriber, else by “none reachable”.")));
    return parts;
  }

  // A variant added or removed shares the 100 % out again (each 1-100, together 100).
  function evenly(variants) {
    const share = Math.floor(100 / variants.length);
    variants.forEach((v, i) => { v.percent = share + (i < 100 - share * variants.length ? 1 : 0); });
  }

  function abForm(id, step) {
    if (!Array.isArray(step.variants) || !step.variants.length) step.variants = [{ name: "A", percent: 50, next: null }, { name: "B", percent: 50, next: null }];
    const total = step.variants.reduce((n, v) => n + (Number(v.percent) || 0), 0);
    const parts = step.variants.map((v, i) =>
      el("div", { class: "jb-row input-group input-group-sm mb-1" }, [
        el("input", { class: "form-control", value: v.name, "aria-label": gettext("Variant name"), "data-field": `variants[${i}].name`, onchange: (e) => { v.name = e.target.value.trim(); changed(id, { outlets: true }); } }),
        el("input", { class: "form-control", type: "number", min: "0", max: "100", value: v.percent ?? "", "aria-label": gettext("Percent"), "data-field": `variants[${i}].percent`, onchange: (e) => { v.percent = Number(e.target.value); changed(id, { redraw: true }); labelOutputs(id); } }),
        el("span", { class: "input-group-text", text: "%" }),
        step.variants.length > 2 ? el("button", { type: "button", class: "btn", text: "×", "aria-label": gettext("Remove variant"), onclick: () => { step.variants.splice(i, 1); evenly(step.variants); changed(id, { outlets: true, redraw: true }); } }) : null,
      ]),
    );
    parts.unshift(el("div", { class: "jb-section", text: gettext("Variants (sticky per subscriber)") }));
    parts.push(el("div", { class: `small mb-2 ${total === 100 ? "text-secondary" : "text-danger"}`, text: total === 100 ? interpolate(gettext("Together: %(total)s"), { total: "100 %" }, true) : interpolate(gettext("Together: %(total)s, must be %(full)s"), { total: `${total} %`, full: "100 %" }, true) }));
    if (step.variants.length < 5) {
      parts.push(el("button", { type: "button", class: "btn btn-sm mb-2", text: gettext("+ variant"), onclick: () => { step.variants.push({ name: String.fromCharCode(65 + step.variants.length), percent: 0, next: null }); evenly(step.variants); changed(id, { outlets: true, redraw: true }); } }));
    }
    return parts;
  }

  function tagsForm(id, step) {
    step.set = step.set || {};
    step.remove = step.remove || [];
    const rows = Object.entries(step.set).map(([tag, value]) => {
      const fromEvent = Boolean(value && typeof value === "object");
      return { tag, fromEvent, value: fromEvent ? value.event_attribute || "" : value ?? "" };
    });
    const write = () => {
      step.set = Object.fromEntries(rows.filter((r) => r.tag).map((r) => [r.tag, r.fromEvent ? { event_attribute: r.value } : r.value]));
      changed(id);
    };
    const box = el("div");
    const draw = () =>
      box.replaceChildren(
        ...rows.map((row, i) =>
          el("div", { class: "jb-row input-group input-group-sm mb-1" }, [
            el("input", { class: "form-control", value: row.tag, placeholder: gettext("tag"), list: dataList("jb-tags", DATA.tags), "aria-label": gettext("Tag"), "data-field": `set.${row.tag}`, oninput: (e) => { row.tag = e.target.value.trim(); write(); } }),
            options(el("select", { class: "form-select", "aria-label": gettext("Value from"), onchange: (e) => { row.fromEvent = e.target.value === "event"; write(); draw(); } }), [["value", "="], ["event", "= event's"]], row.fromEvent ? "event" : "value"),
            el("input", { class: "form-control", value: row.value, placeholder: row.fromEvent ? "attribute" : "value", "aria-label": gettext("Value"), oninput: (e) => { row.value = e.target.value; write(); } }),
            el("button", { type: "button", class: "btn", text: "×", "aria-label": gettext("Remove"), onclick: () => { rows.splice(i, 1); write(); draw(); } }),
          ]),
        ),
        el("button", { type: "button", class: "btn btn-sm btn-ghost-primary", text: gettext("+ set a tag"), onclick: () => { rows.push({ tag: "", fromEvent: false, value: "" }); draw(); } }),
      );
    draw();
    return [
      field(gettext("Set"), box, "set"),
      field(gettext("Remove tags (comma separated)"), textInput(step.remove.join(", "), (v) => { step.remove = v.split(",").map((t) => t.trim()).filter(Boolean); changed(id); }, { list: dataList("jb-tags", DATA.tags) }), "remove"),
    ];
  }

  function pairsEditor(object, onChange, key, placeholder) {
    const box = el("div");
    const entries = Object.entries(object || {});
    const write = () => onChange(Object.fromEntries(entries.filter(([k]) => k)));
    const draw = () => box.replaceChildren(
      ...entries.map((pair, i) => el("div", { class: "jb-row input-group input-group-sm mb-1" }, [
        el("input", { class: "form-control", value: pair[0], placeholder: gettext("name"), "aria-label": gettext("Name"), "data-field": `${key}.${pair[0]}`, oninput: (e) => { pair[0] = e.target.value; write(); } }),
        el("input", { class: "form-control", value: typeof pair[1] === "string" ? pair[1] : JSON.stringify(pair[1]), placeholder, "aria-label": gettext("Value"), oninput: (e) => { pair[1] = e.target.value; write(); } }),
        el("button", { type: "button", class: "btn", text: "×", "aria-label": gettext("Remove"), onclick: () => { entries.splice(i, 1); write(); draw(); } }),
      ])),
      el("button", { type: "button", class: "btn btn-sm btn-ghost-primary", text: gettext("+ add"), onclick: () => { entries.push(["", ""]); draw(); } }),
    );
    draw();
    return box;
  }

  function webhookForm(id, step) {
    return [
      field(gettext("URL (https)"), textInput(step.url, (v) => { step.url = v; changed(id); }, { type: "url", placeholder: "https://example.com/hook" }), "url", gettext("Posted as JSON with an Idempotency-Key header; private and local addresses are refused.")),
      field(gettext("Headers"), pairsEditor(step.headers, (v) => { step.headers = v; changed(id); }, "headers", "value"), "headers"),
      field(gettext("Body fields"), pairsEditor(step.body, (v) => { step.body = v; changed(id); }, "body", "{{ subscriber.phone }}"), "body", gettext("Each value may use Liquid.")),
      el("div", { class: "row g-2" }, [
        el("div", { class: "col" }, field(gettext("Timeout (s)"), el("input", { class: "form-control form-control-sm", type: "number", min: "1", max: "30", value: step.timeout_seconds ?? 10, oninput: (e) => { step.timeout_seconds = Number(e.target.value); changed(id); } }), "timeout_seconds")),
        el("div", { class: "col" }, field(gettext("Retries"), el("input", { class: "form-control form-control-sm", type: "number", min: "0", max: "5", value: step.retries ?? 2, oninput: (e) => { step.retries = Number(e.target.value); changed(id); } }), "retries")),
      ]),
    ];
  }

  const STEP_FORMS = {
    whatsapp_template: templateForm,
    whatsapp_text: textForm,
    wait: waitForm,
    wait_event: waitEventForm,
    segment_split: segmentForm,
    reachability: reachabilityForm,
    send_email: channelTemplateForm,
    send_push: channelTemplateForm,
    ab_split: abForm,
    update_tags: tagsForm,
    webhook: webhookForm,
    exit: () => [el("p", { class: "text-secondary small", text: gettext("The run leaves the journey here. A branch whose outlet leads nowhere ends the same way.") })],
  };

  // -- entry and settings

  function keywordsOf(entry) {
    const list = entry.conditions || [];
    const i = list.findIndex((c) => c && c.attribute === "text" && ["keyword", "contains", "starts_with", "regex"].includes(c.op));
    if (i < 0) return { index: -1, op: "keyword", words: [] };
    const c = list[i];
    const words = Array.isArray(c.value) ? c.value : c.value ? [String(c.value)] : [];
    return { index: i, op: c.op, words };
  }

  function entryChanged() {
    markDirty();
    renderEntryNode();
  }

  function entryCard(entry, i) {
    const parts = [
      field(gettext("Starts with"), options(el("select", {
        class: "form-select form-select-sm",
        "data-testid": "entry-type",
        onchange: (e) => {
          meta.entries[i] = e.target.value === "event" ? { type: "event", event: "WhatsAppReceived", conditions: [] } : e.target.value === "segment" ? { type: "segment", segment: "", schedule: {} } : { type: "api" };
          entryChanged();
          openPanel("entry");
        },
      }), [["event", gettext("an event (e.g. an inbound keyword)")], ["segment", gettext("a segment, on a schedule")], ["api", gettext("the API")]], entry.type), `${entryKey(i)}.type`),
    ];
    if (entry.type === "event") {
      parts.push(field(gettext("Event"), textInput(entry.event, (v) => { entry.event = v; entryChanged(); }, { list: dataList("jb-events", DATA.events), "data-testid": "entry-event" }), `${entryKey(i)}.event`));
      const kw = keywordsOf(entry);
      const rest = (entry.conditions || []).filter((_, j) => j !== kw.index);
      const writeKeywords = (op, text) => {
        const words = text.split(",").map((w) => w.trim()).filter(Boolean);
        const others = (entry.conditions || []).filter((_, j) => j !== keywordsOf(entry).index);
        const value = op === "keyword" ? (words.length > 1 ? words : words[0]) : text.trim();
        entry.conditions = words.length ? [{ attribute: "text", op, value }, ...others] : others;
        entryChanged();
      };
      const kwInput = textInput(kw.words.join(", "), (v) => writeKeywords(kwOp.value, v), { placeholder: "promo, angebot", "data-testid": "entry-keywords" });
      const kwOp = options(el("select", { class: "form-select form-select-sm", "aria-label": gettext("How the text matches"), "data-testid": "entry-keyword-match", onchange: (e) => writeKeywords(e.target.value, kwInput.value) }), [["keyword", gettext("is one of")], ["contains", "contains"], ["starts_with", gettext("starts with")], ["regex", gettext("matches the pattern")]], kw.op);
      parts.push(field(gettext("Inbound text"), el("div", { class: "input-group input-group-sm" }, [kwOp, kwInput]), `${entryKey(i)}.conditions`, gettext("Case, accents and surrounding punctuation are ignored: “Promo!” matches promo. Several keywords: separate them with commas.")));
      parts.push(field(gettext("Other conditions"), conditionsEditor(rest, () => { entry.conditions = [...(keywordsOf(entry).index >= 0 ? [entry.conditions[keywordsOf(entry).index]] : []), ...rest]; entryChanged(); }, `${entryKey(i)}.conditions`), null));
    }
    if (entry.type === "segment") {
      parts.push(field(gettext("Segment"), options(el("select", { class: "form-select form-select-sm", onchange: (e) => { entry.segment = e.target.value; entryChanged(); } }), [["", gettext("— pick a segment")], ...DATA.segments.map((s) => [s.id, s.name])], entry.segment), `${entryKey(i)}.segment`));
      const s = entry.schedule || (entry.schedule = {});
      const mode = s.every ? "every" : s.local_time ? "local" : s.at ? "at" : "now";
      parts.push(field(gettext("When"), options(el("select", {
        class: "form-select form-select-sm",
        onchange: (e) => { entry.schedule = e.target.value === "every" ? { every: "P1D", time: "09:00" } : e.target.value === "local" ? { at: "", local_time: "09:00" } : e.target.value === "at" ? { at: "" } : {}; entryChanged(); openPanel("entry"); },
      }), [["now", gettext("once, as soon as it is activated")], ["at", gettext("once, at a date and time")], ["local", gettext("once, at a time in each subscriber's zone")], ["every", gettext("again and again")]], mode), `${entryKey(i)}.schedule`));
      if (mode === "at") parts.push(field(gettext("At"), el("input", { class: "form-control form-control-sm", type: "datetime-local", value: String(s.at || "").slice(0, 16), oninput: (e) => { s.at = e.target.value ? `${e.target.value}:00` : ""; entryChanged(); } }), `${entryKey(i)}.schedule.at`));
      if (mode === "local") {
        parts.push(field(gettext("On"), el("input", { class: "form-control form-control-sm", type: "date", value: String(s.at || "").slice(0, 10), oninput: (e) => { s.at = e.target.value; entryChanged(); } }), `${entryKey(i)}.schedule.at`));
        parts.push(field(gettext("At (subscriber's time)"), el("input", { class: "form-control form-control-sm", type: "time", value: s.local_time || "", oninput: (e) => { s.local_time = e.target.value; entryChanged(); } }), `${entryKey(i)}.schedule.local_time`));
      }
      if (mode === "every") {
        parts.push(field(gettext("Every"), durationInput(s.every, (v) => { s.every = v; entryChanged(); }, `${entryKey(i)}.schedule.every`), `${entryKey(i)}.schedule.every`));
        parts.push(field(gettext("At"), el("input", { class: "form-control form-control-sm", type: "time", value: s.time || "", oninput: (e) => { s.time = e.target.value; entryChanged(); } }), `${entryKey(i)}.schedule.time`));
      }
    }
    if (entry.type === "api") parts.push(el("p", { class: "small text-secondary", text: interpolate(gettext("POST %(path)s with subscribers and values."), { path: `/api/v1/journeys/${DATA.journey.id}/start` }, true) }));
    if (meta.entries.length > 1) parts.push(el("button", { type: "button", class: "btn btn-sm btn-ghost-danger", text: gettext("Remove this entry"), onclick: () => { meta.entries.splice(i, 1); entryChanged(); openPanel("entry"); } }));
    return el("div", { class: "jb-card mb-2", "data-testid": "entry-card" }, parts);
  }

  function entryKey(i) {
    return meta.entries.length > 1 ? `entries[${i}]` : "entry";
  }

  function entryPanel() {
    if (!meta.entries.length) meta.entries.push({ type: "event", event: "WhatsAppReceived", conditions: [] });
    const parts = [el("h3", { class: "card-title", text: gettext("Entry") }), ...meta.entries.map(entryCard)];
    parts.push(el("button", { type: "button", class: "btn btn-sm", text: gettext("+ another entry"), onclick: () => { meta.entries.push({ type: "api" }); entryChanged(); openPanel("entry"); } }));
    parts.push(el("p", { class: "small text-secondary mt-2", text: gettext("Someone who matches several entries enters once.") }));
    return parts;
  }

  function settingsPanel() {
    const s = meta.settings;
    const set = (key, value) => { s[key] = value; markDirty(); };
    const cap = s.entry_cap || {};
    const silent = s.silent_hours || {};
    const goal = s.goal || null;
    const parts = [
      el("h3", { class: "card-title", text: gettext("Settings") }),
      field(gettext("Name"), textInput(meta.name, (v) => { meta.name = v; markDirty(); }, { "data-testid": "journey-name", maxlength: "200" }), "name"),
      field(gettext("Re-entry"), options(el("select", { class: "form-select form-select-sm", onchange: (e) => { set("reentry", e.target.value); openPanel("settings"); } }), [["after_exit", gettext("again after leaving")], ["never", gettext("never again")], ["any_time", gettext("any time (with a gap)")]], s.reentry || "after_exit"), "settings.reentry"),
    ];
    if ((s.reentry || "after_exit") === "any_time") parts.push(field(gettext("At least this long between entries"), durationInput(s.reentry_gap, (v) => set("reentry_gap", v), "settings.reentry_gap"), "settings.reentry_gap"));
    parts.push(
      field(gettext("Entry cap"), el("div", { class: "input-group input-group-sm" }, [
        el("input", { class: "form-control", type: "number", min: "1", value: cap.count ?? "", placeholder: gettext("no cap"), "aria-label": gettext("Entries at most"), "data-field": "settings.entry_cap.count", oninput: (e) => { const n = parseInt(e.target.value, 10); if (n > 0) set("entry_cap", { ...(s.entry_cap || {}), count: n }); else delete s.entry_cap; markDirty(); } }),
        el("span", { class: "input-group-text", text: gettext("times per") }),
      ]), "settings.entry_cap"),
      field(gettext("Cap period"), durationInput(cap.period, (v) => { if (s.entry_cap) { if (v) s.entry_cap.period = v; else delete s.entry_cap.period; markDirty(); } }, "settings.entry_cap.period"), "settings.entry_cap.period", "Empty: ever."),
      field(gettext("Silent hours (subscriber's zone)"), el("div", { class: "input-group input-group-sm" }, [
        el("input", { class: "form-control", type: "time", value: silent.start || "", "aria-label": gettext("From"), "data-field": "settings.silent_hours.start", oninput: (e) => { s.silent_hours = { ...(s.silent_hours || {}), start: e.target.value }; if (!s.silent_hours.start && !s.silent_hours.end) delete s.silent_hours; markDirty(); } }),
        el("span", { class: "input-group-text", text: gettext("to") }),
        el("input", { class: "form-control", type: "time", value: silent.end || "", "aria-label": gettext("To"), "data-field": "settings.silent_hours.end", oninput: (e) => { s.silent_hours = { ...(s.silent_hours || {}), end: e.target.value }; if (!s.silent_hours.start && !s.silent_hours.end) delete s.silent_hours; markDirty(); } }),
      ]), "settings.silent_hours", gettext("Sends wait until the silent hours end; nobody is dropped.")),
      field(gettext("Silent hours hold"), el("div", { "data-testid": "silent-channels" }, CHANNELS.map(([c, label]) =>
        el("label", { class: "form-check form-check-inline" }, [
          el("input", { class: "form-check-input", type: "checkbox", checked: !Array.isArray(silent.channels) || silent.channels.includes(c), "data-field": "settings.silent_hours.channels", onchange: (e) => {
            if (!s.silent_hours) s.silent_hours = {};
            const held = new Set(Array.isArray(s.silent_hours.channels) ? s.silent_hours.channels : CHANNELS.map(([x]) => x));
            if (e.target.checked) held.add(c); else held.delete(c);
            // Every channel is the default: the key is written only for a narrower choice.
            if (held.size === CHANNELS.length) delete s.silent_hours.channels;
            else s.silent_hours.channels = CHANNELS.map(([x]) => x).filter((x) => held.has(x));
            markDirty();
          } }),
          el("span", { class: "form-check-label", text: label }),
        ]))), "settings.silent_hours.channels", gettext("Send steps of an unticked channel go during silent hours.")),
      field(gettext("Fallback time zone"), textInput(s.fallback_time_zone || "", (v) => set("fallback_time_zone", v), { placeholder: "UTC" }), "settings.fallback_time_zone", gettext("For subscribers without a time zone.")),
      el("div", { class: "jb-section mt-3", text: gettext("Conversion goal") }),
      el("label", { class: "form-check" }, [
        el("input", { class: "form-check-input", type: "checkbox", checked: Boolean(goal), "data-testid": "goal-toggle", onchange: (e) => { if (e.target.checked) s.goal = { event: "", conditions: [], window: "P7D", exit: false }; else delete s.goal; markDirty(); openPanel("settings"); } }),
        el("span", { class: "form-check-label", text: gettext("Count a conversion when an event happens") }),
      ]),
    );
    if (goal) {
      parts.push(
        field(gettext("Event"), textInput(goal.event, (v) => { goal.event = v; markDirty(); }, { list: dataList("jb-events", DATA.events) }), "settings.goal.event"),
        field(gettext("Conditions"), conditionsEditor((goal.conditions = goal.conditions || []), markDirty, "settings.goal.conditions"), null),
        field(gettext("Within"), durationInput(goal.window, (v) => { goal.window = v; markDirty(); }, "settings.goal.window"), "settings.goal.window"),
        el("label", { class: "form-check" }, [
          el("input", { class: "form-check-input", type: "checkbox", checked: Boolean(goal.exit), onchange: (e) => { goal.exit = e.target.checked; markDirty(); } }),
          el("span", { class: "form-check-label", text: gettext("Leave the journey when the goal is reached") }),
        ]),
      );
    }
    return parts;
  }

  // ---- palette, drag and drop, events -------------------------------------------------------------

  // A step added by a click goes to the right of the step open in the panel (the usual "and
  // then"), or under everything when that would leave the visible part of the canvas.
  function nextFreeSpot() {
    const data = editor.export().drawflow.Home.data;
    const all = Object.values(data);
    const width = canvas.clientWidth / editor.zoom;
    const left = -editor.canvas_x / editor.zoom;
    const from = typeof openNode === "number" ? data[openNode] : entryNode !== null ? data[entryNode] : null;
    if (from && from.pos_x + 290 + 240 <= left + width) return { x: from.pos_x + 290, y: from.pos_y };
    const bottom = all.length ? Math.max(...all.map((n) => n.pos_y)) : 0;
    return { x: Math.max(left + 40, 40), y: all.length ? bottom + 170 : 60 };
  }

  function newStep(type, x, y) {
    const step = { id: newStepId(type), type };
    if (type === "wait") step.duration = "PT1H";
    if (type === "reachability") step.channel = "whatsapp";
    if (CHANNEL_STEPS[type]) step.template = CHANNEL_TEMPLATES[CHANNEL_STEPS[type]]?.[0]?.id || "";
    if (type === "wait_event") {
      step.events = [{ event: "WhatsAppRead", conditions: [], next: null }];
      step.timeout = "P1D";
    }
    if (type === "ab_split") step.variants = [{ name: "A", percent: 50, next: null }, { name: "B", percent: 50, next: null }];
    const id = addStepNode(step, x, y);
    // The first step on an empty canvas is where runs start.
    if (nodes.size === 1 && entryNode !== null && !connectionsOf(entryNode, "output_1").length) editor.addConnection(entryNode, id, "output_1", "input_1");
    markDirty();
    openPanel(id);
    return id;
  }

  function renderPalette() {
    const box = document.getElementById("jb-palette-items");
    box.replaceChildren(
      ...DATA.types.map((t) =>
        el("button", {
          type: "button",
          class: `jb-palette-item btn btn-sm${t.channel ? ` jb-channel-${t.channel}` : ""}`,
          draggable: READONLY ? "false" : "true",
          disabled: READONLY,
          "data-type": t.type,
          "data-testid": "palette-item",
          title: READONLY ? null : gettext("Drag onto the canvas, or click to add"),
          text: t.label,
          ondragstart: (e) => e.dataTransfer.setData("text/plain", `step:${t.type}`),
          onclick: () => { const spot = nextFreeSpot(); newStep(t.type, spot.x, spot.y); },
        }),
      ),
    );
  }

  const canvas = document.getElementById("drawflow");
  canvas.addEventListener("dragover", (e) => { if (!READONLY) e.preventDefault(); });
  canvas.addEventListener("drop", (e) => {
    const raw = e.dataTransfer.getData("text/plain");
    if (READONLY || !raw.startsWith("step:") || !TYPES.has(raw.slice(5))) return;
    e.preventDefault();
    const rect = editor.precanvas.getBoundingClientRect();
    newStep(raw.slice(5), (e.clientX - rect.x) / editor.zoom, (e.clientY - rect.y) / editor.zoom);
  });
  canvas.addEventListener("click", (e) => {
    const node = e.target.closest(".drawflow-node");
    if (!node || e.target.closest(".output, .input, .drawflow-delete")) return;
    const id = Number(node.id.slice(5));
    openPanel(id === entryNode ? "entry" : id);
  });

  editor.on("connectionCreated", ({ output_id, input_id, output_class }) => {
    // One outlet leads to one step: a new wire replaces the old one. No wire back to itself.
    if (String(output_id) === String(input_id)) {
      editor.removeSingleConnection(output_id, input_id, output_class, "input_1");
      return;
    }
    for (const c of connectionsOf(output_id, output_class)) {
      if (String(c.node) !== String(input_id)) editor.removeSingleConnection(output_id, c.node, output_class, "input_1");
    }
    const step = nodes.get(Number(output_id));
    const name = outletAt(output_id, output_class);
    if (!rebuilding && step && name) setTarget(step, name, nodes.get(Number(input_id))?.id ?? null);
    markDirty();
    labelConnectionsSoon();
  });
  editor.on("connectionRemoved", ({ output_id, input_id, output_class }) => {
    const step = nodes.get(Number(output_id));
    const name = outletAt(output_id, output_class);
    if (!rebuilding && step && name && getTarget(step, name) === nodes.get(Number(input_id))?.id) setTarget(step, name, null);
    markDirty();
    labelConnectionsSoon();
  });
  editor.on("nodeMoved", () => { markDirty(); labelConnectionsSoon(); });
  editor.on("mouseMove", labelConnectionsSoon);
  editor.on("nodeRemoved", (id) => {
    const nid = Number(id);
    if (nid === entryNode) {
      addEntryNode(20, 60);
      return;
    }
    nodes.delete(nid);
    outletNames.delete(nid);
    if (openNode === nid) closePanel();
    markDirty();
  });

  // Drawflow deletes the selected node on the Delete key anywhere in the document: typing in the
  // side panel must not reach it.
  for (const box of [panel, statusBox]) {
    box.addEventListener("keydown", (e) => {
      e.stopPropagation();
      if ((e.ctrlKey || e.metaKey) && e.key === "s" && !READONLY) {
        e.preventDefault();
        run("save");
      }
    });
  }
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "s" && !READONLY) {
      e.preventDefault();
      run("save");
    }
  });
  document.querySelectorAll("[data-action]").forEach((b) => b.addEventListener("click", () => run(b.dataset.action)));
  document.querySelectorAll("[data-panel]").forEach((b) => b.addEventListener("click", () => openPanel(b.dataset.panel)));
  document.querySelectorAll("[data-zoom]").forEach((b) =>
    b.addEventListener("click", () => {
      if (b.dataset.zoom === "in") editor.zoom_in();
      else if (b.dataset.zoom === "out") editor.zoom_out();
      else editor.zoom_reset();
    }),
  );
  // Pause, resume and stop are plain forms; unsaved canvas changes are saved first.
  document.querySelectorAll(".page-header form").forEach((form) =>
    form.addEventListener("submit", async (e) => {
      if (e.defaultPrevented || !dirty || READONLY) return;
      e.preventDefault();
      await run("save");
      if (!dirty) form.submit();
    }),
  );
  window.addEventListener("beforeunload", (e) => {
    if (dirty) e.preventDefault();
  });

  renderPalette();
  load();
  closePanel();
  // Drawing the saved wires is not a change.
  dirty = false;
  statusBox.className = "alert d-none";
  if (showCounts()) setInterval(poll, 3000);
  root.dataset.ready = "true";
  // For tests and the curious: the JSON the canvas would save now.
  root.journeyDefinition = buildDefinition;
})();
