// Draws every .chart from its data-fig (a plotly figure), and wires the action forms (token-protected POSTs).
(function () {
  function draw() {
    document.querySelectorAll(".chart[data-fig]").forEach(function (div) {
      var fig = JSON.parse(div.getAttribute("data-fig"));
      Plotly.newPlot(div, fig.data, fig.layout, {displayModeBar: false, responsive: true});
    });
  }
  function wire() {
    document.querySelectorAll("form.action").forEach(function (form) {
      var tokenInput = form.querySelector("input[name=token]");
      if (tokenInput && sessionStorage.getItem("raymlops-token")) tokenInput.value = sessionStorage.getItem("raymlops-token");
      form.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var body = {};
        form.querySelectorAll("[data-field]").forEach(function (el) {
          var k = el.getAttribute("data-field");
          if (el.type === "checkbox") body[k] = el.checked;
          else if (el.getAttribute("data-type") === "int") body[k] = parseInt(el.value, 10);
          else body[k] = el.value;
        });
        var token = tokenInput ? tokenInput.value : "";
        sessionStorage.setItem("raymlops-token", token);
        var out = form.querySelector(".result");
        fetch(form.getAttribute("data-url"), {
          method: "POST", headers: {"content-type": "application/json", "x-raymlops-token": token},
          body: JSON.stringify(body)
        }).then(function (r) {
          return r.json().then(function (j) { return {ok: r.ok, status: r.status, body: j}; },
                               function () { return {ok: false, status: r.status, body: {detail: r.statusText}}; });
        }).catch(function (e) {
          return {ok: false, status: 0, body: {detail: "the console did not answer (" + e + ")"}};
        }).then(function (res) {
          if (res.ok) {
            out.className = "result ok";
            out.textContent = res.body.alias !== undefined
              ? "@" + res.body.alias + " -> version " + res.body.version + " (" + res.body.reason + ")"
              : res.body.action + " requested (" + res.body.id + "); the app's traffic controller applies it within a second";
            setTimeout(function () { window.location.reload(); }, 1500);
          } else {
            var d = res.body.detail;
            out.className = "result bad";
            out.textContent = "refused (" + res.status + "): " + (Array.isArray(d) ? d.map(function (x) { return x.msg; }).join("; ") : d);
          }
        });
      });
    });
  }
  document.addEventListener("DOMContentLoaded", function () { draw(); wire(); });
})();
