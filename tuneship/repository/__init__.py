"""The model repository layer, used by every stage that reads or writes a repository (the exporter, deploy,
monitor, tuning, search and the API): the names of the files and folders tuneship keeps beside Triton's (`files`),
model configs and layouts (`configs`), versions and snapshots (`versions`), published pipelines (`pipeline`), the
writers' lock (`lock`) and safe writes (`writing`). Names load lazily: reading `LABELS_FILE` imports no protobuf."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tuneship.lazy import lazy_names

_WHERE = {
    "published_at": "tuneship.repository.configs",
    "ADAPTER_NAME": "tuneship.repository.adapters",
    "published_adapters": "tuneship.repository.adapters",
    "ADAPTERS_DIR": "tuneship.repository.files",
    "ADAPTER_INFO": "tuneship.repository.files",
    "ADAPTER_WEIGHTS": "tuneship.repository.files",
    "CONFIG_FILE": "tuneship.repository.configs",
    "LABELS_FILE": "tuneship.repository.files",
    "LAYOUTS": "tuneship.repository.configs",
    "LAYOUT_ALIASES": "tuneship.repository.configs",
    "LOCK_NAME": "tuneship.repository.lock",
    "LOCK_TIMEOUT_S": "tuneship.repository.files",
    "Pipeline": "tuneship.repository.pipeline",
    "REPORTS": "tuneship.repository.files",
    "REPORT_FILE": "tuneship.repository.files",
    "RepositoryError": "tuneship.repository.errors",
    "SOURCE_FILE": "tuneship.repository.files",
    "Snapshot": "tuneship.repository.versions",
    "TUNING_PLOT": "tuneship.repository.files",
    "TUNING_REPORT": "tuneship.repository.files",
    "UPDATES_LOG": "tuneship.repository.files",
    "UPDATE_REPORT": "tuneship.repository.files",
    "check_model_name": "tuneship.repository.writing",
    "config_path": "tuneship.repository.configs",
    "copy_version": "tuneship.repository.versions",
    "existing_versions": "tuneship.repository.versions",
    "graph_model": "tuneship.repository.pipeline",
    "is_single_model": "tuneship.repository.configs",
    "latest_version": "tuneship.repository.versions",
    "parse_pbtxt": "tuneship.repository.configs",
    "pipeline_models": "tuneship.repository.pipeline",
    "prune_versions": "tuneship.repository.versions",
    "publish_copy": "tuneship.repository.versions",
    "publish_version": "tuneship.repository.versions",
    "read_config": "tuneship.repository.configs",
    "repository_lock": "tuneship.repository.lock",
    "served_layout": "tuneship.repository.pipeline",
    "to_pbtxt": "tuneship.repository.configs",
    "write_config": "tuneship.repository.configs",
    "write_text_atomic": "tuneship.repository.writing",
}
__getattr__ = lazy_names(__name__, _WHERE)
__all__ = sorted(_WHERE)

if TYPE_CHECKING:
    from tuneship.repository.adapters import ADAPTER_NAME as ADAPTER_NAME
    from tuneship.repository.adapters import published_adapters as published_adapters
    from tuneship.repository.configs import CONFIG_FILE as CONFIG_FILE
    from tuneship.repository.configs import LAYOUT_ALIASES as LAYOUT_ALIASES
    from tuneship.repository.configs import LAYOUTS as LAYOUTS
    from tuneship.repository.configs import config_path as config_path
    from tuneship.repository.configs import is_single_model as is_single_model
    from tuneship.repository.configs import parse_pbtxt as parse_pbtxt
    from tuneship.repository.configs import published_at as published_at
    from tuneship.repository.configs import read_config as read_config
    from tuneship.repository.configs import to_pbtxt as to_pbtxt
    from tuneship.repository.configs import write_config as write_config
    from tuneship.repository.errors import RepositoryError as RepositoryError
    from tuneship.repository.files import ADAPTER_INFO as ADAPTER_INFO
    from tuneship.repository.files import ADAPTER_WEIGHTS as ADAPTER_WEIGHTS
    from tuneship.repository.files import ADAPTERS_DIR as ADAPTERS_DIR
    from tuneship.repository.files import LABELS_FILE as LABELS_FILE
    from tuneship.repository.files import LOCK_TIMEOUT_S as LOCK_TIMEOUT_S
    from tuneship.repository.files import REPORT_FILE as REPORT_FILE
    from tuneship.repository.files import REPORTS as REPORTS
    from tuneship.repository.files import SOURCE_FILE as SOURCE_FILE
    from tuneship.repository.files import TUNING_PLOT as TUNING_PLOT
    from tuneship.repository.files import TUNING_REPORT as TUNING_REPORT
    from tuneship.repository.files import UPDATE_REPORT as UPDATE_REPORT
    from tuneship.repository.files import UPDATES_LOG as UPDATES_LOG
    from tuneship.repository.lock import LOCK_NAME as LOCK_NAME
    from tuneship.repository.lock import repository_lock as repository_lock
    from tuneship.repository.pipeline import Pipeline as Pipeline
    from tuneship.repository.pipeline import graph_model as graph_model
    from tuneship.repository.pipeline import pipeline_models as pipeline_models
    from tuneship.repository.pipeline import served_layout as served_layout
    from tuneship.repository.versions import Snapshot as Snapshot
    from tuneship.repository.versions import copy_version as copy_version
    from tuneship.repository.versions import existing_versions as existing_versions
    from tuneship.repository.versions import latest_version as latest_version
    from tuneship.repository.versions import prune_versions as prune_versions
    from tuneship.repository.versions import publish_copy as publish_copy
    from tuneship.repository.versions import publish_version as publish_version
    from tuneship.repository.writing import check_model_name as check_model_name
    from tuneship.repository.writing import write_text_atomic as write_text_atomic
