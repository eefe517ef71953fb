// Helpers shared by the annotation page and the dashboard: plain JavaScript, no external assets.
"use strict";

const api = "/api/v1";
const $ = (id) => document.getElementById(id);

// An element with attributes and text; text goes in as textContent, never as HTML.
function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

// A JSON API call with a bearer token; failures throw with the server's `detail`.
async function apiCall(token, method, path, body) {
  const response = await fetch(api + path, {
    method,
    headers: { Authorization: "Bearer " + token, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json();
  if (!response.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
  return data;
}
