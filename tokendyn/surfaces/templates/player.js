/* tokendyn's player: one canvas, the token cloud of a W-movie frame by frame.
   Data: a JSON element (steps, classes, texts, ...) and two base64 elements (int16 coordinates,
   uint16 radii). Token texts only ever reach the page through textContent or the canvas. */
window.tdplayerStart = window.tdplayerStart || function (root) {
  "use strict";
  const one = function (name) { return root.querySelector("." + name); };
  const data = JSON.parse(one("tdplayer-data").textContent);
  function bytes(name) {
    const el = one(name), text = el.textContent.trim();
    el.textContent = "";  // the decoded copy is all we keep
    if (Uint8Array.fromBase64) return Uint8Array.fromBase64(text);
    const raw = atob(text), out = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  const xy = new Int16Array(bytes("tdplayer-xy").buffer);
  let radii = null;  // decoded on first use (a hover), not before the first frame
  const nF = data.nF, nT = data.nT, nC = data.classNames.length, ids = data.ids, texts = data.text;
  const canvas = one("tdplayer-canvas"), ctx = canvas.getContext("2d", {alpha: false});
  const slider = one("tdplayer-scrub"), playButton = one("tdplayer-play"), label = one("tdplayer-label");
  const tip = one("tdplayer-tip"), search = one("tdplayer-search"), results = one("tdplayer-results");
  const pinsBox = one("tdplayer-pins"), speedBox = one("tdplayer-speed"), trailBox = one("tdplayer-trail");
  slider.max = nF - 1;

  // tokens of each class, drawn in one batch per colour
  const members = [];
  for (let c = 0; c < nC; c++) members.push([]);
  for (let t = 0; t < nT; t++) members[data.classes[t]].push(t);
  for (let c = 0; c < nC; c++) members[c] = Int32Array.from(members[c]);
  const state = {frame: 0, playing: false, drawn: 0, visible: data.classNames.map(function () { return true; }),
                 pinned: data.pinned.slice(), hover: -1, trail: data.trail, results: []};

  // geometry: a square plot with room for the axes on the left and below
  const W = canvas.width, H = canvas.height, left = 58, bottom = 44, top = 10, right = 10;
  const side = Math.min(W - left - right, H - top - bottom), cx = left + side / 2, cy = top + side / 2;
  const scale = side / 2 * 0.96 / 32767, unit = data.span / 32767;
  function sx(t, f) { return cx + xy[(f * nT + t) * 2] * scale; }
  function sy(t, f) { return cy - xy[(f * nT + t) * 2 + 1] * scale; }
  const ticks = (function () {
    const extent = data.span / 0.96, raw = extent / 2, mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const stepSize = [1, 2, 5, 10].map(function (m) { return m * mag; }).find(function (v) { return v >= raw; });
    const out = [];
    for (let v = -Math.floor(extent / stepSize) * stepSize; v <= extent + 1e-12; v += stepSize) out.push(v);
    return out;
  })();
  function tickText(v) { return Math.abs(v) < 1e-12 ? "0" : Number(v.toPrecision(3)).toString(); }

  function display(t) {
    if (!texts) return "#" + ids[t];
    return (texts[t] ? JSON.stringify(texts[t]) : "(no text)") + " #" + ids[t];
  }
  function radius(t, f) {
    if (radii === null) radii = bytes("tdplayer-radius");
    const code = radii[f * nT + t], lo = data.rlo[t];
    return code === 0 ? 0 : lo * Math.pow(data.rhi[t] / lo, (code - 1) / 254);
  }
  function fmtNum(v, digits) { return v === null ? null : v === 0 ? "0" : (Math.abs(v) >= 1e-3 && Math.abs(v) < 1e4 ? v.toPrecision(digits) : v.toExponential(digits - 1)); }

  function drawAxes(f) {
    ctx.strokeStyle = "#999"; ctx.lineWidth = 1; ctx.strokeRect(left + 0.5, top + 0.5, side, side);
    ctx.fillStyle = "#333"; ctx.font = "11px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "top";
    ctx.beginPath();
    for (const v of ticks) {
      const p = v / unit * scale;
      if (Math.abs(p) > side / 2) continue;
      ctx.moveTo(cx + p, top + side); ctx.lineTo(cx + p, top + side + 4);
      ctx.moveTo(left, cy - p); ctx.lineTo(left - 4, cy - p);
      ctx.fillText(tickText(v), cx + p, top + side + 6);
    }
    ctx.stroke();
    ctx.textAlign = "right"; ctx.textBaseline = "middle";
    for (const v of ticks) {
      const p = v / unit * scale;
      if (Math.abs(p) <= side / 2) ctx.fillText(tickText(v), left - 6, cy - p);
    }
    const e = data.explained.length > 1 ? data.explained[f] : data.explained[0];
    const pc = function (k) { return (data.projection === "aligned" ? "axis " : "PC") + (k + 1) + (e[k] === null ? "" : " (" + (e[k] * 100).toFixed(1) + "% of variance)"); };
    ctx.font = "12px sans-serif"; ctx.textAlign = "center"; ctx.textBaseline = "bottom";
    ctx.fillText(pc(0), cx, H - 4);
    ctx.save(); ctx.translate(14, cy); ctx.rotate(-Math.PI / 2); ctx.textBaseline = "middle";
    ctx.fillText(pc(1), 0, 0); ctx.restore();
  }

  function neighbours(p, f) {
    const stored = data.neighbours[String(p)];
    if (stored) return {how: "nearest in the full space", list: stored.slice(f * data.k, (f + 1) * data.k).filter(function (v) { return v >= 0; })};
    const k = data.k || 5, best = [], dist = [];
    const x0 = xy[(f * nT + p) * 2], y0 = xy[(f * nT + p) * 2 + 1];
    for (let t = 0; t < nT; t++) {
      if (t === p) continue;
      const dx = xy[(f * nT + t) * 2] - x0, dy = xy[(f * nT + t) * 2 + 1] - y0, d = dx * dx + dy * dy;
      if (best.length === k && d >= dist[k - 1]) continue;
      let i = best.length === k ? k - 1 : best.length;
      while (i > 0 && dist[i - 1] > d) { dist[i] = dist[i - 1]; best[i] = best[i - 1]; i--; }
      dist[i] = d; best[i] = t;
    }
    return {how: "nearest in the plane", list: best};
  }
  function updatePins() {
    const f = state.frame;
    pinsBox.querySelectorAll(".tdplayer-near").forEach(function (el) {
      const p = parseInt(el.dataset.token, 10);
      if (!data.finite[f]) { el.textContent = ""; return; }
      const n = neighbours(p, f);
      el.textContent = n.how + ": " + n.list.map(display).join(", ");
    });
  }
  function renderPins() {
    pinsBox.replaceChildren();
    state.pinned.forEach(function (p) {
      const box = document.createElement("div"), name = document.createElement("span");
      const drop = document.createElement("button"), near = document.createElement("div");
      box.className = "tdplayer-pin"; name.textContent = "pinned " + display(p) + " (" + data.classNames[data.classes[p]] + ")";
      drop.type = "button"; drop.textContent = "unpin";
      drop.addEventListener("click", function () { togglePin(p); });
      near.className = "tdplayer-near"; near.dataset.token = String(p);
      box.append(name, drop, near); pinsBox.append(box);
    });
    updatePins();
  }
  function togglePin(t) {
    const at = state.pinned.indexOf(t);
    if (at >= 0) state.pinned.splice(at, 1); else state.pinned.push(t);
    renderPins(); draw();
  }

  function showTip(t, mx, my) {
    const f = state.frame;
    const lines = [texts ? (texts[t] ? JSON.stringify(texts[t]) : "(no text)") : "(the movie holds no token text)",
                   "id " + ids[t] + " · " + data.classNames[data.classes[t]]];
    if (data.count) lines.push("count " + data.count[t] + " in the corpus");
    if (data.finite[f]) lines.push("radius ≈ " + radius(t, f).toPrecision(3) + " at step " + data.steps[f]);
    tip.textContent = lines.join("\n");
    tip.hidden = false;
    const k = canvas.clientWidth / W;
    tip.style.left = Math.min(mx * k + 14, canvas.clientWidth - 60) + "px";
    tip.style.top = (my * k + 14) + "px";
    state.tipAt = [mx, my];
  }
  function nearest(mx, my, within) {
    const f = state.frame;
    if (!data.finite[f]) return -1;
    let best = -1, bestD = within * within;
    for (const p of state.pinned) {  // a pinned token wins over one drawn on the same spot
      const dx = sx(p, f) - mx, dy = sy(p, f) - my, d = dx * dx + dy * dy;
      if (state.visible[data.classes[p]] && d <= bestD) { bestD = d; best = p; }
    }
    for (let c = 0; c < nC; c++) {
      if (!state.visible[c]) continue;
      const m = members[c];
      for (let i = 0; i < m.length; i++) {
        const dx = sx(m[i], f) - mx, dy = sy(m[i], f) - my, d = dx * dx + dy * dy;
        if (d < bestD) { bestD = d; best = m[i]; }
      }
    }
    return best;
  }
  function canvasPoint(e) {  // canvas pixels under the mouse (the border and any CSS scaling taken out)
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left - canvas.clientLeft) * W / canvas.clientWidth,
            (e.clientY - r.top - canvas.clientTop) * H / canvas.clientHeight];
  }
  function onScreen(t, f) {  // CSS pixels from the canvas's top-left corner, border included
    return [canvas.clientLeft + sx(t, f) * canvas.clientWidth / W, canvas.clientTop + sy(t, f) * canvas.clientHeight / H];
  }

  function draw() {
    const f = state.frame, base = f * nT * 2;
    state.drawn++;
    ctx.fillStyle = "#ffffff"; ctx.fillRect(0, 0, W, H);
    drawAxes(f);
    if (data.finite[f]) {
      for (let c = 0; c < nC; c++) {
        if (!state.visible[c]) continue;
        const m = members[c];
        ctx.fillStyle = data.colours[c];
        for (let i = 0; i < m.length; i++) {
          const b = base + 2 * m[i];
          ctx.fillRect((cx + xy[b] * scale - 1) | 0, (cy - xy[b + 1] * scale - 1) | 0, 2, 2);
        }
      }
      ctx.lineWidth = 1.5; ctx.strokeStyle = "#000000"; ctx.fillStyle = "#000000"; ctx.font = "12px sans-serif";
      ctx.textAlign = "left"; ctx.textBaseline = "alphabetic";
      for (const p of state.pinned) {
        ctx.beginPath();
        let open = false;
        for (let g = Math.max(0, f - state.trail); g <= f; g++) {
          if (!data.finite[g]) { open = false; continue; }
          if (open) ctx.lineTo(sx(p, g), sy(p, g)); else { ctx.moveTo(sx(p, g), sy(p, g)); open = true; }
        }
        ctx.stroke();
        ctx.beginPath(); ctx.arc(sx(p, f), sy(p, f), 4, 0, 2 * Math.PI); ctx.stroke();
        ctx.fillText(texts && texts[p] ? texts[p] : "#" + ids[p], sx(p, f) + 6, sy(p, f) - 6);
      }
    }
    const parts = ["step " + data.steps[f]], loss = fmtNum(data.loss[f], 4), lr = fmtNum(data.lr[f], 3);
    if (loss !== null) parts.push("loss " + loss);
    if (lr !== null) parts.push("lr " + lr);
    parts.push("(frame " + (f + 1) + " of " + nF + ", movie frame " + data.frames[f] + ")");
    if (!data.finite[f]) parts.push("W not finite (diverged)");
    label.textContent = parts.join("   ");
    slider.value = f;
    if (state.pinned.length) updatePins();
    if (state.hover >= 0 && !tip.hidden) showTip(state.hover, state.tipAt[0], state.tipAt[1]);
  }

  // playback, driven by requestAnimationFrame: "max" draws one frame per animation frame
  let last = 0, owed = 0;
  function speed() { return speedBox.value === "max" ? Infinity : parseFloat(speedBox.value); }
  function stop() { state.playing = false; playButton.textContent = "play"; }
  function tick(now) {
    if (!state.playing) return;
    const v = speed();
    let n = 1;
    if (v !== Infinity) { owed += Math.min(now - last, 250) / 1000 * v; n = Math.floor(owed); owed -= n; }
    last = now;
    if (n > 0) { state.frame = Math.min(nF - 1, state.frame + n); draw(); }
    if (state.frame >= nF - 1) { stop(); return; }
    requestAnimationFrame(tick);
  }
  function start() {
    if (state.frame >= nF - 1) state.frame = 0;
    state.playing = true; playButton.textContent = "pause"; owed = 0; last = performance.now();
    requestAnimationFrame(tick);
  }
  function setFrame(f) { stop(); state.frame = Math.max(0, Math.min(nF - 1, f)); draw(); }
  playButton.addEventListener("click", function () { if (state.playing) stop(); else start(); });
  one("tdplayer-back").addEventListener("click", function () { setFrame(state.frame - 1); });
  one("tdplayer-fwd").addEventListener("click", function () { setFrame(state.frame + 1); });
  slider.addEventListener("input", function () { setFrame(parseInt(slider.value, 10)); });
  trailBox.addEventListener("input", function () {
    const v = parseInt(trailBox.value, 10);
    if (v >= 0) { state.trail = v; draw(); }
  });
  root.querySelectorAll(".tdplayer-classes input").forEach(function (box) {
    box.addEventListener("change", function () {
      state.visible[parseInt(box.dataset.class, 10)] = box.checked;
      if (state.hover >= 0 && !state.visible[data.classes[state.hover]]) { state.hover = -1; tip.hidden = true; }
      draw();
    });
  });
  canvas.addEventListener("mousemove", function (e) {
    const pt = canvasPoint(e), t = nearest(pt[0], pt[1], 8);
    state.hover = t;
    if (t < 0) tip.hidden = true; else showTip(t, pt[0], pt[1]);
  });
  canvas.addEventListener("mouseleave", function () { state.hover = -1; tip.hidden = true; });
  canvas.addEventListener("click", function (e) {
    const pt = canvasPoint(e), t = nearest(pt[0], pt[1], 8);
    if (t >= 0) togglePin(t);
  });

  // search by text or id, as the user types: "the" finds "▁the"
  const folded = texts ? texts.map(function (s) { return s.replace(/^[\u2581\u0120 ]+/, "").toLowerCase(); }) : null;
  function find(q) {
    q = q.trim();
    if (!q) return [];
    const low = q.replace(/^[\u2581\u0120 ]+/, "").toLowerCase(), number = /^\d+$/.test(q), hits = [];
    for (let t = 0; t < nT; t++) {
      let score = 9;
      if (number && String(ids[t]) === q) score = 0;
      else if (texts && texts[t] === q) score = 1;
      else if (folded && low && folded[t] === low) score = 2;
      else if (folded && low && folded[t].startsWith(low)) score = 3;
      else if (folded && low && folded[t].includes(low)) score = 4;
      else if (number && String(ids[t]).startsWith(q)) score = 5;
      if (score < 9) hits.push([score, -(data.count ? data.count[t] : 0), ids[t], t]);
    }
    hits.sort(function (a, b) { return a[0] - b[0] || a[1] - b[1] || a[2] - b[2]; });
    return hits.slice(0, 30).map(function (h) { return h[3]; });
  }
  function renderResults() {
    state.results = find(search.value);
    results.replaceChildren();
    for (const t of state.results) {
      const li = document.createElement("li");
      li.textContent = display(t) + " · " + data.classNames[data.classes[t]] + (data.count ? " · " + data.count[t] : "");
      li.dataset.token = String(t);
      li.addEventListener("click", function () { if (state.pinned.indexOf(t) < 0) togglePin(t); });
      results.append(li);
    }
  }
  search.addEventListener("input", renderResults);
  search.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && state.results.length && state.pinned.indexOf(state.results[0]) < 0) togglePin(state.results[0]);
  });

  const api = {state: state, data: data, draw: draw, play: start, pause: stop,
               speed: function (v) { speedBox.value = String(v); }, setFrame: setFrame, togglePin: togglePin,
               find: find, nearest: nearest,
               screen: function (t, f) { return onScreen(t, f === undefined ? state.frame : f); },
               pixels: function (colour, tol) {  // how many pixels of the canvas are within tol of "#rrggbb"
                 const img = ctx.getImageData(0, 0, W, H).data, r = parseInt(colour.slice(1, 3), 16),
                   g = parseInt(colour.slice(3, 5), 16), b = parseInt(colour.slice(5, 7), 16);
                 let n = 0;
                 tol = tol || 0;
                 for (let i = 0; i < img.length; i += 4) {
                   if (Math.abs(img[i] - r) <= tol && Math.abs(img[i + 1] - g) <= tol && Math.abs(img[i + 2] - b) <= tol) n++;
                 }
                 return n;
               }};
  root.tdplayer = api;
  window.tdplayers = window.tdplayers || {};
  window.tdplayers[root.id] = api;
  renderPins();
  draw();
  window.tdplayerReady = performance.now();
};
