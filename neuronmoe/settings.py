"""Typed settings: one dataclass per stage, from which everything about a setting comes.

The idea of ``transformers.HfArgumentParser`` (``run_clm.py``'s argument dataclasses), carried to every stage.
Each field of a stage's :class:`Settings` subclass is declared once with :func:`setting`: its type (the
annotation), default, help line, command-line flag, environment variable (with deprecated spellings), allowed
values or range, and the paper's source for its default. From that one declaration come

* the argparse parser of the stage's subcommand (:meth:`Settings.add_arguments`), every flag with its help line;
* the environment mapping (:meth:`Settings.env_fields`; ``neuronmoe.envvars`` builds its table from it);
* YAML profiles: the stage's shipped YAML (``neuronmoe/configs/<stage>.yaml``, the paper's defaults), a user
  ``--config FILE``, both with ``inherit: <profile>`` chains, and ``--set key=value`` for every stage;
* validation: types, choices, ranges and finiteness, with one ``error:`` line naming the flag, variable, file
  or ``--set`` that gave the bad value (:class:`~neuronmoe.errors.ConfigError`), plus the stage's own
  cross-field rules (:meth:`Settings.check`);
* the resolved-settings dump in each manifest (:meth:`Settings.to_dict`, :meth:`Settings.provenance`) and the
  command line that reproduces them (:meth:`Settings.to_argv`), which the pipeline and the paper plan render
  from settings objects instead of writing argv by hand.

Precedence, lowest to highest: the field's default, the shipped YAML (with ``inherit:``), ``--config FILE``,
environment variables, explicit flags, ``--set``. An empty environment variable or an empty flag value counts as
not given; a list setting is emptied with ``none``.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import logging
import math
import os
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, ClassVar, Mapping, Sequence

from neuronmoe.errors import ConfigError

log = logging.getLogger("neuronmoe.settings")

_UNSET: Any = object()  #: flag not given (argparse default)


@dataclass(frozen=True)
class Meta:
    """What :func:`setting` attaches to a dataclass field (``field.metadata["setting"]``)."""

    help: str
    flag: str | None = None  #: ``--top-k``; None: no flag (YAML and ``--set`` only)
    flag_aliases: tuple[str, ...] = ()
    env: str | None = None  #: ``NEURONS_TOP_K``
    env_aliases: tuple[str, ...] = ()  #: deprecated names, honoured with a warning
    paper: str | None = None  #: where the default comes from in the paper ("Table 7")
    choices: tuple[Any, ...] | None = None
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    parse: Callable[[str], Any] | None = None  #: text -> value for flags and variables (default: by type)
    switch: Any = _UNSET  #: a flag without a value that stores this (``--force`` -> True, ``--no-udhr`` -> False)
    yaml: bool = True  #: may be set from YAML profiles and ``--set``
    metavar: str | None = None
    name_like: bool = False  #: becomes a folder or file name: checked by ``layout.check_name``


def setting(default: Any = MISSING, *, help: str, flag: str | None | bool = True,
            range: tuple[float | None, float | None] | None = None,
            default_factory: Callable[[], Any] | Any = MISSING, **options: Any) -> Any:
    """Declare one setting. ``flag=True`` derives ``--field-name``; ``flag=None``/``False``: no flag.
    ``default`` MISSING means the stage's YAML must give it. ``range=(lo, hi)`` bounds numbers (None: open).
    ``options``: the other fields of :class:`Meta` by name (``env``, ``env_aliases``, ``flag_aliases``, ``paper``,
    ``choices``, ``lo_open``, ``hi_open``, ``parse``, ``switch``, ``yaml``, ``metavar``, ``name_like``)."""
    unknown = sorted(set(options) - _META_OPTIONS)
    if unknown:
        raise TypeError(f"setting(): unknown option(s) {', '.join(unknown)}")
    for key in ("env_aliases", "flag_aliases"):
        if key in options:
            options[key] = tuple(options[key])
    if options.get("choices") is not None:
        options["choices"] = tuple(options["choices"])
    lo, hi = range if range is not None else (None, None)
    meta = Meta(help=help, flag=AUTO_FLAG if flag is True else flag if isinstance(flag, str) else None, lo=lo, hi=hi,
                **options)
    kw: dict[str, Any] = {"metadata": {"setting": meta}}
    if default_factory is not MISSING:
        kw["default_factory"] = default_factory
    else:
        kw["default"] = default
    return dataclasses.field(**kw)


_META_OPTIONS = {f.name for f in dataclasses.fields(Meta)} - {"help", "flag", "lo", "hi"}


AUTO_FLAG = "--<auto>"


# ------------------------------------------------------------------------------------------------ parsing
def parse_bool(text: str) -> bool:
    s = str(text).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def parse_list(text: str | Sequence[str] | None) -> list[str]:
    """``"en, el el"`` / ``["en", "el"]`` -> ``["en", "el"]`` (commas or spaces, duplicates dropped);
    ``"none"`` -> ``[]``."""
    if text is None:
        return []
    items = text if isinstance(text, (list, tuple)) else str(text).replace(",", " ").split()
    if [str(x).strip().lower() for x in items] == ["none"]:
        return []
    return list(dict.fromkeys(s for s in (str(x).strip() for x in items) if s))


def parse_count(text: str) -> int:
    """A count that may be written as a float (``2e9``, ``5e8``)."""
    try:
        v = float(text)
    except ValueError:
        v = math.nan
    if not math.isfinite(v) or v != int(v):
        raise ValueError(f"expected a whole number, got {text!r}")
    return int(v)


def _origin(tp: Any) -> tuple[Any, bool]:
    """(the type without ``None``, whether ``None`` is allowed)."""
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]), True
    return tp, False


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` (text from a flag or variable, or a YAML value) as type ``tp``; raises ``ValueError``."""
    base, nullable = _origin(tp)
    if isinstance(value, str) and value.strip().lower() == "none" and (typing.get_origin(base) or base) is list:
        return []  # a list is emptied with `none` (nullable or not); `null` is the unset value
    if value is None or (nullable and isinstance(value, str) and value.strip().lower() in ("none", "null")):
        if nullable:
            return None
        raise ValueError("must be set (null is not allowed)")
    org = typing.get_origin(base) or base
    if base is Any or org in (typing.Union, types.UnionType):
        return value  # several types: the stage's check() decides
    if org in (list, dict):
        return _coerce_container(value, org)
    return _coerce_scalar(value, base)


