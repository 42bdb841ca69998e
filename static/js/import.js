// Import mapping: show the tag name field only for columns mapped to "New tag".
// Without JavaScript every name field stays visible and only the chosen ones are used.
(() => {
  const sync = (select) => {
    const box = document.querySelector(select.dataset.newTag);
    if (box) box.classList.toggle("d-none", select.value !== "new");
  };
  document.querySelectorAll("select[data-new-tag]").forEach(sync);
  document.addEventListener("change", (event) => {
    if (event.target.matches("select[data-new-tag]")) sync(event.target);
  });
})();
