"""Per-language text sources for ``prepare-data`` (the paper's replay corpora, Appendix D).

``--source`` takes one source for every language (``hf:uonlp/CulturaX``) or one per language::

    --source en=hf:cerebras/SlimPajama-627B,zh=hf:Skywork/SkyPile-150B,es=hf:uonlp/CulturaX
    --source hf:uonlp/CulturaX,en=hf:cerebras/SlimPajama-627B     # a bare item: every other language

and the YAML equivalent (``source:`` a mapping; ``"*"`` = every other language; a value is a spec or a
mapping with the options below)::

    source:
      "*": hf:uonlp/CulturaX
      en: {spec: hf:cerebras/SlimPajama-627B, data_files: "train/chunk1*/*", shuffle_seed: 22}

Options of an ``hf:`` source (also from :data:`neuronmoe/configs/data.yaml` ``hf_datasets``, the reading
recipe of a named dataset, applied whenever a source names it): ``config`` (null = none; default the
``{lang}`` template), ``data_files`` (patterns in the dataset repository or local folder), ``shuffle_seed``
(the reference's seeded shuffle: ``datasets``' ``Dataset.shuffle(seed)`` over the chosen files, before the
per-language document caps) and ``shuffle_buffer`` (a streaming buffer shuffle instead of a full one).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

from neuronmoe.data.sources import Document, HFSource, Source, SourceError, make_source

DEFAULT_KEY = "*"
HF_OPTIONS = ("config", "data_files", "shuffle_seed", "shuffle_buffer")
_ITEM = re.compile(r"^([a-z]{2,3}|\*)=(.+)$")


def parse_source(value: str | Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``--source`` (or its YAML mapping) -> ``{lang or "*": {"spec": ..., options...}}``."""
    if isinstance(value, Mapping):
        out: dict[str, dict[str, Any]] = {}
        for lang, v in value.items():
            rec = {"spec": v} if isinstance(v, str) else dict(v or {})
            if not isinstance(rec.get("spec"), str) or not rec["spec"]:
                raise SourceError(f"source.{lang}: give a spec (bundled, jsonl:PATH, txt:PATH or hf:NAME[:CONFIG])")
            bad = sorted(set(rec) - {"spec", *HF_OPTIONS})
            if bad:
                raise SourceError(f"source.{lang}: unknown option(s) {', '.join(bad)} (allowed: spec, {', '.join(HF_OPTIONS)})")
            out[str(lang)] = rec
        return out
    text = str(value).strip()
    items = [x.strip() for x in text.split(",") if x.strip()] if "=" in text else [text]
    out = {}
    for item in items:
        m = _ITEM.match(item)
        lang, spec = (m.group(1), m.group(2)) if m else (DEFAULT_KEY, item)
        if lang in out:
            what = "more than one default source" if lang == DEFAULT_KEY else f"language {lang} given twice"
            raise SourceError(f"--source {text!r}: {what}")
        out[lang] = {"spec": spec}
    return out


@dataclass
class HFFilesSource(HFSource):
    """An ``hf:`` source with the reference's reading recipe: chosen files, no config, a seeded shuffle."""

    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if "config" in self.options:
            self.config = self.options["config"]
        self.data_files = self.options.get("data_files")
        self.shuffle_seed = self.options.get("shuffle_seed")
        self.shuffle_buffer = self.options.get("shuffle_buffer")
        self.kind = "hf"

    def dataset(self, lang: str) -> Any:
        if lang in self._cache:
            return self._cache[lang]
        import datasets

        from neuronmoe.data.sources import _fmt

        cfg = _fmt(self.config, lang) if self.config else None
        files = self.data_files
        if isinstance(files, str):
            files = _fmt(files, lang)
        elif isinstance(files, list):
            files = [_fmt(f, lang) for f in files]
        stream = self.shuffle_seed is None or self.shuffle_buffer is not None
        try:
            ds = datasets.load_dataset(self.name, cfg, data_files=files, split=self.hf_split, streaming=stream)
        except Exception as e:  # noqa: BLE001 - datasets raises many kinds
            raise SourceError(
                f"--source {self.spec}: language {lang!r}: cannot open dataset {self.name!r}"
                f"{f' config {cfg!r}' if cfg else ''}{f' files {files!r}' if files else ''} split {self.hf_split!r} "
                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
            ) from None
        if self.shuffle_seed is not None:
            ds = (ds.shuffle(seed=int(self.shuffle_seed), buffer_size=int(self.shuffle_buffer)) if stream
                  else ds.shuffle(seed=int(self.shuffle_seed)))
        self._cache[lang] = ds
        return ds

    def describe(self, langs: list[str]) -> dict[str, Any]:
        from neuronmoe.data.sources import _fmt

        config, self.config = self.config, self.config or "{lang}"
        try:
            out = super().describe(langs)
        finally:
            self.config = config
        out.update(configs={lang: _fmt(config, lang) if config else None for lang in langs}, data_files=self.data_files,
                   shuffle_seed=self.shuffle_seed, shuffle_buffer=self.shuffle_buffer)
        return out


