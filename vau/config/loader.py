"""Compose one typed, frozen run config from the schema, conf/ files and overrides.

Merge order (later wins): schema defaults -> group files named by the experiment's
``defaults:`` list (or chosen with ``group=name`` on the command line) -> the experiment file
-> ``key=value`` overrides. A saved ``config.yaml`` can stand in for the experiment
(``config_file=``); it is already complete, so no group files are read.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

from vau.errors import ConfigError, UnknownNameError
from vau.families import Family, get_family
from vau.io import atomic_write_text

#: Config groups: ``conf/<group>/<name>.yaml`` is merged under the ``<group>`` key.
GROUPS = ("model", "data", "optim", "trainer", "ckpt", "logger")

_COMMAND_LINE = "command line"


def conf_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Finds the conf/ directory: explicit arg, $VAU_CONF_DIR, ./conf, then the repo's conf/."""
    candidates = [explicit, os.environ.get("VAU_CONF_DIR"), Path.cwd() / "conf",
                  Path(__file__).resolve().parents[2] / "conf"]
    for cand in candidates:
        if cand and (Path(cand) / "experiment").is_dir():
            return Path(cand)
    raise ConfigError("no conf/ directory found: set VAU_CONF_DIR or run from the repository root")


def list_experiments(root: Path) -> list[str]:
    """Names of all experiment files under ``root/experiment`` (with ``/`` for subfolders)."""
    base = root / "experiment"
    return sorted(str(p.relative_to(base).with_suffix("")) for p in base.rglob("*.yaml"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        first = str(e).splitlines()[0]
        raise ConfigError(f"{path}: invalid YAML ({first})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _group_file(root: Path, group: str, name: str) -> Path:
    path = root / group / f"{name}.yaml"
    if not path.is_file():
        options = sorted(p.stem for p in (root / group).glob("*.yaml"))
        raise ConfigError(f"{group}={name}: no file {path} (available: {', '.join(options)})")
    return path


def _parse_defaults(defaults: Any, source: Path, allow: tuple[str, ...] = ()) -> dict[str, str]:
    picks: dict[str, str] = {}
    if not isinstance(defaults, list):
        raise ConfigError(f"{source}: 'defaults' must be a list of {{group: name}} entries")
    for entry in defaults:
        if not (isinstance(entry, dict) and len(entry) == 1):
            raise ConfigError(f"{source}: bad defaults entry {entry!r}; expected {{group: name}}")
        ((group, name),) = entry.items()
        if group not in GROUPS and group not in allow:
            raise ConfigError(f"{source}: unknown group {group!r} in defaults (groups: {', '.join(GROUPS + allow)})")
        picks[group] = name
    return picks


def _experiment(root: Path, name: str, seen: tuple[str, ...] = ()) -> tuple[dict[str, str], dict, Path]:
    """``(group picks, body, path)`` of an experiment file; ``- experiment: BASE`` in its defaults
    starts from BASE (its picks and body, recursively), the file's own picks and keys on top
    (lists replace, as in any merge)."""
    path = root / "experiment" / f"{name}.yaml"
    if not path.is_file():
        close = difflib.get_close_matches(name, list_experiments(root), n=3, cutoff=0.4)
        hint = f"; did you mean: {', '.join(close)}" if close else ""
        where = f" (the base of {seen[-1]})" if seen else ""
        raise ConfigError(f"experiment={name}{where}: no file {path}{hint}")
    if name in seen:
        raise ConfigError(f"experiment={name}: its defaults loop through {' -> '.join((*seen, name))}")
    body = _read_yaml(path)
    picks = _parse_defaults(body.pop("defaults", []), path, allow=("experiment",))
    base = picks.pop("experiment", None)
    if base is None:
        return picks, body, path
    base_picks, base_body, _ = _experiment(root, base, (*seen, name))
    merged = OmegaConf.to_container(OmegaConf.merge(OmegaConf.create(base_body), OmegaConf.create(body)),
                                    resolve=False)
    return {**base_picks, **picks}, merged, path


def _split_overrides(overrides: Iterable[str]) -> tuple[str | None, dict[str, str], list[str]]:
    """Separates ``experiment=``, group picks (``trainer=ddp``) and dotted overrides."""
    experiment, picks, dotlist = None, {}, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected key=value")
        if key == "experiment":
            experiment = value
        elif key in GROUPS and re.fullmatch(r"[\w\-/]+", value):
            picks[key] = value
        else:
            dotlist.append(item)
    return experiment, picks, dotlist


def _format_error(e: OmegaConfBaseException, source: str, schema: DictConfig) -> str:
    full_key = getattr(e, "full_key", None) or getattr(e, "key", None) or "?"
    if isinstance(e, ConfigKeyError) or "not in" in str(e).splitlines()[0]:
        parent, _, leaf = str(full_key).rpartition(".")
        node = OmegaConf.select(schema, parent) if parent else schema
        valid = list(node.keys()) if isinstance(node, DictConfig) else []
        close = difflib.get_close_matches(leaf, valid, n=3, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}" if close else (f"; valid keys: {', '.join(valid)}" if valid else "")
        return f"config error: unknown key '{full_key}' (from {source}){hint}"
    msg = getattr(e, "msg", None) or str(e).splitlines()[0]
    msg = msg.splitlines()[0]
    return f"config error: {full_key}: {msg} (from {source})"


def _open_dict_fields(node: DictConfig) -> None:
    """Lets ``Dict[str, X]`` fields (e.g. optim.lr_mult) take new keys; dataclass nodes stay closed."""
    for key in node.keys():
        child = node._get_node(key)
        if isinstance(child, DictConfig):
            if child._metadata.object_type in (None, dict):
                OmegaConf.set_struct(child, False)
            else:
                _open_dict_fields(child)


def _merge(cfg: DictConfig, node: Any, source: str, schema: DictConfig) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, node)
    except OmegaConfBaseException as e:
        raise ConfigError(_format_error(e, source, schema)) from None


def _parse_dotlist(dotlist: Sequence[str]) -> DictConfig:
    try:
        return OmegaConf.from_dotlist(list(dotlist))
    except OmegaConfBaseException as e:
        raise ConfigError(f"config error: bad override in {list(dotlist)}: {str(e).splitlines()[0]}") from None


_MISSING = object()


def _renamed(node: Any, source: str, renamed: dict[str, str]) -> Any:
    """``node`` with each old key of ``renamed`` moved to its new spelling (warned once per source).

    Configs saved before a rename keep loading: ``optim.name: sgd`` reads as ``optim.kind: sgd``.
    A source giving both spellings is refused, as neither could be said to win.
    """
    if not renamed:
        return node
    node = OmegaConf.create(node) if not isinstance(node, DictConfig) else node.copy()
    for old, new in renamed.items():
        value = OmegaConf.select(node, old, default=_MISSING, throw_on_missing=False,
                                 throw_on_resolution_failure=False)
        if value is _MISSING:
            continue
        if OmegaConf.select(node, new, default=_MISSING, throw_on_missing=False,
                            throw_on_resolution_failure=False) is not _MISSING:
            raise ConfigError(f"config error: {old} and {new} both set (from {source}); {old} is the old "
                              f"spelling of {new}, keep only {new}")
        parent, _, leaf = old.rpartition(".")
        holder = OmegaConf.select(node, parent) if parent else node
        raw = holder._get_node(leaf)._value()  # keeps an interpolation as written
        del holder[leaf]
        OmegaConf.update(node, new, raw, merge=False, force_add=True)
        logging.getLogger("vau").warning("%s: %s is spelled %s now", source, old, new)
    return node


def _merged(schema_obj: Any, sources: Sequence[tuple[str, Any]], keep: Sequence[str] = ()) -> DictConfig:
    """``schema_obj`` (a dataclass) with ``sources`` merged on in order, interpolations resolved.

    Keys in ``keep`` stay interpolations as written (still resolved on access), so a saved
    config keeps them: ``run.dir: ${oc.env:VAU_RUNS,runs}/${run.name}`` follows a new
    ``run.name`` when the saved file is re-used (:func:`save_config`).
    """
    schema = OmegaConf.structured(schema_obj)
    OmegaConf.set_struct(schema, True)
    _open_dict_fields(schema)
    renamed = getattr(schema_obj, "RENAMED", {})
    cfg = schema
    for source, node in sources:
        cfg = _merge(cfg, _renamed(node, source, renamed), source, schema)
    raw = {}
    for key in keep:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent)._get_node(leaf)
        if node._is_interpolation():
            raw[key] = node._value()
    try:
        OmegaConf.resolve(cfg)
        for key in raw:
            OmegaConf.select(cfg, key)  # resolvable (raises here, not at first use)
    except OmegaConfBaseException as e:
        key = getattr(e, "full_key", "?")
        raise ConfigError(f"config error: cannot resolve {key}: {str(e).splitlines()[0]}") from None
    for key, value in raw.items():
        OmegaConf.update(cfg, key, value, merge=False)
    return cfg


def _frozen(cfg: DictConfig) -> DictConfig:
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_readonly(cfg, True)
    return cfg


def _family_of(sources: Sequence[Any]) -> tuple[str, Family, str | None]:
    """``model.family`` and ``data.pipeline`` as the sources set them (before any schema applies)."""
    loose = OmegaConf.merge(*[OmegaConf.create(s) for s in sources]) if sources else OmegaConf.create()
    name = OmegaConf.select(loose, "model.family", default="lm", throw_on_resolution_failure=False)
    pipeline = OmegaConf.select(loose, "data.pipeline", default=None, throw_on_resolution_failure=False)
    try:
        return name, get_family(str(name)), pipeline
    except UnknownNameError as e:
        raise ConfigError(f"model.family={name!r}: {e}") from None


def compose(
    overrides: Sequence[str] = (),
    *,
    experiment: str | None = None,
    config_file: str | os.PathLike | None = None,
    conf_root: str | os.PathLike | None = None,
) -> DictConfig:
    """Builds the resolved, read-only run config.

    Args:
        overrides: ``key=value`` strings; ``experiment=NAME`` picks the experiment file and
            ``group=NAME`` (e.g. ``trainer=ddp``) picks a group file.
        experiment: Experiment name (``conf/experiment/<name>.yaml``); an override wins.
        config_file: A complete saved config (a run's ``config.yaml``) used instead of the
            experiment and group files.
        conf_root: conf/ directory; found automatically when omitted.

    Returns:
        A resolved DictConfig typed by the family's RunConfig, in struct and read-only mode.

    Raises:
        ConfigError: with a one-line message naming the key, value and source.
    """
    cli_experiment, cli_picks, dotlist = _split_overrides(overrides)
    experiment = cli_experiment or experiment
    sources: list[tuple[str, dict]] = []

    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"--config {path}: no such file")
        if cli_experiment:
            raise ConfigError(f"--config {path} and experiment={cli_experiment}: give one of them (--config is "
                              "a complete saved config; key=value overrides go on top of either)")
        sources.append((str(path), _read_yaml(path)))
        root = None
        if cli_picks:
            root = conf_dir(conf_root)
    else:
        root = conf_dir(conf_root)
        picks: dict[str, str] = {}
        body: dict = {}
        exp_path = None
        if experiment:
            picks, body, exp_path = _experiment(root, experiment)
        picks.update(cli_picks)
        cli_picks = {}
        for group in GROUPS:
            if group in picks and picks[group] is not None:
                gpath = _group_file(root, group, picks[group])
                sources.append((str(gpath), {group: _read_yaml(gpath)}))
        if exp_path is not None:
            body.setdefault("run", {}).setdefault("experiment", experiment)
            sources.append((str(exp_path), body))

    for group, name in cli_picks.items():  # group picks on top of a saved config
        gpath = _group_file(root, group, name)
        sources.append((f"{group}={name}", {group: _read_yaml(gpath)}))

    cli_node = _parse_dotlist(dotlist)
    _, family, pipeline = _family_of([s for _, s in sources] + [cli_node])
    pipeline = family.pipeline_name(pipeline)
    schema_cls = family.config_class(pipeline)
    cfg = _merged(schema_cls(), [*sources, (_COMMAND_LINE, cli_node)], keep=("run.dir",))
    cfg.data.pipeline = pipeline  # the saved config names the pipeline it ran
    schema_cls.check(cfg)
    return _frozen(cfg)


