// Small progressive enhancements; the portal works with htmx alone.
document.addEventListener("htmx:beforeSwap", function (evt) {
  // 4xx answers carry a Chinese message fragment: show it in place instead of failing silently.
  var status = evt.detail.xhr.status;
  if (status >= 400 && status < 500) {
    evt.detail.shouldSwap = true;
    evt.detail.isError = false;
  }
});
document.addEventListener("htmx:sendError", function () {
  alert("网络连接失败，请检查网络后重试。");
});
