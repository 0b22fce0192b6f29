"""The static evidence site: ``kb build`` (:func:`build_site`) and ``kb serve``.

Data flows one way: record files -> (parsed where they changed, on all cores) per-study pages and a
small *digest* of each study -> pooled analyses per condition and outcome (computed from the rows
of :func:`kb.synthesis.select_one`, never stored) -> the pages that span studies.

Incremental builds. ``.kb/site/<out-hash>/`` keeps what the last build saw: each record file's size,
mtime and SHA-1 (``stamps.marshal``), the digests (``digests.marshal``) and the key of everything
else a page depends on (``meta.json``). A record is parsed again only when its content changed; a
page is written only when its bytes differ from the last build's. A changed template, kb.yaml,
vocabulary or kb version rebuilds every page. The output folder holds ``.kb-build.json``: content
hashes only, so the same inputs give a byte-identical folder.

Every text from a record goes through Jinja's autoescaping; links are relative, so the folder
works from ``file://``, a sub-path or a domain; ``--base-url`` makes the feed and sitemap absolute.

The modules, in the order a build uses them:

- :mod:`kb.site.build`: the pipeline, one call per step (:class:`kb.site.build.Build`);
- :mod:`kb.site.state`: the state under ``.kb/site/``, the keys it is checked by, the build information;
- :mod:`kb.site.studies`: the per-study worker and the one study-page context (also ``kb show --format html``);
- :mod:`kb.site.history`: the evidence at an earlier commit, and what changed since (``kb changes``, the changes page);
- :mod:`kb.site.analyses`: the pooled analyses and what changed since the last build;
- :mod:`kb.site.pages`: the pages that span studies, the feed and the sitemaps;
- :mod:`kb.site.output`: the writer that leaves unchanged pages alone, the manifest, assets and downloads;
- :mod:`kb.site.pagefind`: the search index;
- :mod:`kb.site.serve`: ``kb serve``.
"""

from ..errors import SiteError
from .analyses import Site, compute_changes, run_analyses, snapshot
from .build import BuildReport, build_site
from .pagefind import pagefind_command
from .pages import (SOF_COLUMNS, condition_context, home_context, methods_context, outcome_context, public_reason,
                    template_helpers)
from .state import SiteInfo, build_info
from .studies import digest, record_label, study_context, study_page

__all__ = [
    "BuildReport", "SOF_COLUMNS", "Site", "SiteError", "SiteInfo", "build_info", "build_site", "compute_changes",
    "condition_context", "digest", "home_context", "methods_context", "outcome_context", "pagefind_command",
    "public_reason", "record_label", "run_analyses", "snapshot", "study_context", "study_page", "template_helpers",
]
