"""What kind of page a record's source is: a journal, PubMed, a registry ... or a press release.

:func:`classify_url` is a pure function of the URL (host rules, no network). A record can say
better with ``class:`` on a source (:class:`kb.records.Source`), from the vocabulary's
``source_class`` category. :func:`outcome_sources` decides which sources an outcome's numbers
rest on, so that ``kb validate`` and the study page can tell numbers that rest only on a weak
page (a press release, a commercial or clinic site, a copied document, a bare IP address).
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass
from typing import Iterable
from urllib.parse import urlsplit

CLASSES = ("journal", "pubmed-pmc", "registry", "doi", "preprint-or-conference", "press-release",
           "commercial", "copy", "other")
# a number resting only on these is marked on the study page
WEAK_CLASSES = frozenset({"press-release", "commercial", "copy"})
# kb validate warns when an outcome's numbers rest only on these (or on bare IP addresses)
WARN_CLASSES = frozenset({"press-release", "commercial"})

# host (or a parent domain of it) -> class; the most specific entry wins
HOSTS: dict[str, str] = {
    # PubMed, PubMed Central and their official mirrors
    "pubmed.ncbi.nlm.nih.gov": "pubmed-pmc", "pmc.ncbi.nlm.nih.gov": "pubmed-pmc", "pubmed.gov": "pubmed-pmc",
    "europepmc.org": "pubmed-pmc",
    # trial registries (their results pages too)
    "clinicaltrials.gov": "registry", "isrctn.com": "registry", "anzctr.org.au": "registry",
    "clinicaltrialsregister.eu": "registry", "euclinicaltrials.eu": "registry", "trialsearch.who.int": "registry",
    "chictr.org.cn": "registry", "ctri.nic.in": "registry", "drks.de": "registry", "umin.ac.jp": "registry",
    "jrct.niph.go.jp": "registry", "irct.ir": "registry", "irct.behdasht.gov.ir": "registry",
    "onderzoekmetmensen.nl": "registry", "trialregister.nl": "registry",
    # DOI resolvers
    "doi.org": "doi", "dx.doi.org": "doi",
    # preprint servers and conference abstracts
    "medrxiv.org": "preprint-or-conference", "biorxiv.org": "preprint-or-conference",
    "researchsquare.com": "preprint-or-conference", "ssrn.com": "preprint-or-conference",
    "preprints.org": "preprint-or-conference", "psyarxiv.com": "preprint-or-conference",
    "arxiv.org": "preprint-or-conference", "authorea.com": "preprint-or-conference",
    "abstractsonline.com": "preprint-or-conference",
    # press releases and their wires
    "prnewswire.com": "press-release", "businesswire.com": "press-release", "globenewswire.com": "press-release",
    "eurekalert.org": "press-release", "press-news.org": "press-release", "newswise.com": "press-release",
    "accesswire.com": "press-release",
    # commercial copies of documents, mirrors and archives
    "scribd.com": "copy", "vdocuments.pub": "copy", "vdocuments.net": "copy", "vdocuments.mx": "copy",
    "docslib.org": "copy", "docksci.com": "copy", "pdfcoffee.com": "copy", "dokumen.pub": "copy",
    "studocu.com": "copy", "coursehero.com": "copy", "archive.org": "copy",
    "wayback.clockss.org": "copy", "distantreader.org": "copy", "paperai.life": "copy",
    # publishers and journals
    "jamanetwork.com": "journal", "thelancet.com": "journal", "nejm.org": "journal", "bmj.com": "journal",
    "psychiatryonline.org": "journal", "sciencedirect.com": "journal", "linkinghub.elsevier.com": "journal",
    "cell.com": "journal", "springer.com": "journal", "springeropen.com": "journal", "biomedcentral.com": "journal",
    "wiley.com": "journal", "tandfonline.com": "journal", "informahealthcare.com": "journal",
    "nature.com": "journal", "oup.com": "journal", "cambridge.org": "journal", "frontiersin.org": "journal",
    "mdpi.com": "journal", "lww.com": "journal", "sagepub.com": "journal", "karger.com": "journal",
    "dovepress.com": "journal", "cochranelibrary.com": "journal", "plos.org": "journal", "jneurosci.org": "journal",
    "pubs.asahq.org": "journal", "psychiatrist.com": "journal", "ahajournals.org": "journal",
    "acpjournals.org": "journal", "hindawi.com": "journal", "thieme-connect.com": "journal",
    "liebertpub.com": "journal", "degruyter.com": "journal", "jpsychopathology.it": "journal",
    "painphysicianjournal.com": "journal", "hrbopenresearch.org": "journal", "f1000research.com": "journal",
    "ijiapp.com": "journal", "jaypeejournals.com": "journal", "psycnet.apa.org": "journal",
}
# hosts whose path tells: www.ncbi.nlm.nih.gov/pubmed/..., /pmc/...
NCBI = "ncbi.nlm.nih.gov"
# words in a host that mark a clinic's or seller's site (after the tables above)
COMMERCIAL_WORDS = re.compile(r"ketamine|clinics|wellness|infusioncenter")


@dataclass(frozen=True)
class SourceInfo:
    """One source as a page shows it: its URL, class (stated or computed) and note."""

    url: str
    cls: str
    bare_ip: bool = False
    stated: bool = False  # the record says `class:`
    note: str | None = None

    @property
    def weak(self) -> bool:
        return self.bare_ip or self.cls in WEAK_CLASSES


@functools.lru_cache(maxsize=8192)  # a record's URLs are classified by validate, synthesis and its page
def host_of(url: str) -> str:
    """The URL's host, lower case, without 'www.' or a port; tolerant of 'https:///host/...'."""
    m = re.match(r"^[a-z][a-z0-9+.-]*:/*", url.strip(), re.I)
    rest = url.strip()[m.end():] if m else url.strip()
    host = urlsplit("//" + rest).hostname or ""
    return host.lower().removeprefix("www.")


