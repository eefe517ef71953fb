// prefloop annotation page: plain JavaScript, no external assets (common.js, markdown.js first).
// Text from the server is never parsed as HTML: markdown.js builds it into DOM nodes with
// textContent, and the raw view sets it as textContent.
"use strict";

const state = {
  token: sessionStorage.getItem("prefloop-token") || "", project: null, current: null, ranking: [], raw: false,
};
const call = (method, path, body) => apiCall(state.token, method, path, body);

function say(message) { $("status").textContent = message; }

async function signIn() {
  state.token = $("token").value.trim() || state.token;
  try {
    const projects = await call("GET", "/projects");
    sessionStorage.setItem("prefloop-token", state.token);
    showSignedIn(true);
    const list = $("projects");
    list.replaceChildren();
    for (const project of projects) {
      const button = el("button", { "data-project": project.id }, `${project.name} (${project.task})`);
      button.addEventListener("click", () => open(project));
      const entry = el("li");
      entry.append(button);
      list.append(entry);
    }
    say(projects.length ? "Choose a project." : "You are not assigned to any project yet.");
  } catch (error) { showSignedIn(false); say("Sign-in failed: " + error.message); }
}

function showSignedIn(signedIn) {
  $("signin-form").hidden = signedIn;
  $("signout").hidden = !signedIn;
  $("token").value = "";
}

function signOut() {
  sessionStorage.removeItem("prefloop-token");
  Object.assign(state, { token: "", project: null, current: null, ranking: [] });
  showSignedIn(false);
  $("projects").replaceChildren();
  $("project-name").textContent = $("progress").textContent = "";
  $("task-view").hidden = true;
  $("login-view").hidden = false;
  say("Signed out.");
}

async function open(project) {
  state.project = project;
  $("project-name").textContent = project.name;
  $("login-view").hidden = true;
  $("task-view").hidden = false;
  await next();
}

async function showProgress() {
  const p = await call("GET", `/projects/${state.project.id}/progress`);
  const total = p.submitted + p.skipped + p.open + p.available;
  $("progress").textContent = `${p.submitted} done · ${p.available + p.open} to go`;
  $("progress-bar").max = Math.max(total, 1);
  $("progress-bar").value = p.submitted + p.skipped;
}

async function next() {
  try {
    state.current = await call("POST", `/projects/${state.project.id}/next`);
  } catch (error) { say("Could not load an item: " + error.message); return; }
  await showProgress();
  if (!state.current) {
    $("task-view").hidden = true;
    say("All done: nothing left to judge in this project. Thank you!");
    return;
  }
  say("");
  render(state.current);
}

// Markdown, or the text as it was sent when the raw view is on.
function show(box, text) {
  box.classList.toggle("raw", state.raw);
  if (state.raw) box.textContent = text;
  else box.replaceChildren(PrefloopMarkdown.render(PrefloopMarkdown.parse(text)));
}

// A text prompt, or a conversation as one block per turn under its role.
function showPrompt(box, prompt) {
  if (typeof prompt === "string") { show(box, prompt); return; }
  box.classList.remove("raw");
  box.replaceChildren();
  for (const turn of prompt) {
    const content = el("div", { class: "turn-text" });
    const entry = el("div", { class: "turn", "data-role": turn.role });
    entry.append(el("div", { class: "role" }, turn.role), content);
    show(content, turn.content);
    box.append(entry);
  }
}

function showTexts(item) {
  show($("guideline"), item.guideline || "(no guideline)");
  showPrompt($("prompt"), item.prompt);
  for (const response of item.responses) show($(`resp-${response.position}`).querySelector(".text"), response.text);
  $("raw-toggle").textContent = state.raw ? "Show formatted" : "Show raw text";
  $("raw-toggle").setAttribute("aria-pressed", String(state.raw));
}

function toggleRaw() {
  state.raw = !state.raw;
  if (state.current) showTexts(state.current);
}

function render(item) {
  state.ranking = [];
  const columns = $("responses");
  columns.replaceChildren();
  for (const response of item.responses) {
    const box = el("div", { class: "response", id: `resp-${response.position}` });
    const title = item.task === "pairwise" ? (response.position === 0 ? "Left" : "Right") : `Response ${response.position + 1}`;
    box.append(el("h3", {}, title), el("div", { class: "text" }));
    columns.append(box);
  }
  showTexts(item);
  const controls = $("controls");
  controls.replaceChildren();
  ({ pairwise: pairwiseControls, ranking: rankingControls, rating: ratingControls, critique: critiqueControls })[item.task](item, controls);
  controls.append(button("btn-skip", "Skip", skip));
}

function button(id, label, action) {
  const b = el("button", { id, type: "button" }, label);
  b.addEventListener("click", action);
  return b;
}

async function submit(label) {
  const item = state.current;
  if (!item) return;
  state.current = null; // ignore repeated keys while this answer is on its way
  try {
    await call("POST", `/assignments/${item.assignment_id}/submit`, label);
  } catch (error) { state.current = item; say("Not saved: " + error.message); return; }
  await next();
}

async function skip() {
  const item = state.current;
  if (!item) return;
  state.current = null;
  await call("POST", `/assignments/${item.assignment_id}/skip`);
  await next();
}

function pairwiseControls(_item, controls) {
  controls.append(
    button("btn-left", "◀ Left is better", () => submit({ choice: "left" })),
    button("btn-tie", "Tie", () => submit({ choice: "tie" })),
    button("btn-right", "Right is better ▶", () => submit({ choice: "right" })),
    button("btn-both-bad", "Both bad", () => submit({ choice: "both_bad" })),
  );
  $("keys").textContent = "Keys: ← or 1 = left, → or 2 = right, ↓ or T = tie, B = both bad, S = skip, R = raw text.";
}

