"""Screening: from a database search to included studies (issue 19, part 1).

- :mod:`kb.screening.store`: the files. The search log (``searches.yaml``), the screening set
  (``screening/references/<search-id>.jsonl``, one reference a line, written once per import) and the
  reviewers' decisions (``screening/decisions/<reviewer>.jsonl``, appended one line at a time).
- :mod:`kb.screening.importing`: ``kb import`` into the screening set, logging the search.
- :mod:`kb.screening.decide`: decisions, blinding, conflicts, agreement, and a full-text include
  becoming a draft study record.

This package reads records and imports through ``kb.importer``/``kb.load`` and never imports
``kb.site`` or ``kb.engine``.
"""
