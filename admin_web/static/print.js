// The Print button of printable pages (no inline scripts: the CSP forbids them).
(function () {
  "use strict";
  var button = document.getElementById("print-page");
  if (button) {
    button.addEventListener("click", function () { window.print(); });
  }
})();
