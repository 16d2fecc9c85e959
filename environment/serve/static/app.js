// Salon's web page: browse a run's characters and episodes, see the graph, chat with streamed
// replies through the OpenAI-compatible API (/v1/chat/completions, stream: true).
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { characters: [], current: null, histories: {}, key: sessionStorage.getItem("salon-key") || "" };

function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    $("#key-box").hidden = false;
    throw new Error("this server needs an API key: enter it above");
  }
  return response;
}

async function json(path) {
  const response = await api(path);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

async function start() {
  $("#api-key").value = state.key;
  $("#api-key").addEventListener("change", () => {
    state.key = $("#api-key").value.trim();
    sessionStorage.setItem("salon-key", state.key);
    load();
  });
  $("#filter").addEventListener("input", showCharacters);
  document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#chat-form").addEventListener("submit", (event) => { event.preventDefault(); send(); });
  $("#message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
  });
  await load();
}

async function load() {
  try {
    const info = await json("/api/info");
    $("#source").textContent = info.source === "run" ? `run ${info.run}: ${info.characters} characters`
      : `character bank: ${info.characters} characters`;
    $("#goal").replaceChildren(element("option", { value: "" }, "no goal"));
    for (const [code, goal] of Object.entries(info.goals)) $("#goal").append(element("option", { value: code }, goal));
    $("#graph-note").textContent = info.graph ? "" : "No interaction graph: serve a run folder (run=<folder>).";
    state.characters = await json("/api/characters");
    showCharacters();
    if (info.graph) loadGraph();
    loadEpisodes();
  } catch (error) {
    $("#source").textContent = error.message;
  }
}

function showCharacters() {
  const wanted = $("#filter").value.toLowerCase();
  const list = $("#characters");
  list.replaceChildren();
  for (const c of state.characters) {
    const label = `${c.name} ${c.id} ${c.mbti || ""} ${c.job || ""}`.toLowerCase();
    if (wanted && !label.includes(wanted)) continue;
    const item = element("li", { "data-character-id": c.id }, c.name);
    item.append(element("small", {}, [c.mbti, c.job, c.episodes ? `${c.episodes} episodes` : ""].filter(Boolean).join(" · ")));
    if (state.current && state.current.id === c.id) item.classList.add("active");
    item.addEventListener("click", () => openCharacter(c));
    list.append(item);
  }
}

function showTab(name) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("active", b.dataset.tab === name));
  document.querySelectorAll(".tab").forEach((t) => { t.hidden = t.id !== `tab-${name}`; });
}

async function openCharacter(character) {
  state.current = character;
  state.histories[character.id] = state.histories[character.id] || [];
  showCharacters();
  $("#chat-title").textContent = `Chat with ${character.name}`;
  $("#message").disabled = false;
  $("#send").disabled = false;
  renderHistory();
  showTab("chat");
  $("#message").focus();
  const profile = await json(`/api/characters/${encodeURIComponent(character.id)}`);
  renderProfile(profile, await json(`/api/memories/${encodeURIComponent(character.id)}`));
  loadEpisodes(character.id);
}

function renderProfile(profile, stored) {
  const tab = $("#tab-profile");
  tab.replaceChildren(element("h2", {}, profile.name));
  const facts = element("ul");
  for (const line of [...profile.profile, ...profile.facts]) facts.append(element("li", {}, line));
  tab.append(facts);
  if (stored.length) {
    tab.append(element("h3", {}, "Memories (newest first)"));
    const memories = element("ul");
    for (const m of stored) memories.append(element("li", {}, `[${m.kind}] ${m.text}`));
    tab.append(memories);
  }
}

function renderHistory() {
  const box = $("#messages");
  box.replaceChildren();
  for (const message of state.histories[state.current.id]) {
    box.append(element("div", { class: `msg ${message.role === "user" ? "user" : "character"}` }, message.content));
  }
}

