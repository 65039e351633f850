// Search page: pick/upload a query, draw a box on a canvas, page through ranked hits with boxes.
"use strict";
(function () {
  const message = document.getElementById("message");
  if (document.body.dataset.enabled !== "1") {
    document.getElementById("disabled").classList.remove("hidden");
    document.getElementById("ui").classList.add("hidden");
    return;
  }
  const canvas = document.getElementById("query-canvas");
  const ctx = canvas.getContext("2d");
  const searchBtn = document.getElementById("search");
  const clearBtn = document.getElementById("clear-box");
  const meta = document.getElementById("query-meta");
  // results per page: 12, or ?per_page=N in the address (1..60)
  const asked = parseInt(new URLSearchParams(location.search).get("per_page") || "12", 10);
  const PER_PAGE = Math.min(Math.max(isNaN(asked) ? 12 : asked, 1), 60);
  const COLL_PER_PAGE = 12;
  // the query: {id} or {file, token}; image = HTMLImageElement; box in query pixels
  let query = null;
  let image = null;
  let box = null;
  let drag = null;
  let page = 1;
  let collPage = 1;
  let busy = false;

  // -- collection picker
  async function loadCollection(p) {
    const r = await getJSON("/api/collection?page=" + p + "&per_page=" + COLL_PER_PAGE);
    if (!r.ok) { showMessage(message, "error", r.data.error); return; }
    collPage = r.data.page;
    const grid = document.getElementById("collection");
    grid.textContent = "";
    for (const photo of r.data.photos) {
      const img = el("img", { src: photo.url + "?size=240", alt: photo.name, loading: "lazy" });
      const cell = el("div", { class: "cell", "data-id": String(photo.id), title: photo.name }, img, el("div", {}, "#" + photo.id + " " + photo.name));
      cell.addEventListener("click", () => pickIndexed(photo));
      grid.append(cell);
    }
    document.getElementById("coll-page").textContent = "page " + r.data.page + " of " + r.data.pages + " · " + r.data.total + " photos";
    document.getElementById("coll-prev").disabled = r.data.page <= 1;
    document.getElementById("coll-next").disabled = r.data.page >= r.data.pages;
  }
  document.getElementById("coll-prev").addEventListener("click", () => loadCollection(collPage - 1));
  document.getElementById("coll-next").addEventListener("click", () => loadCollection(collPage + 1));

  function setImage(src, w, h, q, label) {
    const img = new Image();
    img.onload = () => {
      image = img;
      query = q;
      query.width = w || img.naturalWidth;
      query.height = h || img.naturalHeight;
      box = null;
      const scale = Math.min(360 / query.width, 300 / query.height, 1e9);
      canvas.width = Math.round(query.width * scale);
      canvas.height = Math.round(query.height * scale);
      draw();
      meta.textContent = label + " — " + query.width + "×" + query.height + ". Drag on the photo to draw a box.";
      searchBtn.disabled = false;
      clearBtn.disabled = true;
      hideMessage(message);
    };
    img.onerror = () => showMessage(message, "error", "This file is not a photo: choose a JPEG, PNG, WebP or GIF.");
    img.src = src;
  }

  function pickIndexed(photo) {
    document.querySelectorAll("#collection .cell").forEach((c) => c.classList.toggle("selected", c.dataset.id === String(photo.id)));
    setImage(photo.url + "?size=720", photo.width, photo.height, { id: photo.id }, "#" + photo.id + " " + photo.name);
  }

  document.getElementById("upload").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (!f) return;
    document.querySelectorAll("#collection .cell").forEach((c) => c.classList.remove("selected"));
    setImage(URL.createObjectURL(f), 0, 0, { file: f }, "uploaded " + f.name);
  });

  // -- drawing the box (canvas pixels -> query pixels)
  function toQuery(evt) {
    const r = canvas.getBoundingClientRect();
    const x = Math.min(Math.max(evt.clientX - r.left, 0), r.width);
    const y = Math.min(Math.max(evt.clientY - r.top, 0), r.height);
    return [x * query.width / r.width, y * query.height / r.height];
  }
  canvas.addEventListener("pointerdown", (e) => {
    if (!image) return;
    drag = toQuery(e);
    canvas.setPointerCapture(e.pointerId);
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!drag) return;
    const p = toQuery(e);
    box = [Math.min(drag[0], p[0]), Math.min(drag[1], p[1]), Math.max(drag[0], p[0]), Math.max(drag[1], p[1])];
    draw();
  });
  canvas.addEventListener("pointerup", () => {
    if (!drag) return;
    drag = null;
    if (box && (box[2] - box[0] < 4 || box[3] - box[1] < 4)) box = null;
    clearBtn.disabled = !box;
    meta.textContent = box ? "box " + box.map((v) => Math.round(v)).join(", ") + " (query pixels)" : "whole photo";
    draw();
  });
  clearBtn.addEventListener("click", () => { box = null; clearBtn.disabled = true; draw(); });

  function draw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    if (!image) return;
    ctx.drawImage(image, 0, 0, canvas.width, canvas.height);
    if (box) {
      const sx = canvas.width / query.width, sy = canvas.height / query.height;
      ctx.fillStyle = "rgba(0,0,0,0.35)";
      ctx.fillRect(0, 0, canvas.width, canvas.height);
      ctx.drawImage(image, box[0] * image.naturalWidth / query.width, box[1] * image.naturalHeight / query.height,
        (box[2] - box[0]) * image.naturalWidth / query.width, (box[3] - box[1]) * image.naturalHeight / query.height,
        box[0] * sx, box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy);
      ctx.strokeStyle = "#f97316";
      ctx.lineWidth = 2;
      ctx.strokeRect(box[0] * sx, box[1] * sy, (box[2] - box[0]) * sx, (box[3] - box[1]) * sy);
    }
  }

  // -- searching and paging
  searchBtn.addEventListener("click", () => search(1));
  document.getElementById("prev").addEventListener("click", () => search(page - 1));
  document.getElementById("next").addEventListener("click", () => search(page + 1));

  async function search(p) {
    if (!query || busy) return;
    busy = true;
    searchBtn.disabled = true;
    const form = new FormData();
    if (query.id !== undefined) form.append("id", String(query.id));
    else if (query.token) form.append("token", query.token);
    else form.append("photo", query.file, query.file.name);
    if (box) form.append("box", box.map((v) => v.toFixed(1)).join(","));
    form.append("page", String(p));
    form.append("per_page", String(PER_PAGE));
    const stop = progress(message, "Searching");
    const r = await postForm("/api/search", form);
    stop();
    busy = false;
    searchBtn.disabled = false;
    if (!r.ok && r.status === 410 && query.token) { query.token = null; return search(p); }
    if (!r.ok) { showMessage(message, "error", "Search failed: " + r.data.error); return; }
    hideMessage(message);
    if (r.data.query.token) query.token = r.data.query.token;
    page = r.data.page;
    render(r.data);
  }

  function render(data) {
    const grid = document.getElementById("results");
    grid.textContent = "";
    document.getElementById("results-head").textContent =
      data.total + " matching photo" + (data.total === 1 ? "" : "s") + " (" + data.seconds.toFixed(2) + " s)";
    for (const hit of data.results) {
      const c = el("canvas", { width: "240", height: "180" });
      const cell = el("div", { class: "cell result", title: hit.name }, c,
        el("div", {}, el("b", {}, "#" + hit.rank), " " + hit.score.toFixed(3) + " · " + hit.name));
      cell.addEventListener("click", () => pickIndexed(hit));
      grid.append(cell);
      const img = new Image();
      img.onload = () => drawHit(c, img, hit);
      img.src = hit.url + "?size=480";
    }
    if (!data.results.length) grid.append(el("div", { class: "meta" }, "No indexed photo shares a visual word with the query."));
    const pager = document.getElementById("results-pager");
    pager.classList.toggle("hidden", data.pages <= 1);
    document.getElementById("page-info").textContent = "page " + data.page + " of " + data.pages;
    document.getElementById("prev").disabled = data.page <= 1;
    document.getElementById("next").disabled = data.page >= data.pages;
  }

  function drawHit(c, img, hit) {
    const scale = Math.min(c.width / hit.width, c.height / hit.height);
    const w = hit.width * scale, h = hit.height * scale;
    const ox = (c.width - w) / 2, oy = (c.height - h) / 2;
    const g = c.getContext("2d");
    g.drawImage(img, ox, oy, w, h);
    if (hit.box) {
      g.strokeStyle = "#22c55e";
      g.lineWidth = 3;
      g.strokeRect(ox + hit.box[0] * scale, oy + hit.box[1] * scale, (hit.box[2] - hit.box[0]) * scale, (hit.box[3] - hit.box[1]) * scale);
    }
  }

  loadCollection(1);
})();
