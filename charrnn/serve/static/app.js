// The charrnn page: model text is only ever put on the page as text (textContent), never as markup.
"use strict";
const $ = (id) => document.getElementById(id);
const state = { chat: [] };

function headers() {
  const h = { "Content-Type": "application/json" };
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}
function showError(message) { $("error").textContent = message || ""; }
// One request per control at a time: a second press mid-stream would interleave two streams in
// one output, and a chat line sent mid-reply would go out without the reply in its history.
async function whileBusy(controls, work) {
  for (const control of controls) control.disabled = true;
  showError("");
  try { await work(); } catch (error) { showError(error.message); } finally {
    for (const control of controls) control.disabled = false;
  }
}
function number(id, fallback) {
  const v = $(id).value;
  return v === "" ? fallback : Number(v);
}

async function post(path, body) {
  const response = await fetch(path, { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) {
    let message = response.status + "";
    try { message = (await response.json()).error.message; } catch (e) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

// Server-sent events from a POST: call onData with each JSON event until [DONE].
async function events(response, onData) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") return;
      onData(JSON.parse(data));
    }
  }
}

async function loadModels() {
  try {
    const response = await fetch("/v1/models", { headers: headers() });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error.message);
    const select = $("model");
    select.textContent = "";
    for (const model of body.data) {
      const option = document.createElement("option");
      option.value = option.textContent = model.id;
      select.appendChild(option);
    }
    showError("");
    watchRun();
  } catch (error) { showError(error.message); }
}

for (const button of document.querySelectorAll("nav button")) {
  button.addEventListener("click", () => {
    for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b === button);
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.id === button.dataset.tab);
  });
}
$("key").addEventListener("change", loadModels);
$("model").addEventListener("change", () => { state.chat = []; $("chat-log").textContent = ""; watchRun(); });

$("write-go").addEventListener("click", async () => {
  const out = $("write-out");
  const prime = $("prime").value;
  out.textContent = prime;
  const body = {
    model: $("model").value, prompt: prime, stream: true, max_tokens: number("length", 300),
    temperature: number("temperature", 0.8), top_p: number("top-p", 1), seed: number("seed", null),
  };
  const topK = number("top-k", 0);
  await whileBusy([$("write-go")], async () => {
    // top-k is charrnn's own: the native endpoint takes it, the OpenAI one does not
    const response = topK
      ? await post("/api/generate", { model: body.model, prime, length: body.max_tokens, temperature: body.temperature,
          top_k: topK, top_p: body.top_p, seed: body.seed, stream: true })
      : await post("/v1/completions", body);
    await events(response, (data) => { out.textContent += data.choices[0].text || ""; });
  });
});

$("poem-go").addEventListener("click", async () => {
  const cards = $("poem-out");
  cards.textContent = "";
  const count = number("poems", 3);
  const pres = [];
  for (let i = 0; i < count; i++) { const pre = document.createElement("pre"); cards.appendChild(pre); pres.push(pre); }
  await whileBusy([$("poem-go")], async () => {
    const response = await post("/api/generate", {
      model: $("model").value, form: $("form").value, rhyme: $("rhyme").checked, tones: $("tones").checked,
      acrostic: $("acrostic").value || null, num_samples: count, seed: number("poem-seed", null), stream: true,
    });
    await events(response, (data) => { const c = data.choices[0]; pres[c.index].textContent += c.text || ""; });
  });
});

$("chat-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("chat-input");
  const text = input.value;
  if (!text) return;
  input.value = "";
  const log = $("chat-log");
  const you = document.createElement("p"); you.className = "you"; you.textContent = "you> " + text; log.appendChild(you);
  const bot = document.createElement("p"); bot.className = "bot"; bot.textContent = "bot> "; log.appendChild(bot);
  state.chat.push({ role: "user", content: text });
  let reply = "";
  await whileBusy([input, $("chat-form").querySelector("button")], async () => { try {
    const response = await post("/v1/chat/completions", { model: $("model").value, messages: state.chat, stream: true });
    await events(response, (data) => {
      const piece = data.choices[0].delta.content || "";
      reply += piece;
      bot.textContent += piece;
    });
    state.chat.push({ role: "assistant", content: reply });
  } catch (error) { state.chat.pop(); throw error; } });
  input.focus();
});

$("score-go").addEventListener("click", async () => {
  const out = $("score-out");
  out.textContent = "";
  await whileBusy([$("score-go")], async () => {
    const response = await post("/api/score", { model: $("model").value, text: $("score-text").value });
    const body = await response.json();
    $("score-summary").textContent = body.bits_per_char.toFixed(3) + " bits per character";
    for (const token of body.tokens) {
      const span = document.createElement("span");
      span.textContent = token.text;
      const share = Math.min(1, token.bits / 8);  // green = expected, red = surprising, clamped at 8 bits
      span.style.backgroundColor = `hsl(${Math.round(120 * (1 - share))}, 70%, 80%)`;
      span.title = token.bits.toFixed(2) + " bits; guesses: " +
        token.guesses.map(([text, p]) => JSON.stringify(text) + " " + (100 * p).toFixed(1) + "%").join(", ");
      out.appendChild(span);
    }
  });
});

let watching = null;
async function watchRun() {
  clearTimeout(watching);
  const name = $("model").value;
  if (!name) return;
  try {
    const response = await fetch(`/api/runs/${encodeURIComponent(name)}/metrics`, { headers: headers() });
    const body = await response.json();
    if (!response.ok) { $("run-status").textContent = body.error.message; return; }
    drawCurve(body.records);
    const last = body.records[body.records.length - 1];
    $("run-status").textContent = last ? `${name}: step ${last.step}, ${body.records.length} records` : `${name}: no records yet`;
  } catch (error) { $("run-status").textContent = error.message; }
  watching = setTimeout(watchRun, 3000);
}

function drawCurve(records) {
  const canvas = $("curve");
  const g = canvas.getContext("2d");
  g.clearRect(0, 0, canvas.width, canvas.height);
  const series = [
    { kind: "log", key: "train_loss", color: "#8ab" },
    { kind: "eval", key: "val_loss", color: "#d50" },
  ].map((s) => ({ ...s, points: records.filter((r) => r.kind === s.kind && r[s.key] != null).map((r) => [r.tokens, r[s.key]]) }));
  const all = series.flatMap((s) => s.points);
  if (!all.length) return;
  const xMax = Math.max(...all.map((p) => p[0])) || 1;
  const yMin = Math.min(...all.map((p) => p[1])), yMax = Math.max(...all.map((p) => p[1]));
  const x = (v) => 40 + (v / xMax) * (canvas.width - 60);
  const y = (v) => canvas.height - 30 - ((v - yMin) / (yMax - yMin || 1)) * (canvas.height - 50);
  g.fillStyle = "#444";
  g.fillText(`loss (nats/token) ${yMin.toFixed(3)} - ${yMax.toFixed(3)}`, 45, 15);
  g.fillText(`tokens seen: ${xMax.toLocaleString()}`, canvas.width - 160, canvas.height - 10);
  for (const s of series) {
    g.strokeStyle = s.color;
    g.beginPath();
    s.points.forEach(([px, py], i) => (i ? g.lineTo(x(px), y(py)) : g.moveTo(x(px), y(py))));
    g.stroke();
  }
}

loadModels();
