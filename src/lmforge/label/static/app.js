// lmforge label: one example at a time; every action is POSTed and committed before the reply.
// Offsets sent to the server are Python string offsets (code points); the browser's selection
// offsets are UTF-16 code units, so they are converted here (an emoji is 2 units, 1 code point).
"use strict";

const params = new URLSearchParams(location.search);
const S = { kind: null, labels: [], annotator: params.get("annotator") || null, ex: null,
            choice: null, chosen: new Set(), spans: [], active: 0, busy: false };
const $ = (id) => document.getElementById(id);

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" },
                                           body: JSON.stringify(body) };
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(data.error + (data.hint ? ` (${data.hint})` : ""));
  return data;
}

function status(msg, isError) {
  const el = $("status");
  el.textContent = msg;
  el.className = isError ? "error" : "";
}

const cps = (s) => Array.from(s);                      // code points
const toCodePoints = (text, u16) => cps(text.slice(0, u16)).length;

function show(data) {
  S.ex = data.example;
  S.annotator = data.annotator;
  const p = data.progress, n = p.done + p.skipped;
  $("count").textContent = `${n} / ${p.total}` + (p.skipped ? ` (${p.skipped} skipped)` : "");
  $("bar").firstElementChild.style.width = p.total ? `${(100 * n) / p.total}%` : "0";
  $("who").textContent = S.annotator;
  $("card").style.display = S.ex ? "" : "none";
  $("done").style.display = S.ex ? "none" : "block";
  if (!S.ex) return;
  const pred = S.ex.prediction, start = S.ex.current ?? (pred ? pred.value : null);
  S.choice = null; S.chosen = new Set(); S.spans = [];
  if (S.kind === "classification" && start !== null) S.choice = S.ex.labels.indexOf(start);
  if (S.kind === "multilabel" && start !== null) S.chosen = new Set(start.map((l) => S.ex.labels.indexOf(l)));
  if (S.kind === "ner" && start !== null) S.spans = start.map((s) => ({ start: s.start, end: s.end, label: s.label }));
  $("pred").textContent = pred ? `Model ${pred.model}: ${describe(pred.value)}` +
    (pred.score === null ? "" : ` (confidence ${Number(pred.score).toFixed(2)})`) : "";
  $("meta").textContent = `#${S.ex.id}`;
  render();
}

function describe(v) {
  if (S.kind === "ner") return v.length ? v.map((s) => `${s.text} [${s.label}]`).join(", ") : "no entities";
  return Array.isArray(v) ? (v.length ? v.join(", ") : "none") : v;
}

function render() {
  const labels = S.ex.labels, box = $("labels");
  box.textContent = "";
  labels.forEach((lab, i) => {
    const b = document.createElement("button");
    b.type = "button";
    b.dataset.index = i;
    const on = S.kind === "classification" ? S.choice === i : S.kind === "multilabel" ? S.chosen.has(i) : S.active === i;
    b.className = on ? "on" : "";
    if (i < 9) { const k = document.createElement("kbd"); k.textContent = i + 1; b.appendChild(k); }
    b.appendChild(document.createTextNode(lab));
    b.addEventListener("click", () => pick(i));
    box.appendChild(b);
  });
  renderText();
}

function renderText() {
  const el = $("text"), chars = cps(S.ex.text);
  el.textContent = "";
  if (S.kind !== "ner") { el.textContent = S.ex.text; return; }
  const cuts = new Set([0, chars.length]);
  S.spans.forEach((s) => { cuts.add(s.start); cuts.add(s.end); });
  const bounds = [...cuts].sort((a, b) => a - b);
  for (let k = 0; k + 1 < bounds.length; k++) {
    const a = bounds[k], z = bounds[k + 1], piece = chars.slice(a, z).join("");
    const idx = S.spans.findIndex((s) => s.start <= a && z <= s.end);
    if (idx < 0) { el.appendChild(document.createTextNode(piece)); continue; }
    const m = document.createElement("mark");
    m.textContent = piece;
    m.dataset.span = idx;
    if (z === S.spans[idx].end) m.dataset.label = S.spans[idx].label;
    m.title = "click to remove";
    m.addEventListener("click", (e) => { if (window.getSelection().isCollapsed) { removeSpan(idx); e.stopPropagation(); } });
    el.appendChild(m);
  }
}

function removeSpan(i) { S.spans.splice(i, 1); renderText(); status("span removed (not saved until you submit)"); }