async function send() {
  const text = $("#message").value.trim();
  if (!text || !state.current || $("#send").disabled) return;
  const character = state.current;
  const history = state.histories[character.id];
  const goal = $("#custom-goal").value.trim() || $("#goal").value;
  $("#chat-error").textContent = "";
  $("#message").value = "";
  $("#send").disabled = true;
  const box = $("#messages");
  box.append(element("div", { class: "msg user" }, text));
  const bubble = element("div", { class: "msg character streaming" });
  box.append(bubble);
  const messages = [...history, { role: "user", content: text }];
  try {
    const extra = await streamReply({ model: `character/${character.id}`, messages, stream: true, goal: goal || null },
      (delta) => {
        bubble.textContent += delta;
        bubble.dataset.chunks = String(Number(bubble.dataset.chunks || 0) + 1);
        box.scrollTop = box.scrollHeight;
      });
    if (extra && extra.replaced) bubble.textContent = extra.text;  // a retry replaced the streamed text
    bubble.classList.remove("streaming");
    bubble.dataset.done = "1";
    history.push({ role: "user", content: text }, { role: "assistant", content: bubble.textContent });
    showRecalled(bubble, extra);
    $("#custom-goal").value = "";
    $("#goal").value = "";
  } catch (error) {
    bubble.remove();
    $("#chat-error").textContent = error.message;
  } finally {
    $("#send").disabled = false;
  }
}

function showRecalled(bubble, extra) {
  if (!extra) return;
  if (extra.goal) bubble.prepend(element("span", { class: "goal" }, `goal: ${extra.goal}`));
  if (!extra.memories || !extra.memories.length) return;
  const details = element("details", { class: "recalled" });
  details.append(element("summary", {}, `recalled ${extra.memories.length} memories`));
  for (const m of extra.memories) details.append(element("div", {}, `[${m.kind}] ${m.text}`));
  bubble.after(details);
}

// Reads OpenAI's server-sent events: `data: {chunk}` blocks, ending with `data: [DONE]`.
async function streamReply(body, onDelta) {
  const response = await api("/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) {
    const failure = await response.json();
    throw new Error(failure.error ? failure.error.message : response.statusText);
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let extra = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      for (const line of block.split(/\r?\n/)) {
        if (!line.startsWith("data:")) continue;
        const data = line.slice(5).trim();
        if (data === "[DONE]") return extra;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        if (chunk.salon && chunk.salon.rejected) throw new Error(chunk.salon.rejected);  // nothing made up
        if (chunk.salon) extra = chunk.salon;
        const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
        if (delta && delta.content) onDelta(delta.content);
      }
    }
  }
  return extra;
}

async function loadEpisodes(characterId) {
  const query = characterId ? `?character=${encodeURIComponent(characterId)}` : "";
  const rows = $("#episode-list tbody");
  rows.replaceChildren();
  for (const e of await json(`/api/episodes${query}`)) {
    const row = element("tr", { "data-episode-id": e.id });
    for (const cell of [e.id, e.round, e.participants.join(" & "), e.turns, e.overall ?? "–"]) {
      row.append(element("td", {}, String(cell)));
    }
    row.addEventListener("click", () => showEpisode(e.id));
    rows.append(row);
  }
}

async function showEpisode(id) {
  const episode = await json(`/api/episodes/${encodeURIComponent(id)}`);
  const box = $("#episode");
  box.replaceChildren(element("h3", {}, `${episode.id}: ${episode.participants.join(" & ")}`));
  if (episode.scene) box.append(element("p", {}, `${episode.scene.location}. ${episode.scene.status}`));
  for (const turn of episode.turns) {
    const line = element("div", { class: "turn" });
    line.append(element("b", {}, `${turn.speaker}: `), document.createTextNode(turn.failed ? `(failed: ${turn.error})` : turn.text));
    if (turn.goal) line.append(element("em", {}, ` [goal: ${turn.goal}]`));
    box.append(line);
  }
  if (episode.scores) {
    const table = element("table");
    for (const [name, value] of Object.entries(episode.scores)) {
      const row = element("tr");
      row.append(element("td", {}, name), element("td", {}, value === null ? "n/a" : value.toFixed(2)),
        element("td", {}, (episode.score_reasons || {})[name] || ""));
      table.append(row);
    }
    box.append(element("h4", {}, "Scores (1-5)"), table);
  }
}

async function loadGraph() {
  const response = await api("/api/graph.png");
  if (response.ok) $("#graph").src = URL.createObjectURL(await response.blob());
}

start();
