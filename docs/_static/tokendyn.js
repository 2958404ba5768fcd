// Long names in inline code (freeze_onset_schedule_driven, tokendyn.stats.bootstrap_mean) may break
// after "_", "." and "," (a <wbr>), so that tables and lines fit the text's width without splitting words
// at arbitrary letters.
document.addEventListener("DOMContentLoaded", () => {
  for (const span of document.querySelectorAll("code.literal span.pre")) {
    if (span.children.length === 0 && span.textContent.length > 12) {
      const parts = span.textContent.split(/(?<=[_.,])/);
      span.textContent = "";
      parts.forEach((part, i) => {
        if (i > 0) span.appendChild(document.createElement("wbr"));
        span.appendChild(document.createTextNode(part));
      });
    }
  }
});
