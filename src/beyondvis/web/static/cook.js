// Cook page: upload/drop a photo, POST /api/cook, draw the card.
"use strict";
(function () {
  const input = document.getElementById("photo");
  const drop = document.getElementById("drop");
  const preview = document.getElementById("preview");
  const dropText = document.getElementById("drop-text");
  const cookBtn = document.getElementById("cook");
  const resampleBtn = document.getElementById("resample");
  const message = document.getElementById("message");
  const status = document.getElementById("status");
  let file = null;
  let busy = false;

  if (status.dataset.text) status.textContent = status.dataset.text; else status.className = "message";

  function choose(f) {
    if (!f) return;
    file = f;
    preview.src = URL.createObjectURL(f);
    preview.classList.remove("hidden");
    dropText.textContent = f.name + " — drop or click to change";
    hideMessage(message);
    cook(null);
  }

  input.addEventListener("change", () => choose(input.files[0]));
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, (e) => {
    e.preventDefault(); drop.classList.remove("over");
  }));
  drop.addEventListener("drop", (e) => choose(e.dataTransfer.files[0]));
  preview.addEventListener("error", () => preview.classList.add("hidden"));
  cookBtn.addEventListener("click", () => cook(null));
  resampleBtn.addEventListener("click", () => cook("sample"));

  function setBusy(b) {
    busy = b;
    cookBtn.disabled = b || !file;
    resampleBtn.disabled = b || !file;
  }

  async function cook(decode) {
    if (!file || busy) return;
    setBusy(true);
    const form = new FormData();
    form.append("photo", file, file.name);
    if (decode) {
      form.append("decode", decode);
      form.append("seed", String(Math.floor(Math.random() * 1e9)));
    }
    const stop = progress(message, decode === "sample" ? "Sampling a new recipe" : "Cooking");
    const t0 = performance.now();
    const r = await postForm("/api/cook", form);
    stop();
    setBusy(false);
    if (!r.ok) {
      showMessage(message, "error", "Could not cook this photo: " + r.data.error);
      document.getElementById("card").classList.add("hidden");
      return;
    }
    hideMessage(message);
    render(r.data, (performance.now() - t0) / 1000);
  }

  function render(card, seconds) {
    document.getElementById("card").classList.remove("hidden");
    document.getElementById("title").textContent = card.title;
    document.getElementById("card-meta").textContent =
      "decoding: " + card.decode + " · " + card.runtime + " · " + seconds.toFixed(1) + " s";
    const ul = document.getElementById("ingredients");
    ul.textContent = "";
    for (const ing of card.ingredients) {
      const bar = el("span", { class: "bar", title: (100 * ing.prob).toFixed(0) + "%" }, el("i"));
      bar.firstChild.style.width = (100 * ing.prob).toFixed(0) + "%";
      const li = el("li", {}, bar, el("span", {}, ing.name), el("span", { class: "meta" }, (100 * ing.prob).toFixed(0) + "%"));
      if (ing.staple) li.append(el("span", { class: "staple" }, "staple"));
      ul.append(li);
    }
    if (!card.ingredients.length) ul.append(el("li", { class: "meta" }, "(no ingredient predicted)"));
    const ol = document.getElementById("steps");
    ol.textContent = "";
    for (const step of card.instructions) ol.append(el("li", {}, step));
    const box = document.getElementById("retrieved");
    box.textContent = "";
    for (const r of card.retrieved || []) {
      const head = el("summary", {}, el("span", { class: "score" }, r.score.toFixed(3)), el("b", {}, r.title));
      const det = el("details", { class: "recipe" }, head);
      const info = [];
      if (r.source) info.push(r.source);
      if (r.licence) info.push("licence: " + r.licence);
      info.push("id " + r.id);
      det.append(el("div", { class: "meta" }, info.join(" · ")));
      if (r.ingredients && r.ingredients.length) {
        const ing = el("ul");
        for (const i of r.ingredients) ing.append(el("li", {}, typeof i === "string" ? i : (i.text || i.name || JSON.stringify(i))));
        det.append(ing);
      }
      if (r.instructions && r.instructions.length) {
        const steps = el("ol");
        for (const s of r.instructions) steps.append(el("li", {}, typeof s === "string" ? s : (s.text || JSON.stringify(s))));
        det.append(steps);
      }
      if (!r.ingredients && !r.instructions) det.append(el("div", { class: "meta" }, "text not shipped (licence)"));
      box.append(det);
    }
    if (!(card.retrieved || []).length) box.append(el("div", { class: "meta" }, "(none)"));
  }
})();
