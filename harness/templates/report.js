// Large text (repro.py, the hover titles) comes deflated and base64-encoded.
function unpack(node) {
  var bytes = Uint8Array.from(atob(node.dataset.packed), function (c) { return c.charCodeAt(0); });
  var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Response(stream).text();
}
var ready = [];
var reproNode = document.getElementById("repro");
if (reproNode && reproNode.dataset.packed && window.DecompressionStream) {
  ready.push(unpack(reproNode).then(function (html) { reproNode.innerHTML = html; }));
}
var tipsNode = document.getElementById("tips");
if (tipsNode && tipsNode.dataset.packed && window.DecompressionStream) {
  ready.push(unpack(tipsNode).then(function (text) {
    var tips = JSON.parse(text);
    document.querySelectorAll("figure[data-tips]").forEach(function (figure) {
      var table = tips[figure.dataset.tips];
      if (!table) { return; }
      figure.querySelectorAll("[data-c]").forEach(function (cell) {
        var ij = cell.getAttribute("data-c").split(" ");
        var row = table[Number(ij[0])];
        if (!row || row[Number(ij[1])] === undefined) { return; }
        var title = document.createElementNS("http://www.w3.org/2000/svg", "title");
        title.textContent = row[Number(ij[1])];
        cell.insertBefore(title, cell.firstChild);
      });
    });
  }));
}
Promise.all(ready).then(function () { document.body.dataset.ready = "yes"; });
document.querySelectorAll("button.copy").forEach(function (button) {
  button.addEventListener("click", function () {
    var source = document.getElementById(button.dataset.target);
    var text = source.textContent;
    var done = function (ok) {
      button.textContent = ok ? "Copied" : "Select and press Ctrl+C";
      button.dataset.copied = ok ? "yes" : "selected";  // stays after the label reverts
      setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    var fallback = function () {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      done(ok);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { done(true); }, fallback);
    } else {
      fallback();
    }
  });
});
var filter = document.getElementById("filter");
if (filter) {
  filter.addEventListener("input", function () {
    var words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    document.querySelectorAll("#findings tbody tr").forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var keep = words.every(function (w) { return text.indexOf(w) >= 0; });
      row.hidden = !keep;
      if (keep) { shown += 1; }
    });
    document.getElementById("shown").textContent = shown;
  });
}
