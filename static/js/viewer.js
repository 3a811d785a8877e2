// The archive page viewer: page through, zoom, rotate, fit, compare versions side by side.
// Every image is rendered and watermarked by the server; this script only lays it out.
// CSP: loaded from 'self', no inline script, no eval. Works after hx-boost navigation too:
// the script may run several times, the document-level listeners are added once.
(function () {
  "use strict";
  if (window.portalViewer) { window.portalViewer.init(); return; }

  var ZOOM_STEP = 1.25, ZOOM_MIN = 0.1, ZOOM_MAX = 6;
  // View state shared by both panes; kept across page changes except the rotation.
  var state = { mode: "page", zoom: 1, rotation: 0 };
  var MODE_LABELS = { page: "适合页面", width: "适合宽度", height: "适合高度" };

  function root() { return document.getElementById("viewer"); }
  function $(id) { return document.getElementById(id); }
  function links() { var strip = $("viewer-strip"); return strip ? Array.prototype.slice.call(strip.querySelectorAll("a[data-src]")) : []; }
  function currentIndex() { var v = root(); return v ? parseInt(v.getAttribute("data-index") || "0", 10) : 0; }

  function layoutPane(img) {
    if (!img || !img.naturalWidth) return null;
    var scroller = img.closest(".viewer-scroll");
    var canvas = img.parentNode;
    var turned = state.rotation % 180 !== 0;
    var nw = img.naturalWidth, nh = img.naturalHeight;
    var bw = turned ? nh : nw, bh = turned ? nw : nh;  // bounding box of the turned image
    var cw = Math.max(scroller.clientWidth - 16, 50), ch = Math.max(scroller.clientHeight - 16, 50);
    var scale = state.mode === "width" ? cw / bw : state.mode === "height" ? ch / bh
      : state.mode === "page" ? Math.min(cw / bw, ch / bh) : state.zoom;
    img.style.width = Math.round(nw * scale) + "px";
    img.style.height = Math.round(nh * scale) + "px";
    img.style.transform = "translate(-50%, -50%) rotate(" + state.rotation + "deg)";
    canvas.style.width = Math.round(bw * scale) + "px";
    canvas.style.height = Math.round(bh * scale) + "px";
    return scale;
  }

  function layout() {
    var scale = layoutPane($("viewer-main"));
    var pane = $("viewer-compare-pane");
    if (pane && !pane.hidden) layoutPane($("viewer-compare"));
    var label = $("viewer-zoom");
    if (label && scale) {
      label.textContent = MODE_LABELS[state.mode] || Math.round(scale * 100) + "%";
    }
    var v = root();
    if (v) v.setAttribute("data-rotation", String(state.rotation));
  }

  function currentScale() {
    var img = $("viewer-main");
    if (!img || !img.naturalWidth) return state.zoom;
    return parseFloat(img.style.width) / img.naturalWidth || state.zoom;
  }

  function zoom(factor) {
    state.zoom = Math.min(ZOOM_MAX, Math.max(ZOOM_MIN, currentScale() * factor));
    state.mode = "zoom";
    layout();
  }

  function fit(mode) { state.mode = mode; layout(); }

  function rotate() { state.rotation = (state.rotation + 90) % 360; layout(); }

  function setCompare(version) {
    var pane = $("viewer-compare-pane"), img = $("viewer-compare"), caption = $("viewer-compare-caption");
    if (!pane || !img) return;
    if (!version) {
      pane.hidden = true;
      img.removeAttribute("src");
      if (caption) caption.textContent = "";
    } else {
      img.src = version.src;
      if (caption) caption.textContent = version.label;
      pane.hidden = false;
    }
    layout();
  }

  function fillVersions(link) {
    var select = $("viewer-compare-select");
    if (!select) return;
    var versions = JSON.parse(link.getAttribute("data-versions") || "[]");
    while (select.options.length > 1) select.remove(1);
    versions.forEach(function (v) { select.add(new Option(v.label, String(v.id))); });
    select.value = "";
    select.disabled = versions.length === 0;
    var hidden = $("viewer-compare-page");
    if (hidden) hidden.value = link.getAttribute("data-page-id");
  }

  function show(index) {
    var all = links();
    if (!all.length) return;
    index = Math.max(0, Math.min(all.length - 1, index));
    var link = all[index];
    var v = root();
    v.setAttribute("data-index", String(index));
    all.forEach(function (a, i) { a.classList.toggle("active", i === index); });
    var img = $("viewer-main");
    if (img.getAttribute("src") !== link.getAttribute("data-src")) img.src = link.getAttribute("data-src");
    $("viewer-main-caption").textContent = link.getAttribute("data-label");
    $("viewer-label").textContent = link.getAttribute("data-label");
    $("viewer-position").textContent = "第 " + (index + 1) + " / " + all.length + " 页";
    var prev = $("viewer-prev"), next = $("viewer-next");
    prev.classList.toggle("disabled", index === 0);
    next.classList.toggle("disabled", index === all.length - 1);
    prev.href = index > 0 ? all[index - 1].href : "#";
    next.href = index < all.length - 1 ? all[index + 1].href : "#";
    state.rotation = 0;
    fillVersions(link);
    setCompare(null);
    link.scrollIntoView({ block: "nearest" });
    if (window.history && window.history.replaceState) window.history.replaceState(window.history.state, "", link.href);
    if (index < all.length - 1) { var preload = new Image(); preload.src = all[index + 1].getAttribute("data-src"); }
  }

  function act(action) {
    switch (action) {
      case "prev": show(currentIndex() - 1); break;
      case "next": show(currentIndex() + 1); break;
      case "zoom-in": zoom(ZOOM_STEP); break;
      case "zoom-out": zoom(1 / ZOOM_STEP); break;
      case "fit-width": fit("width"); break;
      case "fit-height": fit("height"); break;
      case "fit-page": fit("page"); break;
      case "rotate": rotate(); break;
      default: return false;
    }
    return true;
  }

  var KEYS = {
    ArrowLeft: "prev", PageUp: "prev", ArrowRight: "next", PageDown: "next",
    "+": "zoom-in", "=": "zoom-in", "-": "zoom-out", "_": "zoom-out",
    r: "rotate", R: "rotate", w: "fit-width", W: "fit-width", h: "fit-height", H: "fit-height",
    f: "fit-page", F: "fit-page", "0": "fit-page"
  };

  function onKey(event) {
    if (!root() || event.ctrlKey || event.metaKey || event.altKey) return;
    var tag = (event.target && event.target.tagName) || "";
    if (tag === "INPUT" || tag === "SELECT" || tag === "TEXTAREA" || (event.target && event.target.isContentEditable)) return;
    var action = KEYS[event.key];
    if (action && act(action)) event.preventDefault();
  }

  function onClick(event) {
    if (!root()) return;
    var target = event.target.closest ? event.target.closest("[data-action], #viewer-strip a[data-src]") : null;
    if (!target || !root().contains(target)) return;
    if (target.hasAttribute("data-action")) {
      event.preventDefault();
      act(target.getAttribute("data-action"));
    } else {
      event.preventDefault();
      show(links().indexOf(target));
    }
  }

  function onChange(event) {
    if (!root() || event.target.id !== "viewer-compare-select") return;
    var link = links()[currentIndex()];
    var versions = JSON.parse(link.getAttribute("data-versions") || "[]");
    var chosen = versions.filter(function (v) { return String(v.id) === event.target.value; })[0];
    setCompare(chosen || null);
  }

  function init() {
    var v = root();
    if (!v || v.getAttribute("data-ready") === "1") return;
    v.setAttribute("data-ready", "1");
    v.classList.add("js-viewer");
    state.mode = "page"; state.zoom = 1; state.rotation = 0;
    ["viewer-main", "viewer-compare"].forEach(function (id) {
      var img = $(id);
      if (img) img.addEventListener("load", layout);
    });
    var select = $("viewer-compare-select");
    if (select) select.disabled = select.options.length <= 1;
    layout();
  }

  window.portalViewer = { init: init, show: show, state: state };
  document.addEventListener("keydown", onKey);
  document.addEventListener("click", onClick);
  document.addEventListener("change", onChange);
  window.addEventListener("resize", function () { if (root()) layout(); });
  document.addEventListener("htmx:load", init);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
