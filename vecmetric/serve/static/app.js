// The vecmetric page: one query (an uploaded image and/or stored images and texts, each weighted),
// its results as a grid, and the query in the URL so that a search can be shared and reloaded.
// Plain DOM code, no framework, nothing loaded from elsewhere.
"use strict";

const $ = (selector) => document.querySelector(selector);
const UPLOAD_PREFIX = "vecmetric-upload-";  // sessionStorage: an uploaded image survives a reload of its tab

// The query: terms are {id, weight} or {text, weight}; upload is {blob, key, weight} or null.
let query = { terms: [], upload: null, k: 24, label: [], path: "", max: "" };

// --- the URL ----------------------------------------------------------------------------------------

function toURL(q) {
  const params = new URLSearchParams();
  if (q.terms.length) params.set("terms", JSON.stringify(q.terms));
  if (q.upload) params.set("upload", `${q.upload.weight}:${q.upload.key}`);
  params.set("k", String(q.k));
  q.label.forEach((label) => params.append("label", label));
  if (q.path) params.set("path", q.path);
  if (q.max !== "") params.set("max", q.max);
  return `${location.pathname}?${params}`;
}

function fromURL() {
  const params = new URLSearchParams(location.search);
  const q = { terms: [], upload: null, k: Number(params.get("k")) || 24, label: params.getAll("label"), path: params.get("path") || "", max: params.get("max") || "" };
  try {
    const terms = JSON.parse(params.get("terms") || "[]");
    if (Array.isArray(terms)) q.terms = terms;
  } catch (err) {
    showStatus("the link's terms are not valid JSON", true);
  }
  const upload = params.get("upload");
  if (upload) {
    const [weight, key] = upload.split(":");
    const stored = sessionStorage.getItem(UPLOAD_PREFIX + key);
    if (stored) q.upload = { blob: dataURLToBlob(stored), key, weight: Number(weight) || 1 };
    else showStatus("this link's uploaded image is not in this browser tab: upload it again", true);
  }
  return q;
}

function go(q, push = true) {
  query = q;
  if (push) history.pushState(null, "", toURL(q));
  showFilters(q);
  showTerms(q);
  search(q);
}

// --- uploads ---------------------------------------------------------------------------------------

function dataURLToBlob(url) {
  const [head, body] = url.split(",");
  const bytes = Uint8Array.from(atob(body), (c) => c.charCodeAt(0));
  return new Blob([bytes], { type: head.slice(5).split(";")[0] });
}

async function keyOf(blob) {
  // FNV-1a over the bytes: a short name for the upload in the URL (not a security measure).
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let hash = 0x811c9dc5;
  for (const b of bytes) hash = Math.imul(hash ^ b, 0x01000193) >>> 0;
  return `${hash.toString(16)}-${bytes.length.toString(16)}`;
}

async function useImage(blob) {
  if (!blob || !blob.type.startsWith("image/")) return showStatus("that is not an image", true);
  const key = await keyOf(blob);
  const reader = new FileReader();
  reader.onload = () => {
    try {
      sessionStorage.setItem(UPLOAD_PREFIX + key, reader.result);
    } catch (err) {
      // Over the tab's storage quota: the search works, a reload will ask for the image again.
    }
  };
  reader.readAsDataURL(blob);
  go({ ...query, terms: [], upload: { blob, key, weight: 1 } });
}

// --- searching -------------------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, { credentials: "same-origin", ...options });
  if (response.status === 401 && (await logIn())) return api(path, options);
  const body = await response.json().catch(() => ({ error: `${response.status} ${response.statusText}` }));
  if (!response.ok) throw new Error(body.hint ? `${body.error} (${body.hint})` : body.error);
  return body;
}

async function search(q) {
  if (!q.terms.length && !q.upload) {
    $("#results").replaceChildren();
    return showStatus("Drop, paste or pick an image, or type a text.");
  }
  const filters = { k: q.k, label: q.label.length ? q.label : null, path: q.path || null, max_distance: q.max === "" ? null : Number(q.max) };
  showStatus("searching…");
  const started = performance.now();
  try {
    let answer;
    if (q.upload) {
      const form = new FormData();
      form.append("image", q.upload.blob, "upload");
      form.append("weight", String(q.upload.weight));
      if (q.terms.length) form.append("terms", JSON.stringify(q.terms));
      form.append("k", String(q.k));
      q.label.forEach((label) => form.append("label", label));
      if (q.path) form.append("path", q.path);
      if (q.max !== "") form.append("max_distance", q.max);
      answer = await api("/search/image", { method: "POST", body: form });
    } else {
      answer = await api("/search", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ terms: q.terms, ...filters }) });
    }
    if (q !== query) return;  // a newer search started meanwhile
    showResults(answer.results);
    const what = answer.results.length ? answer.results[0].query : "the query";
    showStatus(`${answer.results.length} results for ${what} (${Math.round(performance.now() - started)} ms)`);
  } catch (err) {
    if (q === query) {
      $("#results").replaceChildren();
      showStatus(err.message, true);
    }
  }
}

// --- showing ---------------------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function showStatus(text, error = false) {
  $("#status").textContent = text;
  $("#status").classList.toggle("error", error);
}

function showResults(results) {
  $("#results").replaceChildren(...results.map((hit) => {
    const name = hit.path.split("/").pop();
    const figure = el("figure", { tabIndex: 0, title: hit.path },
      el("img", { src: `/thumbs/${hit.id}?size=256`, alt: name, loading: "lazy", title: "more like this" }),
      el("figcaption", {}, el("span", { textContent: `${hit.rank}. ${hit.distance.toFixed(4)}` }), el("span", { className: "label", textContent: hit.label || "" })),
      el("div", { className: "ops" },
        el("button", { type: "button", className: "plus", textContent: "+", title: "add to the query (+)" }),
        el("button", { type: "button", className: "minus", textContent: "−", title: "subtract from the query (−)" }),
        el("a", { href: `/images/${hit.id}`, target: "_blank", rel: "noopener", textContent: "open", title: "the image itself (o)" })));
    figure.dataset.id = hit.id;
    return el("li", {}, figure);
  }));
}