def _coerce_container(value: Any, org: type) -> Any:
    if org is list:
        return parse_list(value) if isinstance(value, (str, list, tuple)) else _bad(value, "a list")
    return dict(value) if isinstance(value, Mapping) else _bad(value, "a mapping")


def _coerce_scalar(value: Any, base: Any) -> Any:
    if base is bool:
        return value if isinstance(value, bool) else parse_bool(value)
    if base in (int, float) and isinstance(value, bool):
        return _bad(value, "an integer" if base is int else "a number")
    if base is int:
        return value if isinstance(value, int) else parse_count(value)
    if base is float:
        try:
            return float(value)
        except ValueError:
            return _bad(value, "a number")
    if base is str:
        return value if isinstance(value, str) else _bad(value, "text")
    return base(value)


def _bad(value: Any, what: str) -> Any:
    raise ValueError(f"expected {what}, got {value!r}")


# ------------------------------------------------------------------------------------------------ settings
class Settings:
    """Base of every stage's settings dataclass. Subclasses are ``@dataclass`` and set :attr:`COMMAND`
    (the subcommand) and :attr:`YAML` (the shipped defaults, ``neuronmoe/configs/<YAML>.yaml``, or None)."""

    COMMAND: ClassVar[str] = ""
    YAML: ClassVar[str | None] = None
    #: YAML keys that are not settings but data the stage reads itself (e.g. ``hf_datasets`` recipes)
    YAML_DATA: ClassVar[tuple[str, ...]] = ()
    #: the environment variable that names a ``--config`` file when none is given (``NEURONS_CONFIG``)
    CONFIG_ENV: ClassVar[str | None] = None

    # ---- the declared fields ----------------------------------------------------------------------------
    @classmethod
    def fields(cls) -> list[tuple[dataclasses.Field, Meta, Any]]:
        """``(field, meta, type)`` of every declared setting, in declaration order."""
        hints = _hints(cls)
        return [(f, f.metadata["setting"], hints[f.name]) for f in dataclasses.fields(cls) if "setting" in f.metadata]

    @classmethod
    def flag_of(cls, f: dataclasses.Field, meta: Meta) -> str | None:
        return "--" + f.name.replace("_", "-") if meta.flag == AUTO_FLAG else meta.flag

    @classmethod
    def env_fields(cls) -> list[tuple[str, Meta, str | None]]:
        """``(field name, meta, flag)`` of every setting read from an environment variable."""
        return [(f.name, m, cls.flag_of(f, m)) for f, m, _ in cls.fields() if m.env]

    # ---- the parser ---------------------------------------------------------------------------------------
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One argument per setting with a flag; defaults stay unset here (resolved in :meth:`resolve`)."""
        defaults = cls.yaml_defaults()
        for f, m, _ in cls.fields():
            flag = cls.flag_of(f, m)
            if not flag:
                continue
            text = cls.help_line(f, m, defaults)
            if m.switch is not _UNSET:
                parser.add_argument(flag, *m.flag_aliases, dest=f.name, action="store_const", const=m.switch,
                                    default=_UNSET, help=text)
            else:
                parser.add_argument(flag, *m.flag_aliases, dest=f.name, default=_UNSET, help=text,
                                    metavar=m.metavar or (m.env or f.name.upper()))
        over = f" over neuronmoe/configs/{cls.YAML}.yaml" if cls.YAML is not None else ""
        parser.add_argument("--config", dest="config_file", default=_UNSET, metavar="FILE",
                            help=f"a YAML file of settings{over} (it may start with `inherit: <profile>`)")
        parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                            help="override any setting of this command, e.g. --set top_k=500 (dotted keys reach into "
                                 "mappings; values are YAML scalars; repeatable; highest precedence)")

    @classmethod
    def help_line(cls, f: dataclasses.Field, m: Meta, defaults: Mapping[str, Any]) -> str:
        parts = [m.help]
        extra = []
        if m.env:
            extra.append(f"env {m.env}")
        d = defaults.get(f.name, f.default if f.default is not MISSING else None)
        if m.switch is _UNSET and d not in (None, "", [], {}):
            extra.append(f"default {_show(d)}")
        if m.choices:
            extra.append("one of " + ", ".join(map(str, m.choices)))
        if m.paper:
            extra.append(f"paper: {m.paper}")
        return parts[0] + (f" ({'; '.join(extra)})" if extra else "")

    # ---- YAML profiles ----------------------------------------------------------------------------------
    @classmethod
    def profile_yaml(cls, profile: str | None = None) -> str | None:
        """The shipped YAML a profile names (subclasses with several profiles override this)."""
        return cls.YAML

    @classmethod
    def yaml_defaults(cls, profile: str | None = None) -> dict[str, Any]:
        name = cls.profile_yaml(profile)
        if name is None:
            return {}
        try:
            return load_profile(name)
        except ConfigError:
            return {}

    # ---- resolution ---------------------------------------------------------------------------------------
    @classmethod
    def resolve(cls, flags: Mapping[str, Any] | argparse.Namespace | None = None, *,
                environ: Mapping[str, str] | None = None, config_file: str | None = None,
                sets: Sequence[str] | None = None, profile: str | None = None, **context: Any) -> Settings:
        """The stage's settings from every layer (see the module docstring). ``flags``: an argparse namespace
        from :meth:`add_arguments`, or ``{field: value}`` given explicitly (None = not given; text is parsed
        like a flag, other values are taken as they are); ``context``: values a caller fixes
        (highest precedence, not parsed). Raises :class:`ConfigError` naming the source of a bad value."""
        if isinstance(flags, argparse.Namespace):
            ns = vars(flags)
            config_file = config_file or _given(ns.get("config_file"))
            sets = list(sets or []) + list(ns.get("sets") or [])
            flags = {k: v for k, v in ns.items() if k not in ("config_file", "sets")}
        environ = os.environ if environ is None else environ
        if not config_file and cls.CONFIG_ENV and environ.get(cls.CONFIG_ENV):
            config_file = environ[cls.CONFIG_ENV]  # the stage's config-file variable (NEURONS_CONFIG, DATA_CONFIG, ...)
        values: dict[str, Any] = {}
        where: dict[str, str] = {}
        by_name = {f.name: (f, m, tp) for f, m, tp in cls.fields()}
        for source, data in cls._yaml_layers(profile, config_file):
            for k, v in data.items():
                if k not in cls.YAML_DATA:
                    cls._take(by_name, k, v, source, values, where, from_yaml=True)
        cls._env_layer(by_name, environ, values, where)
        cls._flag_layer(by_name, flags or {}, values, where)
        for key, v in parse_sets(sets).items():
            cls._take(by_name, key, v, f"--set {key}", values, where, from_yaml=True)
        for name, v in context.items():
            if name not in by_name:
                raise TypeError(f"{cls.__name__}: no setting {name!r}")
            f, m, tp = by_name[name]
            values[name] = cls._parse(f, m, tp, v, cls.flag_of(f, m) or name)
            where[name] = "caller"
        return cls._build(by_name, values, where)

    @classmethod
    def _yaml_layers(cls, profile: str | None, config_file: str | None) -> list[tuple[str, Mapping[str, Any]]]:
        """``(label, data)`` of the shipped YAML (with ``inherit:``) and of ``--config FILE``."""
        yaml_name = cls.profile_yaml(profile)
        layers: list[tuple[str, Mapping[str, Any]]] = []
        if yaml_name is not None:
            layers.append((_yaml_label(yaml_name), load_profile(yaml_name)))
        if config_file:
            layers.append((str(config_file), load_profile(str(config_file), user=True)))
        return layers

    @classmethod
    def _env_layer(cls, by_name: dict, environ: Mapping[str, str], values: dict, where: dict) -> None:
        for name, (f, m, tp) in by_name.items():
            raw, var = read_env(m, environ, cls.COMMAND)
            if raw is not None:
                values[name] = cls._parse(f, m, tp, raw, f"{var}={raw!r}")
                where[name] = f"env {var}"

    @classmethod
    def _flag_layer(cls, by_name: dict, flags: Mapping[str, Any], values: dict, where: dict) -> None:
        for name, v in flags.items():
            if name not in by_name or v is _UNSET or v is None or (isinstance(v, str) and not v.strip()):
                continue
            f, m, tp = by_name[name]
            flag = cls.flag_of(f, m) or name
            values[name] = cls._parse(f, m, tp, v, flag)
            where[name] = flag

    @classmethod
    def _take(cls, by_name: dict, key: str, value: Any, source: str, values: dict, where: dict, from_yaml: bool) -> None:
        from neuronmoe.utils.checks import did_you_mean

        if key not in by_name or not by_name[key][1].yaml:
            known = [n for n, (_, m, _) in by_name.items() if m.yaml]
            raise ConfigError(f"{source}: unknown setting {key!r}{did_you_mean(key, known)}; settings of "
                              f"`neuronmoe {cls.COMMAND}`: {', '.join(known)}")
        f, m, tp = by_name[key]
        prev = values.get(key)
        if isinstance(value, Mapping) and isinstance(prev, Mapping):
            from neuronmoe.config import merge

            value = merge(prev, value)
        values[key] = cls._parse(f, m, tp, value, f"{source}={value!r}" if source.startswith("--set") else f"{source}: {key}")
        where[key] = source

    @classmethod
    def _parse(cls, f: dataclasses.Field, m: Meta, tp: Any, value: Any, source: str) -> Any:
        try:
            if isinstance(value, str) and m.parse is not None:
                return m.parse(value)
            return _coerce(value, tp)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def _build(cls, by_name: dict, values: dict, where: dict) -> Settings:
        missing = [n for n, (f, _, _) in by_name.items()
                   if n not in values and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ConfigError(f"`neuronmoe {cls.COMMAND}`: no value for {', '.join(missing)} "
                              f"(set it in {_yaml_label(str(cls.YAML))}, --config, a flag or --set)")
        obj = cls(**values)  # type: ignore[call-arg]
        object.__setattr__(obj, "_where", dict(where))
        obj.validate()
        return obj

    # ---- validation -----------------------------------------------------------------------------------
    def validate(self) -> None:
        """Choices, ranges, finiteness and names of every field, then :meth:`check` (cross-field rules)."""
        for f, m, _ in self.fields():
            v = getattr(self, f.name)
            if v is None:
                continue
            if m.choices is not None and v not in m.choices:
                from neuronmoe.utils.checks import did_you_mean

                self.fail(f.name, f"{v!r} is not one of {', '.join(map(str, m.choices))}{did_you_mean(str(v), map(str, m.choices))}")
            if isinstance(v, float) and not math.isfinite(v):
                self.fail(f.name, f"{v!r} is not a finite number")
            if (m.lo is not None or m.hi is not None) and isinstance(v, (int, float)) and not isinstance(v, bool):
                self._check_range(f.name, m, v)
            if m.name_like:
                from neuronmoe.layout import check_name

                check_name(v, self.origin(f.name))
        self.check()

    def check_machine(self) -> None:
        """What only the machine that runs the stage can check, before the stage starts (not when a plan is
        printed or resolved elsewhere): a ``device`` field names a device this machine has (``--device cuda``
        without CUDA used to run on the CPU silently in one stage and fail late in another)."""
        from neuronmoe.utils.device import check_device

        for f, _m, _ in self.fields():
            v = getattr(self, f.name)
            if f.name == "device" and isinstance(v, str):
                check_device(v, self.origin(f.name))

    def _check_range(self, name: str, m: Meta, v: float) -> None:
        from neuronmoe.utils.checks import check_range

        check_range(self.origin(name), v, m.lo, m.hi, lo_open=m.lo_open, hi_open=m.hi_open)

    def check(self) -> None:
        """Cross-field rules of the stage (override; raise through :meth:`fail`)."""

    def origin(self, name: str) -> str:
        """Where the value of field ``name`` came from, as the user wrote it: ``--top-k``, ``env NEURONS_TOP_K``,
        ``--set top_k``, ``my.yaml: top_k`` or the field name (a default)."""
        w = getattr(self, "_where", {}).get(name)
        if w is None or w == "caller":
            f = next((f for f, _, _ in self.fields() if f.name == name), None)
            meta = f.metadata["setting"] if f is not None else None
            return (self.flag_of(f, meta) if f is not None and meta is not None and meta.flag else None) or name
        return w if w.startswith(("--", "env ")) else f"{w}: {name}"

    def source(self, name: str) -> str:
        """:meth:`origin` (a stage with a setting named ``source``, such as prepare-data's text source, shadows
        this name: the framework itself calls :meth:`origin`)."""
        return self.origin(name)

    def fail(self, name: str, problem: str) -> typing.NoReturn:
        """Raise the one-line :class:`ConfigError` for field ``name`` (named as the user set it)."""
        raise ConfigError(f"{self.origin(name)}: {problem}")

    # ---- output -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The resolved settings, JSON-ready (the manifest's ``settings``)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f, _, _ in self.fields()}

    def provenance(self) -> dict[str, str]:
        """``{field: where its value came from}`` for fields not at their default."""
        return dict(getattr(self, "_where", {}))

    def to_argv(self, only: Sequence[str] | None = None) -> list[str]:
        """Flags that reproduce the fields in ``only`` (default: every field given by a caller, a flag or
        ``--set``); fields without a flag go through ``--set``. Lists render comma-separated (``none`` when
        empty), booleans of switches as the switch."""
        names = list(only) if only is not None else [n for n, w in self.provenance().items()
                                                     if w == "caller" or w.startswith("--")]
        out: list[str] = []
        by_name = {f.name: (f, m) for f, m, _ in self.fields()}
        for name in names:
            f, m = by_name[name]
            v = getattr(self, name)
            flag = self.flag_of(f, m)
            if m.switch is not _UNSET and flag:
                if v == m.switch:
                    out.append(flag)
                continue
            if flag and not isinstance(v, dict):
                out += [flag, _render(v)]
            else:
                out += ["--set", f"{name}={_render(v)}"]
        return out

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (recorded as given by the caller) and validated again."""
        where = {**self.provenance(), **{k: "caller" for k in changes}}
        obj = dataclasses.replace(self, **changes)  # type: ignore[type-var]
        object.__setattr__(obj, "_where", where)
        obj.validate()
        return obj


