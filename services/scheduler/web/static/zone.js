// Fill the time zone field with the browser's own zone (the person can change it).
(function () {
  "use strict";
  var field = document.getElementById("timezone");
  if (!field || field.value) return;
  try { field.value = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { /* typed by hand */ }
})();