function describeTerm(term) {
  const weight = Math.abs(term.weight ?? 1) === 1 ? "" : `${Math.abs(term.weight)}×`;
  return `${(term.weight ?? 1) < 0 ? "−" : "+"} ${weight}${term.text !== undefined ? `“${term.text}”` : `@${term.id}`}`;
}

function showTerms(q) {
  const chips = q.terms.map((term, at) => {
    const drop = el("button", { type: "button", textContent: "×", title: "remove this term" });
    drop.addEventListener("click", () => go({ ...query, terms: query.terms.filter((_, i) => i !== at) }));
    const picture = term.id !== undefined ? [el("img", { src: `/thumbs/${term.id}?size=64`, alt: "" })] : [];
    return el("li", { className: (term.weight ?? 1) < 0 ? "negative" : "" }, ...picture, describeTerm(term), drop);
  });
  if (q.upload) {
    const drop = el("button", { type: "button", textContent: "×", title: "remove the uploaded image" });
    drop.addEventListener("click", () => go({ ...query, upload: null }));
    chips.unshift(el("li", {}, el("img", { src: URL.createObjectURL(q.upload.blob), alt: "" }), "+ upload", drop));
  }
  $("#terms").replaceChildren(...chips);
}

function showFilters(q) {
  $("#k").value = q.k;
  $("#label").value = q.label.join(", ");
  $("#path").value = q.path;
  $("#max").value = q.max;
}

// --- acting on results -----------------------------------------------------------------------------

function moreLike(id) {
  go({ ...query, terms: [{ id }], upload: null });
}

function addTerm(id, sign) {
  const terms = query.terms.map((t) => ({ ...t }));
  const same = terms.find((t) => t.id === id);
  if (same) same.weight = (same.weight ?? 1) + sign;
  else terms.push({ id, weight: sign });
  go({ ...query, terms: terms.filter((t) => t.weight !== 0) });
}

function act(figure, action) {
  const id = Number(figure.dataset.id);
  if (action === "like") moreLike(id);
  else if (action === "plus") addTerm(id, 1);
  else if (action === "minus") addTerm(id, -1);
  else if (action === "open") window.open(`/images/${id}`, "_blank", "noopener");
}

function moveFocus(figure, key) {
  const all = [...document.querySelectorAll("#results figure")];
  const at = all.indexOf(figure);
  const columns = all.filter((f) => f.offsetTop === all[0].offsetTop).length || 1;
  const step = { ArrowRight: 1, ArrowLeft: -1, ArrowDown: columns, ArrowUp: -columns }[key];
  const next = all[Math.min(all.length - 1, Math.max(0, at + step))];
  if (next) next.focus();
}

// --- logging in ------------------------------------------------------------------------------------

function logIn() {
  const dialog = $("#login");
  return new Promise((resolve) => {
    const submit = async (event) => {
      event.preventDefault();
      const response = await fetch("/session", { method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ token: $("#token").value }) });
      if (response.ok) {
        $("#login-form").removeEventListener("submit", submit);
        dialog.close();
        resolve(true);
      } else {
        $("#login-error").textContent = (await response.json().catch(() => ({}))).error || "refused";
      }
    };
    $("#login-form").addEventListener("submit", submit);
    dialog.showModal();
  });
}

// --- wiring ----------------------------------------------------------------------------------------

function readFilters() {
  const labels = $("#label").value.split(",").map((s) => s.trim()).filter(Boolean);
  return { k: Math.max(1, Math.min(1000, Number($("#k").value) || 24)), label: labels, path: $("#path").value.trim(), max: $("#max").value.trim() };
}

$("#query-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("#text").value.trim();
  if (text) go({ ...query, ...readFilters(), terms: [{ text, weight: 1 }], upload: null });
});
$("#apply").addEventListener("click", () => go({ ...query, ...readFilters() }));
$("#file").addEventListener("change", (event) => event.target.files[0] && useImage(event.target.files[0]));
document.addEventListener("paste", (event) => {
  const item = [...(event.clipboardData?.items || [])].find((i) => i.type.startsWith("image/"));
  if (item) {
    event.preventDefault();
    useImage(item.getAsFile());
  }
});
const drop = $("#drop");
document.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
document.addEventListener("dragleave", () => drop.classList.remove("over"));
document.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("over");
  if (event.dataTransfer.files[0]) useImage(event.dataTransfer.files[0]);
});
$("#results").addEventListener("click", (event) => {
  const figure = event.target.closest("figure");
  if (!figure) return;
  if (event.target.tagName === "IMG") act(figure, "like");
  else if (event.target.classList.contains("plus")) act(figure, "plus");
  else if (event.target.classList.contains("minus")) act(figure, "minus");
});
document.addEventListener("keydown", (event) => {
  const figure = document.activeElement?.closest?.("#results figure");
  if (event.key === "/" && document.activeElement?.tagName !== "INPUT") {
    event.preventDefault();
    $("#text").focus();
  } else if (figure && event.key.startsWith("Arrow")) {
    event.preventDefault();
    moveFocus(figure, event.key);
  } else if (figure) {
    const action = { Enter: "like", "+": "plus", "=": "plus", "-": "minus", o: "open" }[event.key];
    if (action) {
      event.preventDefault();
      act(figure, action);
    }
  }
});
window.addEventListener("popstate", () => go(fromURL(), false));
go(fromURL(), false);
