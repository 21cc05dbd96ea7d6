// The labelling page: one item at a time, keyboard first.
// Keys: digits choose labels (1-9, 0 = tenth), Enter submits, S skips, F flags,
// ArrowLeft/ArrowRight move between items. Span projects: select words with the mouse,
// or move a word cursor with "," "." and extend it with "<" ">", then press a digit;
// Backspace removes the span under the cursor.
// Answers are saved through the JSON API with the version last seen; a 409 (someone
// saved in between) reloads the item and says so, nothing is overwritten.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("annotate-data").textContent);
  const items = data.items;
  const kind = data.kind;
  const el = (id) => document.getElementById(id);
  const buttons = Array.from(document.querySelectorAll(".label-button"));
  let index = Math.max(0, items.findIndex((t) => !t.answer || t.answer.status !== "labelled"));
  let chosen = new Set();     // single / multi
  let spans = [];             // [[start, end, label]]
  let cursor = [0, 0];        // span mode: first and last token of the keyboard selection
  let shownAt = Date.now();
  let busy = false;

  function tokens(text) {
    const out = [];
    const re = /\S+/g;
    let m;
    while ((m = re.exec(text)) !== null) out.push([m.index, m.index + m[0].length]);
    return out;
  }

  function say(text, isError) {
    const box = el("message");
    box.hidden = !text;
    box.textContent = text || "";
    box.classList.toggle("annotate-error", Boolean(isError));
  }

  function progress() {
    const done = items.filter((t) => t.answer && t.answer.status === "labelled").length;
    el("progress").textContent = done + " of " + items.length + " labelled";
    el("progress-bar").style.width = (items.length ? (100 * done) / items.length : 0) + "%";
  }

  function renderText(task) {
    const box = el("item-text");
    box.textContent = "";
    if (kind !== "spans") {
      box.textContent = task.text;
      return;
    }
    const toks = tokens(task.text);
    let last = 0;
    toks.forEach(([start, end], i) => {
      if (start > last) box.appendChild(document.createTextNode(task.text.slice(last, start)));
      const w = document.createElement("span");
      w.className = "token";
      w.dataset.start = start;
      w.dataset.end = end;
      w.textContent = task.text.slice(start, end);
      const span = spans.find((s) => s[0] < end && s[1] > start);
      if (span) {
        w.classList.add("in-span");
        w.dataset.label = span[2];
        w.title = span[2];
      }
      if (i >= Math.min(...cursor) && i <= Math.max(...cursor)) w.classList.add("cursor");
      box.appendChild(w);
      last = end;
    });
    if (last < task.text.length) box.appendChild(document.createTextNode(task.text.slice(last)));
  }

  function render() {
    const task = items[index];
    el("position").textContent = "Item " + (index + 1) + " of " + items.length + " (batch " + task.batch + ")";
    const pre = task.prelabel;
    el("prelabel").textContent = pre
      ? "Model suggests: " + pre.label + " (" + Math.round(pre.confidence * 100) + "% confidence)" +
        (pre.in_schema ? "" : " — not a label of this schema")
      : "";
    const a = task.answer;
    el("answer-state").textContent = a
      ? "Your answer: " + (a.status === "labelled" ? describe(a.value) : a.status) + (a.flagged ? " · flagged" : "") +
        " (version " + a.version + ")"
      : "Not answered yet.";
    buttons.forEach((b) => b.setAttribute("aria-pressed", chosen.has(b.dataset.label) ? "true" : "false"));
    renderText(task);
    progress();
  }

  function describe(value) {
    if (value.label !== undefined) return value.label;
    if (value.labels !== undefined) return value.labels.join(", ") || "(none)";
    return value.spans.map((s) => s[2] + " “" + items[index].text.slice(s[0], s[1]) + "”").join(", ") || "(no spans)";
  }

  function show(i) {
    index = Math.max(0, Math.min(items.length - 1, i));
    const a = items[index].answer;
    chosen = new Set();
    spans = [];
    if (a && a.status === "labelled") {
      if (a.value.label !== undefined) chosen.add(a.value.label);
      if (a.value.labels !== undefined) a.value.labels.forEach((l) => chosen.add(l));
      if (a.value.spans !== undefined) spans = a.value.spans.map((s) => s.slice());
    }
    cursor = [0, 0];
    shownAt = Date.now();
    say("");
    render();
  }

  function choose(label) {
    if (kind === "single") {
      chosen = new Set([label]);
    } else if (kind === "multi") {
      if (chosen.has(label)) chosen.delete(label); else chosen.add(label);
    } else {
      addSpan(label);
    }
    render();
  }

  function selectionOffsets() {
    const sel = window.getSelection();
    if (!sel || sel.isCollapsed) return null;
    const words = Array.from(el("item-text").querySelectorAll(".token")).filter((w) => sel.containsNode(w, true));
    if (!words.length) return null;
    sel.removeAllRanges();
    return [Number(words[0].dataset.start), Number(words[words.length - 1].dataset.end)];
  }

  function addSpan(label) {
    const toks = tokens(items[index].text);
    if (!toks.length) return;
    let range = selectionOffsets();
    if (!range) range = [toks[Math.min(...cursor)][0], toks[Math.max(...cursor)][1]];
    spans = spans.filter((s) => s[1] <= range[0] || s[0] >= range[1]);
    spans.push([range[0], range[1], label]);
    spans.sort((x, y) => x[0] - y[0]);
  }

  function moveCursor(step, extend) {
    const n = tokens(items[index].text).length;
    if (!n) return;
    const end = Math.max(0, Math.min(n - 1, cursor[1] + step));
    cursor = extend ? [cursor[0], end] : [end, end];
    render();
  }

  function removeSpanAtCursor() {
    const toks = tokens(items[index].text);
    if (!toks.length) return;
    const [start, end] = toks[cursor[1]];
    spans = spans.filter((s) => !(s[0] < end && s[1] > start));
    render();
  }

  function currentValue() {
    if (kind === "single") return chosen.size ? { label: Array.from(chosen)[0] } : null;
    if (kind === "multi") return { labels: Array.from(chosen) };
    return { spans: spans };
  }

  function csrfToken() {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  async function save(body, advance) {
    if (busy) return;
    const task = items[index];
    busy = true;
    body.expected_version = task.answer ? task.answer.version : 0;
    body.seconds = (Date.now() - shownAt) / 1000;
    try {
      const res = await fetch("/api/annotation/projects/" + data.project_id + "/items/" + task.item_id + "/answer", {
        method: "PUT",
        // The session's CSRF token (base.html's <meta>): api.csrf refuses a cookie-borne write without it.
        headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrfToken() },
        credentials: "same-origin", body: JSON.stringify(body),
      });
      const answer = await res.json();
      if (!res.ok) {
        if (res.status === 409) await reload(task);
        say((answer.detail || "Not saved.") + (answer.hint ? " " + answer.hint : ""), true);
        render();
        return;
      }
      task.answer = answer;
      if (advance && index < items.length - 1) {
        show(index + 1);
      } else {
        say(body.skip ? "Skipped." : body.flag && !body.value ? "Flagged for the data steward." : "Saved.");
        render();
      }
    } catch (err) {
      say("Not saved: the server could not be reached (" + err + ").", true);
    } finally {
      busy = false;
    }
  }

  async function reload(task) {
    const res = await fetch("/api/annotation/projects/" + data.project_id + "/items/" + task.item_id,
      { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (res.ok) task.answer = (await res.json()).answer;
  }

  function submit() {
    const value = currentValue();
    if (!value) {
      say("Choose a label first (its digit key, or click it).", true);
      return;
    }
    const task = items[index];
    save({ value: value, flag: Boolean(task.answer && task.answer.flagged) }, true);
  }

  function flag() {
    const task = items[index];
    const value = currentValue();
    const keep = task.answer && task.answer.status === "labelled" ? task.answer.value : null;
    save({ flag: !(task.answer && task.answer.flagged), value: value || keep }, false);
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.tagName === "SELECT")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    const at = data.keys.indexOf(key);
    let handled = true;
    if (at >= 0 && at < data.labels.length) choose(data.labels[at]);
    else if (key === "Enter") submit();
    else if (key === "s" || key === "S") save({ skip: true }, true);
    else if (key === "f" || key === "F") flag();
    else if (key === "ArrowRight") show(index + 1);
    else if (key === "ArrowLeft") show(index - 1);
    else if (kind === "spans" && key === ".") moveCursor(1, false);
    else if (kind === "spans" && key === ",") moveCursor(-1, false);
    else if (kind === "spans" && key === ">") moveCursor(1, true);
    else if (kind === "spans" && key === "<") moveCursor(-1, true);
    else if (kind === "spans" && (key === "Backspace" || key === "Delete")) removeSpanAtCursor();
    else handled = false;
    if (handled) event.preventDefault();
  });
  buttons.forEach((b) => b.addEventListener("click", () => choose(b.dataset.label)));
  el("submit").addEventListener("click", submit);
  el("skip").addEventListener("click", () => save({ skip: true }, true));
  el("flag").addEventListener("click", flag);
  el("prev").addEventListener("click", () => show(index - 1));
  el("next").addEventListener("click", () => show(index + 1));
  show(index < 0 ? 0 : index);
})();
