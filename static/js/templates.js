// New-template form: sections per category and header type, button rows, one sample input per
// body parameter. The server does every check; without JavaScript the form still works (all
// sections shown, "Add a button" re-renders the page). No inline scripts (CSP).
(() => {
  // The placeholder grammar comes from the server (whatsapp/placeholders.py), never a copy here.
  const grammar = JSON.parse(document.getElementById("placeholder-grammar").textContent);
  const TOKEN = new RegExp(grammar.token, "g");
  const VALID = new RegExp(grammar.name);
  // Samples of parameters removed from the body, so retyping the parameter brings them back.
  const removedSamples = new Map();

  function controlValue(form, name) {
    const control = form.elements.namedItem(name);
    return control ? control.value : "";
  }

  function matches(form, rule) {
    const [name, values] = rule.split(":");
    return values.split("|").includes(controlValue(form, name));
  }

  // Hidden sections are disabled too, so the browser neither submits nor previews them.
  function syncSections(form) {
    form.querySelectorAll("[data-show-for], [data-hide-for]").forEach((el) => {
      let visible = true;
      if (el.dataset.showFor) visible = matches(form, el.dataset.showFor);
      if (el.dataset.hideFor) visible = visible && !matches(form, el.dataset.hideFor);
      el.hidden = !visible;
      if (el.tagName === "FIELDSET") el.disabled = !visible;
    });
  }

  // Inputs of other button types stay enabled (rows are parallel lists); the server ignores them.
  function syncButtonRow(row) {
    const type = row.querySelector("[data-button-type]").value;
    row.querySelectorAll("[data-button-show]").forEach((el) => {
      el.hidden = !el.dataset.buttonShow.split(" ").includes(type);
    });
  }

  function parameterNames(text) {
    const names = [];
    for (const match of text.matchAll(TOKEN)) {
      const name = match[1].trim();
      if (VALID.test(name) && !names.includes(name)) names.push(name);
    }
    return names;
  }

  function sampleRow(name) {
    const wrap = document.createElement("div");
    wrap.className = "tpl-example";
    wrap.dataset.example = name;
    const label = document.createElement("label");
    label.className = "form-label mb-1";
    const caption = document.createElement("span");
    const code = document.createElement("code");
    code.textContent = `{{${name}}}`;
    caption.append(pgettext("followed by a parameter", "Sample for") + " ", code);
    const input = document.createElement("input");
    input.className = "form-control";
    input.name = `example:${name}`;
    input.autocomplete = "off";
    input.value = removedSamples.get(name) || "";
    label.append(caption, input);
    wrap.append(label);
    return wrap;
  }

  function syncSamples(form) {
    const body = form.elements.namedItem("body");
    const box = form.querySelector("[data-example-rows]");
    if (!body || !box) return;
    const wanted = parameterNames(body.value);
    const rows = new Map([...box.querySelectorAll("[data-example]")].map((el) => [el.dataset.example, el]));
    const current = [...rows.keys()];
    if (current.join("\n") === wanted.join("\n")) return;
    rows.forEach((row, name) => {
      if (!wanted.includes(name)) {
        removedSamples.set(name, row.querySelector("input").value);
        row.remove();
      }
    });
    wanted.forEach((name) => box.append(rows.get(name) || sampleRow(name)));
  }

  // After a submit, each problem sits next to its field. The live checks know which fields still
  // have one: notes (and red borders) of fields fixed since go, and so does the summary at the
  // top once no error is left.
  function dropFixedProblems(form) {
    const live = document.getElementById("template-live");
    if (!live || live.dataset.problemFields === undefined) return;
    const current = new Set(JSON.parse(live.dataset.problemFields));
    form.querySelectorAll("[data-problem]").forEach((note) => {
      if (current.has(note.dataset.problem)) return;
      const box = note.parentElement;
      note.remove();
      if (!box.querySelector("[data-problem]")) {
        box.querySelectorAll(".is-invalid").forEach((control) => control.classList.remove("is-invalid"));
      }
    });
    if (live.dataset.errorCount === "0") {
      document.querySelectorAll("[data-testid=form-errors]").forEach((summary) => summary.remove());
    }
  }

  function changed(form) {
    form.dispatchEvent(new Event("tplchange", { bubbles: true }));
  }

  function init(form) {
    syncSections(form);
    form.querySelectorAll("[data-button-row]").forEach(syncButtonRow);
    syncSamples(form);

    // Capture phase: sections are enabled before htmx reads the form for the live preview.
    form.addEventListener(
      "change",
      (event) => {
        const target = event.target;
        if (target.matches("[data-button-type]")) syncButtonRow(target.closest("[data-button-row]"));
        if (target.name === "name") target.value = target.value.trim().toLowerCase().replace(/[\s-]+/g, "_");
        syncSections(form);
      },
      true,
    );
    // Leaving the field for the submit button fires "change"; no preview is needed once submitting.
    form.addEventListener("submit", () => {
      form.dataset.submitting = "1";
    });
    form.addEventListener("htmx:beforeRequest", (event) => {
      if (form.dataset.submitting) event.preventDefault();
    });
    document.addEventListener("htmx:afterSettle", () => dropFixedProblems(form));
    form.addEventListener("input", (event) => {
      if (event.target.name === "body") syncSamples(form);
    });
    form.addEventListener("click", (event) => {
      const add = event.target.closest("[data-add-button]");
      const remove = event.target.closest("[data-remove-button]");
      if (add) {
        event.preventDefault();
        const template = document.getElementById("button-row-template");
        const row = template.content.firstElementChild.cloneNode(true);
        form.querySelector("[data-button-rows]").append(row);
        syncButtonRow(row);
        row.querySelector("input[name=button_text]").focus();
        changed(form);
      } else if (remove) {
        event.preventDefault();
        remove.closest("[data-button-row]").remove();
        changed(form);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    document.querySelectorAll("form[data-template-form]").forEach(init);
  });
})();