function pick(i) {
  if (!S.ex || i >= S.ex.labels.length) return;
  if (S.kind === "classification") S.choice = i;
  else if (S.kind === "multilabel") { if (S.chosen.has(i)) S.chosen.delete(i); else S.chosen.add(i); }
  else S.active = i;
  render();
}

// A mouse selection inside the text becomes a span with the active label.
function offsetIn(root, node, offset) {
  const r = document.createRange();
  r.setStart(root, 0);
  r.setEnd(node, offset);
  return r.toString().length;                          // UTF-16 units from the start of the text
}

function onSelect() {
  if (S.kind !== "ner" || !S.ex) return;
  const sel = window.getSelection(), root = $("text");
  if (sel.isCollapsed || !sel.rangeCount) return;
  const range = sel.getRangeAt(0);
  if (!root.contains(range.startContainer) || !root.contains(range.endContainer)) return;
  const text = S.ex.text, chars = cps(text);
  let a = toCodePoints(text, offsetIn(root, range.startContainer, range.startOffset));
  let z = toCodePoints(text, offsetIn(root, range.endContainer, range.endOffset));
  while (a < z && /\s/u.test(chars[a])) a++;
  while (z > a && /\s/u.test(chars[z - 1])) z--;
  sel.removeAllRanges();
  if (a >= z) return;
  if (S.spans.some((s) => s.start < z && a < s.end)) { status("that overlaps a span: click the span to remove it first", true); return; }
  const label = S.ex.labels[S.active];
  S.spans.push({ start: a, end: z, label });
  S.spans.sort((x, y) => x.start - y.start);
  renderText();
  status(`span "${chars.slice(a, z).join("")}" → ${label} (Enter to submit)`);
}

function value() {
  const labels = S.ex.labels;
  if (S.kind === "classification") return S.choice === null || S.choice < 0 ? null : labels[S.choice];
  if (S.kind === "multilabel") return [...S.chosen].filter((i) => i >= 0).sort((a, b) => a - b).map((i) => labels[i]);
  return S.spans.map((s) => ({ start: s.start, end: s.end, label: s.label }));
}

async function act(fn) {
  if (S.busy) return;
  S.busy = true;
  try { await fn(); } catch (e) { status(e.message, true); } finally { S.busy = false; }
}

const submit = () => act(async () => {
  if (!S.ex) return;
  const v = value();
  if (v === null) { status("choose a label first (keys 1-9)", true); return; }
  const data = await api("/api/annotate", { id: S.ex.id, value: v, annotator: S.annotator });
  status(`saved #${data.saved.id}: ${describe(data.saved.value)}`);
  show(data);
});
const skip = () => act(async () => {
  if (!S.ex) return;
  const data = await api("/api/skip", { id: S.ex.id, annotator: S.annotator });
  status(`skipped #${data.skipped}`);
  show(data);
});
const undo = () => act(async () => {
  const data = await api("/api/undo", { annotator: S.annotator });
  status(`undone: #${data.undone}`);
  show(data);
});

document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;
  if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); return; }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (/^[1-9]$/.test(e.key)) { e.preventDefault(); pick(Number(e.key) - 1); }
  else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); submit(); }
  else if (e.key === "s" || e.key === "S") { e.preventDefault(); skip(); }
  else if (e.key === "u" || e.key === "U") { e.preventDefault(); undo(); }
  else if (e.key === "Escape") { window.getSelection().removeAllRanges(); }
});
document.addEventListener("mouseup", () => setTimeout(onSelect, 0));
// buttons never take the focus, so Enter and space always mean "submit", never "press the focused button"
document.addEventListener("mousedown", (e) => { if (e.target.closest("button")) e.preventDefault(); });
$("submit").addEventListener("click", submit);
$("skip").addEventListener("click", skip);
$("undo").addEventListener("click", undo);
$("undo2").addEventListener("click", undo);

(async () => {
  try {
    const q = S.annotator ? `?annotator=${encodeURIComponent(S.annotator)}` : "";
    const schema = await api(`/api/schema${q}`);
    S.kind = schema.kind; S.labels = schema.labels; S.annotator = schema.annotator;
    $("project").textContent = `${schema.project} · ${schema.kind}`;
    $("help").textContent = (S.kind === "ner" ? "1-9 choose the label for new spans; select text with the mouse to " +
      "mark a span, click a span to remove it. " : S.kind === "multilabel" ? "1-9 toggle labels. " : "1-9 choose a label. ") +
      "Enter or space submits, s skips, u or Ctrl+Z undoes.";
    show(await api(`/api/next${q}`));
    document.body.dataset.ready = "1";
  } catch (e) { status(e.message, true); }
})();
