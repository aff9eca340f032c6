// The tokens page (/accounts/tokens/): the copy button next to a new token's secret.
// A module file because the page's CSP allows no inline script.

for (const button of document.querySelectorAll("button[data-copy]")) {
  button.addEventListener("click", async () => {
    const field = document.getElementById(button.dataset.copy);
    if (!field) return;
    field.select();
    try {
      await navigator.clipboard.writeText(field.value);
      button.textContent = "Copied";
    } catch {
      // No clipboard permission (an insecure origin): the text is selected; Ctrl+C works.
      button.textContent = "Press Ctrl+C";
    }
  });
}