def _yaml_label(name: str) -> str:
    """How a YAML profile is named in messages: ``neuronmoe/configs/<name>.yaml`` for a shipped one, else its path."""
    return name if name.endswith((".yaml", ".yml")) else f"neuronmoe/configs/{name}.yaml"


def _given(v: Any) -> Any:
    return None if v is _UNSET else v


def _show(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "none"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def _render(v: Any) -> str:
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))  # 70.0 -> 70 (read back as the field's type)
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v)) or "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, dict):
        import json

        return json.dumps(v, sort_keys=True)
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    return v


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


# ------------------------------------------------------------------------------------------------ sources
def read_env(m: Meta, environ: Mapping[str, str], command: str = "") -> tuple[str | None, str | None]:
    """``(value, the name it came from)`` of a setting's variable or a deprecated alias; empty counts as unset."""
    if not m.env:
        return None, None
    for n in (m.env, *m.env_aliases):
        v = environ.get(n)
        if v is not None and v.strip():  # empty or blank counts as unset
            if n != m.env:
                log.warning("environment variable %s is deprecated%s: use %s", n,
                            f" for `neuronmoe {command}`" if command else "", m.env)
            return v, n
    return None, None


def load_profile(name: str, user: bool = False, _seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """A YAML profile (shipped name or file path) with its ``inherit:`` chain merged under it."""
    from neuronmoe.config import load_yaml, merge

    if name in _seen:
        raise ConfigError(f"config {name}: inherit cycle {' -> '.join(_seen + (name,))}")
    try:
        data = dict(load_yaml(name))
    except FileNotFoundError as e:
        raise ConfigError(f"{'--config ' if user else ''}{e}") from None
    except ValueError as e:
        raise ConfigError(" ".join(str(e).split())) from None
    parent = data.pop("inherit", None)
    if parent:
        return merge(load_profile(str(parent), False, _seen + (name,)), data)
    return data


def parse_scalar(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def parse_sets(items: Sequence[str] | None) -> dict[str, Any]:
    """``["a=1", "b.c=x"]`` -> ``{"a": 1, "b": {"c": "x"}}`` (values parsed as YAML scalars)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        d = out
        parts = key.split(".")
        for p in parts[:-1]:
            d = d.setdefault(p, {})
            if not isinstance(d, dict):
                raise ConfigError(f"--set {item!r}: {p} is both a value and a mapping")
        d[parts[-1]] = parse_scalar(value)
    return out


@dataclass(frozen=True)
class Command:
    """One subcommand: its settings dataclass and the stage function ``run(settings) -> int`` ("module:function")."""

    name: str
    settings: type
    run: str
    help: str
    description: str = ""
    extra: Callable[[argparse.ArgumentParser], None] | None = None  #: arguments that are not settings (positionals)

    def register(self, sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
        p = sub.add_parser(self.name, help=self.help, description=self.description or self.help)
        self.settings.add_arguments(p)
        if self.extra is not None:
            self.extra(p)
        p.set_defaults(func=self.invoke, describe=self.describe)
        return p

    def resolve(self, args: argparse.Namespace) -> Any:
        return self.settings.resolve(args)

    def invoke(self, args: argparse.Namespace) -> int:
        module, _, func = self.run.partition(":")
        s = self.resolve(args)
        s.check_machine()
        return int(getattr(importlib.import_module(module), func)(s) or 0)

    def describe(self, args: argparse.Namespace) -> dict:
        s = self.resolve(args)
        return {"settings": s.to_dict(), "sources": s.provenance()}


# ------------------------------------------------------------------------------------------------ shared fields
#: the embedded default model (``neuronmoe.models.aliases``)
DEFAULT_MODEL = "smollm2-135m"
DTYPE_CHOICES = ("auto", "fast", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16")


@dataclass(kw_only=True)
class ModelOutputSettings(Settings):
    """``--model`` and ``--output-dir``, shared by every stage that loads the base model."""

    model: str = setting(DEFAULT_MODEL, env="BASE_MODEL_PATH", yaml=False, metavar="MODEL",
                         help="base model: a built-in alias (smollm2-135m, gemma3-270m), a local HF model folder, or a hub id")
    output_dir: str = setting("outputs", env="OUTPUT_DIR", yaml=False, metavar="DIR",
                              help="root folder of every stage's outputs")


@dataclass(kw_only=True)
class DeviceSettings(Settings):
    """``--device`` and ``--dtype``."""

    device: str = setting("auto", env="DEVICE", yaml=False,
                          help="torch device: auto (this rank's GPU, else CPU), cpu, cuda, cuda:1 ...")
    dtype: str = setting("auto", env="DTYPE", choices=DTYPE_CHOICES,
                         help="compute dtype: auto = bf16 on a GPU, fp32 on CPU; fast = bf16 wherever it is computed "
                              "natively (a GPU, or a CPU with AVX512-BF16/AMX)")
