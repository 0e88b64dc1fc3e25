"""Model families: one folder each (``vau/families/<name>/``), one registry line each.

A family folder holds ``config.py`` (its typed model/data sections and RunConfig), its pure
PyTorch model, ``task.py`` (a :class:`~vau.families.task.Task`: losses, metrics, predict,
score, export extras), ``data.py`` (one or more data pipelines) and, when ``vau infer`` needs
more than ``Task.predict`` over shards, a predictor. Parts are named by import path and loaded
lazily, so composing a config imports no torch.

A family outside this package is used by its module path: ``model.family=my_pkg.my_family``
imports ``my_pkg.my_family`` and takes its ``FAMILY`` attribute (see README, "Adding a model
family").
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from vau.errors import ConfigError, UnknownNameError
from vau.registry import Registry, import_object


@dataclass(frozen=True)
class Pipeline:
    """One data source a family trains on (``data.pipeline`` picks it)."""

    config: str
    """``module:Class`` of the data section (a ``DataConfig`` subclass)."""
    datamodule: str
    """``module:Class`` of the LightningDataModule, built as ``Class(cfg)``."""


@dataclass(frozen=True)
class Family:
    """Where a family's parts live (``module:attr`` import paths)."""

    config: str
    """``module:Class`` of the family's RunConfig (its ``model`` section typed)."""
    task: str
    """``module:Class`` of its :class:`~vau.families.task.Task`."""
    data: Mapping[str, Pipeline]
    """Data pipelines by name; the first is the default."""
    predictor: Optional[str] = None
    """``module:Class`` of a ``vau infer`` predictor; null = ``Task.predict`` over shards."""
    default_data: Optional[str] = None
    """Pipeline used when ``data.pipeline`` is unset; null = the first of ``data``."""
    infer_config: str = "vau.config.eval:InferConfig"
    """``module:Class`` of its `vau infer` config (an ``InferConfig`` subclass with the family's keys)."""
    infer_conf: Optional[str] = None
    """``conf/infer/<name>.yaml`` used when neither ``infer=NAME`` nor ``--config`` is given."""
    eval_config: str = "vau.config.eval:EvalConfig"
    """``module:Class`` of its `vau eval` config (an ``EvalConfig`` subclass)."""
    eval_conf: Optional[str] = None
    """``conf/eval/<name>.yaml`` used when neither ``eval=NAME`` nor ``--config`` is given."""
    evaluator: str = "vau.eval.evaluate:TaskEvaluator"
    """``module:Class`` scoring one predictions file per model row (default: ``Task.score`` of all records)."""

    def pipeline_name(self, name: Optional[str]) -> str:
        """The pipeline ``name`` (or the default) after checking it exists."""
        name = name or self.default_data or next(iter(self.data))
        if name not in self.data:
            raise ConfigError(f"data.pipeline={name!r}: not a pipeline of this family "
                              f"(valid: {', '.join(self.data)})")
        return name

    def config_class(self, pipeline: Optional[str] = None) -> type:
        """The RunConfig with its ``data`` section typed by ``pipeline`` (or the default)."""
        run_cls = import_object(self.config)
        name = self.pipeline_name(pipeline)
        data_cls = import_object(self.data[name].config)
        return _with_data(run_cls, data_cls)

    def build_task(self, cfg: Any) -> Any:
        """The family's Task for a resolved config."""
        return import_object(self.task)(cfg)

    def build_datamodule(self, cfg: Any) -> Any:
        """The LightningDataModule of ``cfg.data.pipeline``."""
        return import_object(self.data[self.pipeline_name(cfg.data.pipeline)].datamodule)(cfg)

    def with_default_data(self, name: str) -> "Family":
        """The same family with another default pipeline (an alias such as ``lm_text``)."""
        return dataclasses.replace(self, default_data=name)


_CLASSES: dict[tuple[type, type], type] = {}


def _with_data(run_cls: type, data_cls: type) -> type:
    """``run_cls`` with its ``data`` section typed ``data_cls`` (cached: one class per pair)."""
    key = (run_cls, data_cls)
    if key not in _CLASSES:
        _CLASSES[key] = dataclasses.make_dataclass(
            run_cls.__name__, [("data", data_cls, field(default_factory=data_cls))], bases=(run_cls,),
            namespace={"__doc__": run_cls.__doc__})
    return _CLASSES[key]


FAMILIES: Registry[Family] = Registry("model family")


def get_family(name: str) -> Family:
    """The registered family ``name``, else ``FAMILY`` of the importable module ``name``.

    Raises:
        UnknownNameError: Neither (the registry's message: valid names, closest matches).
    """
    if name in FAMILIES:
        return FAMILIES.get(name)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and name.startswith(e.name):  # no such module: a typo'd family name
            FAMILIES.get(name)
        raise
    family = getattr(module, "FAMILY", None)
    if not isinstance(family, Family):
        raise UnknownNameError(f"module {name} has no FAMILY = vau.families.Family(...)")
    return family