function rankingControls(item, controls) {
  for (const response of item.responses) {
    const box = $(`resp-${response.position}`);
    box.querySelector("h3").append(" ", el("span", { class: "rank-badge" }));
    box.addEventListener("click", () => pickRank(response.position));
  }
  controls.append(
    button("btn-reset", "Reset ranking", () => { state.ranking = []; showRanks(); }),
    button("btn-submit", "Submit ranking", () => {
      if (state.ranking.length === item.responses.length) submit({ ranking: state.ranking });
      else say("Rank every response first (click them best to worst, or press their numbers).");
    }),
  );
  $("keys").textContent = "Click or press 1..9 on responses from best to worst, Enter submits, S skips, R shows the raw text.";
}

function pickRank(position) {
  if (!state.ranking.includes(position)) state.ranking.push(position);
  showRanks();
}

function showRanks() {
  for (const response of state.current.responses) {
    const rank = state.ranking.indexOf(response.position);
    const box = $(`resp-${response.position}`);
    box.classList.toggle("picked", rank >= 0);
    box.querySelector(".rank-badge").textContent = rank >= 0 ? `#${rank + 1}` : "";
  }
}

function ratingControls(item, controls) {
  for (const response of item.responses) {
    const box = $(`resp-${response.position}`);
    for (const aspect of item.aspects) {
      const select = el("select", { "data-aspect": aspect, "data-position": response.position, "aria-label": aspect });
      select.append(el("option", { value: "" }, `${aspect}…`));
      for (let s = item.scale_min; s <= item.scale_max; s++) select.append(el("option", { value: s }, String(s)));
      box.append(select);
    }
  }
  controls.append(button("btn-submit", "Submit ratings", () => {
    const ratings = {};
    for (const aspect of item.aspects) {
      ratings[aspect] = item.responses.map((r) => Number(document.querySelector(
        `select[data-aspect="${CSS.escape(aspect)}"][data-position="${r.position}"]`).value || NaN));
    }
    if (Object.values(ratings).flat().some(Number.isNaN)) { say("Rate every aspect of every response."); return; }
    submit({ ratings });
  }));
  $("keys").textContent = "Enter submits, S skips, R shows the raw text.";
}

function critiqueControls(item, controls) {
  const target = el("select", { id: "critique-target", "aria-label": "response to critique" });
  for (const r of item.responses) target.append(el("option", { value: r.position }, `Response ${r.position + 1}`));
  const critique = el("textarea", { id: "critique-text", placeholder: "What is wrong or missing? (required)",
    "aria-describedby": "critique-error" });
  const problem = el("p", { id: "critique-error", class: "field-error", role: "alert" });
  problem.hidden = true;
  const showProblem = (message) => {
    problem.textContent = message;
    problem.hidden = !message;
    critique.setAttribute("aria-invalid", message ? "true" : "false");
  };
  const revision = el("textarea", { id: "critique-revision", placeholder: "Corrected response (optional)" });
  const draft = item.draft || {};
  if (draft.target !== undefined && draft.target !== null) target.value = String(draft.target);
  critique.value = draft.critique || "";
  revision.value = draft.revision || "";
  const label = () => ({ target: Number(target.value), critique: critique.value || null, revision: revision.value || null });
  let timer = null;
  const saveDraft = () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      if (state.current !== item) return;
      try {
        await call("PUT", `/assignments/${item.assignment_id}/draft`, label());
        say("Draft saved.");
      } catch (error) { say("Draft not saved: " + error.message); }
    }, 600);
  };
  for (const field of [target, critique, revision]) field.addEventListener("input", saveDraft);
  critique.addEventListener("input", () => { if (critique.value) showProblem(""); });
  controls.append(target, critique, problem, revision, button("btn-submit", "Submit critique", () => {
    if (!critique.value) {  // the draft stays as typed; exported critiques need the text
      showProblem(revision.value
        ? "Write the critique too: a corrected response alone is not enough."
        : "Write a critique.");
      critique.focus();
      return;
    }
    clearTimeout(timer);
    submit(label());
  }));
  $("keys").textContent = "Your text is saved as a draft while you type. Ctrl+Enter submits.";
}

document.addEventListener("keydown", (event) => {
  const item = state.current;
  if (!item || event.target.matches("input, textarea, select")) {
    if (item && item.task === "critique" && event.key === "Enter" && event.ctrlKey) $("btn-submit").click();
    return;
  }
  const key = event.key.toLowerCase();
  if (key === "s") { skip(); return; }
  if (key === "r") { toggleRaw(); return; }
  if (item.task === "pairwise") {
    const choice = { arrowleft: "left", 1: "left", arrowright: "right", 2: "right", arrowdown: "tie", t: "tie", b: "both_bad" }[key];
    if (choice) { event.preventDefault(); submit({ choice }); }
  } else if (item.task === "ranking" && /^[1-9]$/.test(key) && Number(key) <= item.responses.length) {
    pickRank(Number(key) - 1);
  } else if (key === "enter" && $("btn-submit")) {
    $("btn-submit").click();
  }
});

$("login").addEventListener("click", signIn);
$("signout").addEventListener("click", signOut);
$("raw-toggle").addEventListener("click", (event) => {
  toggleRaw();
  event.currentTarget.blur(); // so that Enter goes on submitting instead of toggling again
});
$("token").addEventListener("keydown", (event) => { if (event.key === "Enter") signIn(); });
if (state.token) signIn();
