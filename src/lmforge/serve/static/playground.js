// lmforge playground: plain JavaScript over the server's public endpoints (no build step).
"use strict";
const $ = (id) => document.getElementById(id);
const status = (text, bad) => { const s = $("status"); s.textContent = text; s.className = bad ? "error" : ""; };
let chatHistory = [];
let chatAbort = null;
const contexts = {};  // model id -> context in tokens (0: no limit)

// A max_tokens default that leaves room for the prompt in a small model's context (the server answers
// 400 when prompt + max_tokens exceed it).
function defaultMax(id, want) {
  const c = contexts[id] || 0;
  return c ? Math.max(1, Math.min(want, Math.floor(c / 2))) : want;
}

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("apikey").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

async function errorText(resp) {
  try { const j = await resp.json(); return (j.error && j.error.message) || JSON.stringify(j); }
  catch (e) { return resp.status + " " + resp.statusText; }
}

async function post(path, body) {
  const resp = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!resp.ok) throw new Error(resp.status + ": " + await errorText(resp));
  return resp.json();
}

// Server-sent events from a POST: calls onData(obj) per `data:` line until `data: [DONE]`.
async function stream(path, body, onData, signal) {
  const resp = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
  if (!resp.ok) throw new Error(resp.status + ": " + await errorText(resp));
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, cut); buf = buf.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return;
        const obj = JSON.parse(data);
        if (obj.error) throw new Error(obj.error.message);
        onData(obj);
      }
    }
  }
}

function lines(id) { return $(id).value.split("\n").map((s) => s.trim()).filter((s) => s); }
function model(section) { return $(section + "-model").value; }

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role; div.textContent = text;
  $("chat-log").appendChild(div);
  return div;
}

async function sendChat(ev) {
  ev.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text || chatAbort) return;
  $("chat-input").value = "";
  chatHistory.push({ role: "user", content: text });
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  bubble.id = "chat-reply-" + chatHistory.length;
  chatAbort = new AbortController();
  $("chat-stop").disabled = false; $("chat-send").disabled = true;
  status("generating…");
  let reply = "", failed = false;
  const maxTokens = parseInt($("chat-max").value, 10);
  try {
    await stream("/v1/chat/completions", {
      model: model("chat"), messages: chatHistory, stream: true,
      temperature: parseFloat($("chat-temp").value) || 0,
      max_tokens: maxTokens > 0 ? maxTokens : undefined,  // blank: the server's default (what the context leaves)
    }, (chunk) => {
      for (const c of chunk.choices || []) {
        if (c.delta && c.delta.content) { reply += c.delta.content; bubble.textContent = reply; }
      }
    }, chatAbort.signal);
    status("done");
  } catch (e) {
    failed = e.name !== "AbortError";  // stopped: the partial reply stays in the conversation
    status(failed ? e.message : "stopped", failed);
  } finally {
    if (failed) {  // the turn did not happen: leave it out of the next request, show why in its bubble
      chatHistory.pop();
      bubble.classList.add("error"); bubble.textContent = reply || "(no reply)";
    } else {
      chatHistory.push({ role: "assistant", content: reply });
    }
    bubble.classList.add("done");
    chatAbort = null;
    $("chat-stop").disabled = true; $("chat-send").disabled = false;
  }
}

async function complete(ev) {
  ev.preventDefault();
  const out = $("complete-out"); out.textContent = "";
  status("generating…");
  try {
    await stream("/v1/completions", { model: model("complete"), prompt: $("complete-input").value,
      max_tokens: defaultMax(model("complete"), 64), stream: true }, (chunk) => {
      for (const c of chunk.choices || []) out.textContent += c.text || "";
    });
    status("done");
  } catch (e) { status(e.message, true); }
}

