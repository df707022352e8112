// After "send a test nudge": ask the status endpoint every second until each phone has
// got it (or the delivery failed), and say so next to each partner's name.
(function () {
  "use strict";
  var box = document.getElementById("test");
  if (!box) return;
  var url = box.getAttribute("data-status-url");
  var words = { pending: "sending…", retrying: "retrying…", delivered: "got it ✓", failed: "did not arrive ✗" };
  var tries = 0;
  function show(state) {
    state.partners.forEach(function (p) {
      var li = box.querySelector('li[data-partner="' + p.id + '"] .phone-status');
      if (!li) return;
      var said = words[p.status] || p.status;
      if (p.answer) said += " · " + p.answer;
      li.textContent = said;
      li.className = "phone-status status-" + p.status;
    });
    return state.settled;
  }
  function poll() {
    tries += 1;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.json(); })
      .then(function (state) { if (!show(state) && tries < 120) setTimeout(poll, 1000); })
      .catch(function () { if (tries < 120) setTimeout(poll, 2000); });
  }
  poll();
})();