# The causal LM alone: the platform's smallest family (resume, DDP, DeepSpeed, LoRA tests) and
# the domain-text pretraining of the AnomShield demo's LLM.
FAMILIES.register("lm", Family(
    config="vau.families.lm.config:LMRunConfig",
    task="vau.families.lm.task:LMTask",
    data={"tokens": Pipeline("vau.families.lm.config:TokenDataConfig", "vau.families.lm.data:TokenDataModule"),
          "text": Pipeline("vau.families.lm.config:TextShardDataConfig", "vau.families.lm.data:TextShardDataModule")},
))
# Earlier spelling of `lm` with `data.pipeline=text` (saved configs and experiments still say it).
FAMILIES.register("lm_text", FAMILIES.get("lm").with_default_data("text"))
# A CLIP vision tower trained as a clip classifier: the CPU demo's stand-in for CLIP's pretraining.
FAMILIES.register("clip_vision", Family(
    config="vau.families.clip_vision.config:ClipVisionRunConfig",
    task="vau.families.clip_vision.task:ClipVisionTask",
    data={"shards": Pipeline("vau.families.clip_vision.config:ClipVisionDataConfig",
                             "vau.families.clip_vision.data:ClipVisionDataModule")},
))
# ECVA's AnomShield video LLM; its three curriculum stages are configs
# (conf/experiment/anomshield/stage{1,2,3}.yaml and the tiny twins).
FAMILIES.register("anomshield", Family(
    config="vau.families.anomshield.config:AnomShieldRunConfig",
    task="vau.families.anomshield.task:AnomShieldTask",
    data={"shards": Pipeline("vau.families.anomshield.config:AnomShieldDataConfig",
                             "vau.families.anomshield.data:AnomShieldDataModule")},
    predictor="vau.families.anomshield.predict:AnomShieldPredictor",
    infer_config="vau.families.anomshield.tools:AnomShieldInferConfig",
    infer_conf="ecva",
    eval_config="vau.families.anomshield.tools:AnomShieldEvalConfig",
    evaluator="vau.families.anomshield.evaluate:ECVAEvaluator",
))


def export_family(model: str) -> str:
    """``model.family`` of an export folder (or a run dir with ``export/``), read without building it.

    Raises:
        NotFoundError: No ``config.yaml`` there.
    """
    import yaml

    from vau.errors import NotFoundError

    src = Path(model)
    path = next((p for p in (src / "export" / "config.yaml", src / "config.yaml") if p.is_file()), None)
    if path is None:
        raise NotFoundError(f"model={model}: no export here (expected config.yaml and model.safetensors, "
                            "or a run dir with export/)")
    body = yaml.safe_load(path.read_text()) or {}
    return str((body.get("model") or {}).get("family", "lm"))


def predictions_family(paths: Any) -> Optional[str]:
    """The family that wrote the predictions (``infer.json`` beside each names it); None if none says.

    Raises:
        ConfigError: The files come from different families (one table compares one kind of model).
    """
    import json

    found = set()
    for path in paths or []:
        path = Path(path)
        summary = (path if path.is_dir() else path.parent) / "infer.json"
        try:
            name = json.loads(summary.read_text()).get("family") if summary.is_file() else None
        except (OSError, ValueError, AttributeError):
            name = None
        if name:
            found.add(name)
    if len(found) > 1:
        raise ConfigError(f"predictions: written by different families ({', '.join(sorted(found))}); "
                          "evaluate each family on its own")
    return found.pop() if found else None


def infer_schema(loose: Any) -> tuple[type, Optional[str]]:
    """`vau infer`'s schema and default conf name: those of the family of ``model=``'s export."""
    from omegaconf import OmegaConf

    model = OmegaConf.select(loose, "model", default=None, throw_on_missing=False, throw_on_resolution_failure=False)
    if not model or model == "???":
        return import_object(Family.infer_config), None  # composing then says model must be set
    family = get_family(export_family(str(model)))
    return import_object(family.infer_config), family.infer_conf


def eval_schema(loose: Any) -> tuple[type, Optional[str]]:
    """`vau eval`'s schema and default conf name: those of ``family=``, else the family that wrote
    the predictions, else anomshield (predictions written before ``infer.json`` named a family)."""
    from omegaconf import OmegaConf

    name = OmegaConf.select(loose, "family", default=None, throw_on_resolution_failure=False)
    name = name or predictions_family(OmegaConf.select(loose, "predictions", default=None,
                                                       throw_on_resolution_failure=False)) or "anomshield"
    family = _family_or_error(str(name), "family")
    return import_object(family.eval_config), family.eval_conf


def _family_or_error(name: str, key: str) -> Family:
    try:
        return get_family(name)
    except UnknownNameError as e:
        raise ConfigError(f"{key}={name!r}: {e}") from None
