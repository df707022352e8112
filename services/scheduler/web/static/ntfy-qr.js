// The ntfy QR code and "subscribe" link follow the topic field as a partner edits it:
// the code is drawn by the server (GET /v1/channel-forms/ntfy-qr.svg), so this only swaps
// an image. Without script, the code shown is that of the topic first offered.
(function () {
  "use strict";
  var field = document.getElementById("topic");
  var box = document.getElementById("ntfy-qr");
  var link = document.getElementById("ntfy-subscribe");
  if (!field || !box || !link) return;
  var valid = /^[A-Za-z0-9_-]{1,64}$/;  // the server's topic rule (channel_forms.ntfy_url)
  var timer = null;
  function follow() {
    var topic = field.value.trim();
    var ok = valid.test(topic);
    box.hidden = !ok;
    link.hidden = !ok;
    if (!ok || box.getAttribute("data-topic") === topic) return;
    var img = document.createElement("img");
    img.src = box.getAttribute("data-src") + "?topic=" + encodeURIComponent(topic);
    img.alt = "";
    img.width = img.height = 192;
    box.replaceChildren(img);
    box.setAttribute("data-topic", topic);
    link.href = link.getAttribute("data-template").replace("__topic__", encodeURIComponent(topic));
  }
  field.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(follow, 250);  // one request per pause in typing, not per key
  });
})();
