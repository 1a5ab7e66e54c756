"""``--set key=value``: config facts stated on the command line, applied to the original code's
config before it is translated (a setting the files do not record, or a file's mistake).

A family names the keys its original code's config knows (:attr:`Family.config_keys`, else
BertConfig's fields) and the settings its runs take from elsewhere than the files, with the
code's own default (:attr:`Family.unrecorded_config`): such a setting is used with a note saying
where its value came from. An unknown key is an error naming the keys the family knows.
"""
from __future__ import annotations

import dataclasses
import json
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import BertConfig
from .errors import ConfigError, InputError


def parse_settings(pairs: Iterable[str]) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}``; a value is read as JSON (``true``, ``0.5``,
    ``[3, 16]``; ``True``/``False`` too) and is a string where it is not JSON."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise InputError(f"--set {pair!r}: expected key=value", hint="e.g. --set reset_position_index_per_cell=true")
        if key in settings:
            raise InputError(f"--set {key} is given twice")
        text = text.strip()
        try:
            settings[key] = json.loads(text.lower() if text in ("True", "False") else text)
        except ValueError:
            settings[key] = text
    return settings


def known_keys(family) -> list[str]:
    keys = set(family.config_keys) or {f.name for f in dataclasses.fields(BertConfig)} - {"extra"}
    return sorted(keys | set(family.unrecorded_config))


def check_known(family, settings: dict[str, Any] | None, data: dict | None = None) -> None:
    """An error naming the keys ``family`` knows, for a setting that is none of them (nor a key
    of the config file ``data``)."""
    known = known_keys(family)
    unknown = sorted(k for k in settings or {} if k not in known and k not in (data or {}))
    if unknown:
        raise InputError(f"--set {unknown[0]}: {family.name}'s config has no such key",
                         hint=f"{family.name} knows {', '.join(known)}")


def original_config(family, settings: dict[str, Any] | None, notes: list[str] | None, data: dict,
                    path: Path | None = None, *, stated: dict[str, Any] | None = None) -> dict:
    """The original code's config ``data`` with ``settings`` applied, the settings the files do
    not record filled (from ``stated``, a converted model's own record of them, else the code's
    default, each with a note), then translated by the family to BertConfig's fields."""
    settings = dict(settings or {})
    notes = notes if notes is not None else []
    check_known(family, settings, data)
    for key, value in settings.items():
        before = data.get(key, family.unrecorded_config.get(key, (None,))[0])
        if isinstance(before, bool) != isinstance(value, bool) and before is not None:
            raise InputError(f"--set {key}={json.dumps(value)}: {key} is {'a boolean' if isinstance(before, bool) else 'not a boolean'}",
                             hint=f"e.g. --set {key}={json.dumps(before)}")
    data = {**data, **settings}
    # a setting the files lack: --set, else the converted model's record, else the code's default
    for key, (default, where) in family.unrecorded_config.items():
        if key in settings:
            notes.append(f"{key}={json.dumps(settings[key])} as --set states")
        elif key in data:
            continue
        elif stated is not None and key in stated:
            data[key] = stated[key]
            notes.append(f"{key}={json.dumps(stated[key])}, not in the files: as the converted model's config states")
        else:
            data[key] = default
            notes.append(f"{key}={json.dumps(default)}, not in the files: {where} (state it with --set {key}=...)")
    notes += [f"{key}={json.dumps(settings[key])} as --set states"
              for key in sorted(set(settings) - set(family.unrecorded_config))]
    try:
        return family.translate_config(data)
    except ConfigError as e:
        if e.path is None and path is not None:
            raise ConfigError(e.message, path=path, hint=e.hint) from None
        raise


def preparer(family, settings: dict[str, Any] | None, notes: list[str] | None, *,
             stated: dict[str, Any] | None = None) -> Callable[[dict, Path], dict]:
    """What ``load_config_file(prepare=...)`` takes, for ``family``'s config files."""
    return partial(_prepare, family, settings, notes, stated)


def _prepare(family, settings, notes, stated, data: dict, path: Path) -> dict:
    return original_config(family, settings, notes, data, path, stated=stated)


def apply_to(config: BertConfig, family, settings: dict[str, Any] | None, notes: list[str]) -> BertConfig:
    """A config that came from no file (inferred from the weights): the same settings applied."""
    return BertConfig.from_dict(original_config(family, settings, notes, config.to_dict()))
