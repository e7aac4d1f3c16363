// her2path review: case list and case view. No framework, no network beyond this server.
"use strict";
const her2path = (() => {
  const csrf = document.querySelector('meta[name="csrf"]').content;
  const who = document.getElementById("reviewer");
  who.value = localStorage.getItem("her2path.reviewer") || "";
  who.addEventListener("change", () => localStorage.setItem("her2path.reviewer", who.value.trim()));
  // Every decision is signed: no default name, the reviewer types theirs before the first one.
  function reviewer() {
    const name = who.value.trim();
    if (!name) { who.classList.add("missing"); who.focus(); throw new Error("enter your name (top right) before the first decision"); }
    who.classList.remove("missing");
    return name;
  }
  const cls = (s) => ({"0": "s0", "1+": "s1", "2+": "s2", "3+": "s3"}[s] || "");
  const esc = (t) => String(t ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  function toast(text, err) {
    let t = document.getElementById("toast");
    if (!t) { t = document.createElement("div"); t.id = "toast"; document.body.appendChild(t); }
    t.textContent = text; t.className = "show" + (err ? " err" : "");
    clearTimeout(t._h); t._h = setTimeout(() => (t.className = ""), 1600);
  }

  async function api(path, body) {
    const opt = body ? {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
                        body: JSON.stringify(body)} : {};
    const r = await fetch(path, opt);
    const data = await r.json();
    if (!r.ok) throw new Error(typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail));
    return data;
  }

  async function caseList() {
    const cases = await api("/api/cases");
    const table = document.getElementById("case-table");
    table.className = "cases";
    const bad = (c) => `<tr class="bad" data-key="${esc(c.key)}"><td>${esc(c.case_id)}</td>
        <td><span class="badge st-${c.state === "failed" ? "failed" : "broken"}">${esc(c.state)}</span></td>
        <td colspan="4" class="reason">${esc(c.reason)}</td></tr>`;
    table.innerHTML = "<tr><th>case</th><th>status</th><th>IHC</th><th>ISH</th><th>flags</th><th>review</th></tr>" +
      cases.map((c) => c.state !== "ok" ? bad(c) : `<tr data-case="${esc(c.key)}"><td><a href="/case/${encodeURIComponent(c.key)}">${esc(c.case_id)}</a>
        ${c.reason ? `<div class="reason">${esc(c.reason)}</div>` : ""}</td>
        <td>${c.reviewed ? `<span class="badge st-${esc(c.reviewed.status)}">${esc(c.reviewed.status)}</span>
              ${c.reviewed.sub_label ? "HER2-" + esc(c.reviewed.sub_label) : ""} <span class="override-mark">override (measured ${esc(c.status)})</span>`
            : `<span class="badge st-${esc(c.status)}">${esc(c.status)}</span> ${c.sub_label ? "HER2-" + esc(c.sub_label) : ""}`}</td>
        <td>${(c.reviewed ? c.reviewed.ihc_score : c.ihc_score) ? `<span class="badge ${cls(c.reviewed ? c.reviewed.ihc_score : c.ihc_score)}">${esc(c.reviewed ? c.reviewed.ihc_score : c.ihc_score)}</span>` : "-"}</td>
        <td>${c.ish_group ? "group " + c.ish_group : c.ratio != null ? "ratio " + c.ratio.toFixed(2) : "-"}</td>
        <td>${[c.flagged_tiles ? `<span class="flag" title="tiles where the tile model disagrees">&#9873; ${c.flagged_tiles} flagged tiles</span>` : "",
              c.near_cutoff ? "slide near a cut-off" : "",
              c.ish_near_cutoff ? "ISH count near a cut-off" : "",
              ishWarnings(c.ish_warnings)].filter(Boolean).join(" &middot; ")}</td>
        <td>${c.signoff ? `signed off: ${esc(c.signoff.value)} by ${esc(c.signoff.reviewer)}` : c.tiles_reviewed ? c.tiles_reviewed + " tiles reviewed" : '<span class="muted">not reviewed</span>'}</td></tr>`).join("");
    table.querySelectorAll("tr[data-case]").forEach((tr) =>
      tr.addEventListener("click", () => (location.href = "/case/" + encodeURIComponent(tr.dataset.case))));
  }

  // The ISH count's warnings (saturated clusters, a second population), named in full on hover.
  function ishWarnings(warnings) {
    const ish = warnings || [];
    return ish.length ? `<span class="flag" title="${esc(ish.join("\n"))}">ISH: ${ish.length} warning${ish.length > 1 ? "s" : ""}</span>` : "";
  }

  async function caseView() {
    const root = document.getElementById("case");
    const id = root.dataset.case;
    let data = await api("/api/cases/" + encodeURIComponent(id));
    let filter = "all", cells = true, sel = 0;
    const c = data.case;
    root.innerHTML = `<div id="head"></div>
      ${data.note ? `<p class="reason">${esc(data.note)}</p>` : ""}
      <div class="layout"><aside>
        <div class="panel"><h2>Slide</h2><div id="slide-facts"></div>
          ${data.heatmap ? `<img id="heatmap" alt="heatmap" src="/files/${encodeURIComponent(id)}/heatmap.png">` : ""}</div>
        <div class="panel signoff"><h2>Sign-off</h2><div id="signoff-state"></div>
          <button id="accept-slide">Accept ${data.ihc ? "IHC " + esc(data.ihc.score) : "result"}</button>
          <div class="override">Override IHC score: <select id="override-score">
            <option>0</option><option>1+</option><option>2+</option><option>3+</option></select>
          <textarea id="override-comment" placeholder="comment (required to override)"></textarea>
          <button class="alt" id="override-slide">Override</button></div></div>
      </aside><section>
        ${data.slide ? `<div class="viewer-bar"><b>Slide</b>
          <label><input type="checkbox" id="layer-cells" checked> cells by class</label>
          <label><input type="checkbox" id="layer-heat" checked> tile scores</label>
          <span class="muted">selecting a tile, or clicking the heatmap, flies there</span></div>
          <div id="viewer"><canvas id="layer"></canvas></div>` : '<p class="muted">The scored slide is not available to view (moved, or changed since it was scored).</p>'}
        <div class="toolbar" id="filters"></div>
        <div class="grid" id="grid"></div></section></div>`;
    const filters = [["all", "All"], ["flagged", "Flagged"], ["0", "0"], ["1+", "1+"], ["2+", "2+"], ["3+", "3+"]];
    const bar = document.getElementById("filters");
    bar.innerHTML = filters.map(([k, t]) => `<button data-f="${k}">${t}</button>`).join("") +
      `<label><input type="checkbox" id="cells" checked> cell overlay <kbd>c</kbd></label>` +
      `<span class="keys"><kbd>0</kbd>-<kbd>3</kbd> score &middot; <kbd>a</kbd> accept &middot; <kbd>&larr;</kbd><kbd>&rarr;</kbd><kbd>&uarr;</kbd><kbd>&darr;</kbd> move</span>`;
    bar.querySelectorAll("button").forEach((b) => b.addEventListener("click", () => { filter = b.dataset.f; sel = 0; draw(); }));
    document.getElementById("cells").addEventListener("change", (e) => { cells = e.target.checked; draw(); });

    // The header and the facts follow the sign-off: an override recomputes the status (server side,
    // by the guideline engine) and both the measured and the signed-off result stay visible.
    function drawHead() {
      const rv = data.reviewed;
      const st = rv ? rv.status : c.status, sub = rv ? rv.sub_label : c.sub_label;
      document.getElementById("head").innerHTML = `<h1>${esc(c.case_id || id)}
        <span class="badge st-${esc(st)}" id="status">HER2 ${esc(st)}</span>
        ${sub ? `<span class="badge sub">HER2-${esc(sub)}</span>` : ""}
        ${rv ? `<span class="override-mark" id="override-mark">signed-off override: IHC ${esc(rv.ihc_score)} by ${esc(rv.by)}
          (measured IHC ${esc(rv.measured_ihc || "-")}, HER2 ${esc(rv.measured_status)})</span>` : ""}</h1>`;
      const reasons = rv ? rv.reasons : c.reasons, next = rv ? rv.next_step : c.next_step;
      document.getElementById("slide-facts").innerHTML = `
        ${data.ihc ? `<div>IHC measured <span class="badge ${cls(data.ihc.score)}">${esc(data.ihc.score)}</span> on ${data.ihc.tumour_cells} tumour cells:
          ${Object.entries(data.ihc.percent_cells).map(([k, v]) => `${esc(k)} ${v.toFixed(1)}%`).join(", ")}</div>` : "<div>no IHC</div>"}
        ${rv ? `<div>IHC signed off <span class="badge ${cls(rv.ihc_score)}">${esc(rv.ihc_score)}</span></div>` : ""}
        <ul class="reasons">${reasons.map((r) => `<li>${esc(r)}</li>`).join("")}</ul>
        ${next ? `<div><b>Next step:</b> ${esc(next)}</div>` : ""}
        ${c.flags.length ? `<ul class="reasons">${c.flags.map((f) => `<li class="flag">${esc(f)}</li>`).join("")}</ul>` : ""}`;
    }
    const viewer = slideViewer(id, data);
    window.her2pathViewer = viewer;          // for scripting the page (and its browser test)
    const heat = document.getElementById("heatmap");
    if (heat && viewer) heat.addEventListener("click", (e) => {
      const r = heat.getBoundingClientRect(), [W, H] = data.size, k = W / r.width;   // the image keeps the slide's scale
      const x = (e.clientX - r.left) * k, y = (e.clientY - r.top) * k;
      if (y <= H) viewer.flyTo(x - 0.02 * W, y - 0.02 * W, 0.04 * W, 0.04 * W);
    });
    const visible = () => data.tiles.filter((t) => filter === "all" || (filter === "flagged" ? t.flagged : t.score === filter));
    function drawSignoff() {
      const s = data.signoff;
      document.getElementById("signoff-state").innerHTML = s
        ? `<p>Signed off <b>${s.value === "accept" ? "accepted" : "overridden to " + esc(s.value)}</b> by ${esc(s.reviewer)} at ${esc(s.at)}${s.comment ? ": " + esc(s.comment) : ""}</p>`
        : '<p class="muted">not signed off</p>';
    }
    function draw() {
      bar.querySelectorAll("button").forEach((b) => b.classList.toggle("on", b.dataset.f === filter));
      const tiles = visible();
      sel = Math.max(0, Math.min(sel, tiles.length - 1));
      document.getElementById("grid").innerHTML = tiles.map((t, i) => {
        const d = t.decision;
        const shown = d ? (d.value === "accept" ? t.score : d.value) : null;
        return `<div class="tile${i === sel ? " sel" : ""}${d ? " reviewed" : ""}" data-i="${i}" data-tile="${t.index}">
          <img loading="lazy" alt="tile ${t.index}" src="/files/${encodeURIComponent(id)}/tiles/${t.index}.jpg${cells ? "?cells=true" : ""}">
          <div class="meta">#${t.index} <span class="badge ${cls(t.score)}" title="measured">${esc(t.score)}</span>
            ${t.model_score ? `model <span class="badge ${cls(t.model_score)}">${esc(t.model_score)}</span>` : ""}
            ${t.flagged ? '<span class="flag" title="tile model disagrees">&#9873;</span>' : ""}
            ${t.near_cutoff ? '<span class="near">near cut-off</span>' : ""}
            <span class="muted">${t.tumour_cells} cells</span>
            <span class="done">${d ? (d.value === "accept" ? "&#10003; accepted" : "&#10003; set " + esc(shown)) : ""}</span></div></div>`;
      }).join("") || '<p class="muted">no tiles in this view</p>';
      document.querySelectorAll(".tile").forEach((el) => el.addEventListener("click", () => { sel = +el.dataset.i; draw(); }));
      const cur = document.querySelector(".tile.sel");
      if (cur) cur.scrollIntoView({block: "nearest"});
      if (cur && viewer) viewer.flyToTile(+cur.dataset.tile);
      drawSignoff();
    }
    async function decide(value) {
      const t = visible()[sel];
      if (!t) return;
      try {
        t.decision = await api(`/api/cases/${encodeURIComponent(id)}/tiles/${t.index}`, {value, reviewer: reviewer()});
        toast(`tile ${t.index}: ${value === "accept" ? "accepted " + t.score : value}`);
        sel = Math.min(sel + 1, visible().length - 1);
        draw();
      } catch (e) { toast(e.message, true); }
    }
    async function signoff(value, comment) {
      try {
        await api(`/api/cases/${encodeURIComponent(id)}/signoff`, {value, reviewer: reviewer(), comment});
        const fresh = await api("/api/cases/" + encodeURIComponent(id));
        data.signoff = fresh.signoff; data.reviewed = fresh.reviewed;
        toast("case signed off"); drawHead(); drawSignoff();
      } catch (e) { toast(e.message, true); }
    }
    document.getElementById("accept-slide").addEventListener("click", () => signoff("accept", null));
    document.getElementById("override-slide").addEventListener("click", () =>
      signoff(document.getElementById("override-score").value, document.getElementById("override-comment").value));
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, textarea, select")) return;
      const cols = Math.max(1, Math.round(document.getElementById("grid").clientWidth / 240));
      const moves = {ArrowRight: 1, ArrowLeft: -1, ArrowDown: cols, ArrowUp: -cols};
      if (e.key in moves) { sel = Math.max(0, Math.min(visible().length - 1, sel + moves[e.key])); draw(); e.preventDefault(); }
      else if (["0", "1", "2", "3"].includes(e.key)) decide(e.key === "0" ? "0" : e.key + "+");
      else if (e.key === "a") decide("accept");
      else if (e.key === "c") { cells = !cells; document.getElementById("cells").checked = cells; draw(); }
    });
    drawHead();
    draw();
  }
  // The slide viewer: Deep Zoom tiles of the scored slide (OpenSeadragon, vendored) under a canvas
  // that draws the tiles' scores and, zoomed in, every tumour cell as a ring in its class colour
  // (a ring, so the membrane being judged stays visible).
  function slideViewer(id, data) {
    if (!data.slide || !window.OpenSeadragon) return null;
    const osd = OpenSeadragon({id: "viewer", prefixUrl: "/static/vendor/openseadragon/images/",
      tileSources: `/slide/${encodeURIComponent(id)}.dzi`, showNavigator: true, maxZoomPixelRatio: 2,
      gestureSettingsMouse: {clickToZoom: false}, crossOriginPolicy: false});
    const canvas = document.getElementById("layer"), ctx = canvas.getContext("2d");
    const colour = {"0": "#4678e6", "1+": "#fad200", "2+": "#ff8200", "3+": "#d71432"};
    let layers = null, tiles = {};
    const box = (x, y, w, h) => osd.viewport.imageToViewportRectangle(x, y, w, h);
    function draw() {
      const el = document.getElementById("viewer");
      canvas.width = el.clientWidth; canvas.height = el.clientHeight;
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      if (!layers || !osd.world.getItemCount()) return;
      const item = osd.world.getItemAt(0), toScreen = (x, y) => item.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
      const zoom = item.viewportToImageZoom(osd.viewport.getZoom(true));       // screen px per slide px
      if (document.getElementById("layer-heat").checked) {
        ctx.lineWidth = 2;
        for (const t of layers.tiles) {
          if (!t.score) continue;
          const a = toScreen(t.x, t.y), b = toScreen(t.x + t.w, t.y + t.h);
          ctx.strokeStyle = colour[t.score];
          ctx.globalAlpha = zoom > 0.2 ? 0.9 : 0.35;
          if (zoom > 0.2) ctx.strokeRect(a.x, a.y, b.x - a.x, b.y - a.y);
          else { ctx.fillStyle = colour[t.score]; ctx.fillRect(a.x, a.y, b.x - a.x, b.y - a.y); }
        }
        ctx.globalAlpha = 1;
      }
      if (document.getElementById("layer-cells").checked && zoom > 0.15) {
        const tl = item.viewerElementToImageCoordinates(new OpenSeadragon.Point(0, 0));
        const br = item.viewerElementToImageCoordinates(new OpenSeadragon.Point(canvas.width, canvas.height));
        const c = layers.cells, r = Math.max(3, (4.5 / layers.mpp) * zoom);         // a ring of 4.5 um
        ctx.lineWidth = 2;
        for (let i = 0; i < c.x.length; i++) {
          if (c.x[i] < tl.x || c.x[i] > br.x || c.y[i] < tl.y || c.y[i] > br.y) continue;
          const p = toScreen(c.x[i], c.y[i]);
          ctx.strokeStyle = colour[c.cls[i]];
          ctx.beginPath(); ctx.arc(p.x, p.y, r, 0, 2 * Math.PI); ctx.stroke();
        }
      }
    }
    api(`/api/cases/${encodeURIComponent(id)}/overlay`).then((o) => {
      layers = o; o.tiles.forEach((t) => (tiles[t.index] = t)); draw();
    });
    ["animation", "open", "resize", "update-viewport"].forEach((ev) => osd.addHandler(ev, draw));
    ["layer-cells", "layer-heat"].forEach((k) => document.getElementById(k).addEventListener("change", draw));
    return {
      osd,
      flyTo(x, y, w, h) { osd.viewport.fitBounds(box(x, y, w, h)); },
      flyToTile(index) { const t = tiles[index]; if (t) osd.viewport.fitBounds(box(t.x, t.y, t.w, t.h)); },
    };
  }

  const start = {cases: caseList, case: caseView}[document.body.dataset.page];
  if (start) start();
  return {caseList, caseView};
})();
