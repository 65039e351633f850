// Shared by the pages: messages a person can read, and a fetch that never throws raw errors.
"use strict";

function showMessage(el, kind, text, busy) {
  el.className = "message " + kind;
  el.textContent = "";
  if (busy) {
    const s = document.createElement("span");
    s.className = "spinner";
    el.appendChild(s);
  }
  el.appendChild(document.createTextNode(text));
}

function hideMessage(el) {
  el.className = "message";
  el.textContent = "";
}

// POST a FormData; resolve {ok, status, data} where data.error is a human message on failure.
async function postForm(url, form) {
  let response;
  try {
    response = await fetch(url, { method: "POST", body: form });
  } catch (err) {
    return { ok: false, status: 0, data: { error: "the server cannot be reached (is `beyondvis serve` still running?)" } };
  }
  let data = null;
  try {
    data = await response.json();
  } catch (err) {
    data = { error: "the server answered " + response.status + " without a readable message" };
  }
  if (!response.ok && !(data && data.error)) {
    data = { error: "the server answered " + response.status };
  }
  return { ok: response.ok, status: response.status, data: data };
}

async function getJSON(url) {
  try {
    const response = await fetch(url);
    const data = await response.json();
    return { ok: response.ok, data: data };
  } catch (err) {
    return { ok: false, data: { error: "the server cannot be reached" } };
  }
}

// A timer that shows "what… 3 s" while long work runs.
function progress(el, what) {
  const t0 = performance.now();
  showMessage(el, "info", what + "…", true);
  const id = setInterval(() => {
    const s = Math.round((performance.now() - t0) / 1000);
    showMessage(el, "info", what + "… " + s + " s", true);
  }, 500);
  return () => clearInterval(id);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}