def is_bare_ip(url: str) -> bool:
    """Whether the URL names its host by an IP address rather than a name."""
    host = host_of(url)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=8192)
def classify_url(url: str) -> str:
    """The class of a source URL by its host (and, for NCBI, its path): one of :data:`CLASSES`."""
    host = host_of(url)
    if not host or is_bare_ip(url):
        return "other"
    if host == NCBI or host.endswith("." + NCBI):
        if host != NCBI and host in HOSTS:
            return HOSTS[host]
        path = urlsplit(url).path.lower()
        return "pubmed-pmc" if path.startswith(("/pubmed", "/pmc")) else "other"
    parts = host.split(".")
    for i in range(len(parts) - 1):  # the most specific domain first
        cls = HOSTS.get(".".join(parts[i:]))
        if cls:
            return cls
    if COMMERCIAL_WORDS.search(host):
        return "commercial"
    return "other"


def source_info(source) -> SourceInfo:
    """A record's :class:`~kb.records.Source` with its class: the stated ``class``, else the computed one."""
    stated = getattr(source, "source_class", None)
    return SourceInfo(source.url, stated or classify_url(source.url), is_bare_ip(source.url), bool(stated),
                      getattr(source, "note", None))


URL_IN_TEXT = re.compile(r"https?://[^\s<>\"')\]]+")


def urls_in(text: str | None) -> list[str]:
    """The URLs written in free text such as an outcome's ``source`` ('Table 1 (https://...)')."""
    return [u.rstrip(".,;:") for u in URL_IN_TEXT.findall(text or "")]


def url_key(url: str) -> str:
    """A URL without scheme, www. and trailing slash, to compare two spellings of one page."""
    return re.sub(r"^https?:/*(?:www\.)?", "", url.strip().lower()).rstrip("/")


def outcome_sources(outcome, sources: Iterable) -> list[SourceInfo]:
    """The sources an outcome's numbers rest on: its ``source`` URL (with the class the record states
    for that URL, if listed), else all the record's sources."""
    infos = [source_info(s) for s in sources]
    src = getattr(outcome, "source", None)
    named = [src.url] if getattr(src, "url", None) else urls_in(getattr(src, "locator", None))
    if not named:
        return infos
    by_key = {url_key(i.url): i for i in infos}
    out = []
    for u in named:
        info = by_key.get(url_key(u))
        out.append(info if info else SourceInfo(u, classify_url(u), is_bare_ip(u)))
    return out


def rests_only_on(infos: list[SourceInfo], classes: frozenset[str]) -> bool:
    """Whether every source in ``infos`` (at least one) is of ``classes`` or a bare IP address."""
    return bool(infos) and all(i.bare_ip or i.cls in classes for i in infos)
