// Site search with Pagefind's JavaScript API: the index lives in pagefind/ beside the pages, so it
// works offline and from any sub-path. Result text is inserted as text, never as HTML.
// A classic script (not a module), so that from file:// it still runs and says why search is off.
(async () => {
const form = document.getElementById("search-form");
const input = document.getElementById("q");
const status = document.getElementById("search-status");
const list = document.getElementById("search-results");
const fallback = document.getElementById("search-fallback");
const siteRoot = new URL("..", document.currentScript.src);

let pagefind = null;
try {
  pagefind = await import(new URL("pagefind/pagefind.js", siteRoot).href);
  await pagefind.options({ baseUrl: siteRoot.pathname, excerptLength: 24 });
  await pagefind.init();
  fallback.hidden = true;
} catch (error) {
  status.textContent = "Search is not available here: the search index could not be loaded " +
    "(pages opened straight from disk cannot load it). Browse the list of studies below.";
}

function filters() {
  const chosen = {};
  for (const box of form.querySelectorAll("input[type=checkbox]:checked")) {
    (chosen[box.name] ||= []).push(box.value);
  }
  const out = {};
  for (const [name, values] of Object.entries(chosen)) out[name] = { any: values };
  return out;
}

const decoder = document.createElement("textarea");
function excerpt(html) {
  // Pagefind marks hits with <mark>; everything else is shown as plain text.
  const p = document.createElement("p");
  let target = p;
  for (const part of html.split(/(<\/?mark>)/)) {
    if (part === "<mark>") { target = document.createElement("mark"); p.appendChild(target); }
    else if (part === "</mark>") { target = p; }
    else if (part) {
      decoder.innerHTML = part;  // a textarea decodes entities and never creates elements
      target.appendChild(document.createTextNode(decoder.value));
    }
  }
  return p;
}

function badge(kind, text) {
  const span = document.createElement("span");
  span.className = `badge badge-${kind}`;
  span.textContent = text;
  return span;
}

// One result: the title (the link), badges, design · n · year, the key finding, then the matched
// words in context. The study page declares these as Pagefind metadata (templates/study.html);
// every value is inserted as text.
function hit(data) {
  const meta = data.meta || {};
  const li = document.createElement("li");
  const a = document.createElement("a");
  a.href = data.url;
  a.textContent = meta.title || data.url;
  li.appendChild(a);
  const facts = document.createElement("p");
  facts.className = "hit-facts";
  if (meta.retracted) facts.append(badge("retracted", "Retracted"), " ");
  if (meta.status === "draft" || meta.draft) facts.append(badge("draft", "Draft: imported, not yet extracted"), " ");
  const parts = [meta.design, meta.n ? `n = ${meta.n}` : "", meta.year].filter(Boolean);
  facts.append(parts.join(" · "));
  li.appendChild(facts);
  if (meta.key_finding) {
    const finding = document.createElement("p");
    finding.className = "hit-finding";
    const label = document.createElement("strong");
    label.textContent = "Key finding: ";
    finding.append(label, meta.key_finding);
    li.appendChild(finding);
  }
  li.appendChild(excerpt(data.excerpt || ""));
  return li;
}

let generation = 0;
async function run() {
  if (!pagefind) return;
  const mine = ++generation;
  const query = input.value.trim();
  const chosen = filters();
  const params = new URLSearchParams();
  if (query) params.set("q", query);
  for (const [name, { any }] of Object.entries(chosen)) for (const v of any) params.append(name, v);
  history.replaceState(null, "", params.toString() ? `?${params}` : location.pathname);
  if (!query && !Object.keys(chosen).length) {
    list.replaceChildren();
    status.textContent = "";
    return;
  }
  const search = await pagefind.search(query || null, { filters: chosen });
  if (mine !== generation) return;
  const results = await Promise.all(search.results.slice(0, 30).map((r) => r.data()));
  if (mine !== generation) return;
  const items = results.map(hit);
  list.replaceChildren(...items);
  const n = search.results.length;
  status.textContent = n === 0 ? "No study matches." :
    `${n} ${n === 1 ? "study" : "studies"} found` + (n > 30 ? "; showing the first 30." : ".");
}

let timer = null;
input.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 200); });
form.addEventListener("change", (event) => { if (event.target.type === "checkbox") run(); });
form.addEventListener("submit", (event) => { event.preventDefault(); run(); });

const initial = new URLSearchParams(location.search);
if (initial.get("q")) input.value = initial.get("q");
for (const box of form.querySelectorAll("input[type=checkbox]")) {
  if (initial.getAll(box.name).includes(box.value)) box.checked = true;
}
run();
})();