def _hf_presets() -> dict[str, dict[str, Any]]:
    from neuronmoe.config import load_yaml

    return dict(load_yaml("data").get("hf_datasets") or {})


def build_source(rec: Mapping[str, Any], text_field: str = "text", hf_split: str = "train",
                 presets: Mapping[str, Mapping[str, Any]] | None = None) -> Source:
    """One source from ``{"spec", options...}``; an ``hf:`` dataset named in ``presets`` gets its recipe."""
    spec = rec["spec"]
    base = make_source(spec, text_field, hf_split)
    if not isinstance(base, HFSource):
        extra = sorted(k for k in rec if k != "spec")
        if extra:
            raise SourceError(f"--source {spec}: option(s) {', '.join(extra)} apply to hf: sources only")
        return base
    options = dict((presets or {}).get(base.name) or {})
    options.update({k: v for k, v in rec.items() if k != "spec"})
    if not options:
        return base
    return HFFilesSource(spec, text_field, hf_split, options=options)


@dataclass
class PerLanguageSource(Source):
    """Dispatches every language to its own source (``"*"``: the default for the others)."""

    by_lang: dict[str, Source] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kind = "per-language"

    def for_lang(self, lang: str) -> Source:
        src = self.by_lang.get(lang) or self.by_lang.get(DEFAULT_KEY)
        if src is None:
            raise SourceError(f"--source {self.spec}: no source for language {lang!r} "
                              f"(name it, e.g. {lang}=hf:uonlp/CulturaX, or add a default item without 'LANG=')")
        return src

    def check(self, lang: str) -> None:
        self.for_lang(lang).check(lang)

    def documents(self, lang: str) -> Iterator[Document]:
        return self.for_lang(lang).documents(lang)

    def describe(self, langs: list[str]) -> dict[str, Any]:
        return {"spec": self.spec, "kind": self.kind,
                "languages": {lang: self.for_lang(lang).describe([lang]) for lang in langs}}

    @property
    def is_large(self) -> bool:
        return any(s.is_large for s in self.by_lang.values())


def make_sources(value: str | Mapping[str, Any], languages: list[str], text_field: str = "text",
                 hf_split: str = "train") -> Source:
    """``--source`` for the prepared ``languages``: a plain source when one spec serves every language (and
    no dataset recipe applies), else a :class:`PerLanguageSource`. A language named in ``--source`` that is
    not prepared is an error (a typo would silently read the wrong corpus)."""
    spec_text = value if isinstance(value, str) else ",".join(f"{k}={v if isinstance(v, str) else v.get('spec')}"
                                                              for k, v in value.items())
    recs = parse_source(value)
    unknown = sorted(k for k in recs if k != DEFAULT_KEY and k not in languages)
    if unknown:
        raise SourceError(f"--source: {', '.join(unknown)} {'is' if len(unknown) == 1 else 'are'} not among the prepared "
                          f"languages ({', '.join(languages)}); add {'it' if len(unknown) == 1 else 'them'} to "
                          f"--new-langs/--old-langs/--neg-langs or drop the item")
    presets = _hf_presets()
    by_lang = {k: build_source(r, text_field, hf_split, presets) for k, r in recs.items()}
    if set(by_lang) == {DEFAULT_KEY} and type(by_lang[DEFAULT_KEY]) is not HFFilesSource:
        return by_lang[DEFAULT_KEY]
    src = PerLanguageSource(spec_text, text_field, hf_split, by_lang=by_lang)
    for lang in languages:
        src.for_lang(lang)  # every prepared language has a source
    return src


def source_for(source: Source, lang: str) -> Source:
    """The source that reads ``lang`` (the source itself unless it is per-language)."""
    return source.for_lang(lang) if isinstance(source, PerLanguageSource) else source