def to_yaml(cfg: DictConfig) -> str:
    """The config as YAML text (resolved)."""
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_container(cfg: DictConfig) -> dict:
    """The config as plain Python containers (safe to store in a checkpoint)."""
    return OmegaConf.to_container(cfg, resolve=True)


def saved_yaml(cfg: DictConfig) -> str:
    """A run's ``config.yaml`` text: resolved, but ``run.dir`` as written when it was an
    interpolation (so ``--config FILE run.name=X`` goes to X's directory)."""
    return OmegaConf.to_yaml(cfg, resolve=False)


def save_config(cfg: DictConfig, path: str | os.PathLike) -> Path:
    """Writes :func:`saved_yaml` atomically (temp file in the same folder, then rename)."""
    return atomic_write_text(path, saved_yaml(cfg))


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
        return out
    return {prefix.rstrip("."): node}


def config_diff(a: Any, b: Any) -> list[tuple[str, Any, Any]]:
    """``(key, value in a, value in b)`` of every leaf that differs, sorted by key.

    ``a``/``b``: configs or plain dicts; a key missing on one side shows ``<unset>``.
    """
    a = to_container(a) if isinstance(a, DictConfig) else a
    b = to_container(b) if isinstance(b, DictConfig) else b
    fa, fb = _flat(a or {}), _flat(b or {})
    unset = "<unset>"
    return [(k, fa.get(k, unset), fb.get(k, unset)) for k in sorted(set(fa) | set(fb))
            if fa.get(k, unset) != fb.get(k, unset)]