function showEntities(out, texts, results) {
  out.textContent = "";
  results.forEach((r, i) => {
    const p = document.createElement("p"); p.className = "tagged";
    const text = texts[i]; const chars = Array.from(text);
    // offsets are code points (Python str indices), so slice code points, not UTF-16 units
    let at = 0;
    for (const e of r.entities || []) {
      p.appendChild(document.createTextNode(chars.slice(at, e.start).join("")));
      const m = document.createElement("mark"); m.dataset.type = e.type;
      m.textContent = chars.slice(e.start, e.end).join("");
      const t = document.createElement("small"); t.textContent = e.type; m.appendChild(t);
      p.appendChild(m); at = e.end;
    }
    p.appendChild(document.createTextNode(chars.slice(at).join("")));
    out.appendChild(p);
  });
}

async function task(ev) {
  ev.preventDefault();
  const form = ev.target; const section = form.id.replace("-form", "");
  const out = $(section + "-out");
  const input = form.dataset.whole ? [$(section + "-input").value] : lines(section + "-input");
  status("working…");
  try {
    const j = await post(form.dataset.endpoint, { model: model(section), input });
    if (section === "ner") showEntities(out, input, j.results);
    else if (section === "classify") out.textContent = j.results.map((r, i) =>
      (r.label !== undefined ? r.label + " (" + r.score + ")" : (r.labels || []).join(", ") || "(no label)") + "\t" + input[i]).join("\n");
    else out.textContent = j.results.map((r) => r.prediction !== undefined ? r.prediction : JSON.stringify(r)).join("\n");
    status("done");
  } catch (e) { status(e.message, true); }
}

async function qa(ev) {
  ev.preventDefault();
  status("working…");
  try {
    const j = await post("/v1/qa", { model: model("qa"),
      input: { question: $("qa-question").value, context: $("qa-context").value } });
    $("qa-out").textContent = JSON.stringify(j.results[0], null, 1);
    status("done");
  } catch (e) { status(e.message, true); }
}

async function embed(ev) {
  ev.preventDefault();
  const input = lines("embed-input");
  status("working…");
  try {
    const j = await post("/v1/embeddings", { model: model("embed"), input });
    const vecs = j.data.map((d) => d.embedding);
    const dot = (a, b) => a.reduce((s, x, k) => s + x * b[k], 0);
    let text = vecs.length + " vectors of " + (vecs[0] || []).length + " dimensions";
    for (let a = 0; a < vecs.length; a++) for (let b = a + 1; b < vecs.length; b++)
      text += "\ncos(" + (a + 1) + ", " + (b + 1) + ") = " + dot(vecs[a], vecs[b]).toFixed(4);
    $("embed-out").textContent = text;
    status("done");
  } catch (e) { status(e.message, true); }
}

async function init() {
  try {
    const resp = await fetch("/playground/models");
    const j = await resp.json();
    $("keybox").hidden = !j.auth;
    for (const m of j.models) {
      contexts[m.id] = m.context || 0;
      if (!m.section) continue;
      $(m.section).hidden = false;
      const opt = document.createElement("option"); opt.value = m.id; opt.textContent = m.id;
      $(m.section + "-model").appendChild(opt);
    }
    $("chat-max").value = defaultMax(model("chat"), 128);
    status(j.models.length + " model(s): " + j.models.map((m) => m.id + " (" + m.kind + ")").join(", "));
  } catch (e) { status("could not list models: " + e.message, true); }
  $("chat-model").addEventListener("change", () => { $("chat-max").value = defaultMax(model("chat"), 128); });
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-stop").addEventListener("click", () => chatAbort && chatAbort.abort());
  $("chat-reset").addEventListener("click", () => { chatHistory = []; $("chat-log").textContent = ""; });
  $("complete-form").addEventListener("submit", complete);
  for (const s of ["classify", "ner", "translate", "summarize"]) $(s + "-form").addEventListener("submit", task);
  $("qa-form").addEventListener("submit", qa);
  $("embed-form").addEventListener("submit", embed);
}
init();
