// prefloop project dashboard: plain JavaScript (common.js first), charts drawn as inline SVG.
// Every number comes from GET /projects/{id}/dashboard; text is set as textContent only.
"use strict";

const TOKEN_KEY = "prefloop-admin-token";
const state = { token: sessionStorage.getItem(TOKEN_KEY) || "", projectId: null };
const call = (method, path, body) => apiCall(state.token, method, path, body);
const SVG = "http://www.w3.org/2000/svg";

function say(message) { $("status").textContent = message; }
const fixed = (x, digits = 3) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(digits));
const percent = (share) => `${Math.round(share * 100)}%`;

function svg(tag, attrs = {}, text = "") {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

// An SVG of this natural size that shrinks to fit its card.
function canvas(width, height) {
  return svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
}

function row(cells, attrs = {}) {
  const tr = el("tr", attrs);
  for (const [text, cls] of cells) tr.append(el("td", cls ? { class: cls } : {}, String(text)));
  return tr;
}

function emptyNote(text) { return el("p", { class: "empty" }, text); }

// Horizontal bars with their labels and values; `reference` draws a dashed line at that value.
function barChart(bars, { reference = null, format = String } = {}) {
  const labelWidth = 120, barWidth = 170, rowHeight = 24;
  const max = Math.max(...bars.map((b) => b.value), reference || 0) || 1;
  const height = rowHeight * bars.length + 4;
  const chart = canvas(labelWidth + barWidth + 70, height);
  bars.forEach((bar, k) => {
    const y = k * rowHeight + 2, width = (bar.value / max) * barWidth;
    const rect = svg("rect", {
      class: "bar", x: labelWidth, y: y + 4, width, height: rowHeight - 8,
      "data-label": bar.label, "data-value": bar.value,
    });
    rect.append(svg("title", {}, `${bar.label}: ${format(bar.value)}`));
    chart.append(
      svg("text", { x: labelWidth - 6, y: y + 16, "text-anchor": "end" }, bar.label),
      rect,
      svg("text", { x: labelWidth + width + 5, y: y + 16, class: "value" }, format(bar.value)),
    );
  });
  if (reference !== null) {
    const x = labelWidth + (reference / max) * barWidth;
    chart.append(svg("line", { class: "expected", x1: x, x2: x, y1: 0, y2: height }));
  }
  return chart;
}

// One column per hour, labelled every few hours.
function hourChart(hours) {
  const column = Math.max(4, Math.min(28, Math.floor(720 / hours.length)));
  const plot = 120, left = 34, base = plot + 6, every = Math.ceil(hours.length / 10);
  const max = Math.max(...hours.map((h) => h.judgments), 1);
  const chart = canvas(Math.max(left + hours.length * column + 60, 240), base + 22);
  chart.append(
    svg("line", { class: "axis", x1: left, x2: left + hours.length * column, y1: base, y2: base }),
    svg("text", { x: left - 4, y: base - plot + 4, "text-anchor": "end" }, String(max)),
    svg("text", { x: left - 4, y: base, "text-anchor": "end" }, "0"),
  );
  hours.forEach((hour, k) => {
    const height = (hour.judgments / max) * plot, label = hour.hour.slice(5, 13).replace("T", " ") + "h";
    const rect = svg("rect", {
      class: "bar", x: left + k * column + 1, y: base - height, width: column - 2, height,
      "data-label": hour.hour, "data-value": hour.judgments,
    });
    rect.append(svg("title", {}, `${label}: ${hour.judgments}`));
    chart.append(rect);
    if (k % every === 0) chart.append(svg("text", { x: left + k * column, y: base + 16 }, label));
  });
  return chart;
}

function drawProgress(project, p) {
  $("progress-text").textContent = `${p.judgments} of ${p.target} judgments done · ${p.to_go} to go`;
  $("progress-bar").max = Math.max(p.target, 1);
  $("progress-bar").value = p.judgments;
  $("progress-detail").textContent = `${p.items_complete} of ${p.items} items have all ${project.redundancy} `
    + `judgments · ${p.ai_judgments} AI judgments (not counted here)`;
}

const STATISTICS = [
  ["krippendorff_alpha", "Krippendorff's α", fixed],
  ["fleiss_kappa", "Fleiss' κ", fixed],
  ["cohen_kappa_mean", "mean Cohen's κ", fixed],
  ["units", "units judged twice or more", String],
  ["coders", "judges", String],
];

function drawAgreement(agreement) {
  const body = $("agreement").tBodies[0];
  body.replaceChildren();
  const groups = agreement.task === "rating" ? Object.entries(agreement.aspects)
    : agreement.detail ? [] : [["", agreement]];
  if (!groups.length) body.append(row([[agreement.detail || "no statistic"]]));
  for (const [aspect, stats] of groups) {
    for (const [key, name, format] of STATISTICS) {
      const tr = el("tr", { "data-stat": key, "data-aspect": aspect });
      tr.append(el("th", {}, aspect ? `${name} (${aspect})` : name), el("td", {}, format(stats[key])));
      body.append(tr);
    }
  }
}

function drawAnnotators(annotators) {
  const body = $("annotators").tBodies[0];
  body.replaceChildren();
  for (const a of annotators) {
    body.append(row([
      [a.removed ? `${a.name} (removed)` : a.name],
      ...[a.judgments, a.skipped, a.expired, a.open].map((n) => [n, "num"]),
    ], { "data-annotator": a.annotator_id }));
  }
  if (!annotators.length) body.append(row([["no annotators yet"]]));
}

function drawCharts(d) {
  $("per-hour").replaceChildren(d.per_hour.length ? hourChart(d.per_hour) : emptyNote("No judgments yet."));
  $("labels").replaceChildren(d.labels.some((b) => b.value) ? barChart(d.labels) : emptyNote("No judgments yet."));
  const bias = d.position_bias;
  const total = bias.bars.reduce((sum, b) => sum + b.value, 0);
  if (!total) {
    $("bias-note").textContent = "";
    $("position-bias").replaceChildren(emptyNote("No judgments yet."));
  } else if (bias.expected_share === null) {
    $("bias-note").textContent = `The ${bias.measure} at each displayed position.`;
    $("position-bias").replaceChildren(barChart(bias.bars, { format: (v) => fixed(v, 2) }));
  } else {
    $("bias-note").textContent = `How often each displayed position was ${bias.measure}; the dashed `
      + `line marks the ${percent(bias.expected_share)} each gets without position bias.`;
    const format = (v) => `${v} (${percent(v / total)})`;
    $("position-bias").replaceChildren(barChart(bias.bars, { reference: bias.expected_share * total, format }));
  }
}

function drawDisputed(items) {
  const body = $("disputed").tBodies[0];
  body.replaceChildren();
  for (const item of items) {
    const answers = item.answers.map((a) => `${a.label} ${a.value}`).join(" · ");
    body.append(row([
      [item.external_id || `#${item.item_id}`], [item.prompt], [item.judgments, "num"],
      [fixed(item.disagreement), "num"], [answers],
    ], { "data-item": item.item_id }));
  }
  if (!items.length) body.append(row([["no disagreement yet"]]));
}

function drawWebhook(hook) {
  $("webhook-summary").textContent = hook.url
    ? `${hook.url}: ${hook.delivered} delivered, ${hook.failed} failed`
    : "No webhook URL set for this project.";
  const body = $("webhook-recent").tBodies[0];
  body.replaceChildren();
  for (const d of hook.recent) {
    const result = d.ok ? `ok (${d.status})` : `failed (${d.status ?? d.error})`;
    body.append(row([[d.at.slice(0, 19).replace("T", " ")], [d.target], [result], [d.attempts, "num"]],
      d.ok ? {} : { class: "failed" }));
  }
  $("webhook-recent").hidden = !hook.recent.length;
}

function draw(d) {
  $("project-name").textContent = `${d.project.name} (${d.project.task}, R = ${d.project.redundancy})`;
  drawProgress(d.project, d.progress);
  drawAgreement(d.agreement);
  drawAnnotators(d.annotators);
  drawCharts(d);
  drawDisputed(d.most_disputed);
  drawWebhook(d.webhook);
}

async function load(projectId) {
  let data;
  try { data = await call("GET", `/projects/${projectId}/dashboard`); }
  catch (error) { say("Could not load the dashboard: " + error.message); return; }
  state.projectId = projectId;
  $("login-view").hidden = true;
  $("board").hidden = $("refresh").hidden = false;
  draw(data);
  say(`Updated ${new Date().toLocaleTimeString()}.`);
}

async function download() {
  const form = $("export-form").value;
  const name = `project-${state.projectId}-${form}.jsonl`;
  const response = await fetch(`${api}/projects/${state.projectId}/export?form=${encodeURIComponent(form)}`,
    { headers: { Authorization: "Bearer " + state.token } });
  if (!response.ok) { $("export-status").textContent = `Export failed (${response.status}).`; return; }
  const text = await response.text();
  const link = el("a", { href: URL.createObjectURL(new Blob([text], { type: "application/x-ndjson" })), download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 60000);
  $("export-status").textContent = `${text.split("\n").filter(Boolean).length} rows saved as ${name}.`;
}

function showSignedIn(signedIn) {
  $("signin-form").hidden = signedIn;
  $("signout").hidden = !signedIn;
  $("token").value = "";
}

function listProjects(projects) {
  const list = $("projects");
  list.replaceChildren();
  for (const project of projects) {
    const button = el("button", { "data-project": project.id }, `${project.name} (${project.task})`);
    button.addEventListener("click", () => load(project.id));
    const entry = el("li");
    entry.append(button);
    list.append(entry);
  }
  say(projects.length ? "Choose a project." : "There are no projects yet.");
}

async function signIn() {
  state.token = $("token").value.trim() || state.token;
  try {
    const me = await call("GET", "/me");
    if (me.role === "annotator") throw new Error("an annotator token; the dashboard needs a project admin token");
    sessionStorage.setItem(TOKEN_KEY, state.token);
    showSignedIn(true);
    if (me.role === "project_admin") await load(me.project_id);
    else listProjects(await call("GET", "/projects"));
  } catch (error) { showSignedIn(false); say("Sign-in failed: " + error.message); }
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  Object.assign(state, { token: "", projectId: null });
  showSignedIn(false);
  $("projects").replaceChildren();
  $("project-name").textContent = "";
  $("board").hidden = $("refresh").hidden = true;
  $("login-view").hidden = false;
  say("Signed out.");
}

$("login").addEventListener("click", signIn);
$("token").addEventListener("keydown", (event) => { if (event.key === "Enter") signIn(); });
$("signout").addEventListener("click", signOut);
$("refresh").addEventListener("click", () => load(state.projectId));
$("export").addEventListener("click", download);
if (state.token) signIn();
