/* The flag browser of report.html (poisonguard/report/flag_browser.py builds its data).
   Allowed by the page's Content-Security-Policy through its sha256 hash: any change to this file
   changes the hash, which the page computes when it is written. Every sample's id, class name,
   reason and text is untrusted: elements are built with textContent, never from HTML. */
(function () {
  "use strict";
  var root = document.getElementById("flags");
  var source = document.getElementById("fb-data");
  if (!root || !source) { return; }
  var data = JSON.parse(source.textContent);
  var rows = data.rows;
  var n = rows.index.length;
  var $ = function (id) { return document.getElementById(id); };

  /* -- decisions: row position -> {decision: "keep" | "remove", note: string} ------------- */
  var decisions = new Map();
  var storageKey = data.key ? "poisonguard-decisions:" + data.key : "";
  var byIndex = new Map();
  for (var k = 0; k < n; k++) { byIndex.set(rows.index[k], k); }

  function loadDecisions() {
    if (!storageKey) { return; }
    try {
      var saved = JSON.parse(window.localStorage.getItem(storageKey) || "{}");
      Object.keys(saved).forEach(function (index) {
        var at = byIndex.get(Number(index));
        var entry = saved[index];
        if (at !== undefined && entry && (entry[0] === "keep" || entry[0] === "remove")) {
          decisions.set(at, { decision: entry[0], note: String(entry[1] || "") });
        }
      });
    } catch (err) { /* no storage (private window, file: origin refused): decisions live here */ }
  }

  function saveDecisions() {
    if (!storageKey) { return; }
    var out = {};
    decisions.forEach(function (value, at) { out[rows.index[at]] = [value.decision, value.note]; });
    try { window.localStorage.setItem(storageKey, JSON.stringify(out)); } catch (err) { /* see load */ }
  }

  /* -- CSV export, read back by poisonguard sanitize --decisions ---------------------------- */
  /* poisonguard/csv_safety.py's rule: a cell starting with = + - @ tab or carriage return that is
     not a number, or starting with a quote, gets a quote in front; the reader removes one. */
  var RISKY = "=+-@\t\r'";
  var NUMBER = /^[+-]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|inf(?:inity)?|nan)$/i;
  function inert(text) {
    if (text.length && RISKY.indexOf(text.charAt(0)) >= 0 &&
        (text.charAt(0) === "'" || !NUMBER.test(text))) {
      return "'" + text;
    }
    return text;
  }
  function csvField(text) { return "\"" + inert(String(text)).replace(/"/g, "\"\"") + "\""; }

  function decisionsCsv() {
    var lines = ["id,decision,note"];
    for (var at = 0; at < n; at++) {
      var value = decisions.get(at);
      if (value) {
        lines.push([rows.id[at], value.decision, value.note].map(csvField).join(","));
      }
    }
    return lines.join("\r\n") + "\r\n";
  }

  function exportDecisions() {
    var blob = new Blob(["\ufeff", decisionsCsv()], { type: "text/csv;charset=utf-8" });
    var url = URL.createObjectURL(blob);
    var link = document.createElement("a");
    link.href = url;
    link.download = "decisions.csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(function () { URL.revokeObjectURL(url); }, 60000);
  }

  /* -- filtering, sorting, paging -------------------------------------------------------- */
  var state = { cls: -1, finding: -1, detector: -1, decision: "all", query: "", sort: "score",
                page: 0, size: 100 };
  var matching = [];
  var groupCounts = new Map();

  function hasDetector(at, d) {
    var fired = rows.fired[at];
    if (d === -2) { return fired.length === 0; }
    return fired.indexOf(d) >= 0;
  }

  function refilter() {
    var query = state.query.toLowerCase();
    matching = [];
    for (var at = 0; at < n; at++) {
      if (state.cls >= 0 && rows.label[at] !== state.cls) { continue; }
      if (state.finding >= 0 && rows.finding[at] !== state.finding) { continue; }
      if (state.detector !== -1 && !hasDetector(at, state.detector)) { continue; }
      if (state.decision !== "all") {
        var value = decisions.get(at);
        var decided = value ? value.decision : "undecided";
        if (decided !== state.decision) { continue; }
      }
      if (query && rows.id[at].toLowerCase().indexOf(query) < 0) { continue; }
      matching.push(at);
    }
    /* rows come highest score first */
    if (state.sort === "score-asc") {
      matching.reverse();
    } else if (state.sort === "index") {
      matching.sort(function (a, b) { return rows.index[a] - rows.index[b]; });
    }
    groupCounts = new Map();
    matching.forEach(function (at) {
      var g = rows.group[at];
      groupCounts.set(g, (groupCounts.get(g) || 0) + 1);
    });
  }

  /* -- thumbnails: sprite sheets decoded once, cells drawn on canvases ------------------- */
  var sprites = data.sprites || null;
  var sheetImages = [];
  var scale = 1;
  if (sprites) {
    var longest = Math.max(sprites.cell[0], sprites.cell[1]);
    scale = Math.max(1, Math.floor(96 / longest));
  }
  function drawThumb(canvas, k) {
    var sheet = Math.floor(k / sprites.per_sheet);
    var cell = k % sprites.per_sheet;
    var w = sprites.cell[0], h = sprites.cell[1];
    var x = (cell % sprites.columns) * w, y = Math.floor(cell / sprites.columns) * h;
    var image = sheetImages[sheet];
    if (!image) {
      image = new Image();
      image.pending = [];
      image.onload = function () {
        image.pending.forEach(function (draw) { draw(); });
        image.pending = null;
      };
      image.src = sprites.sheets[sheet];
      sheetImages[sheet] = image;
    }
    var draw = function () {
      var context = canvas.getContext("2d");
      context.imageSmoothingEnabled = false;
      context.drawImage(image, x, y, w, h, 0, 0, w * scale, h * scale);
    };
    if (image.pending) { image.pending.push(draw); } else { draw(); }
  }

  /* -- rendering ------------------------------------------------------------------------- */
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function count(value) { return value.toLocaleString("en-US"); }

  function formatScore(value) { return value === null ? "\u2014" : value.toFixed(4); }

  function firedText(at) {
    var names = rows.fired[at].map(function (d) { return data.detectors[d]; });
    return names.length ? "fired: " + names.join(", ") : "no detector fired";
  }

  function decisionControls(at, item) {
    var box = el("div", "fb-decide");
    ["keep", "remove"].forEach(function (choice) {
      var button = el("button", "fb-" + choice, choice);
      button.type = "button";
      button.setAttribute("data-decision", choice);
      button.addEventListener("click", function () { decide(at, choice, item); });
      box.appendChild(button);
    });
    var note = el("input", "fb-note");
    note.type = "text";
    note.placeholder = "note";
    note.setAttribute("aria-label", "note on sample " + rows.index[at]);
    var value = decisions.get(at);
    note.value = value ? value.note : "";
    note.addEventListener("change", function () {
      var current = decisions.get(at);
      if (current) { current.note = note.value; saveDecisions(); }
    });
    box.appendChild(note);
    return box;
  }

  function showDecision(at, item) {
    var value = decisions.get(at);
    item.classList.toggle("fb-kept", !!value && value.decision === "keep");
    item.classList.toggle("fb-removed", !!value && value.decision === "remove");
    item.setAttribute("data-decided", value ? value.decision : "");
    item.querySelectorAll(".fb-decide button").forEach(function (button) {
      var pressed = !!value && value.decision === button.getAttribute("data-decision");
      button.setAttribute("aria-pressed", String(pressed));
    });
  }

  function decide(at, choice, item) {
    var value = decisions.get(at);
    if (value && value.decision === choice) {
      decisions.delete(at);  /* a second click takes the decision back */
    } else {
      var note = item.querySelector(".fb-note");
      decisions.set(at, { decision: choice, note: note ? note.value : "" });
    }
    saveDecisions();
    showDecision(at, item);
    showTally();
  }

  function cardHead(at) {
    var head = el("div", "fb-head");
    head.appendChild(el("span", "fb-id", rows.id[at]));
    head.appendChild(el("span", "fb-meta", "#" + rows.index[at] + " \u00b7 " +
      data.classes[rows.label[at]] + " \u00b7 score " + formatScore(rows.score[at])));
    if (rows.predicted && rows.predicted[at] !== rows.label[at] && rows.predicted[at] >= 0) {
      head.appendChild(el("span", "fb-predicted", "predicted " + data.classes[rows.predicted[at]]));
    }
    head.appendChild(el("span", "fb-fired", firedText(at)));
    return head;
  }

  function imageCard(at) {
    var item = el("figure", "fb-item fb-card");
    if (sprites && at < sprites.count) {
      var canvas = el("canvas", "fb-thumb");
      canvas.width = sprites.cell[0] * scale;
      canvas.height = sprites.cell[1] * scale;
      drawThumb(canvas, at);
      item.appendChild(canvas);
    } else {
      item.appendChild(el("div", "fb-nothumb", "no thumbnail (only the " +
        count(sprites ? sprites.count : 0) + " highest scores have one)"));
    }
    var caption = el("figcaption");
    caption.appendChild(cardHead(at));
    item.appendChild(caption);
    return item;
  }

  function textCard(at) {
    var item = el("article", "fb-item fb-card fb-text");
    item.appendChild(cardHead(at));
    var text = rows.text[at], marks = rows.marks[at];
    var p = el("p", "fb-excerpt");
    var from = 0;
    for (var m = 0; m < marks.length; m += 2) {
      p.appendChild(document.createTextNode(text.slice(from, marks[m])));
      p.appendChild(el("mark", "", text.slice(marks[m], marks[m + 1])));
      from = marks[m + 1];
    }
    p.appendChild(document.createTextNode(text.slice(from)));
    item.appendChild(p);
    return item;
  }

  function tableOf(positions) {
    var table = el("table", "fb-table");
    var head = el("tr");
    var predicted = !!rows.predicted;
    ["Index", "Id", "Label"].concat(predicted ? ["Predicted"] : [])
      .concat(["Score", "Fired"]).concat(data.columns).concat(["Decision"])
      .forEach(function (name) { head.appendChild(el("th", "", name)); });
    var thead = el("thead");
    thead.appendChild(head);
    table.appendChild(thead);
    var body = el("tbody");
    positions.forEach(function (at) {
      var tr = el("tr", "fb-item");
      tr.appendChild(el("td", "num", String(rows.index[at])));
      tr.appendChild(el("td", "id fb-id", rows.id[at]));
      tr.appendChild(el("td", "", data.classes[rows.label[at]]));
      if (predicted) {
        var other = rows.predicted[at] !== rows.label[at] && rows.predicted[at] >= 0;
        tr.appendChild(el("td", other ? "fb-predicted" : "", other ?
          data.classes[rows.predicted[at]] : "\u2014"));
      }
      tr.appendChild(el("td", "num", formatScore(rows.score[at])));
      tr.appendChild(el("td", "fb-fired", firedText(at)));
      rows.values[at].forEach(function (v) {
        tr.appendChild(el("td", "num", v === null ? "\u2014" : String(v)));
      });
      var cell = el("td");
      cell.appendChild(decisionControls(at, tr));
      tr.appendChild(cell);
      tr.setAttribute("data-index", String(rows.index[at]));
      showDecision(at, tr);
      body.appendChild(tr);
    });
    table.appendChild(body);
    return table;
  }

  function showTally() {
    var keep = 0, remove = 0;
    decisions.forEach(function (value) { if (value.decision === "keep") { keep++; } else { remove++; } });
    $("fb-tally").textContent = count(keep) + " keep, " + count(remove) + " remove decided";
    $("fb-export").disabled = keep + remove === 0;
  }

  function render() {
    var list = $("fb-list");
    var pages = Math.max(1, Math.ceil(matching.length / state.size));
    state.page = Math.min(state.page, pages - 1);
    var start = state.page * state.size;
    var shown = matching.slice(start, start + state.size);
    list.textContent = "";
    /* the page's samples, grouped by reason in order of first appearance */
    var order = [], members = new Map();
    shown.forEach(function (at) {
      var g = rows.group[at];
      if (!members.has(g)) { members.set(g, []); order.push(g); }
      members.get(g).push(at);
    });
    order.forEach(function (g) {
      var group = el("section", "fb-group");
      var header = el("h3", "fb-reason", data.groups[g] || "flagged (no reason recorded)");
      group.appendChild(header);
      var positions = members.get(g);
      group.appendChild(el("p", "muted", count(positions.length) + " shown here of the " +
        count(groupCounts.get(g)) + " matching samples flagged for this reason"));
      if (data.kind === "table") {
        group.appendChild(tableOf(positions));
      } else {
        var grid = el("div", data.kind === "image" ? "fb-grid" : "fb-texts");
        positions.forEach(function (at) {
          var item = data.kind === "image" ? imageCard(at) : textCard(at);
          item.setAttribute("data-index", String(rows.index[at]));
          item.appendChild(decisionControls(at, item));
          showDecision(at, item);
          grid.appendChild(item);
        });
        group.appendChild(grid);
      }
      list.appendChild(group);
    });
    if (!shown.length) { list.appendChild(el("p", "muted", "No flagged sample matches these filters.")); }
    $("fb-status").textContent = matching.length ?
      "Showing " + count(start + 1) + "\u2013" + count(start + shown.length) + " of " +
      count(matching.length) + " matching (" + count(n) + " flagged)." :
      "0 of " + count(n) + " flagged samples match.";
    $("fb-page").textContent = "page " + count(state.page + 1) + " of " + count(pages);
    $("fb-prev").disabled = state.page === 0;
    $("fb-next").disabled = state.page >= pages - 1;
    showTally();
  }

  function update() { refilter(); render(); }

  function bindSelect(id, key, parse) {
    $(id).addEventListener("change", function (event) {
      state[key] = parse(event.target.value);
      state.page = 0;
      update();
    });
  }
  bindSelect("fb-class", "cls", Number);
  bindSelect("fb-finding", "finding", Number);
  bindSelect("fb-detector", "detector", Number);
  bindSelect("fb-decision", "decision", String);
  bindSelect("fb-sort", "sort", String);
  bindSelect("fb-size", "size", Number);
  $("fb-query").addEventListener("input", function (event) {
    state.query = event.target.value;
    state.page = 0;
    update();
  });
  $("fb-prev").addEventListener("click", function () { state.page--; render(); });
  $("fb-next").addEventListener("click", function () { state.page++; render(); });
  function markShown(choice) {
    var start = state.page * state.size;
    matching.slice(start, start + state.size).forEach(function (at) {
      if (choice) { decisions.set(at, { decision: choice, note: (decisions.get(at) || {}).note || "" }); }
      else { decisions.delete(at); }
    });
    saveDecisions();
    render();
  }
  $("fb-keep-page").addEventListener("click", function () { markShown("keep"); });
  $("fb-remove-page").addEventListener("click", function () { markShown("remove"); });
  $("fb-clear-page").addEventListener("click", function () { markShown(null); });
  $("fb-export").addEventListener("click", exportDecisions);

  loadDecisions();
  root.classList.add("fb-ready");
  update();
  if (window.performance && performance.mark) { performance.mark("flag-browser-rendered"); }
})();
