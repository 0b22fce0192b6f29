// Sortable tables: a button in each sortable column header; aria-sort tells screen readers the order.
// Without JavaScript the tables keep their built order.
for (const table of document.querySelectorAll("table.sortable")) {
  const headers = Array.from(table.tHead.rows[0].cells);
  headers.forEach((th, column) => {
    const kind = th.dataset.sort;
    if (!kind) return;
    const button = document.createElement("button");
    button.type = "button";
    button.className = "sort";
    button.textContent = th.textContent;
    th.textContent = "";
    th.appendChild(button);
    button.addEventListener("click", () => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      headers.forEach((h) => h.removeAttribute("aria-sort"));
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const body = table.tBodies[0];
      const value = (row) => {
        const cell = row.cells[column];
        const raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
        return kind === "number" ? parseFloat(raw) || 0 : raw.toLowerCase();
      };
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = value(a), y = value(b);
        const c = x < y ? -1 : x > y ? 1 : 0;
        return ascending ? c : -c;
      });
      body.append(...rows);
    });
  });
}