def _tool_sources(path: Path, folder: Path, seen: tuple[Path, ...] = ()) -> list[tuple[str, dict]]:
    """A tool config file and, first, the files its ``defaults:`` list names (same folder)."""
    if path in seen:
        raise ConfigError(f"{path}: defaults loop through {' -> '.join(str(p) for p in seen)}")
    body = _read_yaml(path)
    defaults = body.pop("defaults", []) or []
    if not isinstance(defaults, list) or not all(isinstance(d, str) for d in defaults):
        raise ConfigError(f"{path}: 'defaults' must be a list of file names in {folder}")
    out: list[tuple[str, dict]] = []
    for name in defaults:
        out += _tool_sources(_tool_file(folder, name), folder, (*seen, path))
    return out + [(str(path), body)]


def _tool_file(folder: Path, name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    path = folder / f"{name}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
        raise ConfigError(f"config {name!r}: no file {path} (available: {', '.join(names) or 'none'})")
    return path


def compose_tool(schema_cls: type, group: str, config: str | None, overrides: Sequence[str] = (),
                 conf_root: str | os.PathLike | None = None) -> DictConfig:
    """Builds the read-only config of a tool (``vau infer``, ``vau eval``).

    Merge order: ``schema_cls`` defaults -> the files ``config``'s ``defaults:`` list names ->
    ``config`` -> ``key=value`` overrides.

    Args:
        schema_cls: The dataclass schema (e.g. ``InferConfig``).
        group: Folder under conf/ holding the named configs (``infer``, ``eval``).
        config: A name in ``conf/<group>/`` or a path to a YAML file; None = defaults only.
        overrides: ``key=value`` strings.
        conf_root: conf/ directory; found automatically when omitted.

    Raises:
        ConfigError: with a one-line message naming the key, value and source.
    """
    sources: list[tuple[str, dict]] = []
    if config:
        folder = conf_dir(conf_root) / group
        path = _tool_file(folder, config)
        sources = _tool_sources(path, path.parent)
    cfg = _merged(schema_cls, [*sources, (_COMMAND_LINE, _parse_dotlist(overrides))])
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ConfigError(f"config error: {', '.join(missing)} must be set (e.g. {missing[0]}=...)")
    return _frozen(cfg)


#: Picks a tool's schema from its sources merged untyped: ``loose -> (schema class, conf name or None)``;
#: the conf name is the file used when the command line names none (the family's own).
SchemaResolver = Callable[[DictConfig], "tuple[type, str | None]"]


def _loose(group: str, name: str | None, overrides: Sequence[str]) -> DictConfig:
    """The tool's sources merged without a schema (to read the keys that pick one)."""
    nodes: list[Any] = []
    if name:
        path = _tool_file(conf_dir() / group, name)
        nodes = [body for _, body in _tool_sources(path, path.parent)]
    return OmegaConf.merge(*[OmegaConf.create(n) for n in nodes], _parse_dotlist(overrides))


def compose_tool_args(schema_cls: type | SchemaResolver, group: str, config_file: str | None,
                      overrides: Sequence[str], default: str | None = None) -> DictConfig:
    """A tool's config from its command line, with the meanings ``vau train`` gives them.

    ``<group>=NAME`` among the overrides picks ``conf/<group>/NAME.yaml`` (as ``experiment=``
    does for training); ``--config FILE`` is a YAML file instead (a config saved earlier or
    written by hand). ``--config NAME`` with no such file is still read as ``<group>=NAME``,
    with a warning. ``schema_cls`` is the schema, or a :data:`SchemaResolver` that picks it
    (and the default conf name) from the keys given, e.g. the family of ``model=``; with
    neither file given, the resolver's conf name, else ``default``, is read.

    Raises:
        ConfigError: both ``<group>=`` and ``--config``, or what :func:`compose_tool` raises.
    """
    picked = [o.partition("=")[2] for o in overrides if o.partition("=")[0] == group]
    rest = [o for o in overrides if o.partition("=")[0] != group]
    name = picked[-1] if picked else None
    if config_file is not None:
        if picked:
            raise ConfigError(f"--config {config_file} and {group}={picked[-1]}: give one of them")
        if Path(config_file).is_file():
            name = str(Path(config_file))
        else:
            logging.getLogger("vau").warning("--config %s: no such file; reading it as %s=%s (the conf name is "
                                             "spelled %s=NAME now, --config takes a file)", config_file, group,
                                             config_file, group)
            name = config_file
    if not isinstance(schema_cls, type):
        schema_cls, own_default = schema_cls(_loose(group, name or default, rest))
        default = own_default if own_default is not None else default
    return compose_tool(schema_cls, group, name or default, rest)
