"""Registration of the NEURONMOE method with PEFT (idempotent, safe to call in every process).

PEFT's public ``register_peft_method`` refuses a name that is not a member of the closed
``PeftType`` enum, so the member is added first. An ``Enum`` cannot be subclassed or
extended through its public API; :func:`extend_str_enum` adds one member the way the enum
machinery itself builds them (member object + the three lookup tables), after which
``PeftType.NEURONMOE``, ``PeftType("NEURONMOE")``, ``PeftType["NEURONMOE"]`` and
``list(PeftType)`` all see it.
"""
from __future__ import annotations

import enum
import threading

PEFT_NAME = "neuronmoe"          # the name PEFT knows the method by (lower case)
PEFT_TYPE = PEFT_NAME.upper()    # the PeftType member written to adapter_config.json
PREFIX = "moe_"                  # attribute prefix of every adapter module (moe_router, moe_experts)
#: adapter_config.json field that carries :func:`load_line` (stock PEFT without neuronmoe fails with KeyError: 'NEURONMOE')
LOAD_LINE_FIELD = "how_to_load"
ADAPTER_PLACEHOLDER = "path/to/this/adapter"

_lock = threading.Lock()


def extend_str_enum(enum_cls: type[enum.Enum], name: str, value: str) -> enum.Enum:
    """Add ``name = value`` to a ``(str, Enum)`` class; returns the (new or existing) member.

    Idempotent: an existing member with the same name and value is returned unchanged; a
    clash (same name, other value, or same value under another name) is an error.
    """
    with _lock:
        members = enum_cls.__members__
        if name in members:
            member = members[name]
            if member.value != value:
                raise ValueError(f"{enum_cls.__name__}.{name} already exists with value {member.value!r}, not {value!r}")
            return member
        if value in enum_cls._value2member_map_:
            other = enum_cls._value2member_map_[value]
            raise ValueError(f"{enum_cls.__name__} already has value {value!r} as {other.name}")
        member = str.__new__(enum_cls, value)
        member._name_ = name
        member._value_ = value
        member.__objclass__ = enum_cls
        if hasattr(member, "_sort_order_"):
            member._sort_order_ = len(enum_cls._member_names_)
        # class attribute first (EnumType.__setattr__ refuses to rebind names in _member_map_)
        type.__setattr__(enum_cls, name, member)
        enum_cls._member_map_[name] = member
        enum_cls._value2member_map_[value] = member
        enum_cls._member_names_.append(name)
        return member


def load_line(base_model: str | None = None, adapter: str = ADAPTER_PLACEHOLDER) -> str:
    """The one Python line that loads a NeuronMoE adapter (written into adapter_config.json and model cards).

    ``import neuronmoe`` before PEFT reads the adapter is what registers the method; without it
    PEFT raises ``KeyError: 'NEURONMOE'``.
    """
    base = repr(str(base_model)) if base_model else "BASE_MODEL"
    return (
        "import neuronmoe, peft, transformers; model = peft.PeftModel.from_pretrained("
        f"transformers.AutoModelForCausalLM.from_pretrained({base}), {adapter!r})"
    )


def peft_type():
    """The ``PeftType.NEURONMOE`` member (created on first use)."""
    from peft.utils import PeftType

    return extend_str_enum(PeftType, PEFT_TYPE, PEFT_TYPE)


def register() -> None:
    """Register ``MoEConfig``/``MoEModel`` with PEFT under ``"neuronmoe"``; a no-op when already done."""
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING, PEFT_TYPE_TO_TUNER_MAPPING
    from peft.utils import register_peft_method

    from neuronmoe.moe.config import MoEConfig
    from neuronmoe.moe.model import MoEModel

    ptype = peft_type()
    with _lock:
        have_cfg = PEFT_TYPE_TO_CONFIG_MAPPING.get(ptype)
        have_model = PEFT_TYPE_TO_TUNER_MAPPING.get(ptype)
        if have_cfg is MoEConfig and have_model is MoEModel:
            return
        if have_cfg is not None or have_model is not None:
            # a reload of this module (importlib.reload, autoreload): replace the stale classes
            from peft.mapping import PEFT_TYPE_TO_PREFIX_MAPPING

            PEFT_TYPE_TO_CONFIG_MAPPING[ptype] = MoEConfig
            PEFT_TYPE_TO_TUNER_MAPPING[ptype] = MoEModel
            PEFT_TYPE_TO_PREFIX_MAPPING[ptype] = PREFIX
            return
        register_peft_method(name=PEFT_NAME, config_cls=MoEConfig, model_cls=MoEModel, prefix=PREFIX)
