// syncd console: confirmations and "select all"; every page works without it.
"use strict";
document.addEventListener("click", function (ev) {
  var el = ev.target.closest("[data-confirm]");
  if (el && !window.confirm(el.getAttribute("data-confirm"))) { ev.preventDefault(); }
  var back = ev.target.closest("[data-back]");
  if (back) { ev.preventDefault(); history.back(); }
});
document.addEventListener("change", function (ev) {
  if (!ev.target.matches("[data-select-all]")) { return; }
  var boxes = ev.target.closest("form").querySelectorAll("input[name=id]");
  boxes.forEach(function (b) { b.checked = ev.target.checked; });
});
