#include "server/web_page.h"

namespace dsv3::server {

namespace {
// Streams /v1/chat/completions with fetch + a ReadableStream SSE parser; keeps conversations in
// localStorage; the Stop button aborts the fetch (the server then cancels the request).
const char* const kPage = R"DSV3PAGE(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>dsv3 chat</title>
<style>
  :root { --bg:#f7f7f8; --panel:#fff; --line:#e3e3e8; --text:#1f2328; --muted:#6b7280; --accent:#4d6bfe; }
  * { box-sizing: border-box; }
  body { margin:0; font:15px/1.5 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--text); background:var(--bg);
         display:flex; height:100vh; }
  aside { width:270px; background:var(--panel); border-right:1px solid var(--line); padding:14px; overflow-y:auto;
          display:flex; flex-direction:column; gap:10px; }
  aside h1 { font-size:18px; margin:0 0 4px; }
  aside h2 { font-size:13px; text-transform:uppercase; letter-spacing:.05em; color:var(--muted); margin:12px 0 0; }
  label { display:flex; flex-direction:column; font-size:13px; color:var(--muted); gap:3px; }
  input, textarea, select { font:inherit; color:var(--text); border:1px solid var(--line); border-radius:8px; padding:6px 8px;
          background:#fff; }
  button { font:inherit; border:0; border-radius:8px; padding:8px 14px; cursor:pointer; background:var(--accent); color:#fff; }
  button.secondary { background:#eef0f6; color:var(--text); }
  button:disabled { opacity:.45; cursor:default; }
  #history { list-style:none; padding:0; margin:0; display:flex; flex-direction:column; gap:4px; }
  #history li { padding:6px 8px; border-radius:6px; cursor:pointer; font-size:13px; white-space:nowrap; overflow:hidden;
                text-overflow:ellipsis; }
  #history li:hover, #history li.active { background:#eef0f6; }
  main { flex:1; display:flex; flex-direction:column; min-width:0; }
  #messages { flex:1; overflow-y:auto; padding:24px max(16px, calc(50% - 380px)); display:flex; flex-direction:column; gap:14px; }
  .msg { padding:10px 14px; border-radius:12px; white-space:pre-wrap; word-wrap:break-word; max-width:100%; }
  .msg.user { background:var(--accent); color:#fff; align-self:flex-end; }
  .msg.assistant { background:var(--panel); border:1px solid var(--line); align-self:flex-start; }
  .msg.error { background:#fdecec; color:#a11; border:1px solid #f3c0c0; }
  .meta { font-size:12px; color:var(--muted); margin-top:4px; }
  form { display:flex; gap:8px; padding:12px max(16px, calc(50% - 380px)) 18px; border-top:1px solid var(--line); background:var(--panel); }
  form textarea { flex:1; resize:none; height:52px; }
  .empty { color:var(--muted); text-align:center; margin-top:20vh; }
</style>
</head>
<body>
<aside>
  <h1>dsv3 chat</h1>
  <div id="model" class="meta">model: …</div>
  <button id="new" class="secondary" type="button">New conversation</button>
  <h2>Conversations</h2>
  <ul id="history"></ul>
  <h2>Settings</h2>
  <label>System prompt<textarea id="system" rows="3" placeholder="optional"></textarea></label>
  <label>Temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0.7"></label>
  <label>Top p <input id="top_p" type="number" min="0.01" max="1" step="0.05" value="0.95"></label>
  <label>Max tokens <input id="max_tokens" type="number" min="1" step="1" value="512"></label>
  <label>Seed (empty: random) <input id="seed" type="number" step="1"></label>
  <label>Stop (comma separated) <input id="stop" type="text"></label>
  <label>API key <input id="api_key" type="password" placeholder="if the server needs one"></label>
</aside>
<main>
  <div id="messages"><div class="empty">Send a message to start.</div></div>
  <form id="form">
    <textarea id="input" placeholder="Message (Enter to send, Shift+Enter for a new line)"></textarea>
    <button id="send" type="submit">Send</button>
    <button id="stopbtn" class="secondary" type="button" disabled>Stop</button>
  </form>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const settings = ["system", "temperature", "top_p", "max_tokens", "seed", "stop", "api_key"];
let convs = JSON.parse(localStorage.getItem("dsv3.convs") || "[]");
let current = null;       // index into convs
let controller = null;    // AbortController of the running request

for (const k of settings) {
  const v = localStorage.getItem("dsv3.set." + k);
  if (v !== null) $(k).value = v;
  $(k).addEventListener("change", () => localStorage.setItem("dsv3.set." + k, $(k).value));
}
function save() { localStorage.setItem("dsv3.convs", JSON.stringify(convs)); }

function renderHistory() {
  const ul = $("history");
  ul.innerHTML = "";
  convs.forEach((c, i) => {
    const li = document.createElement("li");
    li.textContent = c.title || "(empty)";
    if (i === current) li.className = "active";
    li.onclick = () => { if (!controller) { current = i; renderAll(); } };
    ul.appendChild(li);
  });
}
function bubble(role, text) {
  const d = document.createElement("div");
  d.className = "msg " + role;
  d.textContent = text;
  $("messages").appendChild(d);
  $("messages").scrollTop = $("messages").scrollHeight;
  return d;
}
function renderAll() {
  $("messages").innerHTML = "";
  const c = convs[current];
  if (!c || c.messages.length === 0) $("messages").innerHTML = '<div class="empty">Send a message to start.</div>';
  else for (const m of c.messages) {
    const b = bubble(m.role, m.content);
    if (m.meta) { const d = document.createElement("div"); d.className = "meta"; d.textContent = m.meta; b.appendChild(d); }
  }
  renderHistory();
}
$("new").onclick = () => { if (!controller) { current = null; renderAll(); } };

async function send(text) {
  if (current === null) { convs.unshift({ title: text.slice(0, 40), messages: [] }); current = 0; }
  const conv = convs[current];
  conv.messages.push({ role: "user", content: text });
  save(); renderAll();
  const out = bubble("assistant", "");
  out.classList.add("streaming");
  const meta = document.createElement("div");
  meta.className = "meta";
  const messages = [];
  if ($("system").value.trim()) messages.push({ role: "system", content: $("system").value });
  for (const m of conv.messages) messages.push({ role: m.role, content: m.content });
  const body = { model: "dsv3", messages, stream: true, stream_options: { include_usage: true },
                 temperature: Number($("temperature").value), top_p: Number($("top_p").value),
                 max_tokens: parseInt($("max_tokens").value, 10) };
  if ($("seed").value !== "") body.seed = parseInt($("seed").value, 10);
  const stops = $("stop").value.split(",").map((s) => s.trim()).filter((s) => s);
  if (stops.length) body.stop = stops;
  const headers = { "Content-Type": "application/json" };
  if ($("api_key").value) headers.Authorization = "Bearer " + $("api_key").value;
  controller = new AbortController();
  $("send").disabled = true; $("stopbtn").disabled = false;
  let answer = "", finish = null, usage = null, frame = 0;
  // The answer is drawn once per frame, not per token: a fast model streams thousands of tokens a
  // second, and setting the text and scrolling per token laid the page out each time (quadratic
  // in the answer's length), which starved the page's frames.
  const paint = () => { frame = 0; out.textContent = answer; $("messages").scrollTop = $("messages").scrollHeight; };
  const t0 = performance.now();
  try {
    const res = await fetch("/v1/chat/completions", { method: "POST", headers, body: JSON.stringify(body),
                                                      signal: controller.signal });
    if (!res.ok) {
      let msg = res.status + " " + res.statusText;
      try { msg = (await res.json()).error.message; } catch (e) {}
      throw new Error(msg);
    }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += dec.decode(value, { stream: true });
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, k); buf = buf.slice(k + 2);
        for (const line of ev.split("\n")) {
          if (!line.startsWith("data: ")) continue;
          const data = line.slice(6);
          if (data === "[DONE]") continue;
          const j = JSON.parse(data);
          if (j.error) throw new Error(j.error.message);
          if (j.usage) usage = j.usage;
          for (const ch of j.choices || []) {
            if (ch.delta && ch.delta.content) answer += ch.delta.content;
            if (ch.finish_reason) finish = ch.finish_reason;
          }
          if (!frame) frame = requestAnimationFrame(paint);
        }
      }
    }
  } catch (e) {
    if (e.name === "AbortError") finish = "stopped";
    else { out.className = "msg error"; out.textContent = (answer ? answer + "\n\n" : "") + "Error: " + e.message; }
  }
  if (frame) cancelAnimationFrame(frame);  // no await since the catch: a frame cannot have run between
  if (!out.classList.contains("error")) paint();  // the last tokens, drawn now (frames pause in hidden tabs)
  out.classList.remove("streaming");
  const secs = (performance.now() - t0) / 1000;
  if (!out.classList.contains("error")) {
    let m = "finish: " + (finish || "?");
    if (usage) m += ` · ${usage.completion_tokens} tokens, ${(usage.completion_tokens / secs).toFixed(1)} tok/s · ` +
                    `prompt ${usage.prompt_tokens} (${usage.prompt_cache_hit_tokens} cached)`;
    conv.messages.push({ role: "assistant", content: answer, meta: m });
    meta.textContent = m;
    out.appendChild(meta);
  }
  save(); renderHistory();
  controller = null;
  $("send").disabled = false; $("stopbtn").disabled = true;
}

$("form").onsubmit = (e) => {
  e.preventDefault();
  const text = $("input").value;
  if (!text.trim() || controller) return;
  $("input").value = "";
  send(text);
};
$("input").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("form").requestSubmit(); }
});
$("stopbtn").onclick = () => { if (controller) controller.abort(); };
fetch("/v1/models", { headers: $("api_key").value ? { Authorization: "Bearer " + $("api_key").value } : {} })
  .then((r) => r.json()).then((j) => { $("model").textContent = "model: " + j.data[0].id + " · context " + j.data[0].max_model_len; })
  .catch(() => {});
renderAll();
</script>
</body>
</html>
)DSV3PAGE";
}  // namespace

const std::string& web_page() {
  static const std::string page(kPage);
  return page;
}

}  // namespace dsv3::server
