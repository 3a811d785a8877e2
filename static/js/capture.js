// The capture screen: keep the serial input reachable for a barcode reader, and a page viewer.
// Loaded by the capture templates (htmx runs it again after a boosted navigation: guard once).
(function () {
  "use strict";
  if (window.portalCaptureLoaded) {
    return;
  }
  window.portalCaptureLoaded = true;

  function serialInput() {
    return document.getElementById("serial-input");
  }

  function typingInField(target) {
    if (!target || !target.tagName) {
      return false;
    }
    var tag = target.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable;
  }

  // A handheld barcode reader is a keyboard: it "types" the serial and Enter. Whatever has the
  // focus (a button the clerk just clicked, the page itself), printable keys go to the serial input.
  document.addEventListener("keydown", function (evt) {
    var input = serialInput();
    if (!input || evt.ctrlKey || evt.altKey || evt.metaKey || evt.isComposing) {
      return;
    }
    if (evt.key === "Escape") {
      closeViewer();
      return;
    }
    if (typingInField(evt.target) || evt.key.length !== 1 || evt.key === " ") {
      return;
    }
    closeViewer();
    evt.preventDefault();
    input.value = evt.key;
    input.focus();
  });

  // After an answer to the serial form (a message in place), select the text so the next scan
  // replaces it.
  document.addEventListener("htmx:afterSwap", function (evt) {
    var input = serialInput();
    if (input && evt.detail.target && evt.detail.target.id === "serial-feedback") {
      input.focus();
      input.select();
    }
  });

  // Page viewer: a thumbnail opens the display-size image over the page; click or Escape closes.
  function closeViewer() {
    var open = document.getElementById("cap-viewer");
    if (open) {
      open.parentNode.removeChild(open);
      return true;
    }
    return false;
  }

  document.addEventListener("click", function (evt) {
    var link = evt.target.closest ? evt.target.closest("a.cap-thumb") : null;
    if (!link) {
      if (evt.target.closest && evt.target.closest("#cap-viewer")) {
        closeViewer();
      }
      return;
    }
    evt.preventDefault();
    closeViewer();
    var overlay = document.createElement("div");
    overlay.id = "cap-viewer";
    overlay.className = "cap-viewer";
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", "查看页面");
    var img = document.createElement("img");
    img.src = link.getAttribute("href");
    img.alt = "页面影像";
    var hint = document.createElement("div");
    hint.className = "cap-viewer-hint";
    hint.textContent = "点击任意处或按 Esc 关闭";
    overlay.appendChild(img);
    overlay.appendChild(hint);
    document.body.appendChild(overlay);
  });
})();
